// A batch of random tokens for executor tests that compare runs of one graph.
#pragma once

#include "executor/train/trainer.hpp"

#include <cstdint>
#include <random>
#include <vector>

namespace sy::test {

// Random tokens in [1, vocab) of the trainer's batch and lengths (every target real), from `seed`.
inline data::Batch random_batch(const Trainer& t, uint32_t seed) {
  const ModelConfig& c = t.config().model;
  data::Batch b;
  b.batch = t.config().train.batch;
  b.inputs_length = t.inputs_length();
  b.targets_length = t.targets_length();
  b.objective = c.has_encoder() ? data::Objective::kSpanCorruption : data::Objective::kNextToken;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(1, static_cast<int32_t>(c.vocab - 1));
  auto fill = [&](std::vector<int32_t>& v, int64_t n) {
    v.resize(static_cast<size_t>(n));
    for (int32_t& x : v) x = tok(rng);
  };
  fill(b.inputs, b.batch * b.inputs_length);
  fill(b.targets, b.batch * b.targets_length);
  if (c.has_encoder()) fill(b.decoder_inputs, b.batch * b.targets_length);
  b.weights.assign(static_cast<size_t>(b.batch * b.targets_length), 1.0f);
  return b;
}

}  // namespace sy::test
