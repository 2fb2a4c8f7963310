// Parameter and FLOP counting from the graph, in total and per top-level scope.
#include "graph/models/count.hpp"

#include "graph/builder.hpp"
#include "graph/op_def.hpp"
#include "tests/graph/mlp_graph.hpp"

#include <catch2/catch.hpp>

using namespace sy;

TEST_CASE("count_graph: one einsum costs 2*B*D*F forward FLOPs", "[count]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 4}, {"d_model", 8}});       // [B, D]
  Expr w = b.parameter("w", {{"d_model", 8}, {"d_ff", 16}});   // [D, F]
  b.output("h", einsum(x, w, {"batch", "d_ff"}));               // [B, F]
  const GraphCounts c = count_graph(g);
  CHECK(c.nodes == 1);
  CHECK(c.forward_nodes == 1);
  CHECK(c.backward_nodes == 0);
  CHECK(c.values == 3);
  CHECK(c.inputs == 1);
  CHECK(c.parameter_tensors == 1);
  CHECK(c.parameters == 8 * 16);
  CHECK(c.forward_flops == 2.0 * 4 * 8 * 16);
  CHECK(c.total_flops == c.forward_flops);
  REQUIRE(c.by_scope.size() == 1);
  CHECK(c.by_scope[0].scope == "");
}

TEST_CASE("count_graph on the MLP: parameters, forward vs total FLOPs, split by scope", "[count]") {
  const Graph g = test::build_mlp();
  const GraphCounts c = count_graph(g);
  CHECK(c.parameters == 8 * 16 + 16 * 8);
  CHECK(c.parameter_tensors == 2);
  CHECK(c.inputs == 2);
  CHECK(c.nodes == static_cast<int64_t>(g.nodes.size()));
  CHECK(c.values == static_cast<int64_t>(g.values.size()));
  CHECK(c.forward_nodes + c.backward_nodes == c.nodes);
  CHECK(c.forward_nodes == 6);  // einsum, relu, einsum, sub, mul, reduce_mean
  CHECK(c.backward_nodes > 0);
  CHECK(c.total_flops > c.forward_flops);

  // The ffn scope's forward work: two matmuls of 2*B*D*F plus the relu's own cost.
  const TensorType h{{{"batch", 4}, {"d_ff", 16}}, DType::f32};
  const double relu_flops = op_def(OpKind::relu).cost({h}, {h}, NoAttrs{}).flops;
  REQUIRE(c.by_scope.size() >= 2);
  const ScopeCounts& ffn = c.by_scope[0];  // first: its parameters come before any node
  CHECK(ffn.scope == "ffn");
  CHECK(ffn.parameters == 256);
  CHECK(ffn.nodes > 3);  // forward and backward nodes of the ffn
  CHECK(ffn.forward_flops == 2 * (2.0 * 4 * 8 * 16) + relu_flops);
  CHECK(ffn.total_flops > ffn.forward_flops);
  const ScopeCounts& loss = c.by_scope[1];
  CHECK(loss.scope == "loss");
  CHECK(loss.parameters == 0);
  CHECK(loss.nodes >= 3);

  double forward = 0, total = 0;
  int64_t nodes = 0, params = 0;
  for (const ScopeCounts& s : c.by_scope) {
    forward += s.forward_flops;
    total += s.total_flops;
    nodes += s.nodes;
    params += s.parameters;
  }
  CHECK(forward == c.forward_flops);
  CHECK(total == c.total_flops);
  CHECK(nodes == c.nodes);
  CHECK(params == c.parameters);

  CHECK(parameter_count(g) == c.parameters);
  CHECK(forward_flops(g) == c.forward_flops);
  CHECK(total_flops(g) == c.total_flops);
}

TEST_CASE("top_level_scope takes the first path component", "[count]") {
  CHECK(top_level_scope("encoder/layer_0/ffn") == "encoder");
  CHECK(top_level_scope("loss") == "loss");
  CHECK(top_level_scope("") == "");
}
