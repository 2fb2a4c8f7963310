// Router library (graph/models/moe.hpp), the settings after ST-MoE (docs/formulas.md "After
// ST-MoE"): sigmoid scores, the balance bias, device-limited routing, the sequence-wise balance
// loss, shared experts, their config checks, and the router's bf16 round-off metrics. Hand-computed
// cases on the fixture of router_fixture.hpp, as in test_router.cpp.
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

TEST_CASE("router: sigmoid scores gate each chosen expert by its own score, renormalised over the top k", "[router]") {
  // Logits ln p, so the sigmoid score is p/(1+p):  t0 p = [.5 .3 .2] -> s = [1/3, 3/13, 1/6].
  //   top-2 {e0, e1}, gates (1/3)/(1/3 + 3/13) = 13/22 and 9/22 (softmax would give .625 .375).
  //   t1 p = [.1 .6 .3] -> s = [1/11, 3/8, 3/13]: top-2 {e1, e2}, gates (3/8)/(3/8 + 3/13) = 13/21, 8/21.
  // router_probs are the scores normalised over the experts: t0 [1/3, 3/13, 1/6] / (57/78).
  MoeConfig c = base_config(3, 2);
  c.score = ScoreFunction::sigmoid;
  c.cf_eval = 3.0;  // C = 2 = S: nothing dropped
  auto r = run(c, MoeContext{}, {{.5, .3, .2}, {.1, .6, .3}});
  // (t1's first choice e1 takes e1's slot 0 before t0's second choice.)
  CHECK(slots(*r, r->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 1, 1}, {1, 1, 0}, {1, 2, 0}});
  CHECK(combine_at(*r, 0, 0, 0) == Approx(13.0 / 22));
  CHECK(combine_at(*r, 0, 1, 1) == Approx(9.0 / 22));
  CHECK(combine_at(*r, 1, 1, 0) == Approx(13.0 / 21));
  CHECK(combine_at(*r, 1, 2, 0) == Approx(8.0 / 21));
  const std::vector<double> probs = r->vec(r->m.router_probs);
  CHECK(probs[0] == Approx((1.0 / 3) / (57.0 / 78)));
  CHECK(probs[2] == Approx((1.0 / 6) / (57.0 / 78)));
  // Entropy of the normalised scores, by hand for t0 and t1.
  auto h = [](std::vector<double> v) {
    double z = 0, e = 0;
    for (double x : v) z += x;
    for (double x : v) e -= x / z * std::log(x / z);
    return e;
  };
  CHECK(r->scalar(r->m.router_entropy) == Approx((h({1.0 / 3, 3.0 / 13, 1.0 / 6}) + h({1.0 / 11, 3.0 / 8, 3.0 / 13})) / 2));
}

TEST_CASE("router: the balance bias steers selection only, and moves by the sign rule", "[router]") {
  // E = 3, k = 1, bias b = [-.15, 0, .12] added to the softmax probabilities for the choice:
  //   t0 p = [.5 .3 .2]   -> [.35 .30 .32]: e0, gate .5 (the unbiased probability)
  //   t1 p = [.6 .3 .1]   -> [.45 .30 .22]: e0, gate .6
  //   t2 p = [.4 .35 .25] -> [.25 .35 .37]: e2 (without the bias: e0), gate .25
  //   t3 p = [.2 .5 .3]   -> [.05 .50 .42]: e1, gate .5
  // Loads [2 1 1]/4 = [.5 .25 .25], mean 1/3: e0 overloaded (bias − γ), e1, e2 under (bias + γ).
  MoeConfig c = base_config(3, 1);
  c.bias_balance_rate = 0.01;
  c.cf_train = 3.0;  // C = 4: nothing dropped
  MoeContext ctx;
  ctx.training = true;
  auto r = run(c, ctx, {{.5, .3, .2}, {.6, .3, .1}, {.4, .35, .25}, {.2, .5, .3}}, {.bias = {-0.15, 0.0, 0.12}});
  CHECK(slots(*r, r->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {1, 0, 1}, {2, 2, 0}, {3, 1, 0}});
  CHECK(combine_at(*r, 2, 2, 0) == Approx(0.25));
  CHECK(combine_at(*r, 1, 0, 1) == Approx(0.6));
  CHECK(r->vec(r->m.expert_load) == std::vector<double>{0.5, 0.25, 0.25});
  const std::vector<double> next = r->vec(r->m.balance_bias_next);
  REQUIRE(next.size() == 3);
  CHECK(next[0] == Approx(-0.16));
  CHECK(next[1] == Approx(0.01));
  CHECK(next[2] == Approx(0.13));
  // Balanced loads leave the bias as it is; evaluation builds no update.
  auto even = run(c, ctx, {{.5, .3, .2}, {.3, .5, .2}, {.2, .3, .5}}, {.bias = {0.0, 0.0, 0.0}});
  CHECK(even->vec(even->m.balance_bias_next) == std::vector<double>{0.0, 0.0, 0.0});
  auto eval = run(c, MoeContext{}, {{.5, .3, .2}}, {.bias = {0.0, 0.0, 0.0}});
  CHECK_FALSE(eval->m.balance_bias_next.id.valid());
}

