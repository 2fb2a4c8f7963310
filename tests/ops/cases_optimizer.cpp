// Conformance cases for ops/optimizer.cpp (forward: the TBB kernels against the double reference;
// gradient: none, autodiff must refuse; cost: the counts in the header of ops/optimizer.cpp), and
// hand-derived values of the reference updates.
#include "tests/ops/op_case.hpp"

#include "graph/error.hpp"
#include "ops/interpret.hpp"

#include <catch2/catch.hpp>

#include <cmath>

using namespace sy;
using namespace sy::test;

namespace {

// Leaves of an update: param and grad in [-1, 1], second moments in [0.01, 1] (they are means
// of squares), first moments in [-1, 1], lr in [0.01, 0.1], clip_scale in [0.5, 1], step 0..9.
Tensor update_input(const Value& v, std::mt19937_64& rng) {
  if (v.name == "step") return int_input(v, rng, 10);
  if (v.name == "lr") return uniform_input(v, rng, 0.01, 0.1);
  if (v.name == "clip_scale") return uniform_input(v, rng, 0.5, 1.0);
  if (v.name.starts_with("v")) return uniform_input(v, rng, 0.01, 1.0);
  return uniform_input(v, rng);
}

struct Scalars {
  Expr lr, step, clip;
};
Scalars scalars(Builder& b) {
  return {b.input("lr", {}), b.input("step", {}, DType::i32), b.input("clip_scale", {})};
}

// The adafactor_update node over a parameter of `shape` (factored state when attrs.factored and
// rank >= 2), its statistics given as leaves.
void build_adafactor(Builder& b, const Shape& shape, const AdafactorAttrs& a) {
  std::vector<ValueId> in;
  in.reserve(9);
  in.push_back(b.input("param", shape).id);
  in.push_back(b.input("grad", shape).id);
  if (a.factored && shape.size() >= 2) {
    Shape row = shape, col = shape;
    row.pop_back();
    col.erase(col.end() - 2);
    in.push_back(b.input("v_row", row).id);
    in.push_back(b.input("v_col", col).id);
  } else {
    in.push_back(b.input("v", shape).id);
  }
  in.push_back(b.input("lr", {}).id);
  in.push_back(b.input("clip_scale", {}).id);
  if (a.clip_threshold > 0) in.push_back(b.input("v_ms_u", {}).id);
  if (a.parameter_scale) in.push_back(b.input("v_ms_param", {}).id);
  b.op(OpKind::adafactor_update, a, in);
}

void build_adamw(Builder& b, const Shape& shape, const AdamWAttrs& a) {
  Expr p = b.input("param", shape);
  Expr g = b.input("grad", shape);
  std::vector<Expr> state{b.input("m", shape), b.input("v", shape)};
  const Scalars s = scalars(b);
  adamw_update(p, g, state, s.lr, s.step, s.clip, a);
}

constexpr double kScalarBytes = 3 * 4;  // lr, step, clip_scale

// adafactor_update flops 6 N + 2 S; bytes: param, grad and the S state elements read, param
// written, plus the scalars read (lr, clip_scale, RMS(u)² with clipping, RMS(param)² with
// parameter scaling).
OpCost adafactor_cost(double n, double state, double scalars) {
  return OpCost{6 * n + 2 * state, 4 * (2 * n + state + scalars), 4 * n};
}

AdafactorAttrs clipped() {
  AdafactorAttrs a;
  a.clip_threshold = 0.1;  // RMS(u) ~ 1 > 0.1: the clipping divides
  return a;
}
AdafactorAttrs unfactored_unscaled() {
  AdafactorAttrs a;
  a.factored = false;
  a.parameter_scale = false;
  return a;
}

static RegisterCases reg({
    OpCase{OpKind::adafactor_update, "adafactor_update param=[d_model=4, d_ff=6] factored (v_row/mean [4], v_col [6])",
           [](Builder& b) { build_adafactor(b, {{"d_model", 4}, {"d_ff", 6}}, {}); }, update_input,
           adafactor_cost(24, 4 + 6, 4), 1e-6, GradCheck::unsupported},
    OpCase{OpKind::adafactor_update,
           "adafactor_update param=[d_model=3, heads=2, d_kv=4] factored over the last two dims, clip_threshold=0.1",
           [](Builder& b) { build_adafactor(b, {{"d_model", 3}, {"heads", 2}, {"d_kv", 4}}, clipped()); }, update_input,
           adafactor_cost(24, 6 + 12, 4), 1e-6, GradCheck::unsupported},
    OpCase{OpKind::adafactor_update, "adafactor_update param=[d_model=5] (rank 1: unfactored)",
           [](Builder& b) { build_adafactor(b, {{"d_model", 5}}, {}); }, update_input, adafactor_cost(5, 5, 4), 1e-6,
           GradCheck::unsupported},
    OpCase{OpKind::adafactor_update,
           "adafactor_update param=[d_model=4, d_ff=3] factored=false parameter_scale=false",
           [](Builder& b) { build_adafactor(b, {{"d_model", 4}, {"d_ff", 3}}, unfactored_unscaled()); }, update_input,
           adafactor_cost(12, 12, 3), 1e-6, GradCheck::unsupported},
    // mean_square: (2 + k) N flops, plus N with a scale; every input read, the mean written.
    OpCase{OpKind::mean_square, "mean_square x=[d_model=4, d_ff=6] scale dims=[d_ff] (Adafactor's row statistic)",
           [](Builder& b) { mean_square(b.input("grad", {{"d_model", 4}, {"d_ff", 6}}), {"d_ff"}, b.input("clip_scale", {})); },
           update_input, OpCost{3 * 24, 4 * (24 + 1), 4 * 4}, 1e-6, GradCheck::unsupported},
    OpCase{OpKind::mean_square,
           "mean_square x=[d_model=3, heads=2, d_kv=4] scale, divisors [d_model, heads] and [d_model, d_kv], all dims "
           "(Adafactor's RMS(u)²)",
           [](Builder& b) {
             mean_square(b.input("grad", {{"d_model", 3}, {"heads", 2}, {"d_kv", 4}}), {"d_model", "heads", "d_kv"},
                         b.input("clip_scale", {}),
                         {b.input("v_row", {{"d_model", 3}, {"heads", 2}}), b.input("v_col", {{"d_model", 3}, {"d_kv", 4}})});
           },
           update_input, OpCost{5 * 24, 4 * (24 + 1 + 6 + 12), 4}, 1e-6, GradCheck::unsupported},
    OpCase{OpKind::mean_square, "mean_square x=[d_model=5] no scale, divisor [d_model], dims=[] (per element)",
           [](Builder& b) { mean_square(b.input("param", {{"d_model", 5}}), {}, Expr{}, {b.input("v", {{"d_model", 5}})}); },
           update_input, OpCost{3 * 5, 4 * 10, 4 * 5}, 1e-6, GradCheck::unsupported},
    // Rows longer than the fast kernel's 8 lanes (executor/train/optimizer_kernels.cpp), with a tail:
    // the lanes and the row factor must give the reference's mean.
    OpCase{OpKind::mean_square,
           "mean_square x=[d_model=3, d_ff=21] scale, divisors [d_model] and [d_ff], all dims (8 lanes and a tail)",
           [](Builder& b) {
             mean_square(b.input("grad", {{"d_model", 3}, {"d_ff", 21}}), {"d_model", "d_ff"}, b.input("clip_scale", {}),
                         {b.input("v_row", {{"d_model", 3}}), b.input("v_col", {{"d_ff", 21}})});
           },
           update_input, OpCost{5 * 63, 4 * (63 + 1 + 3 + 21), 4}, 1e-6, GradCheck::unsupported},
    OpCase{OpKind::mean_square,
           "mean_square x=[d_model=19, d_ff=11] scale, divisor [d_ff], dims=[d_model] (column sums, a column divisor)",
           [](Builder& b) {
             mean_square(b.input("grad", {{"d_model", 19}, {"d_ff", 11}}), {"d_model"}, b.input("clip_scale", {}),
                         {b.input("v_col", {{"d_ff", 11}})});
           },
           update_input, OpCost{4 * 209, 4 * (209 + 1 + 11), 4 * 11}, 1e-6, GradCheck::unsupported},
    // adafactor_moment: 4 flops per element; v, ms and step read, v' written.
    OpCase{OpKind::adafactor_moment, "adafactor_moment v=[d_model=4, d_ff=2]",
           [](Builder& b) {
             adafactor_moment(b.input("v", {{"d_model", 4}, {"d_ff", 2}}), b.input("v_ms", {{"d_model", 4}, {"d_ff", 2}}),
                              b.input("step", {}, DType::i32), AdafactorAttrs{});
           },
           update_input, OpCost{4 * 8, 4 * 16 + 4, 4 * 8}, 1e-6, GradCheck::unsupported},
    OpCase{OpKind::adamw_update, "adamw_update param=[d_model=4, d_ff=3] beta1=0.9 beta2=0.98 eps=1e-6 wd=0.1",
           [](Builder& b) { build_adamw(b, {{"d_model", 4}, {"d_ff", 3}}, AdamWAttrs{0.9, 0.98, 1e-6, 0.1}); },
           update_input, OpCost{17 * 12, 4 * 4 * 12 + kScalarBytes, 4 * 3 * 12}, 1e-6, GradCheck::unsupported},
});

// ---- reference values derived by hand ----

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
  std::vector<Tensor> run() { return interpret(g, leaves); }
};

}  // namespace

