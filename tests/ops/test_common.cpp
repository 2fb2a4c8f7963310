#include "ops/common.hpp"

#include <catch2/catch.hpp>

using namespace sy;

TEST_CASE("project_index maps each element of a shape onto a sub-shape by dim name", "[ops][common]") {
  Shape full{{"b", 2}, {"t", 3}, {"d", 2}};
  Shape sub{{"d", 2}, {"b", 2}};  // order differs from full
  auto p = ops::project_index(full, sub);
  REQUIRE(p.size() == 12);
  // element (b, t, d) of full -> offset d*2 + b in sub
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 3; ++t)
      for (int d = 0; d < 2; ++d) CHECK(p[static_cast<size_t>(b * 6 + t * 2 + d)] == d * 2 + b);
}

TEST_CASE("dropout mask depends only on seed, step and index and keeps about 1 - rate", "[ops][common]") {
  int kept = 0;
  for (uint64_t i = 0; i < 20000; ++i) {
    CHECK(ops::dropout_keep(7, 3, i, 0.25) == ops::dropout_keep(7, 3, i, 0.25));
    kept += ops::dropout_keep(7, 3, i, 0.25);
  }
  // Binomial(20000, 0.75): std ≈ 61; 5 std either side.
  CHECK(kept > 15000 - 310);
  CHECK(kept < 15000 + 310);
}

TEST_CASE("counter random numbers differ per step and have the right moments", "[ops][common]") {
  int same = 0;
  double s = 0, s2 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    same += ops::counter_uniform(5, 1, static_cast<uint64_t>(i)) == ops::counter_uniform(5, 2, static_cast<uint64_t>(i));
    const double z = ops::counter_normal(5, 1, static_cast<uint64_t>(i));
    s += z;
    s2 += z * z;
  }
  CHECK(same == 0);
  // mean of n standard normals has std 1/sqrt(n) ≈ 0.007; variance estimate std ≈ sqrt(2/n) ≈ 0.01.
  CHECK(std::abs(s / n) < 0.035);
  CHECK(std::abs(s2 / n - 1.0) < 0.05);
}
