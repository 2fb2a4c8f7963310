// Learning-rate schedules (the [train] keys in graph/models/train_config.hpp). t is the 0-based step: the
// value the graph's "step" input holds while the update of step t runs.
//
//   inverse_sqrt  lr · sqrt(W / max(t, W))     W = max(1, warmup_steps); with lr = 0.01 and
//                                               W = 10⁴ this is ST-MoE's 1/sqrt(max(t, 10⁴))
//   constant      lr
//   cosine        t < W: lr · (t+1) / W (linear warm-up; none when warmup_steps is 0), then
//                 min_lr + (lr - min_lr) · (1 + cos(π · min(1, (t - W) / (D - W)))) / 2
//                 D = decay_steps, or `total_steps` when decay_steps is 0
#pragma once

#include "graph/models/model_config.hpp"

#include <cstdint>

namespace sy {

double learning_rate(const OptimizerConfig& o, int64_t t, int64_t total_steps);

}  // namespace sy
