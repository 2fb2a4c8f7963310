// Golden test of the MoE layer against an independent implementation: tests/reference/
// moe_reference.py (NumPy, float64, explicit routing loops, hand-written backward checked against
// finite differences) wrote tests/data/moe_golden.json; this test builds the same top-2 layer with
// moe_layer(), differentiates it with autodiff and runs it with the reference interpreter.
//
// Regenerate the file with: /usr/bin/python3 tests/reference/moe_reference.py
#include "graph/autodiff.hpp"
#include "graph/models/moe.hpp"
#include "graph/verify.hpp"
#include "ops/interpret.hpp"
#include "tests/source_root.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

using namespace sy;
using nlohmann::json;

namespace {

std::filesystem::path golden_path() {
  return sy::test::source_root() / "tests" / "data" / "moe_golden.json";
}

json load_golden() {
  std::ifstream in(golden_path());
  REQUIRE(in.good());
  return json::parse(in);
}

Tensor to_tensor(const json& j, const TensorType& type) {
  std::vector<int64_t> shape = j.at("shape").get<std::vector<int64_t>>();
  REQUIRE(shape.size() == type.shape.size());
  for (size_t i = 0; i < shape.size(); ++i) REQUIRE(shape[i] == type.shape[i].size);
  Tensor t(type);
  t.data = j.at("data").get<std::vector<double>>();
  REQUIRE(t.size() == num_elements(type.shape));
  return t;
}

// max over elements of |got - want| / max(1, |want|)
double worst_error(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]) / std::max(1.0, std::abs(want[i])));
  return worst;
}

}  // namespace

TEST_CASE("moe golden: top-2 layer forward, losses and gradients match the NumPy reference", "[router][golden]") {
  const json gold = load_golden();
  const json& cfg_j = gold.at("config");

  MoeConfig cfg;
  cfg.experts = cfg_j.at("experts");
  cfg.k = cfg_j.at("k");
  cfg.router = RouterKind::top_k;
  cfg.policy_train = SecondPolicy::all;
  cfg.cf_train = cfg_j.at("cf_train");
  cfg.min_capacity = cfg_j.at("min_capacity");
  cfg.group_size = cfg_j.at("group_size");
  cfg.capacity = CapacityRule::mesh_tf;
  cfg.balance = BalanceLoss::switch_top1;
  cfg.balance_coef = cfg_j.at("balance_coef");
  cfg.z_rule = ZLossRule::paper;
  cfg.z_coef = cfg_j.at("z_coef");
  cfg.expert_ffn = FfnKind::geglu;
  cfg.d_ff = cfg_j.at("d_ff");
  MoeContext ctx;
  ctx.training = true;  // train CF; no jitter, no dropout, policy all: deterministic

  Graph g;
  Builder b(g);
  const Shape xs{{"batch", cfg_j.at("batch")}, {"length", cfg_j.at("length")}, {"d_model", cfg_j.at("d_model")}};
  Expr x = b.input("x", xs);
  Expr r = b.input("r", xs);
  MoeLayer m;
  {
    ScopeGuard s(b, "moe");
    m = moe_layer(b, x, cfg, ctx);
  }
  REQUIRE(m.groups == cfg_j.at("groups").get<int64_t>());
  REQUIRE(m.capacity == cfg_j.at("capacity").get<int64_t>());
  b.set_loss(sum(m.y * r, {"batch", "length", "d_model"}) + m.aux_loss + m.z_loss);

  // The reference's names for the leaves.
  const std::map<std::string, std::string> leaf_of{{"x", "x"}, {"r", "r"}, {"router_w", "moe/router/w"},
                                                   {"wi_0", "moe/experts/wi_0"}, {"wi_1", "moe/experts/wi_1"},
                                                   {"wo", "moe/experts/wo"}};
  std::vector<ValueId> wrt;
  for (const char* name : {"x", "router_w", "wi_0", "wi_1", "wo"}) wrt.push_back(*g.find_leaf(leaf_of.at(name)));
  const auto grads = gradients(g, wrt);
  verify(g);

  std::map<ValueId, Tensor> leaves;
  for (const auto& [ref_name, leaf_name] : leaf_of) {
    const ValueId id = *g.find_leaf(leaf_name);
    leaves[id] = to_tensor(gold.at("inputs").at(ref_name), g.type(id));
  }
  REQUIRE(leaves.size() == g.inputs().size() + g.parameters().size());

  const json& out = gold.at("outputs");
  // exact: double throughout, as the reference; only summation order differs (≈ 1e-15).
  // f32: every stored value rounded to f32 (unit roundoff 6e-8). The longest chain, forward then
  // backward through router, gates, expert FFN and combine, is about 40 stored values whose
  // rounding errors add up with magnitudes O(1) (inputs and weights are O(1), the loss is a sum of
  // 64 products): 40 · 6e-8 · ~4 ≈ 1e-5 is a bound with room; measured errors are ≤ 5e-7.
  for (const bool exact : {true, false}) {
    INFO((exact ? "exact (double)" : "f32 storage"));
    const double tol = exact ? 1e-12 : 1e-5;
    const auto vals = interpret(g, leaves, exact);
    auto value = [&](ValueId id) { return vals.at(static_cast<size_t>(id.v)).data; };
    // Routing first: the same tokens in the same slots (exact 0/1 in both modes).
    CHECK(value(m.dispatch.id) == to_tensor(out.at("dispatch"), g.type(m.dispatch.id)).data);
    CHECK(worst_error(value(m.fraction_dropped.id), out.at("fraction_dropped").at("data")) < tol);
    CHECK(worst_error(value(m.expert_load.id), out.at("expert_load").at("data")) < tol);
    CHECK(worst_error(value(m.y.id), out.at("y").at("data")) < tol);
    CHECK(worst_error(value(m.aux_loss_raw.id), {out.at("aux_loss_raw").get<double>()}) < tol);
    CHECK(worst_error(value(m.z_loss_raw.id), {out.at("z_loss_raw").get<double>()}) < tol);
    CHECK(worst_error(value(g.loss), {out.at("loss").get<double>()}) < tol);
    for (const char* name : {"x", "router_w", "wi_0", "wi_1", "wo"}) {
      INFO("gradient of " << name);
      const ValueId leaf = *g.find_leaf(leaf_of.at(name));
      CHECK(worst_error(value(grads.at(leaf)), gold.at("gradients").at(name).at("data")) < tol);
    }
  }
}
