// bench_simulator: how fast the simulator is.
//
//   1. analytical layout evaluation (simulator/sweep.hpp) of ST-MoE-32B on TPU v3 with 1,024 cores:
//      a. the sweep as `simulate --sweep --sweep-meshes` runs it: every mesh of the axes and device
//         count, every layout of the candidate dims, each legal one evaluated once from cold caches
//         (graph builds included), on --threads workers; prints legal layouts per second, wall-clock
//         and per CPU-second (target >= 10,000/s; Calculon, the fastest analytical peer, manages
//         about 650/s per core); the best of --repeat runs;
//      b. re-evaluating the legal layouts of one mesh over and over for about --seconds (the
//         planner's memo warm: the steady state of a long sweep), one thread and --threads;
//   2. the full event-driven step: build + autodiff, lowering, pricing and scheduling of the whole
//      ST-MoE-32B training step on the same 1,024-device mesh (target < 1 s).
#include "graph/error.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/models/model_config.hpp"
#include "simulator/hardware.hpp"
#include "simulator/model_step.hpp"
#include "simulator/simulate.hpp"
#include "simulator/sweep.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <chrono>
#include <iostream>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU seconds used by the calling thread (the machine is shared: wall time alone mixes in the
// other processes' load).
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// CPU seconds used by the whole process (all threads).
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Rate {
  double per_wall_second = 0;  // layouts / wall-clock second, all workers together
  double per_cpu_second = 0;   // layouts / CPU-second of one worker
};

// Evaluates `layouts` round-robin on `threads` workers (one evaluator each) for about `seconds`.
Rate layouts_per_second(const sy::TrainingStep& step, const sy::Mesh& mesh, const sy::HardwareSpec& hw,
                        const std::vector<sy::Layout>& layouts, int threads, double seconds) {
  std::atomic<long> done{0};
  std::vector<double> cpu(static_cast<size_t>(threads), 0.0);
  std::vector<long> counts(static_cast<size_t>(threads), 0);
  std::vector<std::thread> pool;
  const auto t0 = Clock::now();
  for (int w = 0; w < threads; ++w)
    pool.emplace_back([&, w] {
      sy::LayoutEvaluator eval(step.graph(), mesh, hw, step.weights);
      for (const sy::Layout& l : layouts) eval.evaluate(l);  // warm the memo (as a sweep would)
      const double c0 = thread_cpu_seconds();
      long n = 0;
      for (size_t i = static_cast<size_t>(w); since(t0) < seconds; i = (i + 1) % layouts.size(), ++n) eval.evaluate(layouts[i]);
      cpu[static_cast<size_t>(w)] = thread_cpu_seconds() - c0;
      counts[static_cast<size_t>(w)] = n;
      done += n;
    });
  for (auto& t : pool) t.join();
  Rate r;
  r.per_wall_second = static_cast<double>(done.load()) / since(t0);
  double c = 0;
  long n = 0;
  for (int w = 0; w < threads; ++w) c += cpu[static_cast<size_t>(w)], n += counts[static_cast<size_t>(w)];
  r.per_cpu_second = c > 0 ? static_cast<double>(n) / c : 0.0;
  return r;
}

