// Times training steps of a model (bench_moe by default) on R MPI ranks x 1 thread against
// 1 process x R threads, with the same global batch, and prints the scaling efficiency
// (time per step of the threaded run / time per step of the MPI run: 1 means the ranks lose
// nothing to communication) and the share of the MPI step spent in each collective kind
// (measured with the executor's per-op observer on rank 0; a collective's time includes waiting
// for the slower rank).
//
//   build/bin/bench_distributed                                   # bench_moe, 2 ranks, 5 steps
//   build/bin/bench_distributed --layout batch:data --steps 3 --set moe.group_size=2048
//
// The tool starts `mpiexec -n R` on itself (--worker) for the MPI run; as root it sets Open
// MPI's OMPI_ALLOW_RUN_AS_ROOT variables for that child. Batches are random token ids (no corpus
// needed); both runs see the same ones, and route them alike: the single process builds the
// training graph for the mesh and layout (graph/models/training_graph.hpp: one routing group per
// data-parallel shard unless moe.group_size is set) and runs it whole. Writes nothing.
#include "executor/mpi/mpi_run.hpp"
#include "executor/train/trainer.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/models/training_graph.hpp"
#include "graph/parallel/lower.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

struct Args {
  std::string model = std::string(SY_SOURCE_DIR) + "/experiments/configs/models/bench_moe.toml";
  std::vector<std::string> sets;
  int ranks = 2;
  int steps = 5;
  int warmup = 1;
  std::string layout = "batch:data,experts:data";
  bool worker = false;  // internal: one rank of the MPI run
};

// Random next-token batch over the model's vocabulary (the same for every run of a seed).
sy::data::Batch random_batch(const sy::RunConfig& c, int64_t step) {
  sy::data::Batch b;
  b.objective = sy::data::Objective::kNextToken;
  b.batch = c.train.batch;
  b.inputs_length = b.targets_length = c.train.target_length;
  std::mt19937_64 rng(static_cast<uint64_t>(1000 + step));
  std::uniform_int_distribution<int32_t> id(2, static_cast<int32_t>(c.model.vocab - 1));
  const auto n = static_cast<size_t>(c.train.batch * c.train.target_length);
  b.inputs.resize(n);
  b.targets.resize(n);
  for (size_t i = 0; i < n; ++i) b.inputs[i] = id(rng);
  for (size_t i = 0; i < n; ++i) b.targets[i] = id(rng);
  b.weights.assign(n, 1.0f);
  return b;
}

struct Timing {
  double seconds_per_step = 0;  // the fastest timed step (the machine may be shared)
  double median_seconds = 0;    // the median timed step
  std::map<std::string, double> op_seconds;           // per op kind, in the fastest step
  std::map<std::string, int64_t> collective_calls;    // per collective kind, per step
  double loss = 0;
};

