// The training graph of one MoE layer for tests: x [batch, length, d_model] times a parameter (so
// gradients flow back through the dispatch), the layer, loss = mean(y²) + its aux and z losses,
// and the gradients of every parameter (outputs "y", "loss", "grad/<parameter>").
#pragma once

#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/models/moe.hpp"

#include <optional>

namespace sy::test {

struct MoeTestGraph {
  int64_t batch = 2, length = 16, d_model = 8;
  int64_t experts = 4, k = 2, d_ff = 12;
  std::optional<double> cf;    // moe.cf_train (unset: MoeConfig's default)
  int64_t group_size = 0;      // 0: length (one sequence per group)
  int64_t batch_split = 1;     // MoeContext::batch_split
  bool dropless = false;
  FfnKind ffn = FfnKind::geglu;
  int64_t expert_groups = 0, route_groups = 0;  // device-limited routing (0: off)
  bool group_dispatch = false;                   // with it: the two-stage dispatch
};

inline Graph moe_training_graph(const MoeTestGraph& o) {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", o.batch}, {"length", o.length}, {"d_model", o.d_model}}) *
           b.parameter("scale", {{"d_model", o.d_model}});
  MoeConfig cfg;
  cfg.experts = o.experts;
  cfg.k = o.k;
  cfg.policy_train = SecondPolicy::all;
  cfg.d_ff = o.d_ff;
  if (o.cf) cfg.cf_train = *o.cf;
  cfg.min_capacity = 1;
  cfg.group_size = o.group_size > 0 ? o.group_size : o.length;
  cfg.dropless = o.dropless;
  cfg.expert_ffn = o.ffn;
  cfg.expert_groups = o.expert_groups;
  cfg.route_groups = o.route_groups;
  cfg.group_dispatch = o.group_dispatch;
  MoeContext ctx;
  ctx.training = true;
  ctx.batch_split = o.batch_split;
  ctx.output_metrics = false;
  MoeLayer m;
  {
    ScopeGuard s(b, "moe");
    m = moe_layer(b, x, cfg, ctx);
  }
  Expr loss = mean(m.y * m.y, {"batch", "length", "d_model"}) + m.aux_loss + m.z_loss;
  b.output("y", m.y);
  b.output("loss", loss);
  b.set_loss(loss);
  gradients(g);
  return g;
}

}  // namespace sy::test
