// Conformance cases for ops/collective.cpp. A single process is one device, so the harness runs
// collectives over mesh axes of size 1, where each is the identity (forward and gradient modes
// check exactly that) and moves nothing (collective_bytes 0). The costs over real group sizes,
// the shapes they produce and the refusal of the one-device forward are checked by hand below.
// Conventions (ops/collective.cpp): L = local input bytes, E its elements, N = group size;
// all_reduce sends 2(N−1)/N·L, all_gather (N−1)·L, reduce_scatter and all_to_all (N−1)/N·L.
#include "tests/ops/op_case.hpp"

#include "graph/error.hpp"
#include "graph/parallel/lower.hpp"
#include "ops/interpret.hpp"

#include <catch2/catch.hpp>

using namespace sy;
using namespace sy::test;
using Catch::Matchers::Contains;

namespace {

const Shape kX{{"batch", 2}, {"length", 3}, {"d_model", 4}};  // 24 elements
const std::vector<Dim> kOne{{"data", 1}};
const std::vector<Dim> kTwoOnes{{"data", 1}, {"model", 1}};

// Identity over size-1 axes: reads and writes the tensor once, sends nothing.
OpCost identity_cost(double elems, double bytes_per) { return OpCost{0, elems * bytes_per, elems * bytes_per, 0}; }

static RegisterCases reg({
    OpCase{OpKind::all_reduce, "all_reduce sum x=[batch=2, length=3, d_model=4] over data:1",
           [](Builder& b) { all_reduce(b.input("x", kX), kOne); }, nullptr, identity_cost(24, 4)},
    OpCase{OpKind::all_reduce, "all_reduce mean x=bf16[batch=2, length=3, d_model=4] over data:1,model:1",
           [](Builder& b) { all_reduce(b.input("x", kX, DType::bf16), kTwoOnes, ReduceOp::mean); }, nullptr,
           OpCost{24, 24 * 2, 24 * 2, 0}},  // mean: E divides
    OpCase{OpKind::all_gather, "all_gather x=[batch=2, length=3, d_model=4] along length over data:1",
           [](Builder& b) { all_gather(b.input("x", kX), kOne, "length"); }, nullptr, identity_cost(24, 4)},
    OpCase{OpKind::reduce_scatter, "reduce_scatter x=[batch=2, length=3, d_model=4] along d_model over data:1,model:1",
           [](Builder& b) { reduce_scatter(b.input("x", kX), kTwoOnes, "d_model"); }, nullptr, identity_cost(24, 4)},
    OpCase{OpKind::all_to_all, "all_to_all x=[batch=2, length=3, d_model=4] batch -> d_model over data:1",
           [](Builder& b) { all_to_all(b.input("x", kX), kOne, "batch", "d_model"); }, nullptr, identity_cost(24, 4)},
    OpCase{OpKind::shard_slice, "shard_slice x=[batch=2, length=3, d_model=4] along batch over data:1",
           [](Builder& b) { shard_slice(b.input("x", kX), kOne, "batch"); }, nullptr, identity_cost(24, 4)},
});

// Types and cost of one collective node built on x.
struct Built {
  TensorType out;
  OpCost cost;
};
template <typename F>
Built build(const TensorType& x, F&& f) {
  Graph g;
  Builder b(g);
  Expr y = f(b.input("x", x.shape, x.dtype));
  const Node& n = g.nodes.back();
  return {y.type(), op_def(n.kind).cost({x}, {y.type()}, n.attrs)};
}

}  // namespace

TEST_CASE("collectives over real groups: shapes and ring costs by hand", "[ops][collective]") {
  const TensorType x{{{"group", 8}, {"experts", 4}, {"d_model", 6}}, DType::bf16};  // 192 elements, L = 384 bytes
  const std::vector<Dim> data4{{"data", 4}};

  const Built ar = build(x, [&](Expr e) { return all_reduce(e, data4); });
  CHECK(ar.out == x);
  CHECK(ar.cost == OpCost{0.75 * 192, 384, 384, 2 * 0.75 * 384});

  const Built ag = build(x, [&](Expr e) { return all_gather(e, data4, "group"); });
  CHECK(ag.out.shape == Shape{{"group", 32}, {"experts", 4}, {"d_model", 6}});
  CHECK(ag.cost == OpCost{0, 384, 4 * 384, 3 * 384});

  const Built rs = build(x, [&](Expr e) { return reduce_scatter(e, data4, "group"); });
  CHECK(rs.out.shape == Shape{{"group", 2}, {"experts", 4}, {"d_model", 6}});
  CHECK(rs.cost == OpCost{0.75 * 192, 384, 96, 0.75 * 384});

  const Built a2a = build(x, [&](Expr e) { return all_to_all(e, data4, "group", "experts"); });
  CHECK(a2a.out.shape == Shape{{"group", 32}, {"experts", 1}, {"d_model", 6}});
  CHECK(a2a.cost == OpCost{0, 384, 384, 0.75 * 384});

  const Built sl = build(x, [&](Expr e) { return shard_slice(e, data4, "experts"); });
  CHECK(sl.out.shape == Shape{{"group", 8}, {"experts", 1}, {"d_model", 6}});
  CHECK(sl.cost == OpCost{0, 96, 96, 0});

  // Two axes at once: N = 4 · 2 = 8.
  const Built ar2 = build(x, [&](Expr e) { return all_reduce(e, {{"data", 4}, {"model", 2}}); });
  CHECK(ar2.cost.collective_bytes == Approx(2 * 7.0 / 8 * 384));
  // The one formula lower() and the planner share: OpDef::cost is OpDef::collective_cost over the
  // op's 4 devices.
  CHECK(op_def(OpKind::all_gather).collective_cost(4, ReduceOp::sum, 384, 192, 4 * 384) == ag.cost);
}

TEST_CASE("collectives refuse bad attributes and a one-device forward over several devices", "[ops][collective]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", kX);
  CHECK_THROWS_WITH(all_gather(x, {{"data", 2}}, "heads"), Contains("gather_dim 'heads' is not a dim of x"));
  CHECK_THROWS_WITH(shard_slice(x, {{"data", 2}}, "length"),
                    Contains("scatter_dim 'length' of size 3 does not divide over the 2 devices of axes data:2"));
  CHECK_THROWS_WITH(all_reduce(x, {}), Contains("no mesh axes given"));
  CHECK_THROWS_WITH(all_reduce(x, {{"data", 2}, {"data", 2}}), Contains("mesh axis 'data' is listed twice"));
  CHECK_THROWS_WITH(all_to_all(x, {{"data", 2}}, "batch", "batch"), Contains("gather_dim and scatter_dim are both 'batch'"));
  Expr y = all_reduce(x, {{"data", 2}});
  b.output("y", y);
  std::map<ValueId, Tensor> leaves{{x.id, Tensor(x.type())}};
  CHECK_THROWS_WITH(interpret(g, leaves), Contains("all_reduce over axes data:2 spans 2 devices, but the reference "
                                                   "forward runs one device"));
  CHECK(is_collective(OpKind::all_to_all));
  CHECK_FALSE(is_collective(OpKind::einsum));
}
