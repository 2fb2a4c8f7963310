// Mesh, layout and lowering (graph/mesh, graph/layout, graph/lower).
//
// The oracle for lowering is an SPMD reference run: the lowered program runs on every device of
// the mesh with the ops' reference forwards, the collectives done across the devices' tensors
// here; each graph output is then assembled from the devices' blocks (replicas must agree) and
// compared with the single-process run of the global graph.
#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/models/moe.hpp"
#include "graph/verify.hpp"
#include "ops/interpret.hpp"
#include "tests/common/moe_test_graph.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

using namespace sy;
using Catch::Matchers::Contains;

namespace {

// ---------------------------------------------------------------- SPMD reference run

int64_t group_size(const CollectiveAttrs& a) {
  int64_t n = 1;
  for (const Dim& d : a.axes) n *= d.size;
  return n;
}

// Block `index` of `count` along dim `dim` of t.
Tensor block(const Tensor& t, const std::string& dim, int64_t index, int64_t count) {
  const size_t p = *dim_index(t.shape(), dim);
  Shape s = t.shape();
  const int64_t full = s[p].size;
  const int64_t part = full / count;
  s[p].size = part;
  Tensor out(TensorType{s, t.dtype()});
  int64_t inner = 1;
  for (size_t i = p + 1; i < s.size(); ++i) inner *= s[i].size;
  int64_t outer = 1;
  for (size_t i = 0; i < p; ++i) outer *= s[i].size;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < part; ++j)
      for (int64_t i = 0; i < inner; ++i)
        out.data[static_cast<size_t>((o * part + j) * inner + i)] =
            t.data[static_cast<size_t>((o * full + index * part + j) * inner + i)];
  return out;
}

// Concatenation of `parts` along `dim`.
Tensor concat(const std::vector<Tensor>& parts, const std::string& dim) {
  const size_t p = *dim_index(parts[0].shape(), dim);
  Shape s = parts[0].shape();
  const int64_t part = s[p].size;
  const auto count = static_cast<int64_t>(parts.size());
  s[p].size = part * count;
  Tensor out(TensorType{s, parts[0].dtype()});
  int64_t inner = 1;
  for (size_t i = p + 1; i < s.size(); ++i) inner *= s[i].size;
  int64_t outer = 1;
  for (size_t i = 0; i < p; ++i) outer *= s[i].size;
  for (int64_t k = 0; k < count; ++k)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < part; ++j)
        for (int64_t i = 0; i < inner; ++i)
          out.data[static_cast<size_t>((o * part * count + k * part + j) * inner + i)] =
              parts[static_cast<size_t>(k)].data[static_cast<size_t>((o * part + j) * inner + i)];
  return out;
}

// The block of a global tensor a device holds.
Tensor device_block(const Tensor& global, const Sharding& s, const Mesh& mesh, const std::vector<int64_t>& coords) {
  Tensor t = global;
  for (size_t a = 0; a < mesh.axes.size(); ++a)
    if (s.dim[a] >= 0) t = block(t, global.shape()[static_cast<size_t>(s.dim[a])].name, coords[a], mesh.axes[a].size);
  return t;
}

struct SpmdRun {
  std::vector<std::vector<Tensor>> values;  // [device][lowered value]
};

