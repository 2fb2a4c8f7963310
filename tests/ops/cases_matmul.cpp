// Conformance cases for ops/matmul.cpp (einsum), plus hand-computed values of the reference
// forward and the shape of its gradients. Costs by hand: flops = 2 × the product of the sizes of
// every distinct dim of a and b; bytes = a + b read, out written, at 4 bytes (f32) or 2 (bf16).
#include "tests/ops/op_case.hpp"

#include "graph/autodiff.hpp"
#include "graph/error.hpp"
#include "ops/interpret.hpp"

#include <catch2/catch.hpp>

using namespace sy;
using namespace sy::test;

namespace {

OpCase einsum_case(std::string repro, Shape a, Shape b, std::vector<std::string> out, DType t, OpCost cost,
                   double fwd_tol = 1e-6) {
  return OpCase{OpKind::einsum, std::move(repro),
                [a, b, out, t](Builder& bld) { einsum(bld.input("a", a, t), bld.input("b", b, t), out); }, nullptr, cost,
                fwd_tol};
}

// bf16 storage: oneDNN multiplies bf16 exactly into f32 and accumulates in f32, the reference in
// double; both round once to bf16, so they may land one bf16 ulp apart (2^-7 relative at most).
constexpr double kBf16Tol = 1.0 / 128;

static RegisterCases reg({
    einsum_case("einsum a=[b=3,k=4] b=[k=4,n=5] -> [b,n]",  // plain matmul
                {{"b", 3}, {"k", 4}}, {{"k", 4}, {"n", 5}}, {"b", "n"}, DType::f32,
                OpCost{2.0 * 3 * 4 * 5, (3 * 4 + 4 * 5) * 4, 3 * 5 * 4}),
    einsum_case("einsum a=[g=2,m=3,k=4] b=[g=2,k=4,n=5] -> [g,m,n]",  // batched
                {{"g", 2}, {"m", 3}, {"k", 4}}, {{"g", 2}, {"k", 4}, {"n", 5}}, {"g", "m", "n"}, DType::f32,
                OpCost{2.0 * 2 * 3 * 4 * 5, (2 * 3 * 4 + 2 * 4 * 5) * 4, 2 * 3 * 5 * 4}),
    einsum_case("einsum a=[m=3,h=2,d=4] b=[h=2,d=4,n=5] -> [m,n]",  // contraction over 2 dims
                {{"m", 3}, {"h", 2}, {"d", 4}}, {{"h", 2}, {"d", 4}, {"n", 5}}, {"m", "n"}, DType::f32,
                OpCost{2.0 * 3 * 2 * 4 * 5, (3 * 2 * 4 + 2 * 4 * 5) * 4, 3 * 5 * 4}),
    einsum_case("einsum a=[m=3,k=4,s=2] b=[k=4,n=5] -> [m,n] (s summed within a only)",
                {{"m", 3}, {"k", 4}, {"s", 2}}, {{"k", 4}, {"n", 5}}, {"m", "n"}, DType::f32,
                OpCost{2.0 * 3 * 4 * 2 * 5, (3 * 4 * 2 + 4 * 5) * 4, 3 * 5 * 4}),
    einsum_case("einsum a=[m=3,k=4] b=[t=2,k=4,n=5] -> [n,m] (t summed within b only, output transposed)",
                {{"m", 3}, {"k", 4}}, {{"t", 2}, {"k", 4}, {"n", 5}}, {"n", "m"}, DType::f32,
                OpCost{2.0 * 3 * 4 * 2 * 5, (3 * 4 + 2 * 4 * 5) * 4, 5 * 3 * 4}),
    einsum_case("einsum a=[m=3,k=4] b=[k=4,n=5] -> [n,m] (output transposed)",
                {{"m", 3}, {"k", 4}}, {{"k", 4}, {"n", 5}}, {"n", "m"}, DType::f32,
                OpCost{2.0 * 3 * 4 * 5, (3 * 4 + 4 * 5) * 4, 5 * 3 * 4}),
    einsum_case("einsum a=[k=4,m=3] b=[n=5,k=4] -> [m,n] (both inputs need a permutation)",
                {{"k", 4}, {"m", 3}}, {{"n", 5}, {"k", 4}}, {"m", "n"}, DType::f32,
                OpCost{2.0 * 4 * 3 * 5, (4 * 3 + 5 * 4) * 4, 3 * 5 * 4}),
    einsum_case("einsum a=[m=3] b=[n=4] -> [m,n] (outer product)",
                {{"m", 3}}, {{"n", 4}}, {"m", "n"}, DType::f32, OpCost{2.0 * 3 * 4, (3 + 4) * 4, 3 * 4 * 4}),
    einsum_case("einsum a=[m=3,k=4] b=[k=4,m=3] -> [] (full contraction)",
                {{"m", 3}, {"k", 4}}, {{"k", 4}, {"m", 3}}, {}, DType::f32, OpCost{2.0 * 3 * 4, (12 + 12) * 4, 4}),
    einsum_case("einsum a=bf16[b=3,k=4] b=bf16[k=4,n=5] -> [b,n]",
                {{"b", 3}, {"k", 4}}, {{"k", 4}, {"n", 5}}, {"b", "n"}, DType::bf16,
                OpCost{2.0 * 3 * 4 * 5, (3 * 4 + 4 * 5) * 2, 3 * 5 * 2}, kBf16Tol),
    einsum_case("einsum a=bf16[experts=2,capacity=3,d_model=8] b=bf16[experts=2,d_model=8,d_ff=4] -> [experts,capacity,d_ff]",
                {{"experts", 2}, {"capacity", 3}, {"d_model", 8}}, {{"experts", 2}, {"d_model", 8}, {"d_ff", 4}},
                {"experts", "capacity", "d_ff"}, DType::bf16,
                OpCost{2.0 * 2 * 3 * 8 * 4, (2 * 3 * 8 + 2 * 8 * 4) * 2, 2 * 3 * 4 * 2}, kBf16Tol),
});

}  // namespace

