#include "experiments/calibrate/network.hpp"

#include "executor/mpi/ragged_all_to_all.hpp"
#include "experiments/calibrate/timing.hpp"
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

using namespace timing;

namespace {

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
  for (const auto& [k, scale] : fit.curve_scales) {
    auto [it, added] = h.collective_kinds.try_emplace(k);
    if (added) it->second.hop_latency = h.hop_latency;
    it->second.curve_scale_below = scale.below;
    it->second.curve_scale_above = scale.above;
  }
  h.staged_collectives = true;
  h.collective_overhead = 0;
}


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

  const bool paths = max_streamed > evict_bytes;
  if (paths) measure_paths(comm, barrier, evict_bytes, max_streamed, fit);
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
  if (paths) {
    measure_path_curves(comm, barrier, evict_bytes, max_streamed, segment, segments, fit);
    const EfficiencyCurve& eager = fit.eager_limit > 0 ? fit.eager_latency_after_streaming : fit.latency_after_streaming;
    fit.curve_scales = curve_scales(
        fit.pair_probes,
        [&](OpKind k, double payload) {
          CollectiveSample s{std::string(op_name(k)), 2 * payload};
          if (k == OpKind::all_reduce) s.copy_seconds = copy_price(s.bytes);
          return fit.predict(s);
        },
        eager.points.empty() ? 0.0 : eager.at(kPairGap));
  }
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
