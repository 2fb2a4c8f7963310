#include "graph/models/training_graph.hpp"

#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

namespace sy {

int64_t routing_batch_split(const Mesh& mesh, const Layout& layout) {
  const std::string* axis = layout.axis_of("batch");
  if (!axis) return 1;
  const auto i = mesh.axis_index(*axis);
  return i ? mesh.axes[*i].size : 1;
}

std::vector<std::pair<std::string, Shape>> optimizer_state_slots(const OptimizerConfig& o, const Shape& param) {
  if (o.kind == OptimizerKind::adamw) return {{"m", param}, {"v", param}};
  if (!o.adafactor.factored || param.size() < 2) return {{"v", param}};
  Shape row = param, col = param;
  row.pop_back();
  col.erase(col.end() - 2);
  return {{"v_row", row}, {"v_col", col}};
}

bool is_optimizer_state(const std::string& name) { return name.starts_with("optimizer/") && name != "optimizer/lr"; }

namespace {

ValueId output_of(const Graph& g, const std::string& name) {
  auto v = g.find_output(name);
  SY_CHECK(v.has_value(), "training graph has no output '{}'", name);
  return *v;
}

// Global-norm clipping and one update node per trainable parameter (see the header).
void add_optimizer(TrainingGraph& t, const ModelConfig& config, const OptimizerConfig& o,
                   const std::vector<ValueId>& params, const std::map<ValueId, ValueId>& grads) {
  Graph& g = t.model.graph;
  Builder b(g);
  Expr lr, ss;  // ss: Σ g² over every gradient, f32 []
  {
    ScopeGuard scope(b, "optimizer");
    lr = b.input("optimizer/lr", {});
  }
  std::map<std::string, Expr> router_ss;  // per MoE layer scope: Σ g² over its router's parameters
  for (ValueId p : params) {
    const std::string& name = g.value(p).name;
    ScopeGuard scope(b, "optimizer/" + name);
    Expr gp = b.wrap(grads.at(p));
    std::vector<std::string> dims;
    for (const Dim& d : gp.shape()) dims.push_back(d.name);
    Expr term = dims.empty() ? gp * gp : sum(gp * gp, dims);
    ss = ss.b ? ss + term : term;
    for (const MoeLayerInfo& l : t.model.moe_layers)
      if (name.starts_with(l.scope + "/router/")) {
        Expr& r = router_ss[l.scope];
        r = r.b ? r + term : term;
      }
  }
  // Each MoE layer's router gradient norm², beside the global one (issue #18: which diverges first).
  for (const auto& [layer, r] : router_ss) b.output(layer + "/metrics/router_grad_norm_squared", r);
  Expr clip;
  {
    ScopeGuard scope(b, "optimizer");
    b.output("optimizer/grad_norm_squared", ss);
    clip = fill(b, {}, 1.0);
    if (o.grad_clip > 0) {
      Expr over = greater(ss, fill(b, {}, o.grad_clip * o.grad_clip));
      clip = where(over, scale(rsqrt(ss), o.grad_clip), clip);
    }
    b.output("optimizer/clip_scale", clip);
  }
  t.lr = lr.id;
  t.grad_norm_squared = ss.id;
  t.clip_scale = clip.id;

  Expr step = b.wrap(t.model.step);
  for (ValueId p : params) {
    const std::string name = g.value(p).name;
    ScopeGuard scope(b, "optimizer/" + name);
    OptimizerSlot slot;
    slot.param = p;
    std::vector<Expr> state;
    const auto slots = optimizer_state_slots(o, g.type(p).shape);
    for (const auto& [slot_name, slot_shape] : slots) {
      state.push_back(b.input(fmt::format("optimizer/{}/{}", name, slot_name), slot_shape));
      slot.state.push_back(state.back().id);
    }
    // moe.router_lr_scale: a router parameter's learning rate (encoder or decoder MoE settings).
    Expr p_lr = lr;
    if (name.find("/moe/router/") != std::string::npos) {
      const double s = (name.starts_with("encoder/") ? config.moe_encoder : config.moe_decoder).router_lr_scale;
      if (s != 1.0) p_lr = scale(lr, s);
    }
    const std::vector<Expr> outs = o.kind == OptimizerKind::adafactor
                                       ? adafactor_update(b.wrap(p), b.wrap(grads.at(p)), state, p_lr, step, clip, o.adafactor)
                                       : adamw_update(b.wrap(p), b.wrap(grads.at(p)), state, p_lr, step, clip, o.adamw);
    slot.new_param = outs[0].id;
    b.output("update/" + name, outs[0]);
    for (size_t i = 0; i < slots.size(); ++i) {
      slot.new_state.push_back(outs[i + 1].id);
      b.output(fmt::format("update/optimizer/{}/{}", name, slots[i].first), outs[i + 1]);
    }
    t.slots.push_back(std::move(slot));
  }
}

// Each balance bias as an optimizer slot without state: its update is the layer's next value,
// written back by the executors as any parameter's update is.
void add_balance_updates(TrainingGraph& t) {
  Graph& g = t.model.graph;
  for (const MoeLayerInfo& l : t.model.moe_layers) {
    if (!l.balance_bias.valid()) continue;
    SY_CHECK(l.balance_bias_next.valid(), "{}: a training graph's balance bias has no next value", l.scope);
    g.outputs.push_back(GraphOutput{"update/" + g.value(l.balance_bias).name, l.balance_bias_next});
    t.slots.push_back(OptimizerSlot{l.balance_bias, l.balance_bias_next, {}, {}});
  }
  std::sort(t.slots.begin(), t.slots.end(), [](const OptimizerSlot& a, const OptimizerSlot& b) { return a.param.v < b.param.v; });
}

}  // namespace

TrainingGraph build_training_graph(const ModelConfig& config, const TrainConfig& train,
                                   const TrainingGraphOptions& opts) {
  BuildOptions bo;
  bo.mode = opts.mode;
  bo.batch = train.batch;
  bo.batch_split = routing_batch_split(opts.mesh, opts.layout);
  bo.loss_weights = true;
  bo.moe_metrics = opts.moe_metrics;
  bo.accuracy = opts.mode == Mode::eval;  // a full argmax pass over the logits: evaluation only
  TrainingGraph t;
  t.model = build_model(config, train, bo);
  Graph& g = t.model.graph;
  t.loss = output_of(g, "loss");
  if (opts.mode == Mode::eval) {
    t.frozen = g.parameters();
    return t;
  }
  // Frozen parameters (train.trainable) are left out of gradients() and the optimizer: no
  // backward work for their weights, no state, no update. Balance biases are not differentiated
  // either: their update is the balancing rule the MoE layer computed (add_balance_updates).
  std::set<ValueId> balance;
  for (const MoeLayerInfo& l : t.model.moe_layers)
    if (l.balance_bias.valid()) balance.insert(l.balance_bias);
  std::vector<ValueId> params;
  for (ValueId p : g.parameters()) {
    if (balance.count(p)) continue;
    (parameter_is_trainable(train.trainable, g.value(p).name) ? params : t.frozen).push_back(p);
  }
  if (params.empty())
    throw InputError(fmt::format("{}: train.trainable = \"{}\" matches no parameter of the model; nothing would train",
                                 config.source.empty() ? config.name : config.source, train.trainable));
  const auto grads = gradients(g, params, train.remat);
  if (opts.optimizer) {
    add_optimizer(t, config, train.optimizer, params, grads);
    // The step returns the updated parameters and state, not the gradients (as a jitted training
    // step does): each gradient is free once its update and norm term have read it.
    std::erase_if(g.outputs, [](const GraphOutput& o) { return o.name.starts_with("grad/"); });
    add_balance_updates(t);
  } else {
    t.frozen.insert(t.frozen.end(), balance.begin(), balance.end());
    std::sort(t.frozen.begin(), t.frozen.end());
  }
  return t;
}

}  // namespace sy
