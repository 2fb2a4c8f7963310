// Helpers shared by the op families: shape checks that throw InputError, index projection for
// broadcasting/reduction by dim name, cost shorthands.
#pragma once

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/op_def.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

#include <string>
#include <vector>

namespace sy::ops {

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

inline void expect_inputs(const std::vector<TensorType>& in, size_t n) {
  if (in.size() != n) fail("expects {} inputs, got {}", n, in.size());
}

inline void expect_float(const TensorType& t, const char* what) {
  if (!is_float(t.dtype)) fail("{} must be f32 or bf16, got {}", what, to_string(t));
}

inline void expect_int(const TensorType& t, const char* what) {
  if (t.dtype != DType::i32) fail("{} must be i32, got {}", what, to_string(t));
}

// Every dim of `sub` appears in `full` with the same size (sub broadcasts into full by name).
inline void expect_sub_shape(const Shape& full, const Shape& sub, const char* what) {
  for (const Dim& d : sub) {
    auto i = dim_index(full, d.name);
    if (!i) fail("{}: dim '{}' of {} is not in {}", what, d.name, to_string(sub), to_string(full));
    if (full[*i].size != d.size)
      fail("{}: dim '{}' has size {} in {} but {} in {}", what, d.name, d.size, to_string(sub), full[*i].size, to_string(full));
  }
}

// Dim names must be unique within a shape and sizes positive.
void expect_valid_shape(const Shape& s, const char* what);

// For each element of `full` (row-major), its offset in `sub`, whose dims ⊆ full's dims.
std::vector<int64_t> project_index(const Shape& full, const Shape& sub);

// `s` without the dims named in `drop`, order kept.
Shape drop_dims(const Shape& s, const std::vector<std::string>& drop);

inline double bytes(const TensorType& t) { return static_cast<double>(num_bytes(t)); }
inline double elems(const TensorType& t) { return static_cast<double>(num_elements(t.shape)); }

// Reads/writes of every input and output once; flops given.
OpCost streaming_cost(const std::vector<TensorType>& in, const std::vector<TensorType>& out, double flops);

// Lowering roles of an op that passes partial sums of its inputs through to its output unchanged
// in kind (cast, add, scale, transpose): every dim free, and a parameter gradient flows through it
// (LoweringRoles::carries_gradient).
inline LoweringRoles linear_roles(const std::vector<TensorType>&, const Attrs&) {
  LoweringRoles r;
  r.carries_gradient = true;
  return r;
}

// Sums `g` over the dims it has beyond `target` so its shape equals target's (reordered to
// target's order): the gradient of a broadcast input.
ValueId sum_to(Builder& b, ValueId g, Shape target);  // target by value: emitting nodes may move g.values

// Round every element of t to its dtype unless exact.
inline void round_all(Tensor& t, bool exact) {
  if (exact || t.dtype() == DType::i32) return;
  for (double& x : t.data) x = round_to(t.dtype(), x);
}

}  // namespace sy::ops

namespace sy::ops {

// Counter-based random numbers: a pure function of (seed, step, index), so forward, backward and
// every process agree without storing a mask, and runs are reproducible. splitmix64 mixing.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// Uniform in [0, 1) with 53 random bits.
inline double counter_uniform(uint64_t seed, int64_t step, uint64_t index) {
  const uint64_t z = mix64(mix64(seed ^ 0x9e3779b97f4a7c15ull) + static_cast<uint64_t>(step) * 0xd1b54a32d192ed03ull +
                           (index + 1) * 0x9e3779b97f4a7c15ull);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}
// Standard normal by Box-Muller over two counter streams.
inline double counter_normal(uint64_t seed, int64_t step, uint64_t index) {
  const double u1 = 1.0 - counter_uniform(seed, step, 2 * index);  // (0, 1]
  const double u2 = counter_uniform(seed, step, 2 * index + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
// Dropout keeps element `index` iff its uniform number is >= rate.
inline bool dropout_keep(uint64_t seed, int64_t step, uint64_t index, double rate) {
  return counter_uniform(seed, step, index) >= rate;
}

// GELU, tanh approximation, and its derivative.
inline constexpr double kGeluC = 0.7978845608028654;  // sqrt(2 / pi)
inline constexpr double kGeluA = 0.044715;
inline double gelu_ref(double x) { return 0.5 * x * (1.0 + std::tanh(kGeluC * (x + kGeluA * x * x * x))); }
inline double gelu_grad_ref(double x) {
  const double t = std::tanh(kGeluC * (x + kGeluA * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kGeluC * (1.0 + 3.0 * kGeluA * x * x);
}

}  // namespace sy::ops