TEST_CASE("einsum: reference forward by hand (matmul, transposed output, dim summed in one input)", "[ops][matmul]") {
  Graph g;
  Builder b(g);
  Expr a = b.input("a", {{"m", 2}, {"k", 2}});            // [[1, 2], [3, 4]]
  Expr w = b.input("w", {{"k", 2}, {"n", 3}});            // [[1, 0, 2], [0, 1, 3]]
  Expr s = b.input("s", {{"m", 2}, {"k", 2}, {"t", 2}});  // t summed within s only
  Expr y = einsum(a, w, {"m", "n"});
  Expr yt = einsum(a, w, {"n", "m"});
  Expr ys = einsum(s, w, {"m", "n"});
  std::map<ValueId, Tensor> leaves;
  leaves[a.id] = Tensor(a.type());
  leaves[a.id].data = {1, 2, 3, 4};
  leaves[w.id] = Tensor(w.type());
  leaves[w.id].data = {1, 0, 2, 0, 1, 3};
  leaves[s.id] = Tensor(s.type());
  leaves[s.id].data = {1, 0, 0, 2, 3, 0, 0, 4};  // summed over t: [[1, 2], [3, 4]], as a
  const auto v = interpret(g, leaves);
  const std::vector<double> want{1, 2, 8, 3, 4, 18};  // [m, n]
  CHECK(v[static_cast<size_t>(y.id.v)].data == want);
  CHECK(v[static_cast<size_t>(yt.id.v)].shape() == Shape{{"n", 3}, {"m", 2}});
  CHECK(v[static_cast<size_t>(yt.id.v)].data == std::vector<double>{1, 3, 2, 4, 8, 18});
  CHECK(v[static_cast<size_t>(ys.id.v)].data == want);
}

TEST_CASE("einsum: gradients have the operands' shapes, broadcast along a dim only one operand had", "[ops][matmul]") {
  Graph g;
  Builder b(g);
  Expr a = b.parameter("a", {{"m", 3}, {"k", 4}, {"s", 2}});  // s summed within a only
  Expr w = b.parameter("w", {{"n", 5}, {"k", 4}});
  Expr y = einsum(a, w, {"n", "m"});
  b.set_loss(sum(y, {"n", "m"}));
  const auto grads = gradients(g);
  CHECK(g.type(grads.at(a.id)) == a.type());
  CHECK(g.type(grads.at(w.id)) == w.type());
  // da = broadcast(einsum(dy, w -> [m, k]), a's shape): the last node producing da is a broadcast.
  CHECK(g.node(g.value(grads.at(a.id)).producer).kind == OpKind::broadcast);
}

TEST_CASE("einsum: shape errors name the dim, the sizes and the operands", "[ops][matmul]") {
  Graph g;
  Builder b(g);
  Expr a = b.input("a", {{"m", 3}, {"k", 4}});
  CHECK_THROWS_WITH(einsum(a, b.input("b", {{"k", 5}, {"n", 2}}), {"m", "n"}),
                    Catch::Contains("dim 'k' has size 4 in a") && Catch::Contains("but 5 in b"));
  Expr w = b.input("w", {{"k", 4}, {"n", 2}});
  CHECK_THROWS_WITH(einsum(a, w, {"m", "vocab"}), Catch::Contains("output dim 'vocab' is in neither a"));
  CHECK_THROWS_WITH(einsum(a, w, {"m", "m"}), Catch::Contains("output dim 'm' is listed twice"));
  CHECK_THROWS_WITH(einsum(a, b.input("wb", {{"k", 4}, {"n", 2}}, DType::bf16), {"m", "n"}),
                    Catch::Contains("dtypes must match"));
  CHECK_THROWS_AS(einsum(b.input("ia", {{"m", 3}}, DType::i32), b.input("ib", {{"m", 3}}, DType::i32), {}), InputError);
}
