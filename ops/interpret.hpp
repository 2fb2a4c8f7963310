// The reference interpreter: runs every node of a graph with its OpDef's reference forward,
// in double. The oracle for the executor's fast kernels and for finite differences.
#pragma once

#include "graph/ir.hpp"
#include "graph/tensor.hpp"

#include <map>
#include <vector>

namespace sy {

// `leaves` gives a tensor for every input and parameter the graph uses. Returns one tensor per
// value (index = ValueId). With `exact`, results are not rounded to their dtype.
std::vector<Tensor> interpret(const Graph& g, const std::map<ValueId, Tensor>& leaves, bool exact = false);

}  // namespace sy
