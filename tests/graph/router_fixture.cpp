// The router tests' fixture (router_fixture.hpp).
#include "tests/graph/router_fixture.hpp"

#include "graph/error.hpp"
#include "graph/verify.hpp"
#include "ops/interpret.hpp"

#include <cmath>

namespace sy::test {

// x [tokens = T, d_model = E] holds ln p (+ shift); router w = I_E; expert weights a fixed pattern.
std::unique_ptr<RouterRun> run(MoeConfig cfg, MoeContext ctx, const Probs& p, const RunOptions& o) {
  auto r = std::make_unique<RouterRun>();
  const int64_t T = static_cast<int64_t>(p.size()), E = cfg.experts;
  if (cfg.d_ff == 0) cfg.d_ff = 3;
  cfg.expert_ffn = o.ffn;
  Builder b(r->g);
  Expr x = o.sequences > 0 ? b.input("x", {{"batch", o.sequences}, {"length", T / o.sequences}, {"d_model", E}})
                           : b.input("x", {{"tokens", T}, {"d_model", E}});
  Expr step = b.input("step", {}, DType::i32);
  ctx.step = step;
  if (!o.token_ids.empty()) ctx.token_ids = b.input("token_ids", {{"tokens", T}}, DType::i32);
  {
    ScopeGuard s(b, "moe");
    r->m = moe_layer(b, x, cfg, ctx);
  }
  verify(r->g);
  for (const Value& v : r->g.values) {
    if (v.role == ValueRole::computed) continue;
    Tensor t(v.type);
    if (v.name == "x") {
      for (int64_t i = 0; i < T; ++i)
        for (int64_t e = 0; e < E; ++e)
          t.data[static_cast<size_t>(i * E + e)] = std::log(p[static_cast<size_t>(i)][static_cast<size_t>(e)]) +
                                                   (o.shift.empty() ? 0.0 : o.shift[static_cast<size_t>(i)]);
    } else if (v.name == "step") {
      t.data[0] = static_cast<double>(o.step);
    } else if (v.name == "token_ids") {
      for (size_t i = 0; i < o.token_ids.size(); ++i) t.data[i] = o.token_ids[i];
    } else if (v.name == "moe/router/w") {
      for (int64_t e = 0; e < E; ++e) t.data[static_cast<size_t>(e * E + e)] = 1.0;
    } else if (v.name == "moe/router/balance_bias") {
      t.data = o.bias;
    } else if (v.name == "moe/experts/scale") {
      for (double& w : t.data) w = 1.0;
    } else {  // expert weights, router/w_noise: a fixed non-degenerate pattern
      for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = 0.5 * std::sin(1.0 + static_cast<double>(i));
    }
    r->leaves[v.id] = t;
  }
  r->vals = interpret(r->g, r->leaves, o.exact);
  return r;
}

MoeConfig base_config(int64_t E, int64_t k) {
  MoeConfig c;
  c.experts = E;
  c.k = k;
  c.min_capacity = 1;
  c.policy_train = SecondPolicy::all;
  c.policy_eval = SecondPolicy::all;
  c.d_ff = 3;
  return c;
}

// check_moe_config's message for `cfg`, or "no error".
std::string config_error(const MoeConfig& cfg) {
  try {
    check_moe_config(cfg);
  } catch (const InputError& e) {
    return std::string(e.what());
  }
  return std::string("no error");
}

std::vector<Slot> slots(const RouterRun& r, const Expr& t) {
  const Tensor& d = r.at(t);
  const int64_t E = d.shape()[2].size, C = d.shape()[3].size;
  std::vector<Slot> out;
  for (int64_t i = 0; i < d.size(); ++i)
    if (d.data[static_cast<size_t>(i)] != 0.0) out.push_back({i / (E * C), (i / C) % E, i % C});
  return out;
}

double combine_at(const RouterRun& r, int64_t token, int64_t expert, int64_t slot) {
  const Tensor& c = r.at(r.m.combine);
  const int64_t E = c.shape()[2].size, C = c.shape()[3].size;
  return c.data.at(static_cast<size_t>((token * E + expert) * C + slot));
}

bool row_is_zero(const Tensor& y, int64_t token) {
  const int64_t D = y.shape().back().size;
  for (int64_t j = 0; j < D; ++j)
    if (y.data[static_cast<size_t>(token * D + j)] != 0.0) return false;
  return true;
}

}  // namespace sy::test
