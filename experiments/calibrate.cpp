// calibrate: measure this machine through the sy Executor and write a HardwareSpec for it.
//
//   calibrate --out host.toml [--threads 2] [--quick | --smoke]
//
// Measured, each the best of several runs after a warm-up:
//   matmul        square einsums [n, n] x [n, n] in f32 and bf16 (oneDNN): the peaks are the best
//                 rates, and efficiency.matmul.compute the rate at each size over the peak
//   memory        an f32 add of 2^24 elements (three arrays of 64 MiB): hbm_bandwidth
//   op overhead   a chain of 200 scalar-sized ops: op_overhead per op
//   every op kind one node at 2^10 .. 2^21 elements: efficiency.op.<kind>.memory = the time the
//                 bytes would take at hbm_bandwidth over the time measured (less op_overhead), so
//                 the roofline reproduces the measured time; vector_flops is the best flops rate
//                 seen, so the flops term never dominates a measured op. Kinds run by reference
//                 kernels (in double) come out slow, as they are.
// Collectives are not measured (one process): the [ici] section holds placeholders (loopback MPI,
// DESIGN.md) for a single-device mesh.
#include "executor/executor.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "simulator/hardware.hpp"
#include "simulator/report.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>

namespace {

using Clock = std::chrono::steady_clock;

// Best time of one run of g (after a warm-up), with random float leaves and zero integer leaves.
double time_graph(const sy::Graph& g, int threads, double budget) {
  sy::ExecutorOptions opts;
  opts.threads = threads;
  sy::Executor ex(g, opts);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  for (const sy::Value& v : g.values) {
    if (v.role == sy::ValueRole::computed) continue;
    sy::Tensor t(v.type);
    if (v.type.dtype != sy::DType::i32)
      for (double& x : t.data) x = u(rng);
    ex.set(v.id, t);
  }
  ex.run();
  double best = 1e30, spent = 0;
  for (int r = 0; r < 30 && (r < 3 || spent < budget); ++r) {  // at least 3 runs, more within the budget
    const auto t0 = Clock::now();
    ex.run();
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::min(best, t);
    spent += t;
  }
  return best;
}

// One node of `kind` on about n elements; returns the graph (empty when the kind is not measured).
sy::Graph one_op(sy::OpKind kind, int64_t n) {
  using namespace sy;
  Graph g;
  Builder b(g);
  const int64_t cols = 64, rows = std::max<int64_t>(1, n / cols);
  const Shape s{{"rows", rows}, {"cols", cols}};
  auto x = [&](const char* name = "x", DType t = DType::f32) { return b.input(name, s, t); };
  auto ids = [&](Shape shape) { return b.input("ids", std::move(shape), DType::i32); };
  Expr step = b.input("step", {}, DType::i32);
  Expr out;
  switch (kind) {
    case OpKind::add: out = x() + x("y"); break;
    case OpKind::sub: out = x() - x("y"); break;
    case OpKind::mul: out = x() * x("y"); break;
    case OpKind::div: out = x() / x("y"); break;
    case OpKind::greater: out = greater(x(), x("y")); break;
    case OpKind::where: out = where(x("c"), x(), x("y")); break;
    case OpKind::scale: out = scale(x(), 2.0, 1.0); break;
    case OpKind::relu: out = relu(x()); break;
    case OpKind::relu_grad: out = relu_grad(x(), x("dy")); break;
    case OpKind::gelu: out = gelu(x()); break;
    case OpKind::gelu_grad: out = gelu_grad(x(), x("dy")); break;
    case OpKind::exp: out = exp(x()); break;
    case OpKind::log: out = log(x()); break;
    case OpKind::rsqrt: out = rsqrt(x()); break;
    case OpKind::cast: out = cast(x(), DType::bf16); break;
    case OpKind::dropout: out = dropout(x(), step, 0.1, 1); break;
    case OpKind::fill: out = fill(b, s, 1.0); break;
    case OpKind::random: out = random_uniform(step, s, 0.0, 1.0, 1); break;
    case OpKind::broadcast: out = broadcast(b.input("x", {{"rows", rows}}), s); break;
    case OpKind::transpose: out = transpose(x(), {"cols", "rows"}); break;
    case OpKind::reshape: out = reshape(x(), {{"all", rows * cols}}); break;
    case OpKind::reduce_sum: out = sum(x(), {"cols"}); break;
    case OpKind::reduce_mean: out = mean(x(), {"cols"}); break;
    case OpKind::reduce_max: out = max(x(), {"cols"}); break;
    case OpKind::softmax: out = softmax(x(), "cols"); break;
    case OpKind::logsumexp: out = logsumexp(x(), "cols"); break;
    case OpKind::rms_norm: out = rms_norm(x(), b.input("g", {{"cols", cols}}), "cols"); break;
    case OpKind::cross_entropy: out = cross_entropy(x(), ids({{"rows", rows}}), "cols"); break;
    case OpKind::einsum: return g;  // matmul: measured by size and dtype
    case OpKind::embedding:
      out = embedding(b.input("table", {{"vocab", 1024}, {"cols", cols}}), ids({{"rows", rows}}));
      break;
    case OpKind::embedding_grad: out = embedding_grad(ids({{"rows", rows}}), x("dy"), Dim{"vocab", 1024}); break;
    case OpKind::one_hot: out = one_hot(ids({{"rows", rows}}), Dim{"cols", cols}); break;
    case OpKind::top_k: out = top_k(x(), "cols", Dim{"k", 2}).first; break;
    case OpKind::cumsum: out = cumsum(x(), "cols", true); break;
    case OpKind::gather: out = gather(x(), ids({{"rows", rows}, {"pick", 8}}), "cols"); break;
    case OpKind::scatter_add:
      out = scatter_add(b.input("src", {{"rows", rows}, {"pick", 8}}), ids({{"rows", rows}, {"pick", 8}}), "pick",
                        Dim{"cols", cols});
      break;
    case OpKind::all_reduce:
    case OpKind::all_gather:
    case OpKind::reduce_scatter:
    case OpKind::all_to_all:
    case OpKind::shard_slice:
    case OpKind::adafactor_update:
    case OpKind::adamw_update: return Graph{};  // collectives need a mesh; updates take optimizer state
  }
  b.output("out", out);
  return g;
}

sy::OpCost cost_of(const sy::Graph& g) {
  const sy::Node& n = g.nodes.back();
  std::vector<sy::TensorType> in, out;
  for (sy::ValueId v : n.inputs) in.push_back(g.type(v));
  for (sy::ValueId v : n.outputs) out.push_back(g.type(v));
  return sy::op_def(n.kind).cost(in, out, n.attrs);
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

double memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  while (f >> key >> kb)
    if (key == "MemTotal:") return kb * 1024;
  return 16e9;
}

int run(int argc, char** argv) {
  CLI::App app{"calibrate: measure this machine through the Executor (matmul by size and dtype, memory bandwidth, "
               "per-op efficiencies) and write a HardwareSpec TOML"};
  std::string out_path, name = "host";
  int threads = 2;
  bool quick = false, smoke = false;
  app.add_option("--out", out_path, "the HardwareSpec file to write, e.g. simulator/hardware/host.toml")->required();
  app.add_option("--name", name, "the chip name in the file")->capture_default_str();
  app.add_option("--threads", threads, "Executor threads (0: all cores)")->capture_default_str();
  app.add_flag("--quick", quick, "fewer sizes and shorter timing (a rougher table)");
  app.add_flag("--smoke", smoke, "tiny sizes only: checks the plumbing in seconds (the table is not worth using)");
  CLI11_PARSE(app, argc, argv);
  quick = quick || smoke;
  const double budget = smoke ? 0.0 : quick ? 0.05 : 0.2;

  sy::HardwareSpec h;
  h.name = name;
  h.devices_per_chip = 1;
  h.hbm_bytes = memory_bytes();
  h.link_bandwidth = 2e9;  // placeholder: Open MPI loopback all-to-all (DESIGN.md); not measured
  h.hop_latency = 5e-6;    // placeholder
  h.torus = {1};
  h.wraparound = sy::Wraparound::always;

  // Matmul rates by size and dtype.
  const std::vector<int64_t> sizes = smoke   ? std::vector<int64_t>{32, 64}
                                     : quick ? std::vector<int64_t>{64, 256, 1024}
                                             : std::vector<int64_t>{64, 128, 256, 512, 1024, 2048};
  std::vector<double> rate_f32, rate_bf16;
  for (int64_t n : sizes)
    for (sy::DType t : {sy::DType::f32, sy::DType::bf16}) {
      sy::Graph g;
      sy::Builder b(g);
      b.output("c", einsum(b.input("a", {{"m", n}, {"k", n}}, t), b.input("b", {{"k", n}, {"n", n}}, t), {"m", "n"}));
      const double secs = time_graph(g, threads, budget);
      const double rate = 2.0 * static_cast<double>(n * n * n) / secs;
      (t == sy::DType::f32 ? rate_f32 : rate_bf16).push_back(rate);
      fmt::print("matmul {:>5}^3 {:<4} {:8.1f} GFLOP/s\n", n, sy::dtype_name(t), rate / 1e9);
    }
  h.matmul_flops_f32 = *std::max_element(rate_f32.begin(), rate_f32.end());
  h.matmul_flops_bf16 = *std::max_element(rate_bf16.begin(), rate_bf16.end());
  sy::EfficiencyCurve mm;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const double flops = 2.0 * static_cast<double>(sizes[i] * sizes[i] * sizes[i]);
    const double eta = 0.5 * (rate_f32[i] / h.matmul_flops_f32 + rate_bf16[i] / h.matmul_flops_bf16);
    mm.points.emplace_back(flops, std::clamp(eta, 1e-4, 1.0));
  }
  h.efficiency[static_cast<size_t>(sy::OpClass::matmul)].compute = mm;

