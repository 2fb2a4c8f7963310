// Einsums over mostly-zero operands, without the dense contraction. Private to executor/.
//
// The MoE layer is built Mesh-TF style (graph/models/moe.cpp): routing produces one-hot dispatch and
// combine tensors [G, S, E, C], and dense einsums move tokens into and out of expert buffers
// (G·S·E·C·D multiply-adds each, forward and backward). The graph keeps that form, because it is
// what the simulator prices; the executor recognises it at run time:
//
//   sparse x dense   out = einsum(p, q) where p has few nonzeros: out starts at zero and every
//                    nonzero p[i] adds p[i] · q[i's dims shared with q, Y] to out[i's dims in
//                    out, Y] (Y: q's dims not in p). O(nnz(p) · |Y|) instead of O(|out| · |K|).
//                    The nonzeros of one out row are added in p's row-major order.
//   masked output    out = einsum(a, b) whose only reader (possibly through casts) is an einsum
//                    with a sparse operand `mask`: out is computed only at the entries that agree
//                    with a nonzero of `mask` on the dims they share (the only entries whose
//                    products with `mask` are not zero) and is zero elsewhere.
//
// Which operands may be sparse is decided once from the graph (values derived from one_hot by
// mul, cast, transpose, reshape, broadcast, scale without offset, and einsums of two such
// values); whether they are is
// decided at run time by counting nonzeros, so dense data always takes the dense path. Results
// equal the dense einsum's up to the order of f32 additions: with one nonzero per output row
// (one-hot dispatch) they are identical. Structural zeros are exact zeros here, so a NaN or Inf
// in the dense operand stays in its own rows instead of spreading through 0·Inf products.
#pragma once

#include "executor/kernels.hpp"
#include "graph/ir.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace sy::exec {

// The nonzero elements of a float tensor (NaN counts as nonzero), by increasing flat index.
struct Nonzeros {
  std::vector<int64_t> index;
  std::vector<float> value;
};

// Fills `out` with the nonzeros of x; false (out unspecified) when there are more than max_count.
bool find_nonzeros(ConstView x, int64_t max_count, Nonzeros& out);

// out = einsum(p, q) with p given by its nonzeros `p_nz` (p's type: p_type). False when a dim of q
// is neither in p nor in out (a sum within q alone) or a dtype is not float.
bool einsum_sparse_dense(const Nonzeros& p_nz, const TensorType& p_type, ConstView q, View out);

// out = einsum(a, b) -> out's dims, computed at the entries of out that agree with some nonzero of
// `mask` (type mask_type) on the dims out and mask share; zero elsewhere. False when a dim is
// summed within one input alone or a dtype is not float.
bool einsum_masked(ConstView a, ConstView b, const Nonzeros& mask_nz, const TensorType& mask_type, View out);

// The executor's use of the two paths: the plan from the graph and the nonzeros found this run.
class SparseEinsums {
 public:
  // kept[v]: v is a graph output (its value must be complete).
  SparseEinsums(const Graph& g, const std::vector<bool>& kept);

  void begin_run();  // forget the previous run's nonzeros

  // Runs einsum node n through a sparse path when one applies and pays off; false: the caller
  // runs it densely. ptr(v): the storage of value v.
  bool run(const Node& n, const std::function<std::byte*(ValueId)>& ptr);

  // Runs cast node n when its input has few nonzeros: the output is zero-filled and the nonzeros
  // converted (each rounded as the dense cast rounds it), and the output's nonzeros are then known
  // without a scan. False: the caller casts densely.
  bool run_cast(const Node& n, const std::function<std::byte*(ValueId)>& ptr);

  bool maybe_sparse(ValueId v) const { return maybe_sparse_[static_cast<size_t>(v.v)]; }
  ValueId mask_of(NodeId n) const { return mask_[static_cast<size_t>(n.v)]; }  // invalid: none

 private:
  enum class Found : uint8_t { unknown, dense, sparse };
  // The nonzeros of v this run (counted on first use), or null when v is not sparse enough.
  const Nonzeros* nonzeros(ValueId v, const std::function<std::byte*(ValueId)>& ptr);

  const Graph& g_;
  std::vector<bool> maybe_sparse_;  // per value
  std::vector<ValueId> mask_;       // per node: the sparse operand of its output's one reader
  std::vector<Found> found_;        // per value, this run
  std::vector<Nonzeros> nz_;        // per value, valid when found_ is sparse
};

}  // namespace sy::exec
