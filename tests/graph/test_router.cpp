// Router library (graph/models/moe.hpp): hand-computed cases of the ST-MoE / Switch / GShard era
// routers (the later ones: test_router_modern.cpp). Each case builds a tiny MoE layer
// (router_fixture.hpp: the router weight is the identity, so the logits are the input rows), runs
// it with the reference interpreter and compares with numbers worked out in the comments.
#include "graph/autodiff.hpp"
#include "graph/error.hpp"
#include "graph/models/moe.hpp"
#include "graph/verify.hpp"
#include "ops/interpret.hpp"
#include "tests/graph/router_fixture.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <memory>
#include <random>
#include <set>

using namespace sy;
using namespace sy::test;

TEST_CASE("router: capacity per rule (Mesh-TF floor, Flaxformer round, ceil k·CF·S/E, dropless)", "[router]") {
  MoeConfig c;
  c.experts = 4;
  c.k = 2;
  c.cf_train = 1.25;
  c.cf_eval = 2.0;
  c.min_capacity = 4;
  // Mesh-TF: max(4, min(8, floor(8·1.25/4 = 2.5))) = max(4, 2) = 4; eval: floor(8·2/4) = 4.
  CHECK(capacity(c, 8, true) == 4);
  c.min_capacity = 1;
  CHECK(capacity(c, 8, true) == 2);           // floor(2.5)
  CHECK(capacity(c, 8, false) == 4);          // eval CF 2.0: floor(4.0)
  CHECK(capacity(c, 1000, true) == 312);      // floor(1000·1.25/4 = 312.5)
  c.cf_train = 10;
  CHECK(capacity(c, 8, true) == 8);           // min(S = 8, floor(20)): never more than S
  c.cf_train = 0.29;
  c.experts = 1;
  CHECK(capacity(c, 100, true) == 28);        // 100·0.29 = 28.999999999999996 in double: floor 28, as in Python
  // Flaxformer: round to nearest, ties to even (Python's round): 8·1.25/4 = 2.5 -> 2; 14·1/4 = 3.5 -> 4;
  // 10·1.5/4 = 3.75 -> 4 (Mesh-TF floors it to 3).
  c = MoeConfig{};
  c.experts = 4;
  c.min_capacity = 1;
  c.capacity = CapacityRule::flaxformer;
  c.cf_train = 1.25;
  CHECK(capacity(c, 8, true) == 2);
  c.cf_train = 1.0;
  CHECK(capacity(c, 14, true) == 4);
  c.cf_train = 1.5;
  CHECK(capacity(c, 10, true) == 4);
  c.capacity = CapacityRule::mesh_tf;
  CHECK(capacity(c, 10, true) == 3);
  // ceil(k·CF·S/E): 2·1.25·8/4 = 5 -> 5; 2·1.25·10/4 = 6.25 -> 7; 2·2·4/1 = 16 (not clamped to S).
  c.capacity = CapacityRule::ceil_k;
  c.k = 2;
  c.cf_train = 1.25;
  CHECK(capacity(c, 8, true) == 5);
  CHECK(capacity(c, 10, true) == 7);
  c.experts = 1;
  c.cf_train = 2.0;
  CHECK(capacity(c, 4, true) == 16);
  c.router = RouterKind::hash;                // one choice per token: k counts as 1
  CHECK(capacity(c, 4, true) == 8);
  c.router = RouterKind::top_k;
  c.min_capacity = 20;
  CHECK(capacity(c, 4, true) == 20);          // min_capacity applies to every rule
  // Dropless: C = S, the most tokens one expert can receive.
  c.dropless = true;
  CHECK(capacity(c, 37, true) == 37);
}

TEST_CASE("router: Mesh-TF grouping of tokens", "[router]") {
  auto check = [](int64_t n, int64_t gs, int64_t split, int64_t G, int64_t S) {
    const MoeGrouping m = moe_grouping(n, gs, split);
    INFO("n=" << n << " group_size=" << gs << " batch_split=" << split);
    CHECK(m.groups == G);
    CHECK(m.group_size == S);
  };
  check(16, 8, 1, 2, 8);   // 16 / 8 = 2 groups
  check(16, 0, 1, 1, 16);  // 0: one group
  check(16, 8, 4, 4, 4);   // G = 2 is not a multiple of 4 -> 3 does not divide 16 -> 4
  check(10, 4, 1, 2, 5);   // 10 / 4 = 2, divides 10
  check(18, 4, 2, 6, 3);   // 4 does not divide 18, 5 is odd, 6
  check(7, 2, 1, 7, 1);    // 7 / 2 = 3 -> 4, 5, 6 do not divide 7 -> 7
  check(3, 100, 1, 1, 3);  // max(1, 3 / 100)
  CHECK_THROWS_AS(moe_grouping(6, 2, 4), InputError);  // 6 tokens cannot split over 4
}

