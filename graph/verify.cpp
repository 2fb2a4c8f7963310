#include "graph/verify.hpp"

#include "graph/error.hpp"
#include "graph/op_def.hpp"

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/depth_first_search.hpp>
#include <boost/graph/topological_sort.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace sy {
namespace {

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

// Name of each attribute struct, for messages (one overload per struct: std::visit below does
// not compile if one is missing).
const char* struct_name(const NoAttrs&) { return "NoAttrs"; }
const char* struct_name(const ScaleAttrs&) { return "ScaleAttrs"; }
const char* struct_name(const CastAttrs&) { return "CastAttrs"; }
const char* struct_name(const DropoutAttrs&) { return "DropoutAttrs"; }
const char* struct_name(const FillAttrs&) { return "FillAttrs"; }
const char* struct_name(const RandomAttrs&) { return "RandomAttrs"; }
const char* struct_name(const ShapeAttrs&) { return "ShapeAttrs"; }
const char* struct_name(const DimsAttrs&) { return "DimsAttrs"; }
const char* struct_name(const DimAttrs&) { return "DimAttrs"; }
const char* struct_name(const RmsNormAttrs&) { return "RmsNormAttrs"; }
const char* struct_name(const EinsumAttrs&) { return "EinsumAttrs"; }
const char* struct_name(const OneHotAttrs&) { return "OneHotAttrs"; }
const char* struct_name(const TopKAttrs&) { return "TopKAttrs"; }
const char* struct_name(const CumsumAttrs&) { return "CumsumAttrs"; }
const char* struct_name(const ScatterAttrs&) { return "ScatterAttrs"; }
const char* struct_name(const CollectiveAttrs&) { return "CollectiveAttrs"; }
const char* struct_name(const AdafactorAttrs&) { return "AdafactorAttrs"; }
const char* struct_name(const AdamWAttrs&) { return "AdamWAttrs"; }
const char* struct_name(const Attrs& a) {
  return std::visit([](const auto& s) { return struct_name(s); }, a);
}

bool value_exists(const Graph& g, ValueId id) { return id.v >= 0 && static_cast<size_t>(id.v) < g.values.size(); }
bool node_exists(const Graph& g, NodeId id) { return id.v >= 0 && static_cast<size_t>(id.v) < g.nodes.size(); }

// "value 7 'ffn/w1'" or "value 9"
std::string describe_value(const Graph& g, ValueId id) {
  if (value_exists(g, id) && !g.value(id).name.empty()) return fmt::format("value {} '{}'", id.v, g.value(id).name);
  return fmt::format("value {}", id.v);
}

std::string ids_list(const std::vector<ValueId>& ids) {
  std::string r;
  for (ValueId id : ids) r += fmt::format("{}{}", r.empty() ? "" : ", ", id.v);
  return "[" + r + "]";
}

std::string types_list(const std::vector<TensorType>& ts) {
  std::string r;
  for (const TensorType& t : ts) r += (r.empty() ? "" : ", ") + to_string(t);
  return r;
}

// A leaf's shape: dims named, unique, sizes positive.
void verify_leaf_shape(const Graph& g, const Value& v) {
  const Shape& s = v.type.shape;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].name.empty()) fail("{}: dim {} of {} has an empty name", describe_value(g, v.id), i, to_string(s));
    if (s[i].size <= 0)
      fail("{}: dim '{}' has size {} (sizes must be positive)", describe_value(g, v.id), s[i].name, s[i].size);
    for (size_t j = 0; j < i; ++j)
      if (s[j].name == s[i].name)
        fail("{}: dim '{}' appears twice in {} (dim names must be unique)", describe_value(g, v.id), s[i].name,
             to_string(s));
  }
}

