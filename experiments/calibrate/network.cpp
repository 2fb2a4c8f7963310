#include "experiments/calibrate/network.hpp"

#include "executor/host_memory.hpp"
#include "executor/mpi/ragged_all_to_all.hpp"
#include "graph/models/moe.hpp"
#include "graph/error.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <optional>

namespace sy {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// f32 buffers allocated as the executor allocates its arena and staging buffers (executor/
// host_memory.hpp: at least 2 MiB, so on transparent huge pages; before, the first all_gather
// samples ran on 4 KiB pages and every later kind's on the largest one's huge pages), so a
// collective here reads and writes memory as a step's do:
// Open MPI's single copy from the peer (CMA) pins every page of the peer's buffer, and on 4 KiB
// pages a step's all_reduces took 1.24x as long as on huge pages (experiments/bench_huge_pages).
class HostFloats {
 public:
  // n elements, zeroed; the storage is kept for later calls of at most its size.
  void assign(size_t n) {
    if (n > capacity_) {
      capacity_ = std::max(n, static_cast<size_t>(exec::kHugePageBytes) / sizeof(float));
      bytes_ = exec::alloc_host_bytes(static_cast<int64_t>(capacity_ * sizeof(float)));
    }
    size_ = n;
    std::fill(begin(), end(), 0.0f);
  }
  float* data() { return reinterpret_cast<float*>(bytes_.get()); }
  float* begin() { return data(); }
  float* end() { return data() + size_; }

 private:
  exec::HostBytes bytes_;
  size_t capacity_ = 0, size_ = 0;
};

// The collective node of `kind` over the mesh's axis 0 (2 devices) on V bytes of f32 whose blocks
// are contiguous (no block copies: all_gather along the leading dim; all_to_all scattering x [2]
// and gathering y, whose outer extent in a block is 1), so every kind measures the same transfer.
struct CollectiveNode {
  OpKind kind;
  CollectiveAttrs attrs;
  TensorType in, out;
};

CollectiveNode node_for(const Communicator& comm, const std::string& kind, int64_t bytes) {
  const MeshAxis& m = comm.mesh().axes.at(0);
  const Dim axis{m.name, m.size};
  const int64_t v = std::max<int64_t>(2, bytes / 4 / 2 * 2);  // f32 elements of V, even
  const std::string x = "x", y = "y";  // named, not literals (GCC 12's -Werror=restrict false positive)
  CollectiveNode n;
  n.attrs.axes = {axis};
  if (kind == "all_gather") {
    n.kind = OpKind::all_gather;
    n.attrs.gather_dim = x;
    n.in = TensorType{{{"x", v / 2}}, DType::f32};
    n.out = TensorType{{{"x", v}}, DType::f32};
  } else if (kind == "all_to_all") {
    n.kind = OpKind::all_to_all;
    n.attrs.gather_dim = y;
    n.attrs.scatter_dim = x;
    n.in = TensorType{{{x, 2}, {y, v / 2}}, DType::f32};
    n.out = TensorType{{{x, 1}, {y, v}}, DType::f32};
  } else if (kind == "reduce_scatter") {
    n.kind = OpKind::reduce_scatter;
    n.attrs.scatter_dim = x;
    n.in = TensorType{{{"x", v}}, DType::f32};
    n.out = TensorType{{{"x", v / 2}}, DType::f32};
  } else {
    n.kind = OpKind::all_reduce;
    n.in = n.out = TensorType{{{"x", v}}, DType::f32};
  }
  return n;
}

OpKind kind_of(const std::string& kind) {
  return kind == "all_gather" ? OpKind::all_gather : kind == "all_to_all" ? OpKind::all_to_all
                                                   : kind == "reduce_scatter" ? OpKind::reduce_scatter
                                                                              : OpKind::all_reduce;
}

// The formula's α terms (how many α) and bandwidth terms (seconds at efficiency 1) of a sample.
int alphas(const std::string& kind) { return kind == "all_reduce" ? 2 : 1; }
double bandwidth_terms(const NetworkFit& f, const CollectiveSample& s) {
  const double reduce = f.reduction_bandwidth > 0 ? s.bytes / 2 / f.reduction_bandwidth : 0.0;
  if (s.kind == "all_reduce") return s.bytes / f.link_bandwidth + reduce;
  if (s.kind == "reduce_scatter") return s.bytes / 2 / f.link_bandwidth + reduce;
  return s.bytes / 2 / f.link_bandwidth;
}

}  // namespace

