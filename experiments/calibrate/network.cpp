#include "experiments/calibrate/network.hpp"

#include "executor/host_memory.hpp"
#include "graph/error.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>

namespace sy {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// f32 buffers allocated as the executor allocates its arena (executor/host_memory.hpp: from 2 MiB
// up on transparent huge pages), so a collective here reads and writes memory as a step's do:
// Open MPI's single copy from the peer (CMA) pins every page of the peer's buffer, and on 4 KiB
// pages a step's all_reduces took 1.24x as long as on huge pages (experiments/bench_huge_pages).
class HostFloats {
 public:
  // n elements, zeroed; the storage is kept for later calls of at most its size.
  void assign(size_t n) {
    if (n > capacity_) {
      bytes_ = exec::alloc_host_bytes(static_cast<int64_t>(n * sizeof(float)));
      capacity_ = n;
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

  // Each data-movement kind's own α and e(V) (NetworkFit::kinds). all_reduce keeps the shared
  // values above, which its reduction bandwidth was fitted with.
  for (const char* kind : {"all_gather", "all_to_all", "reduce_scatter"}) {
    CollectiveKindNetwork k;
    const CollectiveSample* smallest_k = nullptr;
    for (const CollectiveSample& s : fit.samples)
      if (s.kind == kind && (!smallest_k || s.bytes < smallest_k->bytes)) smallest_k = &s;
    if (!smallest_k) continue;
    k.hop_latency = smallest_k->seconds;
    for (const CollectiveSample& s : fit.samples) {
      if (s.kind != kind) continue;
      const double rest = s.seconds - k.hop_latency;
      const double e = rest > 0 ? std::min(1.0, bandwidth_terms(fit, s) / rest) : 1.0;
      k.efficiency_by_size.points.emplace_back(s.bytes, std::max(1e-3, e));
    }
    fit.kinds[kind_of(kind)] = std::move(k);
  }
}

NetworkFit measure_network(Communicator& comm, const std::function<void()>& barrier, double max_bytes, double budget,
                           int64_t evict_bytes, int64_t max_streamed) {
  SY_CHECK(comm.mesh().devices() == 2, "measure_network: {} devices; the fit is for 2", comm.mesh().devices());
  const std::vector<size_t> axes{0};
  NetworkFit fit;
  HostFloats in, out;
  std::vector<float> evict(static_cast<size_t>(evict_bytes / 4), 0.0f);
  float stamp = 0;
  for (const char* kind : {"all_gather", "all_to_all", "reduce_scatter", "all_reduce"})
    for (double bytes = 256; bytes <= max_bytes; bytes *= 4) {
      const CollectiveNode n = node_for(comm, kind, static_cast<int64_t>(bytes));
      in.assign(static_cast<size_t>(num_elements(n.in.shape)));
      out.assign(static_cast<size_t>(num_elements(n.out.shape)));
      std::vector<double> times;
      double spent = 0;
      for (int r = 0; r < 100; ++r) {
        stamp += 1;
        stream_through(evict, stamp);                  // the compute between two collectives
        std::fill(in.begin(), in.end(), stamp);        // the input's producer
        barrier();                                     // both ranks start together
        const double t0 = now();
        run_collective(comm, n.kind, n.attrs, n.in, in.data(), n.out, out.data());
        const double t = now() - t0;
        if (r > 0) times.push_back(t);  // the first is a warm-up
        spent += t;
        // Both ranks must agree on whether to go on: while either has budget left.
        float go = spent < budget ? 1.0f : 0.0f;
        comm.all_reduce(&go, 1, DType::f32, ReduceOp::max, axes);
        if (r >= 6 && go == 0) break;
      }
      CollectiveSample sample{kind, bytes, median(times)};
      if (n.kind == OpKind::all_reduce) {  // its copy alone, prepared the same way
        std::vector<double> copies;
        for (int r = 0; r < 6; ++r) {
          stamp += 1;
          stream_through(evict, stamp);
          std::fill(in.begin(), in.end(), stamp);
          const double t0 = now();
          std::copy(in.begin(), in.end(), out.begin());
          if (r > 0) copies.push_back(now() - t0);
        }
        sample.copy_seconds = median(copies);
      }
      fit.samples.push_back(sample);
    }
  fit_network(fit);

  // HardwareSpec::latency_after_streaming: a 16 KiB all_gather again, after each rank streamed
  // E bytes (E = 4·evict_bytes, 16·evict_bytes, ... up to max_streamed) instead of evict_bytes; its
  // time above the same all_gather's after evict_bytes is what that volume of streaming adds. The
  // first point, at evict_bytes, is 0: every sample above was measured there.
  if (max_streamed > evict_bytes) {
    // 16 KiB: above Open MPI's shared-memory eager limit (4 KiB), so the transfer takes the
    // rendezvous path (a single copy from the peer's pages: their page-table entries are walked
    // too), as the collectives of a step mostly do; 256 B stays in the eager queues.
    constexpr double kBytes = 16 << 10;
    const CollectiveNode n = node_for(comm, "all_gather", static_cast<int64_t>(kBytes));
    double base = 0;  // the same all_gather after evict_bytes, measured above
    for (const CollectiveSample& x : fit.samples)
      if (x.kind == "all_gather" && x.bytes == kBytes) base = x.seconds;
    in.assign(static_cast<size_t>(num_elements(n.in.shape)));
    out.assign(static_cast<size_t>(num_elements(n.out.shape)));
    evict = {};
    fit.latency_after_streaming.points.emplace_back(static_cast<double>(evict_bytes), 0.0);
    for (int64_t volume = 4 * evict_bytes; volume <= max_streamed; volume *= 4) {
      std::vector<float> streamed(static_cast<size_t>(volume / 4), 0.0f);
      std::vector<double> times;
      for (int r = 0; r < 12; ++r) {
        stamp += 1;
        stream_through(streamed, stamp);
        std::fill(in.begin(), in.end(), stamp);
        barrier();
        const double t0 = now();
        run_collective(comm, n.kind, n.attrs, n.in, in.data(), n.out, out.data());
        if (r > 0) times.push_back(now() - t0);
      }
      // Both ranks write the same curve: the mean of their medians.
      float extra = static_cast<float>(std::max(0.0, median(times) - base));
      comm.all_reduce(&extra, 1, DType::f32, ReduceOp::mean, axes);
      fit.latency_after_streaming.points.emplace_back(static_cast<double>(volume), static_cast<double>(extra));
    }
  }
  return fit;
}

}  // namespace sy
