// LoweringPlanner: the Planner's decisions (planner.hpp) for a layout, with their costs, without
// building the program; memoised per node and local shapes for fast layout search.
#include "graph/parallel/lower.hpp"

#include "graph/parallel/planner.hpp"

namespace sy {

using namespace lowering;

// ---------------------------------------------------------------- LoweringPlanner

namespace {

// The local shapes of a node's operands: the packed shardings of its inputs and outputs.
using CostKey = std::array<uint64_t, kMaxIn + kMaxOut>;
struct MemoEntry {
  CostKey key;
  OpCost cost;
};
uint64_t hash_key(const CostKey& k) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (uint64_t x : k) h = (h ^ x) * 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 31);
}
uint64_t pack(const Sharding& s) { return s.bits(); }
bool same_key(const CostKey& a, const CostKey& b) {
  bool eq = true;
  for (size_t i = 0; i < a.size(); ++i) eq &= a[i] == b[i];
  return eq;
}

}  // namespace

struct LoweringPlanner::Impl {
  const Graph& g;
  Mesh mesh;
  LowerOptions opts;
  Compiled c;
  Planner pl;
  std::vector<std::vector<MemoEntry>> memo;       // per node: the local shapes seen so far and their cost
  std::vector<std::vector<uint64_t>> memo_hash;   // per node: hash_key of each entry (scanned first)

  Impl(const Graph& graph, const Mesh& m, const LowerOptions& o)
      : g(graph), mesh(m), opts(o), c(compile(graph)), pl(c, mesh, o), memo(graph.nodes.size()),
        memo_hash(graph.nodes.size()), effects(graph.nodes.size()), effect_hash(graph.nodes.size()),
        effect_index(graph.nodes.size()) {}

  // The node's cost on its local blocks, and the index of those local shapes among the node's.
  std::pair<const OpCost*, uint32_t> local_cost(const Node& n, const NodePlan& p) {
    const CNode& cn = c.nodes[static_cast<size_t>(n.id.v)];
    CostKey key{};
    for (int k = 0; k < cn.nin; ++k) key[static_cast<size_t>(k)] = pack(p.in_to[static_cast<size_t>(k)]);
    for (int o = 0; o < cn.nout; ++o) key[static_cast<size_t>(kMaxIn + o)] = pack(p.computed[static_cast<size_t>(o)]);
    std::vector<MemoEntry>& seen = memo[static_cast<size_t>(n.id.v)];
    std::vector<uint64_t>& hashes = memo_hash[static_cast<size_t>(n.id.v)];
    const uint64_t h = hash_key(key);
    for (size_t i = 0; i < hashes.size(); ++i)
      if (hashes[i] == h && same_key(seen[i].key, key)) return {&seen[i].cost, static_cast<uint32_t>(i)};
    hashes.push_back(h);
    std::vector<TensorType> in, out;
    for (int k = 0; k < cn.nin; ++k) {
      const TensorType& t = g.type(n.inputs[static_cast<size_t>(k)]);
      in.push_back(TensorType{local_shape(t.shape, p.in_to[static_cast<size_t>(k)], mesh), t.dtype});
    }
    for (int o = 0; o < cn.nout; ++o) {
      const TensorType& t = g.type(n.outputs[static_cast<size_t>(o)]);
      out.push_back(TensorType{local_shape(t.shape, p.computed[static_cast<size_t>(o)], mesh), t.dtype});
    }
    Attrs a = n.attrs;
    if (!out.empty()) a = op_def(n.kind).local_attrs(n.attrs, out[0].shape);
    seen.push_back(MemoEntry{key, op_def(n.kind).cost(in, out, a)});
    return {&seen.back().cost, static_cast<uint32_t>(seen.size() - 1)};
  }

  void collectives_of(const StepList& l, NodeId origin, bool gradient, std::vector<PlannedCollective>& out) const {
    for (int i = 0; i < l.n; ++i) {
      const Step& st = l.s[static_cast<size_t>(i)];
      PlannedCollective pc;
      pc.kind = st.kind;
      pc.axes = st.axes;
      pc.cost = op_def(st.kind).collective_cost(pl.group(st.axes), st.reduce, st.in_bytes, st.in_elems, st.out_bytes);
      pc.origin = origin;
      pc.gradient = gradient && (st.kind == OpKind::all_reduce || st.kind == OpKind::reduce_scatter);
      out.push_back(pc);
    }
  }

