// Fixtures the simulator's unit tests share: a chip with round numbers, an op of a result by the
// value it produces.
#pragma once

#include "graph/ir.hpp"
#include "simulator/hardware.hpp"
#include "simulator/simulate.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

namespace sy::test {

// A chip with round numbers: 1 GFLOP/s everywhere, memory so fast that every op is
// compute-bound, 1 GB/s links with no latency, 4 chips in a ring.
inline HardwareSpec simple_chip() {
  HardwareSpec h;
  h.name = "simple";
  h.matmul_flops_bf16 = h.matmul_flops_f32 = h.vector_flops = 1e9;
  h.hbm_bytes = 1e9;
  h.hbm_bandwidth = 1e18;
  h.link_bandwidth = 1e9;
  h.hop_latency = 0;
  h.torus = {4};
  h.wraparound = Wraparound::always;
  return h;
}

inline const SimOp& op_of(const SimResult& r, const Graph& g, ValueId out) {
  const auto it = std::find_if(r.ops.begin(), r.ops.end(), [&](const SimOp& o) { return o.node == g.value(out).producer.v; });
  REQUIRE(it != r.ops.end());
  return *it;
}

}  // namespace sy::test
