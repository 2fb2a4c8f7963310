// A global graph run on this device of a mesh, addressed by the global graph's value ids.
//
// With ExecutorOptions::communicator set, the graph is lowered for the communicator's mesh and
// the given layout (graph/lower) and the Executor runs this device's program; leaves are given
// and read as global tensors (each device keeps its block), outputs are read as global tensors
// assembled from the devices' blocks. Without a communicator it is the Executor on the graph as
// is (bit for bit the single-process run).
//
// Calls that may communicate (data(), get(), copy() of differently split values, run()) are
// collectives over the whole mesh: every device makes the same calls in the same order.
#pragma once

#include "executor/executor.hpp"
#include "graph/parallel/lower.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

namespace sy {

class MeshExecutor {
 public:
  // Throws InputError for an illegal layout (graph/parallel/layout.hpp check_layout).
  // opts.updates are in the global graph's ids; after each run() every leaf holds its update.
  MeshExecutor(const Graph& global, const Layout& layout, ExecutorOptions opts);

  bool distributed() const { return lowered_.has_value(); }
  const Graph& program() const;              // the graph the Executor runs (the lowering, or the graph)
  const Lowered* lowered() const { return lowered_ ? &*lowered_ : nullptr; }

  // A leaf as a global tensor; this device keeps its block.
  void set(ValueId leaf, const Tensor& global);
  // A leaf's current global value, row-major in its dtype: read it, or write it and the next run()
  // (or commit()) gives each device its block. Collective when the leaf is split.
  void* data(ValueId leaf);
  // Hands written data() buffers to the devices (run() does it first).
  void commit();

  // A leaf or a graph output as a global tensor (after run()).
  Tensor get(ValueId v) const;
  // Copies graph output `src` into leaf `dst` of the same type (the new parameter into the
  // parameter): locally when both are split alike, else through the global tensor.
  void copy(ValueId dst, ValueId src);
  // Leaf `dst` of this program from leaf `src` of another program of this mesh.
  void copy_from(MeshExecutor& other, ValueId src, ValueId dst);

  void run();

  // This device's program's memory plan (Executor::memory).
  const MemoryPlanStats& memory() const { return ex_->memory(); }
  // The last run's ops over zero tails on this device (Executor::ragged_stats).
  Executor::RaggedStats ragged_stats() const { return ex_->ragged_stats(); }

 private:
  ValueId local(ValueId v) const;  // the lowered value holding global value v (leaf or output)
  const Sharding& sharding(ValueId local_v) const;

  Graph global_;
  std::shared_ptr<Communicator> comm_;
  std::optional<Lowered> lowered_;
  std::unique_ptr<Executor> ex_;
  std::vector<ValueId> output_of_;             // per global value: its lowered graph output, if it is one
  std::vector<std::vector<std::byte>> staging_;  // per global leaf: its global buffer handed out by data()
  std::vector<size_t> pending_;                // global leaves whose staging waits for commit()
  std::vector<LeafUpdate> global_updates_;     // updates between values split differently
};

}  // namespace sy
