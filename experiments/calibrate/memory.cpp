#include "experiments/calibrate/memory.hpp"

#include <algorithm>

namespace sy {

double memory_peak(const std::vector<TimedOp>& ops, double overhead, double floor) {
  double peak = floor;
  for (const TimedOp& op : ops)
    if (op.seconds > 0 && op.seconds >= 10 * overhead) peak = std::max(peak, op.bytes / (op.seconds - overhead));
  return peak;
}

double memory_efficiency(const TimedOp& op, double peak, double overhead) {
  return (op.bytes / peak) / std::max(op.seconds - overhead, 1e-9);
}

EfficiencyCurve curve_of(std::vector<std::pair<double, double>> points) {
  std::sort(points.begin(), points.end());
  EfficiencyCurve c;
  int same = 1;
  for (const auto& [size, eta] : points) {
    const double e = std::clamp(eta, 1e-4, 1.0);
    if (!c.points.empty() && size == c.points.back().first) {
      c.points.back().second = (c.points.back().second * same + e) / (same + 1);
      ++same;
    } else {
      c.points.emplace_back(size, e);
      same = 1;
    }
  }
  return c;
}

}  // namespace sy