double NetworkFit::predict(const CollectiveSample& s) const {
  double alpha = hop_latency;
  const EfficiencyCurve* curve = &efficiency_by_size;
  if (auto it = kinds.find(kind_of(s.kind)); it != kinds.end()) {
    alpha = it->second.hop_latency;
    if (!it->second.efficiency_by_size.points.empty()) curve = &it->second.efficiency_by_size;
  }
  return s.copy_seconds + alphas(s.kind) * alpha + bandwidth_terms(*this, s) / curve->at(s.bytes);
}

void stream_through(std::vector<float>& buffer, float stamp) {
  for (float& x : buffer) x += stamp;
}

void fit_network(NetworkFit& fit) {
  SY_CHECK(!fit.samples.empty(), "fit_network: no samples");
  // α: the smallest data-movement collectives; w: their best rate; e(V): the rate at V against it.
  std::vector<double> smallest;
  std::map<double, std::vector<double>> seconds_by_size;  // data movement only
  for (const CollectiveSample& s : fit.samples)
    if (s.kind == "all_gather" || s.kind == "all_to_all") {
      seconds_by_size[s.bytes].push_back(s.seconds);
      if (s.bytes == fit.samples.front().bytes) smallest.push_back(s.seconds);
    }
  fit.hop_latency = median(smallest);
  double rate = 0;
  for (const CollectiveSample& s : fit.samples)
    if ((s.kind == "all_gather" || s.kind == "all_to_all") && s.seconds > fit.hop_latency)
      rate = std::max(rate, s.bytes / 2 / (s.seconds - fit.hop_latency));
  if (rate <= 0) {  // every size within the latency's noise (a tiny --smoke range): the largest sample's rate
    const CollectiveSample& big = *std::max_element(fit.samples.begin(), fit.samples.end(),
                                                    [](const auto& a, const auto& b) { return a.bytes < b.bytes; });
    rate = big.bytes / 2 / std::max(big.seconds, 1e-9);
  }
  fit.link_bandwidth = rate;
  for (const auto& [bytes, seconds] : seconds_by_size) {
    std::vector<double> e;
    for (double t : seconds) e.push_back(t > fit.hop_latency ? std::min(1.0, bytes / 2 / rate / (t - fit.hop_latency)) : 1.0);
    fit.efficiency_by_size.points.emplace_back(bytes, std::max(1e-3, median(e)));
  }
  std::vector<double> rates;
  for (const CollectiveSample& s : fit.samples) {
    if (s.kind != "all_reduce" || s.bytes < (1 << 20)) continue;
    const double rest = (s.seconds - s.copy_seconds - 2 * fit.hop_latency) * fit.efficiency_by_size.at(s.bytes) - s.bytes / rate;
    // A size whose time the link term already covers says the reduction is overlapped: an
    // unbounded rate, which counts in the median (dropping it let one slow size set r alone: a
    // 64 MiB all_reduce at 160 ms, 40x the 16 MiB one, fitted r = 0.3 GB/s and priced every
    // all_reduce of a step 5x too slow).
    rates.push_back(rest > 0 ? s.bytes / 2 / rest : std::numeric_limits<double>::infinity());
  }
  const double r = !rates.empty() ? median(rates) : std::numeric_limits<double>::infinity();
  fit.reduction_bandwidth = std::isfinite(r) ? r : 0.0;

  // Each kind's own α and e(V) (NetworkFit::kinds), all_reduce's with w and r as fitted above.
  for (const char* kind : {"all_gather", "all_to_all", "reduce_scatter", "all_reduce"}) {
    CollectiveKindNetwork k;
    const CollectiveSample* smallest_k = nullptr;
    for (const CollectiveSample& s : fit.samples)
      if (s.kind == kind && (!smallest_k || s.bytes < smallest_k->bytes)) smallest_k = &s;
    if (!smallest_k) continue;
    // (At least 0: a 256 B all_reduce's own time, 0.2 µs on two local ranks, can be below its
    // copy's price, which carries the per-op overhead.)
    k.hop_latency = std::max(0.0, smallest_k->seconds - smallest_k->copy_seconds) / alphas(kind);
    for (const CollectiveSample& s : fit.samples) {
      if (s.kind != kind) continue;
      const double rest = s.seconds - s.copy_seconds - alphas(kind) * k.hop_latency;
      const double e = rest > 0 ? std::min(1.0, bandwidth_terms(fit, s) / rest) : 1.0;
      k.efficiency_by_size.points.emplace_back(s.bytes, std::max(1e-3, e));
    }
    fit.kinds[kind_of(kind)] = std::move(k);
  }
}

