// The loss-spike rule of the training loop (executor/train/divergence.hpp).
#include "executor/train/divergence.hpp"

#include <catch2/catch.hpp>

namespace sy {
namespace {

TEST_CASE("loss spike: judged against the lowest running mean, not one a slow climb dragged up", "[divergence]") {
  LossSpikeDetector d;
  d.factor = 2.0;
  d.warmup = 3;
  int64_t step = 0;
  for (int i = 0; i < 20; ++i) REQUIRE(d.check(++step, 1.0).empty());  // settles at 1
  CHECK(d.best_mean == Approx(1.0));
  // A slow climb to 1.9 (each step within the factor of everything before it) drags the running
  // mean up to almost 1.9; the best stays at 1.
  for (int i = 1; i <= 90; ++i) REQUIRE(d.check(++step, 1.0 + 0.01 * i).empty());
  CHECK(d.mean > 1.8);
  CHECK(d.best_mean == Approx(1.0));
  // 2.5 is below 2 x the current mean (a trailing-mean rule would let it pass) but above 2 x the
  // best: a spike.
  CHECK(2.5 < 2.0 * d.mean);
  const std::string why = d.check(++step, 2.5);
  CHECK_FALSE(why.empty());
  CHECK(why.find("lowest running mean") != std::string::npos);
  // The spike is not folded into the means.
  CHECK(d.mean > 1.8);
  CHECK(d.mean < 1.9);
}

TEST_CASE("loss spike: no verdict during warm-up or with factor 0; falling losses lower the reference", "[divergence]") {
  LossSpikeDetector d;
  d.factor = 4.0;
  d.warmup = 10;
  CHECK(d.check(1, 10.0).empty());
  CHECK(d.check(2, 100.0).empty());  // within warm-up
  for (int64_t s = 3; s <= 60; ++s) REQUIRE(d.check(s, 1.0).empty());
  CHECK(d.best_mean < 1.1);
  CHECK_FALSE(d.check(61, 5.0).empty());  // 5 > 4 x ~1
  CHECK(d.check(61, 3.9).empty());        // 3.9 < 4 x best
  LossSpikeDetector off;
  off.factor = 0.0;
  for (int64_t s = 1; s <= 20; ++s) REQUIRE(off.check(s, 1.0).empty());
  CHECK(off.check(21, 1e6).empty());
}

}  // namespace
}  // namespace sy
