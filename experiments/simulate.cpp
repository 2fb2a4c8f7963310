// simulate: price one training step of a model on a TPU-style mesh, for one layout or all of them.
//
//   simulate --model experiments/configs/models/st_moe_32b.toml --hardware tpu_v3
//            --mesh data:64,model:16 --layout batch:data,experts:data,d_ff:model,heads:model --out DIR
//       DIR/report.md, DIR/ops.csv, DIR/summary.json, DIR/trace.json (simulator/report.hpp)
//   simulate --model M.toml --hardware tpu_v4 --mesh data:16,model:16 --sweep [--sweep-meshes] --out DIR
//       DIR/sweep.csv: every legal layout of the candidate dims (on every mesh of the same axes and
//       device count with --sweep-meshes), ranked by estimated step time among those that fit
//       (simulator/sweep.hpp); the best --refine layouts also simulated event by event
//   --no-fusion: price every op alone (no XLA-style fusion, simulator/fusion.hpp); fusion is on by
//       default in `simulate`, in the sweep's analytic estimate (groups no collective cuts) and in
//       its refined layouts
//   simulate ... --layout L --expert-load RUN/metrics.jsonl [--expert-load-steps last:10|step:S]
//   simulate ... --layout L --skew zipf:1.2|hot:0.25|uniform [--ragged-experts]
//       expert load imbalance (simulator/load_skew.hpp): report.md "Expert load" (dropped choices
//       against capacity; with --ragged-experts the expert ops and all-to-alls priced at the
//       busiest device's rows) and summary.json "expert_load"
//
// The hardware is a chip name (simulator/hardware/<name>.toml) or a path to a .toml file. Bad
// input (a model or hardware file, a mesh larger than the pod, an illegal layout) prints one
// message on stderr and exits 2 before writing anything.
#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/output_dir.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/models/model_config.hpp"
#include "simulator/hardware.hpp"
#include "simulator/model_step.hpp"
#include "simulator/report.hpp"
#include "simulator/simulate.hpp"
#include "simulator/sweep.hpp"
#include "simulator/sweep_settings.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <iostream>
#include <thread>