void write_ici(const NetworkFit& fit, HardwareSpec& h) {
  h.torus = {2};
  h.hop_latency = fit.hop_latency;
  h.link_bandwidth = fit.link_bandwidth;
  h.reduction_bandwidth = fit.reduction_bandwidth;
  h.ici_efficiency_by_size = fit.efficiency_by_size;
  h.collective_kinds = fit.kinds;
  h.latency_after_streaming = fit.latency_after_streaming;
  h.eager_limit = fit.eager_limit;
  h.eager_latency_after_streaming = fit.eager_latency_after_streaming;
  h.eager_path_share = fit.eager_path_share;
  h.copy_path_share = fit.copy_path_share;
  h.copy_warm_share = fit.copy_warm_share;
  for (const auto& [k, by] : fit.warmed_by) {
    auto [it, added] = h.collective_kinds.try_emplace(k);
    if (added) it->second.hop_latency = h.hop_latency;  // no kind fit of its own: the shared α
    it->second.warmed_by = by;
  }
  h.staged_collectives = true;
  h.collective_overhead = 0;
}

EfficiencyCurve non_decreasing(EfficiencyCurve c) {
  for (size_t i = c.points.size(); i-- > 1;)
    c.points[i - 1].second = std::min(c.points[i - 1].second, c.points[i].second);
  return c;
}

PathShares shares_of(const PathProbe& p) {
  const double gap = p.cold - p.hot;
  if (!(gap > 0)) return {};  // streaming added nothing to split: all shared
  PathShares s;
  s.any = std::clamp((p.cold - p.warmed) / gap, 0.0, 1.0);
  s.path = std::clamp((p.warmed - p.after_copy) / gap, 0.0, 1.0 - s.any);
  return s;
}

PathShares path_shares(const std::vector<PathProbe>& probes, double lo, double hi) {
  std::vector<double> any, path;
  for (const PathProbe& p : probes)
    if (p.payload > lo && p.payload <= hi) {
      any.push_back(shares_of(p).any);
      path.push_back(shares_of(p).path);
    }
  PathShares s;
  s.any = median(any);
  s.path = std::min(median(path), 1 - s.any);
  return s;
}

double warmed_share(const PairProbe& p) {
  const double gap = p.cold - p.hot;
  if (!(gap > 0)) return 1;  // streaming added nothing: nothing for the warming call to remove
  return std::clamp((p.cold - p.warmed) / gap, 0.0, 1.0);
}

std::map<OpKind, std::map<OpKind, double>> warmed_shares(const std::vector<PairProbe>& probes) {
  std::map<std::pair<OpKind, OpKind>, std::vector<double>> shares;
  for (const PairProbe& p : probes) shares[{p.probe, p.by}].push_back(warmed_share(p));
  std::map<OpKind, std::map<OpKind, double>> w;
  for (const auto& [pair, s] : shares) w[pair.first][pair.second] = median(s);
  return w;
}

double protocol_switch_of(const std::vector<PathProbe>& probes, double max_payload) {
  constexpr double kStep = 1.5;  // a rendezvous's hot time over the last eager message's, at least
  // It lasts: every hot time from probe `i` + 1 up to max_payload is at least kStep times the
  // median of those up to `i`.
  auto lasts = [&](size_t i) {
    std::vector<double> below;
    for (size_t j = 0; j <= i; ++j) below.push_back(probes[j].hot);
    const double m = median(below);
    for (size_t j = i + 1; j < probes.size() && probes[j].payload <= max_payload; ++j)
      if (probes[j].hot < kStep * m) return false;
    return true;
  };
  double best = kStep, at = 0;  // a smaller ratio is no switch
  for (size_t i = 0; i + 1 < probes.size(); ++i) {
    const PathProbe &a = probes[i], &b = probes[i + 1];
    if (b.payload > max_payload || a.hot <= 0) continue;
    if (b.hot / a.hot >= best && lasts(i)) {
      best = b.hot / a.hot;
      at = a.payload;
    }
  }
  return at;
}

namespace {

// A collective timed as a step's trace times it (experiments/bench_sim_mpi): from the later of the
// two ranks' starts to this rank's end, the ranks' clocks aligned, with no barrier just before it
// (a barrier is itself a collective on the eager path: it would warm what is being measured).
class OwnTimer {
 public:
  OwnTimer(Communicator& comm, const std::function<void()>& barrier) : comm_(comm) {
    // Each rank's clock minus rank 0's: the median over rounds of the times both read right after
    // a barrier (0 within a few µs on one host, where CLOCK_MONOTONIC is shared, and between
    // network namespaces of one kernel).
    std::vector<double> d;
    for (int r = 0; r < 15; ++r) {
      barrier();
      const double t = now();
      double ts[2];
      comm_.all_gather(&t, ts, sizeof t, axes_);
      d.push_back(ts[1] - ts[0]);
    }
    offset_ = {0.0, median(d)};
    me_ = static_cast<size_t>(mesh_group_index(comm_, axes_));
  }
  double time(const CollectiveNode& n, const float* in, float* out) {
    return time([&] { run_collective(comm_, n.kind, n.attrs, n.in, in, n.out, out); });
  }
  // `call`: a collective both ranks make.
  double time(const std::function<void()>& call) {
    const double t0 = now();
    call();
    const double t1 = now();
    double starts[2];
    comm_.all_gather(&t0, starts, sizeof t0, axes_);
    const double later = std::max(starts[0] - offset_[0], starts[1] - offset_[1]);
    return std::max(0.0, t1 - offset_[me_] - later);
  }

