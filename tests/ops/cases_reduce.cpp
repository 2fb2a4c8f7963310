// Conformance cases for ops/reduce.cpp, plus hand-computed values of the reference forwards
// (the harness compares the fast kernels and autodiff against the reference, so the reference
// itself is pinned here). Costs are counted by hand from the dim sizes with the conventions in
// the header of ops/reduce.cpp: N = elements of x, R = rows; bytes = inputs + outputs at 4 bytes
// (f32, i32) or 2 bytes (bf16) per element.
#include "tests/ops/op_case.hpp"

#include "graph/error.hpp"
#include "ops/interpret.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

using namespace sy;
using namespace sy::test;

namespace {

const Shape kX{{"batch", 2}, {"length", 3}, {"d_model", 4}};  // 24 elements
const Shape kLogits{{"batch", 2}, {"length", 3}, {"vocab", 5}};  // 30 elements
const Shape kTokens{{"batch", 2}, {"length", 3}};                // 6 elements

// Distinct values, at least 2/n apart, in random order: reduce_max has a kink wherever two
// elements tie, and finite differences of step 1e-6 must not cross one.
Tensor distinct(const Value& v, std::mt19937_64& rng) {
  Tensor t(v.type);
  const double n = static_cast<double>(t.size());
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = -1.0 + 2.0 * static_cast<double>(i) / n;
  std::shuffle(t.data.begin(), t.data.end(), rng);
  return t;
}

// |x| in [0.5, 1] with a random sign: the root mean square of a row stays away from 0.
Tensor away_from_zero(const Value& v, std::mt19937_64& rng) {
  Tensor t = uniform_input(v, rng, 0.5, 1.0);
  std::bernoulli_distribution sign(0.5);
  for (double& x : t.data)
    if (sign(rng)) x = -x;
  return t;
}

// Logits uniform in [-2, 2], labels uniform over the 5 classes.
Tensor logits_and_labels(const Value& v, std::mt19937_64& rng) {
  if (v.type.dtype == DType::i32) return int_input(v, rng, 5);
  return uniform_input(v, rng, -2.0, 2.0);
}

static RegisterCases reg({
    // ---- reduce_sum: flops N, read N, write out ----
    OpCase{OpKind::reduce_sum, "reduce_sum x=[batch=2, length=3, d_model=4] over [length]",
           [](Builder& b) { sum(b.input("x", kX), {"length"}); }, nullptr, OpCost{24, 24 * 4, 2 * 4 * 4}},
    OpCase{OpKind::reduce_sum, "reduce_sum x=[batch=2, length=3, d_model=4] over [batch, d_model] (non-adjacent dims)",
           [](Builder& b) { sum(b.input("x", kX), {"batch", "d_model"}); }, nullptr, OpCost{24, 24 * 4, 3 * 4}},
    OpCase{OpKind::reduce_sum, "reduce_sum x=[batch=2, length=3, d_model=4] over every dim -> []",
           [](Builder& b) { sum(b.input("x", kX), {"d_model", "batch", "length"}); }, nullptr, OpCost{24, 24 * 4, 4}},

    // ---- reduce_mean: flops N + out ----
    OpCase{OpKind::reduce_mean, "reduce_mean x=[batch=2, length=3, d_model=4] over [d_model]",
           [](Builder& b) { mean(b.input("x", kX), {"d_model"}); }, nullptr, OpCost{24 + 6, 24 * 4, 6 * 4}},
    OpCase{OpKind::reduce_mean, "reduce_mean x=[batch=2, length=3, d_model=4] over [batch, d_model]",
           [](Builder& b) { mean(b.input("x", kX), {"batch", "d_model"}); }, nullptr, OpCost{24 + 3, 24 * 4, 3 * 4}},

    // ---- reduce_max: flops N; distinct inputs ----
    OpCase{OpKind::reduce_max, "reduce_max x=[batch=2, length=3, d_model=4] over [d_model] (distinct values)",
           [](Builder& b) { max(b.input("x", kX), {"d_model"}); }, distinct, OpCost{24, 24 * 4, 6 * 4}},
    OpCase{OpKind::reduce_max, "reduce_max x=[batch=2, length=3, d_model=4] over [batch, length] (distinct values)",
           [](Builder& b) { max(b.input("x", kX), {"batch", "length"}); }, distinct, OpCost{24, 24 * 4, 4 * 4}},

    // ---- softmax: flops 5 N, an exp per element ----
    OpCase{OpKind::softmax, "softmax x=[batch=2, length=3, d_model=4] over d_model",
           [](Builder& b) { softmax(b.input("x", kX), "d_model"); }, nullptr, OpCost{5 * 24, 24 * 4, 24 * 4, 0, 24}},
    OpCase{OpKind::softmax, "softmax x=[batch=2, length=3, d_model=4] over length (not the last dim)",
           [](Builder& b) { softmax(b.input("x", kX), "length"); }, nullptr, OpCost{5 * 24, 24 * 4, 24 * 4, 0, 24}},
    // bf16 storage: the fast kernel computes in f32 and the reference in double, each rounding
    // once to bf16; they may land one bf16 ulp apart (2^-7 relative at most).
    OpCase{OpKind::softmax, "softmax x=bf16[batch=2, length=3, d_model=4] over d_model",
           [](Builder& b) { softmax(b.input("x", kX, DType::bf16), "d_model"); }, nullptr,
           OpCost{5 * 24, 24 * 2, 24 * 2, 0, 24}, 1.0 / 128},

    // ---- logsumexp: flops 4 N + 2 R, an exp per element and a log per row ----
    OpCase{OpKind::logsumexp, "logsumexp x=[batch=2, length=3, d_model=4] over d_model",
           [](Builder& b) { logsumexp(b.input("x", kX), "d_model"); }, nullptr, OpCost{4 * 24 + 2 * 6, 24 * 4, 6 * 4, 0, 24 + 6}},
    OpCase{OpKind::logsumexp, "logsumexp x=[batch=2, length=3, d_model=4] over batch (the first dim)",
           [](Builder& b) { logsumexp(b.input("x", kX), "batch"); }, nullptr, OpCost{4 * 24 + 2 * 12, 24 * 4, 12 * 4, 0, 24 + 12}},

    // ---- rms_norm: flops 4 N + 3 R, an rsqrt per row; x away from 0 ----
    OpCase{OpKind::rms_norm, "rms_norm x=[batch=2, length=3, d_model=4] g=[d_model=4] eps=1e-6",
           [](Builder& b) { rms_norm(b.input("x", kX), b.input("g", {{"d_model", 4}}), "d_model"); }, away_from_zero,
           OpCost{4 * 24 + 3 * 6, 24 * 4 + 4 * 4, 24 * 4, 0, 6}},
    OpCase{OpKind::rms_norm, "rms_norm x=[batch=2, length=3, d_model=4] g=[length=3] eps=0.1 (normalized dim in the middle)",
           [](Builder& b) { rms_norm(b.input("x", kX), b.input("g", {{"length", 3}}), "length", 0.1); }, away_from_zero,
           OpCost{4 * 24 + 3 * 8, 24 * 4 + 3 * 4, 24 * 4, 0, 8}},

    // ---- cross_entropy: flops 4 N + 3 R, an exp per logit and a log per row; labels i32 in [0, 5) ----
    OpCase{OpKind::cross_entropy, "cross_entropy logits=[batch=2, length=3, vocab=5] labels=i32[batch=2, length=3]",
           [](Builder& b) { cross_entropy(b.input("logits", kLogits), b.input("labels", kTokens, DType::i32), "vocab"); },
           logits_and_labels, OpCost{4 * 30 + 3 * 6, 30 * 4 + 6 * 4, 6 * 4, 0, 30 + 6}},
    OpCase{OpKind::cross_entropy,
           "cross_entropy logits=[batch=2, vocab=5, length=3] labels=i32[batch=2, length=3] (class dim in the middle)",
           [](Builder& b) {
             Expr logits = b.input("logits", {{"batch", 2}, {"vocab", 5}, {"length", 3}});
             cross_entropy(logits, b.input("labels", kTokens, DType::i32), "vocab");
           },
           logits_and_labels, OpCost{4 * 30 + 3 * 6, 30 * 4 + 6 * 4, 6 * 4, 0, 30 + 6}},
});

// ---- reference values by hand ----

// Runs `out` of a graph on the reference interpreter (leaves given in creation order).
struct Run {
  Graph g;
  Builder b{g};
  std::map<ValueId, Tensor> leaves;