// Runs warmup + steps training steps and times each of the last `steps` (op times by kind
// through the executor's per-op observer). `agree`: the step time every rank uses (the slowest).
Timing time_steps(sy::Trainer& trainer, const sy::RunConfig& cfg, const Args& a,
                  const std::function<double(double)>& agree = [](double x) { return x; }) {
  Timing t;
  const sy::Graph& program = trainer.program();
  std::map<std::string, double> ops;
  std::map<std::string, int64_t> calls;
  trainer.set_op_observer([&](sy::NodeId n, double t0, double t1) {
    const sy::OpKind k = program.node(n).kind;
    ops[std::string(sy::op_name(k))] += (t1 - t0) * 1e-6;
    if (sy::is_collective(k)) calls[std::string(sy::op_name(k))] += 1;
  });
  for (int s = 0; s < a.warmup; ++s) trainer.train_step(random_batch(cfg, s));
  std::vector<double> steps;
  t.seconds_per_step = 1e30;
  for (int s = 0; s < a.steps; ++s) {
    ops.clear();
    calls.clear();
    const auto start = std::chrono::steady_clock::now();
    t.loss = trainer.train_step(random_batch(cfg, a.warmup + s)).loss;
    const double seconds = agree(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    steps.push_back(seconds);
    if (seconds < t.seconds_per_step) {
      t.seconds_per_step = seconds;
      t.op_seconds = ops;
      t.collective_calls = calls;
    }
  }
  std::sort(steps.begin(), steps.end());
  t.median_seconds = steps[steps.size() / 2];
  return t;
}

sy::RunConfig load(const Args& a) {
  sy::RunConfig cfg = sy::parse_run_config(sy::read_file(a.model), a.model, a.sets);
  if (cfg.model.has_encoder())
    throw sy::InputError(fmt::format("{}: bench_distributed feeds next-token batches; the model must be decoder_only", a.model));
  return cfg;
}

// One rank of the MPI run: prints rank 0's timing as one JSON line.
int worker(const Args& a) {
  const sy::RunConfig cfg = load(a);
  const sy::Mesh mesh = sy::parse_mesh(fmt::format("data:{}", a.ranks));
  const sy::Layout layout = sy::parse_layout(a.layout, mesh);
  sy::check_training_layout(cfg.model, cfg.train, mesh, layout);
  sy::MpiRun run(mesh, layout);
  sy::ExecutorOptions opts;
  opts.threads = 1;
  opts.communicator = run.communicator();
  sy::Trainer trainer(cfg, a.warmup + a.steps, opts, layout);
  const Timing t = time_steps(trainer, cfg, a, [&](double x) { return run.agree_max(x); });
  nlohmann::json j = {{"seconds_per_step", t.seconds_per_step},
                      {"median_seconds", t.median_seconds},
                      {"op_seconds", t.op_seconds},
                      {"collective_calls", t.collective_calls},
                      {"loss", t.loss}};
  if (run.writer()) fmt::print("{}\n", j.dump());
  std::fflush(stdout);
  return 0;
}

std::string shell_quoted(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

int driver(Args a, const std::string& self) {
  const sy::RunConfig cfg = load(a);
  // Check the layout here first: a bad one is reported once, before anything runs.
  const sy::Mesh mesh = sy::parse_mesh(fmt::format("data:{}", a.ranks));
  const sy::Layout layout = sy::parse_layout(a.layout, mesh);
  sy::check_training_layout(cfg.model, cfg.train, mesh, layout);
  sy::TrainingGraphOptions built;
  built.mesh = mesh;
  built.layout = layout;
  built.optimizer = false;
  const sy::ModelGraph routed = sy::build_training_graph(cfg.model, cfg.train, built).model;
  if (!routed.moe_layers.empty())
    fmt::print("routing groups: {} of {} tokens per MoE layer in both runs\n", routed.moe_layers.front().groups,
               routed.moe_layers.front().group_size);
  fmt::print("model {} ({}), global batch {} x {} tokens; {} timed steps after {} warm-up\n", cfg.model.name, a.model,
             cfg.train.batch, cfg.train.target_length, a.steps, a.warmup);

  // 1 process x R threads.
  Timing threaded;
  {
    sy::ExecutorOptions opts;
    opts.threads = a.ranks;
    sy::Trainer trainer(cfg, a.warmup + a.steps, opts, layout, mesh);  // routed as on the mesh: the same math
    threaded = time_steps(trainer, cfg, a);
  }
  fmt::print("1 process x {} threads: {:.3f} s/step fastest, {:.3f} median (loss {:.4f})\n", a.ranks,
             threaded.seconds_per_step, threaded.median_seconds, threaded.loss);

  // R ranks x 1 thread.
  if (::geteuid() == 0) {
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  }
  // Not bound to cores, like the threads of the single process; a rank waiting in a collective
  // yields its core (the machine may be shared).
  std::string cmd = fmt::format("mpiexec -n {} --bind-to none --mca mpi_yield_when_idle 1 {} {} --worker --model {} --ranks {} --steps {} --warmup {} --layout {}",
                                a.ranks, a.ranks > 2 ? "--oversubscribe" : "", shell_quoted(self), shell_quoted(a.model), a.ranks,
                                a.steps, a.warmup, shell_quoted(a.layout));
  for (const std::string& s : a.sets) cmd += " --set " + shell_quoted(s);
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw sy::InputError(fmt::format("cannot start '{}'", cmd));
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  const auto j = nlohmann::json::parse(out, nullptr, false);
  if (status != 0 || j.is_discarded())
    throw sy::InputError(fmt::format("the MPI run '{}' failed (status {}): {}", cmd, status, out));
  const double mpi_step = j["seconds_per_step"].get<double>();
  const double mpi_median = j["median_seconds"].get<double>();
  fmt::print("{} ranks x 1 thread, layout {}: {:.3f} s/step fastest, {:.3f} median (loss {:.4f})\n", a.ranks, a.layout,
             mpi_step, mpi_median, j["loss"].get<double>());

  fmt::print("scaling efficiency: {:.3f} (fastest steps; {:.3f} from the medians; target >= 0.85)\n",
             threaded.seconds_per_step / mpi_step, threaded.median_seconds / mpi_median);
  fmt::print("collectives on rank 0 (share of the step, ms, calls per step):\n");
  double total = 0;
  for (const auto& [kind, calls] : j["collective_calls"].items()) {
    const double s = j["op_seconds"][kind].get<double>();
    total += s;
    fmt::print("  {:<15} {:6.1f}%  {:8.2f} ms  {:5d} calls\n", kind, 100.0 * s / mpi_step, 1e3 * s, calls.get<int64_t>());
  }
  fmt::print("  {:<15} {:6.1f}%  {:8.2f} ms\n", "all", 100.0 * total / mpi_step, 1e3 * total);
  // Where the time goes: the op kinds taking the most time in either run.
  std::vector<std::pair<double, std::string>> kinds;
  for (const auto& [kind, s] : j["op_seconds"].items()) {
    const auto it = threaded.op_seconds.find(kind);
    kinds.emplace_back(std::max(s.get<double>(), it == threaded.op_seconds.end() ? 0.0 : it->second), kind);
  }
  std::sort(kinds.rbegin(), kinds.rend());
  fmt::print("op kinds (ms per step): {:>10} {:>12}\n", fmt::format("{}x1", a.ranks), fmt::format("1x{}", a.ranks));
  for (size_t i = 0; i < std::min<size_t>(kinds.size(), 10); ++i) {
    const std::string& kind = kinds[i].second;
    const auto it = threaded.op_seconds.find(kind);
    fmt::print("  {:<21} {:10.1f} {:12.1f}\n", kind, 1e3 * j["op_seconds"][kind].get<double>(),
               it == threaded.op_seconds.end() ? 0.0 : 1e3 * it->second);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("bench_distributed", [&] {
    CLI::App app{"bench_distributed: training steps on R MPI ranks x 1 thread against 1 process x R threads (same global "
                 "batch): scaling efficiency and the time share of each collective"};
    Args a;
    app.add_option("--model", a.model, "model config (TOML), decoder_only")->capture_default_str();
    app.add_option("--set", a.sets, "override a config key: section.key=value (repeatable)");
    app.add_option("--ranks", a.ranks, "MPI ranks (and threads of the single process)")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--steps", a.steps, "timed steps")->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--warmup", a.warmup, "untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
    app.add_option("--layout", a.layout, "layout over the mesh data:R")->capture_default_str();
    app.add_flag("--worker", a.worker, "internal: one rank of the MPI run (started by the tool under mpiexec)");
    sy::parse_command_line(app, argc, argv);
    if (a.worker) return worker(a);
    return driver(a, std::filesystem::read_symlink("/proc/self/exe").string());
  });
}