SpmdRun run_spmd(const Lowered& L, const std::map<std::string, Tensor>& leaves) {
  const Mesh& mesh = L.mesh;
  const int64_t devices = mesh.devices();
  SpmdRun r;
  r.values.assign(static_cast<size_t>(devices), std::vector<Tensor>(L.graph.values.size()));
  for (const Value& v : L.graph.values) {
    if (v.role == ValueRole::computed) continue;
    const Tensor& global = leaves.at(v.name);
    for (int64_t d = 0; d < devices; ++d)
      r.values[static_cast<size_t>(d)][static_cast<size_t>(v.id.v)] =
          device_block(global, L.sharding[static_cast<size_t>(v.id.v)], mesh, mesh.coords(d));
  }
  for (const Node& n : L.graph.nodes) {
    const auto out_id = static_cast<size_t>(n.outputs.at(0).v);
    if (!is_collective(n.kind)) {
      for (int64_t d = 0; d < devices; ++d) {
        auto& vals = r.values[static_cast<size_t>(d)];
        std::vector<const Tensor*> in;
        for (ValueId v : n.inputs) in.push_back(&vals[static_cast<size_t>(v.v)]);
        std::vector<Tensor> outs;
        for (ValueId v : n.outputs) outs.emplace_back(L.graph.type(v));
        std::vector<Tensor*> out;
        for (Tensor& t : outs) out.push_back(&t);
        op_def(n.kind).forward(n.attrs, in, out, /*exact=*/true);
        for (size_t i = 0; i < n.outputs.size(); ++i) vals[static_cast<size_t>(n.outputs[i].v)] = std::move(outs[i]);
      }
      continue;
    }
    const auto& a = std::get<CollectiveAttrs>(n.attrs);
    const auto in_id = static_cast<size_t>(n.inputs.at(0).v);
    const int64_t count = group_size(a);
    for (int64_t d = 0; d < devices; ++d) {
      // The group: devices that differ from d only on the collective's axes, in row-major order.
      const auto coords = mesh.coords(d);
      std::vector<int64_t> members;
      int64_t me = 0;
      for (int64_t k = 0; k < count; ++k) {
        auto c = coords;
        int64_t rest = k;
        for (size_t i = a.axes.size(); i-- > 0;) {
          c[*mesh.axis_index(a.axes[i].name)] = rest % a.axes[i].size;
          rest /= a.axes[i].size;
        }
        const int64_t dev = mesh.device_at(c);
        if (dev == d) me = k;
        members.push_back(dev);
      }
      std::vector<Tensor> xs;
      for (int64_t m : members) xs.push_back(r.values[static_cast<size_t>(m)][in_id]);
      auto reduce_all = [&] {
        Tensor acc = xs[0];
        for (size_t k = 1; k < xs.size(); ++k)
          for (size_t i = 0; i < acc.data.size(); ++i)
            acc.data[i] = a.reduce == ReduceOp::max ? std::max(acc.data[i], xs[k].data[i]) : acc.data[i] + xs[k].data[i];
        if (a.reduce == ReduceOp::mean)
          for (double& x : acc.data) x /= static_cast<double>(count);
        return acc;
      };
      Tensor y;
      switch (n.kind) {
        case OpKind::all_reduce: y = reduce_all(); break;
        case OpKind::all_gather: y = concat(xs, a.gather_dim); break;
        case OpKind::reduce_scatter: y = block(reduce_all(), a.scatter_dim, me, count); break;
        case OpKind::all_to_all: {
          std::vector<Tensor> parts;
          for (const Tensor& x : xs) parts.push_back(block(x, a.scatter_dim, me, count));
          y = concat(parts, a.gather_dim);
          break;
        }
        case OpKind::shard_slice: y = block(xs[static_cast<size_t>(me)], a.scatter_dim, me, count); break;
        default: FAIL("not a collective");
      }
      REQUIRE(y.type == L.graph.type(n.outputs[0]));
      r.values[static_cast<size_t>(d)][out_id] = std::move(y);
    }
  }
  return r;
}

// The global tensor of a lowered value, assembled from the devices' blocks; every replica of a
// block must hold the same numbers.
Tensor assemble(const Lowered& L, const SpmdRun& r, ValueId v) {
  const Mesh& mesh = L.mesh;
  const Shape& global = L.global_shape[static_cast<size_t>(v.v)];
  const Sharding& s = L.sharding[static_cast<size_t>(v.v)];
  Tensor out(TensorType{global, L.graph.type(v).dtype});
  std::vector<bool> written(out.data.size(), false);
  const auto st = strides_of(global);
  for (int64_t d = 0; d < mesh.devices(); ++d) {
    const auto coords = mesh.coords(d);
    const Tensor& local = r.values[static_cast<size_t>(d)][static_cast<size_t>(v.v)];
    const Shape& ls = local.shape();
    const auto lst = strides_of(ls);
    std::vector<int64_t> offset(global.size(), 0);
    for (size_t a = 0; a < mesh.axes.size(); ++a)
      if (s.dim[a] >= 0) offset[static_cast<size_t>(s.dim[a])] = coords[a] * ls[static_cast<size_t>(s.dim[a])].size;
    for (int64_t e = 0; e < local.size(); ++e) {
      int64_t g = 0, rest = e;
      for (size_t i = 0; i < ls.size(); ++i) {
        const int64_t idx = rest / lst[i];
        rest %= lst[i];
        g += (idx + offset[i]) * st[i];
      }
      const auto gi = static_cast<size_t>(g);
      if (written[gi]) {
        REQUIRE(out.data[gi] == Approx(local.data[static_cast<size_t>(e)]).epsilon(1e-9).margin(1e-12));
      } else {
        out.data[gi] = local.data[static_cast<size_t>(e)];
        written[gi] = true;
      }
    }
  }
  REQUIRE(std::all_of(written.begin(), written.end(), [](bool w) { return w; }));
  return out;
}