TEST_CASE("adafactor: with a rank-one g^2 the factored moments are exact and step 0 is scaled sign descent",
          "[optimizer]") {
  // g[r][c] = a_r * b_c, so g^2 is rank one: v_row = a^2 mean(b^2), v_col = b^2 mean(a^2), and
  // v_row v_col / mean(v_row) = a^2 b^2 = g^2 exactly (epsilon1 = 1e-30 is far below). At t = 0
  // the decay is 0, so u = g / |g| = sign(g), RMS(u) = 1 (clip_threshold 1 does nothing), and
  // param' = param - lr * max(RMS(param), 1e-3) * sign(g).
  Run r;
  const std::vector<double> a{0.5, -2.0}, bcol{1.0, -0.25, 3.0};
  std::vector<double> grad, param;
  for (double ar : a)
    for (double bc : bcol) grad.push_back(ar * bc);
  param = {0.1, -0.2, 0.3, 0.4, -0.5, 0.6};
  Expr p = r.in("param", {{"d_model", 2}, {"d_ff", 3}}, param);
  Expr g = r.in("grad", {{"d_model", 2}, {"d_ff", 3}}, grad);
  Expr vr = r.in("v_row", {{"d_model", 2}}, {7.0, 7.0});  // ignored at t = 0 (decay 0)
  Expr vc = r.in("v_col", {{"d_ff", 3}}, {7.0, 7.0, 7.0});
  Expr lr = r.in("lr", {}, {0.01});
  Expr step = r.in("step", {}, {0.0}, DType::i32);
  Expr clip = r.in("clip_scale", {}, {1.0});
  auto outs = adafactor_update(p, g, {vr, vc}, lr, step, clip, AdafactorAttrs{});
  const auto vals = r.run();
  double ss = 0;
  for (double x : param) ss += x * x;
  const double scale = 0.01 * std::sqrt(ss / 6);
  const Tensor& p_new = vals[static_cast<size_t>(outs[0].id.v)];
  for (size_t i = 0; i < param.size(); ++i) {
    const double want = param[i] - scale * (grad[i] > 0 ? 1.0 : -1.0);
    CHECK(p_new.data[i] == Approx(want).epsilon(1e-6));
  }
  const double mean_b2 = (1.0 + 0.0625 + 9.0) / 3, mean_a2 = (0.25 + 4.0) / 2;
  CHECK(vals[static_cast<size_t>(outs[1].id.v)].data[1] == Approx(4.0 * mean_b2).epsilon(1e-6));
  CHECK(vals[static_cast<size_t>(outs[2].id.v)].data[2] == Approx(9.0 * mean_a2).epsilon(1e-6));
}

