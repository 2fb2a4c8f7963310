// Conformance cases for ops/elementwise.cpp and ops/layout.cpp. Costs are counted by hand:
// elements × flops per element (conventions in ops/elementwise.cpp), bytes = inputs + outputs at
// their dtype size.
#include "tests/ops/op_case.hpp"

#include <fmt/format.h>

using namespace sy;
using namespace sy::test;

namespace {

const Shape kX{{"batch", 2}, {"length", 3}, {"d_model", 4}};  // 24 elements
const Shape kRow{{"d_model", 4}};                              // broadcast operand

OpCase binary(OpKind k, Shape b_shape, double flops_per_elem, std::function<Tensor(const Value&, std::mt19937_64&)> in = nullptr) {
  const double nb = static_cast<double>(num_elements(b_shape));
  OpCase c{k, fmt::format("{} a={} b={}", op_name(k), to_string(kX), to_string(b_shape)),
           [k, b_shape](Builder& b) {
             Expr a = b.input("a", kX);
             Expr bb = b.input("b", b_shape);
             b.op1(k, NoAttrs{}, {a.id, bb.id});
           },
           std::move(in), OpCost{24 * flops_per_elem, 24 * 4 + nb * 4, 24 * 4}};
  return c;
}

// `transcendental`: one exp, log, rsqrt or tanh per element (OpCost::transcendentals).
OpCase unary(OpKind k, double flops_per_elem, std::function<Tensor(const Value&, std::mt19937_64&)> in = nullptr,
             bool transcendental = false) {
  return OpCase{k, fmt::format("{} x={}", op_name(k), to_string(kX)),
                [k](Builder& b) { b.op1(k, NoAttrs{}, {b.input("x", kX).id}); }, std::move(in),
                OpCost{24 * flops_per_elem, 24 * 4, 24 * 4, 0, transcendental ? 24.0 : 0.0}};
}

// Values bounded away from 0 (kinks of relu, poles of div/log/rsqrt).
Tensor away_from_zero(const Value& v, std::mt19937_64& rng) {
  Tensor t = uniform_input(v, rng, 0.2, 1.0);
  std::bernoulli_distribution sign(0.5);
  for (double& x : t.data)
    if (sign(rng)) x = -x;
  return t;
}
Tensor positive(const Value& v, std::mt19937_64& rng) { return uniform_input(v, rng, 0.2, 2.0); }
// Greater: a and b differ by at least 0.1 everywhere so differences never flip a comparison.
Tensor separated(const Value& v, std::mt19937_64& rng) {
  Tensor t = uniform_input(v, rng, -1.0, 1.0);
  if (v.name == "b")
    for (double& x : t.data) x = 5.0;  // far from every a
  return t;
}

// Float leaves uniform; the i32 step scalar of random ops is 7.
Tensor with_step(const Value& v, std::mt19937_64& rng) {
  if (v.type.dtype != DType::i32) return uniform_input(v, rng);
  Tensor t(v.type);
  t.data[0] = 7;
  return t;
}

static RegisterCases reg({
    binary(OpKind::add, kX, 1),
    binary(OpKind::add, kRow, 1),
    binary(OpKind::sub, kRow, 1),
    binary(OpKind::mul, kX, 1),
    binary(OpKind::mul, Shape{{"length", 3}, {"batch", 2}}, 1),  // broadcast with reordered dims
    binary(OpKind::div, kRow, 1, [](const Value& v, std::mt19937_64& r) { return v.name == "b" ? away_from_zero(v, r) : uniform_input(v, r); }),
    OpCase{OpKind::greater, "greater a=[batch=2, length=3, d_model=4] b=[d_model=4] (b far above a)",
           [](Builder& b) { greater(b.input("a", kX), b.input("b", kRow)); }, separated, OpCost{24, 24 * 4 + 16, 24 * 4},
           1e-6, GradCheck::zero},
    OpCase{OpKind::where, "where cond=[batch=2, length=3] a=b=[batch=2, length=3, d_model=4]",
           [](Builder& b) {
             Expr c = b.input("cond", {{"batch", 2}, {"length", 3}});
             where(c, b.input("a", kX), b.input("b", kX));
           },
           [](const Value& v, std::mt19937_64& r) {
             Tensor t = uniform_input(v, r);
             if (v.name == "cond")
               for (double& x : t.data) x = x > 0 ? 1.0 : 0.0;
             return t;
           },
           OpCost{24, 6 * 4 + 24 * 4 * 2, 24 * 4}},
    OpCase{OpKind::scale, "scale x=[batch=2, length=3, d_model=4] factor=-1.5 offset=0.25",
           [](Builder& b) { scale(b.input("x", kX), -1.5, 0.25); }, nullptr, OpCost{48, 96, 96}},
    unary(OpKind::relu, 1, away_from_zero),
    OpCase{OpKind::relu_grad, "relu_grad x=dy=[batch=2, length=3, d_model=4]",
           [](Builder& b) { relu_grad(b.input("x", kX), b.input("dy", kX)); }, away_from_zero, OpCost{24, 192, 96}},
    unary(OpKind::gelu, 9, nullptr, true),
    OpCase{OpKind::gelu_grad, "gelu_grad x=dy=[batch=2, length=3, d_model=4] (no second order)",
           [](Builder& b) { gelu_grad(b.input("x", kX), b.input("dy", kX)); }, nullptr, OpCost{24 * 16, 192, 96, 0, 24}, 1e-6,
           GradCheck::unsupported},
    unary(OpKind::exp, 1, nullptr, true),
    unary(OpKind::log, 1, positive, true),
    unary(OpKind::rsqrt, 1, positive, true),
    OpCase{OpKind::cast, "cast x=f32[batch=2, length=3, d_model=4] -> bf16",
           [](Builder& b) { cast(b.input("x", kX), DType::bf16); }, nullptr, OpCost{0, 96, 48}},
    OpCase{OpKind::cast, "cast x=bf16[batch=2, length=3, d_model=4] -> f32",
           [](Builder& b) { cast(b.input("x", kX, DType::bf16), DType::f32); }, nullptr, OpCost{0, 48, 96}},
    // bf16 storage: the fast kernel computes in f32 and the reference in double, each rounding
    // once to bf16; the two may land one bf16 ulp apart (2^-8 relative).
    OpCase{OpKind::mul, "mul a=bf16[batch=2, length=3, d_model=4] b=bf16[d_model=4]",
           [](Builder& b) { b.input("a", kX, DType::bf16) * b.input("b", kRow, DType::bf16); }, nullptr,
           OpCost{24, 48 + 8, 48}, 1.0 / 128},
    OpCase{OpKind::dropout, "dropout x=[batch=2, length=3, d_model=4] step=i32[] rate=0.3 seed=11",
           [](Builder& b) { dropout(b.input("x", kX), b.input("step", {}, DType::i32), 0.3, 11); }, with_step,
           OpCost{24, 96, 96}},

    // ---- layout ----
    OpCase{OpKind::fill, "fill [batch=2, length=3] value=0.5",
           [](Builder& b) { fill(b, {{"batch", 2}, {"length", 3}}, 0.5); }, nullptr, OpCost{0, 0, 24}},
    OpCase{OpKind::random, "random uniform [batch=2, length=3] in [-0.5, 2) seed=3 step=i32[]",
           [](Builder& b) { random_uniform(b.input("step", {}, DType::i32), {{"batch", 2}, {"length", 3}}, -0.5, 2.0, 3); },
           with_step, OpCost{0, 0, 24}, 1e-6, GradCheck::zero},
    OpCase{OpKind::random, "random normal [batch=2, length=3] mean=1 std=0.5 seed=3 step=i32[]",
           [](Builder& b) { random_normal(b.input("step", {}, DType::i32), {{"batch", 2}, {"length", 3}}, 1.0, 0.5, 3); },
           with_step, OpCost{0, 0, 24}, 1e-6, GradCheck::zero},
    OpCase{OpKind::broadcast, "broadcast x=[d_model=4] -> [batch=2, length=3, d_model=4]",
           [](Builder& b) { broadcast(b.input("x", kRow), kX); }, nullptr, OpCost{0, 16, 96}},
    OpCase{OpKind::transpose, "transpose x=[batch=2, length=3, d_model=4] -> [d_model, batch, length]",
           [](Builder& b) { transpose(b.input("x", kX), {"d_model", "batch", "length"}); }, nullptr, OpCost{0, 96, 96}},
    OpCase{OpKind::reshape, "reshape x=[batch=2, length=3, d_model=4] -> [tokens=6, heads=2, d_kv=2]",
           [](Builder& b) { reshape(b.input("x", kX), {{"tokens", 6}, {"heads", 2}, {"d_kv", 2}}); }, nullptr,
           OpCost{0, 96, 96}},
    // An optimization barrier: x itself (the control input only orders it; no gradient reaches it),
    // and no work (an alias).
    OpCase{OpKind::after, "after x=[batch=2, length=3, d_model=4] control=[d_model=4]",
           [](Builder& b) { after(b.input("x", kX), b.input("c", kRow)); }, nullptr, OpCost{0, 0, 0}},
});

}  // namespace