  // Memory bandwidth: a large f32 add.
  {
    const int64_t n = smoke ? (1 << 14) : quick ? (1 << 22) : (1 << 24);
    sy::Graph g = one_op(sy::OpKind::add, n);
    const sy::OpCost c = cost_of(g);
    h.hbm_bandwidth = (c.bytes_read + c.bytes_written) / time_graph(g, threads, budget);
    fmt::print("memory bandwidth (f32 add of {} elements) {:.1f} GB/s\n", n, h.hbm_bandwidth / 1e9);
  }

  // Per-op overhead: a chain of 200 small ops.
  {
    sy::Graph g;
    sy::Builder b(g);
    sy::Expr e = b.input("x", {{"n", 16}});
    for (int i = 0; i < 200; ++i) e = scale(e, 1.0, 0.0);
    b.output("y", e);
    h.op_overhead = time_graph(g, threads, budget) / 200;
    fmt::print("per-op overhead {:.2f} µs\n", h.op_overhead * 1e6);
  }

  // Every op kind by size.
  const std::vector<int64_t> elems = smoke   ? std::vector<int64_t>{1 << 8, 1 << 10}
                                     : quick ? std::vector<int64_t>{1 << 10, 1 << 16, 1 << 20}
                                             : std::vector<int64_t>{1 << 10, 1 << 13, 1 << 16, 1 << 19, 1 << 21};
  double vector_flops = 1e9;
  for (sy::OpKind k : sy::kAllOpKinds) {
    std::vector<std::pair<double, double>> points;  // (bytes, time)
    for (int64_t n : elems) {
      const sy::Graph g = one_op(k, n);
      if (g.nodes.empty()) break;
      const sy::OpCost c = cost_of(g);
      const double t = time_graph(g, threads, budget);
      points.emplace_back(c.bytes_read + c.bytes_written, t);
      vector_flops = std::max(vector_flops, c.flops / t);
    }
    if (points.empty()) continue;
    sy::EfficiencyCurve curve;
    for (const auto& [bytes, t] : points) {
      const double eta = (bytes / h.hbm_bandwidth) / std::max(t - h.op_overhead, 1e-9);
      if (curve.points.empty() || bytes > curve.points.back().first) curve.points.emplace_back(bytes, std::clamp(eta, 1e-4, 1.0));
    }
    h.kind_efficiency[k].memory = curve;
    fmt::print("{:<15} {:10.2f} µs at {:>10} .. {:10.1f} µs at {:>10}\n", sy::op_name(k), points.front().second * 1e6,
               sy::format_bytes(points.front().first), points.back().second * 1e6, sy::format_bytes(points.back().first));
  }
  h.vector_flops = vector_flops;
  // Class curves for kinds without their own: a representative kind of each class.
  h.efficiency[static_cast<size_t>(sy::OpClass::elementwise)].memory = h.kind_efficiency[sy::OpKind::add].memory;
  h.efficiency[static_cast<size_t>(sy::OpClass::reduction)].memory = h.kind_efficiency[sy::OpKind::reduce_sum].memory;
  h.efficiency[static_cast<size_t>(sy::OpClass::index)].memory = h.kind_efficiency[sy::OpKind::gather].memory;
  h.efficiency[static_cast<size_t>(sy::OpClass::layout)].memory = h.kind_efficiency[sy::OpKind::transpose].memory;
  h.description = fmt::format("calibrated on {} with {} Executor threads{}", cpu_name(), threads,
                              smoke ? " (smoke: not a usable table)" : quick ? " (quick)" : "");

  std::string text = fmt::format("# Written by experiments/calibrate: measured through the sy Executor on this machine.\n"
                                 "# [ici] is a placeholder (one process: nothing to measure).\n");
  text += sy::to_toml(h);
  sy::parse_hardware(text, out_path);  // what we write must read back
  sy::write_file_atomically(out_path, text);
  fmt::print("wrote {}: f32 {:.0f} GFLOP/s, bf16 {:.0f} GFLOP/s, {:.1f} GB/s, {:.2f} µs per op\n", out_path,
             h.matmul_flops_f32 / 1e9, h.matmul_flops_bf16 / 1e9, h.hbm_bandwidth / 1e9, h.op_overhead * 1e6);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const sy::InputError& e) {
    std::cerr << "calibrate: " << e.what() << "\n";
    return sy::kExitBadInput;
  }
}
