// Counting from the graph alone: nodes, values, parameters and FLOPs (OpDef::cost), in total and
// split by top-level scope. Parameters are counted in elements; FLOPs count a multiply-add as 2.
#pragma once

#include "graph/ir.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace sy {

// Counts for one top-level scope: "encoder" holds everything under "encoder/..."; nodes with an
// empty scope and parameters whose name has no '/' fall under "" (the root).
struct ScopeCounts {
  std::string scope;
  int64_t nodes = 0;
  int64_t parameters = 0;     // elements of parameter values named under the scope
  double forward_flops = 0;   // over nodes with backward == false
  double total_flops = 0;     // over all nodes (forward, backward, optimizer)
};

struct GraphCounts {
  int64_t nodes = 0;
  int64_t forward_nodes = 0;
  int64_t backward_nodes = 0;
  int64_t values = 0;
  int64_t inputs = 0;            // input leaves
  int64_t parameter_tensors = 0;  // parameter leaves
  int64_t parameters = 0;        // elements of all parameter leaves
  double forward_flops = 0;
  double total_flops = 0;
  std::vector<ScopeCounts> by_scope;  // in order of first appearance (leaves, then nodes)
};

GraphCounts count_graph(const Graph& g);

int64_t parameter_count(const Graph& g);
double forward_flops(const Graph& g);
double total_flops(const Graph& g);

// The first component of a scope path: "encoder/layer_0/ffn" -> "encoder"; "" -> "".
std::string top_level_scope(const std::string& path);

}  // namespace sy
