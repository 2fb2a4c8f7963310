// Float tensors as the kernels see them: f32 stored as float, bf16 as uint16_t; loads widen to
// f32, stores round to nearest even. visit_float dispatches on a float dtype once per kernel.
#pragma once

#include "graph/dtype.hpp"
#include "graph/error.hpp"

#include <cstdint>
#include <type_traits>

namespace sy::exec {

inline float ld(const float* p, int64_t i) { return p[i]; }
inline float ld(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }
inline void st(float* p, int64_t i, float v) { p[i] = v; }
inline void st(uint16_t* p, int64_t i, float v) { p[i] = f32_to_bf16(v); }

// Calls f with a null pointer of the storage type of float dtype t (float or uint16_t).
template <typename F>
void visit_float(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(static_cast<float*>(nullptr)); return;
    case DType::bf16: f(static_cast<uint16_t*>(nullptr)); return;
    case DType::i32: break;
  }
  SY_CHECK(false, "visit_float: {} is not a float dtype", dtype_name(t));
}

// The storage type of a visit_float tag: float or uint16_t.
template <typename Tag>
using Storage = std::remove_pointer_t<Tag>;

}  // namespace sy::exec
