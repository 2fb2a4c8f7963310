// calibrate: measure this machine through the sy Executor and write a HardwareSpec for it.
//
//   calibrate --out host.toml [--threads 2] [--quick | --smoke] [--clock cpu] [--model M.toml
//             [--mesh data:2 --layout batch:data]...]
//
// Measured after a warm-up: the peaks (matmul, memory) as the best of several runs, every other op
// as the mean of runs that each follow an eviction of the core's caches (time_graph's Timing):
//   matmul        square einsums [n, n] x [n, n] in f32 and bf16 (oneDNN): the peaks are the best
//                 rates, and efficiency.matmul.compute the rate at each size over the peak
//   memory        an f32 add of 2^24 elements (three arrays of 64 MiB): the DRAM rate
//   op overhead   a chain of 200 scalar-sized ops: op_overhead per op
//   every op kind one node at 2^10 .. 2^21 elements: efficiency.op.<kind>.memory = the time the
//                 bytes would take at hbm_bandwidth over the time measured (less op_overhead), so
//                 the roofline reproduces the measured time; hbm_bandwidth is the fastest rate of
//                 all the timed ops (from the caches), at least the DRAM rate
//                 (experiments/calibrate/memory.hpp); binary kinds also with a broadcasting
//                 operand (efficiency.broadcast.<kind>); vector_flops is the best flops rate seen,
//                 so the flops term never dominates a measured op. Kinds run by reference kernels
//                 (in double) come out slow, as they are.
//   --model M     every distinct node of M's training step timed alone, in its own shapes, all of
//                 them in rounds (time_graphs_in_rounds): the kinds M uses get their curves from
//                 these points only (einsum: a compute curve by flops), which is what predicting
//                 M's step on this machine needs. Each --mesh/--layout pair adds the nodes of M's
//                 per-device program on that mesh, and under mpiexec the network is also sampled
//                 at the sizes of that program's collectives (network_sample_sizes).
//   network       under `mpiexec -n 2`: both ranks measure all of the above at once (so the table
//                 includes what they share, memory bandwidth above all; each time is the slower
//                 rank's, as a synchronous step goes at its slowest device's pace), then the collectives
//                 between them (experiments/calibrate/network.hpp): [ici] holds the fitted
//                 hop_latency, link_bandwidth and reduction_bandwidth on a torus of 2, and the
//                 cold costs of the library's paths, measured after --model's per-device programs
//                 run without their collectives (StepCompute; else after a stream). Run it in
//                 the setting to be predicted (two ranks on one host, or on two hosts).
// One process: the [ici] section holds placeholders for a single-device mesh. Either way
// async_collectives = false: the sy executors run a collective on the thread that runs compute.
#include "executor/executor.hpp"
#include "executor/mpi/communicator.hpp"
#include "executor/mpi/mpi_run.hpp"
#include "experiments/calibrate/memory.hpp"
#include "experiments/calibrate/network.hpp"
#include "experiments/calibrate/timing.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/json.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/models/model_config.hpp"
#include "simulator/hardware.hpp"
#include "simulator/model_step.hpp"
#include "simulator/roofline.hpp"
#include "simulator/report.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <iostream>
#include <random>

#include <unistd.h>

