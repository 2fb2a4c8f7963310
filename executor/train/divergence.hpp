// Loss-spike detection for the training loop (executor/train/training_run.hpp).
//
// A step's loss is a spike when it exceeds `factor` times the LOWEST running mean of the loss seen
// so far (the running mean: 0.9 · mean + 0.1 · loss over the accepted steps, starting at the first
// loss). Measuring against the best mean rather than the current one means a slow climb cannot
// drag the reference up until a real blow-up passes as normal: once the loss has been low, a loss
// `factor` times that level is a spike however the loss got there. A spike is not folded into the
// means (the run stops). The test applies after `warmup` steps, while the loss falls fast.
#pragma once

#include <cstdint>
#include <string>

namespace sy {

struct LossSpikeDetector {
  double factor = 4.0;   // <= 0: spikes are never reported
  int64_t warmup = 10;   // steps (1-based) up to which no spike is reported
  double mean = 0;       // running mean of the accepted losses
  double best_mean = 0;  // lowest running mean so far (the spike reference)

  // Empty when the loss of (1-based) `step` is accepted and folded into the means; otherwise
  // why it is a spike. Non-finite losses are the caller's test (they are not folded in either).
  std::string check(int64_t step, double loss);
};

}  // namespace sy
