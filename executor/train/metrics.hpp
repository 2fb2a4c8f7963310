// The run records a training run writes to its output directory:
//
//   metrics.jsonl  one JSON object per step, keys in this order:
//     step, epoch, loss, cross_entropy, aux_loss, z_loss, grad_norm, clip_scale, learning_rate,
//     tokens, target_tokens, moe {<layer scope>: {aux_loss, z_loss, router_entropy, max_logit,
//     rms_logit, logsumexp, softmax_roundoff, top1_flip, router_grad_norm (0 in eval),
//     fraction_dropped [k], expert_load [experts], load {min, max, mean, std, p50, p90, p99,
//     overload} (LoadSummary of expert_load), balance_bias [experts] (moe.bias_balance_rate > 0:
//     the bias after the step)}} (MoE models), eval {neg_log_perplexity,
//     accuracy, target_tokens, batches, moe {...}} (steps that evaluate), and last the wall-clock
//     keys kTimingKeys (step_seconds, tokens_per_s, elapsed_seconds).
//     Everything before the timing keys is a pure function of the run's state, so a resumed run
//     writes the same bytes for those keys as an uninterrupted one. Non-finite numbers are null.
//   status.json    {"status": running | completed | diverged | interrupted, "step": N,
//                   "reason": "..." (diverged, interrupted), "eval": {...} (completed: the
//                   evaluation of the final parameters, as in metrics.jsonl)}, rewritten atomically.
//   routing_pos.json  per MoE layer, validation tokens by part of speech and top expert (ST-MoE
//                   Table 13's view), with each Brown tag's universal POS class:
//     {"pos_tags": [{"tag": "nn", "universal": "NOUN"}, ...],
//      "layers": [{"scope": "...", "experts": E, "counts": [[tokens of tag 0 at expert 0, ...], ...]}]}
#pragma once

#include "executor/train/trainer.hpp"

#include <array>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

struct StepTiming {
  double step_seconds = 0;     // wall-clock of the step (feeding, running, copying back)
  double tokens_per_s = 0;     // StepMetrics::tokens / step_seconds
  double elapsed_seconds = 0;  // since this process started training
};

// The keys of metrics.jsonl that hold wall-clock measurements (differ between runs).
inline constexpr std::array<std::string_view, 3> kTimingKeys = {"step_seconds", "tokens_per_s", "elapsed_seconds"};

// A layer's expert loads summarised (Megatron-Core and DeepSeek report the same view): min, max,
// mean, population std, nearest-rank percentiles (the ⌈q·E⌉-th smallest) and the overload factor
// max/mean, which sets an MoE layer's step time (the busiest expert). overload is 0 for all-zero loads.
struct LoadSummary {
  double min = 0, max = 0, mean = 0, std = 0, p50 = 0, p90 = 0, p99 = 0, overload = 0;
};
LoadSummary load_summary(const std::vector<double>& load);

// One line of metrics.jsonl (no trailing newline). `eval` may be null.
std::string metrics_line(const StepMetrics& m, int64_t epoch, const EvalMetrics* eval, const StepTiming& t);

// Writes DIR/status.json atomically (tmp + rename).
void write_status(const std::filesystem::path& dir, std::string_view status, int64_t step, std::string_view reason = {},
                  const EvalMetrics* eval = nullptr);

// Keeps the lines of a metrics.jsonl `file` for steps <= `step` (a resume into the same directory
// drops what an interrupted run wrote after its last checkpoint). No file: nothing to do.
void truncate_metrics(const std::filesystem::path& file, int64_t step);

// Writes routing_pos.json to `file` from an evaluation's MoE layers; `pos_tags` are the corpus's
// (data::PreparedData::pos_tags). Nothing is written when no layer counted tokens by POS.
void write_routing_by_pos(const std::filesystem::path& file, const EvalMetrics& eval, const std::vector<std::string>& pos_tags);

}  // namespace sy
