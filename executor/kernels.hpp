// Fast CPU kernels of the executor on raw typed buffers (f32: float, bf16: uint16_t): TBB-parallel
// elementwise ops, reductions, softmax and dim permutation. Private to executor/.
//
// Each kernel computes in f32 (sums accumulate in double) and rounds on store to the output
// dtype, matching the reference forwards in ops/*.cpp, which compute in double and round on
// store. exp, tanh (gelu) and softmax use a vectorised f32 exp (Cephes polynomial, within 2 ulp),
// compiled for AVX-512, AVX2 and baseline x86-64; the variants give identical bits. A kernel returns false when its fast path does not cover the shapes or dtypes at hand;
// the caller then runs the reference forward instead.
#pragma once

#include "graph/attrs.hpp"
#include "graph/shape.hpp"

#include <string>
#include <vector>

namespace sy::exec {

// A value's storage: row-major data at the value's dtype.
struct ConstView {
  const void* data;
  const TensorType& type;
};
struct View {
  void* data;
  const TensorType& type;
};

enum class UnaryOp { scale, relu, gelu, exp, log, rsqrt, cast };
enum class BinaryOp {
  add, sub, mul, div,  // a (op) b, b broadcast into a by name
  relu_grad,           // (x, dy) -> dy * (x > 0)
  gelu_grad,           // (x, dy) -> dy * gelu'(x)
};
enum class ReduceOp { sum, mean, max };

// y = op(x); `s` is used by UnaryOp::scale only. Float dtypes.
bool unary(UnaryOp op, const ScaleAttrs& s, ConstView x, View y);

// y = op(a, b) with y shaped like a and b broadcast into a by name (b's dims are a subset of a's,
// in any order). Every such case is fast: b's dims a trailing suffix of a's (b repeats along a's
// leading dims; a scalar b is the empty suffix) is one flat loop; otherwise per row of a's last
// dim, with b's offset from its strides.
bool binary(BinaryOp op, ConstView a, ConstView b, View y);

// y = op over `dims` of x, y = x without `dims` (order kept). Fast case: `dims` are contiguous in
// x (x viewed as [outer, reduced, inner]); covers reductions over the trailing or leading dims.
bool reduce(ReduceOp op, const std::vector<std::string>& dims, ConstView x, View y);

// Softmax over `dim`. Fast case: `dim` is x's last dim.
bool softmax(const std::string& dim, ConstView x, View y);

// Per-row loss logsumexp(logits) - logits[label] over `dim`, labels i32. Fast case: `dim` is the
// last dim and every label is in range (else the reference reports the bad label).
bool cross_entropy(const std::string& dim, ConstView logits, ConstView labels, View loss);

// y [ids..., n] = one-hot rows of the i32 ids (an id outside [0, n) gives a zero row).
bool one_hot(ConstView ids, View y);

// y = x * rsqrt(mean_dim x² + eps) * g. Fast case: `dim` is x's last dim.
bool rms_norm(const std::string& dim, double eps, ConstView x, ConstView g, View y);

// dst = src with its dims reordered to dst's order (matched by name), converting the dtype
// (f32 <-> bf16) on the way. Requires dst's dims to be a permutation of src's.
void permute_copy(ConstView src, View dst);

}  // namespace sy::exec
