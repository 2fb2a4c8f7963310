// The executor as a whole: memory planning by liveness, outputs kept alive, leaves, threads,
// and a training graph (forward + autodiff backward) against the reference interpreter.
#include "exec_test_util.hpp"

#include "tests/graph/mlp_graph.hpp"
#include "executor/memory_plan.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"

#include <cstring>

namespace sy {
namespace {

// x [R=64, C=64] f32 (16 KiB) through `len` same-size elementwise ops.
Graph chain_graph(int len) {
  Graph g;
  Builder b(g);
  Expr h = b.input("x", {{"r", 64}, {"c", 64}});
  for (int i = 0; i < len; ++i) h = i % 2 ? relu(h) : scale(h, 1.01, -0.01);
  b.output("y", h);
  return g;
}

// A residual block with branches, so values of different sizes and lifetimes interleave:
//   x [B, T, D] -> two parallel FFN branches (D -> F -> D), softmax gate, residual sums.
Graph branchy_graph() {
  Graph g;
  Builder b(g);
  const Dim B{"b", 2}, T{"t", 8}, D{"d", 16}, F{"f", 48};
  Expr x = b.input("x", {B, T, D});
  Expr w1 = b.parameter("w1", {D, F});
  Expr w2 = b.parameter("w2", {F, D});
  Expr v1 = b.parameter("v1", {D, F});
  Expr v2 = b.parameter("v2", {F, D});
  Expr gate = b.parameter("gate", {T, D});
  Expr h1 = einsum(gelu(einsum(x, w1, {"b", "t", "f"})), w2, {"b", "t", "d"});  // [B, T, D]
  Expr h2 = einsum(relu(einsum(x, v1, {"b", "t", "f"})), v2, {"b", "t", "d"});  // [B, T, D]
  Expr p = softmax(x * gate, "d");                                               // [B, T, D]
  Expr y = x + p * h1 + (x - h2);                                                // [B, T, D]
  b.output("y", y);
  b.output("h2", h2);
  b.output("row_sum", sum(y, {"d"}));
  b.set_loss(mean(y * y, {"b", "t", "d"}));
  return g;
}

int64_t aligned(int64_t bytes) { return (bytes + exec::kArenaAlignment - 1) / exec::kArenaAlignment * exec::kArenaAlignment; }

// Replays a plan: no two blocks that are live at the same time overlap (in particular a node's
// outputs never overlap its inputs), and kept values stay live to the end.
void expect_plan_valid(const Graph& g, const exec::MemoryPlan& plan) {
  struct Block {
    int64_t begin, end;
    ValueId v;
  };
  std::vector<int32_t> last_use(g.values.size(), -1);
  for (const Node& n : g.nodes)
    for (ValueId v : n.inputs) last_use[static_cast<size_t>(v.v)] = n.id.v;
  std::vector<Block> live;
  for (const Node& n : g.nodes) {
    std::vector<Block> fresh;
    for (ValueId v : n.outputs) {
      const int64_t off = plan.value_offset[static_cast<size_t>(v.v)];
      REQUIRE(off >= 0);
      REQUIRE(off % exec::kArenaAlignment == 0);
      fresh.push_back({off, off + num_bytes(g.type(v)), v});
      REQUIRE(fresh.back().end <= plan.arena_bytes);
    }
    for (const Block& f : fresh)
      for (const Block& l : live) {
        INFO(g.describe(n.id) << ": value " << f.v.v << " overlaps live value " << l.v.v);
        CHECK((f.end <= l.begin || l.end <= f.begin));
      }
    live.insert(live.end(), fresh.begin(), fresh.end());
    std::erase_if(live, [&](const Block& b) {
      const size_t i = static_cast<size_t>(b.v.v);
      return !plan.kept[i] && last_use[i] <= n.id.v;
    });
  }
  for (const GraphOutput& o : g.outputs) {
    INFO("output " << o.name);
    CHECK(std::any_of(live.begin(), live.end(), [&](const Block& b) { return b.v == o.value; }));
  }
}

TEST_CASE("memory plan: a long chain of same-size ops needs two buffers", "[executor][memory]") {
  const Graph g = chain_graph(40);
  verify(g);
  Executor ex(g);
  const int64_t one = 64 * 64 * 4;
  CHECK(ex.memory().buffers == 40);
  CHECK(ex.memory().unplanned_bytes == 40 * one);
  CHECK(ex.memory().arena_bytes == 2 * one);  // the op's input and its output
  CHECK(ex.memory().leaf_bytes == one);
  expect_plan_valid(g, exec::plan_memory(g, std::vector<std::vector<int64_t>>(g.nodes.size())));
  test::expect_outputs_match(g, 1e-6, 0.0);
}

TEST_CASE("memory plan: live values never overlap and the arena is smaller than no reuse", "[executor][memory]") {
  const Graph g = branchy_graph();
  verify(g);
  const auto plan = exec::plan_memory(g, std::vector<std::vector<int64_t>>(g.nodes.size()));
  expect_plan_valid(g, plan);
  CHECK(plan.arena_bytes < plan.unplanned_bytes);
  int64_t biggest = 0;
  for (const Value& v : g.values)
    if (v.role == ValueRole::computed) biggest = std::max(biggest, aligned(num_bytes(v.type)));
  CHECK(plan.arena_bytes >= 2 * biggest);  // some op reads and writes a biggest-size value
}

TEST_CASE("memory plan: workspaces get blocks that live only during their node", "[executor][memory]") {
  const Graph g = chain_graph(6);
  std::vector<std::vector<int64_t>> ws(g.nodes.size());
  ws[2] = {100, 0, 5000};  // node 2 needs two temporaries
  const auto plan = exec::plan_memory(g, ws);
  REQUIRE(plan.workspace_offset[2].size() == 3);
  CHECK(plan.workspace_offset[2][1] == -1);
  const int64_t one = 64 * 64 * 4;
  for (size_t i : {size_t{0}, size_t{2}}) {
    const int64_t off = plan.workspace_offset[2][i], end = off + aligned(ws[2][i]);
    // Not on node 2's input or output.
    for (ValueId v : {g.nodes[2].inputs[0], g.nodes[2].outputs[0]}) {
      const int64_t vo = plan.value_offset[static_cast<size_t>(v.v)];
      CHECK((end <= vo || vo + one <= off));
    }
  }
  CHECK(plan.arena_bytes == 2 * one + aligned(100) + aligned(5000));
  CHECK(plan.unplanned_bytes == 6 * one + aligned(100) + aligned(5000));
}

TEST_CASE("executor with planning equals the reference interpreter", "[executor][memory]") {
  const Graph g = branchy_graph();
  SECTION("reference kernels on planned buffers: bit for bit") {
    ExecutorOptions opts;
    opts.fast_kernels = false;
    test::expect_outputs_match(g, 0.0, 0.0, opts);
  }
  SECTION("fast kernels on planned buffers") {
    test::expect_outputs_match(g, 3e-5, 0.0);  // einsum accumulates in f32 (see test_kernels.cpp)
  }
  SECTION("one thread") {
    ExecutorOptions opts;
    opts.threads = 1;
    test::expect_outputs_match(g, 3e-5, 0.0, opts);
  }
}

TEST_CASE("executor: a run in node ranges computes what one run does; a range that skips is refused",
          "[executor]") {
  const Graph g = branchy_graph();
  std::mt19937_64 rng(3);
  Executor whole(g), pieces(g);
  for (const Value& v : g.values)
    if (v.role != ValueRole::computed) {
      const Tensor t = test::random_tensor(v.type, rng);
      whole.set(v.id, t);
      pieces.set(v.id, t);
    }
  whole.run();
  const size_t n = g.nodes.size(), third = n / 3;
  pieces.run_nodes(0, third);
  pieces.run_nodes(third, third);  // empty: nothing runs
  pieces.run_nodes(third, 2 * third);
  pieces.run_nodes(2 * third, n);
  for (const GraphOutput& o : g.outputs) CHECK(pieces.get(o.value).data == whole.get(o.value).data);
  // Only from where the last call stopped (or a new run from 0), and within the graph.
  pieces.run_nodes(0, third);
  CHECK_THROWS_WITH(pieces.run_nodes(2 * third, n), Catch::Contains("from node") && Catch::Contains("stopped at"));
  CHECK_THROWS_WITH(pieces.run_nodes(third, n + 1), Catch::Contains("of " + std::to_string(n) + " nodes"));
}

TEST_CASE("executor runs a training graph (forward and backward) like the interpreter", "[executor]") {
  const Graph g = test::build_mlp();
  test::expect_outputs_match(g, 3e-5, 0.0);
  ExecutorOptions opts;
  opts.fast_kernels = false;
  test::expect_outputs_match(g, 0.0, 0.0, opts);
}

TEST_CASE("executor keeps graph outputs alive; other values are not readable", "[executor]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"r", 32}, {"c", 32}});
  Expr early = relu(x);               // an output produced first ...
  Expr hidden = scale(early, 2.0);    // ... and an intermediate that is not an output
  Expr h = hidden;
  for (int i = 0; i < 10; ++i) h = scale(h, 0.5, 0.1);  // ... then many same-size ops that could reuse their blocks
  b.output("early", early);
  b.set_loss(mean(h, {"r", "c"}));
  verify(g);

  const auto leaves = test::random_leaves(g, 11);
  const auto ref = interpret(g, leaves);
  Executor ex(g);
  ex.set(x.id, leaves.at(x.id));
  ex.run();
  CHECK(test::max_rel_err(ex.get(early.id), ref[static_cast<size_t>(early.id.v)]) == 0.0);
  CHECK(test::max_rel_err(ex.get(g.loss), ref[static_cast<size_t>(g.loss.v)]) <= 1e-6);
  CHECK(test::max_rel_err(ex.get(x.id), leaves.at(x.id)) == 0.0);
  CHECK(ex.data(early.id) != nullptr);
  CHECK_THROWS_AS(ex.get(hidden.id), InputError);
  CHECK_THROWS_AS(ex.data(hidden.id), InputError);
  // A second run gives the same results.
  ex.run();
  CHECK(test::max_rel_err(ex.get(early.id), ref[static_cast<size_t>(early.id.v)]) == 0.0);
}

TEST_CASE("executor leaves: set rounds to the dtype, data exposes storage, bad input is refused", "[executor]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 3}}, DType::bf16);
  Expr w = b.parameter("w", {{"n", 3}});
  Expr ids = b.input("ids", {{"n", 3}}, DType::i32);
  b.output("y", cast(x, DType::f32) + w);
  b.output("ids", ids);
  Executor ex(g);

  SECTION("a leaf never set") {
    Tensor tx(g.type(x.id));
    ex.set(x.id, tx);
    CHECK_THROWS_AS(ex.run(), InputError);
  }
  SECTION("set rounds to bf16, data() writes f32 storage") {
    Tensor tx(g.type(x.id));
    tx.data = {1.0 + 1.0 / 512, 2.0, -3.0};  // 1 + 2^-9 is not a bf16 number: rounds to 1
    ex.set(x.id, tx);
    const float wv[] = {0.5f, 0.25f, 0.125f};
    std::memcpy(ex.data(w.id), wv, sizeof wv);
    Tensor tids(g.type(ids.id));
    tids.data = {0, 7, -2};
    ex.set(ids.id, tids);
    ex.run();
    CHECK(ex.get(x.id).data == std::vector<double>{1.0, 2.0, -3.0});
    CHECK(ex.get(g.find_output("y").value()).data == std::vector<double>{1.5, 2.25, -2.875});
    CHECK(ex.get(ids.id).data == std::vector<double>{0, 7, -2});
    CHECK(static_cast<const int32_t*>(ex.data(ids.id))[1] == 7);
  }
  SECTION("wrong type, computed value, non-integer i32") {
    CHECK_THROWS_AS(ex.set(x.id, Tensor(TensorType{{{"n", 3}}, DType::f32})), InputError);
    CHECK_THROWS_AS(ex.set(x.id, Tensor(TensorType{{{"n", 4}}, DType::bf16})), InputError);
    CHECK_THROWS_AS(ex.set(g.find_output("y").value(), Tensor(TensorType{{{"n", 3}}, DType::f32})), InputError);
    Tensor tids(g.type(ids.id));
    tids.data = {0, 1.5, 2};
    CHECK_THROWS_AS(ex.set(ids.id, tids), InputError);
    CHECK_THROWS_AS(ex.set(ValueId{99}, tids), InputError);
  }
  SECTION("outputs are not readable before run") { CHECK_THROWS_AS(ex.get(g.find_output("y").value()), InputError); }
}

TEST_CASE("executor options: negative thread count is refused", "[executor]") {
  ExecutorOptions opts;
  opts.threads = -1;
  CHECK_THROWS_AS(Executor(chain_graph(2), opts), InputError);
}

}  // namespace
}  // namespace sy