  Expr in(const std::string& name, Shape s, std::vector<double> data, DType t = DType::f32) {
    Expr e = b.input(name, std::move(s), t);
    Tensor x(e.type());
    REQUIRE(data.size() == x.data.size());
    x.data = std::move(data);
    leaves[e.id] = x;
    return e;
  }
  Tensor eval(Expr e, bool exact = true) { return interpret(g, leaves, exact)[static_cast<size_t>(e.id.v)]; }
};

}  // namespace

TEST_CASE("reduce: sum, mean and max keep the other dims in order; every dim gives a scalar", "[ops][reduce]") {
  Run r;
  // x[b, t] = 10 b + t    [batch=2, length=3]
  Expr x = r.in("x", {{"batch", 2}, {"length", 3}}, {0, 1, 2, 10, 11, 12});
  Tensor s = r.eval(sum(x, {"length"}));
  CHECK(s.shape() == Shape{{"batch", 2}});
  CHECK(s.data == std::vector<double>{3, 33});
  Tensor m = r.eval(mean(x, {"batch"}));
  CHECK(m.shape() == Shape{{"length", 3}});
  CHECK(m.data == std::vector<double>{5, 6, 7});
  Tensor mx = r.eval(max(x, {"batch"}));
  CHECK(mx.data == std::vector<double>{10, 11, 12});
  Tensor all = r.eval(sum(x, {"length", "batch"}));
  CHECK(all.shape().empty());
  CHECK(all.data == std::vector<double>{36});
}

