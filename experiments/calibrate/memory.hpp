// calibrate's memory roofline for a CPU: the peak bandwidth and each op kind's curve, from ops
// timed through the Executor.
//
// A CPU streams an op's operands from whichever cache level holds them. On the development host
// (AMD EPYC, 2 cores, 2026-12-06) an f32 add of 2^24 elements (192 MiB of traffic) ran at 27 GB/s
// from DRAM, while the muls of small.toml's step (1-6 MiB) ran at 44-88 GB/s from L2/L3. One
// roofline bandwidth prices both only when it is the fastest rate measured and each kind's curve
// says what fraction of it the kind reaches at its size (falling as the operands leave the
// caches). With the DRAM rate as the peak, those ops' fractions came out above 1 and were clamped:
// the step's muls were priced 1.6-2.2x and its adds 1.1-1.7x their measured times.
#pragma once
#include "simulator/hardware.hpp"

#include <utility>
#include <vector>

namespace sy {

struct TimedOp {
  double bytes = 0;    // read + written
  double seconds = 0;  // measured, the per-op overhead included
};

// The fastest streaming rate among `ops`, bytes / (seconds − overhead), and at least `floor` (the
// large add's DRAM rate). Only ops of at least 10 overheads count: below that the rate is mostly
// the overhead's noise (a 12 KiB op at 0.2 µs with 0.17 µs of overhead would claim 410 GB/s).
double memory_peak(const std::vector<TimedOp>& ops, double overhead, double floor);

// The fraction of `peak` an op reaches once the per-op overhead is taken out:
// (bytes / peak) / (seconds − overhead).
double memory_efficiency(const TimedOp& op, double peak, double overhead);

// Measured (size, fraction) points -> a curve: sorted by size, equal sizes averaged, fractions
// clamped to [1e-4, 1].
EfficiencyCurve curve_of(std::vector<std::pair<double, double>> points);

}  // namespace sy
