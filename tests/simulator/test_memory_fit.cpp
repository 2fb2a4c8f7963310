// calibrate's memory roofline (experiments/calibrate/memory.hpp) on ops timed on the development
// host (small.toml's step, two local ranks, 2026-12-06): the roofline must give back each op's
// measured time, including ops that stream from the caches faster than the DRAM-sized add.
#include "experiments/calibrate/memory.hpp"
#include "simulator/roofline.hpp"

#include <catch2/catch.hpp>

#include <vector>

TEST_CASE("memory fit: an op faster than the DRAM-sized add is priced at its measured time") {
  const double dram = 27.4e9;            // f32 add of 2^24 elements
  const double overhead = 0.17e-6;       // per op
  const std::vector<sy::TimedOp> mul = {{1050624, 12.0e-6},   // 88 GB/s: operands in L2
                                        {6291456, 105.4e-6},  // 60 GB/s: L3
                                        {33556480, 600.9e-6}};  // 56 GB/s
  const double peak = sy::memory_peak(mul, overhead, dram);
  CHECK(peak == Approx(1050624 / (12.0e-6 - overhead)));  // the fastest op sets it, not the DRAM add
  std::vector<std::pair<double, double>> points;
  for (const sy::TimedOp& op : mul) points.emplace_back(op.bytes, sy::memory_efficiency(op, peak, overhead));
  sy::HardwareSpec hw;
  hw.name = "host";
  hw.hbm_bandwidth = peak;
  hw.vector_flops = 1e15;  // memory-bound
  hw.op_overhead = overhead;
  hw.kind_efficiency[sy::OpKind::mul].memory = sy::curve_of(points);
  for (const sy::TimedOp& op : mul) {
    const sy::OpCost cost{.flops = op.bytes / 12, .bytes_read = op.bytes * 2 / 3, .bytes_written = op.bytes / 3};
    INFO(op.bytes << " B measured " << op.seconds);
    // The per-op overhead is added back by the roofline: the measured time, to rounding.
    CHECK(sy::roofline(hw, sy::OpKind::mul, sy::DType::f32, cost).time == Approx(op.seconds).epsilon(1e-9));
  }
  // With the DRAM rate as the peak every one of them would be clamped to a fraction of 1 and priced
  // at 27.4 GB/s: 2-3x its measured time.
  CHECK(sy::memory_efficiency(mul[0], dram, overhead) > 1);
}

TEST_CASE("memory fit: the peak ignores a tiny op's timing noise and never falls below the DRAM rate") {
  // A 12 KiB op at 0.2 µs would claim 410 GB/s once the 0.17 µs overhead is taken out: too close
  // to the overhead to count. At 2 µs (12 overheads) it counts.
  CHECK(sy::memory_peak({{12288, 0.2e-6}}, 0.17e-6, 27.4e9) == 27.4e9);
  CHECK(sy::memory_peak({{122880, 2.0e-6}}, 0.17e-6, 27.4e9) == Approx(122880 / 1.83e-6));
  CHECK(sy::memory_peak({{1e6, 1e-3}}, 0.17e-6, 27.4e9) == 27.4e9);  // 1 GB/s: slower than DRAM
  CHECK(sy::memory_peak({}, 0.17e-6, 27.4e9) == 27.4e9);
}
