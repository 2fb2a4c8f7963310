#include "executor/train/divergence.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sy {

std::string LossSpikeDetector::check(int64_t step, double loss) {
  if (factor > 0 && step > warmup && loss > factor * best_mean)
    return fmt::format("loss {:.4f} at step {} exceeds train.divergence_factor = {} times the lowest running mean of the "
                       "loss so far {:.4f} (current running mean {:.4f})",
                       loss, step, factor, best_mean, mean);
  mean = step == 1 ? loss : 0.9 * mean + 0.1 * loss;
  best_mean = step == 1 ? mean : std::min(best_mean, mean);
  return {};
}

}  // namespace sy