TEST_CASE("reduce: i32 sums and maxes are exact", "[ops][reduce]") {
  Run r;
  Expr ids = r.in("ids", {{"tokens", 4}}, {3, 1, 4, 1}, DType::i32);
  Tensor s = r.eval(sum(ids, {"tokens"}), false);
  CHECK(s.dtype() == DType::i32);
  CHECK(s.data == std::vector<double>{9});
  CHECK(r.eval(max(ids, {"tokens"}), false).data == std::vector<double>{4});
}

TEST_CASE("reduce: softmax and logsumexp are stable for large logits", "[ops][reduce]") {
  Run r;
  Expr x = r.in("x", {{"vocab", 3}}, {1000, 1000 + std::log(2.0), 1000 + std::log(5.0)});
  Tensor p = r.eval(softmax(x, "vocab"));
  CHECK(p.data[0] == Approx(1.0 / 8));
  CHECK(p.data[1] == Approx(2.0 / 8));
  CHECK(p.data[2] == Approx(5.0 / 8));
  Tensor lse = r.eval(logsumexp(x, "vocab"));
  CHECK(lse.shape().empty());
  CHECK(lse.data[0] == Approx(1000 + std::log(8.0)));
}

TEST_CASE("reduce: softmax over a middle dim normalizes along that dim only", "[ops][reduce]") {
  Run r;
  // [batch=2, experts=2, length=2]; along experts the pairs are (0, log 3) everywhere.
  const double l3 = std::log(3.0);
  Expr x = r.in("x", {{"batch", 2}, {"experts", 2}, {"length", 2}}, {0, 0, l3, l3, 0, 0, l3, l3});
  Tensor p = r.eval(softmax(x, "experts"));
  for (int i : {0, 1, 4, 5}) CHECK(p.data[static_cast<size_t>(i)] == Approx(0.25));
  for (int i : {2, 3, 6, 7}) CHECK(p.data[static_cast<size_t>(i)] == Approx(0.75));
}

