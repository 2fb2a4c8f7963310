// Conformance cases for ops/index.cpp, and forwards on hand-computed examples. Costs are counted
// by hand with the conventions in ops/index.cpp: 1 flop per add (cumsum per element, scatter_add
// and embedding_grad per source element), 0 for selection and copies; gathers read their indices
// plus the fetched elements (= the output's bytes); everything else reads each input once and
// writes each output once. f32 and i32 are 4 bytes.
#include "tests/ops/op_case.hpp"

#include "graph/error.hpp"
#include "ops/interpret.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

using namespace sy;
using namespace sy::test;

namespace {

using MakeInput = std::function<Tensor(const Value&, std::mt19937_64&)>;

// i32 leaves uniform in [0, n); float leaves uniform in [-1, 1].
MakeInput ints_below(int64_t n) {
  return [n](const Value& v, std::mt19937_64& rng) {
    return v.type.dtype == DType::i32 ? int_input(v, rng, n) : uniform_input(v, rng);
  };
}

// top_k input: each row along the last dim is a random permutation of multiples of 0.1 plus
// noise below 0.01, so values are distinct and at least 0.08 apart: a finite-difference step
// never changes which are selected or their order.
Tensor separated_rows(const Value& v, std::mt19937_64& rng) {
  Tensor t(v.type);
  const int64_t n = v.type.shape.back().size;
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::uniform_real_distribution<double> noise(-0.01, 0.01);
  for (int64_t r = 0; r < t.size() / n; ++r) {
    std::iota(perm.begin(), perm.end(), int64_t{0});
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t j = 0; j < n; ++j)
      t.data[static_cast<size_t>(r * n + j)] =
          round_to(v.type.dtype, 0.1 * static_cast<double>(perm[static_cast<size_t>(j)] - n / 2) + noise(rng));
  }
  return t;
}

OpCase cumsum_case(bool exclusive, bool reverse) {
  // x [G=2, S=5, E=3] f32 along S: 30 elements, 1 add each; read 30*4, write 30*4.
  return OpCase{OpKind::cumsum,
                fmt::format("cumsum x=[group=2, tokens=5, experts=3] dim=tokens exclusive={} reverse={}", exclusive, reverse),
                [exclusive, reverse](Builder& b) {
                  cumsum(b.input("x", {{"group", 2}, {"tokens", 5}, {"experts", 3}}), "tokens", exclusive, reverse);
                },
                nullptr, OpCost{30, 30 * 4, 30 * 4}};
}

