// The executor's array math (vec_math.hpp).
#include "executor/vec_math.hpp"

#include "graph/dtype.hpp"
#include "ops/common.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace sy::exec {
namespace {

// ---- f32 array math, compiled for AVX-512, AVX2 and baseline x86-64 (picked at load time) ----
// Plain loops the compiler vectorises; no reassociation or FMA contraction (ISO C++ mode), so
// every variant gives the same bits.
#define SY_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

// Cephes expf's range reduction and polynomial: exp(x) = p · 2^r for x in [-87.3, 88.7] (the
// caller clamps; within 2 ulp once scaled).
struct ExpParts {
  float p;
  int32_t r;
};
[[gnu::always_inline]] inline ExpParts exp_parts(float x) {
  const float t = x * 1.44269504088896341f;
  const float r = (t + 12582912.0f) - 12582912.0f;  // round to nearest (|t| < 2^22)
  const float f = std::fma(r, 2.12194440e-4f, std::fma(r, -0.693359375f, x));
  const float z = f * f;
  float p = 1.9875691500e-4f;
  p = std::fma(p, f, 1.3981999507e-3f);
  p = std::fma(p, f, 8.3334519073e-3f);
  p = std::fma(p, f, 4.1665795894e-2f);
  p = std::fma(p, f, 1.6666665459e-1f);
  p = std::fma(p, f, 5.0000001201e-1f);
  return {std::fma(p, z, f) + 1.0f, static_cast<int32_t>(r)};
}
inline float pow2(int32_t r) { return std::bit_cast<float>(static_cast<uint32_t>(r + 127) << 23); }  // r in [-126, 127]

// exp(x): 0 below -87.3 (where expf leaves the normal range), +inf above 88.7, NaN stays NaN.
inline float exp_poly(float x) {
  const float lo = -87.33654f, hi = 88.72283f;
  const float xc = x < lo ? lo : (x > hi ? hi : (x != x ? 0.0f : x));  // NaN: any finite r (converting NaN to int is UB)
  const ExpParts e = exp_parts(xc);
  // p · 2^r with r in [-126, 128], as two exact power-of-two scalings (2^128 is not a float).
  const int32_t h = e.r / 2;
  const float y = (e.p * pow2(h)) * pow2(e.r - h);
  return x < lo ? 0.0f : (x > hi ? std::numeric_limits<float>::infinity() : (x != x ? x : y));
}

// exp(x) for x <= 0 (a softmax row shifted by its max): exp_poly's result, bit for bit, with one
// range check and one scaling instead of three and two. r = round(x·log2 e) lies in [-126, 0], so
// 2^r is a normal float and p·2^r rounds once, as exp_poly's (p·2^h)·2^(r-h) does. Below -87.3: 0;
// NaN stays NaN.
inline float exp_nonpositive(float x) {
  const float lo = -87.33654f;
  const float xc = x >= lo ? x : lo;  // NaN: lo (converting NaN to int is UB)
  const ExpParts e = exp_parts(xc);
  return x != x ? x : (x < lo ? 0.0f : e.p * pow2(e.r));
}

// 1 + tanh(u) and 1 - tanh(u) without cancellation: with e = exp(-2|u|), they are 2/(1+e) and
// 2e/(1+e) (swapped for u < 0); each within a few ulp. One division (2/(1+e), then times e) and the
// exp of a non-positive argument: a vector division costs several multiplies.
struct TanhParts {
  float plus, minus;
};
inline TanhParts tanh_parts(float u) {
  const float e = exp_nonpositive(-2.0f * (u < 0 ? -u : u));
  const float big = 2.0f / (1.0f + e), small = e * big;
  return u < 0 ? TanhParts{small, big} : TanhParts{big, small};
}

}  // namespace

SY_VECTOR_CLONES void vec_exp_below(const float* x, float max, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_nonpositive(x[i] - max);
}
SY_VECTOR_CLONES void vec_exp_below_bf16(const uint16_t* x, float max, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_nonpositive(bf16_to_f32(x[i]) - max);
}
SY_VECTOR_CLONES void vec_exp_shifted(const float* x, float shift, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_poly(x[i] - shift);
}
// Reductions keep independent lanes (two AVX-512 registers of doubles, four of floats for the
// max) so the adds do not wait on each other, and end in a tree over the lanes: a serial sum of
// the lanes costs a dependent add each, which on 256-wide softmax rows took as long as the loop
// (vec_max was 0.16 ns per element on one core against 0.065 with 64 lanes and the tree).
SY_VECTOR_CLONES double vec_sum(const float* x, int64_t n) {
  double acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] += x[i + l];
  for (; i < n; ++i) acc[0] += x[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}