TEST_CASE("router: slots go in token order, every first choice before any second choice", "[router]") {
  // E = 3, k = 2, one group of S = 4 tokens, C = floor(4·1.5/3) = 2.
  //   t0 p = [.6 .3 .1]: 1st e0, 2nd e1      gates .6/.9 = 2/3, .3/.9 = 1/3
  //   t1 p = [.5 .2 .3]: 1st e0, 2nd e2      gates .5/.8 = .625, .3/.8 = .375
  //   t2 p = [.7 .1 .2]: 1st e0, 2nd e2      gates .7/.9 = 7/9, .2/.9 = 2/9
  //   t3 p = [.2 .5 .3]: 1st e1, 2nd e2      gates .5/.8 = .625, .3/.8 = .375
  // First choices in token order: e0 <- t0 (slot 0), t1 (1), t2 (2: dropped); e1 <- t3 (0).
  // Second choices: e1 <- t0 (slot 1: after t3's first choice although t0 comes first);
  //                 e2 <- t1 (0), t2 (1), t3 (2: dropped).
  MoeConfig c = base_config(3, 2);
  c.cf_train = 1.5;
  MoeContext ctx;
  ctx.training = true;
  auto r = run(c, ctx, {{.6, .3, .1}, {.5, .2, .3}, {.7, .1, .2}, {.2, .5, .3}});
  CHECK(r->m.groups == 1);
  CHECK(r->m.group_size == 4);
  REQUIRE(r->m.capacity == 2);
  CHECK(slots(*r, r->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 1, 1}, {1, 0, 1}, {1, 2, 0}, {2, 2, 1}, {3, 1, 0}});
  CHECK(combine_at(*r, 0, 0, 0) == Approx(2.0 / 3));
  CHECK(combine_at(*r, 0, 1, 1) == Approx(1.0 / 3));
  CHECK(combine_at(*r, 1, 0, 1) == Approx(0.625));
  CHECK(combine_at(*r, 1, 2, 0) == Approx(0.375));
  CHECK(combine_at(*r, 2, 2, 1) == Approx(2.0 / 9));  // t2 keeps only its second choice, at its own gate
  CHECK(combine_at(*r, 3, 1, 0) == Approx(0.625));
  // Dropped: one first choice (t2) and one second choice (t3) of 4 tokens.
  CHECK(r->vec(r->m.fraction_dropped) == std::vector<double>{0.25, 0.25});
  // Load before drops: e0 3 choices, e1 2, e2 3, over 4 tokens.
  CHECK(r->vec(r->m.expert_load) == std::vector<double>{0.75, 0.5, 0.75});
}

TEST_CASE("router: Switch top-1 gate is the probability; a token whose choice is dropped outputs 0", "[router]") {
  // E = 2, k = 1, S = 3, C = floor(3·1/2) = 1: t0 and t1 pick e0, t2 picks e1. t1 is dropped.
  MoeConfig c = base_config(2, 1);
  c.cf_eval = 1.0;
  auto r = run(c, MoeContext{}, {{.6, .4}, {.7, .3}, {.2, .8}}, {.ffn = FfnKind::geglu});
  REQUIRE(r->m.capacity == 1);
  CHECK(slots(*r, r->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {2, 1, 0}});
  CHECK(combine_at(*r, 0, 0, 0) == Approx(0.6));  // not renormalised for k = 1
  CHECK(combine_at(*r, 2, 1, 0) == Approx(0.8));
  const Tensor& y = r->at(r->m.y);
  CHECK(y.shape() == Shape{{"tokens", 3}, {"d_model", 2}});
  CHECK(row_is_zero(y, 1));
  CHECK_FALSE(row_is_zero(y, 0));
  CHECK_FALSE(row_is_zero(y, 2));
  CHECK(r->vec(r->m.fraction_dropped)[0] == Approx(1.0 / 3));
}

