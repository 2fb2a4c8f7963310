// Autodiff on small composite graphs: gradients of a whole graph against central differences
// of the reference interpreter in double, plus the structure autodiff promises (marks, scopes,
// zero gradients, refusals).
#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "ops/interpret.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace sy;

namespace {

std::map<ValueId, Tensor> random_leaves(const Graph& g, uint64_t seed, int64_t vocab = 0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::map<ValueId, Tensor> m;
  for (const Value& v : g.values) {
    if (v.role == ValueRole::computed) continue;
    Tensor t(v.type);
    for (double& x : t.data) x = v.type.dtype == DType::i32 ? static_cast<double>(rng() % static_cast<uint64_t>(vocab)) : u(rng);
    m[v.id] = t;
  }
  return m;
}

// Max relative error of autodiff against central differences over every element of `wrt`.
double worst_grad_error(Graph& g, const std::vector<ValueId>& wrt, std::map<ValueId, Tensor> leaves) {
  const auto grads = gradients(g, wrt);
  const auto vals = interpret(g, leaves, true);
  double worst = 0;
  for (ValueId w : wrt) {
    const Tensor& ad = vals[static_cast<size_t>(grads.at(w).v)];
    for (size_t i = 0; i < ad.data.size(); ++i) {
      auto p = leaves, m = leaves;
      p[w].data[i] += 1e-6;
      m[w].data[i] -= 1e-6;
      const double fd = (interpret(g, p, true)[static_cast<size_t>(g.loss.v)].data[0] -
                         interpret(g, m, true)[static_cast<size_t>(g.loss.v)].data[0]) / 2e-6;
      worst = std::max(worst, std::abs(ad.data[i] - fd) / std::max(1.0, std::abs(fd)));
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("autodiff: two-layer GEGLU MLP with RMSNorm and cross-entropy matches finite differences", "[autodiff]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 3}, {"d_model", 4}});             // [B, D]
  Expr labels = b.input("labels", {{"batch", 3}}, DType::i32);       // [B]
  Expr scale_g = b.parameter("norm/scale", {{"d_model", 4}});        // [D]
  Expr w0 = b.parameter("ffn/wi_0", {{"d_model", 4}, {"d_ff", 5}});  // [D, F]
  Expr w1 = b.parameter("ffn/wi_1", {{"d_model", 4}, {"d_ff", 5}});  // [D, F]
  Expr wo = b.parameter("ffn/wo", {{"d_ff", 5}, {"vocab", 6}});      // [F, V]
  Expr h = rms_norm(x, scale_g, "d_model");
  Expr a = gelu(einsum(h, w0, {"batch", "d_ff"})) * einsum(h, w1, {"batch", "d_ff"});  // [B, F]
  Expr logits = einsum(a, wo, {"batch", "vocab"});                                      // [B, V]
  b.set_loss(mean(cross_entropy(logits, labels, "vocab"), {"batch"}));
  // Finite differences in double: error ≈ h² ≈ 1e-12 plus cancellation 1e-16/h ≈ 1e-10.
  CHECK(worst_grad_error(g, g.parameters(), random_leaves(g, 1, 6)) < 1e-6);
}

TEST_CASE("autodiff: a value used twice accumulates both gradients (softmax attention-like)", "[autodiff]") {
  Graph g;
  Builder b(g);
  Expr q = b.parameter("q", {{"length", 3}, {"d_kv", 2}});
  Expr k = b.wrap(q.id);  // self-attention on q itself: q is used three times
  Expr s = einsum(q, reshape(k, {{"key", 3}, {"d_kv", 2}}), {"length", "key"});
  Expr p = softmax(s, "key");
  Expr o = einsum(p, reshape(q, {{"key", 3}, {"d_kv", 2}}), {"length", "d_kv"});
  b.set_loss(sum(o * o, {"length", "d_kv"}));
  CHECK(worst_grad_error(g, g.parameters(), random_leaves(g, 2)) < 1e-6);
}

TEST_CASE("autodiff: marks gradients, keeps scopes, flags backward nodes", "[autodiff]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 2}, {"d_model", 3}});
  Expr w = b.parameter("w", {{"d_model", 3}, {"d_ff", 4}});
  Expr unused = b.parameter("unused", {{"d_ff", 4}});
  {
    ScopeGuard s(b, "layer_0");
    b.set_loss(sum(relu(einsum(x, w, {"batch", "d_ff"})), {"batch", "d_ff"}));
  }
  const size_t forward_nodes = g.nodes.size();
  const auto grads = gradients(g);
  REQUIRE(grads.size() == 2);
  CHECK(g.value(grads.at(w.id)).grad_of == w.id);
  CHECK(g.type(grads.at(w.id)) == g.type(w.id));
  CHECK(g.find_output("grad/w") == grads.at(w.id));
  // The unused parameter gets an explicit zero gradient.
  const Value& gu = g.value(grads.at(unused.id));
  CHECK(g.node(gu.producer).kind == OpKind::fill);
  for (size_t i = forward_nodes; i < g.nodes.size(); ++i) CHECK(g.nodes[i].backward);
  // The einsum's backward nodes stay in its scope.
  CHECK(g.node(g.value(grads.at(w.id)).producer).scope == "layer_0");
}

TEST_CASE("autodiff: refuses without a loss and through ops without a backward", "[autodiff]") {
  Graph g;
  Builder b(g);
  Expr x = b.parameter("x", {{"d", 3}});
  CHECK_THROWS_AS(gradients(g), InputError);
  Expr y = gelu_grad(x, x);
  b.set_loss(sum(y, {"d"}));
  try {
    gradients(g);
    FAIL("expected an error");
  } catch (const InputError& e) {
    CHECK_THAT(e.what(), Catch::Contains("gelu_grad") && Catch::Contains("not implemented"));
  }
}

TEST_CASE("autodiff: emits no dead nodes for inputs that need no gradient", "[autodiff]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 2}, {"d", 3}});
  Expr target = b.input("target", {{"batch", 2}, {"d", 3}});
  Expr w = b.parameter("w", {{"d", 3}});
  Expr err = x * w - target;  // sub's backward also emits -dy for `target`, which nobody needs
  b.set_loss(sum(err * err, {"batch", "d"}));
  const size_t forward_values = g.values.size();
  const auto grads = gradients(g);
  // Every backward node feeds the gradient output (directly or through later nodes).
  std::vector<char> used(g.values.size(), 0);
  for (const GraphOutput& o : g.outputs) used[static_cast<size_t>(o.value.v)] = 1;
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    bool live = false;
    for (ValueId v : n.outputs) live = live || used[static_cast<size_t>(v.v)];
    if (n.backward) CHECK(live);
    for (ValueId v : n.inputs) used[static_cast<size_t>(v.v)] = 1;
  }
  // Ids stay dense and consistent after removal.
  for (size_t i = 0; i < g.values.size(); ++i) CHECK(g.values[i].id.v == static_cast<int32_t>(i));
  for (size_t i = 0; i < g.nodes.size(); ++i) CHECK(g.nodes[i].id.v == static_cast<int32_t>(i));
  CHECK(g.values.size() > forward_values);
  CHECK(g.value(grads.at(w.id)).grad_of == w.id);
}
