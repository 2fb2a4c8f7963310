#include "experiments/bench/machine_limits.hpp"

#include "executor/executor.hpp"
#include "graph/builder.hpp"

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace sy::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// FLOP/s of the best of `reps` runs of a size^3 einsum at dtype t (after one warm-up run).
double matmul_flops(DType t, int threads, int64_t size = 2048, int reps = 3) {
  Graph g;
  Builder b(g);
  Expr x = b.input("a", {{"m", size}, {"k", size}}, t);  // [m, k]
  Expr w = b.input("b", {{"k", size}, {"n", size}}, t);  // [k, n]
  b.output("c", einsum(x, w, {"m", "n"}));             // [m, n]
  ExecutorOptions opts;
  opts.threads = threads;
  Executor ex(g, opts);
  for (ValueId leaf : g.inputs()) ex.set(leaf, Tensor(g.type(leaf), 0.5));
  ex.run();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    ex.run();
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * static_cast<double>(size * size * size) / best;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void add_arrays(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

// Bytes/s of the best of `reps` runs of y = a + b over three arrays of 64 MiB (after a warm-up run
// that also touches the pages).
double stream_bandwidth(int threads, int reps = 5) {
  constexpr int64_t n = int64_t{16} << 20;  // floats per array
  constexpr int64_t kChunk = int64_t{1} << 16;
  std::vector<float> a(n, 1.0f), b(n, 2.0f), y(n);
  tbb::global_control cap(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads));
  double best = 1e30;
  for (int r = 0; r <= reps; ++r) {
    const auto t0 = Clock::now();
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, n / kChunk, 1), [&](const tbb::blocked_range<int64_t>& c) {
      for (int64_t k = c.begin(); k < c.end(); ++k) add_arrays(a.data() + k * kChunk, b.data() + k * kChunk, y.data() + k * kChunk, kChunk);
    });
    if (r > 0) best = std::min(best, seconds_since(t0));
  }
  return 3.0 * static_cast<double>(n) * sizeof(float) / best;
}

// Exps/s of the faster of two peers over 2^18 floats (1 MiB each way, cache-resident, so the exp's
// instructions and not memory set the time), best of `reps` batches of 20 runs: the executor's own
// exp (vectorised Cephes polynomial, bit-identical across ISAs, executor/kernels.hpp) and oneDNN's
// JIT eltwise exp.
double exp_rate(int threads, int reps = 5) {
  constexpr int64_t n = int64_t{1} << 18;
  constexpr int kRuns = 20;
  Graph g;
  Builder b(g);
  b.output("y", exp(b.input("x", {{"n", n}}, DType::f32)));
  ExecutorOptions opts;
  opts.threads = threads;
  Executor ex(g, opts);
  ex.set(g.inputs().at(0), Tensor(g.type(g.inputs().at(0)), 0.25));
  ex.run();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (int k = 0; k < kRuns; ++k) ex.run();
    best = std::min(best, seconds_since(t0) / kRuns);
  }
  omp_set_num_threads(threads);
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::memory::desc md({n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a);
  const dnnl::eltwise_forward prim(
      dnnl::eltwise_forward::primitive_desc({dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_exp, md, 0.f, 0.f}, engine));
  std::vector<float> x(n, 0.25f), y(n);
  dnnl::memory mx(md, engine, x.data()), my(md, engine, y.data());
  for (int r = 0; r <= reps; ++r) {
    const auto t0 = Clock::now();
    for (int k = 0; k < kRuns; ++k) prim.execute(stream, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DST, my}});
    stream.wait();
    if (r > 0) best = std::min(best, seconds_since(t0) / kRuns);
  }
  return static_cast<double>(n) / best;
}

}  // namespace

MachineLimits measure_machine_limits(int threads) {
  if (threads <= 0) threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  MachineLimits m;
  m.matmul_f32 = matmul_flops(DType::f32, threads);
  m.matmul_bf16 = matmul_flops(DType::bf16, threads);
  m.bandwidth = stream_bandwidth(threads);
  m.exp_rate = exp_rate(threads);
  return m;
}

}  // namespace sy::bench