TEST_CASE("router: second-expert policies all / none / threshold, train vs eval", "[router]") {
  // E = 3, k = 2, dropless (C = S = 2), τ = 0.2.
  //   t0 p = [.85 .1 .05]: gates .85/.95, g2 = .1/.95 = 0.105 < τ   (2nd choice e1)
  //   t1 p = [.6 .3 .1]:   gates .6/.9,   g2 = .3/.9 = 0.333 > τ    (2nd choice e1)
  const Probs p{{.85, .1, .05}, {.6, .3, .1}};
  MoeConfig c = base_config(3, 2);
  c.dropless = true;
  MoeContext train;
  train.training = true;

  c.policy_train = SecondPolicy::all;  // both kept; t1's second choice sits behind t0's in e1
  auto all = run(c, train, p);
  CHECK(slots(*all, all->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 1, 0}, {1, 0, 1}, {1, 1, 1}});
  CHECK(all->vec(all->m.expert_load) == std::vector<double>{1.0, 1.0, 0.0});

  c.policy_train = SecondPolicy::none;  // only first choices
  auto none = run(c, train, p);
  CHECK(slots(*none, none->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {1, 0, 1}});
  CHECK(none->vec(none->m.expert_load) == std::vector<double>{1.0, 0.0, 0.0});
  CHECK(none->vec(none->m.fraction_dropped) == std::vector<double>{0.0, 0.0});  // policy drops are not capacity drops
  CHECK(combine_at(*none, 0, 0, 0) == Approx(0.85 / 0.95));                   // gates were renormalised before the drop

  c.policy_train = SecondPolicy::threshold;  // t0's second choice (0.105 < τ) goes and takes no slot: t1's is slot 0
  auto thr = run(c, train, p);
  CHECK(slots(*thr, thr->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {1, 0, 1}, {1, 1, 0}});
  CHECK(combine_at(*thr, 1, 1, 0) == Approx(1.0 / 3));

  // The eval policy applies when not training.
  c.policy_train = SecondPolicy::none;
  c.policy_eval = SecondPolicy::threshold;
  auto eval = run(c, MoeContext{}, p);
  CHECK(slots(*eval, eval->m.dispatch) == slots(*thr, thr->m.dispatch));
}

TEST_CASE("router: random second-expert policy keeps a choice iff U < g2/τ", "[router]") {
  // 400 tokens with p = [.8 .15 .05]: g2 = .15/.95 = 0.1579, so P(keep) = g2/τ = 0.7895 with τ = 0.2;
  // σ of the kept fraction = sqrt(.79·.21/400) = 0.020. Token 0 has p = [.6 .3 .1]: g2/τ = 1.67 > 1,
  // always kept.
  Probs p(400, {.8, .15, .05});
  p[0] = {.6, .3, .1};
  MoeConfig c = base_config(3, 2);
  c.dropless = true;
  c.policy_train = SecondPolicy::random;
  MoeContext ctx;
  ctx.training = true;
  ctx.seed = 11;
  auto r = run(c, ctx, p, {.step = 3});
  // The uniform numbers U [group, group_size, k] the layer drew (its one random node).
  const Tensor* u = nullptr;
  for (const Node& n : r->g.nodes)
    if (n.kind == OpKind::random) u = &r->vals.at(static_cast<size_t>(n.outputs[0].v));
  REQUIRE(u != nullptr);
  const Tensor& d = r->at(r->m.dispatch);  // [1, 400, 3, C = 400]
  const int64_t C = r->m.capacity;
  int kept = 0;
  for (int64_t t = 0; t < 400; ++t) {
    double second = 0;  // dispatch mass on expert 1 (each token's second choice)
    for (int64_t s = 0; s < C; ++s) second += d.data[static_cast<size_t>((t * 3 + 1) * C + s)];
    const double g2 = p[static_cast<size_t>(t)][1] / (p[static_cast<size_t>(t)][0] + p[static_cast<size_t>(t)][1]);
    const bool expect = u->data[static_cast<size_t>(t * 2 + 1)] * 0.2 < g2;
    if (expect != (second == 1.0)) FAIL("token " << t << ": U = " << u->data[static_cast<size_t>(t * 2 + 1)] << ", g2 = " << g2);
    kept += second == 1.0;
  }
  CHECK(d.data[static_cast<size_t>((0 * 3 + 1) * C + 0)] == 1.0);  // token 0's second choice: first in e1
  CHECK(kept / 400.0 == Approx(0.7895).margin(0.07));             // 3.5σ
  // Another step draws other numbers.
  auto r2 = run(c, ctx, p, {.step = 4});
  CHECK(r2->vec(r2->m.dispatch) != r->vec(r->m.dispatch));
}

