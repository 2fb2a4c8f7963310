// verify(): a well-formed graph passes; each kind of damage is reported naming the node or value.
#include "graph/verify.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "tests/graph/mlp_graph.hpp"

#include <catch2/catch.hpp>

using namespace sy;
using Catch::Contains;

namespace {

// x [B=4, D=8] -> einsum w [D, F=16] -> relu -> h [B, F]. Nodes: 0 einsum, 1 relu.
// Values: 0 x, 1 w, 2 einsum out, 3 relu out.
Graph small_graph() {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 4}, {"d_model", 8}});
  Expr w = b.parameter("ffn/w", {{"d_model", 8}, {"d_ff", 16}});
  ScopeGuard s(b, "ffn");
  b.output("h", relu(einsum(x, w, {"batch", "d_ff"})));
  return g;
}

}  // namespace

TEST_CASE("verify accepts graphs built by the Builder", "[verify]") {
  CHECK_NOTHROW(verify(small_graph()));
  CHECK_NOTHROW(verify(test::build_mlp()));
  CHECK_NOTHROW(verify(Graph{}));
}

TEST_CASE("verify rejects value and node ids that differ from their index", "[verify]") {
  Graph g = small_graph();
  g.values[1].id = ValueId{7};
  CHECK_THROWS_WITH(verify(g), Contains("value at index 1 has id 7"));
  g = small_graph();
  g.nodes[1].id = NodeId{0};
  CHECK_THROWS_WITH(verify(g), Contains("node at index 1 has id 0"));
}

TEST_CASE("verify rejects an input id that does not exist, naming the node", "[verify]") {
  Graph g = small_graph();
  g.nodes[1].inputs[0] = ValueId{99};
  CHECK_THROWS_WITH(verify(g), Contains("node 1 (relu @ ffn): input 0 is value 99, which does not exist"));
  g.nodes[1].inputs[0] = ValueId{-3};
  CHECK_THROWS_AS(verify(g), InputError);
}

TEST_CASE("verify rejects inconsistent producer and output_index", "[verify]") {
  Graph g = small_graph();
  g.values[2].output_index = 1;  // einsum has one output
  CHECK_THROWS_WITH(verify(g), Contains("value 2: records itself as output 1 of node 0 (einsum @ ffn)"));

  g = small_graph();
  g.values[3].producer = NodeId{0};  // relu's output claims to come from the einsum
  CHECK_THROWS_WITH(verify(g), Contains("value 3: records itself as output 0 of node 0 (einsum @ ffn)"));

  g = small_graph();
  g.values[3].producer = NodeId{5};
  CHECK_THROWS_WITH(verify(g), Contains("producer node 5 does not exist"));

  g = small_graph();
  g.nodes[1].outputs[0] = ValueId{2};  // relu lists the einsum's output instead of its own
  CHECK_THROWS_WITH(verify(g), Contains("value 3: records itself as output 0 of node 1 (relu @ ffn), but that node's "
                                        "outputs are [2]"));

  g = small_graph();
  g.nodes[1].outputs.push_back(ValueId{2});  // relu also lists the einsum's output
  CHECK_THROWS_WITH(verify(g), Contains("node 1 (relu @ ffn): output 1 is value 2, but that value records producer node 0 "
                                        "output 0"));
}

TEST_CASE("verify rejects leaves with a producer, without a name or with a bad shape", "[verify]") {
  Graph g = small_graph();
  g.values[0].producer = NodeId{0};
  CHECK_THROWS_WITH(verify(g), Contains("value 0 'x': input leaf with producer node 0"));

  g = small_graph();
  g.values[1].name = g.values[0].name;  // "x"
  CHECK_THROWS_WITH(verify(g), Contains("leaf name is also used by value 0"));

  g = small_graph();
  g.values[1].name.clear();
  CHECK_THROWS_WITH(verify(g), Contains("value 1: parameter leaf without a name"));

  g = small_graph();
  g.values[0].type.shape[1].size = 0;
  CHECK_THROWS_WITH(verify(g), Contains("value 0 'x': dim 'd_model' has size 0"));

  g = small_graph();
  g.values[0].type.shape[1].name = "batch";
  CHECK_THROWS_WITH(verify(g), Contains("dim 'batch' appears twice"));

  g = small_graph();
  g.nodes[0].outputs.push_back(ValueId{1});  // a node also writing into a leaf
  CHECK_THROWS_WITH(verify(g), Contains("node 0 (einsum @ ffn): output 1 is value 1 'ffn/w', a parameter leaf"));
}

