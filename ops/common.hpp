// Helpers shared by the op families: shape checks that throw InputError, index projection for
// broadcasting/reduction by dim name, cost shorthands.
#pragma once

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/op_def.hpp"

#include <fmt/format.h>

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

// Sums `g` over the dims it has beyond `target` so its shape equals target's (reordered to
// target's order): the gradient of a broadcast input.
ValueId sum_to(Builder& b, ValueId g, const Shape& target);

// Round every element of t to its dtype unless exact.
inline void round_all(Tensor& t, bool exact) {
  if (exact || t.dtype() == DType::i32) return;
  for (double& x : t.data) x = round_to(t.dtype(), x);
}

}  // namespace sy::ops