  // ---- plans memoized by what they read
  //
  // A node's plan is a function of its inputs' shardings (primary and available variants) and of
  // the shardings its outputs want (which is all it reads of the layout's rules), so it is cached
  // under exactly those. An entry keeps the plan's effects: what it reports and how it changes the
  // shardings, replayed on a hit exactly as on a miss.
  struct Effect {
    std::vector<uint64_t> key;
    std::vector<PlannedCollective> before, after;  // reported before and after the node
    uint32_t cost_variant = 0;                      // index into memo[node]
    std::vector<std::pair<int32_t, Sharding>> in_variants;
    Sharding computed0;  // a reshape's output as computed (derived axes)
    std::array<Sharding, kMaxOut> final_{};
  };
  std::vector<std::vector<Effect>> effects;                       // per node
  std::vector<std::vector<uint64_t>> effect_hash;  // per node: hash_of(key) of each entry, in entry order
  // Per node with many entries: hash_of(key) -> the first entry of that hash (a sweep of thousands
  // of layouts fills up to kMaxEffects entries per node; scanning them all was a third of its time).
  std::vector<std::unordered_map<uint64_t, uint32_t>> effect_index;
  static constexpr size_t kScanEffects = 16;  // up to this many entries a node's hashes are scanned
  static constexpr size_t kMaxEffects = 256;  // per node; beyond, plans are computed, not cached

  // The cache key of node n now; false when an input has too many variants to key.
  bool plan_key(const CNode& cn, std::vector<uint64_t>& key) const {
    key.clear();
    std::array<Sharding, kMaxIn> cur{};
    for (int k = 0; k < cn.nin; ++k) {
      const int32_t id = cn.in[static_cast<size_t>(k)];
      cur[static_cast<size_t>(k)] = pl.primary[static_cast<size_t>(id)];
      const auto& vars = pl.variants[static_cast<size_t>(id)];
      if (vars.size() > 4) return false;
      key.push_back(cur[static_cast<size_t>(k)].bits());
      key.push_back(vars.size());
      for (const auto& [sh, low] : vars) key.push_back(sh.bits());
    }
    const auto splits = pl.splits_of(cn, cur);
    for (int o = 0; o < cn.nout; ++o) key.push_back(pl.wanted(cn, o, splits).bits());
    return true;
  }

  static uint64_t hash_of(const std::vector<uint64_t>& key) {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (uint64_t x : key) h = (h ^ x) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
  }

  Effect effect_of(const Node& n, const CNode& cn, const NodePlan& p) {
    Effect e;
    for (int k = 0; k < cn.nin; ++k) {
      const auto ks = static_cast<size_t>(k);
      collectives_of(p.in_steps[ks], n.id, false, e.before);
      Sharding sh = p.in_from[ks];
      for (int i = 0; i < p.in_steps[ks].n; ++i) {
        sh = pl.apply(sh, p.in_steps[ks].s[static_cast<size_t>(i)]);
        e.in_variants.emplace_back(cn.in[ks], sh);
      }
    }
    e.cost_variant = local_cost(n, p).second;
    for (int o = 0; o < cn.nout; ++o) {
      const auto os = static_cast<size_t>(o);
      collectives_of(p.out_steps[os], n.id, c.values[static_cast<size_t>(cn.out[os])].feeds_grad, e.after);
      e.final_[os] = p.final_[os];
    }
    e.computed0 = p.computed[0];
    return e;
  }

  // Reports an effect and applies it to the planner's state (what Planner::record does).
  void replay(const Node& n, const CNode& cn, const Effect& e, PlanVisitor& v) {
    for (const PlannedCollective& pc : e.before) v.collective(pc);
    v.node(n.id, memo[static_cast<size_t>(n.id.v)][e.cost_variant].cost, e.cost_variant);
    for (const PlannedCollective& pc : e.after) v.collective(pc);
    for (const auto& [id, sh] : e.in_variants) pl.add_variant(id, sh, -1);
    if (cn.reshape) {
      const CValue& ov = c.values[static_cast<size_t>(cn.out[0])];
      for (size_t a = 0; a < pl.axes; ++a) {
        const int8_t pos = e.computed0.dim[a];
        if (pos < 0) continue;
        const auto d = static_cast<size_t>(ov.dim[static_cast<size_t>(pos)]);
        if (pl.rule_axis[d] < 0 && pl.derived_axis[d] < 0) pl.derived_axis[d] = static_cast<int16_t>(a);
      }
    }
    for (int o = 0; o < cn.nout; ++o) {
      const auto os = static_cast<size_t>(o);
      const int32_t id = cn.out[os];
      pl.primary[static_cast<size_t>(id)] = e.final_[os];
      pl.variants[static_cast<size_t>(id)].clear();
      pl.add_variant(id, e.final_[os], -1);
    }
  }

