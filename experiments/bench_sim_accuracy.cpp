// bench_sim_accuracy: the simulator's predicted step time against the Executor's measured one, on
// this CPU, for one training step (forward + backward) of a small model.
//
//   calibrate --out host.toml && bench_sim_accuracy --hardware host.toml
//   (on a shared machine: both with --threads 1 --clock cpu)
//
// The predicted time prices the same graph on the calibrated host spec (a one-device mesh: no
// collectives; no optimizer, which the measured graph does not run either). Prints predicted,
// measured (median of --steps runs after a warm-up), the error (target within 15 %), and the
// predicted time by op kind next to its share, to show where a gap comes from.
#include "executor/executor.hpp"
#include "graph/error.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/models/model_config.hpp"
#include "graph/models/transformer.hpp"
#include "simulator/hardware.hpp"
#include "simulator/model_step.hpp"
#include "simulator/report.hpp"
#include "simulator/simulate.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <map>
#include <random>

namespace {

int run(int argc, char** argv) {
  CLI::App app{"bench_sim_accuracy: predicted (simulator on a calibrated host spec) vs measured (Executor) step time"};
  std::string model = std::string(SY_SOURCE_DIR) + "/experiments/configs/models/bench_moe.toml";
  std::string hardware = std::string(SY_SOURCE_DIR) + "/simulator/hardware/host.toml";
  std::vector<std::string> overrides;
  int steps = 3, threads = 2;
  std::string clock = "wall";
  app.add_option("--model", model)->capture_default_str();
  app.add_option("--set", overrides, "override a config key (repeatable)");
  app.add_option("--hardware", hardware, "the calibrated host spec (experiments/calibrate --out ...)")->capture_default_str();
  app.add_option("--steps", steps, "timed steps (the median is reported)")->capture_default_str();
  app.add_option("--threads", threads, "Executor threads (use what calibrate used)")->capture_default_str();
  app.add_option("--clock", clock, "wall, or cpu: this process's CPU time (one thread; for a shared machine)")
      ->check(CLI::IsMember({"wall", "cpu"}))
      ->capture_default_str();
  sy::parse_command_line(app, argc, argv);
  if (clock == "cpu" && threads != 1) throw sy::InputError("--clock cpu measures one thread: use --threads 1");
  auto now = [&] {
    if (clock == "cpu") {
      timespec ts{};
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };

  const sy::RunConfig run_config = sy::load_run_config(model, overrides);
  const sy::ModelConfig& config = run_config.model;
  const sy::HardwareSpec hw = sy::load_hardware(hardware, sy::default_hardware_dir());
  sy::TrainingGraphOptions built;
  built.optimizer = false;  // forward + backward: the optimizer's state would need values of its own
  const sy::TrainingStep step = sy::build_training_step(config, run_config.train, built);
  const sy::Graph& g = step.graph();

  // Predicted: one device, nothing split.
  const sy::Mesh mesh = sy::parse_mesh("data:1");
  const sy::SimResult r = sy::simulate(sy::lower(g, mesh, sy::Layout{}), hw);

  // Measured: the Executor on the same graph.
  sy::ExecutorOptions eo;
  eo.threads = threads;
  sy::Executor ex(g, eo);
  std::mt19937_64 rng(3);
  for (const sy::ParamInit& p : step.training.model.init)
    ex.set(p.param, sy::initial_value(p, g.type(p.param), run_config.train.seed));
  for (sy::ValueId v : g.inputs()) {
    sy::Tensor t(g.type(v));
    const std::string& name = g.value(v).name;
    if (name != "step") {
      std::uniform_int_distribution<int64_t> tok(0, config.vocab - 1);
      for (double& x : t.data) x = static_cast<double>(tok(rng));
    }
    ex.set(v, t);
  }
  ex.run();  // warm-up
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    const double t0 = now();
    ex.run();
    times.push_back(now() - t0);
  }
  std::sort(times.begin(), times.end());
  const double measured = times[times.size() / 2];
  const double predicted = r.step_time;
  const double error = (predicted - measured) / measured;

  fmt::print("{} training step (forward + backward, batch {}), {} nodes, on {} ({})\n", config.name, step.training.model.batch,
             g.nodes.size(), hw.name, hw.description);
  fmt::print("predicted {}  measured {} (median of {}, {} threads, {} clock)  error {:+.1f} %  ({})\n",
             sy::format_seconds(predicted), sy::format_seconds(measured), steps, threads, clock, 100 * error,
             std::abs(error) <= 0.15 ? "within 15 %" : "outside 15 %");
  std::map<std::string, double> by_kind;
  for (const sy::SimOp& op : r.ops) by_kind[op.label] += op.duration;
  std::vector<std::pair<double, std::string>> top;
  for (const auto& [k, t] : by_kind) top.emplace_back(t, k);
  std::sort(top.rbegin(), top.rend());
  fmt::print("predicted time by op kind:");
  for (size_t i = 0; i < std::min<size_t>(8, top.size()); ++i)
    fmt::print(" {} {} ({:.0f} %);", top[i].second, sy::format_seconds(top[i].first), 100 * top[i].first / predicted);
  fmt::print("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("bench_sim_accuracy", [&] { return run(argc, argv); });
}
