#include "graph/models/count.hpp"

#include "graph/checked_math.hpp"
#include "graph/op_def.hpp"

namespace sy {
namespace {

double node_flops(const Graph& g, const Node& n) {
  std::vector<TensorType> in, out;
  for (ValueId v : n.inputs) in.push_back(g.type(v));
  for (ValueId v : n.outputs) out.push_back(g.type(v));
  return op_def(n.kind).cost(in, out, n.attrs).flops;
}

ScopeCounts& scope_entry(std::vector<ScopeCounts>& scopes, const std::string& name) {
  for (ScopeCounts& s : scopes)
    if (s.scope == name) return s;
  scopes.push_back(ScopeCounts{name});
  return scopes.back();
}

// A leaf's scope is its name's prefix: "encoder/layer_0/wq" -> "encoder/layer_0".
std::string leaf_scope(const Value& v) {
  const size_t slash = v.name.rfind('/');
  return slash == std::string::npos ? std::string() : v.name.substr(0, slash);
}

}  // namespace

std::string top_level_scope(const std::string& path) { return path.substr(0, path.find('/')); }

GraphCounts count_graph(const Graph& g) {
  GraphCounts c;
  c.nodes = static_cast<int64_t>(g.nodes.size());
  c.values = static_cast<int64_t>(g.values.size());
  for (const Value& v : g.values) {
    if (v.role == ValueRole::input) ++c.inputs;
    if (v.role != ValueRole::parameter) continue;
    const int64_t n = num_elements(v.type.shape);
    ++c.parameter_tensors;
    c.parameters = checked_add(c.parameters, n, "the graph's parameter count");
    int64_t& in_scope = scope_entry(c.by_scope, top_level_scope(leaf_scope(v))).parameters;
    in_scope = checked_add(in_scope, n, "a scope's parameter count");
  }
  for (const Node& n : g.nodes) {
    const double f = node_flops(g, n);
    ScopeCounts& s = scope_entry(c.by_scope, top_level_scope(n.scope));
    ++s.nodes;
    s.total_flops += f;
    c.total_flops += f;
    if (n.backward) {
      ++c.backward_nodes;
    } else {
      ++c.forward_nodes;
      s.forward_flops += f;
      c.forward_flops += f;
    }
  }
  return c;
}

int64_t parameter_count(const Graph& g) {
  int64_t n = 0;
  for (const Value& v : g.values)
    if (v.role == ValueRole::parameter) n = checked_add(n, num_elements(v.type.shape), "the graph's parameter count");
  return n;
}

double forward_flops(const Graph& g) {
  double f = 0;
  for (const Node& n : g.nodes)
    if (!n.backward) f += node_flops(g, n);
  return f;
}

double total_flops(const Graph& g) {
  double f = 0;
  for (const Node& n : g.nodes) f += node_flops(g, n);
  return f;
}

}  // namespace sy