std::map<std::string, Tensor> random_leaves(const Graph& g, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::map<std::string, Tensor> leaves;
  for (const Value& v : g.values) {
    if (v.role == ValueRole::computed) continue;
    Tensor t(v.type);
    for (double& x : t.data) x = v.type.dtype == DType::i32 ? 0.0 : u(rng);
    leaves.emplace(v.name, std::move(t));
  }
  return leaves;
}

// Lowers g onto mesh/layout, runs it on every device and checks every graph output against the
// single-process run. Returns the lowering for further checks.
Lowered check_spmd(const Graph& g, const std::string& mesh_text, const std::string& layout_text,
                   const std::map<std::string, Tensor>& leaves) {
  const Mesh mesh = parse_mesh(mesh_text);
  const Layout layout = parse_layout(layout_text, mesh);
  Lowered L = lower(g, mesh, layout);
  verify(L.graph);
  std::map<ValueId, Tensor> by_id;
  for (const Value& v : g.values)
    if (v.role != ValueRole::computed) by_id.emplace(v.id, leaves.at(v.name));
  const auto expected = interpret(g, by_id, /*exact=*/true);
  const SpmdRun run = run_spmd(L, leaves);
  REQUIRE(L.graph.outputs.size() == g.outputs.size());
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    INFO("output " << g.outputs[i].name << " on " << mesh_text << " with " << layout_text);
    const Tensor got = assemble(L, run, L.graph.outputs[i].value);
    const Tensor& want = expected[static_cast<size_t>(g.outputs[i].value.v)];
    REQUIRE(got.shape() == want.shape());
    for (size_t e = 0; e < want.data.size(); ++e) CHECK(got.data[e] == Approx(want.data[e]).epsilon(1e-9).margin(1e-9));
  }
  return L;
}

int count_kind(const Lowered& L, OpKind k) {
  return static_cast<int>(std::count_if(L.graph.nodes.begin(), L.graph.nodes.end(), [&](const Node& n) { return n.kind == k; }));
}

// x [batch=8, d_model=4] -> relu(x·w1 [d_model, d_ff=8]) · w2 [d_ff, d_model] -> mean of squares;
// with gradients.
Graph mlp() {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 8}, {"d_model", 4}});
  Expr w1 = b.parameter("w1", {{"d_model", 4}, {"d_ff", 8}});
  Expr w2 = b.parameter("w2", {{"d_ff", 8}, {"d_model", 4}});
  Expr h = relu(einsum(x, w1, {"batch", "d_ff"}));
  Expr y = einsum(h, w2, {"batch", "d_model"});
  Expr loss = mean(y * y, {"batch", "d_model"});
  b.output("y", y);
  b.output("loss", loss);
  b.set_loss(loss);
  gradients(g);
  return g;
}

}  // namespace

// ---------------------------------------------------------------- mesh and layout syntax

TEST_CASE("mesh parses NAME:SIZE lists and names what is wrong", "[lower]") {
  const Mesh m = parse_mesh("data:64,model:16");
  REQUIRE(m.axes.size() == 2);
  CHECK(m.axes[1] == MeshAxis{"model", 16});
  CHECK(m.devices() == 1024);
  CHECK(to_string(m) == "data:64,model:16");
  CHECK(m.coords(17) == std::vector<int64_t>{1, 1});
  CHECK(m.device_at({3, 5}) == 53);
  CHECK_THROWS_WITH(parse_mesh("data:0"), Contains("axis 'data' has size '0' (allowed: a positive integer)"));
  CHECK_THROWS_WITH(parse_mesh("data:4,data:2"), Contains("axis 'data' is listed twice"));
  CHECK_THROWS_WITH(parse_mesh("data=4"), Contains("entry 'data=4' has no ':'"));
  CHECK_THROWS_WITH(parse_mesh("Data:4"), Contains("axis name 'Data' is not allowed"));
  CHECK_THROWS_WITH(parse_mesh(""), Contains("is empty"));
  // The device count was an unchecked int64 product (signed overflow in devices(); found writing
  // tests/fuzz/fuzz_mesh_layout): at most kMaxMeshDevices, the largest mesh still accepted.
  CHECK_THROWS_WITH(parse_mesh("a:46341,b:46341"), Contains("axis 'b' of size 46341 makes more than"));
  CHECK_THROWS_WITH(parse_mesh("a:9223372036854775807,b:2"), Contains("axis 'a' of size 9223372036854775807"));
  CHECK(parse_mesh("a:2147483647").devices() == kMaxMeshDevices);
  CHECK_THROWS_WITH(parse_mesh("a:65536,b:32768"), Contains("at most 2147483647 devices"));
}

