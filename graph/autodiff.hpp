// Reverse-mode autodiff: a reverse walk over the forward nodes that emits ordinary nodes (each
// op's OpDef::backward), so backward work is priced and executed like any forward op.
#pragma once

#include "graph/ir.hpp"

#include <map>
#include <span>

namespace sy {

// Appends the gradient of g.loss with respect to each value in `wrt` (leaves; all parameters
// when empty). Each gradient value gets grad_of = its leaf and becomes the graph output
// "grad/<leaf name>"; a leaf the loss does not depend on gets a zero gradient. New nodes are
// flagged backward and keep the scope of the forward node they differentiate.
// Throws InputError if the graph has no loss or a gradient must flow through an op whose
// backward is not implemented (naming the node).
std::map<ValueId, ValueId> gradients(Graph& g, std::span<const ValueId> wrt = {});

}  // namespace sy