  void plan_node_cached(const Node& n, PlanVisitor& v) {
    const auto i = static_cast<size_t>(n.id.v);
    const CNode& cn = c.nodes[i];
    const bool keyed = plan_key(cn, key_scratch);
    const uint64_t h = keyed ? hash_of(key_scratch) : 0;
    if (keyed) {
      const std::vector<uint64_t>& hashes = effect_hash[i];
      if (hashes.size() > kScanEffects) {
        const auto it = effect_index[i].find(h);
        if (it != effect_index[i].end() && effects[i][it->second].key == key_scratch)
          return replay(n, cn, effects[i][it->second], v);
        if (it != effect_index[i].end())  // two keys of one hash (never seen): scan them all
          for (size_t e = 0; e < hashes.size(); ++e)
            if (hashes[e] == h && effects[i][e].key == key_scratch) return replay(n, cn, effects[i][e], v);
      } else {
        for (size_t e = 0; e < hashes.size(); ++e)
          if (hashes[e] == h && effects[i][e].key == key_scratch) return replay(n, cn, effects[i][e], v);
      }
    }
    Effect e = effect_of(n, cn, pl.plan_node(cn));
    replay(n, cn, e, v);
    if (keyed && effects[i].size() < kMaxEffects) {
      effect_hash[i].push_back(h);
      e.key = key_scratch;
      effects[i].push_back(std::move(e));
      if (effects[i].size() == kScanEffects + 1)  // from now on looked up by hash
        for (size_t k = 0; k < effect_hash[i].size(); ++k) effect_index[i].emplace(effect_hash[i][k], static_cast<uint32_t>(k));
      else if (effects[i].size() > kScanEffects + 1)
        effect_index[i].emplace(h, static_cast<uint32_t>(effects[i].size() - 1));
    }
  }
  std::vector<uint64_t> key_scratch;
};

LoweringPlanner::LoweringPlanner(const Graph& g, const Mesh& mesh, const LowerOptions& opts)
    : impl_(std::make_unique<Impl>(g, mesh, opts)) {}
LoweringPlanner::~LoweringPlanner() = default;

bool LoweringPlanner::legal(const Layout& layout) const {
  // The checks of check_layout over the distinct shapes of the graph.
  const Impl& m = *impl_;
  for (const LayoutRule& r : layout.rules)
    if (!m.mesh.axis_index(r.axis)) return false;
  std::vector<int16_t> rule(m.c.dim_names.size(), -1);
  for (size_t d = 0; d < m.c.dim_names.size(); ++d)
    if (const std::string* ax = layout.axis_of(m.c.dim_names[d])) rule[d] = static_cast<int16_t>(*m.mesh.axis_index(*ax));
  for (const LayoutRule& r : layout.rules)
    if (std::find(m.c.dim_names.begin(), m.c.dim_names.end(), r.dim) == m.c.dim_names.end()) return false;
  for (int32_t id : m.c.distinct_shapes) {
    const CValue& v = m.c.values[static_cast<size_t>(id)];
    uint32_t used = 0;
    for (int i = 0; i < v.rank; ++i) {
      const int16_t a = rule[static_cast<size_t>(v.dim[static_cast<size_t>(i)])];
      if (a < 0) continue;
      if ((used & (1u << a)) || m.c.sizes[static_cast<size_t>(id)][static_cast<size_t>(i)] % m.mesh.axes[static_cast<size_t>(a)].size != 0)
        return false;
      used |= 1u << a;
    }
  }
  return true;
}

std::string LoweringPlanner::legality(const Layout& layout) const {
  return legal(layout) ? std::string() : legality_message(impl_->g, impl_->mesh, layout);
}

const std::vector<Sharding>& LoweringPlanner::plan(const Layout& layout, PlanVisitor& v) {
  Impl& m = *impl_;
  if (!legal(layout)) throw InputError(legality_message(m.g, m.mesh, layout));
  m.pl.set_layout(layout);
  for (size_t i = 0; i < m.c.values.size(); ++i)
    if (m.c.values[i].leaf) {
      m.pl.primary[i] = m.pl.leaf_sharding(static_cast<int32_t>(i));
      m.pl.add_variant(static_cast<int32_t>(i), m.pl.primary[i], -1);
    }
  for (const Node& n : m.g.nodes) m.plan_node_cached(n, v);
  std::vector<PlannedCollective> tail;
  for (const auto& [out, param] : m.c.grad_outputs) {
    StepList steps;
    m.pl.reshard(m.c.values[static_cast<size_t>(out)], m.pl.primary[static_cast<size_t>(out)],
                 m.pl.primary[static_cast<size_t>(param)], m.c.values[static_cast<size_t>(out)].dtype, steps);
    m.collectives_of(steps, m.g.value(ValueId{out}).producer, false, tail);
  }
  for (const PlannedCollective& pc : tail) v.collective(pc);
  return m.pl.primary;
}

}  // namespace sy
