#include "simulator/sweep.hpp"

#include "graph/error.hpp"
#include "simulator/fusion.hpp"
#include "simulator/model_step.hpp"
#include "simulator/roofline.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>

namespace sy {

std::vector<Layout> enumerate_layouts(const std::vector<std::string>& dims, const Mesh& mesh) {
  std::vector<Layout> out;
  const size_t choices = mesh.axes.size() + 1;
  size_t total = 1;
  for (size_t i = 0; i < dims.size(); ++i) total *= choices;
  for (size_t code = 0; code < total; ++code) {
    Layout l;
    size_t c = code;
    for (const std::string& d : dims) {
      const size_t pick = c % choices;
      c /= choices;
      if (pick > 0) l.rules.push_back(LayoutRule{d, mesh.axes[pick - 1].name});
    }
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<std::string> default_sweep_dims(const Graph& g) {
  std::vector<std::string> dims;
  for (const char* d : {"batch", "experts", "heads", "d_ff", "d_model", "vocab", "d_kv"}) {
    bool present = false;
    for (const Value& v : g.values) present = present || has_dim(v.type.shape, d);
    if (present) dims.emplace_back(d);
  }
  return dims;
}

void check_sweep_dims(const std::vector<std::string>& dims, const Graph& g) {
  std::set<std::string> have;  // sorted: the message lists them in a fixed order
  for (const Value& v : g.values)
    for (const Dim& d : v.type.shape) have.insert(d.name);
  std::string given, allowed;
  for (const std::string& d : dims) given += (given.empty() ? "" : ",") + d;
  for (const std::string& d : have) allowed += (allowed.empty() ? "" : ", ") + d;
  std::set<std::string> seen;
  for (const std::string& d : dims) {
    if (d.empty())
      throw InputError(fmt::format("--sweep-dims '{}': an empty name (a comma too many); allowed: dims of the model's "
                                   "tensors, comma-separated: {}",
                                   given, allowed));
    if (!have.count(d))
      throw InputError(fmt::format("--sweep-dims '{}': '{}' is a dim of no tensor of the model; allowed: {}", given, d,
                                   allowed));
    if (!seen.insert(d).second)
      throw InputError(fmt::format("--sweep-dims '{}': '{}' is given twice; allowed: each dim once", given, d));
  }
}

struct LayoutEvaluator::Impl : PlanVisitor {
  const Graph& g;
  Mesh mesh;
  const HardwareSpec& hw;
  Topology topo;
  LoweringPlanner planner;
  std::vector<double> weight;         // per node
  std::vector<OpKind> kind;           // per node
  std::vector<char> broadcast;        // per node: is_broadcast
  std::vector<DType> dtype;           // per node: operand dtype
  std::vector<char> backward;         // per node
  std::vector<std::vector<OpTime>> roof_of;  // per node and local-shape variant: roofline alone
  Fusion fusion;                      // the global graph's groups (one group per node when off)
  MemoryModel memory;                 // liveness in program order (simulator/memory.hpp)
  std::vector<double> bytes;          // per value: local bytes under the layout being evaluated
  // The layout being evaluated: per node its local cost and roofline alone; per group whether a
  // planned collective serves one of its members (the lowered program has a collective node
  // inside the group, and nothing fuses across a collective: fusion.hpp).
  std::vector<OpCost> local;
  std::vector<OpTime> alone;
  std::vector<char> cut;
  LayoutScore cur;

  Impl(const Graph& graph, const Mesh& m, const HardwareSpec& h, std::vector<double> w, bool fuse_ops)
      : g(graph), mesh(m), hw(h), topo(place_mesh(h, m)), planner(graph, m), weight(std::move(w)),
        fusion(fuse(graph, FusionOptions{.fuse = fuse_ops && h.fuses, .cse = fuse_ops})), memory(graph, {}, weight) {
    if (weight.empty()) weight.assign(g.nodes.size(), 1.0);
    SY_CHECK(weight.size() == g.nodes.size(), "LayoutEvaluator: {} weights for {} nodes", weight.size(), g.nodes.size());
    bytes.resize(g.values.size());
    for (const Node& n : g.nodes) {
      kind.push_back(n.kind);
      std::vector<TensorType> in;
      for (ValueId v : n.inputs) in.push_back(g.type(v));
      broadcast.push_back(is_broadcast(n.kind, in) ? 1 : 0);
      dtype.push_back(!n.inputs.empty() ? g.type(n.inputs[0]).dtype : g.type(n.outputs.at(0)).dtype);
      backward.push_back(n.backward ? 1 : 0);
    }
    roof_of.resize(g.nodes.size());
    local.resize(g.nodes.size());
    alone.resize(g.nodes.size());
    cut.resize(fusion.groups.size());
  }

  void node(NodeId n, const OpCost& c, uint32_t variant) override {
    const auto i = static_cast<size_t>(n.v);
    std::vector<OpTime>& cache = roof_of[i];  // roofline per local-shape variant
    if (variant >= cache.size()) cache.resize(variant + 1, OpTime{.time = -1.0});
    OpTime& t = cache[variant];
    if (t.time < 0) t = roofline(hw, kind[i], dtype[i], c, broadcast[i]);
    local[i] = c;
    alone[i] = t;
  }

  void collective(const PlannedCollective& c) override {
    const double w = weight[static_cast<size_t>(c.origin.v)];
    cut[static_cast<size_t>(fusion.group_of[static_cast<size_t>(c.origin.v)])] = 1;
    if (c.kind == OpKind::shard_slice) {  // local: a copy on the compute stream
      const double t = roofline(hw, OpKind::shard_slice, dtype[static_cast<size_t>(c.origin.v)], c.cost).time;
      cur.compute += w * t;
      if (backward[static_cast<size_t>(c.origin.v)]) cur.backward_compute += w * t;
      return;
    }
    const CollectiveTime t = collective_time(hw, topo, c.kind, c.axes, c.cost.bytes_read, c.cost.bytes_written);
    cur.comm += w * t.total;
    if (c.kind == OpKind::all_to_all) {
      cur.all_to_all += w * t.total;
      cur.all_to_all_bytes += w * c.cost.collective_bytes;
    } else if (c.kind == OpKind::all_reduce) {
      cur.all_reduce += w * t.total;
    } else {
      cur.other_comm += w * t.total;
    }
    if (c.gradient) cur.gradient_comm += w * t.total;
  }

  // The compute of the plan just visited: a fused group uncut by collectives priced as one op (as
  // simulate prices it: fusion.hpp group_cost at the local sizes, roofline_fused), every other
  // node alone, a CSE duplicate free.
  void add_compute() {
    auto add = [&](int32_t node, double t) {
      const auto i = static_cast<size_t>(node);
      cur.compute += weight[i] * t;
      if (backward[i]) cur.backward_compute += weight[i] * t;
    };
    for (size_t k = 0; k < fusion.groups.size(); ++k) {
      const std::vector<int32_t>& members = fusion.groups[k];
      if (members.size() == 1 || cut[k]) {
        for (int32_t m : members)
          if (fusion.duplicate_of[static_cast<size_t>(m)] < 0) add(m, alone[static_cast<size_t>(m)].time);
        continue;
      }
      double compute = 0;
      int32_t heavy = -1;  // the einsum or reduction, if any: its class sets the memory curve
      for (int32_t m : members) {
        const auto i = static_cast<size_t>(m);
        compute += alone[i].compute;
        const OpClass cls = op_def(kind[i]).op_class;
        if (cls == OpClass::matmul || cls == OpClass::reduction) heavy = m;
      }
      const OpCost c = group_cost(g, fusion, static_cast<int32_t>(k), local, bytes);
      const OpKind lead = kind[static_cast<size_t>(heavy >= 0 ? heavy : members.back())];
      add(members.back(), roofline_fused(hw, compute, c, hw.efficiency_of(lead, false)).time);
    }
  }
};

LayoutEvaluator::LayoutEvaluator(const Graph& g, const Mesh& mesh, const HardwareSpec& hw, std::vector<double> weights,
                                 bool fusion)
    : impl_(std::make_unique<Impl>(g, mesh, hw, std::move(weights), fusion)) {}
LayoutEvaluator::~LayoutEvaluator() = default;

std::string LayoutEvaluator::legality(const Layout& layout) const { return impl_->planner.legality(layout); }
bool LayoutEvaluator::legal(const Layout& layout) const { return impl_->planner.legal(layout); }

LayoutScore LayoutEvaluator::evaluate(const Layout& layout) {
  Impl& m = *impl_;
  m.cur = LayoutScore{};
  m.cur.mesh = to_string(m.mesh);
  m.cur.layout = layout;
  std::fill(m.cut.begin(), m.cut.end(), 0);
  const std::vector<Sharding>& shard = m.planner.plan(layout, m);
  const Graph& g = m.g;
  for (const Value& v : g.values) {
    double b = static_cast<double>(num_bytes(v.type));
    const Sharding& s = shard[static_cast<size_t>(v.id.v)];
    for (size_t a = 0; a < m.mesh.axes.size(); ++a)
      if (s.dim[a] >= 0) b /= static_cast<double>(m.mesh.axes[a].size);
    m.bytes[static_cast<size_t>(v.id.v)] = b;
  }
  m.add_compute();
  m.cur.memory = m.memory.evaluate(m.bytes, m.hw.hbm_bytes * (1.0 - m.hw.memory_reserve));
  const double overlap = std::min(m.cur.gradient_comm, m.cur.backward_compute);
  m.cur.step = m.cur.compute + m.cur.comm - overlap;
  return m.cur;
}

std::vector<Mesh> meshes_like(const Mesh& mesh) {
  std::vector<Mesh> out;
  const int64_t total = mesh.devices();
  std::vector<int64_t> sizes(mesh.axes.size(), 1);
  // Every way to write total as a product over the axes (last axis varies fastest).
  std::function<void(size_t, int64_t)> go = [&](size_t i, int64_t rest) {
    if (i + 1 == mesh.axes.size()) {
      sizes[i] = rest;
      Mesh m = mesh;
      for (size_t a = 0; a < sizes.size(); ++a) m.axes[a].size = sizes[a];
      out.push_back(std::move(m));
      return;
    }
    for (int64_t d = 1; d <= rest; ++d)
      if (rest % d == 0) {
        sizes[i] = d;
        go(i + 1, rest / d);
      }
  };
  if (!mesh.axes.empty()) go(0, total);
  return out;
}

namespace {

// Runs work(i) for i in [0, n) on `threads` workers (the calling thread among them).
void parallel_for(size_t n, int threads, const std::function<void(size_t)>& work) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) work(i);
  };
  const int t = std::max(1, std::min<int>(threads, static_cast<int>(n)));
  std::vector<std::thread> pool;
  for (int k = 1; k < t; ++k) pool.emplace_back(worker);
  worker();
  for (std::thread& th : pool) th.join();
}

}  // namespace

