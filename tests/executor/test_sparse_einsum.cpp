// The executor's sparse paths (executor/sparse_einsum.hpp) against the reference einsum and the
// interpreter: one-hot dispatch and combine, masked outputs, sparse x sparse einsums, values kept
// as their nonzeros, and whole MoE layers forward and backward. Tolerances:
// tests/executor/exec_test_util.hpp.
#include "exec_test_util.hpp"
#include "tests/common/moe_test_graph.hpp"

#include "executor/memory_plan.hpp"
#include "executor/sparse_einsum.hpp"
#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/models/moe.hpp"
#include "graph/op_def.hpp"

#include <algorithm>
#include <map>
#include <random>

namespace sy {
namespace {

using test::kTolBf16;
using test::kTolEinsumF32;

// The reference einsum of two tensors into `out` dims.
Tensor reference_einsum(const Tensor& a, const Tensor& b, const TensorType& out) {
  std::vector<std::string> names;
  for (const Dim& d : out.shape) names.push_back(d.name);
  const Attrs attrs = EinsumAttrs{names};
  const TensorType t = op_def(OpKind::einsum).infer({a.type, b.type}, attrs).at(0);
  REQUIRE(t.shape == out.shape);
  Tensor r(out);
  const std::vector<const Tensor*> in = {&a, &b};
  const std::vector<Tensor*> outs = {&r};
  op_def(OpKind::einsum).forward(attrs, in, outs, false);
  return r;
}

// A hand-made routing of G = 2 groups of S = 6 tokens to E = 3 experts with C = 2 slots and K = 2
// choices: group 0 has a token with two choices, one with one, tokens dropped entirely (their
// rows are zero) and an empty expert (e2); group 1 sends two tokens to e2 and leaves e0, e1 empty.
struct Routing {
  static constexpr int64_t G = 2, S = 6, E = 3, C = 2, K = 2, D = 5;
  Shape gsec{{"group", G}, {"group_size", S}, {"experts", E}, {"capacity", C}};
  Shape gskc{{"group", G}, {"group_size", S}, {"k", K}, {"capacity", C}};
  Shape gske{{"group", G}, {"group_size", S}, {"k", K}, {"experts", E}};
  struct Choice {
    int64_t g, s, k, e, c;
    double gate;
  };
  std::vector<Choice> choices = {{0, 0, 0, 0, 0, 0.75}, {0, 0, 1, 1, 0, 0.25}, {0, 1, 0, 0, 1, 1.0},
                                 {0, 3, 0, 1, 1, 0.6},  {1, 0, 0, 2, 0, 0.5},  {1, 1, 1, 2, 1, 0.125}};