 private:
  Communicator& comm_;
  std::vector<size_t> axes_{0};
  std::array<double, 2> offset_{};
  size_t me_ = 0;
};

// Each repetition's collective reads and writes its own place in a 64 MiB arena (32 slots of
// 2 MiB, in turn), as a step's collective nodes each have their own buffers: a 6 KiB-per-peer
// all_gather took 5 µs on one buffer repeated and 15 µs on a new buffer each time.
class Slots {
 public:
  static constexpr size_t kSlots = 32, kSlotFloats = (2 << 20) / 4;
  Slots() { arena_.assign(kSlots * kSlotFloats); }
  float* in(size_t r) { return arena_.data() + (r % kSlots) * kSlotFloats; }
  float* out(size_t r) { return in(r) + kSlotFloats / 2; }

 private:
  HostFloats arena_;
};

// The paths (HardwareSpec::eager_limit and the shares from the probes; latency_after_streaming
// and eager_latency_after_streaming, each curve relative to the all_gather sample of its probe's
// size, so after the samples; below 0 where a gap is shorter than the samples' streaming).
class PathMeasure {
 public:
  PathMeasure(Communicator& comm, const std::function<void()>& barrier, int64_t evict_bytes, int64_t max_streamed,
              const std::function<double()>& segment, size_t segments)
      : comm_(comm),
        barrier_(barrier),
        timer_(comm, barrier),
        evict_bytes_(evict_bytes),
        max_streamed_(max_streamed),
        segment_(segment),
        segments_(segments) {}

  void probes(NetworkFit& fit) {
    // The probes: after streaming `saturated` bytes, a warming collective, then evict_bytes
    // streamed (a step always runs ops between two collectives), then the all_gather.
    const int64_t saturated = std::min<int64_t>(max_streamed_, int64_t{128} << 20);
    std::vector<float> streamed(static_cast<size_t>(saturated / 4), 0.0f), gap(static_cast<size_t>(evict_bytes_ / 4), 0.0f);
    auto stream = [&] { stream_through(streamed, ++stamp_); };
    auto after = [&](const std::function<void()>& warm) {
      return [&, warm] {
        stream();
        warm();
        stream_through(gap, ++stamp_);
      };
    };
    std::vector<PathProbe> probes;
    for (double payload = 128; payload <= (128 << 10); payload *= 2) {
      auto warm_with = [&](const char* kind) {  // one collective of `kind`, `payload` bytes per peer, on other buffers
        return [&, kind] {
          const CollectiveNode n = node_for(comm_, kind, static_cast<int64_t>(2 * payload));
          ++rep_;
          timer_.time(n, slots_.in(rep_), slots_.out(rep_));
        };
      };
      const std::vector<double> t = timed(payload, 20,
                                          {[&] {
                                             stream();
                                             stream_through(gap, ++stamp_);
                                           },
                                           after([&] {
                                             float x = 1;
                                             comm_.all_reduce(&x, 1, DType::f32, ReduceOp::max, axes_);
                                           }),
                                           after(warm_with("all_to_all")), after(warm_with("all_gather"))});
      probes.push_back(PathProbe{payload, t[0], t[1], t[2], t[3]});
    }
    fit.path_probes = probes;
    // Two paths when the hot times show the protocol switch below 8 KiB per peer (two local ranks:
    // Open MPI's vader, eager up to 4 KiB with its header); else one (TCP: every message through
    // one socket, its switch at 64 KiB a change of protocol on the same path).
    fit.eager_limit = protocol_switch_of(probes, kCopyProbe);
    // A path's shares: the median over its probes up to 32 KiB per peer (above, the transfer's own
    // time dominates what streaming adds).
    constexpr double kLargest = 32 << 10;
    if (fit.eager_limit > 0) {
      fit.eager_path_share = path_shares(probes, 0, fit.eager_limit).any;
      const PathShares copy = path_shares(probes, fit.eager_limit, kLargest);
      fit.copy_path_share = copy.any;
      fit.copy_warm_share = copy.path;
    } else {
      fit.eager_path_share = path_shares(probes, 0, kLargest).any;  // one path
    }
  }