SweepResult sweep(const ModelConfig& config, const TrainConfig& train, const HardwareSpec& hw,
                  const std::vector<Mesh>& meshes, const SweepOptions& opts) {
  struct PerMesh {
    std::vector<LayoutScore> scores;
    size_t tried = 0, illegal = 0;
    std::string error;  // InputError of this mesh, rethrown in mesh order
  };
  SweepResult r;
  r.dims = opts.dims;
  if (meshes.empty()) return r;
  TrainingGraphOptions built;
  built.optimizer = opts.optimizer;

  // The training graph depends on the mesh and layout only through the routing groups (the
  // data-parallel split of the batch, graph/models/training_graph.hpp): one reduced build per
  // split, shared by every mesh. nullopt: the tokens do not split that way (its layouts are illegal).
  std::map<int64_t, std::optional<TrainingStep>> steps;
  steps[1] = build_training_step(config, train, built, /*reduced=*/true);
  if (r.dims.empty()) r.dims = default_sweep_dims(steps[1]->graph());
  else check_sweep_dims(r.dims, steps[1]->graph());
  std::vector<std::vector<Layout>> layouts(meshes.size());
  std::vector<std::vector<int64_t>> split_of(meshes.size());  // per mesh and layout
  std::vector<TrainingGraphOptions> to_build;                 // the first mesh and layout of each new split
  for (size_t i = 0; i < meshes.size(); ++i) {
    layouts[i] = enumerate_layouts(r.dims, meshes[i]);
    for (const Layout& l : layouts[i])
      if (steps.try_emplace(split_of[i].emplace_back(routing_batch_split(meshes[i], l))).second) {
        TrainingGraphOptions& o = to_build.emplace_back(built);
        o.mesh = meshes[i], o.layout = l;
      }
  }
  parallel_for(to_build.size(), opts.threads, [&](size_t k) {
    const TrainingGraphOptions& o = to_build[k];
    std::optional<TrainingStep>& step = steps.at(routing_batch_split(o.mesh, o.layout));  // one entry per k: no race
    try {
      step = build_training_step(config, train, o, /*reduced=*/true);
    } catch (const InputError&) {
    }
  });

  std::vector<PerMesh> per(meshes.size());
  parallel_for(meshes.size(), opts.threads, [&](size_t i) {
    PerMesh& out = per[i];
    try {
      // One evaluator per split in use; results in enumeration order.
      std::map<int64_t, std::unique_ptr<LayoutEvaluator>> evals;
      out.tried = layouts[i].size();
      for (size_t k = 0; k < layouts[i].size(); ++k) {
        const std::optional<TrainingStep>& step = steps.at(split_of[i][k]);
        std::unique_ptr<LayoutEvaluator>& eval = evals[split_of[i][k]];
        if (step && !eval) eval = std::make_unique<LayoutEvaluator>(step->graph(), meshes[i], hw, step->weights, opts.fusion);
        if (step && eval->legal(layouts[i][k])) out.scores.push_back(eval->evaluate(layouts[i][k]));
        else ++out.illegal;
      }
    } catch (const InputError& e) {
      out.error = e.what();
    }
  });
  for (PerMesh& p : per) {  // mesh order: the result does not depend on the thread count
    if (!p.error.empty()) throw InputError(p.error);
    r.tried += p.tried;
    r.illegal += p.illegal;
    for (LayoutScore& s : p.scores) r.scores.push_back(std::move(s));
  }
  rank_layouts(r.scores);
  return r;
}

