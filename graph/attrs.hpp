// Typed attributes of ops: one struct per attribute shape; each op kind names the struct it
// uses in graph/op_kinds.def. No untyped slots.
#pragma once

#include "graph/dtype.hpp"
#include "graph/shape.hpp"

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace sy {

struct NoAttrs {
  bool operator==(const NoAttrs&) const = default;
};

struct ScaleAttrs {  // y = x * factor + offset
  double factor = 1.0;
  double offset = 0.0;
  bool operator==(const ScaleAttrs&) const = default;
};

struct CastAttrs {
  DType to = DType::f32;
  bool operator==(const CastAttrs&) const = default;
};

// Randomness is a pure function of (seed attribute, step input, element index): the same on
// every run and every process, and different per training step because the step is an input.
struct DropoutAttrs {
  double rate = 0.0;  // probability of dropping an element, in [0, 1)
  uint64_t seed = 0;
  bool operator==(const DropoutAttrs&) const = default;
};

struct FillAttrs {
  Shape shape;
  DType dtype = DType::f32;
  double value = 0.0;
  bool operator==(const FillAttrs&) const = default;
};

enum class Distribution : uint8_t { uniform, normal };

struct RandomAttrs {
  Shape shape;
  DType dtype = DType::f32;
  Distribution dist = Distribution::uniform;
  double a = 0.0;  // uniform: low; normal: mean
  double b = 1.0;  // uniform: high; normal: standard deviation
  uint64_t seed = 0;
  bool operator==(const RandomAttrs&) const = default;
};

struct ShapeAttrs {  // target shape (broadcast, reshape)
  Shape shape;
  bool operator==(const ShapeAttrs&) const = default;
};

struct DimsAttrs {  // dims to reduce over, or the new order (transpose)
  std::vector<std::string> dims;
  bool operator==(const DimsAttrs&) const = default;
};

struct DimAttrs {  // one dim (softmax, logsumexp, cross_entropy class dim, gather)
  Dim dim;         // name; size is checked against the input where the input has the dim
  bool operator==(const DimAttrs&) const = default;
};

struct RmsNormAttrs {
  std::string dim;  // normalized dim (d_model)
  double eps = 1e-6;
  bool operator==(const RmsNormAttrs&) const = default;
};

struct EinsumAttrs {
  std::vector<std::string> out;  // output dims, in order; input dims not listed are summed
  bool operator==(const EinsumAttrs&) const = default;
};

struct OneHotAttrs {
  Dim dim;                   // the new class dim, e.g. {experts, 8}
  DType dtype = DType::f32;  // output dtype
  bool operator==(const OneHotAttrs&) const = default;
};

struct TopKAttrs {
  std::string dim;  // dim to select along (must be the last dim of x)
  Dim k;            // output dim holding the k choices, e.g. {"k", 2}
  bool operator==(const TopKAttrs&) const = default;
};

struct CumsumAttrs {
  std::string dim;
  bool exclusive = false;
  bool reverse = false;
  bool operator==(const CumsumAttrs&) const = default;
};

struct ScatterAttrs {
  std::string index_dim;  // the dim of idx/src that indexes into out_dim
  Dim out_dim;            // replaces index_dim in the output shape
  bool operator==(const ScatterAttrs&) const = default;
};

using Attrs = std::variant<NoAttrs, ScaleAttrs, CastAttrs, DropoutAttrs, FillAttrs, RandomAttrs, ShapeAttrs,
                           DimsAttrs, DimAttrs, RmsNormAttrs, EinsumAttrs, OneHotAttrs, TopKAttrs,
                           CumsumAttrs, ScatterAttrs>;

}  // namespace sy
