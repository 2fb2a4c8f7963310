// The run records a training run writes to its output directory:
//
//   metrics.jsonl  one JSON object per step, keys in this order:
//     step, epoch, loss, cross_entropy, aux_loss, z_loss, grad_norm, clip_scale, learning_rate,
//     tokens, target_tokens, moe {<layer scope>: {aux_loss, z_loss, router_entropy, max_logit,
//     fraction_dropped [k], expert_load [experts]}} (MoE models), eval {neg_log_perplexity,
//     accuracy, target_tokens, batches, moe {...}} (steps that evaluate), and last the wall-clock
//     keys kTimingKeys (step_seconds, tokens_per_s, elapsed_seconds).
//     Everything before the timing keys is a pure function of the run's state, so a resumed run
//     writes the same bytes for those keys as an uninterrupted one. Non-finite numbers are null.
//   status.json    {"status": running | completed | diverged | interrupted, "step": N,
//                   "reason": "..." (diverged, interrupted), "eval": {...} (completed: the
//                   evaluation of the final parameters, as in metrics.jsonl)}, rewritten atomically.
#pragma once

#include "executor/train/trainer.hpp"

#include <array>
#include <filesystem>
#include <string>
#include <string_view>

namespace sy {

struct StepTiming {
  double step_seconds = 0;     // wall-clock of the step (feeding, running, copying back)
  double tokens_per_s = 0;     // StepMetrics::tokens / step_seconds
  double elapsed_seconds = 0;  // since this process started training
};

// The keys of metrics.jsonl that hold wall-clock measurements (differ between runs).
inline constexpr std::array<std::string_view, 3> kTimingKeys = {"step_seconds", "tokens_per_s", "elapsed_seconds"};

// One line of metrics.jsonl (no trailing newline). `eval` may be null.
std::string metrics_line(const StepMetrics& m, int64_t epoch, const EvalMetrics* eval, const StepTiming& t);

// Writes DIR/status.json atomically (tmp + rename).
void write_status(const std::filesystem::path& dir, std::string_view status, int64_t step, std::string_view reason = {},
                  const EvalMetrics* eval = nullptr);

}  // namespace sy