void rank_layouts(std::vector<LayoutScore>& scores) {
  std::stable_sort(scores.begin(), scores.end(), [](const LayoutScore& a, const LayoutScore& b) {
    if (a.memory.fits() != b.memory.fits()) return a.memory.fits();
    if (!a.memory.fits()) return a.memory.total() < b.memory.total();
    return a.step < b.step;
  });
}

std::string sweep_csv(const std::vector<LayoutScore>& ranked) {
  std::string s =
      "rank,mesh,layout,fits,step_s,simulated_step_s,compute_s,comm_s,all_to_all_s,all_reduce_s,other_comm_s,"
      "gradient_comm_s,all_to_all_bytes,memory_bytes,capacity_bytes,settings\n";
  for (size_t i = 0; i < ranked.size(); ++i) {
    const LayoutScore& l = ranked[i];
    s += fmt::format("{},\"{}\",\"{}\",{},{:.6g},{},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},\"{}\"\n",
                     i + 1, l.mesh, to_string(l.layout), l.memory.fits() ? "yes" : "no", l.step,
                     l.simulated_step >= 0 ? fmt::format("{:.6g}", l.simulated_step) : std::string(), l.compute, l.comm,
                     l.all_to_all, l.all_reduce, l.other_comm, l.gradient_comm, l.all_to_all_bytes, l.memory.total(),
                     l.memory.capacity, l.settings);
  }
  return s;
}

}  // namespace sy
