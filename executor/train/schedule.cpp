#include "executor/train/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace sy {

double learning_rate(const OptimizerConfig& o, int64_t t, int64_t total_steps) {
  const auto w = static_cast<double>(std::max<int64_t>(1, o.warmup_steps));
  const auto step = static_cast<double>(t);
  switch (o.schedule) {
    case LrSchedule::inverse_sqrt: return o.learning_rate * std::sqrt(w / std::max(step, w));
    case LrSchedule::constant: return o.learning_rate;
    case LrSchedule::cosine: {
      if (o.warmup_steps > 0 && t < o.warmup_steps) return o.learning_rate * (step + 1) / w;
      const double begin = o.warmup_steps > 0 ? w : 0.0;
      const auto end = static_cast<double>(o.decay_steps > 0 ? o.decay_steps : total_steps);
      const double progress = end > begin ? std::clamp((step - begin) / (end - begin), 0.0, 1.0) : 1.0;
      return o.min_learning_rate +
             (o.learning_rate - o.min_learning_rate) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
  }
  return o.learning_rate;
}

}  // namespace sy