TEST_CASE("adafactor: the moments decay by 1 - (t+1)^-0.8 and update clipping caps RMS(u) at d", "[optimizer]") {
  // Unfactored, one element per value: at t = 3 the decay is 1 - 4^-0.8. u = g / sqrt(v'), and
  // with d = 0.1 the clipped update has RMS 0.1 when RMS(u) > 0.1; no parameter scaling.
  Run r;
  Expr p = r.in("param", {{"d_model", 2}}, {1.0, 1.0});
  Expr g = r.in("grad", {{"d_model", 2}}, {0.5, -1.0});
  Expr v = r.in("v", {{"d_model", 2}}, {0.25, 4.0});
  Expr lr = r.in("lr", {}, {0.5});
  Expr step = r.in("step", {}, {3.0}, DType::i32);
  Expr clip = r.in("clip_scale", {}, {1.0});
  AdafactorAttrs a;
  a.clip_threshold = 0.1;
  a.parameter_scale = false;
  auto outs = adafactor_update(p, g, {v}, lr, step, clip, a);
  const auto vals = r.run();
  const double decay = 1.0 - std::pow(4.0, -0.8);
  const double v0 = decay * 0.25 + (1 - decay) * 0.25, v1 = decay * 4.0 + (1 - decay) * 1.0;
  CHECK(vals[static_cast<size_t>(outs[1].id.v)].data[0] == Approx(v0).epsilon(1e-6));
  CHECK(vals[static_cast<size_t>(outs[1].id.v)].data[1] == Approx(v1).epsilon(1e-6));
  const double u0 = 0.5 / std::sqrt(v0), u1 = -1.0 / std::sqrt(v1);
  const double rms_u = std::sqrt((u0 * u0 + u1 * u1) / 2);
  REQUIRE(rms_u > 0.1);
  const Tensor& p_new = vals[static_cast<size_t>(outs[0].id.v)];
  CHECK(p_new.data[0] == Approx(1.0 - 0.5 * u0 * 0.1 / rms_u).epsilon(1e-6));
  CHECK(p_new.data[1] == Approx(1.0 - 0.5 * u1 * 0.1 / rms_u).epsilon(1e-6));
}