static RegisterCases reg({
    // table [V=7, D=4], ids [B=2, T=3] -> [B, T, D] (24 elements). Read: ids 6*4 + 6 rows of
    // 4 f32 (24*4); written 24*4.
    OpCase{OpKind::embedding, "embedding table=[vocab=7, d_model=4] ids=[batch=2, length=3]",
           [](Builder& b) {
             embedding(b.parameter("table", {{"vocab", 7}, {"d_model", 4}}),
                       b.input("ids", {{"batch", 2}, {"length", 3}}, DType::i32));
           },
           ints_below(7), OpCost{0, 6 * 4 + 24 * 4, 24 * 4}},
    // ids [B=2, T=3] in [0, 5) (6 ids over 5 rows: duplicates), dy [B, T, D=4] -> [V=5, D].
    // 24 adds; read 6*4 + 24*4; written 5*4*4.
    OpCase{OpKind::embedding_grad, "embedding_grad ids=[batch=2, length=3] dy=[batch=2, length=3, d_model=4] vocab=5",
           [](Builder& b) {
             embedding_grad(b.input("ids", {{"batch", 2}, {"length", 3}}, DType::i32),
                            b.input("dy", {{"batch", 2}, {"length", 3}, {"d_model", 4}}), Dim{"vocab", 5});
           },
           ints_below(5), OpCost{24, 6 * 4 + 24 * 4, 5 * 4 * 4}},
    // bf16 table and dy (2 bytes per element): the fast row kernels (executor/index_kernels.cpp)
    // copy rows and sum each vocab row in double in token order, rounding once on store, as the
    // reference does: bit for bit, tolerance 0. embedding: read 6*4 + 24*2, written 24*2.
    OpCase{OpKind::embedding, "embedding table=bf16[vocab=7, d_model=4] ids=[batch=2, length=3]",
           [](Builder& b) {
             embedding(b.parameter("table", {{"vocab", 7}, {"d_model", 4}}, DType::bf16),
                       b.input("ids", {{"batch", 2}, {"length", 3}}, DType::i32));
           },
           ints_below(7), OpCost{0, 6 * 4 + 24 * 2, 24 * 2}, 0.0},
    // 24 adds; read 6*4 + 24*2; written 5*4*2.
    OpCase{OpKind::embedding_grad, "embedding_grad ids=[batch=2, length=3] dy=bf16[batch=2, length=3, d_model=4] vocab=5",
           [](Builder& b) {
             embedding_grad(b.input("ids", {{"batch", 2}, {"length", 3}}, DType::i32),
                            b.input("dy", {{"batch", 2}, {"length", 3}, {"d_model", 4}}, DType::bf16), Dim{"vocab", 5});
           },
           ints_below(5), OpCost{24, 6 * 4 + 24 * 2, 5 * 4 * 2}, 0.0},
    // ids [G=2, S=5] in [0, 5) with 4 experts: id 4 is out of range and gives a zero row.
    // Read 10*4; written [G, S, E=4] 40*4.
    OpCase{OpKind::one_hot, "one_hot ids=[group=2, tokens=5] in [0,5) dim=experts=4",
           [](Builder& b) { one_hot(b.input("ids", {{"group", 2}, {"tokens", 5}}, DType::i32), Dim{"experts", 4}); },
           ints_below(5), OpCost{0, 10 * 4, 40 * 4}, 1e-6, GradCheck::zero},
    // x [G=2, S=5, E=4] (40 f32) -> values f32 and indices i32 [G, S, K=2] (20 each).
    OpCase{OpKind::top_k, "top_k x=[group=2, tokens=5, experts=4] k=2",
           [](Builder& b) { top_k(b.input("x", {{"group", 2}, {"tokens", 5}, {"experts", 4}}), "experts", Dim{"k", 2}); },
           separated_rows, OpCost{0, 40 * 4, 20 * 4 + 20 * 4}},
    // k = n: a full descending sort. x [S=3, E=6] (18) -> [S, K=6] twice.
    OpCase{OpKind::top_k, "top_k x=[tokens=3, experts=6] k=6 (full sort)",
           [](Builder& b) { top_k(b.input("x", {{"tokens", 3}, {"experts", 6}}), "experts", Dim{"k", 6}); },
           separated_rows, OpCost{0, 18 * 4, 18 * 4 + 18 * 4}},
    cumsum_case(false, false),
    cumsum_case(true, false),
    cumsum_case(false, true),
    cumsum_case(true, true),
    // x [G=2, E=5, D=3], idx [G, slot=4, D] in [0, 5) along experts (middle dim) -> [G, slot, D]
    // (24). Read idx 24*4 + fetched 24*4; written 24*4.
    OpCase{OpKind::gather, "gather x=[group=2, experts=5, d_model=3] idx=[group=2, slot=4, d_model=3] dim=experts",
           [](Builder& b) {
             gather(b.input("x", {{"group", 2}, {"experts", 5}, {"d_model", 3}}),
                    b.input("idx", {{"group", 2}, {"slot", 4}, {"d_model", 3}}, DType::i32), "experts");
           },
           ints_below(5), OpCost{0, 24 * 4 + 24 * 4, 24 * 4}},
    // Router probabilities of the chosen experts: probs [S=6, E=4], idx [S, K=2] along the last
    // dim -> [S, K] (12). Read 12*4 + 12*4; written 12*4.
    OpCase{OpKind::gather, "gather x=[tokens=6, experts=4] idx=[tokens=6, k=2] dim=experts",
           [](Builder& b) {
             gather(b.input("x", {{"tokens", 6}, {"experts", 4}}), b.input("idx", {{"tokens", 6}, {"k", 2}}, DType::i32),
                    "experts");
           },
           ints_below(4), OpCost{0, 12 * 4 + 12 * 4, 12 * 4}},
    // src, idx [G=2, slot=4, D=3] (24) in [0, 5) -> [G, E=5, D] (30). 24 adds; read 24*4 + 24*4;
    // written 30*4.
    OpCase{OpKind::scatter_add,
           "scatter_add src=idx=[group=2, slot=4, d_model=3] index_dim=slot out_dim=experts=5",
           [](Builder& b) {
             scatter_add(b.input("src", {{"group", 2}, {"slot", 4}, {"d_model", 3}}),
                         b.input("idx", {{"group", 2}, {"slot", 4}, {"d_model", 3}}, DType::i32), "slot",
                         Dim{"experts", 5});
           },
           ints_below(5), OpCost{24, 24 * 4 + 24 * 4, 30 * 4}},
    // top_k's backward shape: src, idx [S=6, K=2] (12) -> [S, E=4] (24).
    OpCase{OpKind::scatter_add, "scatter_add src=idx=[tokens=6, k=2] index_dim=k out_dim=experts=4",
           [](Builder& b) {
             scatter_add(b.input("src", {{"tokens", 6}, {"k", 2}}), b.input("idx", {{"tokens", 6}, {"k", 2}}, DType::i32),
                         "k", Dim{"experts", 4});
           },
           ints_below(4), OpCost{12, 12 * 4 + 12 * 4, 24 * 4}},
});