  // The pairs (HardwareSpec's warmed_by, on the eager path; with one path, on it): for each kind,
  // at eager payloads, its own time after streaming `saturated` bytes and then kPairGap more (a
  // step's short gap: a few small ops, inside L2), with nothing before the gap, with a call of each
  // other kind (same bytes per peer, other buffers), and with a call of its own kind; the five
  // take turns. Gaps shorter than the probes' (run M of #15: a 128 KiB gap in place of 4 MiB)
  // are where the step's pairs meet: the router's reduce_scatter right after its all_reduce.
  void pairs(NetworkFit& fit) {
    static constexpr const char* kKinds[] = {"all_gather", "reduce_scatter", "all_reduce", "all_to_all"};
    constexpr int64_t kPairGap = 128 << 10;
    const int64_t saturated = std::min<int64_t>(max_streamed_, int64_t{128} << 20);
    std::vector<float> streamed(static_cast<size_t>(saturated / 4), 0.0f), gap(static_cast<size_t>(kPairGap / 4), 0.0f);
    for (double payload : {128.0, 512.0, 2048.0}) {
      if (fit.eager_limit > 0 && payload > fit.eager_limit) continue;
      for (size_t i = 0; i < std::size(kKinds); ++i) {
        std::vector<std::function<void()>> prepares;
        prepares.push_back([&] {  // cold
          stream_through(streamed, ++stamp_);
          stream_through(gap, ++stamp_);
        });
        for (const char* by : kKinds)
          prepares.push_back([&, by] {
            stream_through(streamed, ++stamp_);
            const CollectiveNode n = node_for(comm_, by, static_cast<int64_t>(2 * payload));
            ++rep_;
            timer_.time(n, slots_.in(rep_), slots_.out(rep_));
            stream_through(gap, ++stamp_);
          });
        const std::vector<double> t = timed(payload, 12, prepares, kKinds[i]);  // cold, then after each kind
        for (size_t j = 0; j < std::size(kKinds); ++j)
          if (j != i)
            fit.pair_probes.push_back(PairProbe{kind_of(kKinds[i]), kind_of(kKinds[j]), payload, t[0], t[1 + j], t[1 + i]});
      }
    }
    fit.warmed_by = warmed_shares(fit.pair_probes);
  }

  void curves(NetworkFit& fit) {
    fit.latency_after_streaming = curve(fit, kCopyProbe);
    if (fit.eager_limit > 0) fit.eager_latency_after_streaming = curve(fit, 512);
  }

 private:
  static constexpr double kCopyProbe = 8 << 10;

  // This rank's own times of a collective of `kind` (`payload` bytes per peer) after each of `prepares`:
  // the preparations take turns, `reps` rounds (after one round of warm-up), so the machine's drift
  // (its memory bandwidth moves by the minute) reaches every one alike.
  std::vector<std::vector<double>> own_times(double payload, int reps, const std::vector<std::function<void()>>& prepares,
                                             const char* kind = "all_gather") {
    const CollectiveNode n = node_for(comm_, kind, static_cast<int64_t>(2 * payload));
    std::vector<std::vector<double>> times(prepares.size());
    for (int r = 0; r <= reps; ++r)
      for (size_t i = 0; i < prepares.size(); ++i) {
        barrier_();
        prepares[i]();
        ++rep_;
        std::fill(slots_.in(rep_), slots_.in(rep_) + num_elements(n.in.shape), stamp_);  // the input's producer
        const double t = timer_.time(n, slots_.in(rep_), slots_.out(rep_));
        if (r > 0) times[i].push_back(t);
      }
    return times;
  }

  // own_times' median for each preparation, the mean of the two ranks' medians (both ranks write
  // the same figures).
  std::vector<double> timed(double payload, int reps, const std::vector<std::function<void()>>& prepares,
                            const char* kind = "all_gather") {
    std::vector<float> m;
    for (const auto& t : own_times(payload, reps, prepares, kind)) m.push_back(static_cast<float>(median(t)));
    comm_.all_reduce(m.data(), static_cast<int64_t>(m.size()), DType::f32, ReduceOp::mean, axes_);
    return std::vector<double>(m.begin(), m.end());
  }

