#include "tests/ops/op_case.hpp"

#include <algorithm>

namespace sy::test {

std::vector<OpCase>& all_cases() {
  static std::vector<OpCase> cases;
  return cases;
}

std::vector<OpKind> missing_cases(const std::vector<OpCase>& cases) {
  std::vector<OpKind> missing;
  for (OpKind k : kAllOpKinds)
    if (std::none_of(cases.begin(), cases.end(), [&](const OpCase& c) { return c.kind == k; })) missing.push_back(k);
  return missing;
}

Tensor uniform_input(const Value& leaf, std::mt19937_64& rng, double lo, double hi) {
  Tensor t(leaf.type);
  std::uniform_real_distribution<double> u(lo, hi);
  for (double& x : t.data) x = round_to(leaf.type.dtype, u(rng));
  return t;
}

Tensor int_input(const Value& leaf, std::mt19937_64& rng, int64_t n) {
  Tensor t(leaf.type);
  std::uniform_int_distribution<int64_t> u(0, n - 1);
  for (double& x : t.data) x = static_cast<double>(u(rng));
  return t;
}

}  // namespace sy::test
