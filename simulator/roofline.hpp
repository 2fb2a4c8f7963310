// Per-op roofline on a HardwareSpec, from the op's registered cost (OpDef::cost):
//   compute = flops / (peak(class, dtype) · η_compute(class, flops))
//   memory  = bytes / (HBM bandwidth · η_memory(class, bytes))
//   time    = max(compute, memory) + op_overhead
// bound = whichever term is larger; arithmetic intensity = flops / bytes.
#pragma once

#include "graph/op_def.hpp"
#include "simulator/hardware.hpp"

#include <string_view>
#include <vector>

namespace sy {

enum class Bound : uint8_t {
  compute,    // flops at the class's peak take longer than the bytes
  memory,     // HBM traffic takes longer
  network,    // a collective limited by link bandwidth
  latency,    // a collective limited by per-hop latency and overheads
};
std::string_view bound_name(Bound b);

struct OpTime {
  double time = 0;
  double compute = 0;  // seconds of the flops term
  double memory = 0;   // seconds of the bytes term
  double intensity = 0;  // flops per byte
  Bound bound = Bound::memory;
};

// `dtype`: the dtype of the op's operands (selects the matmul peak). The efficiency curves are
// those of `eff` (by default the class's).
OpTime roofline(const HardwareSpec& hw, OpClass c, DType dtype, const OpCost& cost);
OpTime roofline(const HardwareSpec& hw, OpClass c, DType dtype, const OpCost& cost, const ClassEfficiency& eff);
// By op kind: its class's peak, and its own efficiency curves when the spec has them.
// `broadcast`: a binary element-wise op whose second operand broadcasts (is_broadcast).
OpTime roofline(const HardwareSpec& hw, OpKind k, DType dtype, const OpCost& cost, bool broadcast = false);

// A staging copy of `bytes` (a collective's pack, unpack or all_reduce's copy of its input on a
// staged backing): an element-wise pass, read once and written once, on the element-wise curve.
// simulate adds it to the collective, and calibrate takes the same price out of its all_reduce
// samples (experiments/calibrate/network.hpp), so the two must be this one function.
double staging_copy_time(const HardwareSpec& hw, DType dtype, double bytes);

// A fused group of ops priced as one (simulator/fusion.hpp): `compute` is the sum of its members'
// compute terms (each at its own class's peak), `cost.bytes_*` the group's HBM traffic, priced with
// the memory curve of `eff` (the class of the group's einsum or reduction, else of its root).
OpTime roofline_fused(const HardwareSpec& hw, double compute, const OpCost& cost, const ClassEfficiency& eff);

// A binary element-wise op (add, sub, mul, div, greater, where's values) whose second operand has
// fewer elements than its first.
bool is_broadcast(OpKind k, const std::vector<TensorType>& in);

}  // namespace sy