int run(int argc, char** argv) {
  CLI::App app{"bench_simulator: analytical layouts per second and the full event-driven ST-MoE-32B step"};
  std::string model = std::string(SY_SOURCE_DIR) + "/experiments/configs/models/st_moe_32b.toml";
  std::string hardware = "tpu_v3", mesh_text = "data:64,model:16";
  std::string layout_text = "batch:data,experts:data,d_ff:model,heads:model";
  double seconds = 2.0;
  int threads = 2, repeat = 3;
  app.add_option("--model", model)->capture_default_str();
  app.add_option("--hardware", hardware)->capture_default_str();
  app.add_option("--mesh", mesh_text)->capture_default_str();
  app.add_option("--layout", layout_text, "the layout of the full event-driven step")->capture_default_str();
  app.add_option("--seconds", seconds, "how long to evaluate layouts")->capture_default_str();
  app.add_option("--threads", threads, "workers for the sweep and the parallel rate")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--repeat", repeat, "cold sweeps run (the best is reported)")->capture_default_str()->check(CLI::Range(1, 100));
  sy::parse_command_line(app, argc, argv);

  const sy::RunConfig run_config = sy::load_run_config(model);
  const sy::ModelConfig& config = run_config.model;
  const sy::HardwareSpec hw = sy::load_hardware(hardware, sy::default_hardware_dir());
  const sy::Mesh mesh = sy::parse_mesh(mesh_text);
  fmt::print("{} on {} {} ({} devices)\n", config.name, hw.name, sy::to_string(mesh), mesh.devices());

  // 1a. The whole sweep, cold.
  std::vector<sy::Mesh> meshes;
  for (const sy::Mesh& m : sy::meshes_like(mesh)) {
    try {
      sy::place_mesh(hw, m);
      meshes.push_back(m);
    } catch (const sy::InputError&) {  // does not fit the torus
    }
  }
  sy::SweepOptions sweep_opts;
  sweep_opts.threads = threads;
  double best_wall = 1e300, cpu_of_best = 0;
  size_t evaluated = 0, tried = 0;
  for (int r = 0; r < std::max(1, repeat); ++r) {
    const double c0 = process_cpu_seconds();
    const auto w0 = Clock::now();
    const sy::SweepResult swept = sy::sweep(config, run_config.train, hw, meshes, sweep_opts);
    const double wall = since(w0), cpu = process_cpu_seconds() - c0;
    evaluated = swept.scores.size();
    tried = swept.tried;
    if (wall < best_wall) best_wall = wall, cpu_of_best = cpu;
  }
  fmt::print("sweep ({} meshes of {} devices, {} layouts, {} legal, each evaluated once from cold caches, graph builds "
             "included), {} thread{}: {:.3f} s -> {:.0f} layouts/s wall-clock, {:.0f} per CPU-second (best of {})\n",
             meshes.size(), mesh.devices(), tried, evaluated, threads, threads == 1 ? "" : "s", best_wall,
             static_cast<double>(evaluated) / best_wall, static_cast<double>(evaluated) / cpu_of_best, std::max(1, repeat));

  // 1b. Re-evaluation with the memo warm: the layouts of --layout's data-parallel split (one
  // reduced build routes for one split; graph/models/training_graph.hpp).
  const sy::Layout layout = sy::parse_layout(layout_text, mesh);
  auto t = Clock::now();
  sy::TrainingGraphOptions built;
  built.mesh = mesh;
  built.layout = layout;
  const sy::TrainingStep reduced = sy::build_training_step(config, run_config.train, built, /*reduced=*/true);
  const double build_s = since(t);
  sy::LayoutEvaluator probe(reduced.graph(), mesh, hw, reduced.weights);
  std::vector<sy::Layout> all;
  for (sy::Layout& l : sy::enumerate_layouts(sy::default_sweep_dims(reduced.graph()), mesh))
    if (sy::routing_batch_split(mesh, l) == sy::routing_batch_split(mesh, layout)) all.push_back(std::move(l));
  t = Clock::now();
  std::vector<sy::Layout> legal;
  for (const sy::Layout& l : all)
    if (probe.legality(l).empty()) legal.push_back(l);
  const double legality_rate = static_cast<double>(all.size()) / since(t);
  fmt::print("analytical: reduced graph of {} nodes (for {} layers) built in {:.3f} s; {} layouts of its data-parallel "
             "split, {} legal; legality checks {:.0f}/s\n",
             reduced.graph().nodes.size(), config.encoder_layers + config.decoder_layers, build_s, all.size(),
             legal.size(), legality_rate);
  const Rate one = layouts_per_second(reduced, mesh, hw, legal, 1, seconds);
  fmt::print("re-evaluation (memo warm), 1 thread:  {:.0f} layouts/s wall-clock, {:.0f} layouts per CPU-second\n",
             one.per_wall_second, one.per_cpu_second);
  if (threads > 1) {
    const Rate many = layouts_per_second(reduced, mesh, hw, legal, threads, seconds);
    fmt::print("re-evaluation (memo warm), {} threads: {:.0f} layouts/s wall-clock, {:.0f} layouts per CPU-second "
               "per thread\n",
               threads, many.per_wall_second, many.per_cpu_second);
  }
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) > 0) fmt::print("(machine load average {:.1f} on {} cores)\n", load[0], std::thread::hardware_concurrency());

  // 2. The full event-driven step.
  t = Clock::now();
  const sy::TrainingStep full = sy::build_training_step(config, run_config.train, built);
  const double t_build = since(t);
  t = Clock::now();
  const sy::Lowered lowered = sy::lower(full.graph(), mesh, layout);
  const double t_lower = since(t);
  t = Clock::now();
  sy::SimOptions opts;
  opts.model_flops_per_step = full.model_flops;
  opts.tokens_per_step = full.tokens;
  const sy::SimResult r = sy::simulate(lowered, hw, opts);
  const double t_sim = since(t);
  fmt::print("full event-driven step [{}]: {} global nodes -> {} ops per device ({} collectives); build + autodiff "
             "{:.3f} s, lower {:.3f} s, price + schedule {:.3f} s, total {:.3f} s; simulated step {:.3f} s\n",
             layout_text, full.graph().nodes.size(), r.ops.size(), lowered.collectives.size(), t_build, t_lower, t_sim,
             t_build + t_lower + t_sim, r.step_time);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("bench_simulator", [&] { return run(argc, argv); });
}