// The max over 64 independent lanes, then a tree over the lanes (see above); a NaN never wins, so it
// is skipped. Inlined into each clone of its callers.
template <typename T>
[[gnu::always_inline]] inline float max_lanes(const T* x, int64_t n) {
  auto ld = [](T v) -> float {
    if constexpr (std::is_same_v<T, uint16_t>) return bf16_to_f32(v);
    else return v;
  };
  float m[64];
  for (int l = 0; l < 64; ++l) m[l] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int l = 0; l < 64; ++l) m[l] = ld(x[i + l]) > m[l] ? ld(x[i + l]) : m[l];
  for (; i < n; ++i) m[0] = ld(x[i]) > m[0] ? ld(x[i]) : m[0];
  for (int w = 32; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) m[l] = m[l + w] > m[l] ? m[l + w] : m[l];
  return m[0];
}
SY_VECTOR_CLONES float vec_max(const float* x, int64_t n) { return max_lanes(x, n); }
// vec_max reading bf16 storage (widened on load), and a scale that rounds its
// result to bf16 on store: softmax over bf16 rows without separate conversion passes.
SY_VECTOR_CLONES float vec_max_bf16(const uint16_t* x, int64_t n) { return max_lanes(x, n); }
SY_VECTOR_CLONES void vec_scale_to_bf16(const float* x, float s, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i] * s);
}
SY_VECTOR_CLONES double vec_sum_squares(const float* x, int64_t n) {
  double acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] += static_cast<double>(x[i + l]) * x[i + l];
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]) * x[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}
SY_VECTOR_CLONES void vec_scale(const float* x, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}
// y = x · f + o computed in double (the scale op's semantics: factor and offset keep their full
// precision), rounded once to f32.
SY_VECTOR_CLONES void vec_scale_offset(const float* x, double f, double o, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<double>(x[i]) * f + o);
}
SY_VECTOR_CLONES void vec_gelu(const float* x, float* y, int64_t n) {
  const float c = static_cast<float>(ops::kGeluC), a = static_cast<float>(ops::kGeluA);
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = 0.5f * v * tanh_parts(c * (v + a * v * v * v)).plus;
  }
}
SY_VECTOR_CLONES void vec_gelu_grad(const float* x, const float* dy, float* y, int64_t n) {
  const float c = static_cast<float>(ops::kGeluC), a = static_cast<float>(ops::kGeluA);
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const TanhParts t = tanh_parts(c * (v + a * v * v * v));  // gelu' = (1+t)/2 + x (1-t)(1+t) c (1 + 3a x²) / 2
    y[i] = dy[i] * (0.5f * t.plus + 0.5f * v * (t.minus * t.plus) * c * (1.0f + 3.0f * a * v * v));
  }
}
SY_VECTOR_CLONES void vec_rms_scale(const float* x, float inv, const float* g, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * g[i];
}

// bf16 <-> f32 over arrays (the conversions of float_storage.hpp, vectorised).
SY_VECTOR_CLONES void vec_bf16_to_f32(const uint16_t* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}
SY_VECTOR_CLONES void vec_f32_to_bf16(const float* __restrict x, uint16_t* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}
// y = a (op) b over f32 arrays; a and y may be the same array.
SY_VECTOR_CLONES void vec_add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
SY_VECTOR_CLONES void vec_sub(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] - b[i];
}
SY_VECTOR_CLONES void vec_mul(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}
SY_VECTOR_CLONES void vec_div(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] / b[i];
}
// y = a (op) s with one scalar s over f32 arrays (b constant along a row of a).
SY_VECTOR_CLONES void vec_add_s(const float* a, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + s;
}
SY_VECTOR_CLONES void vec_sub_s(const float* a, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] - s;
}
SY_VECTOR_CLONES void vec_mul_s(const float* a, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * s;
}
SY_VECTOR_CLONES void vec_div_s(const float* a, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] / s;
}
// The same over bf16 storage in one pass: both inputs widened, the result rounded to bf16, in one
// loop, so the two input streams and the output stream move together. (Widening each block into
// an f32 buffer first ran the streams one after another: bf16 mul at 15-36 GB/s against f32's
// 85 GB/s on the same machine.)
SY_VECTOR_CLONES void vec_add_bf16(const uint16_t* a, const uint16_t* b, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}
SY_VECTOR_CLONES void vec_sub_bf16(const uint16_t* a, const uint16_t* b, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(bf16_to_f32(a[i]) - bf16_to_f32(b[i]));
}
SY_VECTOR_CLONES void vec_mul_bf16(const uint16_t* a, const uint16_t* b, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(bf16_to_f32(a[i]) * bf16_to_f32(b[i]));
}
SY_VECTOR_CLONES void vec_div_bf16(const uint16_t* a, const uint16_t* b, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(bf16_to_f32(a[i]) / bf16_to_f32(b[i]));
}
SY_VECTOR_CLONES void vec_copy(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i];
}

}  // namespace sy::exec