TEST_CASE("router: device-limited routing picks the top-M expert groups, then top-k inside them", "[router]") {
  // E = 4 in 2 groups {e0 e1} {e2 e3}, M = 1, k = 2.
  //   t0 p = [.4 .05 .3 .25]: group bests .4, .3 -> group 0: e0, e1 (unlimited: e0, e2);
  //        gates .4/.45 = 8/9, .05/.45 = 1/9
  //   t1 p = [.1 .2 .4 .3]:   group bests .2, .4 -> group 1: e2, e3, gates 4/7, 3/7
  MoeConfig c = base_config(4, 2);
  c.expert_groups = 2;
  c.route_groups = 1;
  c.cf_eval = 4.0;  // C = 2 = S
  const Probs p{{.4, .05, .3, .25}, {.1, .2, .4, .3}};
  auto r = run(c, MoeContext{}, p);
  CHECK(slots(*r, r->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 1, 0}, {1, 2, 0}, {1, 3, 0}});
  CHECK(combine_at(*r, 0, 0, 0) == Approx(8.0 / 9));
  CHECK(combine_at(*r, 0, 1, 0) == Approx(1.0 / 9));
  CHECK(combine_at(*r, 1, 2, 0) == Approx(4.0 / 7));
  c.route_groups = 2;  // every group allowed: plain top-2
  auto all = run(c, MoeContext{}, p);
  CHECK(slots(*all, all->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 2, 1}, {1, 2, 0}, {1, 3, 0}});  // t0's 2nd choice after t1's 1st
}

TEST_CASE("router: group capacity of group dispatch (S·M/EG tokens per group, × CF)", "[router]") {
  MoeConfig c = base_config(8, 2);
  c.expert_groups = 4;
  c.route_groups = 2;
  c.group_dispatch = true;
  c.cf_train = 1.25;
  c.min_capacity = 1;
  CHECK(group_capacity(c, 64, true) == 40);  // ceil(1.25 · 64 · 2/4 = 40)
  CHECK(group_capacity(c, 10, true) == 7);   // ceil(6.25)
  c.cf_train = 10;
  CHECK(group_capacity(c, 10, true) == 10);  // never more than S: a token visits a group once
  c.min_capacity = 12;
  c.cf_train = 1.0;
  CHECK(group_capacity(c, 64, true) == 32);  // ceil(32) above min_capacity
  CHECK(group_capacity(c, 16, true) == 12);  // min_capacity
  c.dropless = true;
  CHECK(group_capacity(c, 37, true) == 37);
  c.dropless = false;
  c.route_groups = 0;
  CHECK_THAT(config_error(c), Catch::Contains("'group_dispatch' = true") && Catch::Contains("route_groups"));
}

