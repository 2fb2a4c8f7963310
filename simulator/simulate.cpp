#include "simulator/simulate.hpp"

#include "graph/error.hpp"
#include "graph/parallel/collective_blocks.hpp"
#include "graph/trace_schema.hpp"
#include "simulator/fusion.hpp"
#include "simulator/sparse_cost.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <queue>

namespace sy {

std::string_view phase_name(Phase p) {
  switch (p) {
    case Phase::forward: return "forward";
    case Phase::backward: return "backward";
    case Phase::optimizer: return "optimizer";
  }
  return "?";
}

namespace {

bool is_optimizer_kind(OpKind k) { return k == OpKind::adafactor_update || k == OpKind::adamw_update; }

}  // namespace

namespace {

// Measure of a union of intervals sorted by start.
std::vector<std::pair<double, double>> merged(std::vector<std::pair<double, double>> iv) {
  std::sort(iv.begin(), iv.end());
  std::vector<std::pair<double, double>> out;
  for (const auto& [s, e] : iv) {
    if (e <= s) continue;
    if (!out.empty() && s <= out.back().second) {
      out.back().second = std::max(out.back().second, e);
    } else {
      out.emplace_back(s, e);
    }
  }
  return out;
}
double measure(const std::vector<std::pair<double, double>>& iv) {
  double m = 0;
  for (const auto& [s, e] : iv) m += e - s;
  return m;
}
double intersection(const std::vector<std::pair<double, double>>& a, const std::vector<std::pair<double, double>>& b) {
  double m = 0;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const double s = std::max(a[i].first, b[j].first);
    const double e = std::min(a[i].second, b[j].second);
    if (e > s) m += e - s;
    (a[i].second < b[j].second) ? ++i : ++j;
  }
  return m;
}

// Fusion (simulator/fusion.hpp): prices each group of two or more nodes at its root, takes the
// other members' and CSE duplicates' time away, and rewires the dependencies so that a group
// starts when its external inputs are ready and its values are ready when its root ends.
void apply_fusion(const Graph& g, const HardwareSpec& hw, bool on, SimResult& r, std::vector<std::vector<int32_t>>& deps) {
  r.fusion = on && hw.fuses;
  const Fusion f = fuse(g, FusionOptions{.fuse = r.fusion, .cse = on});
  r.materialised = f.materialised;
  for (size_t i = 0; i < r.ops.size(); ++i) {
    SimOp& op = r.ops[i];
    op.duplicate_of = f.duplicate_of[i];
    if (op.duplicate_of < 0) {  // it reads the canonical values (a duplicate's readers read the original's)
      deps[i].clear();
      for (ValueId v : g.nodes[i].inputs) {
        const NodeId p = g.values[static_cast<size_t>(f.canonical[static_cast<size_t>(v.v)])].producer;
        if (p.valid()) deps[i].push_back(p.v);
      }
      continue;
    }
    ++r.cse_duplicates;
    op.cost = OpCost{};
    op.roof = OpTime{};
    op.duration = 0;
    deps[i] = {op.duplicate_of};  // its value is the earlier node's
  }
  for (size_t k = 0; k < f.groups.size(); ++k) {
    const std::vector<int32_t>& members = f.groups[k];
    if (members.size() < 2) continue;
    FusedGroup fg;
    fg.ops = members;
    fg.cost = group_cost(g, f, static_cast<int32_t>(k));
    double compute = 0;
    int32_t heavy = -1;  // the einsum or reduction, if any: its class sets the memory curve
    for (int32_t m : members) {
      SimOp& op = r.ops[static_cast<size_t>(m)];
      op.fused = static_cast<int32_t>(r.fused.size());
      if (!fg.kinds.empty()) fg.kinds += '+';
      fg.kinds += op.label;
      fg.own_bytes += op.own_cost.bytes_read + op.own_cost.bytes_written;
      fg.own_duration += op.own_duration;
      compute += op.roof.compute;
      const OpClass c = op_def(op.kind).op_class;
      if (c == OpClass::matmul || c == OpClass::reduction) heavy = m;
      if (m != fg.root()) {
        op.cost = OpCost{};
        op.roof = OpTime{};
        op.duration = 0;
      }
    }
    SimOp& root = r.ops[static_cast<size_t>(fg.root())];
    const SimOp& lead = r.ops[static_cast<size_t>(heavy >= 0 ? heavy : fg.root())];
    root.cost = fg.cost;
    root.dtype = lead.dtype;
    root.roof = roofline_fused(hw, compute, fg.cost, hw.efficiency_of(lead.kind, false));
    root.duration = root.roof.time;
    root.bound = root.roof.bound;
    fg.duration = root.duration;
    r.fused.push_back(std::move(fg));
  }
  // A value of a fused group is ready when the group's root ends: a reader outside the group
  // waits for the root.
  for (size_t i = 0; i < r.ops.size(); ++i)
    for (int32_t& d : deps[i]) {
      const int32_t gd = r.ops[static_cast<size_t>(d)].fused;
      if (gd >= 0 && gd != r.ops[i].fused) d = r.fused[static_cast<size_t>(gd)].root();
    }
}

}  // namespace