TEST_CASE("layout parses DIM:AXIS rules against a mesh", "[lower]") {
  const Mesh m = parse_mesh("data:4,model:2");
  const Layout l = parse_layout("batch:data, d_ff:model", m);
  REQUIRE(l.rules.size() == 2);
  CHECK(*l.axis_of("d_ff") == "model");
  CHECK(l.axis_of("heads") == nullptr);
  CHECK(to_string(l) == "batch:data,d_ff:model");
  CHECK(parse_layout("", m).rules.empty());
  CHECK_THROWS_WITH(parse_layout("batch:pipe", m), Contains("names mesh axis 'pipe', which mesh 'data:4,model:2' does "
                                                            "not have (axes: data, model)"));
  CHECK_THROWS_WITH(parse_layout("d_ff:model,d_ff:data", m),
                    Contains("dim 'd_ff' is mapped twice (d_ff:model and d_ff:data); a tensor dim maps to at most one "
                             "mesh axis"));
  CHECK_THROWS_WITH(parse_layout("batch", m), Contains("rule 'batch' is not DIM:AXIS"));
}

TEST_CASE("layout legality names the tensor, the dims and the rule broken", "[lower]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 6}, {"d_model", 4}});
  Expr w = b.parameter("ffn/w", {{"d_model", 4}, {"d_ff", 8}});
  b.output("h", einsum(x, w, {"batch", "d_ff"}));
  const Mesh m = parse_mesh("data:4,model:2");
  CHECK_NOTHROW(check_layout(g, m, parse_layout("d_ff:model,d_model:data", m)));
  CHECK_THROWS_WITH(check_layout(g, m, parse_layout("batch:data", m)),
                    Contains("tensor 'x' f32[batch=6, d_model=4]: dim 'batch' has size 6, which mesh axis 'data' of "
                             "size 4 does not divide (rule batch:data"));
  CHECK_THROWS_WITH(check_layout(g, m, parse_layout("d_model:model,d_ff:model", m)),
                    Contains("tensor 'ffn/w' f32[d_model=4, d_ff=8]: dims 'd_model' and 'd_ff' both map to mesh axis "
                             "'model' (rules d_model:model and d_ff:model; a mesh axis splits at most one dim of a tensor)"));
  CHECK_THROWS_WITH(check_layout(g, m, parse_layout("d_fff:model", m)),
                    Contains("rule 'd_fff:model' names dim 'd_fff', which no tensor of the graph has"));
  // The planner's fast check agrees.
  LoweringPlanner p(g, m);
  CHECK(p.legality(parse_layout("d_ff:model,d_model:data", m)).empty());
  CHECK_THAT(p.legality(parse_layout("batch:data", m)), Contains("does not divide"));
  CHECK_THAT(p.legality(parse_layout("d_model:model,d_ff:model", m)), Contains("both map to mesh axis"));
  // lower() refuses an illegal layout before doing anything.
  CHECK_THROWS_AS(lower(g, m, parse_layout("batch:data", m)), InputError);
}

// ---------------------------------------------------------------- lowering

TEST_CASE("lowering on a mesh of one device changes nothing but adds no-op collectives", "[lower]") {
  const Graph g = mlp();
  const Lowered L = check_spmd(g, "data:1,model:1", "batch:data,d_ff:model", random_leaves(g, 1));
  for (const Value& v : L.graph.values)
    CHECK(v.type.shape == L.global_shape[static_cast<size_t>(v.id.v)]);
}