  // A curve: the probe's own time after compute, above the same all_gather's sample (after
  // evict_bytes, both ranks meeting just before). Without the model's step, after streaming
  // 256 KiB, 1 MiB, ... max_streamed (the volumes taking turns, 16 rounds): a point per volume, the
  // median of its rounds. With it, after the step's next segments (the ops between two of its
  // collectives): one segment (four runs in each round: the step's own gaps), 4, 16, ... up to
  // 256 (the longer gaps between two single copies), taking turns, 16 rounds. Each run at the
  // bytes its segments moved, the runs in bins 4x wide (the first below 256 KiB), a point per bin
  // of at least 8 runs at the bin's median bytes and median time (the two ranks' mean per run:
  // they ran the same ops).
  EfficiencyCurve curve(const NetworkFit& fit, double payload) {
    double base = 0;
    for (const CollectiveSample& x : fit.samples)
      if (x.kind == "all_gather" && x.bytes == 2 * payload) base = x.seconds;
    EfficiencyCurve c;
    if (!segment_) {
      std::vector<int64_t> volumes;
      for (int64_t volume = 256 << 10; volume <= max_streamed_; volume *= 4) volumes.push_back(volume);
      std::vector<std::vector<float>> buffers;
      std::vector<std::function<void()>> prepares;
      for (int64_t volume : volumes) buffers.emplace_back(static_cast<size_t>(volume / 4));
      for (auto& b : buffers) prepares.push_back([&] { stream_through(b, ++stamp_); });
      const std::vector<double> t = timed(payload, 16, prepares);
      for (size_t i = 0; i < volumes.size(); ++i)
        c.points.emplace_back(static_cast<double>(volumes[i]), t[i] - base);
      return non_decreasing(c);
    }
    std::vector<size_t> runs_of{1, 1, 1, 1};  // segments per run: the step's gaps, and longer ones
    for (size_t k = 4; k <= std::min<size_t>(segments_, 256); k *= 4) runs_of.push_back(k);
    std::vector<std::vector<double>> moved(runs_of.size());
    std::vector<std::function<void()>> prepares;
    for (size_t i = 0; i < runs_of.size(); ++i)
      prepares.push_back([&, i] {
        double bytes = 0;
        for (size_t k = 0; k < runs_of[i]; ++k) bytes += segment_();
        moved[i].push_back(bytes);
      });
    const std::vector<std::vector<double>> t = own_times(payload, 16, prepares);
    std::vector<float> mean;  // every run's time, both ranks' mean
    for (const auto& runs : t) mean.insert(mean.end(), runs.begin(), runs.end());
    comm_.all_reduce(mean.data(), static_cast<int64_t>(mean.size()), DType::f32, ReduceOp::mean, axes_);
    std::map<int, std::pair<std::vector<double>, std::vector<double>>> bins;  // bin -> (bytes, seconds)
    size_t at = 0;
    for (size_t i = 0; i < runs_of.size(); ++i)
      for (size_t r = 0; r < t[i].size(); ++r, ++at) {
        const double bytes = moved[i][r + 1];  // moved[i][0]: the warm-up round
        const int bin = bytes < (256 << 10) ? 0 : 1 + static_cast<int>(std::log(bytes / (256 << 10)) / std::log(4.0));
        bins[bin].first.push_back(bytes);
        bins[bin].second.push_back(mean[at]);
      }
    for (const auto& [bin, runs] : bins)
      if (runs.first.size() >= 8) c.points.emplace_back(median(runs.first), median(runs.second) - base);
    return non_decreasing(c);
  }

  Communicator& comm_;
  std::function<void()> barrier_;
  OwnTimer timer_;
  Slots slots_;
  int64_t evict_bytes_, max_streamed_;
  std::function<double()> segment_;
  size_t segments_ = 0;
  std::vector<size_t> axes_{0};
  size_t rep_ = 0;
  float stamp_ = 0;
};

}  // namespace

std::vector<CollectiveSize> network_sample_sizes(double max_bytes, const std::vector<CollectiveSize>& wanted) {
  constexpr double kSmallest = 256;
  const char* kinds[] = {"all_gather", "all_to_all", "reduce_scatter", "all_reduce"};
  std::vector<CollectiveSize> sizes;
  for (const char* kind : kinds) {
    std::vector<double> v;
    for (double bytes = kSmallest; bytes <= max_bytes; bytes *= 4) v.push_back(bytes);
    const size_t grid = v.size();
    for (const CollectiveSize& w : wanted) {
      if (w.kind != kind || w.bytes < kSmallest || w.bytes > max_bytes) continue;
      const bool near = std::any_of(v.begin(), v.end(), [&](double b) { return std::abs(w.bytes - b) <= 0.1 * b; });
      if (!near) v.push_back(w.bytes);
    }
    std::sort(v.begin() + static_cast<std::ptrdiff_t>(grid), v.end());
    std::inplace_merge(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(grid), v.end());
    for (double bytes : v) sizes.push_back({kind, bytes});
  }
  return sizes;
}