SimResult simulate(const Lowered& L, const HardwareSpec& hw, const SimOptions& opts) {
  SimResult r;
  r.hardware = hw.name;
  r.mesh = L.mesh;
  r.layout = L.layout;
  r.topology = place_mesh(hw, L.mesh);
  r.optimizer = "none";
  r.streams.push_back(std::string(kComputeStream));  // stream names as in the trace (graph/trace_schema.hpp)
  for (const MeshAxis& a : L.mesh.axes) r.streams.push_back(comm_stream_name(a.name));
  r.comm_bytes_by_axis.assign(L.mesh.axes.size(), 0.0);
  const Graph& g = L.graph;

  // ---- ops and their dependencies
  for (const Node& n : g.nodes)
    if (is_optimizer_kind(n.kind)) r.optimizer = op_name(n.kind) == "adamw_update" ? "adamw" : "adafactor";
  std::vector<std::vector<int32_t>> deps;
  r.ops.reserve(g.nodes.size());
  // The executor's sparse paths over one-hot values, on hardware that has them.
  const SparsityPlan sparsity = hw.sparse_einsums ? plan_sparsity(g, graph_outputs_kept(g)) : SparsityPlan{};
  for (const Node& n : g.nodes) {
    SimOp op;
    op.node = n.id.v;
    op.kind = n.kind;
    op.label = std::string(op_name(n.kind));
    op.scope = n.scope;
    // The phase and which ops communicate: the rules the executor's trace uses too.
    op.phase = is_optimizer_scope(n.scope) ? Phase::optimizer : n.backward ? Phase::backward : Phase::forward;
    op.collective = communicates(n);
    std::vector<TensorType> in, out;
    for (ValueId v : n.inputs) in.push_back(g.type(v));
    for (ValueId v : n.outputs) out.push_back(g.type(v));
    op.cost = op_def(n.kind).cost(in, out, n.attrs);
    if (hw.sparse_einsums) op.cost = sparse_cost(g, n, sparsity, op.cost);
    if (opts.load_skew) op.cost = opts.load_skew->cost(n, in, out, op.cost);  // ragged experts: the busiest device's rows
    op.dtype = !in.empty() ? in[0].dtype : out.at(0).dtype;
    if (op.collective) {
      const auto& a = std::get<CollectiveAttrs>(n.attrs);
      for (const Dim& ax : a.axes) op.axes |= 1u << *L.mesh.axis_index(ax.name);
      op.comm = collective_time(hw, r.topology, n.kind, op.axes, op.cost.bytes_read, op.cost.bytes_written);
      int64_t members = 1;
      for (const Dim& ax : a.axes) members *= ax.size;
      // all_gather sends its whole input to each peer, all_reduce too (recursive doubling, as
      // libraries reduce small arrays); all_to_all and reduce_scatter one block of it.
      op.message_bytes = n.kind == OpKind::all_gather || n.kind == OpKind::all_reduce
                             ? op.cost.bytes_read
                             : op.cost.bytes_read / static_cast<double>(members);
      if (hw.staged_collectives) {  // MPI's contiguous blocks: the device packs and unpacks
        const StagingBytes sb = staging_bytes(n.kind, a, in.at(0), members);
        double pack = static_cast<double>(sb.pack), unpack = static_cast<double>(sb.unpack);
        const int64_t blocks = opts.load_skew ? opts.load_skew->ragged_all_to_all_blocks(n, in.at(0)) : 0;
        if (blocks > 0 && !hw.ragged_all_to_all_seconds.points.empty()) {
          // The MPI executor's ragged all-to-all as calibrate timed it, whole, at the routed bytes
          // (its agreement, row counts, pack, transfer and unpack, after the step's streaming: the
          // cold costs below are in it).
          const double t = hw.ragged_all_to_all_time(op.cost.bytes_read);
          op.comm = CollectiveTime{.total = t, .latency = 0, .bandwidth = t, .staging = 0};
          op.eager_preamble = true;
          op.cold_measured = true;
          pack = unpack = 0;
        } else if (blocks > 0) {
          // The MPI executor's ragged all-to-all (executor/mpi/ragged_all_to_all.cpp): the members
          // agree on the path (an all_gather of 32 bytes each), exchange their blocks' row counts
          // (an all_to_all of 8 bytes per block), pack the routed rows into one send buffer, move
          // them (MPI_Alltoallv, priced above at the routed bytes) and unpack them into place.
          const double m = static_cast<double>(members), ext = 8.0 * static_cast<double>(blocks);
          const double calls = collective_time(hw, r.topology, OpKind::all_gather, op.axes, 32.0, 32.0 * m).total +
                               collective_time(hw, r.topology, OpKind::all_to_all, op.axes, ext, ext).total;
          op.comm.latency += calls;
          op.comm.total += calls;
          op.eager_preamble = true;
          pack = unpack = op.cost.bytes_read;  // the routed rows, both ways
        }
        for (const double b : {pack, unpack})
          if (b > 0) op.comm.staging += staging_copy_time(hw, op.dtype, b);
        op.comm.total += op.comm.staging;
      }
      op.duration = op.comm.total;
      op.bound = op.comm.latency_bound() ? Bound::latency : Bound::network;
      for (size_t ax = 0; ax < L.mesh.axes.size(); ++ax)
        if (op.axes & (1u << ax)) {
          if (op.stream == 0) op.stream = static_cast<int>(ax) + 1;
          r.comm_bytes_by_axis[ax] += op.cost.collective_bytes;
        }
    } else {
      op.roof = roofline(hw, n.kind, op.dtype, op.cost, is_broadcast(n.kind, in));
      op.duration = op.roof.time;
      op.bound = op.roof.bound;
    }
    std::vector<int32_t> d;
    for (ValueId v : n.inputs)
      if (g.value(v).producer.valid()) d.push_back(g.value(v).producer.v);
    deps.push_back(std::move(d));
    op.own_cost = op.cost;
    op.own_duration = op.duration;
    if (!op.collective) r.unfused_op_time += op.duration;
    r.ops.push_back(std::move(op));
  }
  apply_fusion(g, hw, opts.fusion, r, deps);
  // HardwareSpec::latency_after_streaming: a collective's cold cost is that of the library's state
  // it touches, each part priced by its path's curve at the bytes the device's ops read and wrote
  // since that part was last touched, in program order (the order the executor runs them; the step
  // repeats, so the first touch counts from the last one of the step before). Part of it is shared
  // by every collective (the queues every message or rendezvous header goes through), part of a
  // single copy's by every single copy (copy_warm_share: the rendezvous code, the kernel's walk of
  // the peer's pages), the rest is its kind's own (its algorithm's code and data), in the shares
  // calibrate measured for the path: eager messages (at most eager_limit bytes to one peer) and
  // single copies (larger). On the eager path the share a call warms depends on the pair of kinds
  // (eager_warmed_share: Open MPI runs each kind by its own algorithm, and two algorithms may share
  // all of their state or little of it). The parts are taken as nested (an assumption, not
  // measured: the state a kind shares with one that warms less is inside what it shares with one
  // that warms more, the library's common code and queues): the most recent
  // call warms its share, priced since it; each earlier call warms what its share adds to the more
  // recent ones', priced since it; the kind's own last call warms the rest. With every pair at
  // eager_path_share this is that share since any collective and the rest since the kind's own.
  // CSE duplicates run nowhere.
  if (!hw.latency_after_streaming.points.empty()) {
    const bool two_paths = hw.eager_limit > 0;
    double total = 0;  // bytes streamed from the program's start
    double any = 0;    // `total` at the last collective of any kind
    double copy = 0;   // `total` at the last single copy (a message past eager_limit)
    std::map<OpKind, double> kind;  // `total` at the last collective of each kind
    auto touch = [&](const SimOp& op) {
      any = kind[op.kind] = total;
      if (two_paths && op.message_bytes > hw.eager_limit) copy = total;
      if (op.eager_preamble) kind[OpKind::all_gather] = total;  // the ragged all-to-all's agreement is an all_gather
    };
    for (const SimOp& op : r.ops) {
      if (op.duplicate_of >= 0) continue;
      if (!op.collective) total += op.own_cost.bytes_read + op.own_cost.bytes_written;
      else if (op.kind != OpKind::shard_slice) touch(op);
    }
    const double program = total;  // the step before ends here: every last touch moves back by it
    any -= program;
    copy -= program;
    for (auto& [k, at] : kind) at -= program;
    total = 0;
    // The cold cost of one call on a path: its curve, the shared part since any collective, the
    // part warmed by single copies since the last one, the rest since this kind's last one.
    auto cold_on = [&](const EfficiencyCurve& curve, double shared, double by_copy, OpKind k) {
      return shared * curve.at(total - any) + by_copy * curve.at(total - copy) +
             (1 - shared - by_copy) * curve.at(total - kind[k]);
    };
    auto eager_cold = [&](const EfficiencyCurve& curve, OpKind k) {
      std::vector<std::pair<double, OpKind>> last;  // (`total` at its last call, kind), latest first
      for (const auto& [j, at] : kind) last.emplace_back(at, j);
      std::sort(last.begin(), last.end(), std::greater<>());
      double cold = 0, warmed = 0;  // warmed: the share priced so far
      for (const auto& [at, j] : last) {
        const double share = hw.eager_warmed_share(k, j);
        if (share <= warmed) continue;
        cold += (share - warmed) * hw.eager_curve_of(k, curve.at(total - at));
        warmed = share;
        if (j == k) break;  // share 1
      }
      return cold;
    };
    for (SimOp& op : r.ops) {
      if (op.duplicate_of >= 0) continue;
      if (!op.collective) {
        total += op.own_cost.bytes_read + op.own_cost.bytes_written;
        continue;
      }
      if (op.kind == OpKind::shard_slice) continue;  // no communication
      if (op.cold_measured) {
        touch(op);
        continue;
      }
      const bool single_copy = two_paths && op.message_bytes > hw.eager_limit;
      double cold = 0;
      if (single_copy) cold += cold_on(hw.latency_after_streaming, hw.copy_path_share, hw.copy_warm_share, op.kind);
      if (!single_copy || op.eager_preamble)
        cold += eager_cold(two_paths ? hw.eager_latency_after_streaming : hw.latency_after_streaming, op.kind);
      // Below 0 (a gap shorter than the samples' streaming: a warmer path than theirs), it takes
      // back at most the α terms: the transfer itself stays.
      cold = std::max(cold, -op.comm.latency);
      op.comm.latency += cold;
      op.comm.total += cold;
      op.duration = op.own_duration = op.comm.total;
      op.bound = op.comm.latency_bound() ? Bound::latency : Bound::network;
      touch(op);
    }
  }
  // ---- event-driven schedule
  const size_t nops = r.ops.size();
  std::vector<std::vector<int32_t>> users(nops);
  std::vector<int32_t> waiting(nops, 0);
  for (size_t i = 0; i < nops; ++i) {
    std::sort(deps[i].begin(), deps[i].end());
    deps[i].erase(std::unique(deps[i].begin(), deps[i].end()), deps[i].end());
    waiting[i] = static_cast<int32_t>(deps[i].size());
    for (int32_t d : deps[i]) users[static_cast<size_t>(d)].push_back(static_cast<int32_t>(i));
  }
  using ByTime = std::pair<double, int32_t>;
  using ByRank = std::pair<int32_t, int32_t>;  // (rank in eager_update_order, op)
  // Among ready ops a stream takes the first in program order, an optimizer update as soon as its
  // gradient is ready (simulator/memory.hpp eager_update_order: XLA's memory-aware scheduler).
  std::vector<int32_t> rank(nops);
  {
    std::vector<int32_t> node_rank(g.nodes.size());
    const std::vector<int32_t> eager = eager_update_order(g);
    for (size_t k = 0; k < eager.size(); ++k) node_rank[static_cast<size_t>(eager[k])] = static_cast<int32_t>(k);
    for (size_t i = 0; i < nops; ++i) rank[i] = node_rank[static_cast<size_t>(r.ops[i].node)];
  }
  struct Stream {
    double free = 0;
    std::priority_queue<ByTime, std::vector<ByTime>, std::greater<>> pending;        // by ready time
    std::priority_queue<ByRank, std::vector<ByRank>, std::greater<>> ready;        // by eager_update_order
  };
  std::vector<Stream> streams(r.streams.size());
  // The stream an op is scheduled on: its own, or the compute stream for a collective on a backing
  // that runs collectives on the compute thread (HardwareSpec::async_collectives).
  std::vector<size_t> lane(nops);
  for (size_t i = 0; i < nops; ++i)
    lane[i] = hw.async_collectives || !r.ops[i].collective ? static_cast<size_t>(r.ops[i].stream) : 0;
  std::vector<double> ready_at(nops, 0.0);
  for (size_t i = 0; i < nops; ++i)
    if (waiting[i] == 0) streams[lane[i]].pending.emplace(0.0, static_cast<int32_t>(i));
  size_t done = 0;
  while (done < nops) {
    int best = -1;
    double best_start = 0;
    for (size_t s = 0; s < streams.size(); ++s) {
      Stream& st = streams[s];
      if (st.ready.empty() && st.pending.empty()) continue;
      const double start = st.ready.empty() ? std::max(st.free, st.pending.top().first) : st.free;
      if (best < 0 || start < best_start) best = static_cast<int>(s), best_start = start;
    }
    SY_CHECK(best >= 0, "simulate: {} of {} ops scheduled and none ready (a dependency cycle)", done, nops);
    Stream& st = streams[static_cast<size_t>(best)];
    while (!st.pending.empty() && st.pending.top().first <= best_start) {
      st.ready.emplace(rank[static_cast<size_t>(st.pending.top().second)], st.pending.top().second);
      st.pending.pop();
    }
    const int32_t i = st.ready.top().second;
    st.ready.pop();
    SimOp& op = r.ops[static_cast<size_t>(i)];
    op.start = best_start;
    op.end = best_start + op.duration;
    st.free = op.end;
    ++done;
    for (int32_t u : users[static_cast<size_t>(i)]) {
      ready_at[static_cast<size_t>(u)] = std::max(ready_at[static_cast<size_t>(u)], op.end);
      if (--waiting[static_cast<size_t>(u)] == 0)
        streams[lane[static_cast<size_t>(u)]].pending.emplace(ready_at[static_cast<size_t>(u)], u);
    }
  }

  // ---- step time, occupancy, critical path
  std::vector<std::pair<double, double>> compute_iv, comm_iv;
  int32_t last = -1;
  for (size_t i = 0; i < nops; ++i) {
    const SimOp& op = r.ops[i];
    if (last < 0 || op.end > r.ops[static_cast<size_t>(last)].end) last = static_cast<int32_t>(i);
    (op.collective ? comm_iv : compute_iv).emplace_back(op.start, op.end);
  }
  r.step_time = last >= 0 ? r.ops[static_cast<size_t>(last)].end : 0.0;
  const auto compute_u = merged(compute_iv);
  const auto comm_u = merged(comm_iv);
  r.compute_busy = measure(compute_u);
  r.comm_busy = measure(comm_u);
  r.overlapped_comm = intersection(compute_u, comm_u);
  r.exposed_comm = r.comm_busy - r.overlapped_comm;

  // Stream predecessors, for walking the critical path back.
  std::vector<int32_t> stream_prev(nops, -1);
  {
    std::vector<std::vector<int32_t>> by_stream(streams.size());
    for (size_t i = 0; i < nops; ++i) by_stream[lane[i]].push_back(static_cast<int32_t>(i));
    for (auto& v : by_stream) {
      std::sort(v.begin(), v.end(), [&](int32_t a, int32_t b) {
        return r.ops[static_cast<size_t>(a)].start < r.ops[static_cast<size_t>(b)].start ||
               (r.ops[static_cast<size_t>(a)].start == r.ops[static_cast<size_t>(b)].start && a < b);
      });
      for (size_t k = 1; k < v.size(); ++k) stream_prev[static_cast<size_t>(v[k])] = v[k - 1];
    }
  }
  for (int32_t i = last; i >= 0;) {
    SimOp& op = r.ops[static_cast<size_t>(i)];
    op.critical = true;
    ++r.critical_ops;
    (op.collective ? r.critical_comm : r.critical_compute) += op.duration;
    int32_t next = -1;
    for (int32_t d : deps[static_cast<size_t>(i)])
      if (r.ops[static_cast<size_t>(d)].end == op.start && (next < 0 || d > next)) next = d;
    if (next < 0) {
      const int32_t p = stream_prev[static_cast<size_t>(i)];
      if (p >= 0 && r.ops[static_cast<size_t>(p)].end == op.start && op.start > 0) next = p;
    }
    i = next;
  }

  // ---- time and bytes by kind
  for (const SimOp& op : r.ops) {
    if (op.collective) {
      if (op.kind == OpKind::all_to_all) {
        r.all_to_all += op.duration;
        r.all_to_all_bytes += op.cost.collective_bytes;
      } else if (op.kind == OpKind::all_reduce) {
        r.all_reduce += op.duration;
        r.all_reduce_bytes += op.cost.collective_bytes;
      } else {
        r.other_comm += op.duration;
        r.other_comm_bytes += op.cost.collective_bytes;
      }
      continue;
    }
    (op.bound == Bound::compute ? r.compute_bound : r.memory_bound) += op.duration;
    if (op.phase == Phase::optimizer) r.optimizer_time += op.duration;
    r.flops += op.cost.flops;
  }

  // ---- memory per device: liveness in the schedule's order (simulator/memory.hpp)
  {
    std::vector<double> bytes;
    bytes.reserve(g.values.size());
    for (const Value& v : g.values) bytes.push_back(static_cast<double>(num_bytes(v.type)));
    std::vector<int32_t> order(nops);
    for (size_t i = 0; i < nops; ++i) order[i] = static_cast<int32_t>(i);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return r.ops[static_cast<size_t>(a)].start < r.ops[static_cast<size_t>(b)].start;
    });
    for (int32_t& i : order) i = r.ops[static_cast<size_t>(i)].node;
    r.memory = MemoryModel(g, order).evaluate(bytes, hw.hbm_bytes * (1.0 - hw.memory_reserve));
  }

  if (opts.load_skew) {
    std::vector<double> duration(g.nodes.size(), 0.0);
    for (const SimOp& op : r.ops) duration[static_cast<size_t>(op.node)] = op.duration;
    r.expert_load = opts.load_skew->report(duration);
  }

  // ---- throughput
  const double devices = static_cast<double>(L.mesh.devices());
  r.model_flops = opts.model_flops_per_step > 0 ? opts.model_flops_per_step : r.flops * devices;
  r.tokens_per_step = opts.tokens_per_step;
  if (r.step_time > 0) {
    r.tokens_per_second = r.tokens_per_step / r.step_time;
    r.mfu = r.model_flops / (r.step_time * devices * hw.matmul_flops_bf16);
    r.hfu = r.flops / (r.step_time * hw.matmul_flops_bf16);
  }
  return r;
}

}  // namespace sy
