// Sweep specs for run_ablation (TOML) and the runs they expand to.
//
// A spec (experiments/ablations/*.toml):
//
//   [sweep]
//   name = "stability"            default: the file's stem
//   description = "..."           copied into summary.md
//   model = "../configs/models/small.toml"   the base model config, relative to the spec's folder
//   steps = 1000                  training steps per run (required here or in the scale)
//   eval_every = 0                validation every K steps as well (0: only at the end)
//   checkpoint_every = 0          checkpoint every K steps, so a killed sweep continues its runs in
//                                 flight from there (0: only at the end; they restart)
//   seeds = 3                     seeds per arm: a count n (train.seed = 1..n) or a list [1, 5, 9]
//   vocab = 8000                  tokenizer vocabulary, sentinels included (train --vocab)
//   threads = 0                   kernel threads per run; 0: the machine's cores / --jobs
//   scale = "small"               the scale preset used without --scale
//   simulate_model = "../configs/models/st_moe_32b.toml"   the full-scale model run_ablation
//                                 --simulate prices per arm, with the arm's own overrides (not the
//                                 sweep's or the scale's: those shrink the model for the CPU)
//   set = { "train.precision" = "bf16", "moe.z_coef" = 0.0 }   overrides for every run
//
//   [scale.tiny]                  a scale preset: any of model, steps, eval_every,
//   model = "../configs/models/tiny.toml"    checkpoint_every, seeds, vocab, threads,
//   steps = 20                    simulate_model, set (merged over [sweep].set key by key)
//
//   [[arm]]                       one or more arms; each runs once per seed
//   name = "router z-loss"        required unless grid/zip name it
//   seeds = 6                     default: the sweep's seeds
//   set = { "moe.z_coef" = 1e-3 }
//   grid = { "moe.cf_train" = [1.0, 2.0], "moe.k" = [1, 2] }    one arm per combination, and/or
//   zip = { "moe.cf_train" = [1.0, 2.0], "moe.cf_eval" = [2.0, 4.0] }   one per position (equal
//                                 lengths); with both, the grid's combinations × the zip's positions
//
// Override keys are model config keys (graph/model_config.hpp) written "section.key"; nested tables
// work too (set.moe.cf_train = 2.0). train.seed comes from seeds, never from set. Every arm is
// checked against the base model config of the chosen scale before anything runs: a bad spec is an
// InputError naming the spec file, the line, the key and what is allowed.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sy::ablation {

// One "section.key = value" setting.
struct Override {
  std::string key;    // "moe.cf_train"
  std::string toml;   // the value as TOML for train --set: 2.0, "relu", true
  std::string text;   // the value for tables: 2.0, relu, true
  int64_t line = 0;   // where the spec gives it
  bool swept = false; // from a grid or zip

  std::string set_arg() const { return key + "=" + toml; }
};

struct Arm {
  std::string name;                 // "baseline", "capacity (cf_train=1.25, k=2)"
  std::string slug;                 // its directory under runs/: "capacity_cf_train_1.25_k_2"
  std::vector<Override> overrides;  // the arm's own settings (set, then its grid/zip values)
  std::vector<int64_t> seeds;       // train.seed of its runs
  bool swept = false;               // expanded from a grid or zip
  int64_t line = 0;                 // its [[arm]] line
  // Resolved value (as text) of every key in Spec::keys for this arm: from the arm or the sweep's
  // overrides, else the base config's value.
  std::vector<std::string> key_values;
};

// [sweep] merged with the chosen [scale.X].
struct Settings {
  std::string model;          // the base model config, as given relative to the working directory
  std::string model_text;     // its contents
  int64_t steps = 0;
  int64_t eval_every = 0;
  int64_t checkpoint_every = 0;
  std::vector<int64_t> seeds{1, 2, 3};
  int64_t vocab = 8000;
  int64_t threads = 0;
  std::vector<Override> common;  // [sweep].set merged with [scale.X].set
  std::string simulate_model;    // the full-scale model for --simulate ("" when none)
  std::string simulate_model_text;
};

struct Spec {
  std::string path;         // the spec file
  std::string text;         // its contents
  std::string name;
  std::string description;
  std::string scale;        // the chosen preset; "" when the spec has none chosen
  std::vector<std::string> scales;  // the presets it defines
  Settings settings;
  std::vector<Arm> arms;    // grid/zip arms expanded, in spec order
  std::vector<std::string> keys;        // every overridden key (common, then arms), first seen first
  std::vector<std::string> swept_keys;  // the keys some grid/zip sweeps (summary.md columns)
};

// One training run of the sweep.
struct Run {
  size_t arm = 0;                 // index into Spec::arms
  int64_t seed = 0;
  std::string dir;                // relative to the sweep directory: runs/<arm slug>/seed_<seed>
  std::vector<std::string> sets;  // train --set arguments: the common ones, the arm's, train.seed

  // Everything that decides the run's outcome (the resolved model config, overrides, steps, eval
  // and vocabulary settings): a sweep directory holding the same run made differently is refused
  // rather than mixed in.
  nlohmann::ordered_json key(const Spec& spec) const;
};

// Reads and checks `path`; `scale` picks a preset ("" = the spec's [sweep].scale, if any).
// Throws InputError as described above.
Spec load_spec(const std::string& path, const std::string& scale);

// The --set arguments pricing `arm` on Settings::simulate_model: the arm's own overrides.
std::vector<std::string> simulate_sets(const Arm& arm);

// Every arm × seed, in spec order (arm by arm, seeds ascending).
std::vector<Run> plan_runs(const Spec& spec);

// The spec's settings and arms as JSON (DIR/sweep.json, read by the notebooks).
nlohmann::ordered_json spec_json(const Spec& spec, const std::vector<Run>& runs);

}  // namespace sy::ablation
