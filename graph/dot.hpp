// Graphviz export of a graph.
//
// to_dot: ops are boxes labelled with the op name and output types, filled by op class
// (OpDef::op_class: matmul, elementwise, reduction, index, layout); backward nodes are dashed.
// Leaves (inputs, parameters) are ellipses labelled with name and type. Edges run producer ->
// consumer, one per node input. Scopes become nested clusters: a node in "encoder/layer_0/ffn"
// sits in cluster ffn inside layer_0 inside encoder; a leaf sits in the cluster of its name's
// prefix ("encoder/layer_0/wq" -> encoder/layer_0). Graph outputs are named in their
// producer's label. Output is deterministic (graph order).
//
// render_svg: lays DOT text out with Graphviz's "dot" engine (libgvc) and returns the SVG.
#pragma once

#include "graph/ir.hpp"

#include <string>

namespace sy {

std::string to_dot(const Graph& g);

// Throws InputError if the DOT text does not parse, InternalError if Graphviz cannot lay out or
// render it (missing plugins).
std::string render_svg(const std::string& dot);

}  // namespace sy
