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
  return roofline(hw, c, dtype, cost, hw.efficiency_of(c));
}

OpTime roofline(const HardwareSpec& hw, OpKind k, DType dtype, const OpCost& cost, bool broadcast) {
  return roofline(hw, op_def(k).op_class, dtype, cost, hw.efficiency_of(k, broadcast));
}

bool is_broadcast(OpKind k, const std::vector<TensorType>& in) {
  const bool binary = k == OpKind::add || k == OpKind::sub || k == OpKind::mul || k == OpKind::div ||
                      k == OpKind::greater || k == OpKind::where;
  if (!binary || in.size() < 2) return false;
  // where(cond, a, b): cond broadcasts into a.
  return num_elements(in[1].shape) < num_elements(in[0].shape) ||
         (k == OpKind::where && num_elements(in[0].shape) < num_elements(in[1].shape));
}

OpTime roofline(const HardwareSpec& hw, OpClass c, DType dtype, const OpCost& cost, const ClassEfficiency& eff) {
  const double bytes = cost.bytes_read + cost.bytes_written;
  OpTime t;
  t.compute = cost.flops > 0 ? cost.flops / (hw.peak_flops(c, dtype) * eff.compute.at(cost.flops)) : 0.0;
  t.memory = bytes > 0 ? bytes / (hw.hbm_bandwidth * eff.memory.at(bytes)) : 0.0;
  t.intensity = bytes > 0 ? cost.flops / bytes : 0.0;
  t.bound = t.compute > t.memory ? Bound::compute : Bound::memory;
  // An op with no work (the optimization barrier `after`: an alias) launches no kernel.
  t.time = cost.flops == 0 && bytes == 0 ? 0.0 : std::max(t.compute, t.memory) + hw.op_overhead;
  return t;
}

double staging_copy_time(const HardwareSpec& hw, DType dtype, double bytes) {
  return roofline(hw, OpClass::elementwise, dtype, OpCost{.bytes_read = bytes, .bytes_written = bytes}).time;
}

OpTime roofline_fused(const HardwareSpec& hw, double compute, const OpCost& cost, const ClassEfficiency& eff) {
  const double bytes = cost.bytes_read + cost.bytes_written;
  OpTime t;
  t.compute = compute;
  t.memory = bytes > 0 ? bytes / (hw.hbm_bandwidth * eff.memory.at(bytes)) : 0.0;
  t.intensity = bytes > 0 ? cost.flops / bytes : 0.0;
  t.bound = t.compute > t.memory ? Bound::compute : Bound::memory;
  t.time = std::max(t.compute, t.memory) + hw.op_overhead;
  return t;
}

}  // namespace sy
