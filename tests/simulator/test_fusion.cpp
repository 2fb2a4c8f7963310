// XLA-style fusion in the simulator (simulator/fusion.hpp): what a fused group costs, which values
// are written to HBM, what never fuses, CSE, and that --no-fusion is the per-op pricing.
#include "graph/builder.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/trace_schema.hpp"
#include "graph/models/model_config.hpp"
#include "simulator/fusion.hpp"
#include "simulator/hardware.hpp"
#include "simulator/model_step.hpp"
#include "simulator/simulate.hpp"
#include "tests/simulator/sim_fixtures.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace sy;
using sy::test::op_of;

namespace {

Lowered one_device(const Graph& g, const std::string& mesh = "data:1") {
  Lowered L;
  L.graph = g;
  L.mesh = parse_mesh(mesh);
  return L;
}

HardwareSpec v4() { return load_hardware("tpu_v4", default_hardware_dir()); }

SimResult run(const Lowered& L, bool fusion) {
  SimOptions o;
  o.fusion = fusion;
  return simulate(L, v4(), o);
}

}  // namespace

TEST_CASE("fusion: a chain of three elementwise ops is one pass over HBM", "[simulator][fusion]") {
  // x -> exp -> scale -> relu -> out, 1M f32 elements: fused, 4 MB in and 4 MB out; alone, each of
  // the three ops reads and writes 4 MB (24 MB). Fails on per-op pricing (three ops, 24 MB).
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 1 << 20}});
  Expr a = exp(x);
  Expr s = scale(a, 2.0);
  Expr c = relu(s);
  b.output("c", c);
  const SimResult on = run(one_device(g), true), off = run(one_device(g), false);
  const double mb4 = 4.0 * (1 << 20);

  REQUIRE(on.fused.size() == 1);
  CHECK(on.fused[0].kinds == "exp+scale+relu");
  const SimOp& root = op_of(on, g, c.id);
  CHECK(root.fused == 0);
  CHECK(root.cost.bytes_read == mb4);
  CHECK(root.cost.bytes_written == mb4);
  CHECK(root.cost.flops == op_of(off, g, a.id).cost.flops + op_of(off, g, s.id).cost.flops + op_of(off, g, c.id).cost.flops);
  CHECK(op_of(on, g, a.id).duration == 0);
  CHECK(op_of(on, g, s.id).duration == 0);
  CHECK(on.step_time == Approx(root.duration));
  // One op's overhead and a third of the bytes.
  CHECK(on.fused[0].own_bytes == 6 * mb4);
  CHECK(on.step_time < off.step_time / 2);
  // Intermediates stay on chip; the input and the graph output are in HBM.
  const Fusion f = fuse(g);
  CHECK(f.materialised[static_cast<size_t>(x.id.v)]);
  CHECK(!f.materialised[static_cast<size_t>(a.id.v)]);
  CHECK(!f.materialised[static_cast<size_t>(s.id.v)]);
  CHECK(f.materialised[static_cast<size_t>(c.id.v)]);
  CHECK(on.materialised == f.materialised);
}

TEST_CASE("fusion: a value read outside its group is written out", "[simulator][fusion]") {
  const double mb4 = 4.0 * (1 << 20);
  SECTION("a graph output inside a chain (multi-output fusion)") {
    Graph g;
    Builder b(g);
    Expr x = b.input("x", {{"n", 1 << 20}});
    Expr a = exp(x);
    Expr c = relu(a);
    b.output("a", a);
    b.output("c", c);
    const SimResult on = run(one_device(g), true);
    REQUIRE(on.fused.size() == 1);
    const SimOp& root = op_of(on, g, c.id);
    CHECK(root.cost.bytes_read == mb4);
    CHECK(root.cost.bytes_written == 2 * mb4);  // a and c
    CHECK(on.materialised[static_cast<size_t>(a.id.v)]);
  }
  SECTION("a value with readers in two groups is not fused into either") {
    // a = exp(x) feeds relu (a loop) and sum (a reduction's group): a is materialised, relu and
    // the sum each read it from HBM.
    Graph g;
    Builder b(g);
    Expr x = b.input("x", {{"m", 1024}, {"n", 1024}});
    Expr a = exp(x);
    Expr c = relu(a);
    Expr s = sum(a, {"n"});
    b.output("c", c);
    b.output("s", s);
    const SimResult on = run(one_device(g), true);
    CHECK(on.fused.empty());
    CHECK(on.materialised[static_cast<size_t>(a.id.v)]);
    CHECK(op_of(on, g, c.id).cost.bytes_read == mb4);
  }
}

