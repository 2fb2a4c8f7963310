// The op conformance harness runner: every registered op kind, three modes (see op_case.hpp).
#include "tests/ops/op_case.hpp"

#include "executor/executor.hpp"
#include "graph/autodiff.hpp"
#include "graph/error.hpp"
#include "ops/interpret.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cmath>
#include <functional>

using namespace sy;
using namespace sy::test;

namespace {

struct Built {
  Graph g;
  NodeId node;                    // the node under test
  std::map<ValueId, Tensor> leaves;
};

// Builds the case's graph, checks it holds exactly one node of the case's kind, marks its outputs
// as graph outputs and generates leaf data from a seed derived from the repro string.
Built build_case(const OpCase& c) {
  Built r;
  Builder b(r.g);
  c.build(b);
  INFO("repro: " << c.repro);
  REQUIRE(r.g.nodes.size() == 1);
  REQUIRE(r.g.nodes[0].kind == c.kind);
  r.node = r.g.nodes[0].id;
  const auto outs = r.g.nodes[0].outputs;
  for (size_t i = 0; i < outs.size(); ++i) b.output(fmt::format("out{}", i), b.wrap(outs[i]));
  std::mt19937_64 rng(std::hash<std::string>{}(c.repro));
  for (const Value& v : r.g.values) {
    if (v.role == ValueRole::computed) continue;
    if (c.make_input) {
      r.leaves[v.id] = c.make_input(v, rng);
    } else {
      INFO("leaf " << v.name << " is i32: the case needs make_input");
      REQUIRE(is_float(v.type.dtype));
      r.leaves[v.id] = uniform_input(v, rng);
    }
  }
  return r;
}

double rel_err(double got, double want) { return std::abs(got - want) / std::max(1.0, std::abs(want)); }

// Forward: executor (fast kernels) against the reference interpreter.
void check_forward(const OpCase& c) {
  Built r = build_case(c);
  const auto ref = interpret(r.g, r.leaves);
  Executor ex(r.g);
  for (const auto& [id, t] : r.leaves) ex.set(id, t);
  ex.run();
  for (const GraphOutput& o : r.g.outputs) {
    const Tensor got = ex.get(o.value);
    const Tensor& want = ref[static_cast<size_t>(o.value.v)];
    REQUIRE(got.type == want.type);
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < got.data.size(); ++i) {
      const double e = rel_err(got.data[i], want.data[i]);
      if (!(e <= worst)) worst = e, at = i;  // NaN counts as worst
    }
    INFO(fmt::format("repro: {}  mode=forward  output {}: worst relative error {:.3g} at element {} (got {}, want {}), "
                     "tolerance {:.3g}",
                     c.repro, o.name, worst, at, got.data.empty() ? 0.0 : got.data[at],
                     want.data.empty() ? 0.0 : want.data[at], c.fwd_tol));
    CHECK(worst <= c.fwd_tol);
  }
}

