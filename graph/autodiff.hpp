// Reverse-mode autodiff: a reverse walk over the forward nodes that emits ordinary nodes (each
// op's OpDef::backward), so backward work is priced and executed like any forward op.
#pragma once

#include "graph/fields.hpp"
#include "graph/ir.hpp"

#include <map>
#include <span>
#include <string>

namespace sy {

// Rematerialisation (activation checkpointing): which forward values inside a layer the backward
// pass reads as saved and which it recomputes. A layer is a rematerialisation segment: the nodes
// whose scope lies under one "layer_NN" scope ("decoder/layer_03/...", remat_segment); nodes
// outside every layer (embeddings, final norm, loss) are never recomputed.
//   none   every value the backward reads stays live from the forward pass (no recompute)
//   layer  only the layer's inputs are kept; everything else in the layer is recomputed when the
//          backward pass reaches it (Mesh-TF's recompute_grad on each layer; T5X/MaxText
//          remat_policy "full"): least memory, one more forward pass of every layer
//   dots   the outputs of einsums without batch dims (no dim shared by both operands and the
//          output: the projections, not attention scores nor per-expert matmuls) are kept, the
//          rest recomputed (jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims; T5X/
//          MaxText remat_policy "minimal")
// Recomputed nodes are emitted just before the layer's backward nodes, flagged backward, with
// every input they take from outside the recomputation passed through `after` (an optimization
// barrier, ops/layout.cpp) with the gradient arriving at the layer: like jax.checkpoint's
// opt-barrier, this keeps any schedule from running the recompute early (which would keep its
// values live and save nothing) and keeps CSE from merging it with the forward pass. Random ops
// (dropout, the random routing policy) hash (seed, step, index), so the recompute draws the same
// numbers and the gradients are those without rematerialisation.
enum class Remat : uint8_t { none, layer, dots };
SY_ENUM_NAMES(Remat, {Remat::none, "none"}, {Remat::layer, "layer"}, {Remat::dots, "dots"})

// The segment of a forward node's scope: the scope up to its first "layer_" component
// ("decoder/layer_03/moe/router" -> "decoder/layer_03"), or "" outside every layer.
std::string remat_segment(const std::string& scope);

// Appends the gradient of g.loss with respect to each value in `wrt` (leaves; all parameters
// when empty). Each gradient value gets grad_of = its leaf and becomes the graph output
// "grad/<leaf name>"; a leaf the loss does not depend on gets a zero gradient. New nodes are
// flagged backward and keep the scope of the forward node they differentiate.
// `remat`: the rematerialisation policy (above).
// Throws InputError if the graph has no loss or a gradient must flow through an op whose
// backward is not implemented (naming the node).
std::map<ValueId, ValueId> gradients(Graph& g, std::span<const ValueId> wrt = {}, Remat remat = Remat::none);

}  // namespace sy