TEST_CASE("fusion: einsums take their operands and epilogue, reductions their input", "[simulator][fusion]") {
  SECTION("cast operands -> einsum -> cast -> relu: one kOutput fusion reading x and w in f32") {
    Graph g;
    Builder b(g);
    Expr x = b.input("x", {{"m", 256}, {"k", 512}});
    Expr w = b.parameter("w", {{"k", 512}, {"n", 1024}});
    Expr y = relu(cast(einsum(cast(x, DType::bf16), cast(w, DType::bf16), {"m", "n"}), DType::f32));
    b.output("y", y);
    const SimResult on = run(one_device(g), true);
    REQUIRE(on.fused.size() == 1);
    CHECK(on.fused[0].kinds == "cast+cast+einsum+cast+relu");
    const SimOp& mm = op_of(on, g, y.id);
    CHECK(mm.cost.bytes_read == 4.0 * (256 * 512 + 512 * 1024));
    CHECK(mm.cost.bytes_written == 4.0 * 256 * 1024);
    CHECK(mm.dtype == DType::bf16);  // the einsum's operands set the matmul peak
  }
  SECTION("exp -> sum -> scale: the sum takes exp as its input fusion but never fuses into scale") {
    Graph g;
    Builder b(g);
    Expr x = b.input("x", {{"m", 256}, {"n", 1024}});
    Expr e = exp(x);
    Expr s = sum(e, {"n"});
    Expr t = scale(s, 0.5);
    b.output("t", t);
    const SimResult on = run(one_device(g), true);
    REQUIRE(on.fused.size() == 1);
    CHECK(on.fused[0].kinds == "exp+reduce_sum");
    CHECK(op_of(on, g, t.id).fused == -1);
    CHECK(op_of(on, g, s.id).cost.bytes_read == 4.0 * 256 * 1024);
    CHECK(op_of(on, g, s.id).cost.bytes_written == 4.0 * 256);
  }
  SECTION("two einsums never share a group") {
    Graph g;
    Builder b(g);
    Expr x = b.input("x", {{"m", 64}, {"k", 64}});
    Expr w1 = b.parameter("w1", {{"k", 64}, {"n", 64}});
    Expr w2 = b.parameter("w2", {{"n", 64}, {"o", 64}});
    Expr h = einsum(relu(einsum(x, w1, {"m", "n"})), w2, {"m", "o"});
    b.output("h", h);
    const SimResult on = run(one_device(g), true);
    for (const FusedGroup& fg : on.fused)
      CHECK(std::count_if(fg.ops.begin(), fg.ops.end(), [&](int32_t m) { return on.ops[static_cast<size_t>(m)].kind == OpKind::einsum; }) <= 1);
  }
}

TEST_CASE("fusion: collectives never fuse, and nothing fuses across them", "[simulator][fusion]") {
  // a = x·2 -> r = all_reduce(a) -> d = relu(r) -> e = exp(d): only d and e fuse.
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 1000}});
  Expr a = scale(x, 2.0);
  Expr r = all_reduce(a, {{"data", 4}});
  Expr d = relu(r);
  Expr e = exp(d);
  b.output("e", e);
  const SimResult on = run(one_device(g, "data:4"), true);
  CHECK(op_of(on, g, a.id).fused == -1);
  CHECK(op_of(on, g, r.id).fused == -1);
  CHECK(op_of(on, g, r.id).collective);
  REQUIRE(on.fused.size() == 1);
  CHECK(on.fused[0].kinds == "relu+exp");
  CHECK(op_of(on, g, d.id).start >= op_of(on, g, r.id).end);
  for (const SimOp& op : on.ops) CHECK((op.stream == 0 || op.fused == -1));
}