// ---- hand-computed forwards ----

Tensor make(Shape s, DType t, std::vector<double> data) {
  Tensor r(TensorType{std::move(s), t});
  REQUIRE(data.size() == r.data.size());
  r.data = std::move(data);
  return r;
}

// Runs the graph's last node on the given leaves (reference interpreter); returns its outputs.
std::vector<Tensor> run(const Graph& g, const std::map<ValueId, Tensor>& leaves) {
  const auto vals = interpret(g, leaves);
  std::vector<Tensor> outs;
  for (ValueId v : g.nodes.back().outputs) outs.push_back(vals[static_cast<size_t>(v.v)]);
  return outs;
}

}  // namespace

TEST_CASE("top_k picks the largest first and breaks ties by lower index", "[ops][index]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"tokens", 3}, {"experts", 5}});
  top_k(x, "experts", Dim{"k", 3});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto out = run(g, {{x.id, make(x.shape(), DType::f32, {1, 3, 3, 2, 3,     // ties at 3
                                                               0, 0, 0, 0, 0,     // all equal
                                                               -1, nan, 5, -2, 7})}});  // NaN ranks first
  CHECK(out[0].shape() == Shape{{"tokens", 3}, {"k", 3}});
  CHECK(out[1].dtype() == DType::i32);
  CHECK(out[1].data == std::vector<double>{1, 2, 4, 0, 1, 2, 1, 4, 2});
  CHECK(std::vector<double>(out[0].data.begin(), out[0].data.begin() + 6) == std::vector<double>{3, 3, 3, 0, 0, 0});
  CHECK(std::isnan(out[0].data[6]));
  CHECK(out[0].data[7] == 7);
  CHECK(out[0].data[8] == 5);
}

TEST_CASE("top_k rejects a dim that is not last and k larger than the dim", "[ops][index]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"tokens", 3}, {"experts", 4}});
  CHECK_THROWS_WITH(top_k(x, "tokens", Dim{"k", 2}), Catch::Contains("must be the last dim"));
  CHECK_THROWS_WITH(top_k(x, "experts", Dim{"k", 5}), Catch::Contains("allowed 1..4"));
}

TEST_CASE("cumsum: inclusive, exclusive, reversed, along an inner dim, and in i32", "[ops][index]") {
  auto cum = [](bool exclusive, bool reverse, DType t) {
    Graph g;
    Builder b(g);
    Expr x = b.input("x", {{"tokens", 4}, {"experts", 2}}, t);  // cumsum along tokens (not last)
    cumsum(x, "tokens", exclusive, reverse);
    return run(g, {{x.id, make(x.shape(), t, {1, 10, 2, 20, 3, 30, 4, 40})}})[0].data;
  };
  CHECK(cum(false, false, DType::f32) == std::vector<double>{1, 10, 3, 30, 6, 60, 10, 100});
  CHECK(cum(true, false, DType::f32) == std::vector<double>{0, 0, 1, 10, 3, 30, 6, 60});
  CHECK(cum(false, true, DType::f32) == std::vector<double>{10, 100, 9, 90, 7, 70, 4, 40});
  CHECK(cum(true, true, DType::f32) == std::vector<double>{9, 90, 7, 70, 4, 40, 0, 0});
  CHECK(cum(true, false, DType::i32) == std::vector<double>{0, 0, 1, 10, 3, 30, 6, 60});  // routing positions
}

