// Host tensor used by the reference kernels and tests: values held as double whatever the
// dtype (bf16/f32 values are rounded to their storage precision on store; i32 are exact).
#pragma once

#include "graph/shape.hpp"

#include <vector>

namespace sy {

struct Tensor {
  TensorType type;
  std::vector<double> data;  // row-major, num_elements(type.shape) entries

  Tensor() = default;
  explicit Tensor(TensorType t, double fill = 0.0)
      : type(std::move(t)), data(static_cast<size_t>(num_elements(type.shape)), fill) {}

  const Shape& shape() const { return type.shape; }
  DType dtype() const { return type.dtype; }
  int64_t size() const { return static_cast<int64_t>(data.size()); }
};

}  // namespace sy
