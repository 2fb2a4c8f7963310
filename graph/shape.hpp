// Named dims and shapes. A shape is an ordered list of (name, size); layout rules and lowering
// speak in these names. Legend: B batch, T tokens, D d_model, E experts, K top-k, F d_ff,
// C capacity, G groups, S group size.
#pragma once

#include "graph/checked_math.hpp"
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

// "[batch=4, d_model=8]"
inline std::string dims_text(const Shape& s) {
  std::string r = "[";
  for (const Dim& d : s) r += (r.size() > 1 ? ", " : "") + d.name + "=" + std::to_string(d.size);
  return r + "]";
}

// The product of the sizes, checked (graph/checked_math.hpp): a shape whose element count does not
// fit in int64 is refused as an InputError naming its dims.
inline int64_t num_elements(const Shape& s) {
  int64_t n = 1;
  for (const Dim& d : s)
    if (__builtin_mul_overflow(n, d.size, &n))
      throw InputError(fmt::format("tensor {}: its element count overflows 64-bit integers (largest {}); the config "
                                   "sizes behind these dims are too large",
                                   dims_text(s), kInt64Max));
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

inline int64_t num_bytes(const TensorType& t) {
  return checked_mul(num_elements(t.shape), dtype_bytes(t.dtype), "bytes of tensor " + dims_text(t.shape));
}

}  // namespace sy
