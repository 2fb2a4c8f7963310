// Times square einsums a [m, k] x b [k, n] -> [m, n] through the Executor (oneDNN matmul) in
// f32 and bf16 and prints GFLOP/s (2 m n k flops per matmul; best of --reps runs after one
// warm-up run).
//
//   build/bin/bench_matmul                       # 1024^3 and 2048^3, f32 and bf16, all cores
//   build/bin/bench_matmul --sizes 512 --reps 10 --threads 1
#include "executor/executor.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

namespace {

// Seconds of the best of `reps` runs of a size^3 einsum at dtype dt.
double time_einsum(int64_t size, sy::DType dt, int reps, int threads) {
  sy::Graph g;
  sy::Builder b(g);
  sy::Expr a = b.input("a", {{"m", size}, {"k", size}}, dt);  // [m, k]
  sy::Expr w = b.input("b", {{"k", size}, {"n", size}}, dt);  // [k, n]
  b.output("c", einsum(a, w, {"m", "n"}));                  // [m, n]

  sy::ExecutorOptions opts;
  opts.threads = threads;
  sy::Executor ex(g, opts);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (sy::ValueId leaf : g.inputs()) {
    sy::Tensor t(g.type(leaf));
    for (double& x : t.data) x = u(rng);
    ex.set(leaf, t);
  }
  ex.run();  // warm-up: first-touch of buffers, oneDNN kernel JIT
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    ex.run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("bench_matmul", [&] {
    CLI::App app{"Times a size^3 einsum (oneDNN matmul via the Executor) in f32 and bf16 and prints GFLOP/s."};
    std::vector<int64_t> sizes = {1024, 2048};
    int reps = 5;
    int threads = 0;
    app.add_option("--sizes", sizes, "matrix sizes m = n = k")->check(CLI::PositiveNumber);
    app.add_option("--reps", reps, "timed runs per size (best is reported)")->check(CLI::PositiveNumber);
    app.add_option("--threads", threads, "threads (0: all cores)")->check(CLI::NonNegativeNumber);
    sy::parse_command_line(app, argc, argv);

    fmt::print("{:>6} {:>5} {:>10} {:>10}\n", "size", "dtype", "ms", "GFLOP/s");
    for (int64_t size : sizes)
      for (sy::DType dt : {sy::DType::f32, sy::DType::bf16}) {
        const double s = time_einsum(size, dt, reps, threads);
        const double flops = 2.0 * static_cast<double>(size) * static_cast<double>(size) * static_cast<double>(size);
        fmt::print("{:>6} {:>5} {:>10.3f} {:>10.1f}\n", size, sy::dtype_name(dt), s * 1e3, flops / s * 1e-9);
        std::fflush(stdout);
      }
    return 0;
  });
}