TEST_CASE("fusion: identical casts of a parameter are priced once (CSE)", "[simulator][fusion]") {
  // Two uses of w, each with its own cast to bf16: XLA's CSE (hlo_cse) keeps one.
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"m", 64}, {"k", 128}});
  Expr w = b.parameter("w", {{"k", 128}, {"n", 256}});
  Expr xb = cast(x, DType::bf16);
  Expr c1 = cast(w, DType::bf16);
  Expr c2 = cast(w, DType::bf16);
  Expr y1 = einsum(xb, c1, {"m", "n"});
  Expr y2 = einsum(xb, c2, {"m", "n"});
  b.output("y", y1 + y2);
  const SimResult on = run(one_device(g), true), off = run(one_device(g), false);
  CHECK(op_of(on, g, c2.id).duplicate_of == g.value(c1.id).producer.v);
  CHECK(op_of(on, g, c2.id).duration == 0);
  CHECK(on.cse_duplicates == 2);  // the second cast and then the second einsum (same inputs now)
  CHECK(op_of(off, g, c2.id).duration > 0);
  CHECK(off.cse_duplicates == 0);
  // Without fusion or CSE both casts cost the same.
  CHECK(op_of(off, g, c2.id).duration == op_of(off, g, c1.id).duration);
}

TEST_CASE("fusion: --no-fusion is the per-op roofline; fusion lowers the step of a real model", "[simulator][fusion]") {
  const RunConfig c = parse_run_config(R"(
[model]
architecture = "decoder_only"
vocab = 512
d_model = 64
d_ff = 128
heads = 4
d_kv = 16
layers = 2
position_bias = false
[moe]
every = 2
experts = 8
k = 2
cf_train = 1.25
[train]
batch = 32
length = 64
precision = "bf16"
)",
                                       "fusion.toml");
  const Mesh mesh = parse_mesh("data:4,model:2");
  const Layout layout = parse_layout("batch:data,experts:data,d_ff:model", mesh);
  const TrainingStep step = build_training_step(c.model, c.train, {.mesh = mesh, .layout = layout});
  const Lowered L = lower(step.graph(), mesh, layout);
  const HardwareSpec hw = v4();
  const SimResult on = run(L, true), off = run(L, false);

  CHECK(off.fused.empty());
  CHECK(off.cse_duplicates == 0);
  CHECK(std::all_of(off.materialised.begin(), off.materialised.end(), [](bool m) { return m; }));
  for (const SimOp& op : off.ops) {
    if (op.collective) continue;
    const Node& n = L.graph.nodes[static_cast<size_t>(op.node)];
    std::vector<TensorType> in;
    for (ValueId v : n.inputs) in.push_back(L.graph.type(v));
    CHECK(op.cost == node_cost(L.graph, n));
    CHECK(op.duration == roofline(hw, n.kind, op.dtype, op.cost, is_broadcast(n.kind, in)).time);
  }
  CHECK(off.unfused_op_time == Approx(off.compute_bound + off.memory_bound));
  CHECK(on.unfused_op_time == Approx(off.unfused_op_time));

  CHECK(!on.fused.empty());
  CHECK(on.step_time < off.step_time);
  CHECK(on.memory_bound < off.memory_bound);
  // Fusion moves no flop away except the CSE'd duplicates'; communication is priced the same.
  CHECK(on.flops <= off.flops);
  CHECK(on.all_to_all == Approx(off.all_to_all));
  CHECK(on.all_reduce == Approx(off.all_reduce));
  // Every member of a group precedes its root, and the root starts after all members' inputs.
  for (const FusedGroup& fg : on.fused) {
    const SimOp& root = on.ops[static_cast<size_t>(fg.root())];
    for (int32_t m : fg.ops) {
      CHECK(m <= fg.root());
      if (m != fg.root()) CHECK(on.ops[static_cast<size_t>(m)].end <= root.start);
    }
  }
}