TEST_CASE("router: batch-prioritized routing hands out slots by top-1 probability", "[router]") {
  // E = 3, k = 2, S = 3, C = floor(3·2/3) = 2 (eval CF 2).
  //   t0 p = [.5 .4 .1]: e0, e1     t1 p = [.3 .6 .1]: e1, e0     t2 p = [.7 .2 .1]: e0, e1
  // Priority by top-1 probability: t2 (.7), t1 (.6), t0 (.5).
  //   first choices:  t2 -> e0 slot 0, t1 -> e1 slot 0, t0 -> e0 slot 1
  //   second choices: t2 -> e1 slot 1, t1 -> e0 slot 2 (dropped), t0 -> e1 slot 2 (dropped)
  // In token order instead: t0 -> e0 0, t1 -> e1 0, t2 -> e0 1; t0 -> e1 1, t1 and t2 dropped.
  const Probs p{{.5, .4, .1}, {.3, .6, .1}, {.7, .2, .1}};
  MoeConfig c = base_config(3, 2);
  auto plain = run(c, MoeContext{}, p);
  REQUIRE(plain->m.capacity == 2);
  CHECK(slots(*plain, plain->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 1, 1}, {1, 1, 0}, {2, 0, 1}});
  c.batch_prioritized = true;
  auto bpr = run(c, MoeContext{}, p);
  CHECK(slots(*bpr, bpr->m.dispatch) == std::vector<Slot>{{0, 0, 1}, {1, 1, 0}, {2, 0, 0}, {2, 1, 1}});
  CHECK(bpr->vec(bpr->m.fraction_dropped)[0] == 0.0);
  CHECK(bpr->vec(bpr->m.fraction_dropped)[1] == Approx(2.0 / 3));

  // Top-1, every token on e0, C = 2: token order keeps t0, t1; BPR keeps the two most confident.
  MoeConfig c1 = base_config(2, 1);
  c1.cf_eval = 1.0;
  c1.batch_prioritized = true;
  auto top1 = run(c1, MoeContext{}, {{.6, .4}, {.9, .1}, {.7, .3}, {.8, .2}});
  CHECK(slots(*top1, top1->m.dispatch) == std::vector<Slot>{{1, 0, 0}, {3, 0, 1}});
}

TEST_CASE("router: BPR in a decoder is refused naming the setting", "[router]") {
  MoeConfig c = base_config(3, 2);
  c.batch_prioritized = true;
  MoeContext ctx;
  ctx.is_decoder = true;
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"tokens", 4}, {"d_model", 3}});
  try {
    moe_layer(b, x, c, ctx);
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK_THAT(e.what(), Catch::Contains("batch_prioritized") && Catch::Contains("decoder"));
  }
}

TEST_CASE("router: expert choice takes each expert's top-C tokens", "[router]") {
  // E = 3, S = 3, C = floor(3·1/3) = 1:
  //   t0 p = [.5 .3 .2]   t1 p = [.4 .1 .5]   t2 p = [.2 .25 .55]
  // e0 takes t0 (.5 > .4), e1 takes t0 (.3 > .25), e2 takes t2 (.55 > .5). t1 goes nowhere.
  MoeConfig c = base_config(3, 2);
  c.router = RouterKind::expert_choice;
  c.cf_eval = 1.0;
  auto r = run(c, MoeContext{}, {{.5, .3, .2}, {.4, .1, .5}, {.2, .25, .55}});
  REQUIRE(r->m.capacity == 1);
  CHECK(slots(*r, r->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 1, 0}, {2, 2, 0}});
  CHECK(combine_at(*r, 0, 0, 0) == Approx(0.5));  // weight = router probability
  CHECK(combine_at(*r, 0, 1, 0) == Approx(0.3));
  CHECK(combine_at(*r, 2, 2, 0) == Approx(0.55));
  REQUIRE(r->vec(r->m.fraction_dropped).size() == 1);
  CHECK(r->vec(r->m.fraction_dropped)[0] == Approx(1.0 / 3));
  for (double load : r->vec(r->m.expert_load)) CHECK(load == Approx(1.0 / 3));
  CHECK(r->scalar(r->m.aux_loss_raw) == 0.0);  // no balance loss
  CHECK(row_is_zero(r->at(r->m.y), 1));
}

