// Common-subexpression elimination of a graph, as XLA does it before fusion (xla/service/hlo_cse.cc):
// a node with the same kind, (canonical) inputs and attributes as an earlier node computes the same
// values (every op is a pure function of its inputs and attributes; random ops draw from counters
// of their attributes and inputs), so its outputs stand for the earlier node's. Collectives are
// not merged (each is communication of its own on a stream) nor the optimizer's update nodes
// (each updates its own parameter). Used by the simulator's fusion (pricing: a parameter cast to
// bf16 twice is cast once) and by the executor (the duplicate does not run): one rule for both.
#pragma once

#include "graph/ir.hpp"

#include <cstdint>
#include <vector>

namespace sy {

struct Duplicates {
  std::vector<int32_t> duplicate_of;  // per node: the earlier identical node, else -1
  std::vector<int32_t> canonical;     // per value: the value that stands for it (itself unless a duplicate's output)
  size_t count() const;               // duplicate nodes
};

// Whether CSE may merge nodes of kind k.
bool cse_mergeable(OpKind k);

Duplicates find_duplicates(const Graph& g);

}  // namespace sy
