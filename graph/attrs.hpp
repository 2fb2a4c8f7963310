// Typed attributes of ops: one struct per attribute shape; each op kind names the struct it
// uses in graph/op_kinds.def. No untyped slots. Each struct lists its fields once in fields()
// (graph/fields.hpp): the graph JSON reader and writer (graph/json.cpp) walk that list, and the
// JSON keys are the names it gives, in its order.
#pragma once

#include "graph/dtype.hpp"
#include "graph/fields.hpp"
#include "graph/shape.hpp"

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace sy {

struct NoAttrs {
  static void fields(auto&, auto&&) {}
  bool operator==(const NoAttrs&) const = default;
};

struct ScaleAttrs {  // y = x * factor + offset
  double factor = 1.0;
  double offset = 0.0;
  static void fields(auto& s, auto&& v) { v("factor", s.factor); v("offset", s.offset); }
  bool operator==(const ScaleAttrs&) const = default;
};

struct CastAttrs {
  DType to = DType::f32;
  static void fields(auto& s, auto&& v) { v("to", s.to); }
  bool operator==(const CastAttrs&) const = default;
};

// Randomness is a pure function of (seed attribute, step input, element index): the same on
// every run and every process, and different per training step because the step is an input.
struct DropoutAttrs {
  double rate = 0.0;  // probability of dropping an element, in [0, 1)
  uint64_t seed = 0;
  static void fields(auto& s, auto&& v) { v("rate", s.rate); v("seed", s.seed); }
  bool operator==(const DropoutAttrs&) const = default;
};

struct FillAttrs {
  Shape shape;
  DType dtype = DType::f32;
  double value = 0.0;
  static void fields(auto& s, auto&& v) { v("shape", s.shape); v("dtype", s.dtype); v("value", s.value); }
  bool operator==(const FillAttrs&) const = default;
};

enum class Distribution : uint8_t { uniform, normal };
SY_ENUM_NAMES(Distribution, {Distribution::uniform, "uniform"}, {Distribution::normal, "normal"})

struct RandomAttrs {
  Shape shape;
  DType dtype = DType::f32;
  Distribution dist = Distribution::uniform;
  double a = 0.0;  // uniform: low; normal: mean
  double b = 1.0;  // uniform: high; normal: standard deviation
  uint64_t seed = 0;
  static void fields(auto& s, auto&& v) {
    v("shape", s.shape);
    v("dtype", s.dtype);
    v("dist", s.dist);
    v("a", s.a);
    v("b", s.b);
    v("seed", s.seed);
  }
  bool operator==(const RandomAttrs&) const = default;
};

struct ShapeAttrs {  // target shape (broadcast, reshape)
  Shape shape;
  static void fields(auto& s, auto&& v) { v("shape", s.shape); }
  bool operator==(const ShapeAttrs&) const = default;
};

struct DimsAttrs {  // dims to reduce over, or the new order (transpose)
  std::vector<std::string> dims;
  static void fields(auto& s, auto&& v) { v("dims", s.dims); }
  bool operator==(const DimsAttrs&) const = default;
};

struct DimAttrs {  // one dim (softmax, logsumexp, cross_entropy class dim, gather)
  Dim dim;         // name; size is checked against the input where the input has the dim
  static void fields(auto& s, auto&& v) { v("dim", s.dim); }
  bool operator==(const DimAttrs&) const = default;
};

struct RmsNormAttrs {
  std::string dim;  // normalized dim (d_model)
  double eps = 1e-6;
  static void fields(auto& s, auto&& v) { v("dim", s.dim); v("eps", s.eps); }
  bool operator==(const RmsNormAttrs&) const = default;
};

struct EinsumAttrs {
  std::vector<std::string> out;  // output dims, in order; input dims not listed are summed
  static void fields(auto& s, auto&& v) { v("out", s.out); }
  bool operator==(const EinsumAttrs&) const = default;
};

struct OneHotAttrs {
  Dim dim;                   // the new class dim, e.g. {experts, 8}
  DType dtype = DType::f32;  // output dtype
  static void fields(auto& s, auto&& v) { v("dim", s.dim); v("dtype", s.dtype); }
  bool operator==(const OneHotAttrs&) const = default;
};

struct TopKAttrs {
  std::string dim;  // dim to select along (must be the last dim of x)
  Dim k;            // output dim holding the k choices, e.g. {"k", 2}
  static void fields(auto& s, auto&& v) { v("dim", s.dim); v("k", s.k); }
  bool operator==(const TopKAttrs&) const = default;
};

struct CumsumAttrs {
  std::string dim;
  bool exclusive = false;
  bool reverse = false;
  static void fields(auto& s, auto&& v) {
    v("dim", s.dim);
    v("exclusive", s.exclusive);
    v("reverse", s.reverse);
  }
  bool operator==(const CumsumAttrs&) const = default;
};

struct ScatterAttrs {
  std::string index_dim;  // the dim of idx/src that indexes into out_dim
  Dim out_dim;            // replaces index_dim in the output shape
  static void fields(auto& s, auto&& v) { v("index_dim", s.index_dim); v("out_dim", s.out_dim); }
  bool operator==(const ScatterAttrs&) const = default;
};

// How a collective combines the devices' values (all_reduce, reduce_scatter).
enum class ReduceOp : uint8_t { sum, mean, max };
SY_ENUM_NAMES(ReduceOp, {ReduceOp::sum, "sum"}, {ReduceOp::mean, "mean"}, {ReduceOp::max, "max"})

// Collectives over mesh axes (graph/parallel/lower.cpp inserts them; ops/collective.cpp defines them).
// N = the product of the axes' sizes; devices are ordered row-major over `axes` as listed.
struct CollectiveAttrs {
  std::vector<Dim> axes;        // mesh axes the collective runs over, with their sizes: {"data", 64}
  std::string gather_dim;       // all_gather, all_to_all: the dim that grows N-fold (shards concatenated)
  std::string scatter_dim;      // reduce_scatter, all_to_all, shard_slice: the dim that shrinks N-fold
  ReduceOp reduce = ReduceOp::sum;  // all_reduce, reduce_scatter
  static void fields(auto& s, auto&& v) {
    v("axes", s.axes);
    v("gather_dim", s.gather_dim);
    v("scatter_dim", s.scatter_dim);
    v("reduce", s.reduce);
  }
  bool operator==(const CollectiveAttrs&) const = default;
};

// Optimizer updates (ops/optimizer.cpp). Adafactor as in Mesh-TF optimize.py with beta1 = 0;
// t is the 0-based step input.
struct AdafactorAttrs {
  double decay_exponent = 0.8;   // second-moment decay 1 - (t+1)^-decay_exponent
  double clip_threshold = 1.0;   // update clipping d: u / max(1, RMS(u)/d); 0: no clipping
  double epsilon1 = 1e-30;       // added to g^2
  double epsilon2 = 1e-3;        // floor of the parameter scale RMS(param)
  bool parameter_scale = true;   // step = lr * max(RMS(param), epsilon2) * u (false: lr * u)
  bool factored = true;          // rank >= 2: row and column second moments over the last two dims
  static void fields(auto& s, auto&& v) {
    v("decay_exponent", s.decay_exponent);
    v("clip_threshold", s.clip_threshold);
    v("epsilon1", s.epsilon1);
    v("epsilon2", s.epsilon2);
    v("parameter_scale", s.parameter_scale);
    v("factored", s.factored);
  }
  bool operator==(const AdafactorAttrs&) const = default;
};

struct AdamWAttrs {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.0;  // decoupled: param -= lr * weight_decay * param
  static void fields(auto& s, auto&& v) {
    v("beta1", s.beta1);
    v("beta2", s.beta2);
    v("epsilon", s.epsilon);
    v("weight_decay", s.weight_decay);
  }
  bool operator==(const AdamWAttrs&) const = default;
};

using Attrs = std::variant<NoAttrs, ScaleAttrs, CastAttrs, DropoutAttrs, FillAttrs, RandomAttrs, ShapeAttrs,
                           DimsAttrs, DimAttrs, RmsNormAttrs, EinsumAttrs, OneHotAttrs, TopKAttrs,
                           CumsumAttrs, ScatterAttrs, CollectiveAttrs, AdafactorAttrs, AdamWAttrs>;

}  // namespace sy