NetworkFit measure_network(Communicator& comm, const std::function<void()>& barrier, double max_bytes,
                           const std::vector<CollectiveSize>& wanted, const std::function<double(double)>& copy_price,
                           double budget, int64_t evict_bytes, int64_t max_streamed,
                           const std::function<double()>& segment, size_t segments) {
  SY_CHECK(comm.mesh().devices() == 2, "measure_network: {} devices; the fit is for 2", comm.mesh().devices());
  const std::vector<size_t> axes{0};
  NetworkFit fit;
  HostFloats in, out;
  std::vector<float> evict(static_cast<size_t>(evict_bytes / 4), 0.0f);
  float stamp = 0;
  // The samples of `sizes` (`kind` on V = `bytes`), each repetition prepared as a step would (the
  // header). The sizes take turns: each round runs one repetition of every size still measuring,
  // so the machine's drift reaches every size alike. Measured one size after another, a size's
  // repetitions all fell in one stretch of the machine's weather: on two network-namespace hosts
  // the 512 KiB all_reduce came out 773 µs between 230 µs at 256 KiB and 426 µs at 640 KiB, and
  // the step's 512 KiB all_reduces were priced +122 %. A size measures while its collective time
  // is under `budget` (both ranks agreeing), 6 to 99 repetitions after one warm-up; all on one
  // pair of buffers of the largest size (on huge pages, as a step's arena).
  OwnTimer timer(comm, barrier);
  auto sample_all = [&](const std::vector<CollectiveSize>& sizes) {
    if (sizes.empty()) return std::vector<CollectiveSample>{};
    std::vector<CollectiveNode> nodes;
    size_t most_in = 0, most_out = 0;
    for (const CollectiveSize& size : sizes) {
      nodes.push_back(node_for(comm, size.kind.c_str(), static_cast<int64_t>(size.bytes)));
      most_in = std::max(most_in, static_cast<size_t>(num_elements(nodes.back().in.shape)));
      most_out = std::max(most_out, static_cast<size_t>(num_elements(nodes.back().out.shape)));
    }
    in.assign(most_in);
    out.assign(most_out);
    std::vector<std::vector<double>> times(sizes.size());
    std::vector<double> spent(sizes.size(), 0.0);
    std::vector<float> go(sizes.size(), 1.0f);
    for (int r = 0; r < 100; ++r) {
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (r > 6 && go[i] == 0) continue;
        stamp += 1;
        stream_through(evict, stamp);  // the compute between two collectives
        std::fill(in.data(), in.data() + num_elements(nodes[i].in.shape), stamp);  // the input's producer
        barrier();                                                          // both ranks start together
        const double t = timer.time(nodes[i], in.data(), out.data());  // from the later start: no barrier skew
        if (r > 0) times[i].push_back(t);  // the first is a warm-up
        spent[i] += t;
      }
      // Both ranks must agree on which sizes go on: those either has budget left for.
      for (size_t i = 0; i < sizes.size(); ++i) go[i] = spent[i] < budget ? 1.0f : 0.0f;
      comm.all_reduce(go.data(), static_cast<int64_t>(go.size()), DType::f32, ReduceOp::max, axes);
      if (r >= 6 && std::all_of(go.begin(), go.end(), [](float g) { return g == 0; })) break;
    }
    std::vector<CollectiveSample> samples;
    for (size_t i = 0; i < sizes.size(); ++i) {
      CollectiveSample sample{sizes[i].kind, sizes[i].bytes, median(times[i])};
      if (nodes[i].kind == OpKind::all_reduce) sample.copy_seconds = copy_price(sizes[i].bytes);
      samples.push_back(sample);
    }
    return samples;
  };
  fit.samples = sample_all(network_sample_sizes(max_bytes, wanted));

  std::optional<PathMeasure> paths;
  if (max_streamed > evict_bytes) {
    paths.emplace(comm, barrier, evict_bytes, max_streamed, segment, segments);
    paths->probes(fit);
    paths->pairs(fit);
  }
  if (fit.eager_limit > 0) {
    // The first message past the eager limit (twice it: the probes' next size) is a rendezvous, a
    // handshake more than the eager message below it: the samples either side of the switch would
    // interpolate it as a ramp (two local ranks: 2.2 µs at 2 KiB per peer, 9.3 µs at 8 KiB; the
    // router's 4 KiB-per-peer all_gather priced at 5 µs). Each data-movement kind at that size
    // (V = 2 · the message), in order among its samples.
    const double v = 4 * fit.eager_limit;
    std::vector<CollectiveSize> missing;
    for (const char* kind : {"all_gather", "all_to_all", "reduce_scatter"})
      if (std::none_of(fit.samples.begin(), fit.samples.end(),
                       [&](const CollectiveSample& x) { return x.kind == kind && x.bytes == v; }))
        missing.push_back({kind, v});
    for (const CollectiveSample& sample : sample_all(missing)) {
      auto at = std::find_if(fit.samples.begin(), fit.samples.end(),
                             [&](const CollectiveSample& x) { return x.kind == sample.kind && x.bytes >= v; });
      fit.samples.insert(at, sample);
    }
  }
  fit_network(fit);
  if (paths) paths->curves(fit);
  return fit;
}

