// The executor's array math (executor/vec_math.cpp): plain loops over f32 (and bf16 storage,
// widened on load and rounded to nearest-even on store) that the compiler vectorises, each
// compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time. No reassociation or FMA
// contraction (ISO C++ mode), so every variant gives the same bits. exp is the Cephes expf
// polynomial (within 2 ulp); sums accumulate in double. Private to executor/ (kernels.cpp).
#pragma once

#include <cstdint>

namespace sy::exec {

// Softmax and exp rows: y = exp(x - shift); sums (in double) and maxima (NaN skipped).
void vec_exp_shifted(const float* x, float shift, float* y, int64_t n);
double vec_sum(const float* x, int64_t n);
float vec_max(const float* x, int64_t n);
float vec_max_bf16(const uint16_t* x, int64_t n);
// y = exp(x - max) for a row whose maximum is max (f32 or bf16 x): vec_exp_shifted's bits, with
// fewer instructions because no argument is positive.
void vec_exp_below(const float* x, float max, float* y, int64_t n);
void vec_exp_below_bf16(const uint16_t* x, float max, float* y, int64_t n);
void vec_scale_to_bf16(const float* x, float s, uint16_t* y, int64_t n);
// Norms, scales, GELU and its gradient.
double vec_sum_squares(const float* x, int64_t n);
void vec_scale(const float* x, float s, float* y, int64_t n);
void vec_scale_offset(const float* x, double f, double o, float* y, int64_t n);
void vec_gelu(const float* x, float* y, int64_t n);
void vec_gelu_grad(const float* x, const float* dy, float* y, int64_t n);
void vec_rms_scale(const float* x, float inv, const float* g, float* y, int64_t n);
// bf16 <-> f32 (round to nearest even, NaN stays NaN).
void vec_bf16_to_f32(const uint16_t* __restrict x, float* __restrict y, int64_t n);
void vec_f32_to_bf16(const float* __restrict x, uint16_t* __restrict y, int64_t n);
// y = a (op) b over f32 arrays (a and y may be one array); with a scalar s; over bf16 storage in one pass.
void vec_add(const float* a, const float* b, float* y, int64_t n);
void vec_sub(const float* a, const float* b, float* y, int64_t n);
void vec_mul(const float* a, const float* b, float* y, int64_t n);
void vec_div(const float* a, const float* b, float* y, int64_t n);
void vec_add_s(const float* a, float s, float* y, int64_t n);
void vec_sub_s(const float* a, float s, float* y, int64_t n);
void vec_mul_s(const float* a, float s, float* y, int64_t n);
void vec_div_s(const float* a, float s, float* y, int64_t n);
void vec_add_bf16(const uint16_t* a, const uint16_t* b, uint16_t* y, int64_t n);
void vec_sub_bf16(const uint16_t* a, const uint16_t* b, uint16_t* y, int64_t n);
void vec_mul_bf16(const uint16_t* a, const uint16_t* b, uint16_t* y, int64_t n);
void vec_div_bf16(const uint16_t* a, const uint16_t* b, uint16_t* y, int64_t n);
void vec_copy(const float* x, float* y, int64_t n);

}  // namespace sy::exec