namespace {

// --optimizer: "config" keeps the model's; adafactor or adamw replaces it; none prices forward
// and backward only. Returns whether the step has an optimizer.
bool apply_optimizer(const std::string& name, sy::TrainConfig& train) {
  if (name == "config") return true;
  if (name == "none") return false;
  if (name == "adafactor" || name == "adamw") {
    train.optimizer.kind = name == "adamw" ? sy::OptimizerKind::adamw : sy::OptimizerKind::adafactor;
    return true;
  }
  throw sy::InputError(fmt::format("--optimizer '{}' is not allowed (allowed: config, adafactor, adamw, none)", name));
}

// "a,b" -> {a, b}; empty entries are kept ("a,,b", "") so that check_sweep_dims refuses them.
// "f32", "bf16" (selective precision) or "bf16, bf16 activations" (train.activation_dtype).
std::string precision_description(const sy::TrainConfig& t) {
  std::string s(sy::dtype_name(t.precision));
  if (t.activation_dtype == sy::DType::bf16) s += ", bf16 activations";
  return s;
}

// train.remat as report.md explains it (graph/autodiff.hpp).
std::string remat_description(sy::Remat r) {
  switch (r) {
    case sy::Remat::none: return "none: every forward value the backward pass reads is kept";
    case sy::Remat::layer:
      return "layer: each layer keeps its input, the rest is recomputed before its backward pass (Mesh-TF recompute_grad)";
    case sy::Remat::dots:
      return "dots: each layer keeps its input and its einsum outputs without batch dims, the rest is recomputed";
  }
  return "?";
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(',', start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

int run(int argc, char** argv) {
  CLI::App app{"simulate: price a training step of a model on a TPU-style mesh (roofline per op, torus collectives, "
               "event schedule, memory per device)"};
  std::string model_path, hardware, mesh_text, layout_text, out_dir, optimizer = "config", dims_text;
  std::string hardware_dir = sy::default_hardware_dir();
  std::vector<std::string> overrides, sweep_sets;
  bool sweep = false, sweep_meshes = false, no_fusion = false;
  bool ragged_experts = false;
  std::string expert_load_path, expert_load_steps = "last:10", skew;
  int refine = 3;
  int threads = 0;
  app.add_option("--model", model_path, "model config (TOML), e.g. experiments/configs/models/st_moe_32b.toml")->required();
  app.add_option("--set", overrides, "override a config key, e.g. --set moe.cf_train=2.0 (repeatable)");
  app.add_option("--hardware", hardware, "chip name (tpu_v2, tpu_v3, tpu_v4, tpu_v5e, tpu_v5p, ...) or a .toml file")
      ->required();
  app.add_option("--hardware-dir", hardware_dir, "where chip names are looked up")->capture_default_str();
  app.add_option("--mesh", mesh_text, "mesh axes, e.g. data:64,model:16")->required();
  app.add_option("--layout", layout_text, "layout rules DIM:AXIS, e.g. batch:data,experts:data,d_ff:model,heads:model");
  app.add_option("--out", out_dir, "output directory")->required();
  app.add_option("--optimizer", optimizer, "optimizer priced: config (the model's), adafactor, adamw, none")
      ->capture_default_str();
  app.add_flag("--no-fusion", no_fusion,
               "price every op alone (no XLA-style fusion or CSE, simulator/fusion.hpp); with --sweep: every layout's estimate and the refined layouts");
  app.add_flag("--sweep", sweep, "rank every legal layout of the candidate dims instead (writes sweep.csv)");
  app.add_option("--sweep-dims", dims_text, "sweep: dims to lay out, comma-separated (default: those of batch, experts, "
                                            "heads, d_ff, d_model, vocab, d_kv the model has)");
  app.add_option("--sweep-set", sweep_sets,
                 "sweep: also rank config settings, KEY=V1,V2,... (repeatable; every combination), e.g. "
                 "--sweep-set moe.cf_train=1.0,1.25,2.0 --sweep-set moe.dropless=false,true");
  app.add_flag("--sweep-meshes", sweep_meshes,
               "sweep: also every mesh with the same axis names and device count (data:256 -> data:16,model:16, ...)");
  app.add_option("--refine", refine, "sweep: simulate this many of the best fitting layouts event by event")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "sweep: workers (one mesh at a time each; 0: all cores); results do not depend on it")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--expert-load", expert_load_path,
                 "per-expert loads measured by a run of this model: its metrics.jsonl (train --out DIR)");
  app.add_option("--expert-load-steps", expert_load_steps,
                 "which steps of --expert-load: last:N (the mean of the last N) or step:S")
      ->capture_default_str();
  app.add_option("--skew", skew, "a stated skew model for every MoE layer: uniform, zipf:S, hot:P (simulator/load_skew.hpp)");
  app.add_flag("--ragged-experts", ragged_experts,
               "a backing that computes and sends only routed rows (MegaBlocks-style): the expert ops and all-to-alls "
               "priced at the busiest device's rows (default: static capacity shapes, as XLA on TPU)");
  sy::parse_command_line(app, argc, argv);
  // Flags of one mode given in the other would be ignored silently: refused instead.
  for (const char* flag : {"--sweep-dims", "--sweep-meshes", "--sweep-set", "--refine", "--threads"})
    if (!sweep && app.count(flag) > 0) throw sy::InputError(fmt::format("{} applies with --sweep only", flag));
  if (expert_load_path.empty() && app.count("--expert-load-steps") > 0)
    throw sy::InputError("--expert-load-steps applies with --expert-load only");
  if (!expert_load_path.empty() && !skew.empty())
    throw sy::InputError("--expert-load and --skew exclude each other (measured loads or a stated model)");
  const bool load_skew = !expert_load_path.empty() || !skew.empty() || ragged_experts;
  if (load_skew && sweep) throw sy::InputError("--expert-load, --skew and --ragged-experts price one --layout, not --sweep");
  std::optional<sy::ExpertLoads> loads;
  if (load_skew)
    loads = !expert_load_path.empty() ? sy::read_expert_loads(expert_load_path, expert_load_steps)
                                      : sy::skew_model(skew.empty() ? "uniform" : skew);

  // Every combination of the swept settings is a config, all loaded (and so checked) before any work.
  const std::vector<std::vector<std::string>> combinations = sy::sweep_combinations(sy::parse_sweep_settings(sweep_sets));
  std::vector<sy::RunConfig> configs;
  for (const std::vector<std::string>& c : combinations) {
    std::vector<std::string> all = overrides;
    all.insert(all.end(), c.begin(), c.end());
    configs.push_back(sy::load_run_config(model_path, all));
  }
  sy::RunConfig run_config = configs.front();
  const sy::ModelConfig& config = run_config.model;
  const bool with_optimizer = apply_optimizer(optimizer, run_config.train);
  for (sy::RunConfig& c : configs) apply_optimizer(optimizer, c.train);
  const sy::HardwareSpec hw = sy::load_hardware(hardware, hardware_dir);
  const sy::Mesh mesh = sy::parse_mesh(mesh_text);
  sy::place_mesh(hw, mesh);  // a mesh larger than the pod fails here, before any work
  const auto t0 = std::chrono::steady_clock::now();

  if (!sweep) {
    const sy::Layout layout = sy::parse_layout(layout_text, mesh);
    sy::TrainingGraphOptions built;
    built.mesh = mesh;
    built.layout = layout;
    built.optimizer = with_optimizer;
    const sy::TrainingStep step = sy::build_training_step(config, run_config.train, built);
    const sy::Lowered lowered = sy::lower(step.graph(), mesh, layout);
    sy::SimOptions opts;
    opts.model_flops_per_step = step.model_flops;
    opts.tokens_per_step = step.tokens;
    opts.fusion = !no_fusion;
    std::optional<sy::LoadSkew> skewed;
    if (loads) opts.load_skew = &skewed.emplace(lowered, *loads, ragged_experts);
    const sy::SimResult r = sy::simulate(lowered, hw, opts);
    sy::ReportInfo info;
    info.model = config.name;
    info.facts = {{"model config", model_path},
                  {"batch", fmt::format("{} sequences, {} tokens", step.training.model.batch, step.tokens)},
                  {"precision", precision_description(run_config.train)},
                  {"rematerialisation", remat_description(run_config.train.remat)},
                  {"ops per device", fmt::format("{} ({} collectives)", r.ops.size(), lowered.collectives.size())}};
    if (!no_fusion) {  // what fusion saves: the same program priced op by op
      sy::SimOptions unfused = opts;
      unfused.fusion = false;
      const double step_unfused = sy::simulate(lowered, hw, unfused).step_time;
      info.facts.emplace_back("step time with --no-fusion",
                              fmt::format("{} (fusion saves {}, {:.1f} %)", sy::format_seconds(step_unfused),
                                          sy::format_seconds(step_unfused - r.step_time),
                                          step_unfused > 0 ? 100.0 * (step_unfused - r.step_time) / step_unfused : 0.0));
    }
    for (const std::string& o : overrides) info.facts.emplace_back("--set", o);
    sy::write_reports(out_dir, r, info);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("{} on {} {} [{}]: step {}, MFU {:.1f} %, all-to-all {}, exposed communication {}, memory {} ({}); "
               "wrote {}/{{report.md,ops.csv,summary.json,trace.json}} in {:.2f} s\n",
               config.name, hw.name, sy::to_string(mesh), sy::to_string(layout), sy::format_seconds(r.step_time),
               100 * r.mfu, sy::format_seconds(r.all_to_all), sy::format_seconds(r.exposed_comm),
               sy::format_bytes(r.memory.total()), r.memory.fits() ? "fits" : "does not fit", out_dir, secs);
    return 0;
  }

  // Sweep: a reduced build (one layer of each kind) evaluated analytically for every layout, built
  // per mesh and data-parallel split (the routing groups follow the layout).
  if (!layout_text.empty()) throw sy::InputError("--layout and --sweep exclude each other (the sweep tries every layout)");
  std::vector<sy::Mesh> meshes{mesh};
  if (sweep_meshes) {
    meshes.clear();
    for (const sy::Mesh& m : sy::meshes_like(mesh)) {
      try {
        sy::place_mesh(hw, m);
        meshes.push_back(m);
      } catch (const sy::InputError&) {  // does not fit the torus: not a candidate
      }
    }
  }
  sy::SweepOptions sweep_opts;
  if (app.count("--sweep-dims") > 0) sweep_opts.dims = split_commas(dims_text);
  sweep_opts.optimizer = with_optimizer;
  sweep_opts.fusion = !no_fusion;
  sweep_opts.threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // One sweep of the layouts per combination of settings; all (settings, layout) pairs ranked together.
  std::vector<sy::LayoutScore> scores;
  std::vector<std::string> dims;
  size_t tried = 0, illegal = 0;
  for (size_t i = 0; i < configs.size(); ++i) {
    if (configs.size() > 1)
      fmt::print("settings {} of {}: {}\n", i + 1, configs.size(), sy::settings_label(combinations[i]));
    sy::SweepResult swept = sy::sweep(configs[i].model, configs[i].train, hw, meshes, sweep_opts);
    for (sy::LayoutScore& s : swept.scores) {
      s.settings = sy::settings_label(combinations[i]);
      scores.push_back(std::move(s));
    }
    dims = swept.dims;
    tried += swept.tried;
    illegal += swept.illegal;
  }
  sy::rank_layouts(scores);
  auto config_of = [&](const sy::LayoutScore& s) -> const sy::RunConfig& {
    for (size_t i = 0; i < configs.size(); ++i)
      if (sy::settings_label(combinations[i]) == s.settings) return configs[i];
    return configs.front();
  };
  int refined = 0;
  for (sy::LayoutScore& s : scores) {
    if (refined >= refine || !s.memory.fits()) break;
    sy::TrainingGraphOptions built;
    built.mesh = sy::parse_mesh(s.mesh);
    built.layout = s.layout;
    built.optimizer = with_optimizer;
    const sy::RunConfig& rc = config_of(s);
    const sy::TrainingStep full = sy::build_training_step(rc.model, rc.train, built);
    sy::SimOptions sim_opts;
    sim_opts.fusion = !no_fusion;
    s.simulated_step = sy::simulate(sy::lower(full.graph(), built.mesh, s.layout), hw, sim_opts).step_time;
    ++refined;
  }
  sy::create_output_dir(out_dir, "--out");
  const sy::OutputDirLock lock(out_dir, "--out", "simulate");
  sy::write_file_atomic(out_dir + "/sweep.csv", sy::sweep_csv(scores));
  const size_t fit = static_cast<size_t>(std::count_if(scores.begin(), scores.end(), [](const sy::LayoutScore& s) { return s.memory.fits(); }));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string meshes_text = meshes.size() == 1 ? " " + sy::to_string(mesh) : "es";
  std::string outcome = "-";
  if (fit > 0) {
    outcome = fmt::format("best {} on {}{} (step {})", sy::to_string(scores[0].layout), scores[0].mesh,
                          scores[0].settings.empty() ? "" : " with " + scores[0].settings, sy::format_seconds(scores[0].step));
  } else if (!scores.empty()) {  // ranked by memory: the first is the nearest to fitting
    outcome = fmt::format("none fits in {} per device; the smallest is {} on {}{} ({})",
                          sy::format_bytes(scores[0].memory.capacity), sy::to_string(scores[0].layout), scores[0].mesh,
                          scores[0].settings.empty() ? "" : " with " + scores[0].settings,
                          sy::format_bytes(scores[0].memory.total()));
  }
  const std::string settings_text = configs.size() > 1 ? fmt::format(" x {} settings", configs.size()) : "";
  fmt::print("{} on {} ({} mesh{}): {} layouts of [{}]{}, {} legal ({} fit, {} illegal); {}; wrote {}/sweep.csv in {:.2f} s\n",
             config.name, hw.name, meshes.size(), meshes_text, tried, fmt::join(dims, ", "), settings_text, scores.size(), fit,
             illegal, outcome, out_dir, secs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("simulate", [&] { return run(argc, argv); });
}
