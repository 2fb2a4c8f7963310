// Checked 64-bit arithmetic for sizes and counts: the one place a product or sum of sizes (tensor
// elements and bytes, parameter counts, the products of config sizes) is computed without
// wrapping. An overflow is bad input (sizes come from configs and files): an InputError naming
// what was being counted and its factors, never a wrapped number that would be used as a size.
// (FLOP counts are doubles: they cannot wrap.)
#pragma once

#include "graph/error.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

namespace sy {

inline constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// a × b; InputError "WHAT: A × B overflows 64-bit integers (largest 9223372036854775807)".
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw InputError(fmt::format("{}: {} × {} overflows 64-bit integers (largest {})", what, a, b, kInt64Max));
  return r;
}

// a + b; InputError "WHAT: A + B overflows 64-bit integers (largest ...)".
inline int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r))
    throw InputError(fmt::format("{}: {} + {} overflows 64-bit integers (largest {})", what, a, b, kInt64Max));
  return r;
}

// The product of named factors, e.g. {{"train.batch", 1048576}, {"model.vocab", 16777216}, ...};
// InputError "WHAT: train.batch = 1048576 × model.vocab = 16777216 × ... overflows 64-bit integers".
inline int64_t checked_product(std::string_view what, std::initializer_list<std::pair<std::string_view, int64_t>> factors) {
  int64_t r = 1;
  bool overflow = false;
  for (const auto& f : factors) overflow = overflow || __builtin_mul_overflow(r, f.second, &r);
  if (!overflow) return r;
  std::string terms;
  for (const auto& f : factors) terms += fmt::format("{}{} = {}", terms.empty() ? "" : " × ", f.first, f.second);
  throw InputError(fmt::format("{}: {} overflows 64-bit integers (largest {})", what, terms, kInt64Max));
}

}  // namespace sy
