// verify(): is a Graph well formed? Runs in every test and after every load.
//
// Checks, in this order (the first problem found is reported):
//   ids       value ids == index, node ids == index, every node input/output names an existing
//             value, producer/output_index agree with the producing node's outputs, leaves
//             (inputs, parameters) have a unique name, a valid shape and no producer, computed
//             values have exactly one producer, grad_of/outputs/loss name existing values
//   attrs     each node holds the attribute struct its op kind uses (op_kinds.def)
//   acyclic   the node graph (edges producer -> consumer) has no cycle (Boost.Graph)
//   order     nodes are stored in topological order: each input is produced by an earlier node
//   types     op_def(kind).infer on the stored input types gives the stored output types
//
// A problem throws sy::InputError whose message names the node (Graph::describe) or value and
// says what is wrong, e.g. "node 3 (einsum @ ffn): with inputs (...): dim 'k' has size 5 ...".
#pragma once

#include "graph/ir.hpp"

namespace sy {

void verify(const Graph& g);

}  // namespace sy