  Tensor combine(DType dt) const {  // [G, S, E, C]: the gates at the kept slots
    Tensor t(TensorType{gsec, dt});
    for (const Choice& x : choices) t.data[static_cast<size_t>(((x.g * S + x.s) * E + x.e) * C + x.c)] = x.gate;
    return t;
  }
  Tensor slots(DType dt) const {  // [G, S, K, C] one-hot slot per kept choice
    Tensor t(TensorType{gskc, dt});
    for (const Choice& x : choices) t.data[static_cast<size_t>(((x.g * S + x.s) * K + x.k) * C + x.c)] = 1.0;
    return t;
  }
  Tensor gates(DType dt) const {  // [G, S, K, E]: the gate of each kept choice at its expert
    Tensor t(TensorType{gske, dt});
    for (const Choice& x : choices) t.data[static_cast<size_t>(((x.g * S + x.s) * K + x.k) * E + x.e)] = x.gate;
    return t;
  }
};

std::vector<std::byte> storage_of(const Tensor& t) { return test::to_storage(t); }

exec::Nonzeros nonzeros_of(const Tensor& t) {
  const auto st = storage_of(t);
  exec::Nonzeros nz;
  REQUIRE(exec::find_nonzeros({st.data(), t.type}, num_elements(t.type.shape), nz));
  return nz;
}

// einsum_sparse_dense(p, q) against the reference einsum of the dense tensors.
Tensor sparse_dense(const Tensor& p, const Tensor& q, const TensorType& out) {
  const auto qs = storage_of(q);
  std::vector<std::byte> os(static_cast<size_t>(num_bytes(out)), std::byte{0x7f});  // garbage: must be overwritten
  REQUIRE(exec::einsum_sparse_dense(nonzeros_of(p), p.type, {qs.data(), q.type}, {os.data(), out}));
  return test::from_storage(os, out);
}

TEST_CASE("sparse einsum: find_nonzeros lists nonzeros in order and gives up past the limit", "[executor][sparse]") {
  Tensor t(TensorType{{{"n", 200000}}, DType::f32});
  t.data[3] = 1.5;
  t.data[70000] = -2.0;
  t.data[70001] = -0.0;  // a zero
  t.data[199999] = std::nan("");
  const auto st = storage_of(t);
  exec::Nonzeros nz;
  REQUIRE(exec::find_nonzeros({st.data(), t.type}, 3, nz));
  CHECK(nz.index == std::vector<int64_t>{3, 70000, 199999});
  CHECK(nz.value[0] == 1.5f);
  CHECK(nz.value[1] == -2.0f);
  CHECK(std::isnan(nz.value[2]));
  CHECK_FALSE(exec::find_nonzeros({st.data(), t.type}, 2, nz));
}

TEST_CASE("sparse einsum: dispatch and combine match the dense einsum (drops, empty experts)", "[executor][sparse]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  const double tol = dt == DType::f32 ? kTolEinsumF32 : kTolBf16;
  const Routing r;
  std::mt19937_64 rng(3);
  const Dim g{"group", r.G}, s{"group_size", r.S}, e{"experts", r.E}, c{"capacity", r.C}, d{"d_model", r.D};
  const Tensor combine = r.combine(dt);
  const Tensor x = test::random_tensor({{g, s, d}, dt}, rng);      // [G, S, D]
  const Tensor eo = test::random_tensor({{e, g, c, d}, dt}, rng);  // [E, G, C, D]
  const TensorType egcd{{e, g, c, d}, dt}, gsd{{g, s, d}, dt};

  SECTION("dispatch: [G,S,E,C] x [G,S,D] -> [E,G,C,D]") {
    const Tensor got = sparse_dense(combine, x, egcd);
    CHECK(test::max_rel_err(got, reference_einsum(combine, x, egcd)) <= tol);
    // Slots nobody took (e2 in group 0, e0 and e1 in group 1) are zero.
    for (int64_t di = 0; di < r.D; ++di) {
      CHECK(got.data[static_cast<size_t>(((2 * r.G + 0) * r.C + 0) * r.D + di)] == 0.0);
      CHECK(got.data[static_cast<size_t>(((0 * r.G + 1) * r.C + 1) * r.D + di)] == 0.0);
    }
  }
  SECTION("combine: [G,S,E,C] x [E,G,C,D] -> [G,S,D]; dropped tokens get zero") {
    const Tensor got = sparse_dense(combine, eo, gsd);
    CHECK(test::max_rel_err(got, reference_einsum(combine, eo, gsd)) <= tol);
    for (int64_t di = 0; di < r.D; ++di) CHECK(got.data[static_cast<size_t>((0 * r.S + 2) * r.D + di)] == 0.0);
  }
  SECTION("one nonzero per row gives the dense f32 result bit for bit") {
    if (dt == DType::f32) {
      const Tensor got = sparse_dense(combine, x, egcd);
      for (const Routing::Choice& ch : r.choices)
        for (int64_t di = 0; di < r.D; ++di) {
          const auto i = static_cast<size_t>(((ch.e * r.G + ch.g) * r.C + ch.c) * r.D + di);
          CHECK(got.data[i] == static_cast<double>(static_cast<float>(ch.gate) *
                                                   static_cast<float>(x.data[static_cast<size_t>((ch.g * r.S + ch.s) * r.D + di)])));
        }
    }
  }
  SECTION("the rows walked are strided in out: [G,S,K,C] x [G,S,K,E] -> [G,S,E,C]") {
    const Tensor slots = r.slots(dt);
    const Tensor assign = test::random_tensor({r.gske, dt}, rng);
    const TensorType out{r.gsec, dt};
    CHECK(test::max_rel_err(sparse_dense(slots, assign, out), reference_einsum(slots, assign, out)) <= tol);
  }
  SECTION("a dim of q summed within q alone is refused") {
    const Tensor q = test::random_tensor({{g, s, d, {"extra", 2}}, dt}, rng);
    const auto qs = storage_of(q);
    std::vector<std::byte> os(static_cast<size_t>(num_bytes(egcd)));
    CHECK_FALSE(exec::einsum_sparse_dense(nonzeros_of(combine), combine.type, {qs.data(), q.type}, {os.data(), egcd}));
  }
}

TEST_CASE("sparse einsum: a masked output feeds its sparse reader exactly as the dense one", "[executor][sparse]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  const double tol = dt == DType::f32 ? kTolEinsumF32 : kTolBf16;
  const Routing r;
  std::mt19937_64 rng(4);
  const Dim g{"group", r.G}, s{"group_size", r.S}, e{"experts", r.E}, c{"capacity", r.C}, d{"d_model", r.D};
  const Tensor dy = test::random_tensor({{g, s, d}, dt}, rng);     // [G, S, D]
  const Tensor eo = test::random_tensor({{e, g, c, d}, dt}, rng);  // [E, G, C, D]
  const Tensor slots = r.slots(DType::f32);                        // [G, S, K, C]
  const TensorType gsec{r.gsec, dt};
  // dcombine = einsum(dy, eo) [G, S, E, C], read only by einsum(dcombine, slots) -> [G, S, K, E].
  const auto as = storage_of(dy), bs = storage_of(eo);
  std::vector<std::byte> os(static_cast<size_t>(num_bytes(gsec)), std::byte{0x7f});
  REQUIRE(exec::einsum_masked({as.data(), dy.type}, {bs.data(), eo.type}, nonzeros_of(slots), slots.type, {os.data(), gsec}));
  const Tensor got = test::from_storage(os, gsec);
  const Tensor want = reference_einsum(dy, eo, gsec);
  const TensorType gske{r.gske, DType::f32};
  Tensor got32(TensorType{r.gsec, DType::f32}), want32(TensorType{r.gsec, DType::f32});
  got32.data = got.data;
  want32.data = want.data;
  CHECK(test::max_rel_err(reference_einsum(got32, slots, gske), reference_einsum(want32, slots, gske)) <= tol);
  // Entries at a kept (g, s, c) hold the dense value for every expert; the rest are zero.
  for (int64_t gi = 0; gi < r.G; ++gi)
    for (int64_t si = 0; si < r.S; ++si)
      for (int64_t ci = 0; ci < r.C; ++ci) {
        bool needed = false;
        for (const Routing::Choice& ch : r.choices) needed = needed || (ch.g == gi && ch.s == si && ch.c == ci);
        for (int64_t ei = 0; ei < r.E; ++ei) {
          const auto i = static_cast<size_t>(((gi * r.S + si) * r.E + ei) * r.C + ci);
          if (needed) CHECK(std::abs(got.data[i] - want.data[i]) <= tol * std::max(1.0, std::abs(want.data[i])));
          else CHECK(got.data[i] == 0.0);
        }
      }
}

// Nonzeros -> a dense tensor of type t.
Tensor dense_of(const exec::Nonzeros& nz, const TensorType& t) {
  std::vector<std::byte> st(static_cast<size_t>(num_bytes(t)), std::byte{0x7f});
  exec::store_nonzeros(nz, t, st.data());
  return test::from_storage(st, t);
}

TEST_CASE("sparse einsum: sparse x sparse builds combine from its factors and the gates' gradient from it",
          "[executor][sparse]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  const Routing r;
  const Tensor gates = r.gates(dt), slots = r.slots(dt);
  SECTION("combine [G,S,E,C] = einsum(gates [G,S,K,E], slots [G,S,K,C]): bit for bit (one term per element)") {
    const TensorType gsec{r.gsec, dt};
    exec::Nonzeros nz;
    REQUIRE(exec::einsum_sparse_sparse(nonzeros_of(gates), gates.type, nonzeros_of(slots), slots.type, gsec, 1000, nz));
    CHECK(nz.index.size() == r.choices.size());
    CHECK(std::is_sorted(nz.index.begin(), nz.index.end()));
    const Tensor got = dense_of(nz, gsec);
    CHECK(test::max_rel_err(got, reference_einsum(gates, slots, gsec)) == 0.0);
  }
  SECTION("d gates [G,S,K,E] = einsum(d combine [G,S,E,C], slots [G,S,K,C]): sums over C") {
    std::mt19937_64 rng(5);
    Tensor dcombine = test::random_tensor({r.gsec, dt}, rng);  // dense values, every element nonzero
    const TensorType gske{r.gske, dt};
    exec::Nonzeros nz;
    REQUIRE(exec::einsum_sparse_sparse(nonzeros_of(dcombine), dcombine.type, nonzeros_of(slots), slots.type, gske, 1000, nz));
    // One slot per kept choice: each output element is one product, so exact after rounding.
    CHECK(test::max_rel_err(dense_of(nz, gske), reference_einsum(dcombine, slots, gske)) == 0.0);
  }
  SECTION("several products reaching one element are summed") {
    // einsum(slots [G,S,K,C], ones [G,S,K,C]) -> [G,S]: the number of kept choices per token.
    Tensor ones(TensorType{r.gskc, dt});
    std::fill(ones.data.begin(), ones.data.end(), 1.0);
    const TensorType gs{{{"group", r.G}, {"group_size", r.S}}, dt};
    exec::Nonzeros nz;
    REQUIRE(exec::einsum_sparse_sparse(nonzeros_of(slots), slots.type, nonzeros_of(ones), ones.type, gs, 1000, nz));
    const Tensor got = dense_of(nz, gs);
    CHECK(got.data[0] == 2.0);  // group 0, token 0: both choices kept
    CHECK(got.data[1] == 1.0);
    CHECK(got.data[2] == 0.0);  // dropped
    CHECK(test::max_rel_err(got, reference_einsum(slots, ones, gs)) == 0.0);
  }
  SECTION("refused: a dim summed within one operand, or more pairs than allowed") {
    exec::Nonzeros nz;
    const TensorType gsk{{{"group", r.G}, {"group_size", r.S}, {"k", r.K}}, dt};  // E summed within gates alone
    CHECK_FALSE(exec::einsum_sparse_sparse(nonzeros_of(gates), gates.type, nonzeros_of(slots), slots.type, gsk, 1000, nz));
    CHECK_FALSE(exec::einsum_sparse_sparse(nonzeros_of(gates), gates.type, nonzeros_of(slots), slots.type,
                                           TensorType{r.gsec, dt}, 5, nz));  // 6 pairs
  }
}

TEST_CASE("sparse einsum: a masked output kept as nonzeros equals the masked dense output", "[executor][sparse]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  const Routing r;
  std::mt19937_64 rng(6);
  const Dim g{"group", r.G}, s{"group_size", r.S}, e{"experts", r.E}, c{"capacity", r.C}, d{"d_model", r.D};
  const Tensor dy = test::random_tensor({{g, s, d}, dt}, rng);
  const Tensor eo = test::random_tensor({{e, g, c, d}, dt}, rng);
  const Tensor slots = r.slots(DType::f32);
  const TensorType gsec{r.gsec, dt};
  const auto as = storage_of(dy), bs = storage_of(eo);
  std::vector<std::byte> dense(static_cast<size_t>(num_bytes(gsec)), std::byte{0x7f});
  REQUIRE(exec::einsum_masked({as.data(), dy.type}, {bs.data(), eo.type}, nonzeros_of(slots), slots.type, {dense.data(), gsec}));
  std::vector<std::byte> untouched(static_cast<size_t>(num_bytes(gsec)), std::byte{0x7f});
  exec::Nonzeros nz;
  REQUIRE(exec::einsum_masked({as.data(), dy.type}, {bs.data(), eo.type}, nonzeros_of(slots), slots.type,
                              {untouched.data(), gsec}, &nz));
  CHECK(std::all_of(untouched.begin(), untouched.end(), [](std::byte x) { return x == std::byte{0x7f}; }));
  CHECK(std::is_sorted(nz.index.begin(), nz.index.end()));
  CHECK(dense_of(nz, gsec).data == test::from_storage(dense, gsec).data);
}

TEST_CASE("sparse einsum: a cast of a one-hot tensor feeds a sparse einsum (bf16)", "[executor][sparse]") {
  Graph g;
  Builder b(g);
  Expr ids = b.input("ids", {{"s", 256}, {"k", 2}}, DType::i32);
  Expr x = b.input("x", {{"s", 256}, {"d", 16}}, DType::bf16);
  Expr onehot = cast(one_hot(ids, Dim{"e", 64}), DType::bf16);  // [s, k, e], 1/64 nonzero
  b.output("dispatch", einsum(onehot, x, {"k", "e", "d"}));
  b.output("onehot", onehot);
  verify(g);
  const exec::MemoryPlan plan = exec::plan_memory(g, std::vector<std::vector<int64_t>>(g.nodes.size()));
  CHECK(exec::SparseEinsums(g, plan.kept).maybe_sparse(onehot.id));
  std::mt19937_64 rng(9);
  std::map<ValueId, Tensor> leaves;
  Tensor t(g.type(ids.id));
  std::uniform_int_distribution<int> e(-1, 64);  // -1 and 64: no expert (a zero row)
  for (double& v : t.data) v = e(rng);
  leaves[ids.id] = t;
  leaves[x.id] = test::random_tensor(g.type(x.id), rng);
  Executor ex(g);
  for (const auto& [id, v] : leaves) ex.set(id, v);
  for (int run = 0; run < 2; ++run) {  // the second run must not reuse the first run's nonzeros
    if (run == 1) {
      for (double& v : leaves[ids.id].data) v = e(rng);
      ex.set(ids.id, leaves[ids.id]);
    }
    ex.run();
    const auto ref = interpret(g, leaves);
    for (const GraphOutput& o : g.outputs) {
      INFO("run " << run << " output '" << o.name << "'");
      CHECK(test::max_rel_err(ex.get(o.value), ref[static_cast<size_t>(o.value.v)]) <= kTolBf16);
    }
  }
}

// A training graph of one MoE layer (forward, backward) whose capacity overflows: tokens drop.
// Groups of `length` tokens (one sequence each).
Graph moe_training_graph(int64_t experts, double cf, int64_t length = 16) {
  test::MoeTestGraph o;
  o.experts = experts;
  o.cf = cf;
  o.length = length;
  return test::moe_training_graph(o);
}

TEST_CASE("sparse einsum: the executor plans every dispatch/combine einsum of an MoE layer", "[executor][sparse]") {
  const Graph g = moe_training_graph(4, 1.25);
  const exec::MemoryPlan plan = exec::plan_memory(g, std::vector<std::vector<int64_t>>(g.nodes.size()));
  const exec::SparseEinsums sparse(g, plan.kept);
  int covered = 0, masked = 0;
  for (const Node& n : g.nodes) {
    if (n.kind != OpKind::einsum) continue;
    bool touches_gsec = false;  // reads or writes a [group, group_size, experts, capacity] tensor
    for (ValueId v : n.inputs) touches_gsec = touches_gsec || has_dim(g.type(v).shape, "capacity");
    touches_gsec = touches_gsec || has_dim(g.type(n.outputs[0]).shape, "capacity");
    if (!touches_gsec || n.scope.find("dispatch") == std::string::npos) continue;
    INFO(g.describe(n.id));
    const bool sparse_in = sparse.maybe_sparse(n.inputs[0]) || sparse.maybe_sparse(n.inputs[1]);
    CHECK((sparse_in || sparse.mask_of(n.id).valid()));
    ++covered;
    masked += sparse.mask_of(n.id).valid() ? 1 : 0;
  }
  CHECK(covered >= 5);  // forward dispatch and combine; backward d expert_out, d x, d combine
  CHECK(masked == 1);   // d combine = einsum(dy, expert_out): read only where the slots are set
}

TEST_CASE("sparse einsum: an MoE layer's forward and backward match the reference", "[executor][sparse]") {
  // E = 4, CF 1.25: C = 5 of 16 tokens x 2 choices (overflow); E = 8, CF 0.5: C = 1 (most choices
  // drop, and experts are left empty).
  // Length 64: the [G, S, E, C] tensors are large enough to be kept as nonzeros only.
  const int64_t experts = GENERATE(4, 8);
  const int64_t length = GENERATE(16, 64);
  const double cf = experts == 4 ? 1.25 : 0.5;
  INFO("experts " << experts << " cf " << cf << " length " << length);
  test::expect_outputs_match(moe_training_graph(experts, cf, length), 1e-4, kTolBf16);
}

TEST_CASE("sparse einsum: an MoE training step keeps its dispatch and combine tensors as nonzeros only", "[executor][sparse]") {
  const Graph g = moe_training_graph(4, 1.25, 64);  // [G, S, E, C] = [2, 64, 4, 40]: above kMinSparse
  const exec::MemoryPlan plan = exec::plan_memory(g, std::vector<std::vector<int64_t>>(g.nodes.size()));
  const exec::SparseEinsums sparse(g, plan.kept);
  int64_t gsec = 0;  // computed [group, group_size, experts, capacity] values
  for (const Value& v : g.values) {
    const Shape& s = v.type.shape;
    if (v.role != ValueRole::computed || !has_dim(s, "group_size") || !has_dim(s, "experts") || !has_dim(s, "capacity"))
      continue;
    INFO(g.describe(v.producer));
    CHECK(sparse.deferrable(v.id));
    ++gsec;
  }
  CHECK(gsec >= 3);  // dispatch, combine, d combine
  const auto leaves = test::random_leaves(g, 7, -1.0, 1.0);
  Executor ex(g);
  for (const auto& [id, t] : leaves) ex.set(id, t);
  ex.run();
  CHECK(ex.sparse_stats().deferred >= gsec);
  CHECK(ex.sparse_stats().materialized == 0);
}

}  // namespace
}  // namespace sy
