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
//   mesh = "data:8"               run every arm on a mesh of MPI ranks (mpiexec -n 8 train --mesh ...;
//                                 run_ablation --mpi N and --hostfile FILE: experiments/ablation/cluster.hpp)
//   layout = "batch:data,experts:data"   the layout rules on that mesh (default batch:data)
//   task = "brown_genre"          fine-tune every arm on this text-to-text task (train --task: a
//                                 name under DATA/tasks, or a directory holding train.tsv and
//                                 validation.tsv, relative to the spec's folder); the summary then
//                                 reports exact match, target NLL and dropped tokens
//
//   [pretrain.sparse]             a pre-training stage: one train run (in DIR/pretrain/<name>/)
//   model = "../configs/models/small.toml"   default: the sweep's model
//   steps = 300                   required unless checkpoint is given
//   seed = 1
//   set = { "train.learning_rate" = 0.01 }   overrides of this run only (not the sweep's set)
//   checkpoint = "runs/pre/checkpoint.safetensors"   reuse this checkpoint (file or run directory,
//                                 relative to the spec's folder) instead of pre-training
//                                 Arms fine-tune from their stage (train --init-from); the stage's
//                                 model is the arm's base model. An arm names its stage with
//                                 pretrain = "sparse" (optional when there is one stage). Stages
//                                 run first, one at a time; a finished stage is reused by re-runs.
//
//   [scale.tiny]                  a scale preset: any of model, steps, eval_every,
//   model = "../configs/models/tiny.toml"    checkpoint_every, seeds, vocab, threads,
//   steps = 20                    simulate_model, mesh, layout, task, set (merged over [sweep].set
//                                 key by key)
//   [scale.tiny.pretrain.sparse]  and per stage any of its keys (set merged key by key)
//
//   [[arm]]                       one or more arms; each runs once per seed
//   name = "router z-loss"        required unless grid/zip name it
//   seeds = 6                     default: the sweep's seeds
//   pretrain = "sparse"           the stage it fine-tunes from (with [pretrain.<name>] stages);
//                                 "none": no stage (trained from scratch beside arms that have one)
//   upcycle = true                with a stage: sparse upcycling (train --init-from STAGE --upcycle)
//                                 of the stage's dense checkpoint into the sweep's MoE model (the arm
//                                 keeps the sweep's model; executor/train/finetune.hpp)
//   set = { "moe.z_coef" = 1e-3 }
//   grid = { "moe.cf_train" = [1.0, 2.0], "moe.k" = [1, 2] }    one arm per combination, and/or
//   zip = { "moe.cf_train" = [1.0, 2.0], "moe.cf_eval" = [2.0, 4.0] }   one per position (equal
//                                 lengths); with both, the grid's combinations × the zip's positions
//
// Override keys are model config keys (graph/models/model_config.hpp) written "section.key"; nested tables
// work too (set.moe.cf_train = 2.0). train.seed comes from seeds, never from set. Every arm is
// checked against the base model config of the chosen scale before anything runs: a bad spec is an
// InputError naming the spec file, the line, the key and what is allowed, in the wording of
// graph/toml_schema.hpp (keys of an [[arm]] are arm.KEY). Every [scale.X] is read and checked,
// not only the chosen one.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sy::ablation {

// At most this many runs (arms × seeds) in one sweep, and so at most this many seeds per arm and
// arms per grid/zip. Each run is a training process and a directory; the specs in
// experiments/ablations/ have at most a few dozen. The bound keeps a mistyped count (seeds =
// 2000000000) or an oversized grid from materialising billions of runs before the spec is refused.
inline constexpr int64_t kMaxRuns = 10000;

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
  int64_t pretrain = -1;            // index into Spec::pretrain; -1: no stage
  bool upcycle = false;             // upcycle the stage's dense checkpoint into the sweep's model
  std::string model, model_text;    // its base model: its stage's, else the sweep's
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
  std::string task;              // train --task for every arm ("" when none): a name or an absolute directory
  std::string mesh;              // the runs' MPI mesh, e.g. "data:8" ("" : one process each)
  std::string layout;            // its layout rules ("" : batch:data)
  int64_t mesh_line = 0;         // where the spec gives the mesh (0: not given)
};

// One [pretrain.<name>] stage, merged with its [scale.X.pretrain.<name>].
struct PretrainStage {
  std::string name;
  std::string model, model_text;  // the model config (path relative to the working directory)
  int64_t steps = 0;
  int64_t seed = 1;
  std::vector<Override> sets;
  std::string checkpoint;         // reuse this checkpoint ("" : pre-train)
  int64_t line = 0;
  std::string dir() const { return "pretrain/" + name; }
  std::vector<std::string> set_args() const;  // --set arguments, train.seed last
  // What decides the stage's checkpoint (as Run::key): a directory holding another is refused.
  nlohmann::ordered_json key(int64_t vocab) const;
};

struct Spec {
  std::string path;         // the spec file
  std::string text;         // its contents
  std::string name;
  std::string description;
  std::string scale;        // the chosen preset; "" when the spec has none chosen
  std::vector<std::string> scales;  // the presets it defines
  Settings settings;
  std::vector<PretrainStage> pretrain;  // in spec order
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