TEST_CASE("reduce: rms_norm divides by the root mean square and scales by g", "[ops][reduce]") {
  Run r;
  // Rows (3, 4) and (0, 2); mean squares 12.5 and 2.
  Expr x = r.in("x", {{"tokens", 2}, {"d_model", 2}}, {3, 4, 0, 2});
  Expr g = r.in("g", {{"d_model", 2}}, {1, 2});
  Tensor y = r.eval(rms_norm(x, g, "d_model", 0.0));
  CHECK(y.data[0] == Approx(3 / std::sqrt(12.5)));
  CHECK(y.data[1] == Approx(2 * 4 / std::sqrt(12.5)));
  CHECK(y.data[2] == Approx(0.0));
  CHECK(y.data[3] == Approx(2 * 2 / std::sqrt(2.0)));
}

TEST_CASE("reduce: cross_entropy is logsumexp minus the label's logit", "[ops][reduce]") {
  Run r;
  // Token 0: uniform logits -> log 4. Token 1: logits (0, 0, 0, log 5), label 3 -> log 8 - log 5.
  Expr logits = r.in("logits", {{"tokens", 2}, {"vocab", 4}}, {7, 7, 7, 7, 0, 0, 0, std::log(5.0)});
  Expr labels = r.in("labels", {{"tokens", 2}}, {1, 3}, DType::i32);
  Tensor loss = r.eval(cross_entropy(logits, labels, "vocab"));
  CHECK(loss.shape() == Shape{{"tokens", 2}});
  CHECK(loss.dtype() == DType::f32);
  CHECK(loss.data[0] == Approx(std::log(4.0)));
  CHECK(loss.data[1] == Approx(std::log(8.0 / 5.0)));
}

TEST_CASE("reduce: cross_entropy rejects a label outside 0..V-1 naming the label and V", "[ops][reduce]") {
  for (double bad : {-1.0, 4.0}) {
    Run r;
    Expr logits = r.in("logits", {{"tokens", 2}, {"vocab", 4}}, std::vector<double>(8, 0.0));
    Expr labels = r.in("labels", {{"tokens", 2}}, {0, bad}, DType::i32);
    cross_entropy(logits, labels, "vocab");
    try {
      interpret(r.g, r.leaves);
      FAIL("no error for label " << bad);
    } catch (const InputError& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(fmt::format("label {} ", bad)) != std::string::npos);
      CHECK(msg.find("[0, 4)") != std::string::npos);
    }
  }
}

TEST_CASE("reduce: shape errors name the dim and the shapes", "[ops][reduce]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", kX);
  CHECK_THROWS_WITH(sum(x, {"vocab"}), Catch::Contains("'vocab'") && Catch::Contains("d_model=4"));
  CHECK_THROWS_WITH(sum(x, {"batch", "batch"}), Catch::Contains("'batch' is listed twice"));
  CHECK_THROWS_WITH(rms_norm(x, b.input("g", {{"d_model", 5}}), "d_model"), Catch::Contains("d_model=5"));
  CHECK_THROWS_WITH(cross_entropy(b.input("logits", kLogits), b.input("labels", {{"length", 3}, {"batch", 2}}, DType::i32), "vocab"),
                    Catch::Contains("without the class dim"));
  CHECK_THROWS_WITH(b.op1(OpKind::softmax, DimAttrs{Dim{"d_model", 5}}, {x.id}), Catch::Contains("size 5"));
  CHECK_THROWS_AS(mean(b.input("ids", kTokens, DType::i32), {"batch"}), InputError);
}