// Gradient: loss = Σ_outputs sum(out * w_out) with random weights; autodiff on the reference
// path in double against central differences of the same loss.
void check_gradient(const OpCase& c) {
  Built r = build_case(c);
  Builder b(r.g);
  std::mt19937_64 rng(std::hash<std::string>{}(c.repro) ^ 0x5eedull);
  Expr loss{};
  for (ValueId out : r.g.node(r.node).outputs) {
    Expr o = b.wrap(out);
    if (!is_float(o.dtype())) continue;
    Expr w = b.input(fmt::format("w_out{}", out.v), o.shape(), o.dtype());
    r.leaves[w.id] = uniform_input(r.g.value(w.id), rng);
    std::vector<std::string> all;
    for (const Dim& d : o.shape()) all.push_back(d.name);
    Expr term = o * w;
    if (!all.empty()) term = sum(term, all);
    if (term.dtype() != DType::f32) term = cast(term, DType::f32);
    loss = loss.b ? loss + term : term;
  }
  INFO("repro: " << c.repro << "  mode=gradient");
  REQUIRE(loss.b != nullptr);  // every op has a float output
  b.set_loss(loss);

  std::vector<ValueId> wrt;  // the float leaves of the op under test (not the loss weights)
  for (ValueId v : r.g.node(r.node).inputs)
    if (r.g.value(v).role != ValueRole::computed && is_float(r.g.type(v).dtype)) wrt.push_back(v);
  if (wrt.empty()) return;  // e.g. fill, one_hot: nothing to differentiate

  if (c.grad == GradCheck::unsupported) {
    CHECK_THROWS_AS(gradients(r.g, wrt), InputError);
    return;
  }
  const auto grads = gradients(r.g, wrt);
  const auto vals = interpret(r.g, r.leaves, /*exact=*/true);
  auto loss_at = [&](const std::map<ValueId, Tensor>& leaves) {
    return interpret(r.g, leaves, /*exact=*/true)[static_cast<size_t>(r.g.loss.v)].data.at(0);
  };
  const double h = 1e-6;  // truncation ~h^2 f''' ≈ 1e-12, cancellation ~1e-16/h ≈ 1e-10
  for (ValueId w : wrt) {
    const Tensor& ad = vals[static_cast<size_t>(grads.at(w).v)];
    for (size_t i = 0; i < ad.data.size(); ++i) {
      auto plus = r.leaves, minus = r.leaves;
      plus[w].data[i] += h;
      minus[w].data[i] -= h;
      const double fd = (loss_at(plus) - loss_at(minus)) / (2 * h);
      const double want = c.grad == GradCheck::zero ? 0.0 : fd;
      INFO(fmt::format("repro: {}  mode=gradient  d/d{}[{}]: autodiff {} finite-difference {} tolerance {:.3g}", c.repro,
                       r.g.value(w).name, i, ad.data[i], fd, c.grad_tol));
      CHECK(rel_err(ad.data[i], want) <= c.grad_tol);
      CHECK(rel_err(fd, want) <= c.grad_tol);
    }
  }
}

// Cost: the registered cost against the case's analytic count.
void check_cost(const OpCase& c) {
  Built r = build_case(c);
  const Node& n = r.g.node(r.node);
  std::vector<TensorType> in, out;
  for (ValueId v : n.inputs) in.push_back(r.g.type(v));
  for (ValueId v : n.outputs) out.push_back(r.g.type(v));
  const OpCost got = op_def(n.kind).cost(in, out, n.attrs);
  INFO(fmt::format("repro: {}  mode=cost  got flops={} read={} written={} transcendentals={}, want flops={} read={} "
                   "written={} transcendentals={}",
                   c.repro, got.flops, got.bytes_read, got.bytes_written, got.transcendentals, c.expected_cost.flops,
                   c.expected_cost.bytes_read, c.expected_cost.bytes_written, c.expected_cost.transcendentals));
  CHECK(got == c.expected_cost);
}

}  // namespace

TEST_CASE("harness: every op kind has a case", "[harness]") {
  const auto missing = missing_cases(all_cases());
  std::string names;
  for (OpKind k : missing) names += fmt::format(" {}", op_name(k));
  INFO("op kinds without a conformance case:" << names);
  CHECK(missing.empty());
}

TEST_CASE("harness: removing a case is detected", "[harness]") {
  const size_t before = missing_cases(all_cases()).size();
  for (OpKind victim : {OpKind::einsum, OpKind::softmax, OpKind::top_k, OpKind::add}) {
    auto cases = all_cases();
    std::erase_if(cases, [&](const OpCase& c) { return c.kind == victim; });
    const auto missing = missing_cases(cases);
    CHECK(missing.size() == before + 1);
    CHECK(std::find(missing.begin(), missing.end(), victim) != missing.end());
  }
}

TEST_CASE("harness: forward (fast kernel == reference)", "[harness]") {
  for (size_t i = 0; i < all_cases().size(); ++i) {
    const OpCase& c = all_cases()[i];
    SECTION(fmt::format("case {}: {}", i, c.repro)) { check_forward(c); }
  }
}

TEST_CASE("harness: gradient (autodiff == central differences)", "[harness]") {
  for (size_t i = 0; i < all_cases().size(); ++i) {
    const OpCase& c = all_cases()[i];
    SECTION(fmt::format("case {}: {}", i, c.repro)) { check_gradient(c); }
  }
}

TEST_CASE("harness: cost (registered == analytic)", "[harness]") {
  for (size_t i = 0; i < all_cases().size(); ++i) {
    const OpCase& c = all_cases()[i];
    SECTION(fmt::format("case {}: {}", i, c.repro)) { check_cost(c); }
  }
}
