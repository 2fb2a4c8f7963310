// simulator/memory: liveness in execution order on a hand-built graph, every figure by hand.
#include "graph/builder.hpp"
#include "simulator/memory.hpp"

#include <catch2/catch.hpp>

using namespace sy;

namespace {

// x (input) and w (parameter), 100 f32 = 400 B each:
//   node 0  a = x·w        forward
//   node 1  b = relu(a)    forward
//   node 2  c = relu(b)    backward (reads b: b is an activation)
//   node 3  d = c·a        backward (reads a: a is an activation); a graph output
struct Chain {
  Graph g;
  ValueId d;
};
Chain chain() {
  Chain c;
  Builder b(c.g);
  Expr x = b.input("x", {{"n", 100}});
  Expr w = b.parameter("w", {{"n", 100}});
  Expr a = x * w;
  Expr bb = relu(a);
  Expr cc = relu(bb);
  Expr d = cc * a;
  b.output("d", d);
  c.g.nodes[2].backward = true;
  c.g.nodes[3].backward = true;
  c.d = d.id;
  return c;
}

std::vector<double> bytes_of(const Graph& g) {
  std::vector<double> out;
  for (const Value& v : g.values) out.push_back(static_cast<double>(num_bytes(v.type)));
  return out;
}

}  // namespace

TEST_CASE("memory: the peak of live values in execution order, split by kind at the peak", "[simulator][memory]") {
  Chain c = chain();
  REQUIRE(c.g.nodes.size() == 4);
  const MemoryModel model(c.g);
  const MemoryUse m = model.evaluate(bytes_of(c.g), 1e9);
  CHECK(m.parameters == 400);
  CHECK(m.inputs == 400);
  CHECK(m.optimizer == 0);
  // Node 2 runs with a and b (activations) and c live: 1200 B, the peak (node 3 holds a, c, d:
  // also 1200, not more; b was freed after node 2).
  CHECK(m.activations == 800);
  CHECK(m.transient == 400);
  CHECK(m.gradients == 0);
  CHECK(m.total() == 2000);
  CHECK(m.fits());
  CHECK_FALSE(model.evaluate(bytes_of(c.g), 1999).fits());
}

TEST_CASE("memory: gradients, and weights for a reduced graph", "[simulator][memory]") {
  Chain c = chain();
  c.g.value(c.d).grad_of = c.g.find_leaf("w").value();  // d stands for w's gradient
  // Nodes 0 and 1 stand for 2 layers; node 3 for 3. Parameters weigh as their first reader (node
  // 0: 2), activations and gradients as their producer.
  const MemoryModel model(c.g, {}, {2, 2, 1, 3});
  const MemoryUse m = model.evaluate(bytes_of(c.g), 1e9);
  CHECK(m.parameters == 800);
  CHECK(m.inputs == 400);  // not weighted
  // Node 2: a, b (2 x 400 each) + c = 2000. Node 3 (b freed): a 800 + c 400 + d 3 x 400 = 2400.
  CHECK(m.activations == 800);
  CHECK(m.transient == 400);
  CHECK(m.gradients == 1200);
  CHECK(m.total() == 3600);
}

TEST_CASE("memory: an optimizer update runs as soon as its gradient exists (eager_update_order)", "[simulator][memory]") {
  // Forward a = x·w, r = relu(a); backward g_w = relu(r)·x, then s = broadcast(a) to 2x and
  // e = relu(s) stand for more backward work; the AdamW update of w (scope "optimizer/w") reads
  // g_w. Program order puts the update last; the eager order runs it right after g_w, so g_w is
  // freed before the larger backward values are written. Bytes: 400 per [n=100] f32, 800 for [n, m=2].
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 100}});
  Expr w = b.parameter("w", {{"n", 100}});
  Expr a = x * w;                                          // node 0
  Expr r = relu(a);                                        // node 1
  Expr gw = relu(r) * x;                                   // nodes 2, 3 (backward)
  Expr e = relu(broadcast(a, {{"n", 100}, {"m", 2}}));     // nodes 4, 5 (backward)
  {
    ScopeGuard scope(b, "optimizer/w");
    Expr m = b.input("optimizer/w/m", {{"n", 100}}), v = b.input("optimizer/w/v", {{"n", 100}});
    Expr lr = b.input("optimizer/lr", {}), step = b.input("step", {}, DType::i32), clip = b.input("clip", {});
    const std::vector<Expr> u = adamw_update(w, gw, {m, v}, lr, step, clip, AdamWAttrs{});  // node 6
    b.output("update/w", u[0]);
  }
  b.output("e", e);
  for (size_t i = 2; i < 7; ++i) g.nodes[i].backward = true;
  g.value(gw.id).grad_of = w.id;
  CHECK(eager_update_order(g) == std::vector<int32_t>{0, 1, 2, 3, 6, 4, 5});
  std::vector<double> bytes;
  for (const Value& v : g.values) bytes.push_back(static_cast<double>(num_bytes(v.type)));
  std::vector<int32_t> program(g.nodes.size());
  for (size_t i = 0; i < program.size(); ++i) program[i] = static_cast<int32_t>(i);
  // Program order: the peak is node 5 with g_w, s, e live = 400 + 800 + 800.
  const MemoryUse in_program = MemoryModel(g, program).evaluate(bytes, 1e9);
  CHECK(in_program.gradients == 400);
  CHECK(in_program.gradients + in_program.activations + in_program.transient == 2000);
  CHECK(in_program.peak_node == 5);
  // Eager (the default order): the update frees g_w first; the peak is node 5 with s, e = 1600.
  const MemoryUse eager = MemoryModel(g).evaluate(bytes, 1e9);
  CHECK(eager.gradients == 0);
  CHECK(eager.gradients + eager.activations + eager.transient == 1600);
}
