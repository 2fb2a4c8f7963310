// The op conformance harness (STYLE.md §9): every registered op kind has a case, and every case
// runs in three modes:
//   forward  — the executor's kernel == the reference forward, within `fwd_tol`
//   gradient — autodiff == central finite differences on the reference path in double
//   cost     — OpDef::cost == `expected_cost`, an analytic count written in the case
// A failure prints `repro`, a one-line description like "einsum a=[b=3,k=4] b=[k=4,n=5] -> [b,n]".
#pragma once

#include "graph/builder.hpp"
#include "graph/op_def.hpp"

#include <functional>
#include <random>
#include <string>
#include <vector>

namespace sy::test {

// What the gradient mode checks for a case.
enum class GradCheck {
  finite_differences,  // autodiff gradients == central differences (float inputs)
  zero,                // piecewise constant op (greater, one_hot): autodiff passes no gradient
                       // and central differences are zero at the sampled points
  unsupported,         // op with no backward (second-order helper): autodiff throws InputError
};

struct OpCase {
  OpKind kind;
  std::string repro;
  // Creates the leaves and exactly one node of `kind` (its outputs are what is checked).
  std::function<void(Builder&)> build;
  // Data for a leaf; default: uniform in [-1, 1] for floats. Required for i32 leaves.
  std::function<Tensor(const Value& leaf, std::mt19937_64& rng)> make_input = nullptr;
  OpCost expected_cost;
  double fwd_tol = 1e-6;   // relative to max(1, |reference|); justify anything looser in the case
  GradCheck grad = GradCheck::finite_differences;
  double grad_tol = 1e-6;  // relative to max(1, |finite difference|)
};

// Cases registered by tests/ops/cases_<family>.cpp.
std::vector<OpCase>& all_cases();

struct RegisterCases {
  explicit RegisterCases(std::vector<OpCase> cs) {
    for (auto& c : cs) all_cases().push_back(std::move(c));
  }
};

// Kinds with no case (each case covers all three modes for its kind). Empty when complete.
std::vector<OpKind> missing_cases(const std::vector<OpCase>& cases);

// Uniform [-1, 1] data for a float leaf (the default make_input).
Tensor uniform_input(const Value& leaf, std::mt19937_64& rng, double lo = -1.0, double hi = 1.0);
// Integers uniform in [0, n) for an i32 leaf.
Tensor int_input(const Value& leaf, std::mt19937_64& rng, int64_t n);

}  // namespace sy::test