namespace sy {
namespace {

// graph/cse.hpp in the executor: a node identical to an earlier one (same kind, inputs and
// attributes, possibly through earlier duplicates) does not run and gets no buffer; its readers
// and the graph outputs read the earlier node's value.
TEST_CASE("executor: readers that load either dtype read a bf16 value through its cast to f32", "[executor]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"r", 64}, {"c", 48}}, DType::bf16);
  Expr h = cast(einsum(x, b.input("w", {{"c", 48}, {"d", 40}}, DType::bf16), {"r", "d"}), DType::f32);
  Expr y = rms_norm(h, b.input("gain", {{"d", 40}}), "d") + softmax(h, "d") * h;  // h's cast does not run
  Expr k = cast(einsum(x, b.input("w2", {{"c", 48}, {"d", 40}}, DType::bf16), {"r", "d"}), DType::f32);
  Expr z = einsum(k, b.input("v", {{"d", 40}, {"e", 8}}), {"r", "e"});  // an einsum reads k: its cast runs
  b.output("y", y);
  b.output("z", z);
  // f32 kernels against the reference's double (softmax's exp polynomial: a few ulp): 1e-5.
  test::expect_outputs_match(g, 1e-5, 1e-5);
  const Executor ex(g);  // the plan is made at construction
  // 9 nodes (einsum, cast, rms_norm, softmax, mul, add, einsum, cast, einsum); every one places a
  // buffer but h's cast.
  REQUIRE(g.nodes.size() == 9);
  CHECK(ex.memory().buffers == 8);
}

TEST_CASE("executor CSE: identical nodes run once, their readers read the first", "[executor][cse]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"r", 64}, {"c", 48}});
  Expr step = b.input("step", {}, DType::i32);
  Expr c1 = cast(x, DType::bf16), c2 = cast(x, DType::bf16);                    // duplicates
  Expr e1 = exp(cast(c1, DType::f32)), e2 = exp(cast(c2, DType::f32));          // duplicates through c2
  Expr n1 = random_uniform(step, x.shape(), 0.0, 1.0, 5), n2 = random_uniform(step, x.shape(), 0.0, 1.0, 5);
  Expr other = random_uniform(step, x.shape(), 0.0, 1.0, 6);                     // another seed: not a duplicate
  b.output("e2", e2);
  b.output("sum", e1 + e2 + n1 * n2 + other);
  b.output("c2 (a duplicate as a graph output)", c2);
  verify(g);
  std::map<ValueId, Tensor> leaves = test::random_leaves(g, 3);
  leaves[step.id] = Tensor(g.type(step.id), 4.0);
  const auto ref = interpret(g, leaves);
  Executor ex(g);
  for (const auto& [id, t] : leaves) ex.set(id, t);
  ex.run();
  for (const GraphOutput& o : g.outputs) {
    INFO(o.name);
    // The fast exp is a polynomial within a few ulp of std::exp (f32 ulp 6e-8): 1e-6 relative.
    CHECK(test::max_rel_err(ex.get(o.value), ref[static_cast<size_t>(o.value.v)]) < 1e-6);
  }
  CHECK(test::max_rel_err(ex.get(c2.id), ref[static_cast<size_t>(c2.id.v)]) == 0.0);  // a cast is exact
  // 13 nodes: casts c1 c2, their casts back, two exps, three randoms, then mul and three adds;
  // the duplicates (c2, its cast back, e2, n2) place no buffer, nor does c1's cast back to f32,
  // which exp reads through (the executor's widening on load).
  REQUIRE(g.nodes.size() == 13);
  CHECK(ex.memory().buffers == 13 - 4 - 1);
  ExecutorOptions ref_opts;
  ref_opts.fast_kernels = false;  // the reference path runs every node
  Executor all(g, ref_opts);
  CHECK(all.memory().buffers == 13);
}

}  // namespace
}  // namespace sy
