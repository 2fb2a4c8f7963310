// Ragged rows: the executor's expert computation over routed rows only. Private to executor/.
//
// The MoE graph keeps Mesh-TF's capacity-shaped expert buffers [E, G, C, D] (what the simulator
// prices; moe.dropless sets C = S). The executor tracks, per value and run, the zero tails of
// those buffers (executor/row_tails.hpp) and skips them:
//
//   produced by   the sparse x dense einsum that moves tokens into the buffers (and d expert_out in
//                 the backward pass): block extents = 1 + the last slot a nonzero of the one-hot
//                 operand reaches, its dims before the slot dim all in the one-hot operand
//   carried by    einsums whose matmul rows are the tailed rows (x W: the rows before the tails
//                 only, EinsumKernel::run_ragged); element-wise ops with f(0) = 0 on same-shaped
//                 operands (relu, gelu, cast, scale without offset; mul: the shorter extent;
//                 relu_grad and gelu_grad: dy's; add and sub: the longer, the other operand zeroed
//                 up to it), each over the rows before its output's extents; a reshape that keeps
//                 the blocks of rows (moe.group_dispatch's [EG, E/EG, G, C, D] <-> [E, G, C, D])
//   moved by      the expert-parallel all_to_all (executor/mpi/ragged_all_to_all.hpp): the rows
//                 before the tails only, in variable-size blocks
//   ended by      einsums summing over the tailed rows (weight gradients: the products of each
//                 block's rows before its extent, accumulated)
//
// The sparse paths (combine, and the backward pass's d dispatch and d x) read a tailed operand only
// at the slots their one-hot operand or mask holds: when those all lie before the tails, they read
// it as it is. Every other reader (reductions, the other collectives, graph outputs) sees the value
// materialised first: its unspecified tail rows zero-filled. Results are those of the dense ops
// up to the order of f32 additions in a weight gradient's blocks (a product with a zero row adds
// nothing).
#pragma once

#include "executor/einsum.hpp"
#include "executor/row_tails.hpp"
#include "executor/sparse_einsum.hpp"
#include "graph/ir.hpp"

#include <cstddef>
#include <functional>
#include <vector>

namespace sy::exec {

class RaggedRows {
 public:
  explicit RaggedRows(const Graph& g);

  void begin_run();  // forget the previous run's tails

  using Ptr = std::function<std::byte*(ValueId)>;

  // Runs n over the rows before its inputs' tails when n is an element-wise op that carries them
  // (see above); false: nothing was run.
  bool run_elementwise(const Node& n, const Ptr& ptr);

  // Runs einsum n through its kernel's ragged path when an input has tails; false: nothing run.
  bool run_einsum(const Node& n, const EinsumKernel& k, dnnl::stream& stream, const Ptr& ptr);

  // Before the sparse x dense path writes einsum n's output (SparseEinsums::OutputZeroing): when
  // the output has blocks of rows (see "produced by"), records its tails from the sparse operand's
  // nonzeros and zero-fills only the rows before them; false (nothing done) otherwise.
  bool zero_sparse_dense_output(const Node& n, int p_index, const Nonzeros& p, const Ptr& ptr);

  // Whether the sparse paths of einsum n, reading its tailed inputs only at the coordinates of the
  // nonzeros `nz` of its sparse operand or mask p, stay before every tail (then nothing needs
  // zero-filling: combine reads expert_out at the slots dispatch filled).
  bool covers(const Node& n, ValueId p, const Nonzeros& nz) const;

  // Zero-fills the unspecified tail rows of every input of n (a reader that does not know tails).
  void materialize_inputs(const Node& n, const Ptr& ptr);
  // The same for one value (a graph output at the end of a run).
  void materialize(ValueId v, const Ptr& ptr);

  bool has_tails(ValueId v) const { return tails_[static_cast<size_t>(v.v)].valid(); }
  const RowTails& tails(ValueId v) const { return tails_[static_cast<size_t>(v.v)]; }
  // v's tails, set by an op run elsewhere over the rows before them (the ragged all_to_all).
  void set_tails(ValueId v, RowTails t);

  // This run: ops that ran over tails, and the rows they skipped (summed over blocks).
  struct RunStats {
    int64_t ops = 0;
    int64_t rows_skipped = 0;
    int64_t rows = 0;  // rows of those ops' tailed operands, skipped or not
    int64_t all_to_alls = 0;  // of those ops, all_to_alls that moved the rows before the tails only
  };
  const RunStats& stats() const { return stats_; }

 private:
  void record(const RowTails& t);
  // Zero-fills rows [zeroed, upto) of every block of v's tails; upto < 0: to the end of the block.
  void zero_up_to(ValueId v, const std::vector<int64_t>* upto, const Ptr& ptr);

  const Graph& g_;
  std::vector<RowTails> tails_;  // per value, this run
  RunStats stats_;
};

}  // namespace sy::exec