TEST_CASE("data parallel MLP: all-reduce of parameter gradients over data", "[lower]") {
  const Graph g = mlp();
  const Lowered L = check_spmd(g, "data:4", "batch:data", random_leaves(g, 2));
  // Local shapes: x [batch=2, d_model=4]; the weights are replicated.
  CHECK(L.graph.type(*L.graph.find_leaf("x")).shape == Shape{{"batch", 2}, {"d_model", 4}});
  CHECK(L.graph.type(*L.graph.find_leaf("w1")).shape == Shape{{"d_model", 4}, {"d_ff", 8}});
  // One all-reduce per parameter gradient plus the loss mean; nothing else moves.
  CHECK(count_kind(L, OpKind::all_reduce) == 3);
  CHECK(count_kind(L, OpKind::all_gather) == 0);
  CHECK(count_kind(L, OpKind::all_to_all) == 0);
  int grad_reduces = 0;
  for (const CollectiveRecord& c : L.collectives) {
    const Node& n = L.graph.node(c.node);
    if (n.backward && n.kind == OpKind::all_reduce) ++grad_reduces;
    CHECK_THAT(c.reason, Contains("partial sums over data"));
  }
  CHECK(grad_reduces == 2);
}

TEST_CASE("model parallel MLP: all-reduce over model after the row-parallel matmul", "[lower]") {
  const Graph g = mlp();
  const Lowered L = check_spmd(g, "data:2,model:2", "batch:data,d_ff:model", random_leaves(g, 3));
  CHECK(L.graph.type(*L.graph.find_leaf("w1")).shape == Shape{{"d_model", 4}, {"d_ff", 4}});
  // Forward: y = h·w2 sums over d_ff (split over model).
  bool forward_model_reduce = false;
  for (const CollectiveRecord& c : L.collectives) {
    const Node& n = L.graph.node(c.node);
    const auto& a = std::get<CollectiveAttrs>(n.attrs);
    if (!n.backward && n.kind == OpKind::all_reduce && a.axes == std::vector<Dim>{{"model", 2}}) forward_model_reduce = true;
  }
  CHECK(forward_model_reduce);
  // Gradients of w1, w2 end split over model like their parameters.
  for (const GraphOutput& o : L.graph.outputs)
    if (o.name == "grad/w1") CHECK(L.graph.type(o.value).shape == Shape{{"d_model", 4}, {"d_ff", 4}});
}

TEST_CASE("a whole dim is gathered before the op that needs it", "[lower]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 4}, {"vocab", 6}});
  b.output("p", softmax(x, "vocab"));
  const Lowered L = check_spmd(g, "model:2", "vocab:model", random_leaves(g, 4));
  REQUIRE(count_kind(L, OpKind::all_gather) == 1);
  // The output stays whole (a consumer that wants vocab split slices it locally).
  CHECK(count_kind(L, OpKind::shard_slice) == 0);
}

TEST_CASE("reshape carries a leading split across (batch -> group)", "[lower]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 4}, {"length", 6}, {"d_model", 2}});
  Expr r = reshape(x, {{"group", 8}, {"group_size", 3}, {"d_model", 2}});
  b.output("s", sum(r * r, {"group_size"}));
  const Lowered L = check_spmd(g, "data:2", "batch:data", random_leaves(g, 5));
  CHECK(L.collectives.empty());
  CHECK(L.graph.type(L.graph.outputs[0].value).shape == Shape{{"group", 4}, {"d_model", 2}});
}