TEST_CASE("adamw: step 0 moves each weight by lr against the gradient's sign, plus decoupled decay", "[optimizer]") {
  // m' = (1-β1) g, v' = (1-β2) g^2; bias correction gives m̂ = g, v̂ = g^2, so the step is
  // lr (g / (|g| + eps) + wd p). The gradient is scaled by clip_scale first.
  Run r;
  Expr p = r.in("param", {{"d_model", 3}}, {1.0, -2.0, 0.5});
  Expr g = r.in("grad", {{"d_model", 3}}, {0.2, -4.0, 1.0});
  Expr m = r.in("m", {{"d_model", 3}}, {0, 0, 0});
  Expr v = r.in("v", {{"d_model", 3}}, {0, 0, 0});
  Expr lr = r.in("lr", {}, {0.1});
  Expr step = r.in("step", {}, {0.0}, DType::i32);
  Expr clip = r.in("clip_scale", {}, {0.5});
  auto outs = adamw_update(p, g, {m, v}, lr, step, clip, AdamWAttrs{0.9, 0.999, 1e-8, 0.01});
  const auto vals = r.run();
  const std::vector<double> pv{1.0, -2.0, 0.5}, gv{0.2, -4.0, 1.0};
  for (size_t i = 0; i < 3; ++i) {
    const double gc = 0.5 * gv[i];
    CHECK(vals[static_cast<size_t>(outs[0].id.v)].data[i] ==
          Approx(pv[i] - 0.1 * (gc / (std::abs(gc) + 1e-8) + 0.01 * pv[i])).epsilon(1e-6));
    CHECK(vals[static_cast<size_t>(outs[1].id.v)].data[i] == Approx(0.1 * gc).epsilon(1e-6));
    CHECK(vals[static_cast<size_t>(outs[2].id.v)].data[i] == Approx(0.001 * gc * gc).epsilon(1e-6));
  }
}

TEST_CASE("optimizer updates refuse mismatched state, non-scalar lr and i32 params", "[optimizer]") {
  Graph g;
  Builder b(g);
  Expr p = b.input("param", {{"d_model", 4}, {"d_ff", 6}});
  Expr gr = b.input("grad", {{"d_model", 4}, {"d_ff", 6}});
  Expr vr = b.input("v_row", {{"d_model", 4}});
  Expr vc_wrong = b.input("v_col", {{"d_model", 4}});
  Expr lr = b.input("lr", {});
  Expr lr_vec = b.input("lr_vec", {{"d_model", 4}});
  Expr step = b.input("step", {}, DType::i32);
  Expr clip = b.input("clip_scale", {});
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(adafactor_update(p, gr, {vr, vc_wrong}, lr, step, clip, {}), Contains("state v_col"));
  CHECK_THROWS_WITH(adafactor_update(p, gr, {vr}, lr, step, clip, {}), Contains("expects 2 state tensors"));
  Expr m = b.input("m", {{"d_model", 4}, {"d_ff", 6}});
  Expr v = b.input("v", {{"d_model", 4}, {"d_ff", 6}});
  CHECK_THROWS_WITH(adamw_update(p, gr, {m, v}, lr_vec, step, clip, {}), Contains("lr must be f32 []"));
  Expr pi = b.input("param_i32", {{"d_model", 4}}, DType::i32);
  CHECK_THROWS_WITH(adafactor_update(pi, pi, {pi}, lr, step, clip, {}), Contains("param must be f32"));
}
