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
// Which operands may be sparse is decided once from the graph (graph/sparsity.hpp, the plan the
// simulator prices too: values derived from one_hot by mul, cast, transpose, reshape, broadcast,
// scale without offset, and einsums of two such values); whether they are is decided at run time
// by counting nonzeros, so dense data always takes the dense path. Results equal the dense einsum's up to the order of f32 additions: with
// one nonzero per output row (one-hot dispatch) they are identical. Structural zeros are exact
// zeros here, so a NaN or Inf in the dense operand stays in its own rows instead of spreading
// through 0·Inf products.
//
// Deferred values. The dense [G, S, E, C] tensors themselves cost more than the einsums that read
// them: each is G·S·E·C elements (42 M for 4,096 tokens, 8 experts, capacity 1,280) of which G·S·k
// are nonzero, and writing one is a pass over 84-168 MB. A value that may be sparse, is not a graph
// output, and is read only by kinds with a sparse path (einsum, cast, reduce_sum) is kept as its
// list of nonzeros only when its producer has one (one_hot, an einsum of two sparse operands, a
// cast, a masked einsum): its dense buffer (still reserved by the memory plan) is written only if
// some reader takes a dense path after all ("materialised": zero-filled, then the nonzeros stored).
// So the one-hot dispatch and combine tensors of the MoE layer, and the gradient of combine, never
// exist densely in a step; only their nonzeros do.
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

// Writes x densely into storage of type t: zero-filled, then each nonzero stored.
void store_nonzeros(const Nonzeros& x, const TensorType& t, void* data);

// out = einsum(p, q) with p given by its nonzeros `p_nz` (p's type: p_type). False when a dim of q
// is neither in p nor in out (a sum within q alone) or a dtype is not float.
// zero_fill false: out is not zero-filled first (the caller has zeroed what needs it).
bool einsum_sparse_dense(const Nonzeros& p_nz, const TensorType& p_type, ConstView q, View out, bool zero_fill = true);

// out = einsum(a, b) -> out's dims, computed at the entries of out that agree with some nonzero of
// `mask` (type mask_type) on the dims out and mask share; zero elsewhere. False when a dim is
// summed within one input alone or a dtype is not float.
// With out_nz, out.data is not written: the computed entries that are not zero go to *out_nz
// instead (by increasing flat index, each rounded as out's dtype stores it).
bool einsum_masked(ConstView a, ConstView b, const Nonzeros& mask_nz, const TensorType& mask_type, View out,
                   Nonzeros* out_nz = nullptr);

// out = einsum(p, q) from the nonzeros of both operands: every pair of nonzeros that agree on the
// dims p and q share adds its product to out at their coordinates. The result is out's nonzeros
// (by increasing flat index; the products reaching one element summed in p's order, then q's;
// each rounded as out_type's dtype stores it). False when a dim is summed within one operand alone,
// a dtype is not float, or the pairs would exceed max_pairs.
bool einsum_sparse_sparse(const Nonzeros& p_nz, const TensorType& p_type, const Nonzeros& q_nz, const TensorType& q_type,
                          const TensorType& out_type, int64_t max_pairs, Nonzeros& out_nz);

// The executor's use of the two paths: the plan from the graph and the nonzeros found this run.
class SparseEinsums {
 public:
  // kept[v]: v is a graph output (its value must be complete).
  SparseEinsums(const Graph& g, const std::vector<bool>& kept);

  void begin_run();  // forget the previous run's nonzeros

  // Runs node n through a sparse path when one applies and pays off: einsum (sparse x dense,
  // sparse x sparse, masked output), cast, one_hot and reduce_sum. False: the caller calls
  // materialize_inputs(n) and runs n densely. ptr(v): the storage of value v.
  bool run(const Node& n, const std::function<std::byte*(ValueId)>& ptr);

  // Writes the dense buffer of every deferred input of n (see "Deferred values" above).
  void materialize_inputs(const Node& n, const std::function<std::byte*(ValueId)>& ptr);

  // The nonzeros of v this run (counted on first use), or null when v is not sparse enough.
  const Nonzeros* nonzeros_of(ValueId v, const std::function<std::byte*(ValueId)>& ptr) { return nonzeros(v, ptr); }

  bool maybe_sparse(ValueId v) const { return maybe_sparse_[static_cast<size_t>(v.v)]; }
  bool deferrable(ValueId v) const { return deferrable_[static_cast<size_t>(v.v)]; }
  ValueId mask_of(NodeId n) const { return mask_[static_cast<size_t>(n.v)]; }  // invalid: none

  // Called before the sparse x dense path writes einsum n's output (p_index: which operand is
  // sparse, 0: a, 1: b): true when the hook has zeroed every element of the output that the
  // rest of the program reads and no nonzero writes (the zero tails of executor/ragged_rows.hpp),
  // so the whole output is not zero-filled; false: it is.
  using OutputZeroing = std::function<bool(const Node& n, int p_index, const Nonzeros& p)>;
  void set_output_zeroing(OutputZeroing hook) { zero_output_ = std::move(hook); }

  // This run: values kept as nonzeros only, and how many of them a dense reader materialised.
  struct RunStats {
    int64_t deferred = 0;
    int64_t materialized = 0;
  };
  const RunStats& stats() const { return stats_; }

 private:
  // dense: too many nonzeros; sparse: nonzeros known and the dense buffer written; deferred:
  // nonzeros known, dense buffer not written.
  enum class Found : uint8_t { unknown, dense, sparse, deferred };
  using Ptr = std::function<std::byte*(ValueId)>;
  // The nonzeros of v this run (counted on first use), or null when v is not sparse enough.
  const Nonzeros* nonzeros(ValueId v, const Ptr& ptr);
  void materialize(ValueId v, const Ptr& ptr);
  // Records nz_[v] as v's value: deferred when v is deferrable, else also written densely.
  void produced(ValueId v, const Ptr& ptr);
  bool run_einsum(const Node& n, const Ptr& ptr);
  bool run_cast(const Node& n, const Ptr& ptr);
  bool run_one_hot(const Node& n, const Ptr& ptr);
  bool run_reduce_sum(const Node& n, const Ptr& ptr);

  const Graph& g_;
  std::vector<bool> maybe_sparse_;  // per value
  std::vector<bool> deferrable_;    // per value: may be kept as nonzeros only
  std::vector<ValueId> mask_;       // per node: the sparse operand of its output's one reader
  std::vector<Found> found_;        // per value, this run
  std::vector<Nonzeros> nz_;        // per value, valid when found_ is sparse or deferred
  RunStats stats_;
  OutputZeroing zero_output_;
};

}  // namespace sy::exec