TEST_CASE("router: hash routing by token id mod E, and by a fixed random table", "[router]") {
  // ids 0 4 5 7 9 3 with E = 3 -> experts 0 1 2 1 0 0; gate 1; dropless.
  MoeConfig c = base_config(3, 1);
  c.router = RouterKind::hash;
  c.dropless = true;
  MoeContext ctx;
  ctx.vocab = 10;
  auto r = run(c, ctx, Probs(6, {.5, .3, .2}), {.token_ids = {0, 4, 5, 7, 9, 3}});
  CHECK(slots(*r, r->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {1, 1, 0}, {2, 2, 0}, {3, 1, 1}, {4, 0, 1}, {5, 0, 2}});
  CHECK(r->vec(r->m.combine) == r->vec(r->m.dispatch));  // gates are 1
  const std::vector<double> load = r->vec(r->m.expert_load);  // [3 2 1] / 6
  CHECK(load[0] == Approx(0.5));
  CHECK(load[1] == Approx(2.0 / 6));
  CHECK(load[2] == Approx(1.0 / 6));
  CHECK(r->scalar(r->m.aux_loss_raw) == 0.0);
  CHECK(r->scalar(r->m.z_loss_raw) == 0.0);
  for (const Value& v : r->g.values) CHECK(v.name != "moe/router/w");  // no learned router

  // Random table: one expert per id, the same at every step, not all ids on one expert.
  c.hash = HashKind::random;
  c.experts = 4;
  ctx.vocab = 64;
  std::vector<int> ids;
  for (int i = 0; i < 64; ++i) ids.push_back(i % 32);  // every id twice
  auto a = run(c, ctx, Probs(64, {.25, .25, .25, .25}), {.step = 0, .token_ids = ids});
  auto b = run(c, ctx, Probs(64, {.25, .25, .25, .25}), {.step = 9, .token_ids = ids});
  CHECK(a->vec(a->m.dispatch) == b->vec(b->m.dispatch));
  std::vector<int64_t> expert_of(64, -1);
  for (const Slot& s : slots(*a, a->m.dispatch)) expert_of[static_cast<size_t>(s[0])] = s[1];
  for (int i = 0; i < 32; ++i) CHECK(expert_of[static_cast<size_t>(i)] == expert_of[static_cast<size_t>(i + 32)]);
  for (double load : a->vec(a->m.expert_load)) CHECK(load > 0);

  MoeContext missing;
  missing.vocab = 10;
  Graph g;
  Builder bld(g);
  CHECK_THROWS_AS(moe_layer(bld, bld.input("x", {{"tokens", 2}, {"d_model", 3}}), c, missing), InputError);
}

