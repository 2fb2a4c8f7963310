#include "experiments/calibrate/network.hpp"

#include "graph/error.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

namespace sy {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

double NetworkFit::predict(const CollectiveSample& s) const {
  const double transfer = s.kind == "all_reduce" ? 2 * hop_latency + s.bytes / link_bandwidth
                                                 : hop_latency + s.bytes / 2 / link_bandwidth;
  const double reduce = s.kind == "all_reduce" && reduction_bandwidth > 0 ? s.bytes / 2 / reduction_bandwidth : 0.0;
  return transfer + reduce;
}

NetworkFit measure_network(Communicator& comm, const std::function<void()>& barrier, double max_bytes, double budget) {
  SY_CHECK(comm.mesh().devices() == 2, "measure_network: {} devices; the fit is for 2", comm.mesh().devices());
  const std::vector<size_t> axes{0};
  NetworkFit fit;
  std::vector<char> in, out;
  for (const char* kind : {"all_gather", "all_to_all", "all_reduce"})
    for (double bytes = 256; bytes <= max_bytes; bytes *= 4) {
      const auto n = static_cast<int64_t>(bytes);
      // all_gather: V = the gathered array (n / 2 per rank); all_to_all: n per rank; all_reduce: n.
      in.assign(static_cast<size_t>(n), 1);
      out.assign(static_cast<size_t>(n), 0);
      std::vector<double> times;
      double spent = 0;
      for (int r = 0; r < 100; ++r) {  // both ranks leave together (below)
        barrier();
        const double t0 = now();
        if (std::strcmp(kind, "all_gather") == 0) comm.all_gather(in.data(), out.data(), n / 2, axes);
        else if (std::strcmp(kind, "all_to_all") == 0) comm.all_to_all(in.data(), out.data(), n / 2, axes);
        else comm.all_reduce(in.data(), n / 4, DType::f32, ReduceOp::sum, axes);
        const double t = now() - t0;
        if (r > 0) times.push_back(t);  // the first is a warm-up
        spent += t;
        // Both ranks must agree on whether to go on: while either has budget left.
        float go = spent < budget ? 1.0f : 0.0f;
        comm.all_reduce(&go, 1, DType::f32, ReduceOp::max, axes);
        if (r >= 6 && go == 0) break;
      }
      fit.samples.push_back({kind, bytes, median(times)});
    }
  // α, 1/w: least squares of (α + x·β − t) / t over the data-movement samples (x = V/2).
  double s11 = 0, s12 = 0, s22 = 0, b1 = 0, b2 = 0;
  for (const CollectiveSample& s : fit.samples) {
    if (s.kind == "all_reduce") continue;
    const double a = 1 / s.seconds, x = s.bytes / 2 / s.seconds;
    s11 += a * a, s12 += a * x, s22 += x * x, b1 += a, b2 += x;
  }
  const double det = s11 * s22 - s12 * s12;
  SY_CHECK(det > 0, "measure_network: singular fit");
  fit.hop_latency = std::max(0.0, (b1 * s22 - b2 * s12) / det);
  const double beta = (s11 * b2 - s12 * b1) / det;
  SY_CHECK(beta > 0, "measure_network: fitted a non-positive time per byte ({})", beta);
  fit.link_bandwidth = 1 / beta;
  std::vector<double> rates;
  for (const CollectiveSample& s : fit.samples) {
    if (s.kind != "all_reduce" || s.bytes < (1 << 20)) continue;
    const double rest = s.seconds - 2 * fit.hop_latency - s.bytes * beta;
    if (rest > 0) rates.push_back(s.bytes / 2 / rest);
  }
  fit.reduction_bandwidth = !rates.empty() ? median(rates) : 0.0;
  return fit;
}

}  // namespace sy
