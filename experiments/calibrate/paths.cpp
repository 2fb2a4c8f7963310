#include "experiments/calibrate/paths.hpp"

#include "experiments/calibrate/network.hpp"
#include "experiments/calibrate/timing.hpp"
#include "simulator/report.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

namespace sy {

using timing::median;

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

std::map<OpKind, CurveScales> curve_scales(const std::vector<PairProbe>& probes,
                                           const std::function<double(OpKind, double)>& price, double curve_at_gap) {
  std::map<OpKind, std::map<double, const PairProbe*>> by_payload;  // a kind's probes at one payload share cold and hot
  for (const PairProbe& p : probes) by_payload[p.probe][p.payload] = &p;
  std::map<OpKind, std::pair<double, double>> figures;  // kind -> (hot's saving, cold's addition), medians
  for (const auto& [k, at] : by_payload) {
    std::vector<double> saved, added;
    for (const auto& [payload, p] : at) {
      const double priced = price(k, payload);
      saved.push_back(priced - p->hot);
      added.push_back(p->cold - priced);
    }
    figures[k] = {median(saved), median(added)};
  }
  constexpr double kLeast = 1e-6;  // seconds: less is no curve to scale
  auto ratio = [&](double x, double base) { return base < kLeast ? 1.0 : std::max(0.0, x / base); };
  auto ag = figures.find(OpKind::all_gather);
  std::map<OpKind, CurveScales> scales;
  for (const auto& [k, f] : figures) {
    CurveScales& s = scales[k];
    s.below = ratio(f.first, -curve_at_gap);
    if (k != OpKind::all_gather && ag != figures.end()) s.above = ratio(f.second, ag->second.second);
  }
  return scales;
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

using namespace timing;

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

std::string paths_report(const NetworkFit& net, const std::string& between) {
  std::string r;
  for (const PathProbe& p : net.path_probes)
    r += fmt::format("path probe {:>10} per peer: {:7.1f} µs cold, {:7.1f} µs after an 8 B all_reduce, {:7.1f} µs "
                     "after an all_to_all, {:7.1f} µs after the same all_gather\n",
                     format_bytes(p.payload), p.cold * 1e6, p.warmed * 1e6, p.after_copy * 1e6, p.hot * 1e6);
  for (const PairProbe& p : net.pair_probes)
    r += fmt::format("pair probe {:<14} {:>10} per peer: {:7.1f} µs cold, {:7.1f} µs after {:<15} {:7.1f} µs after "
                     "itself: share {:.2f}\n",
                     op_name(p.probe), format_bytes(p.payload), p.cold * 1e6, p.warmed * 1e6,
                     fmt::format("{},", op_name(p.by)), p.hot * 1e6, warmed_share(p));
  for (const auto& [k, by] : net.warmed_by)
    for (const auto& [j, w] : by)
      r += fmt::format("eager path: of a cold {}'s cost, {:.2f} is warmed by a call of {}\n", op_name(k), w, op_name(j));
  for (const auto& [k, s] : net.curve_scales)
    r += fmt::format("eager path: {}'s cold cost is the curve times {:.2f} below 0 (warmer than its sample), {:.2f} "
                     "above\n",
                     op_name(k), s.below, s.above);
  r += fmt::format("eager path: messages up to {} per peer{}; of a cold collective's cost {:.2f} is warmed by any "
                   "collective{}\n",
                   format_bytes(net.eager_limit), net.eager_limit > 0 ? "" : " (0: one path)", net.eager_path_share,
                   net.eager_limit > 0 ? fmt::format(", of a single copy's {:.2f} (and {:.2f} by any single copy)",
                                                     net.copy_path_share, net.copy_warm_share)
                                       : "");
  for (const auto& [bytes, seconds] : net.eager_latency_after_streaming.points)
    r += fmt::format("eager path, after {} {:>10}: a collective takes {:8.1f} µs more\n", between, format_bytes(bytes),
                     seconds * 1e6);
  for (const auto& [bytes, seconds] : net.latency_after_streaming.points)
    r += fmt::format("after {} {:>10}: a collective takes {:8.1f} µs more\n", between, format_bytes(bytes),
                     seconds * 1e6);
  return r;
}

void measure_paths(Communicator& comm, const std::function<void()>& barrier, int64_t evict_bytes, int64_t max_streamed,
                   NetworkFit& fit) {
  PathMeasure paths(comm, barrier, evict_bytes, max_streamed, {}, 0);
  paths.probes(fit);
  paths.pairs(fit);
}

void measure_path_curves(Communicator& comm, const std::function<void()>& barrier, int64_t evict_bytes,
                         int64_t max_streamed, const std::function<double()>& segment, size_t segments,
                         NetworkFit& fit) {
  PathMeasure(comm, barrier, evict_bytes, max_streamed, segment, segments).curves(fit);
}

}  // namespace sy