TEST_CASE("router: z-loss, balance-loss variants, entropy and max |logit| by hand", "[router]") {
  // E = 3, k = 2, 4 tokens in 2 groups of 2 (group_size 2). Logits ln p + shift, shifts 1 2 0 0.
  //   group 0: t0 p = [.5 .3 .2] (top-1 e0, top-2 {e0 e1}), t1 p = [.1 .6 .3] (e1, {e1 e2})
  //   group 1: t2 p = [.2 .2 .6] (e2, {e2 e0}),             t3 p = [.6 .2 .2] (e0, {e0 e1})
  //   (ties go to the lower expert index.)
  // z-loss: logsumexp(ln p + c) = c: mean(1², 2², 0², 0²) = 5/4.
  // Switch (top-1 f), per group E·Σ f P:
  //   g0: f = [.5 .5 0], P = [.3 .45 .25]: 3·(.15 + .225) = 1.125
  //   g1: f = [.5 0 .5], P = [.4 .2 .4]:   3·(.2 + .2)    = 1.2        mean 1.1625
  //   (the whole batch as one group would give 3·(.5·.35 + .25·.325 + .25·.325) = 1.0125)
  // Flaxformer (top-k f): g0: f = [.5 1 .5]: 3·(.15 + .45 + .125) = 2.175
  //                       g1: f = [1 .5 .5]: 3·(.4 + .1 + .2)    = 2.1    mean 2.1375
  // GShard: Switch / E² = 1.1625 / 9 = 0.129166...
  // Entropy: H(.5 .3 .2) = 1.0296530, H(.1 .6 .3) = 0.8979457, H(.2 .2 .6) = H(.6 .2 .2) = 0.9502705
  //   mean = 0.9570349. max |logit| = |ln .2| = 1.6094 (t2, t3), above ln .6 + 2 = 1.4892 (t1).
  const Probs p{{.5, .3, .2}, {.1, .6, .3}, {.2, .2, .6}, {.6, .2, .2}};
  const RunOptions o{.shift = {1, 2, 0, 0}};
  MoeConfig c = base_config(3, 2);
  c.group_size = 2;
  c.balance_coef = 0.01;
  c.z_coef = 0.001;
  auto r = run(c, MoeContext{}, p, o);
  REQUIRE(r->m.groups == 2);
  CHECK(r->scalar(r->m.z_loss_raw) == Approx(1.25));
  CHECK(r->scalar(r->m.z_loss) == Approx(1.25e-3));  // paper rule: c_z · z
  CHECK(r->scalar(r->m.aux_loss_raw) == Approx(1.1625));
  CHECK(r->scalar(r->m.aux_loss) == Approx(1.1625e-2));
  const double h_tie = -(2 * .2 * std::log(.2) + .6 * std::log(.6));
  CHECK(r->scalar(r->m.router_entropy) ==
        Approx((1.0296530140645737 + 0.8979457248567798 + 2 * h_tie) / 4));
  CHECK(r->scalar(r->m.max_logit) == Approx(-std::log(.2)));

  c.z_rule = ZLossRule::mesh_tf;  // × loss_coef 1e-2 as well
  c.balance = BalanceLoss::flaxformer_topk;
  auto f = run(c, MoeContext{}, p, o);
  CHECK(f->scalar(f->m.z_loss) == Approx(1.25e-5));
  CHECK(f->scalar(f->m.aux_loss_raw) == Approx(2.1375));

  c.balance = BalanceLoss::gshard;
  auto gs = run(c, MoeContext{}, p, o);
  CHECK(gs->scalar(gs->m.aux_loss_raw) == Approx(1.1625 / 9));

  c.balance = BalanceLoss::switch_top1;
  c.group_size = 0;  // one group
  auto one = run(c, MoeContext{}, p, o);
  CHECK(one->scalar(one->m.aux_loss_raw) == Approx(1.0125));

  c.balance = BalanceLoss::none;
  auto none = run(c, MoeContext{}, p, o);
  CHECK(none->scalar(none->m.aux_loss) == 0.0);

  // The raw losses and metrics are graph outputs under the layer's scope.
  for (const char* name : {"aux_loss", "z_loss", "fraction_dropped", "expert_load", "router_entropy", "max_logit"})
    CHECK(r->g.find_output(std::string("moe/metrics/") + name).has_value());
}

TEST_CASE("router: noisy top-k (Shazeer) gates and CV² losses without noise (eval)", "[router]") {
  // E = 3, eval: no noise, logits = ln p.  t0 p = [.5 .3 .2], t1 p = [.1 .6 .3].
  // k = 1: gates 1 (softmax over one kept logit); importance = [1 1 0] = load.
  //   CV²([1 1 0]) = var/mean² = (2/9) / (4/9) = 0.5 each: aux = 1.0
  // k = 2: gates t0 (.5 .3)/.8 = .625 .375 on e0 e1, t1 (.6 .3)/.9 = 2/3 1/3 on e1 e2.
  //   importance = [15 25 8]/24, mean 16/24: var = (1 + 81 + 64)/(3·576) = 146/1728, CV² = 73/384
  //   load = counts [1 2 1], mean 4/3: var = 2/9, CV² = (2/9)/(16/9) = 1/8
  //   aux = 73/384 + 1/8 = 121/384
  const Probs p{{.5, .3, .2}, {.1, .6, .3}};
  MoeConfig c = base_config(3, 1);
  c.router = RouterKind::noisy_top_k;
  c.dropless = true;
  auto r1 = run(c, MoeContext{}, p);
  CHECK(r1->scalar(r1->m.aux_loss_raw) == Approx(1.0));
  CHECK(combine_at(*r1, 0, 0, 0) == Approx(1.0));
  c.k = 2;
  auto r2 = run(c, MoeContext{}, p);
  CHECK(r2->scalar(r2->m.aux_loss_raw) == Approx(121.0 / 384));
  CHECK(combine_at(*r2, 1, 1, 0) == Approx(2.0 / 3));  // t1's first choice: slot 0 of e1
  CHECK(combine_at(*r2, 0, 1, 1) == Approx(0.375));    // t0's second choice: after every first choice
}