TEST_CASE("MoE layer with experts and batch on one axis: all-to-alls at dispatch and combine", "[lower]") {
  // x · scale: a parameter before the layer, so the gradient flows back through dispatch.
  test::MoeTestGraph o;
  o.batch = 4, o.length = 4, o.d_model = 4, o.d_ff = 6;
  o.batch_split = 2;
  const Graph g = test::moe_training_graph(o);
  auto leaves = random_leaves(g, 6);
  const Lowered L = check_spmd(g, "data:2", "batch:data,experts:data", leaves);
  // Forward: dispatch (group -> experts) and combine (experts -> group); backward: the same two
  // the other way.
  int fwd = 0, bwd = 0;
  std::string listing;
  for (const CollectiveRecord& c : L.collectives) {
    const Node& n = L.graph.node(c.node);
    listing += fmt::format("{} @ {}{} {} {}\n", op_name(n.kind), n.scope, n.backward ? " (backward)" : "", c.reason,
                           to_string(L.graph.type(n.inputs[0])));
  }
  INFO(listing);
  for (const CollectiveRecord& c : L.collectives) {
    const Node& n = L.graph.node(c.node);
    if (n.kind != OpKind::all_to_all) continue;
    CHECK_THAT(n.scope, Contains("moe"));
    (n.backward ? bwd : fwd)++;
  }
  CHECK(fwd == 2);
  CHECK(bwd == 2);
  // The expert weights are split over data, the router weight's gradient reduce-scattered.
  CHECK(L.graph.type(*L.graph.find_leaf("moe/experts/wo")).shape[0] == Dim{"experts", 2});
  // The same layout with model parallelism on top.
  check_spmd(g, "data:2,model:2", "batch:data,experts:data,d_ff:model", leaves);
}

TEST_CASE("the planner reports what lower() emits, with the same costs", "[lower]") {
  const Graph g = mlp();
  const Mesh mesh = parse_mesh("data:2,model:2");
  for (const char* text : {"batch:data", "batch:data,d_ff:model", "d_ff:data,d_model:model", ""}) {
    INFO(text);
    const Layout layout = parse_layout(text, mesh);
    const Lowered L = lower(g, mesh, layout);
    double flops = 0, bytes = 0, comm = 0;
    int collectives = 0;
    for (const Node& n : L.graph.nodes) {
      std::vector<TensorType> in, out;
      for (ValueId v : n.inputs) in.push_back(L.graph.type(v));
      for (ValueId v : n.outputs) out.push_back(L.graph.type(v));
      const OpCost c = op_def(n.kind).cost(in, out, n.attrs);
      flops += c.flops;
      bytes += c.bytes_read + c.bytes_written;
      comm += c.collective_bytes;
      collectives += is_collective(n.kind) ? 1 : 0;
    }
    struct Sum : PlanVisitor {
      double flops = 0, bytes = 0, comm = 0;
      int collectives = 0;
      void node(NodeId, const OpCost& c, uint32_t) override {
        flops += c.flops;
        bytes += c.bytes_read + c.bytes_written;
      }
      void collective(const PlannedCollective& c) override {
        flops += c.cost.flops;
        bytes += c.cost.bytes_read + c.cost.bytes_written;
        comm += c.cost.collective_bytes;
        ++collectives;
      }
    } s;
    LoweringPlanner planner(g, mesh);
    planner.plan(layout, s);
    planner.plan(layout, s = Sum{});  // the memoized second run reports the same
    CHECK(s.flops == Approx(flops));
    CHECK(s.bytes == Approx(bytes));
    CHECK(s.comm == Approx(comm));
    CHECK(s.collectives == collectives);
  }
}

TEST_CASE("bf16 partial sums of parameter gradients are all-reduced in f32", "[lower]") {
  // x, w in bf16 (a bf16 model's parameters): dw = einsum(x, dy) sums over the batch (split over
  // data), so its partial sums are reduced, in f32 (ST-MoE), between two casts.
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 8}, {"d_model", 4}}, DType::bf16);
  Expr w = b.parameter("w", {{"d_model", 4}, {"d_ff", 8}}, DType::bf16);
  Expr y = cast(einsum(x, w, {"batch", "d_ff"}), DType::f32);
  Expr loss = mean(y * y, {"batch", "d_ff"});
  b.set_loss(loss);
  gradients(g);
  const Mesh mesh = parse_mesh("data:2");
  const Lowered L = lower(g, mesh, parse_layout("batch:data", mesh));
  verify(L.graph);
  int f32_grad_reduces = 0;
  for (const CollectiveRecord& c : L.collectives) {
    const Node& n = L.graph.node(c.node);
    if (n.kind != OpKind::all_reduce || !n.backward) continue;
    const TensorType& t = L.graph.type(n.inputs[0]);
    if (t.shape == Shape{{"d_model", 4}, {"d_ff", 8}}) {
      CHECK(t.dtype == DType::f32);
      const Node& before = L.graph.node(L.graph.value(n.inputs[0]).producer);
      CHECK(before.kind == OpKind::cast);
      ++f32_grad_reduces;
    }
  }
  CHECK(f32_grad_reduces == 1);
  for (const GraphOutput& o : L.graph.outputs)
    if (o.name == "grad/w") CHECK(L.graph.type(o.value).dtype == DType::bf16);
  // Without the option the reduction runs in bf16.
  LowerOptions opts;
  opts.f32_gradient_reduce = false;
  const Lowered plain = lower(g, mesh, parse_layout("batch:data", mesh), opts);
  for (const Node& n : plain.graph.nodes)
    if (n.kind == OpKind::all_reduce && plain.graph.type(n.inputs[0]).shape.size() == 2)
      CHECK(plain.graph.type(n.inputs[0]).dtype == DType::bf16);
}