TEST_CASE("scatter_add accumulates duplicate indices; gather reads them back", "[ops][index]") {
  Graph g;
  Builder b(g);
  Expr src = b.input("src", {{"slot", 4}, {"d_model", 2}});
  Expr idx = b.input("idx", {{"slot", 4}, {"d_model", 2}}, DType::i32);
  scatter_add(src, idx, "slot", Dim{"experts", 3});
  const auto out = run(g, {{src.id, make(src.shape(), DType::f32, {1, 2, 3, 4, 5, 6, 7, 8})},
                           {idx.id, make(idx.shape(), DType::i32, {0, 2, 2, 0, 0, 1, 0, 2})}});
  CHECK(out[0].shape() == Shape{{"experts", 3}, {"d_model", 2}});
  // experts 0: 1 + 5 + 7 (col 0), 4 (col 1); experts 1: col 1 gets 6; experts 2: 3 (col 0), 2 + 8 (col 1).
  CHECK(out[0].data == std::vector<double>{13, 4, 0, 6, 3, 10});

  Graph g2;
  Builder b2(g2);
  Expr x = b2.input("x", {{"experts", 3}, {"d_model", 2}});
  Expr gi = b2.input("idx", {{"slot", 4}, {"d_model", 2}}, DType::i32);
  gather(x, gi, "experts");
  const auto got = run(g2, {{x.id, make(x.shape(), DType::f32, {10, 11, 20, 21, 30, 31})},
                            {gi.id, make(gi.shape(), DType::i32, {0, 2, 2, 0, 0, 1, 0, 2})}});
  CHECK(got[0].data == std::vector<double>{10, 31, 30, 11, 10, 21, 10, 31});
}

TEST_CASE("gather and scatter_add reject an index out of range", "[ops][index]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"experts", 3}});
  Expr idx = b.input("idx", {{"k", 2}}, DType::i32);
  gather(x, idx, "experts");
  CHECK_THROWS_WITH(run(g, {{x.id, make(x.shape(), DType::f32, {1, 2, 3})}, {idx.id, make(idx.shape(), DType::i32, {1, 3})}}),
                    Catch::Contains("index 3 at element 1") && Catch::Contains("[0, 3)"));

  Graph g2;
  Builder b2(g2);
  Expr src = b2.input("src", {{"k", 2}});
  Expr si = b2.input("idx", {{"k", 2}}, DType::i32);
  scatter_add(src, si, "k", Dim{"experts", 3});
  CHECK_THROWS_AS(run(g2, {{src.id, make(src.shape(), DType::f32, {1, 2})}, {si.id, make(si.shape(), DType::i32, {-1, 0})}}),
                  InputError);
}

TEST_CASE("embedding looks up rows; an id outside the vocabulary is an InputError naming it", "[ops][index]") {
  Graph g;
  Builder b(g);
  Expr table = b.parameter("table", {{"vocab", 3}, {"d_model", 2}});
  Expr ids = b.input("ids", {{"length", 2}}, DType::i32);
  Expr y = embedding(table, ids);
  CHECK(y.shape() == Shape{{"length", 2}, {"d_model", 2}});
  const Tensor t = make(table.shape(), DType::f32, {1, 2, 3, 4, 5, 6});
  CHECK(run(g, {{table.id, t}, {ids.id, make(ids.shape(), DType::i32, {2, 0})}})[0].data == std::vector<double>{5, 6, 1, 2});
  CHECK_THROWS_WITH(run(g, {{table.id, t}, {ids.id, make(ids.shape(), DType::i32, {1, 3})}}),
                    Catch::Contains("id 3 at element 1") && Catch::Contains("[0, 3)") && Catch::Contains("'vocab'"));
  CHECK_THROWS_AS(run(g, {{table.id, t}, {ids.id, make(ids.shape(), DType::i32, {-1, 0})}}), InputError);
}

TEST_CASE("embedding_grad adds dy rows at their ids", "[ops][index]") {
  Graph g;
  Builder b(g);
  Expr ids = b.input("ids", {{"length", 3}}, DType::i32);
  Expr dy = b.input("dy", {{"length", 3}, {"d_model", 2}});
  embedding_grad(ids, dy, Dim{"vocab", 4});
  const auto out = run(g, {{ids.id, make(ids.shape(), DType::i32, {2, 0, 2})},
                           {dy.id, make(dy.shape(), DType::f32, {1, 2, 3, 4, 5, 6})}});
  CHECK(out[0].shape() == Shape{{"vocab", 4}, {"d_model", 2}});
  CHECK(out[0].data == std::vector<double>{3, 4, 0, 0, 6, 8, 0, 0});
}

TEST_CASE("one_hot: 1 at the id, an all-zero row for an id outside 0..n-1 (dropped tokens)", "[ops][index]") {
  Graph g;
  Builder b(g);
  Expr ids = b.input("ids", {{"tokens", 4}}, DType::i32);
  Expr y = one_hot(ids, Dim{"experts", 3});
  CHECK(y.type() == TensorType{{{"tokens", 4}, {"experts", 3}}, DType::f32});
  const auto out = run(g, {{ids.id, make(ids.shape(), DType::i32, {0, 2, 3, -1})}});
  CHECK(out[0].data == std::vector<double>{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0});
}