TEST_CASE("router: multiplicative jitter scales router inputs by U(1-ε, 1+ε) in training only", "[router]") {
  // Router w = I, so logits = x ⊙ u: with ε = 0.5, max|logit| lies in [0.5, 1.5]·max|x| = [0.5, 1.5]·|ln .1|.
  MoeConfig c = base_config(3, 2);
  c.jitter = 0.5;
  const Probs p{{.5, .4, .1}, {.3, .6, .1}};
  MoeContext train;
  train.training = true;
  auto t = run(c, train, p);
  auto e = run(c, MoeContext{}, p);
  const double m = -std::log(0.1);
  CHECK(e->scalar(e->m.max_logit) == Approx(m));
  CHECK(t->scalar(t->m.max_logit) != Approx(m));
  CHECK(t->scalar(t->m.max_logit) >= 0.5 * m);
  CHECK(t->scalar(t->m.max_logit) <= 1.5 * m);
}

TEST_CASE("router: bf16 router computes logits and softmax in bf16", "[router]") {
  MoeConfig c = base_config(3, 2);
  c.router_dtype = DType::bf16;
  auto r = run(c, MoeContext{}, {{.5, .3, .2}, {.1, .6, .3}}, {.exact = false});
  bool bf16_softmax = false;
  for (const Node& n : r->g.nodes)
    bf16_softmax = bf16_softmax || (n.kind == OpKind::softmax && r->g.type(n.outputs[0]).dtype == DType::bf16);
  CHECK(bf16_softmax);
  for (double v : r->vec(r->m.router_probs)) CHECK(round_to(DType::bf16, v) == v);
  CHECK(r->g.type(r->m.router_probs.id).dtype == DType::f32);
}

TEST_CASE("router: parameters, scopes and config errors", "[router]") {
  MoeConfig c = base_config(4, 2);
  c.expert_ffn = FfnKind::geglu;
  c.expert_bias = true;
  c.d_ff = 5;
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 2}, {"length", 4}, {"d_model", 6}});
  MoeLayer m;
  {
    ScopeGuard s(b, "encoder/layer_1/moe");
    m = moe_layer(b, x, c, MoeContext{});
  }
  verify(g);
  CHECK(m.y.shape() == x.shape());
  std::vector<std::string> params;
  for (ValueId v : g.parameters()) params.push_back(g.value(v).name + " " + to_string(g.type(v).shape));
  CHECK(params == std::vector<std::string>{
                      "encoder/layer_1/moe/router/w [d_model=6, experts=4]",
                      "encoder/layer_1/moe/experts/wi_0 [experts=4, d_model=6, d_ff=5]",
                      "encoder/layer_1/moe/experts/wi_1 [experts=4, d_model=6, d_ff=5]",
                      "encoder/layer_1/moe/experts/wo [experts=4, d_ff=5, d_model=6]",
                      "encoder/layer_1/moe/experts/scale [experts=4, d_model=6]",
                  });
  std::set<std::string> scopes;
  for (const Node& n : g.nodes) scopes.insert(n.scope);
  CHECK(scopes == std::set<std::string>{"encoder/layer_1/moe/router", "encoder/layer_1/moe/dispatch",
                                        "encoder/layer_1/moe/experts"});
  CHECK(g.find_output("encoder/layer_1/moe/metrics/aux_loss").has_value());

  MoeConfig bad = base_config(4, 5);
  CHECK_THAT(config_error(bad), Catch::Contains("'k' = 5") && Catch::Contains("1..4"));
  bad = base_config(4, 2);
  bad.cf_train = 0;
  CHECK_THAT(config_error(bad), Catch::Contains("cf_train"));
  bad = base_config(4, 2);
  bad.router = RouterKind::hash;
  bad.batch_prioritized = true;
  CHECK_THAT(config_error(bad), Catch::Contains("batch_prioritized"));
  bad = base_config(4, 2);
  bad.policy_train = SecondPolicy::threshold;
  bad.policy_threshold = 0;
  CHECK_THAT(config_error(bad), Catch::Contains("policy_threshold"));

  CHECK(enum_name(RouterKind::noisy_top_k) == "noisy_top_k");
  CHECK(enum_from_name<SecondPolicy>("threshold") == SecondPolicy::threshold);
  CHECK_FALSE(enum_from_name<CapacityRule>("floor").has_value());
  CHECK(enum_allowed<CapacityRule>() == "mesh_tf, flaxformer, ceil_k");
}