TEST_CASE("router: group dispatch sends a token once to each expert group; a full group drops all its choices there",
          "[router]") {
  // E = 4 in 2 groups {e0 e1} {e2 e3}, M = 1, k = 2, S = 4, capacity ceil_k: C = ceil(2·1·4/4) = 2,
  // group capacity Cg = ceil(1·4·1/2) = 2.
  //   t0 p = [.4 .3 .2 .1]: group 0, e0 e1      t1 p = [.3 .4 .2 .1]: group 0, e1 e0
  //   t2 p = [.4 .3 .1 .2]: group 0, e0 e1      t3 p = [.1 .2 .4 .3]: group 1, e2 e3
  // Group slots: group 0 <- t0 (0), t1 (1), t2 (2: full, every choice of t2 dropped); group 1 <- t3 (0).
  // Expert slots of the rest: e0 <- t0 (0), t1 (1); e1 <- t1 (0), t0 (1); e2 <- t3; e3 <- t3.
  // (One-stage dispatch instead keeps t2 -> e0 and drops t1 -> e0 and t2 -> e1, both past C.)
  MoeConfig c = base_config(4, 2);
  c.expert_groups = 2;
  c.route_groups = 1;
  c.capacity = CapacityRule::ceil_k;
  c.cf_eval = 1.0;
  c.min_capacity = 1;
  c.group_dispatch = true;
  const Probs p{{.4, .3, .2, .1}, {.3, .4, .2, .1}, {.4, .3, .1, .2}, {.1, .2, .4, .3}};
  auto g = run(c, MoeContext{}, p);
  CHECK(slots(*g, g->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 1, 1}, {1, 0, 1}, {1, 1, 0}, {3, 2, 0}, {3, 3, 0}});
  CHECK(g->vec(g->m.fraction_dropped) == std::vector<double>{0.25, 0.25});
  const Tensor& y = g->at(g->m.y);
  CHECK(row_is_zero(y, 2));
  CHECK_FALSE(row_is_zero(y, 0));
  c.group_dispatch = false;
  auto one = run(c, MoeContext{}, p);
  CHECK(slots(*one, one->m.dispatch) == std::vector<Slot>{{0, 0, 0}, {0, 1, 1}, {1, 1, 0}, {2, 0, 1}, {3, 2, 0}, {3, 3, 0}});
  // Where both keep the same choices, the two stages give the one-stage layer's output.
  c.cf_eval = 4.0;  // C = 8 > S, Cg = 8 -> 4: nothing dropped by either
  c.group_dispatch = true;
  auto two = run(c, MoeContext{}, p);
  c.group_dispatch = false;
  auto ref = run(c, MoeContext{}, p);
  CHECK(two->vec(two->m.fraction_dropped) == std::vector<double>{0.0, 0.0});
  const std::vector<double> a = two->vec(two->m.y), b = ref->vec(ref->m.y);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(1e-12));
}

TEST_CASE("router: DeepSeek-V3 sequence-wise balance loss by hand", "[router]") {
  // E = 3, k = 2; top-2 sets: t0 {e0 e1}, t1 {e1 e2}, t2 {e2 e0}, t3 {e0 e1}.
  // One sequence of 4: f = (E/k)·[3 3 2]/4 = 1.5·[.75 .75 .5], P = [.35 .325 .325]:
  //   Σ f P = 1.5·(.2625 + .24375 + .1625) = 1.003125
  // Two sequences of 2: (t0 t1) f = 1.5·[.5 1 .5], P = [.3 .45 .25]: 1.5·.725 = 1.0875;
  //   (t2 t3) f = 1.5·[1 .5 .5], P = [.4 .2 .4]: 1.5·.7 = 1.05; mean 1.06875.
  const Probs p{{.5, .3, .2}, {.1, .6, .3}, {.2, .2, .6}, {.6, .2, .2}};
  MoeConfig c = base_config(3, 2);
  c.balance = BalanceLoss::sequence;
  auto one = run(c, MoeContext{}, p);
  CHECK(one->scalar(one->m.aux_loss_raw) == Approx(1.003125));
  auto two = run(c, MoeContext{}, p, {.sequences = 2});
  CHECK(two->scalar(two->m.aux_loss_raw) == Approx(1.06875));
}

TEST_CASE("router: shared experts add one always-on FFN of shared_experts·shared_d_ff units", "[router]") {
  // y(with shared) − y(without) = relu(x·wi)·wo for every token, dropped or not.
  MoeConfig c = base_config(3, 1);
  c.cf_eval = 1.0;  // C = 1: t1 is dropped by the routed experts, not by the shared ones
  const Probs p{{.6, .3, .1}, {.7, .2, .1}, {.2, .2, .6}};
  auto plain = run(c, MoeContext{}, p);
  c.shared_experts = 2;
  c.shared_d_ff = 2;
  auto shared = run(c, MoeContext{}, p);
  std::map<std::string, Tensor> w;
  for (const auto& [id, t] : shared->leaves) w[shared->g.value(id).name] = t;
  REQUIRE(w.count("moe/shared_experts/wi"));
  REQUIRE(w.at("moe/shared_experts/wi").shape() == Shape{{"d_model", 3}, {"d_ff", 4}});
  REQUIRE(w.at("moe/shared_experts/wo").shape() == Shape{{"d_ff", 4}, {"d_model", 3}});
  const Tensor& x = w.at("x");
  const std::vector<double> y0 = plain->vec(plain->m.y), y1 = shared->vec(shared->m.y);
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t d = 0; d < 3; ++d) {
      double want = 0;
      for (int64_t f = 0; f < 4; ++f) {
        double h = 0;
        for (int64_t i = 0; i < 3; ++i) h += x.data[t * 3 + i] * w.at("moe/shared_experts/wi").data[i * 4 + f];
        want += std::max(h, 0.0) * w.at("moe/shared_experts/wo").data[f * 3 + d];
      }
      CHECK(y1[t * 3 + d] - y0[t * 3 + d] == Approx(want).margin(1e-12));
    }
}

