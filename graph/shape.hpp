// Named dims and shapes. A shape is an ordered list of (name, size); layout rules and lowering
// speak in these names. Legend: B batch, T tokens, D d_model, E experts, K top-k, F d_ff,
// C capacity, G groups, S group size.
#pragma once

#include "graph/dtype.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sy {

struct Dim {
  std::string name;
  int64_t size = 0;
  bool operator==(const Dim&) const = default;
};

using Shape = std::vector<Dim>;

inline int64_t num_elements(const Shape& s) {
  int64_t n = 1;
  for (const Dim& d : s) n *= d.size;
  return n;
}

// Position of the dim called `name`, or nullopt.
inline std::optional<size_t> dim_index(const Shape& s, const std::string& name) {
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i].name == name) return i;
  return std::nullopt;
}

inline bool has_dim(const Shape& s, const std::string& name) { return dim_index(s, name).has_value(); }

// Row-major strides (in elements) of a shape.
inline std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i].size;
  }
  return st;
}

// "[batch=4, d_model=8]"
std::string to_string(const Shape& s);

struct TensorType {
  Shape shape;
  DType dtype = DType::f32;
  bool operator==(const TensorType&) const = default;
};

// "f32[batch=4, d_model=8]"
std::string to_string(const TensorType& t);

inline int64_t num_bytes(const TensorType& t) { return num_elements(t.shape) * dtype_bytes(t.dtype); }

}  // namespace sy
