// DOT export and SVG rendering: nested clusters per scope, leaves as ellipses, op-class fills,
// dashed backward nodes, and a Graphviz SVG with one node group per op and leaf.
#include "graph/dot.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/op_def.hpp"
#include "tests/graph/mlp_graph.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <string>

using namespace sy;
using Catch::Contains;

namespace {

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

// Brace depth of the DOT text at the first occurrence of `what` (the digraph itself is depth 1).
int depth_at(const std::string& dot, const std::string& what) {
  const size_t at = dot.find(what);
  REQUIRE(at != std::string::npos);
  int depth = 0;
  for (size_t i = 0; i < at; ++i) depth += dot[i] == '{' ? 1 : dot[i] == '}' ? -1 : 0;
  return depth;
}

// The statement line of DOT node `id` ("n3 [...]" or "v0 [...]").
std::string line_of(const std::string& dot, const std::string& id) {
  size_t p = 0;
  const std::string statement = fmt::format("{} [", id);
  while ((p = dot.find(statement, p)) != std::string::npos) {
    if (p == 0 || dot[p - 1] == ' ') return dot.substr(p, dot.find('\n', p) - p);
    ++p;
  }
  FAIL("no DOT statement for " << id);
  return {};
}

// Two layers of an encoder, each with an ffn, and a decoder: scopes
// encoder/layer_0/ffn, encoder/layer_1/ffn, decoder (six clusters with their prefixes).
Graph scoped_graph() {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 2}, {"d_model", 4}});
  for (int layer = 0; layer < 2; ++layer) {
    const std::string name = fmt::format("layer_{}", layer);
    Expr w = b.parameter(fmt::format("encoder/{}/ffn/w", name), {{"d_model", 4}, {"d_ff", 8}});
    Expr v = b.parameter(fmt::format("encoder/{}/ffn/v", name), {{"d_ff", 8}, {"d_model", 4}});
    ScopeGuard enc(b, "encoder");
    ScopeGuard lay(b, name);
    ScopeGuard ffn(b, "ffn");
    x = einsum(relu(einsum(x, w, {"batch", "d_ff"})), v, {"batch", "d_model"});
  }
  ScopeGuard dec(b, "decoder");
  b.output("y", scale(x, 0.5));
  return g;
}

}  // namespace

TEST_CASE("to_dot nests one cluster per scope prefix", "[dot]") {
  const std::string dot = to_dot(scoped_graph());
  CHECK(dot.starts_with("digraph switchyard {\n"));
  CHECK(count_of(dot, "subgraph cluster_") == 6);
  CHECK(count_of(dot, "label=\"encoder\";") == 1);
  CHECK(count_of(dot, "label=\"layer_0\";") == 1);
  CHECK(count_of(dot, "label=\"layer_1\";") == 1);
  CHECK(count_of(dot, "label=\"ffn\";") == 2);
  CHECK(count_of(dot, "label=\"decoder\";") == 1);
  // Depth: the digraph is 1, encoder's cluster 2, layer_0's 3, ffn's 4.
  CHECK(depth_at(dot, "label=\"encoder\";") == 2);
  CHECK(depth_at(dot, "label=\"layer_0\";") == 3);
  CHECK(depth_at(dot, "label=\"ffn\";") == 4);
  CHECK(depth_at(dot, "label=\"decoder\";") == 2);
  // Ops sit in their scope's cluster; parameters in the cluster of their name's prefix.
  CHECK(depth_at(dot, "n0 [label=\"einsum") == 4);
  CHECK(depth_at(dot, "v1 [label=\"encoder/layer_0/ffn/w") == 4);
  CHECK(depth_at(dot, "v0 [label=\"x") == 1);
}

TEST_CASE("to_dot draws leaves as ellipses and ops as boxes filled by op class", "[dot]") {
  const Graph g = scoped_graph();
  const std::string dot = to_dot(g);
  CHECK_THAT(line_of(dot, "v0"), Contains("shape=ellipse") && Contains("x\\nf32[batch=2, d_model=4]"));
  CHECK_THAT(line_of(dot, "n0"), Contains("shape=box") && Contains("einsum\\nf32[batch=2, d_ff=8]"));
  const std::string einsum_line = line_of(dot, "n0"), relu_line = line_of(dot, "n1");
  const std::string fill = "fillcolor=";
  CHECK(einsum_line.substr(einsum_line.find(fill)) != relu_line.substr(relu_line.find(fill)));
  CHECK(op_def(OpKind::einsum).op_class != op_def(OpKind::relu).op_class);
  // Graph outputs are named in their producer's label; one edge per node input.
  CHECK_THAT(line_of(dot, fmt::format("n{}", g.nodes.size() - 1)), Contains("-> y"));
  size_t inputs = 0;
  for (const Node& n : g.nodes) inputs += n.inputs.size();
  CHECK(count_of(dot, " -> n") == inputs);
  CHECK_THAT(dot, Contains("  v0 -> n0;\n") && Contains("  n0 -> n1;\n"));
}

TEST_CASE("to_dot draws backward nodes dashed", "[dot]") {
  const Graph g = test::build_mlp();
  size_t backward = 0;
  for (const Node& n : g.nodes) backward += n.backward ? 1 : 0;
  REQUIRE(backward > 0);
  const std::string dot = to_dot(g);
  CHECK(count_of(dot, "style=\"filled,dashed\"") == backward);
  CHECK(count_of(dot, "style=\"filled\"") == g.nodes.size() - backward);
}

TEST_CASE("to_dot escapes quotes and backslashes in names", "[dot]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("say \"hi\" \\ bye", {{"batch", 2}});
  b.output("y", relu(x));
  const std::string dot = to_dot(g);
  CHECK_THAT(dot, Contains(R"(label="say \"hi\" \\ bye\nf32[batch=2]")"));
  CHECK_NOTHROW(render_svg(dot));
}

TEST_CASE("render_svg lays the graph out with Graphviz", "[dot]") {
  const Graph g = scoped_graph();
  const std::string svg = render_svg(to_dot(g));
  CHECK(svg.starts_with("<?xml"));
  CHECK_THAT(svg, Contains("<svg"));
  const size_t leaves = g.parameters().size() + g.inputs().size();
  CHECK(count_of(svg, "class=\"node\"") == g.nodes.size() + leaves);
  CHECK(count_of(svg, "class=\"cluster\"") == 6);
  CHECK(count_of(svg, "class=\"edge\"") == count_of(to_dot(g), " -> n"));
}

TEST_CASE("render_svg rejects DOT text that does not parse", "[dot]") {
  // (Graphviz's line number is not reset between agmemread calls, so only the rest is checked.)
  CHECK_THROWS_WITH(render_svg("digraph {\n a -> ; }"),
                    Contains("render_svg: the DOT text does not parse: syntax error in line") && Contains("near ';'"));
}
