// Memory planning by liveness. Private to executor/.
//
// Every computed value lives in one arena from the node that produces it to its last use
// (values in Graph::outputs and Graph::loss: to the end of the run). Walking the nodes in order,
// each node first takes blocks for its outputs and its workspaces (kernel temporaries), then
// gives back its workspaces and every value whose last use it was. Blocks are placed greedily by
// best fit over the freed blocks (smallest block that fits, lowest offset on ties; freed
// neighbours merge), growing the arena only when nothing fits. Because a node's outputs are
// placed before its inputs are freed, an op's outputs never alias its inputs.
#pragma once

#include "graph/ir.hpp"

#include <cstdint>
#include <vector>

namespace sy::exec {

inline constexpr int64_t kArenaAlignment = 64;  // bytes; offsets and sizes are multiples of it

struct MemoryPlan {
  std::vector<int64_t> value_offset;                 // per value; -1 for leaves
  std::vector<std::vector<int64_t>> workspace_offset;  // per node, per workspace; -1 when 0 bytes
  std::vector<bool> kept;                            // per value: an output or the loss
  int64_t arena_bytes = 0;                           // peak end of any block
  int64_t unplanned_bytes = 0;                       // sum of every block's aligned size
  int64_t buffers = 0;                               // computed values placed
};

// `workspace_bytes[node]`: the temporaries node needs while it runs (may be empty).
// `in_leaf[value]` (empty: none): values stored in a leaf's storage (updates written in place),
// given no block (offset -1).
MemoryPlan plan_memory(const Graph& g, const std::vector<std::vector<int64_t>>& workspace_bytes,
                       const std::vector<bool>& in_leaf = {});

}  // namespace sy::exec
