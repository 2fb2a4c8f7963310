#include "simulator/sweep.hpp"

#include "graph/error.hpp"
#include "simulator/model_step.hpp"
#include "simulator/roofline.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <optional>
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
  std::vector<std::vector<double>> time_of;  // per node and local-shape variant: roofline time
  MemoryModel memory;                 // liveness in program order (simulator/memory.hpp)
  std::vector<double> bytes;          // per value: local bytes under the layout being evaluated
  LayoutScore cur;

  Impl(const Graph& graph, const Mesh& m, const HardwareSpec& h, std::vector<double> w)
      : g(graph), mesh(m), hw(h), topo(place_mesh(h, m)), planner(graph, m), weight(std::move(w)), memory(graph, weight) {
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
    time_of.resize(g.nodes.size());
  }

  void node(NodeId n, const OpCost& c, uint32_t variant) override {
    const auto i = static_cast<size_t>(n.v);
    const double w = weight[i];
    std::vector<double>& cache = time_of[i];  // roofline time per local-shape variant
    if (variant >= cache.size()) cache.resize(variant + 1, -1.0);
    double& t = cache[variant];
    if (t < 0) t = roofline(hw, kind[i], dtype[i], c, broadcast[i]).time;
    cur.compute += w * t;
    if (backward[i]) cur.backward_compute += w * t;
  }

  void collective(const PlannedCollective& c) override {
    const double w = weight[static_cast<size_t>(c.origin.v)];
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
};

LayoutEvaluator::LayoutEvaluator(const Graph& g, const Mesh& mesh, const HardwareSpec& hw, std::vector<double> weights)
    : impl_(std::make_unique<Impl>(g, mesh, hw, std::move(weights))) {}
LayoutEvaluator::~LayoutEvaluator() = default;

std::string LayoutEvaluator::legality(const Layout& layout) const { return impl_->planner.legality(layout); }
bool LayoutEvaluator::legal(const Layout& layout) const { return impl_->planner.legal(layout); }

LayoutScore LayoutEvaluator::evaluate(const Layout& layout) {
  Impl& m = *impl_;
  m.cur = LayoutScore{};
  m.cur.mesh = to_string(m.mesh);
  m.cur.layout = layout;
  const std::vector<Sharding>& shard = m.planner.plan(layout, m);
  const Graph& g = m.g;
  for (const Value& v : g.values) {
    double b = static_cast<double>(num_bytes(v.type));
    const Sharding& s = shard[static_cast<size_t>(v.id.v)];
    for (size_t a = 0; a < m.mesh.axes.size(); ++a)
      if (s.dim[a] >= 0) b /= static_cast<double>(m.mesh.axes[a].size);
    m.bytes[static_cast<size_t>(v.id.v)] = b;
  }
  m.cur.memory = m.memory.evaluate(m.bytes, m.memory.program_order(), m.hw.hbm_bytes * (1.0 - m.hw.memory_reserve));
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

SweepResult sweep(const ModelConfig& config, const HardwareSpec& hw, const std::vector<Mesh>& meshes,
                  const SweepOptions& opts) {
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
  if (r.dims.empty()) r.dims = default_sweep_dims(build_training_step(config, built, /*reduced=*/true).graph());
  std::vector<PerMesh> per(meshes.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < meshes.size(); i = next++) {
      const Mesh& m = meshes[i];
      PerMesh& out = per[i];
      try {
        // Layouts by data-parallel split (the routing groups differ): one build and evaluator each;
        // results in enumeration order.
        const std::vector<Layout> layouts = enumerate_layouts(r.dims, m);
        std::map<int64_t, std::vector<size_t>> by_split;
        for (size_t k = 0; k < layouts.size(); ++k) by_split[routing_batch_split(m, layouts[k])].push_back(k);
        std::vector<std::optional<LayoutScore>> scored(layouts.size());
        for (const auto& [split, indices] : by_split) {
          TrainingGraphOptions o = built;
          o.mesh = m;
          o.layout = layouts[indices.front()];
          TrainingStep reduced;
          try {
            reduced = build_training_step(config, o, /*reduced=*/true);
          } catch (const InputError&) {  // the tokens do not split into `split` routing groups: illegal
            continue;
          }
          LayoutEvaluator eval(reduced.graph(), m, hw, reduced.weights);
          for (size_t k : indices)
            if (eval.legal(layouts[k])) scored[k] = eval.evaluate(layouts[k]);
        }
        out.tried = layouts.size();
        for (std::optional<LayoutScore>& sc : scored)
          if (sc) out.scores.push_back(std::move(*sc));
          else ++out.illegal;
      } catch (const InputError& e) {
        out.error = e.what();
      }
    }
  };
  const int threads = std::max(1, std::min<int>(opts.threads, static_cast<int>(meshes.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
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
    return a.step < b.step;
  });
}

std::string sweep_csv(const std::vector<LayoutScore>& ranked) {
  std::string s =
      "rank,mesh,layout,fits,step_s,simulated_step_s,compute_s,comm_s,all_to_all_s,all_reduce_s,other_comm_s,"
      "gradient_comm_s,all_to_all_bytes,memory_bytes,capacity_bytes\n";
  for (size_t i = 0; i < ranked.size(); ++i) {
    const LayoutScore& l = ranked[i];
    s += fmt::format("{},\"{}\",\"{}\",{},{:.6g},{},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g}\n", i + 1,
                     l.mesh, to_string(l.layout), l.memory.fits() ? "yes" : "no", l.step,
                     l.simulated_step >= 0 ? fmt::format("{:.6g}", l.simulated_step) : std::string(), l.compute, l.comm,
                     l.all_to_all, l.all_reduce, l.other_comm, l.gradient_comm, l.all_to_all_bytes, l.memory.total(),
                     l.memory.capacity);
  }
  return s;
}

}  // namespace sy