void add_ragged_shapes(const Graph& program, std::vector<RaggedShape>& shapes) {
  for (const Node& n : program.nodes) {
    if (n.kind != OpKind::all_to_all) continue;
    const TensorType &in = program.type(n.inputs.at(0)), &out = program.type(n.outputs.at(0));
    if (!dim_index(in.shape, std::string(kCapacityDim))) continue;
    const auto& attrs = std::get<CollectiveAttrs>(n.attrs);
    const bool seen = std::any_of(shapes.begin(), shapes.end(), [&](const RaggedShape& r) {
      return r.in == in && r.out == out && r.attrs.scatter_dim == attrs.scatter_dim &&
             r.attrs.gather_dim == attrs.gather_dim && r.attrs.axes == attrs.axes;
    });
    if (!seen) shapes.push_back({attrs, in, out});
  }
}

std::vector<CollectiveSample> measure_ragged_all_to_all(Communicator& comm, const std::function<void()>& barrier,
                                                        const std::vector<RaggedShape>& shapes, double budget,
                                                        int64_t streamed) {
  const std::vector<size_t> axes{0};
  std::vector<CollectiveSample> samples;
  if (shapes.empty()) return samples;
  OwnTimer timer(comm, barrier);
  std::vector<float> stream(static_cast<size_t>(streamed / 4), 0.0f);
  HostFloats x, y;  // the executor's buffers are on huge pages too (executor/host_memory.hpp)
  float stamp = 0;
  for (const RaggedShape& shape : shapes) {
    // The tails' blocks: the dims before the capacity dim; rows: it; inner: the dims after it.
    const size_t ax = *dim_index(shape.in.shape, std::string(kCapacityDim));
    exec::RowTails tails;
    tails.outer = 1;
    tails.rows = shape.in.shape[ax].size;
    tails.inner = 1;
    for (size_t i = 0; i < shape.in.shape.size(); ++i)
      if (i < ax) tails.outer *= shape.in.shape[i].size;
      else if (i > ax) tails.inner *= shape.in.shape[i].size;
    const int64_t row_bytes = tails.inner * dtype_bytes(shape.in.dtype);
    x.assign(static_cast<size_t>((num_bytes(shape.in) + 3) / 4));
    y.assign(static_cast<size_t>((num_bytes(shape.out) + 3) / 4));
    for (const double fill : {0.25, 0.5, 0.75, 1.0}) {
      const int64_t rows = std::max<int64_t>(1, std::llround(fill * static_cast<double>(tails.rows)));
      tails.extent.assign(static_cast<size_t>(tails.outer), rows);
      tails.zeroed = tails.extent;
      std::vector<double> times;
      double spent = 0;
      bool ragged = true;
      for (int r = 0; r < 100 && ragged; ++r) {
        stamp += 1;
        stream_through(stream, stamp);                // the step's ops since the last ragged all_to_all
        for (float& v : x) v += stamp;                // the dispatch einsum writes the input
        barrier();
        exec::RowTails out_tails;
        const double t = timer.time([&] {
          ragged = exec::ragged_all_to_all(comm, shape.attrs, shape.in, x.data(), tails, shape.out, y.data(), out_tails);
        });
        if (r > 0) times.push_back(t);  // the first is a warm-up
        spent += t;
        float go = spent < budget ? 1.0f : 0.0f;  // both ranks go on while either has budget left
        comm.all_reduce(&go, 1, DType::f32, ReduceOp::max, axes);
        if (r >= 6 && go == 0) break;
      }
      if (!ragged) break;  // the dense path (both ranks decide alike): not this curve's
      samples.push_back({"ragged_all_to_all", static_cast<double>(rows * row_bytes * tails.outer), median(times)});
    }
  }
  return samples;
}

EfficiencyCurve ragged_all_to_all_curve(std::vector<CollectiveSample> samples) {
  std::sort(samples.begin(), samples.end(), [](const auto& a, const auto& b) { return a.bytes < b.bytes; });
  EfficiencyCurve c;
  for (size_t i = 0; i < samples.size();) {
    size_t j = i;
    std::vector<double> bytes, seconds;
    while (j < samples.size() && samples[j].bytes <= 1.02 * samples[i].bytes) {
      bytes.push_back(samples[j].bytes);
      seconds.push_back(samples[j].seconds);
      ++j;
    }
    auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); };
    c.points.emplace_back(mean(bytes), mean(seconds));
    i = j;
  }
  return c;
}

}  // namespace sy
