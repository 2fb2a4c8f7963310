#include "graph/cse.hpp"

#include "graph/op_def.hpp"

#include <algorithm>
#include <map>
#include <utility>

namespace sy {

size_t Duplicates::count() const {
  return static_cast<size_t>(std::count_if(duplicate_of.begin(), duplicate_of.end(), [](int32_t d) { return d >= 0; }));
}

bool cse_mergeable(OpKind k) {
  if (op_def(k).collective_cost != nullptr) return false;
  return k != OpKind::mean_square && k != OpKind::adafactor_moment && k != OpKind::adafactor_update &&
         k != OpKind::adamw_update;
}

Duplicates find_duplicates(const Graph& g) {
  Duplicates d;
  d.duplicate_of.assign(g.nodes.size(), -1);
  d.canonical.resize(g.values.size());
  for (size_t v = 0; v < g.values.size(); ++v) d.canonical[v] = static_cast<int32_t>(v);
  auto canon = [&](ValueId v) { return d.canonical[static_cast<size_t>(v.v)]; };
  // (kind, canonical inputs) -> earlier nodes, compared by attributes.
  std::map<std::pair<OpKind, std::vector<int32_t>>, std::vector<int32_t>> seen;
  for (const Node& n : g.nodes) {
    if (!cse_mergeable(n.kind)) continue;
    std::vector<int32_t> in;
    for (ValueId v : n.inputs) in.push_back(canon(v));
    std::vector<int32_t>& same = seen[{n.kind, std::move(in)}];
    const auto it = std::find_if(same.begin(), same.end(), [&](int32_t m) { return g.nodes[static_cast<size_t>(m)].attrs == n.attrs; });
    if (it == same.end()) {
      same.push_back(n.id.v);
      continue;
    }
    const Node& first = g.nodes[static_cast<size_t>(*it)];
    d.duplicate_of[static_cast<size_t>(n.id.v)] = first.id.v;
    for (size_t o = 0; o < n.outputs.size(); ++o) d.canonical[static_cast<size_t>(n.outputs[o].v)] = canon(first.outputs[o]);
  }
  return d;
}

}  // namespace sy
