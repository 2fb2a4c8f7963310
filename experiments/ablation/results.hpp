// What run_ablation records per run and per sweep.
//
//   runs/<arm>/seed_<n>/result.json   one finished run (RunResult below; written atomically when
//                                     its train process ends; a run without it is unfinished)
//   results.csv                       one row per finished run, in spec order:
//     arm, every overridden key (its value in that arm), seed, status (ok | diverged | crashed),
//     diverged_step, steps, final_quality, best_quality, final_loss, max_router_logit, z_loss,
//     aux_loss, fraction_dropped, tokens_per_s, wall_seconds, dir; with --simulate also
//     sim_step_seconds, sim_all_to_all_share (the arm priced at full scale by the simulator)
//   summary.md                        per arm: fraction stable and quality mean ± std (ST-MoE
//                                     Tables 2-4 layout), with the swept keys as columns
//
// Definitions (from the run's metrics.jsonl and status.json, executor/train/metrics.hpp):
//   final_quality     negative log perplexity on the validation split after the last step (the
//                     papers' quality; higher is better); empty for a diverged run
//   best_quality      the highest of the run's evaluations (periodic and final)
//   final_loss        training loss, mean over the last 10% of steps (before a divergence)
//   max_router_logit  the largest max |router logit| of any MoE layer at any step
//   z_loss, aux_loss  the raw router z-loss (mean of (logsumexp logits)²) and load-balance loss,
//                     mean over the MoE layers and the last 10% of steps (not × their coefficients,
//                     so arms with the loss switched off still show the quantity)
//   fraction_dropped  tokens whose first choice found its expert full (training, train CF), mean
//                     over the MoE layers and the last 10% of steps
//   tokens_per_s      the median over steps (the first step excluded)
//   wall_seconds      wall-clock time of the train process that finished the run (a run continued
//                     from a checkpoint counts its last session only)
// Fine-tuning sweeps (a spec with a task) also record, from the run's finetune.json:
//   exact_match       greedy-decoding exact match on the task's validation file after the last step
//   target_nll        teacher-forced target negative log-likelihood, nats per target token
//   fraction_dropped_eval   dropped first choices in that evaluation (eval CF), mean over MoE layers
//   majority_accuracy the validation accuracy of always answering the most frequent training target
// and results.csv gets these columns after the others; summary.md is then a fine-tuning table:
// per arm exact match (%) mean ± std over the finished runs, target NLL, dropped tokens in
// training (train CF, mean over the last 10% of steps) and in evaluation (eval CF).
#pragma once

#include "experiments/ablation/spec.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sy::ablation {

struct RunResult {
  std::string status;                    // ok | diverged | crashed
  int64_t steps = 0;                     // steps in metrics.jsonl (a diverged run: up to the diverged step)
  std::optional<int64_t> diverged_step;
  std::string reason;                    // why it diverged or crashed
  std::optional<double> final_quality, best_quality, final_loss, max_router_logit, z_loss, aux_loss,
      fraction_dropped, tokens_per_s;
  std::optional<double> overload;
  // The router's numerics over the run (issue #18), the largest of any layer and step:
  std::optional<double> max_softmax_roundoff, max_top1_flip, max_router_grad_norm;        // max / mean expert load (the busiest expert), mean over layers and the last 10% of steps
  double wall_seconds = 0;
  std::optional<double> exact_match, target_nll, fraction_dropped_eval, majority_accuracy;  // fine-tuning runs
  std::string majority_target;
};

// The status train left in DIR/status.json ("completed", "diverged", "interrupted", "running"),
// or "" when there is none.
std::string train_status(const std::filesystem::path& dir);

// A run train finished (status completed or diverged), read from DIR/metrics.jsonl and
// DIR/status.json. A run with another status is "crashed", with `reason`.
RunResult read_train_run(const std::filesystem::path& dir, double wall_seconds, const std::string& crash_reason);

nlohmann::ordered_json result_json(const RunResult& r);
RunResult result_from_json(const nlohmann::json& j);  // throws InputError for a malformed record

// Columns with one value per arm (run_ablation --simulate: the full-scale step time and
// all-to-all share), appended to results.csv and summary.md.
struct ArmColumns {
  std::vector<std::string> csv_names;    // "sim_step_seconds"
  std::vector<std::string> table_names;  // "Step time (simulated)"
  std::vector<std::vector<std::string>> csv_values, table_values;  // [arm][column]
};

// results.csv and summary.md for the finished runs (`results[i]` belongs to runs[i]).
std::string results_csv(const Spec& spec, const std::vector<Run>& runs, const std::vector<std::optional<RunResult>>& results,
                        const ArmColumns& extra = {});
std::string summary_markdown(const Spec& spec, const std::vector<Run>& runs,
                             const std::vector<std::optional<RunResult>>& results, const ArmColumns& extra = {});

}  // namespace sy::ablation