TEST_CASE("a planner reused over many layouts reports what a fresh one does", "[lower]") {
  // The planner caches each node's plan under what the plan reads; a sweep reuses it across
  // layouts. Every layout of five dims on data:2,model:2, planned by one reused planner and by a
  // fresh planner per layout, in two different orders: the reports must agree exactly.
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 4}, {"length", 4}, {"d_model", 4}}) * b.parameter("scale", {{"d_model", 4}});
  MoeConfig cfg;
  cfg.experts = 4;
  cfg.policy_train = SecondPolicy::all;
  cfg.d_ff = 8;
  cfg.min_capacity = 1;
  cfg.group_size = 4;
  MoeContext ctx;
  ctx.training = true;
  ctx.batch_split = 2;
  ctx.output_metrics = false;
  MoeLayer m = moe_layer(b, x, cfg, ctx);
  Expr loss = mean(m.y * m.y, {"batch", "length", "d_model"}) + m.aux_loss;
  b.set_loss(loss);
  gradients(g);
  const Mesh mesh = parse_mesh("data:2,model:2");
  struct Log : PlanVisitor {
    std::vector<double> seen;
    void node(NodeId n, const OpCost& c, uint32_t) override {
      seen.insert(seen.end(), {static_cast<double>(n.v), c.flops, c.bytes_read, c.bytes_written});
    }
    void collective(const PlannedCollective& c) override {
      seen.insert(seen.end(), {-1.0, static_cast<double>(c.kind), static_cast<double>(c.axes), c.cost.collective_bytes,
                               c.gradient ? 1.0 : 0.0});
    }
  };
  const std::vector<std::string> dims = {"batch", "experts", "d_ff", "heads", "d_model"};
  std::vector<Layout> layouts;
  for (size_t code = 0; code < 243; ++code) {  // 3^5: each dim unsplit, on data or on model
    Layout l;
    size_t c = code;
    for (const std::string& d : dims) {
      if (c % 3) l.rules.push_back(LayoutRule{d, mesh.axes[c % 3 - 1].name});
      c /= 3;
    }
    layouts.push_back(std::move(l));
  }
  LoweringPlanner reused(g, mesh);
  int legal = 0;
  for (int pass = 0; pass < 2; ++pass)
    for (size_t i = 0; i < layouts.size(); ++i) {
      const Layout& l = layouts[pass == 0 ? i : layouts.size() - 1 - i];
      if (!reused.legality(l).empty()) continue;
      legal += pass == 0;
      INFO(to_string(l));
      Log a, f;
      const auto shard_a = reused.plan(l, a);
      LoweringPlanner fresh(g, mesh);
      const auto shard_f = fresh.plan(l, f);
      CHECK(a.seen == f.seen);
      CHECK(shard_a == shard_f);
    }
  CHECK(legal > 20);
}

TEST_CASE("lower: an optimization barrier keeps x's split and takes its control input as it is", "[lower]") {
  // after(x, c): x [batch, d] split over data by batch, c [d, f] over model by f. Per-element
  // rules would gather c (its dims are not the output's): lowering emits no collective, and the
  // output is x's block.
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 8}, {"d", 4}});
  Expr c = b.input("c", {{"d", 4}, {"f", 6}});
  b.output("y", after(x, c));
  const Mesh mesh = parse_mesh("data:2,model:2");
  const Lowered L = lower(g, mesh, parse_layout("batch:data,f:model", mesh));
  for (const Node& n : L.graph.nodes) CHECK(op_def(n.kind).collective_cost == nullptr);
  CHECK(L.graph.type(*L.graph.find_output("y")).shape == Shape{{"batch", 4}, {"d", 4}});
}