void verify_values(const Graph& g) {
  std::map<std::string, ValueId> leaf_names;
  for (size_t i = 0; i < g.values.size(); ++i) {
    const Value& v = g.values[i];
    if (v.id.v != static_cast<int32_t>(i))
      fail("value at index {} has id {} (value ids must equal their index)", i, v.id.v);
    if (v.role == ValueRole::computed) {
      if (!node_exists(g, v.producer))
        fail("{}: computed value whose producer node {} does not exist (the graph has {} nodes)", describe_value(g, v.id),
             v.producer.v, g.nodes.size());
      const Node& p = g.node(v.producer);
      const bool listed = v.output_index >= 0 && static_cast<size_t>(v.output_index) < p.outputs.size() &&
                          p.outputs[static_cast<size_t>(v.output_index)] == v.id;
      if (!listed)
        fail("{}: records itself as output {} of {}, but that node's outputs are {}", describe_value(g, v.id),
             v.output_index, g.describe(v.producer), ids_list(p.outputs));
    } else {
      if (v.producer.valid())
        fail("{}: {} leaf with producer node {} (leaves have no producer)", describe_value(g, v.id), role_name(v.role),
             v.producer.v);
      if (v.name.empty()) fail("value {}: {} leaf without a name (leaves need a unique name)", v.id.v, role_name(v.role));
      auto [it, fresh] = leaf_names.emplace(v.name, v.id);
      if (!fresh) fail("{}: leaf name is also used by value {} (leaf names must be unique)", describe_value(g, v.id), it->second.v);
      verify_leaf_shape(g, v);
    }
    if (v.grad_of.valid() && !value_exists(g, v.grad_of))
      fail("{}: grad_of names value {}, which does not exist (the graph has {} values)", describe_value(g, v.id),
           v.grad_of.v, g.values.size());
  }
}

void verify_node_ids(const Graph& g) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.id.v != static_cast<int32_t>(i)) fail("node at index {} has id {} (node ids must equal their index)", i, n.id.v);
    for (size_t j = 0; j < n.inputs.size(); ++j)
      if (!value_exists(g, n.inputs[j]))
        fail("{}: input {} is value {}, which does not exist (the graph has {} values)", g.describe(n.id), j,
             n.inputs[j].v, g.values.size());
    for (size_t j = 0; j < n.outputs.size(); ++j) {
      const ValueId out = n.outputs[j];
      if (!value_exists(g, out))
        fail("{}: output {} is value {}, which does not exist (the graph has {} values)", g.describe(n.id), j, out.v,
             g.values.size());
      const Value& v = g.value(out);
      if (v.role != ValueRole::computed)
        fail("{}: output {} is {}, a {} leaf (node outputs must be computed values)", g.describe(n.id), j,
             describe_value(g, out), role_name(v.role));
      if (v.producer != n.id || v.output_index != static_cast<int32_t>(j))
        fail("{}: output {} is {}, but that value records producer node {} output {}", g.describe(n.id), j,
             describe_value(g, out), v.producer.v, v.output_index);
    }
  }
}

void verify_outputs_and_loss(const Graph& g) {
  std::map<std::string, size_t> names;
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    const GraphOutput& o = g.outputs[i];
    if (o.name.empty()) fail("graph output {} has an empty name", i);
    if (!names.emplace(o.name, i).second) fail("graph output name '{}' is used twice (output names must be unique)", o.name);
    if (!value_exists(g, o.value))
      fail("graph output '{}' is value {}, which does not exist (the graph has {} values)", o.name, o.value.v,
           g.values.size());
  }
  if (g.loss.v == -1) return;  // no loss
  if (!value_exists(g, g.loss))
    fail("the loss is value {}, which does not exist (the graph has {} values)", g.loss.v, g.values.size());
  const TensorType& t = g.type(g.loss);
  if (!t.shape.empty() || !is_float(t.dtype))
    fail("the loss is {} of type {} (the loss must be a float scalar)", describe_value(g, g.loss), to_string(t));
}

void verify_attrs(const Graph& g) {
  for (const Node& n : g.nodes)
    if (!attrs_match(n.kind, n.attrs))
      fail("{}: attributes are {} but {} takes {}", g.describe(n.id), struct_name(n.attrs), op_name(n.kind),
           struct_name(default_attrs(n.kind)));
}

// ---- acyclicity with Boost.Graph: vertices are nodes, edges producer -> consumer ----

using NodeGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS>;
using NodeVertex = boost::graph_traits<NodeGraph>::vertex_descriptor;
using NodeEdge = boost::graph_traits<NodeGraph>::edge_descriptor;

// Records the DFS tree; on the first back edge u -> v (v is an ancestor of u on the DFS stack)
// the cycle is v -> ... -> u -> v, read off the tree parents.
struct CycleRecorder : boost::default_dfs_visitor {
  std::vector<NodeVertex>* parent;
  std::vector<NodeVertex>* cycle;

  void tree_edge(NodeEdge e, const NodeGraph& bg) const { (*parent)[boost::target(e, bg)] = boost::source(e, bg); }
  void back_edge(NodeEdge e, const NodeGraph& bg) const {
    if (!cycle->empty()) return;
    const NodeVertex u = boost::source(e, bg), v = boost::target(e, bg);
    for (NodeVertex w = u; w != v; w = (*parent)[w]) cycle->push_back(w);
    cycle->push_back(v);
    std::reverse(cycle->begin(), cycle->end());
  }
};

std::vector<NodeVertex> find_cycle(const NodeGraph& bg) {
  std::vector<NodeVertex> parent(boost::num_vertices(bg)), cycle;
  CycleRecorder rec;
  rec.parent = &parent;
  rec.cycle = &cycle;
  boost::depth_first_search(bg, boost::visitor(rec));
  return cycle;
}

void verify_acyclic(const Graph& g) {
  NodeGraph bg(g.nodes.size());
  for (const Node& n : g.nodes)
    for (ValueId in : n.inputs)
      if (NodeId p = g.value(in).producer; p.valid())
        boost::add_edge(static_cast<NodeVertex>(p.v), static_cast<NodeVertex>(n.id.v), bg);
  std::vector<NodeVertex> order;
  try {
    boost::topological_sort(bg, std::back_inserter(order));
  } catch (const boost::not_a_dag&) {
    const std::vector<NodeVertex> cycle = find_cycle(bg);
    SY_CHECK(!cycle.empty(), "topological_sort found a cycle that depth_first_search did not");
    std::string path;
    for (NodeVertex v : cycle) path += g.describe(NodeId{static_cast<int32_t>(v)}) + " -> ";
    path += g.describe(NodeId{static_cast<int32_t>(cycle.front())});
    fail("the graph has a cycle: {} (each arrow: an output of the left node is an input of the right one; a graph "
         "must be acyclic)",
         path);
  }
}

void verify_order(const Graph& g) {
  for (const Node& n : g.nodes)
    for (size_t j = 0; j < n.inputs.size(); ++j)
      if (NodeId p = g.value(n.inputs[j]).producer; p.valid() && p.v >= n.id.v)
        fail("{}: input {} ({}) is produced by {}, which comes later (nodes must be stored in topological order)",
             g.describe(n.id), j, describe_value(g, n.inputs[j]), g.describe(p));
}

void verify_types(const Graph& g) {
  for (const Node& n : g.nodes) {
    std::vector<TensorType> in;
    for (ValueId v : n.inputs) in.push_back(g.type(v));
    std::vector<TensorType> out;
    try {
      out = op_def(n.kind).infer(in, n.attrs);
    } catch (const InputError& e) {
      fail("{}: with inputs ({}): {}", g.describe(n.id), types_list(in), e.what());
    }
    if (out.size() != n.outputs.size())
      fail("{}: has {} outputs but {} with inputs ({}) produces {}", g.describe(n.id), n.outputs.size(), op_name(n.kind),
           types_list(in), out.size());
    for (size_t j = 0; j < out.size(); ++j)
      if (out[j] != g.type(n.outputs[j]))
        fail("{}: output {} ({}) is stored as {} but inputs ({}) give {}", g.describe(n.id), j,
             describe_value(g, n.outputs[j]), to_string(g.type(n.outputs[j])), types_list(in), to_string(out[j]));
  }
}

}  // namespace

void verify(const Graph& g) {
  verify_values(g);
  verify_node_ids(g);
  verify_outputs_and_loss(g);
  verify_attrs(g);
  verify_acyclic(g);
  verify_order(g);
  verify_types(g);
}

}  // namespace sy
