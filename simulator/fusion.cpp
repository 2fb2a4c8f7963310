#include "simulator/fusion.hpp"

#include "graph/cse.hpp"
#include "graph/error.hpp"

#include <algorithm>
#include <map>

namespace sy {

namespace {

// How a node takes part in fusion (the rules of the header).
enum class Role : uint8_t { never, loop, reduction, einsum };

Role role_of(OpKind k) {
  const OpDef& d = op_def(k);
  if (d.collective_cost != nullptr) return Role::never;  // collectives: the ICI streams
  if (k == OpKind::mean_square || k == OpKind::adafactor_moment || k == OpKind::adafactor_update ||
      k == OpKind::adamw_update)
    return Role::never;  // the optimizer's nodes: one fused update each already
  if (k == OpKind::after) return Role::never;  // XLA never fuses an opt-barrier: it orders, it computes nothing
  switch (d.op_class) {
    case OpClass::elementwise:
    case OpClass::layout: return Role::loop;
    case OpClass::reduction: return Role::reduction;
    case OpClass::matmul: return Role::einsum;
    case OpClass::index: return Role::never;
  }
  return Role::never;
}

}  // namespace

size_t Fusion::fused_groups() const {
  return static_cast<size_t>(std::count_if(groups.begin(), groups.end(), [](const auto& m) { return m.size() > 1; }));
}

Fusion fuse(const Graph& g, const FusionOptions& opts) {
  const size_t nn = g.nodes.size(), nv = g.values.size();
  Fusion f;
  f.duplicate_of.assign(nn, -1);
  f.canonical.resize(nv);
  for (size_t v = 0; v < nv; ++v) f.canonical[v] = static_cast<int32_t>(v);
  auto canon = [&](ValueId v) { return f.canonical[static_cast<size_t>(v.v)]; };

  // ---- CSE (graph/cse.hpp): a duplicate's outputs stand for the earlier node's.
  if (opts.cse) {
    Duplicates d = find_duplicates(g);
    f.duplicate_of = std::move(d.duplicate_of);
    f.canonical = std::move(d.canonical);
  }

  // ---- readers of each canonical value (nodes, deduplicated) and graph outputs
  std::vector<std::vector<int32_t>> readers(nv);
  for (const Node& n : g.nodes) {
    if (f.duplicate_of[static_cast<size_t>(n.id.v)] >= 0) continue;
    for (ValueId v : n.inputs) {
      std::vector<int32_t>& r = readers[static_cast<size_t>(canon(v))];
      if (r.empty() || r.back() != n.id.v) r.push_back(n.id.v);
    }
  }
  std::vector<bool> graph_output(nv, false);
  for (const GraphOutput& o : g.outputs) graph_output[static_cast<size_t>(canon(o.value))] = true;

  // ---- groups: consumers first (reverse program order), each producer into its consumers' group
  // when all of them are in one group and the rules allow. A group is named by the node that
  // started it; `heavy` marks groups holding an einsum or a reduction.
  std::vector<int32_t> group(nn);
  std::vector<char> heavy(nn, 0);
  for (size_t i = 0; i < nn; ++i) {
    group[i] = static_cast<int32_t>(i);
    const Role r = role_of(g.nodes[i].kind);
    heavy[i] = r == Role::einsum || r == Role::reduction;
  }
  if (opts.fuse)
    for (size_t i = nn; i-- > 0;) {
      const Node& n = g.nodes[i];
      const Role role = role_of(n.kind);
      if (f.duplicate_of[i] >= 0 || role == Role::never || role == Role::reduction) continue;
      int32_t target = -1;
      bool one_group = true, any = false;
      for (ValueId v : n.outputs)
        for (int32_t u : readers[static_cast<size_t>(canon(v))]) {
          const int32_t gu = group[static_cast<size_t>(u)];
          if (role_of(g.nodes[static_cast<size_t>(u)].kind) == Role::never) one_group = false;
          if (!any) target = gu, any = true;
          else if (gu != target) one_group = false;
        }
      if (!any || !one_group) continue;
      if (role == Role::einsum && heavy[static_cast<size_t>(target)]) continue;  // one einsum/reduction per group
      group[i] = target;
      heavy[static_cast<size_t>(target)] = heavy[static_cast<size_t>(target)] || role == Role::einsum;
    }

  // ---- number the groups in the program order of their roots (the last member)
  std::vector<int32_t> root_of(nn, -1);  // per group name: its last member
  for (size_t i = 0; i < nn; ++i) root_of[static_cast<size_t>(group[i])] = static_cast<int32_t>(i);
  std::vector<int32_t> index_of(nn, -1);
  for (size_t i = 0; i < nn; ++i)
    if (root_of[static_cast<size_t>(group[i])] == static_cast<int32_t>(i)) {
      index_of[static_cast<size_t>(group[i])] = static_cast<int32_t>(f.groups.size());
      f.groups.emplace_back();
    }
  f.group_of.resize(nn);
  for (size_t i = 0; i < nn; ++i) {
    f.group_of[i] = index_of[static_cast<size_t>(group[i])];
    f.groups[static_cast<size_t>(f.group_of[i])].push_back(static_cast<int32_t>(i));
  }

  // ---- materialised values
  f.materialised.assign(nv, true);
  for (const Node& n : g.nodes) {
    const auto i = static_cast<size_t>(n.id.v);
    for (ValueId v : n.outputs) {
      const auto vi = static_cast<size_t>(v.v);
      if (f.duplicate_of[i] >= 0) {
        f.materialised[vi] = false;
        continue;
      }
      if (f.groups[static_cast<size_t>(f.group_of[i])].size() == 1) continue;
      bool outside = graph_output[vi];
      for (int32_t u : readers[vi]) outside = outside || f.group_of[static_cast<size_t>(u)] != f.group_of[i];
      f.materialised[vi] = outside;
    }
  }
  return f;
}

namespace {

// A group of two or more nodes as one op: its members' FLOPs summed; bytes read = the distinct
// canonical values entering it from outside, bytes written = its materialised values.
template <typename FlopsOf, typename BytesOf>
OpCost fused_cost(const Graph& g, const Fusion& f, int32_t k, FlopsOf flops_of, BytesOf bytes_of) {
  OpCost c;
  std::vector<int32_t> entering;  // distinct canonical values read from outside the group
  for (int32_t m : f.groups.at(static_cast<size_t>(k))) {
    const Node& n = g.nodes[static_cast<size_t>(m)];
    c.flops += flops_of(m);
    for (ValueId v : n.inputs) {
      const int32_t cv = f.canonical[static_cast<size_t>(v.v)];
      const NodeId p = g.values[static_cast<size_t>(cv)].producer;
      if (!p.valid() || f.group_of[static_cast<size_t>(p.v)] != k) entering.push_back(cv);
    }
    for (ValueId v : n.outputs)
      if (f.materialised[static_cast<size_t>(v.v)]) c.bytes_written += bytes_of(v.v);
  }
  std::sort(entering.begin(), entering.end());
  entering.erase(std::unique(entering.begin(), entering.end()), entering.end());
  for (int32_t v : entering) c.bytes_read += bytes_of(v);
  return c;
}

OpCost node_cost(const Graph& g, const Node& n) {
  std::vector<TensorType> in, out;
  for (ValueId v : n.inputs) in.push_back(g.type(v));
  for (ValueId v : n.outputs) out.push_back(g.type(v));
  return op_def(n.kind).cost(in, out, n.attrs);
}

}  // namespace

OpCost group_cost(const Graph& g, const Fusion& f, int32_t k) {
  const std::vector<int32_t>& members = f.groups.at(static_cast<size_t>(k));
  if (members.size() == 1) {
    const Node& n = g.nodes[static_cast<size_t>(members[0])];
    return f.duplicate_of[static_cast<size_t>(n.id.v)] >= 0 ? OpCost{} : node_cost(g, n);
  }
  return fused_cost(
      g, f, k, [&](int32_t m) { return node_cost(g, g.nodes[static_cast<size_t>(m)]).flops; },
      [&](int32_t v) { return static_cast<double>(num_bytes(g.values[static_cast<size_t>(v)].type)); });
}

OpCost group_cost(const Graph& g, const Fusion& f, int32_t k, std::span<const OpCost> node_costs,
                  std::span<const double> value_bytes) {
  const std::vector<int32_t>& members = f.groups.at(static_cast<size_t>(k));
  if (members.size() == 1)
    return f.duplicate_of[static_cast<size_t>(members[0])] >= 0 ? OpCost{} : node_costs[static_cast<size_t>(members[0])];
  return fused_cost(
      g, f, k, [&](int32_t m) { return node_costs[static_cast<size_t>(m)].flops; },
      [&](int32_t v) { return value_bytes[static_cast<size_t>(v)]; });
}

}  // namespace sy
