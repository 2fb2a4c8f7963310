#include "simulator/roofline.hpp"

#include <algorithm>

namespace sy {

std::string_view bound_name(Bound b) {
  switch (b) {
    case Bound::compute: return "compute";
    case Bound::memory: return "memory";
    case Bound::network: return "network";
    case Bound::latency: return "latency";
  }
  return "?";
}

OpTime roofline(const HardwareSpec& hw, OpClass c, DType dtype, const OpCost& cost) {
  const ClassEfficiency& eff = hw.efficiency_of(c);
  const double bytes = cost.bytes_read + cost.bytes_written;
  OpTime t;
  t.compute = cost.flops > 0 ? cost.flops / (hw.peak_flops(c, dtype) * eff.compute.at(cost.flops)) : 0.0;
  t.memory = bytes > 0 ? bytes / (hw.hbm_bandwidth * eff.memory.at(bytes)) : 0.0;
  t.intensity = bytes > 0 ? cost.flops / bytes : 0.0;
  t.bound = t.compute > t.memory ? Bound::compute : Bound::memory;
  t.time = std::max(t.compute, t.memory) + hw.op_overhead;
  return t;
}

}  // namespace sy
