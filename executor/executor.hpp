// Runs a graph on this process: memory planned by liveness, oneDNN matmuls (f32; bf16 on AVX-512 BF16 / AMX),
// TBB-parallel elementwise ops and reductions, and the reference kernels from ops/ for the rest.
#pragma once

#include "graph/ir.hpp"
#include "graph/tensor.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sy {

class Communicator;  // executor/mpi/communicator.hpp

// A leaf that takes a computed value's contents at the end of every run (a parameter and its
// update, an optimizer state and its next value). The executor writes the value straight into the
// leaf's storage (donation, as XLA's input_output_alias) when that is safe: every other reader of
// the leaf runs before the value's producer, and the producer reads the leaf, if at all, only at
// the element it writes (the optimizer kinds). Otherwise it copies the value in after the run.
struct LeafUpdate {
  ValueId leaf;
  ValueId value;
};

struct ExecutorOptions {
  int threads = 0;               // 0: all cores. Shared by oneDNN (OpenMP) and TBB, never both at once
  bool fast_kernels = true;      // false: every op through its reference forward (for testing)
  // Expert buffers computed over their routed rows only (executor/ragged_rows.hpp); false: over
  // every capacity slot, zeros included (for comparison: bench_dropless's padded arm).
  bool ragged_rows = true;
  // Called after each node with its start and end on std::chrono::steady_clock, in microseconds
  // since the clock's epoch (per-op timing for traces); unset: no timing. A node that does not
  // run (a CSE duplicate, a bf16 -> f32 cast read through) is reported with begin == end.
  std::function<void(NodeId, double t_begin_us, double t_end_us)> on_op;
  // The mesh a lowered program runs on (graph/lower): collective nodes run through it. Unset:
  // collectives are the identity, valid only over mesh axes of size 1.
  std::shared_ptr<Communicator> communicator;
  // Leaves written back after each run (their values need no arena block when written in place).
  std::vector<LeafUpdate> updates;
};

struct MemoryPlanStats {
  int64_t leaf_bytes = 0;        // inputs and parameters (persistent)
  int64_t arena_bytes = 0;       // peak of the planned intermediate arena
  int64_t unplanned_bytes = 0;   // sum of every intermediate's size (what no reuse would cost)
  int64_t buffers = 0;           // intermediate values placed
  int64_t updates_in_place = 0;  // ExecutorOptions::updates written straight into their leaves
  int64_t updates_copied = 0;    // the others, copied in after each run
};

class Executor {
 public:
  Executor(const Graph& g, ExecutorOptions opts = {});
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Leaves (inputs, parameters): set before run(); stay set across runs.
  void set(ValueId leaf, const Tensor& t);
  // Raw storage of a leaf or kept value (f32: float, bf16: uint16_t, i32: int32_t), row-major.
  void* data(ValueId v);

  void run();
  // Nodes [first, last) in program order, as run() runs them all: for a caller that does its own
  // work between two ops of the program (calibrate times a collective there). The nodes read values
  // an earlier call of the same run computed; first == 0 starts a run, last == the node count ends
  // it (run() is run_nodes(0, node count)).
  void run_nodes(size_t first, size_t last);

  // A leaf or a graph output (other values' buffers are reused); valid after run().
  Tensor get(ValueId v) const;

  const MemoryPlanStats& memory() const;

  // The last run's values kept as their nonzeros only (the one-hot dispatch and combine tensors and
  // what derives from them; executor/sparse_einsum.hpp), and how many of those a dense reader
  // needed written out after all.
  struct SparseStats {
    int64_t deferred = 0;
    int64_t materialized = 0;
  };
  SparseStats sparse_stats() const;

  // The last run's ops over expert buffers that skipped their zero tails (executor/ragged_rows.hpp):
  // how many, and the rows of their tailed operands, skipped and in all.
  struct RaggedStats {
    int64_t ops = 0;
    int64_t rows_skipped = 0;
    int64_t rows = 0;
    int64_t all_to_alls = 0;  // of the ops: expert-parallel all_to_alls that moved routed rows only
  };
  RaggedStats ragged_stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sy