namespace {

// Seconds now: wall-clock, or (--clock cpu) the CPU time of this process, which on a shared
// machine leaves out the time other processes hold the core (valid with one thread).
bool use_cpu_clock = false;
double now() {
  if (use_cpu_clock) {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// How a graph is timed (after a warm-up run, with random float leaves and zero integer leaves).
//   peak     the best of the runs, caches warm from the run before: a rate the hardware reaches
//            (the matmul peaks, the memory bandwidth).
//   in_step  each run after streaming evict_bytes() through the core, and the mean of the runs:
//            a training step runs each op once, its inputs last touched many ops earlier, on a
//            machine it shares. Priced from best warm runs, bench_sim_mpi's steps (small.toml, two
//            local ranks) ran their einsums 5-7 % and their ops above 1 ms 9 % slower than priced.
//            The mean, not the median: a step's time is the sum of its ops' times, and the expected
//            sum is the sum of the expected times. On a shared core an op's time has a long right
//            tail (another process takes the core for a while); in bench_sim_mpi's traces (18 runs of
//            6 steps) the sum of each op's median over the steps fell 8-22 ms (3-5 %) short of the
//            steps' median wall time, the sum of the means 0-6 ms.
enum class Timing { peak, in_step };

// Under mpiexec -n 2 both ranks time every graph at once, and each time written is the slower
// rank's: a synchronous step runs at the pace of its slowest device (a core that shares its
// hardware with a busy neighbour sets it). Unset: one process.
sy::Communicator* g_ranks = nullptr;

int64_t evict_bytes();

// One graph ready to time: an Executor with random float leaves and zero integer leaves, run once.
class TimedGraph {
 public:
  TimedGraph(const sy::Graph& g, int threads) : ex_(g, options(threads)) {
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(0.5, 1.5);
    for (const sy::Value& v : g.values) {
      if (v.role == sy::ValueRole::computed) continue;
      sy::Tensor t(v.type);
      if (v.type.dtype != sy::DType::i32)
        for (double& x : t.data) x = u(rng);
      ex_.set(v.id, t);
    }
    ex_.run();
  }
  // Seconds of one run.
  double run() {
    const double t0 = now();
    ex_.run();
    return now() - t0;
  }
  void run_nodes(size_t first, size_t last) { ex_.run_nodes(first, last); }

 private:
  static sy::ExecutorOptions options(int threads) {
    sy::ExecutorOptions o;
    o.threads = threads;
    return o;
  }
  sy::Executor ex_;
};

// The slower rank's value of x (one process: x).
double slower_rank(double x) {
  auto t = static_cast<float>(x);
  if (g_ranks) g_ranks->all_reduce(&t, 1, sy::DType::f32, sy::ReduceOp::max, {0});
  return t;
}

double time_graph(const sy::Graph& g, int threads, double budget, Timing timing = Timing::in_step) {
  TimedGraph tg(g, threads);
  std::vector<float> evict(timing == Timing::in_step ? static_cast<size_t>(evict_bytes() / 4) : 0);
  std::vector<double> runs;
  double spent = 0;
  for (int r = 0; r < 30 && (r < 3 || spent < budget); ++r) {  // at least 3 runs, more within the budget
    sy::timing::stream_through(evict, static_cast<float>(r));
    runs.push_back(tg.run());
    spent += runs.back();
  }
  double mean = 0;
  for (double x : runs) mean += x / static_cast<double>(runs.size());
  return slower_rank(timing == Timing::peak ? *std::min_element(runs.begin(), runs.end()) : mean);
}

// Graphs timed in_step as time_graph does, but in rounds: each round runs every graph once
// untimed (its buffers back in the caches, as time_graph's warm-up leaves them and as a step
// leaves an op's inputs, written by the ops just before) and then twice timed, each after its
// eviction. A slow minute of a shared machine (a neighbour on the core) then falls on all the
// graphs alike instead of on the ones timed during it. At least 3 rounds, at most 15, more while
// the time spent is within budget per graph. Returns each graph's mean; `rounds` is set to how
// many rounds ran. (Without the untimed run, the 946 ops of small.toml came out 1.2-4x slower
// than in the step: each op's buffers cold in every level, after 3 GB of the others'.)
constexpr int kTimedPerRound = 2;
std::vector<double> time_graphs_in_rounds(const std::vector<sy::Graph>& graphs, int threads, double budget, int& rounds) {
  std::vector<std::unique_ptr<TimedGraph>> timed;
  for (const sy::Graph& g : graphs) timed.push_back(std::make_unique<TimedGraph>(g, threads));
  std::vector<float> evict(static_cast<size_t>(evict_bytes() / 4));
  std::vector<double> sum(graphs.size(), 0.0);
  const double limit = budget * static_cast<double>(graphs.size());
  double spent = 0;
  rounds = 0;
  for (bool more = true; more;) {
    for (size_t i = 0; i < timed.size(); ++i) {
      timed[i]->run();
      for (int k = 0; k < kTimedPerRound; ++k) {
        sy::timing::stream_through(evict, static_cast<float>(rounds));
        const double t = timed[i]->run();
        sum[i] += t;
        spent += t;
      }
    }
    ++rounds;
    // Every rank runs the same rounds: on while either rank's budget allows.
    float go = rounds < 15 && (rounds < 3 || spent < limit) ? 1.0f : 0.0f;
    if (g_ranks) g_ranks->all_reduce(&go, 1, sy::DType::f32, sy::ReduceOp::max, {0});
    more = go != 0.0f;
  }
  std::vector<double> mean(graphs.size());
  for (size_t i = 0; i < graphs.size(); ++i) mean[i] = slower_rank(sum[i] / (rounds * kTimedPerRound));
  return mean;
}

// One node of `kind` on about n elements; returns the graph (empty when the kind is not measured).
// broadcast: a binary kind's second operand is [rows] against [rows, cols].
sy::Graph one_op(sy::OpKind kind, int64_t n, bool bcast_operand = false) {
  using namespace sy;
  Graph g;
  Builder b(g);
  const int64_t cols = 64, rows = std::max<int64_t>(1, n / cols);
  const Shape s{{"rows", rows}, {"cols", cols}};
  auto x = [&](const char* name = "x", DType t = DType::f32) {
    const bool small = bcast_operand && (std::string_view(name) == "y" || std::string_view(name) == "c");
    return small ? b.input(name, {{"rows", rows}}, t) : b.input(name, s, t);
  };
  auto ids = [&](Shape shape) { return b.input("ids", std::move(shape), DType::i32); };
  Expr step = b.input("step", {}, DType::i32);
  Expr out;
  switch (kind) {
    case OpKind::add: out = x() + x("y"); break;
    case OpKind::sub: out = x() - x("y"); break;
    case OpKind::mul: out = x() * x("y"); break;
    case OpKind::div: out = x() / x("y"); break;
    case OpKind::greater: out = greater(x(), x("y")); break;
    case OpKind::where: out = bcast_operand ? where(x("c"), x(), x("z")) : where(x("c"), x(), x("y")); break;
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
    case OpKind::after: return Graph{};  // no work: an alias
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
    case OpKind::mean_square:
    case OpKind::adafactor_moment:
    case OpKind::adafactor_update:
    case OpKind::adamw_update: return Graph{};  // collectives need a mesh; the optimizer's nodes take its state
  }
  b.output("out", out);
  return g;
}

// A graph of one node shaped like node n of `model` (its inputs become leaves).
sy::Graph copy_of_node(const sy::Graph& model, const sy::Node& n) {
  sy::Graph g;
  sy::Builder b(g);
  std::vector<sy::ValueId> ins;
  for (size_t i = 0; i < n.inputs.size(); ++i)
    ins.push_back(b.input(fmt::format("in{}", i), model.type(n.inputs[i]).shape, model.type(n.inputs[i]).dtype).id);
  const auto outs = b.op(n.kind, n.attrs, ins);
  for (size_t i = 0; i < outs.size(); ++i) b.output(fmt::format("out{}", i), outs[i]);
  return g;
}

bool binary_kind(sy::OpKind k) {
  return k == sy::OpKind::add || k == sy::OpKind::sub || k == sy::OpKind::mul || k == sy::OpKind::div ||
         k == sy::OpKind::greater || k == sy::OpKind::where;
}

sy::OpCost cost_of(const sy::Graph& g) {
  const sy::Node& n = g.nodes.back();
  std::vector<sy::TensorType> in, out;
  for (sy::ValueId v : n.inputs) in.push_back(g.type(v));
  for (sy::ValueId v : n.outputs) out.push_back(g.type(v));
  return sy::op_def(n.kind).cost(in, out, n.attrs);
}

// A per-device program without its collectives, each one's outputs leaves of their types: the
// compute a rank runs between them, in program order.
sy::Graph compute_of(const sy::Graph& program) {
  sy::Graph g;
  sy::Builder b(g);
  std::vector<sy::ValueId> to(program.values.size());
  auto leaf_like = [&](const sy::Value& v) {
    const std::string name = v.name.empty() ? fmt::format("value{}", v.id.v) : v.name;
    return (v.role == sy::ValueRole::parameter ? b.parameter(name, v.type.shape, v.type.dtype)
                                               : b.input(name, v.type.shape, v.type.dtype))
        .id;
  };
  for (const sy::Value& v : program.values)
    if (v.role != sy::ValueRole::computed) to[static_cast<size_t>(v.id.v)] = leaf_like(v);
  for (const sy::Node& n : program.nodes) {
    if (sy::is_collective(n.kind)) {
      for (sy::ValueId v : n.outputs) to[static_cast<size_t>(v.v)] = leaf_like(program.value(v));
      continue;
    }
    std::vector<sy::ValueId> ins;
    for (sy::ValueId v : n.inputs) ins.push_back(to[static_cast<size_t>(v.v)]);
    const auto outs = b.op(n.kind, n.attrs, ins);
    for (size_t i = 0; i < outs.size(); ++i) to[static_cast<size_t>(n.outputs[i].v)] = outs[i].id;
  }
  for (const sy::GraphOutput& o : program.outputs)
    if (program.value(o.value).role == sy::ValueRole::computed) b.output(o.name, b.wrap(to[static_cast<size_t>(o.value.v)]));
  return g;
}

// The model's step as the compute between two collectives (experiments/calibrate/network.hpp's
// curves): its per-device programs without their collectives, one executor each (one memory plan,
// as a step's), run segment by segment: a segment is the ops between two of the program's
// collectives, so each gap a probe measures is one the step has.
class StepCompute {
 public:
  StepCompute(const std::vector<sy::Graph>& programs, int threads) {
    for (const sy::Graph& p : programs) {
      Program c{std::make_unique<TimedGraph>(compute_of(p), threads), {}, {}};
      for (const sy::Node& n : p.nodes) {
        if (sy::is_collective(n.kind)) {  // a segment ends here (an empty one is dropped)
          if (c.ends.empty() ? !c.bytes.empty() : c.ends.back() < c.bytes.size()) c.ends.push_back(c.bytes.size());
          continue;
        }
        std::vector<sy::TensorType> in, out;
        for (sy::ValueId v : n.inputs) in.push_back(p.type(v));
        for (sy::ValueId v : n.outputs) out.push_back(p.type(v));
        const sy::OpCost cost = sy::op_def(n.kind).cost(in, out, n.attrs);
        c.bytes.push_back(cost.bytes_read + cost.bytes_written);
      }
      if (c.ends.empty() || c.ends.back() < c.bytes.size()) c.ends.push_back(c.bytes.size());
      segments_ += c.ends.size();
      programs_.push_back(std::move(c));
    }
  }
  bool empty() const { return programs_.empty(); }
  // Segments of all the programs.
  size_t segments() const { return segments_; }
  // Runs the next segment (after the last program's last one, the first program's first); returns
  // the bytes its ops read and wrote, as the simulator counts them.
  double run_segment() {
    Program& p = programs_[program_];
    const size_t first = segment_ == 0 ? 0 : p.ends[segment_ - 1], last = p.ends[segment_];
    p.graph->run_nodes(first, last);
    if (++segment_ == p.ends.size()) {
      segment_ = 0;
      program_ = (program_ + 1) % programs_.size();
    }
    return std::accumulate(p.bytes.begin() + static_cast<std::ptrdiff_t>(first),
                           p.bytes.begin() + static_cast<std::ptrdiff_t>(last), 0.0);
  }

 private:
  struct Program {
    std::unique_ptr<TimedGraph> graph;
    std::vector<double> bytes;  // per node of compute_of(program)
    std::vector<size_t> ends;   // each segment's end among those nodes
  };
  std::vector<Program> programs_;
  size_t program_ = 0, segment_ = 0, segments_ = 0;
};

// The buffer each rank streams through before a timed collective, standing for the compute between
// two collectives of a step: 8 × the core's private L2 (at least 8 MiB), which leaves the L2 cold.
// The L3's size is not used: a VM reports the host's (512 MiB on the development machine).
int64_t evict_bytes() {
  const long l2 = ::sysconf(_SC_LEVEL2_CACHE_SIZE);
  return std::max<int64_t>(8 << 20, 8 * static_cast<int64_t>(l2 > 0 ? l2 : 0));
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
  std::string model_path;
  std::vector<std::string> overrides;
  std::string clock = "wall";
  app.add_option("--out", out_path, "the HardwareSpec file to write, e.g. simulator/hardware/host.toml")->required();
  app.add_option("--name", name, "the chip name in the file")->capture_default_str();
  app.add_option("--threads", threads, "Executor threads (0: all cores)")->capture_default_str();
  app.add_flag("--quick", quick, "fewer sizes and shorter timing (a rougher table)");
  app.add_option("--clock", clock, "wall, or cpu: this process's CPU time (one thread; for a shared machine)")
      ->check(CLI::IsMember({"wall", "cpu"}))
      ->capture_default_str();
  app.add_option("--model", model_path, "also time every distinct op of this model's training step (TOML) alone");
  app.add_option("--set", overrides, "override a key of --model's config (repeatable)");
  std::vector<std::string> meshes, layouts;
  app.add_option("--mesh", meshes,
                 "with --model: also time the ops of its per-device program on this mesh, e.g. data:2 (repeatable; "
                 "the i-th --mesh goes with the i-th --layout)");
  app.add_option("--layout", layouts, "the layout for the --mesh of the same position, e.g. batch:data");
  app.add_flag("--smoke", smoke, "tiny sizes only: checks the plumbing in seconds (the table is not worth using)");
  sy::parse_command_line(app, argc, argv);
  quick = quick || smoke;
  use_cpu_clock = clock == "cpu";
  if (use_cpu_clock && threads != 1) throw sy::InputError("--clock cpu measures one thread: use --threads 1");
  const double budget = smoke ? 0.0 : quick ? 0.05 : 0.2;
  const int ranks = sy::MpiSession::launched_ranks();
  if (ranks > 2)
    throw sy::InputError(fmt::format("calibrate: started on {} MPI ranks; allowed: 1 (this process) or 2 (mpiexec -n 2: "
                                     "the network between two ranks is measured too)",
                                     ranks));
  // --model is read before anything is measured: a bad config is refused at once, not after minutes.
  std::optional<sy::RunConfig> run_config;
  if (!model_path.empty()) run_config = sy::load_run_config(model_path, overrides);
  if (meshes.size() != layouts.size())
    throw sy::InputError(fmt::format("calibrate: {} --mesh and {} --layout given; allowed: one --layout per --mesh",
                                     meshes.size(), layouts.size()));
  if (!meshes.empty() && !run_config) throw sy::InputError("calibrate: --mesh needs --model (whose program it splits)");
  std::vector<std::pair<sy::Mesh, sy::Layout>> splits;
  for (size_t i = 0; i < meshes.size(); ++i) {
    sy::Mesh m = sy::parse_mesh(meshes[i]);
    sy::Layout l = sy::parse_layout(layouts[i], m);
    splits.emplace_back(std::move(m), std::move(l));
  }
  std::unique_ptr<sy::MpiRun> mpi;
  if (ranks == 2) {
    mpi = std::make_unique<sy::MpiRun>(sy::parse_mesh("data:2"), sy::Layout{});
    g_ranks = mpi->communicator().get();
  }

  sy::HardwareSpec h;
  h.name = name;
  h.devices_per_chip = 1;
  h.hbm_bytes = memory_bytes();
  h.link_bandwidth = 2e9;  // placeholder: Open MPI loopback all-to-all (DESIGN.md); not measured
  h.hop_latency = 5e-6;    // placeholder
  h.torus = {1};
  h.wraparound = sy::Wraparound::always;
  h.async_collectives = false;

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
      const double secs = time_graph(g, threads, budget, Timing::peak);
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
    h.hbm_bandwidth = (c.bytes_read + c.bytes_written) / time_graph(g, threads, budget, Timing::peak);
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
  // The model's collectives (kind, V as experiments/calibrate/network.hpp defines it): the network
  // is also sampled at their sizes.
  std::vector<sy::CollectiveSize> model_collectives;
  std::vector<sy::RaggedShape> ragged_shapes;  // its expert-parallel all_to_alls: sampled whole
  std::vector<sy::Graph> step_programs;  // what a rank runs in a step: the per-device programs (else the one-device one)
  // Timed ops per kind, plain and broadcasting: their fractions of the memory peak come at the end.
  std::map<sy::OpKind, std::vector<sy::TimedOp>> plain, bcast;
  for (sy::OpKind k : sy::kAllOpKinds)
    for (bool broadcast : {false, true}) {
      if (broadcast && !binary_kind(k)) continue;
      std::vector<std::pair<double, double>> points;  // (bytes, time)
      for (int64_t n : elems) {
        const sy::Graph g = one_op(k, n, broadcast);
        if (g.nodes.empty()) break;
        const sy::OpCost c = cost_of(g);
        const double t = time_graph(g, threads, budget);
        points.emplace_back(c.bytes_read + c.bytes_written, t);
        vector_flops = std::max(vector_flops, c.flops / t);
        (broadcast ? bcast : plain)[k].push_back({points.back().first, t});
      }
      if (points.empty()) continue;
      fmt::print("{:<15}{} {:10.2f} µs at {:>10} .. {:10.1f} µs at {:>10}\n", sy::op_name(k), broadcast ? " (b)" : "    ",
                 points.front().second * 1e6, sy::format_bytes(points.front().first), points.back().second * 1e6,
                 sy::format_bytes(points.back().first));
    }

  // The model's own ops: every distinct node of its training step, timed alone; its kinds'
  // curves are then made of these points only (the shapes the simulator will price).
  if (run_config) {
    const sy::ModelConfig& config = run_config->model;
    // The one-device program, and the per-device program of each --mesh/--layout (its shapes are
    // the ones a run on that mesh executes: a split batch halves an einsum, not its efficiency).
    std::vector<sy::Graph> programs{sy::build_training_step(config, run_config->train, {}).graph()};
    for (const auto& [mesh, layout] : splits) {
      sy::TrainingGraphOptions built;
      built.mesh = mesh;
      built.layout = layout;
      programs.push_back(sy::lower(sy::build_training_step(config, run_config->train, built).graph(), mesh, layout).graph);
    }
    step_programs.assign(programs.begin() + (splits.empty() ? 0 : 1), programs.end());
    std::map<std::string, bool> seen;
    std::vector<sy::Graph> distinct;
    size_t nodes = 0;
    for (const sy::Graph& program : programs) {
      sy::add_ragged_shapes(program, ragged_shapes);
      for (const sy::Node& n : program.nodes) {
        ++nodes;
        if (is_collective(n.kind)) {
          if (n.kind == sy::OpKind::all_gather || n.kind == sy::OpKind::all_to_all ||
              n.kind == sy::OpKind::reduce_scatter || n.kind == sy::OpKind::all_reduce)
            model_collectives.push_back({std::string(sy::op_name(n.kind)),
                                         static_cast<double>(std::max(sy::num_bytes(program.type(n.inputs.at(0))),
                                                                      sy::num_bytes(program.type(n.outputs.at(0)))))});
          continue;
        }
        sy::Graph g = copy_of_node(program, n);
        std::string key(sy::op_name(n.kind));
        for (const sy::Value& v : g.values) key += sy::to_string(v.type);
        key += sy::attrs_to_json(n.attrs).dump();
        if (seen[key]) continue;
        seen[key] = true;
        distinct.push_back(std::move(g));
      }
    }
    fmt::print("{}: timing {} distinct ops of {} nodes ({} program(s)) in rounds ...\n", config.name, distinct.size(), nodes,
               programs.size());
    std::fflush(stdout);
    int rounds = 0;
    const std::vector<double> times = time_graphs_in_rounds(distinct, threads, budget, rounds);
    std::map<sy::OpKind, std::vector<sy::TimedOp>> m_plain, m_bcast;
    std::map<sy::OpKind, std::vector<std::pair<double, double>>> m_flops;
    for (size_t i = 0; i < distinct.size(); ++i) {
      const sy::Graph& g = distinct[i];
      const sy::Node& n = g.nodes.back();
      const sy::OpCost c = cost_of(g);
      std::vector<sy::TensorType> in;
      for (sy::ValueId v : n.inputs) in.push_back(g.type(v));
      const double t = times[i];
      const double bytes = c.bytes_read + c.bytes_written;
      if (n.kind == sy::OpKind::einsum) {
        const double peak = in[0].dtype == sy::DType::bf16 ? h.matmul_flops_bf16 : h.matmul_flops_f32;
        m_flops[n.kind].emplace_back(c.flops, c.flops / std::max(t - h.op_overhead, 1e-9) / peak);
      } else {
        vector_flops = std::max(vector_flops, c.flops / t);
        (sy::is_broadcast(n.kind, in) ? m_bcast : m_plain)[n.kind].push_back({bytes, t});
      }
    }
    for (auto& [k, pts] : m_plain) plain[k] = pts;
    for (auto& [k, pts] : m_bcast) bcast[k] = pts;
    for (auto& [k, pts] : m_flops) h.kind_efficiency[k].compute = sy::curve_of(pts);
    fmt::print("{}: {} rounds; their kinds' curves come from these {} ops\n", config.name, rounds, distinct.size());
  }
  // The memory peak: the fastest op's streaming rate (from the caches), at least the large add's
  // (DRAM); each kind's curve is its ops' fractions of it (experiments/calibrate/memory.hpp).
  {
    std::vector<sy::TimedOp> all;
    for (const auto* kinds : {&plain, &bcast})
      for (const auto& [k, ops] : *kinds) all.insert(all.end(), ops.begin(), ops.end());
    const double dram = h.hbm_bandwidth;
    h.hbm_bandwidth = sy::memory_peak(all, h.op_overhead, dram);
    fmt::print("memory peak (the fastest op's rate, from the caches) {:.1f} GB/s; DRAM (the large add) {:.2f} of it\n",
               h.hbm_bandwidth / 1e9, dram / h.hbm_bandwidth);
    auto curve = [&](const std::vector<sy::TimedOp>& ops) {
      std::vector<std::pair<double, double>> points;
      for (const sy::TimedOp& op : ops) points.emplace_back(op.bytes, sy::memory_efficiency(op, h.hbm_bandwidth, h.op_overhead));
      return sy::curve_of(points);
    };
    for (auto& [k, ops] : plain) h.kind_efficiency[k].memory = curve(ops);
    for (auto& [k, ops] : bcast) h.broadcast_efficiency[k].memory = curve(ops);
  }
  h.vector_flops = vector_flops;
  // Class curves for kinds without their own: a representative kind of each class.
  h.efficiency[static_cast<size_t>(sy::OpClass::elementwise)].memory = h.kind_efficiency[sy::OpKind::add].memory;
  h.efficiency[static_cast<size_t>(sy::OpClass::reduction)].memory = h.kind_efficiency[sy::OpKind::reduce_sum].memory;
  h.efficiency[static_cast<size_t>(sy::OpClass::index)].memory = h.kind_efficiency[sy::OpKind::gather].memory;
  h.efficiency[static_cast<size_t>(sy::OpClass::layout)].memory = h.kind_efficiency[sy::OpKind::transpose].memory;
  h.fuses = false;          // the executor runs every op as its own kernel (it merges identical nodes only)
  h.sparse_einsums = true;  // the executor's sparse paths over one-hot values (executor/sparse_einsum.hpp)
  h.description = fmt::format("calibrated on {} with {} Executor threads{}, {} clock{}", cpu_name(), threads,
                              mpi ? " on each of 2 MPI ranks" : "", clock,
                              smoke ? " (smoke: not a usable table)" : quick ? " (quick)" : "");

  if (mpi) {
    // The compute between two collectives for the paths' curves: the model's step (else a stream).
    StepCompute step(step_programs, threads);
    mpi->barrier();
    const sy::NetworkFit net = sy::measure_network(
        *mpi->communicator(), [&] { mpi->barrier(); }, smoke ? 4096.0 : quick ? 16.0 * (1 << 20) : 64.0 * (1 << 20),
        model_collectives,
        [&](double bytes) { return sy::staging_copy_time(h, sy::DType::f32, bytes); },  // as simulate prices it
        smoke ? 0.0 : quick ? 0.05 : 0.2, evict_bytes(), smoke ? 2 * evict_bytes() : quick ? int64_t{512} << 20 : int64_t{2} << 30,
        step.empty() ? std::function<double()>{} : [&] { return step.run_segment(); }, step.segments());
    for (const sy::CollectiveSample& s : net.samples)
      fmt::print("{:<11} {:>10}  measured {:10.1f} µs  fitted {:10.1f} µs{}\n", s.kind, sy::format_bytes(s.bytes),
                 s.seconds * 1e6, net.predict(s) * 1e6,
                 s.copy_seconds > 0 ? fmt::format("  (its copy priced {:.1f} µs)", s.copy_seconds * 1e6) : "");
    sy::write_ici(net, h);
    // The ragged all_to_all whole, after the step's streaming: 64 MiB, where the cold cost of a
    // collective stops growing (two local ranks: 63.0 µs more after 64 MiB, 64.9 after 256 MiB).
    const std::vector<sy::CollectiveSample> ragged = sy::measure_ragged_all_to_all(
        *mpi->communicator(), [&] { mpi->barrier(); }, ragged_shapes, smoke ? 0.0 : quick ? 0.05 : 0.2,
        smoke ? evict_bytes() : int64_t{64} << 20);
    h.ragged_all_to_all_seconds = sy::ragged_all_to_all_curve(ragged);
    for (const sy::CollectiveSample& s : ragged)
      fmt::print("ragged all_to_all {:>10} sent  measured {:10.1f} µs (the executor's path whole, cold)\n",
                 sy::format_bytes(s.bytes), s.seconds * 1e6);
    fmt::print("{}", sy::paths_report(net, step.empty() ? "streaming" : "a segment of the model's step moving"));
    fmt::print("network (2 ranks): {:.1f} µs per hop, {:.2f} GB/s per direction, reduction {:.2f} GB/s\n",
               net.hop_latency * 1e6, net.link_bandwidth / 1e9, net.reduction_bandwidth / 1e9);
  }

  std::string text = fmt::format("# Written by experiments/calibrate: measured through the sy Executor on this machine.\n");
  text += mpi ? "# [ici]: two MPI ranks, one connection (a torus of 2), fitted by experiments/calibrate/network.hpp.\n"
              : "# [ici] is a placeholder (one process: nothing to measure).\n";
  text += sy::to_toml(h);
  sy::parse_hardware(text, out_path);  // what we write must read back
  if (mpi && !mpi->writer()) return 0;
  sy::write_file_atomic(out_path, text);
  fmt::print("wrote {}: f32 {:.0f} GFLOP/s, bf16 {:.0f} GFLOP/s, {:.1f} GB/s, {:.2f} µs per op\n", out_path,
             h.matmul_flops_f32 / 1e9, h.matmul_flops_bf16 / 1e9, h.hbm_bandwidth / 1e9, h.op_overhead * 1e6);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("calibrate", [&] { return run(argc, argv); });
}