TEST_CASE("verify rejects graph outputs, loss and grad_of that name missing values", "[verify]") {
  Graph g = small_graph();
  g.outputs[0].value = ValueId{42};
  CHECK_THROWS_WITH(verify(g), Contains("graph output 'h' is value 42, which does not exist"));

  g = small_graph();
  g.loss = ValueId{42};
  CHECK_THROWS_WITH(verify(g), Contains("the loss is value 42, which does not exist"));

  g = small_graph();
  g.loss = ValueId{3};
  CHECK_THROWS_WITH(verify(g), Contains("the loss must be a float scalar"));

  g = small_graph();
  g.values[3].grad_of = ValueId{42};
  CHECK_THROWS_WITH(verify(g), Contains("grad_of names value 42"));

  g = small_graph();
  g.outputs.push_back(g.outputs[0]);
  CHECK_THROWS_WITH(verify(g), Contains("graph output name 'h' is used twice"));
}

TEST_CASE("verify rejects attributes of the wrong struct for the op kind", "[verify]") {
  Graph g = small_graph();
  g.nodes[0].attrs = NoAttrs{};
  CHECK_THROWS_WITH(verify(g), Contains("node 0 (einsum @ ffn): attributes are NoAttrs but einsum takes EinsumAttrs"));
}

TEST_CASE("verify finds a cycle with Boost.Graph and names the nodes on it", "[verify]") {
  // relu(einsum(x, w)) with the einsum's first input rewired to the relu's output:
  // node 0 (einsum) -> node 1 (relu) -> node 0.
  Graph g = small_graph();
  g.nodes[0].inputs[0] = ValueId{3};
  CHECK_THROWS_WITH(verify(g), Contains("cycle: node 0 (einsum @ ffn) -> node 1 (relu @ ffn) -> node 0 (einsum @ ffn)"));

  // A node that consumes its own output.
  g = small_graph();
  g.nodes[1].inputs[0] = ValueId{3};
  CHECK_THROWS_WITH(verify(g), Contains("cycle: node 1 (relu @ ffn) -> node 1 (relu @ ffn)"));
}

TEST_CASE("verify rejects nodes stored out of topological order", "[verify]") {
  // Two independent relus of x; make node 0 read node 1's output (no cycle, wrong order).
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 4}});
  relu(x);
  relu(x);
  g.nodes[0].inputs[0] = ValueId{2};
  CHECK_THROWS_WITH(verify(g), Contains("node 0 (relu): input 0 (value 2) is produced by node 1 (relu), which comes later"));
}

TEST_CASE("verify re-infers types and reports shape and dtype mismatches", "[verify]") {
  Graph g = small_graph();
  g.values[1].type.shape[0].size = 5;  // w [d_model=5, d_ff=16] no longer matches x [.., d_model=8]
  CHECK_THROWS_WITH(verify(g), Contains("node 0 (einsum @ ffn): with inputs (f32[batch=4, d_model=8], "
                                        "f32[d_model=5, d_ff=16]): ") &&
                                   Contains("d_model"));

  g = small_graph();
  g.values[3].type.shape[1].size = 17;
  CHECK_THROWS_WITH(verify(g), Contains("node 1 (relu @ ffn): output 0 (value 3) is stored as f32[batch=4, d_ff=17] "
                                        "but inputs (f32[batch=4, d_ff=16]) give f32[batch=4, d_ff=16]"));

  g = small_graph();
  g.values[3].type.dtype = DType::bf16;
  CHECK_THROWS_WITH(verify(g), Contains("is stored as bf16[batch=4, d_ff=16]"));

  g = small_graph();
  g.nodes[1].outputs.clear();
  g.values.pop_back();
  g.outputs.clear();
  CHECK_THROWS_WITH(verify(g), Contains("node 1 (relu @ ffn): has 0 outputs but relu"));
}
