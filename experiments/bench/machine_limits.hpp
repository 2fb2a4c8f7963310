// What this machine can do at a thread count, measured in a second or so, for rooflines in the
// benchmarks: the oneDNN matmul peak through the Executor (f32 and bf16, as bench_matmul measures
// it) and the memory bandwidth of a streaming kernel (a TBB-parallel, vectorised y = a + b over
// arrays far larger than the caches), and the rate of exps on cache-resident data (the faster of
// the executor's exp and oneDNN's). An op's bound is then max(FLOPs / peak, bytes / bandwidth,
// transcendentals / exp rate) with its FLOPs, bytes and transcendentals from OpDef::cost: a
// softmax or a GELU evaluates a polynomial of tens of vector instructions per element, which on a
// CPU can take longer than moving its bytes.
#pragma once

#include "graph/dtype.hpp"

namespace sy::bench {

struct MachineLimits {
  double matmul_f32 = 0;   // FLOP/s, best of a few 2048^3 einsums
  double matmul_bf16 = 0;  // FLOP/s
  double bandwidth = 0;    // bytes/s read + written by y = a + b (3 × 64 MiB), best of a few runs
  double exp_rate = 0;     // exps/s over a cache-resident array: the executor's exp or oneDNN's, the faster

  double matmul(DType t) const { return t == DType::bf16 ? matmul_bf16 : matmul_f32; }
};

MachineLimits measure_machine_limits(int threads);  // threads 0: all cores

}  // namespace sy::bench