TEST_CASE("router: configs of the post-ST-MoE settings are checked", "[router]") {
  MoeConfig c = base_config(8, 2);
  c.expert_groups = 3;
  c.route_groups = 1;
  CHECK_THAT(config_error(c), Catch::Contains("'expert_groups' = 3") && Catch::Contains("a divisor of experts = 8"));
  c.expert_groups = 4;
  c.route_groups = 5;
  CHECK_THAT(config_error(c), Catch::Contains("'route_groups' = 5") && Catch::Contains("1..4"));
  c.route_groups = 1;
  c.k = 3;  // one group of 2 experts reachable
  CHECK_THAT(config_error(c), Catch::Contains("'k' = 3") && Catch::Contains("1..2"));
  c = base_config(8, 2);
  c.router = RouterKind::expert_choice;
  c.score = ScoreFunction::sigmoid;
  CHECK_THAT(config_error(c), Catch::Contains("'score'") && Catch::Contains("only with router top_k"));
  c = base_config(8, 2);
  c.bias_balance_rate = 2;
  CHECK_THAT(config_error(c), Catch::Contains("'bias_balance_rate' = 2") && Catch::Contains("[0, 1]"));
  c.bias_balance_rate = std::nan("");
  CHECK_THAT(config_error(c), Catch::Contains("bias_balance_rate"));
  c = base_config(8, 2);
  c.shared_experts = 65;
  CHECK_THAT(config_error(c), Catch::Contains("'shared_experts' = 65") && Catch::Contains("0..64"));
  CHECK(enum_allowed<ScoreFunction>() == "softmax, sigmoid");
}

TEST_CASE("router: bf16 round-off of the router softmax and top-1 flips by hand (ST-MoE §3)", "[router]") {
  // Logits [0, 0.001] and [0, 0.01] (E = 2, f32 router). In f32 the softmax is
  //   t0 [0.49975, 0.50025] (top-1 e1), t1 [0.4975, 0.5025] (top-1 e1).
  // In bf16 the logits round to 0.00099945068359375 and 0.010009765625 and the probabilities to
  // the nearest bf16 (spacing 2^-9 below 0.5, 2^-8 above):
  //   t0 [0.5, 0.5]: a tie, top-1 goes to e0 (a flip); round-off 0.50025 − 0.5 = 2.5001e-4
  //   t1 [0.498046875, 0.50390625]: top-1 still e1; round-off 0.50390625 − 0.5025 = 1.40625e-3
  // (numbers from an exact bf16 round-to-nearest-even of the f32 values).
  MoeConfig c = base_config(2, 1);
  auto r = run(c, MoeContext{}, {{1.0, std::exp(0.001)}, {1.0, std::exp(0.01)}}, {.exact = false});
  CHECK(r->scalar(r->m.softmax_roundoff) == Approx(0.001406252384185791).margin(1e-7));
  CHECK(r->scalar(r->m.top1_flip) == 0.5);
  CHECK(r->scalar(r->m.logit_mean_square) == Approx((0.001 * 0.001 + 0.01 * 0.01) / 4).epsilon(1e-5));
  const double lse0 = std::log(1 + std::exp(0.001)), lse1 = std::log(1 + std::exp(0.01));
  CHECK(r->scalar(r->m.logsumexp_mean) == Approx((lse0 + lse1) / 2).epsilon(1e-6));
  // Logits far apart: no round-off can flip the choice, and the metrics are outputs of the layer.
  auto far = run(c, MoeContext{}, {{0.9, 0.1}, {0.2, 0.8}}, {.exact = false});
  CHECK(far->scalar(far->m.top1_flip) == 0.0);
  CHECK(far->scalar(far->m.softmax_roundoff) < 4e-3);  // half a bf16 spacing (2^-8) at most
  for (const char* name : {"logit_mean_square", "logsumexp", "softmax_roundoff", "top1_flip"})
    CHECK(far->g.find_output(std::string("moe/metrics/") + name).has_value());
}