TEST_CASE("router: gradients of every router match finite differences", "[router]") {
  // Loss = Σ y·R + aux + z for random x, weights and R, in double (exact interpretation). Routing
  // is piecewise constant, so a ±1e-6 step changes no decision for these random inputs.
  struct Variant {
    const char* name;
    MoeConfig cfg;
    bool training;
  };
  std::vector<Variant> variants;
  {
    MoeConfig c = base_config(3, 2);
    c.router = RouterKind::expert_choice;
    c.cf_train = 1.5;
    variants.push_back({"expert_choice", c, true});
    c = base_config(3, 2);
    c.router = RouterKind::noisy_top_k;
    c.cf_train = 1.5;
    c.balance_coef = 0.5;
    variants.push_back({"noisy_top_k", c, true});
    c = base_config(3, 1);
    c.expert_ffn = FfnKind::relu;
    c.expert_bias = true;
    c.jitter = 0.1;
    c.z_coef = 0.1;
    variants.push_back({"top_1 relu bias jitter", c, true});
    c = base_config(3, 2);
    c.policy_train = SecondPolicy::threshold;
    c.batch_prioritized = true;
    c.balance = BalanceLoss::flaxformer_topk;
    c.balance_coef = 0.3;
    variants.push_back({"top_2 threshold bpr", c, true});
    c = base_config(4, 2);
    c.score = ScoreFunction::sigmoid;
    c.expert_groups = 2;
    c.route_groups = 1;
    c.balance = BalanceLoss::sequence;
    c.balance_coef = 0.3;
    c.shared_experts = 1;
    c.expert_ffn = FfnKind::geglu;
    c.cf_train = 2.0;
    variants.push_back({"top_2 sigmoid device-limited sequence-loss shared", c, true});
    c = base_config(3, 2);
    c.bias_balance_rate = 0.01;  // the bias moves selection only: its gradient is 0, as its finite difference
    c.cf_train = 1.5;
    variants.push_back({"top_2 balance bias", c, true});
  }
  for (const Variant& v : variants) {
    INFO(v.name);
    Graph g;
    Builder b(g);
    Expr x = b.input("x", {{"tokens", 6}, {"d_model", 4}});
    Expr target = b.input("r", {{"tokens", 6}, {"d_model", 4}});
    MoeContext ctx;
    ctx.training = v.training;
    ctx.step = b.input("step", {}, DType::i32);
    MoeConfig cfg = v.cfg;
    MoeLayer m;
    {
      ScopeGuard s(b, "moe");
      m = moe_layer(b, x, cfg, ctx);
    }
    b.set_loss(sum(m.y * target, {"tokens", "d_model"}) + m.aux_loss + m.z_loss);
    std::vector<ValueId> wrt{x.id};
    for (ValueId p : g.parameters()) wrt.push_back(p);
    const auto grads = gradients(g, wrt);
    verify(g);
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> u(-1, 1);
    std::map<ValueId, Tensor> leaves;
    for (const Value& val : g.values) {
      if (val.role == ValueRole::computed) continue;
      Tensor t(val.type);
      for (double& e : t.data) e = val.type.dtype == DType::i32 ? 2.0 : (val.name == "moe/experts/scale" ? 1.0 + 0.3 * u(rng) : u(rng));
      leaves[val.id] = t;
    }
    const auto vals = interpret(g, leaves, true);
    const auto loss_at = [&](const std::map<ValueId, Tensor>& l) { return interpret(g, l, true)[static_cast<size_t>(g.loss.v)].data[0]; };
    double worst = 0;
    for (ValueId w : wrt) {
      const Tensor& ad = vals[static_cast<size_t>(grads.at(w).v)];
      double norm = 0;
      for (double e : ad.data) norm += std::abs(e);
      // The gradient reaches every weight; the balance bias only moves the (discrete) selection.
      if (g.value(w).name == "moe/router/balance_bias") CHECK(norm == 0);
      else CHECK(norm > 0);
      for (size_t i = 0; i < ad.data.size(); ++i) {
        auto plus = leaves, minus = leaves;
        plus[w].data[i] += 1e-6;
        minus[w].data[i] -= 1e-6;
        const double fd = (loss_at(plus) - loss_at(minus)) / 2e-6;
        worst = std::max(worst, std::abs(ad.data[i] - fd) / std::max(1.0, std::abs(fd)));
      }
    }
    // Central differences in double: truncation ≈ h² ≈ 1e-12, cancellation ≈ 1e-16/h ≈ 1e-10.
    CHECK(worst < 1e-6);
  }
}

// ---- after ST-MoE: sigmoid scores, balance bias, device-limited routing, sequence loss, shared experts ----
