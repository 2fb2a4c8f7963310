#include "executor/train/trainer.hpp"

#include "executor/mpi/mesh_executor.hpp"
#include "executor/train/schedule.hpp"
#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

namespace sy {
namespace {

// A parameter, its optimizer state leaves and the values the update node writes.
struct ParamSlot {
  ValueId param, new_param;
  std::vector<ValueId> state, new_state;
};

// Training steps leave out the accuracy metric (a full argmax pass over the logits); evaluation
// reports it.
BuildOptions model_options(Mode mode, int64_t batch) {
  BuildOptions o;
  o.mode = mode;
  o.batch = batch;
  o.loss_weights = true;
  o.moe_metrics = true;
  o.accuracy = mode == Mode::eval;
  return o;
}

ValueId output_of(const Graph& g, const std::string& name) {
  auto v = g.find_output(name);
  SY_CHECK(v.has_value(), "training graph has no output '{}'", name);
  return *v;
}

double scalar(const MeshExecutor& ex, ValueId v) { return ex.get(v).data.at(0); }

// The names the optimizer gives the state of `param` (see ops/optimizer.cpp), with their shapes.
std::vector<std::pair<std::string, Shape>> state_slots(const OptimizerConfig& o, const Shape& param) {
  if (o.kind == OptimizerKind::adamw) return {{"m", param}, {"v", param}};
  if (!o.factored || param.size() < 2) return {{"v", param}};
  Shape row = param, col = param;
  row.pop_back();
  col.erase(col.end() - 2);
  return {{"v_row", row}, {"v_col", col}};
}

// The step's model inputs: tokens from `batch`, targets padded to the model's length, and the
// per-target weights normalised to sum to 1 over the real targets.
void feed(MeshExecutor& ex, const ModelGraph& m, const ModelConfig& c, const data::Batch& batch) {
  const int64_t B = m.batch;
  const int64_t t_out = c.target_length;
  const bool enc_dec = c.has_encoder();
  const int64_t t_in = enc_dec ? c.input_length : c.target_length;
  SY_CHECK(batch.batch == B, "batch has {} rows, the model takes {}", batch.batch, B);
  SY_CHECK(batch.inputs_length == t_in, "batch inputs have length {}, the model takes {}", batch.inputs_length, t_in);
  SY_CHECK(batch.targets_length <= t_out, "batch targets have length {}, the model takes at most {}",
           batch.targets_length, t_out);
  const int64_t bt = batch.targets_length;
  auto* targets = static_cast<int32_t*>(ex.data(m.decoder_target_tokens));
  auto* dec_in = static_cast<int32_t*>(ex.data(m.decoder_input_tokens));
  auto* weights = static_cast<float*>(ex.data(m.decoder_target_weights));
  double total = 0;
  for (float w : batch.weights) total += w;
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < t_out; ++j) {
      const size_t dst = static_cast<size_t>(r * t_out + j);
      const size_t src = static_cast<size_t>(r * bt + j);
      const bool real = j < bt;
      targets[dst] = real ? batch.targets[src] : data::kPadId;
      weights[dst] = real && total > 0 ? static_cast<float>(batch.weights[src] / total) : 0.0f;
      if (enc_dec)
        dec_in[dst] = real ? batch.decoder_inputs[src] : data::kPadId;
      else
        dec_in[dst] = batch.inputs[src];
    }
  if (enc_dec)
    std::memcpy(ex.data(m.encoder_input_tokens), batch.inputs.data(), batch.inputs.size() * sizeof(int32_t));
}

std::vector<double> tensor_values(const MeshExecutor& ex, ValueId v) { return ex.get(v).data; }

std::vector<MoeLayerMetrics> read_moe(const MeshExecutor& ex, const ModelGraph& m) {
  std::vector<MoeLayerMetrics> out;
  for (const MoeLayerInfo& l : m.moe_layers) {
    const std::string p = l.scope + "/metrics/";
    MoeLayerMetrics x;
    x.scope = l.scope;
    x.aux_loss = scalar(ex, output_of(m.graph, p + "aux_loss"));
    x.z_loss = scalar(ex, output_of(m.graph, p + "z_loss"));
    x.router_entropy = scalar(ex, output_of(m.graph, p + "router_entropy"));
    x.max_logit = scalar(ex, output_of(m.graph, p + "max_logit"));
    x.fraction_dropped = tensor_values(ex, output_of(m.graph, p + "fraction_dropped"));
    x.expert_load = tensor_values(ex, output_of(m.graph, p + "expert_load"));
    out.push_back(std::move(x));
  }
  return out;
}

// Adds each MoE layer's tokens by (POS, top expert) of one evaluation batch. The layer's tokens
// are its stream's [B, T] flattened row-major into [G, S]: the encoder's (or a decoder-only
// model's) inputs, or an encoder-decoder's decoder inputs, which are the targets shifted right.
void count_by_pos(const MeshExecutor& ex, const ModelGraph& m, const data::Batch& batch, std::vector<MoeLayerMetrics>& layers) {
  for (size_t i = 0; i < layers.size(); ++i) {
    const MoeLayerInfo& l = m.moe_layers[i];
    const auto top = m.graph.find_output(l.scope + "/metrics/top_expert");
    if (!top) continue;
    const std::vector<double> expert = tensor_values(ex, *top);  // [G, S, 1]
    const bool shifted = l.decoder && batch.objective != data::Objective::kNextToken;
    const int64_t T_batch = shifted ? batch.targets_length : batch.inputs_length;  // the model's T may be longer (padding)
    const std::vector<int32_t>& pos = shifted ? batch.targets_pos : batch.inputs_pos;
    SY_CHECK(batch.batch > 0 && static_cast<int64_t>(expert.size()) % batch.batch == 0 &&
                 static_cast<int64_t>(expert.size()) / batch.batch >= T_batch,
             "{}: {} top experts for {} rows of {} tokens", l.scope, expert.size(), batch.batch, T_batch);
    const int64_t T = static_cast<int64_t>(expert.size()) / batch.batch;
    auto& counts = layers[i].tokens_by_pos;
    for (int64_t j = 0; j < batch.batch * T; ++j) {
      const int64_t row = j / T, t = j % T;
      const int64_t src = shifted ? t - 1 : t;  // the decoder's input t is target t - 1
      if (src < 0 || src >= T_batch) continue;
      const int32_t p = pos[static_cast<size_t>(row * T_batch + src)];
      if (p < 0) continue;
      if (counts.size() <= static_cast<size_t>(p)) counts.resize(static_cast<size_t>(p) + 1, std::vector<int64_t>(layers[i].expert_load.size(), 0));
      ++counts[static_cast<size_t>(p)][static_cast<size_t>(expert[static_cast<size_t>(j)])];
    }
  }
}

void copy_value(MeshExecutor& ex, ValueId dst, ValueId src, const Graph&) { ex.copy(dst, src); }

}  // namespace

struct Trainer::Impl {
  ModelConfig config;
  int64_t total_steps;
  ExecutorOptions exec;
  Layout layout;  // with exec.communicator: how the programs split over its mesh
  ModelGraph train;
  std::unique_ptr<MeshExecutor> ex;
  std::vector<ParamSlot> slots;  // the trainable parameters
  std::vector<ValueId> frozen;    // the others (train.trainable), in id order
  ValueId lr, grad_norm_squared, clip_scale, loss;
  ModelGraph eval;
  std::unique_ptr<MeshExecutor> eval_ex;
  int64_t step = 0;
  std::function<void(NodeId, double, double)> observer;

  Impl(const ModelConfig& c, int64_t total, ExecutorOptions e, const Layout& l)
      : config(c), total_steps(total), exec(std::move(e)), layout(l) {
    train = build_model(config, model_options(Mode::train, config.batch));
    Graph& g = train.graph;
    // Frozen parameters (train.trainable) are left out of gradients() and the optimizer: no
    // backward work for their weights, no state, no update.
    std::vector<ValueId> params;
    for (ValueId p : g.parameters())
      if (parameter_is_trainable(config.trainable, g.value(p).name)) params.push_back(p);
    if (params.empty())
      throw InputError(fmt::format("{}: train.trainable = \"{}\" matches no parameter of the model; nothing would train",
                                   config.source.empty() ? config.name : config.source, config.trainable));
    const auto grads = gradients(g, params);
    build_optimizer(g, params, grads);
    for (ValueId p : g.parameters())
      if (std::none_of(slots.begin(), slots.end(), [&](const ParamSlot& s) { return s.param == p; }))
        frozen.push_back(p);
    loss = output_of(g, "loss");

    ExecutorOptions opts = exec;
    opts.on_op = [this](NodeId n, double t0, double t1) {
      if (observer) observer(n, t0, t1);
    };
    ex = std::make_unique<MeshExecutor>(g, layout, opts);
    initialise();
  }

  // Global-norm clipping and one update node per parameter, in scope "optimizer".
  void build_optimizer(Graph& g, const std::vector<ValueId>& params, const std::map<ValueId, ValueId>& grads) {
    const OptimizerConfig& o = config.optimizer;
    Builder b(g);
    ScopeGuard scope(b, "optimizer");
    Expr lr_in = b.input("optimizer/lr", {});
    lr = lr_in.id;
    Expr step_in = b.wrap(train.step);
    Expr ss;  // Σ g² over every gradient, f32 []
    for (ValueId p : params) {
      Expr gp = b.wrap(grads.at(p));
      std::vector<std::string> dims;
      for (const Dim& d : gp.shape()) dims.push_back(d.name);
      Expr term = dims.empty() ? gp * gp : sum(gp * gp, dims);
      ss = ss.b ? ss + term : term;
    }
    grad_norm_squared = ss.id;
    b.output("optimizer/grad_norm_squared", ss);
    Expr clip = fill(b, {}, 1.0);
    if (o.grad_clip > 0) {
      Expr over = greater(ss, fill(b, {}, o.grad_clip * o.grad_clip));
      clip = where(over, scale(rsqrt(ss), o.grad_clip), clip);
    }
    clip_scale = clip.id;
    b.output("optimizer/clip_scale", clip);
    AdafactorAttrs af;
    af.decay_exponent = o.decay_exponent;
    af.clip_threshold = o.clip_threshold;
    af.epsilon1 = o.epsilon1;
    af.epsilon2 = o.epsilon2;
    af.parameter_scale = o.parameter_scale;
    af.factored = o.factored;
    const AdamWAttrs aw{o.beta1, o.beta2, o.epsilon, o.weight_decay};
    for (ValueId p : params) {
      const std::string name = g.value(p).name;
      const Shape shape = g.type(p).shape;
      ParamSlot slot;
      slot.param = p;
      std::vector<Expr> state;
      const auto slots_of = state_slots(o, shape);
      for (const auto& [slot_name, slot_shape] : slots_of) {
        state.push_back(b.input(fmt::format("optimizer/{}/{}", name, slot_name), slot_shape));
        slot.state.push_back(state.back().id);
      }
      const std::vector<Expr> outs =
          o.kind == OptimizerKind::adafactor ? adafactor_update(b.wrap(p), b.wrap(grads.at(p)), state, lr_in, step_in, clip, af)
                                             : adamw_update(b.wrap(p), b.wrap(grads.at(p)), state, lr_in, step_in, clip, aw);
      slot.new_param = outs[0].id;
      b.output("update/" + name, outs[0]);
      for (size_t i = 0; i < slots_of.size(); ++i) {
        slot.new_state.push_back(outs[i + 1].id);
        b.output(fmt::format("update/optimizer/{}/{}", name, slots_of[i].first), outs[i + 1]);
      }
      slots.push_back(std::move(slot));
    }
  }

  // Parameters from initial_value (by the f32 graph's ids), optimizer state zero.
  void initialise() {
    const Graph& g = train.graph;
    std::map<std::string, ParamInit> init;
    if (config.precision == DType::f32) {
      for (const ParamInit& p : train.init) init[g.value(p.param).name] = p;
    } else {
      ModelConfig f32 = config;
      f32.precision = DType::f32;
      const ModelGraph m = build_model(f32, model_options(Mode::train, config.batch));
      for (const ParamInit& p : m.init) init[m.graph.value(p.param).name] = p;
    }
    for (const ParamSlot& s : slots) {
      const Value& v = g.value(s.param);
      ex->set(s.param, initial_value(init.at(v.name), v.type, config.seed));
      for (ValueId st : s.state) std::memset(ex->data(st), 0, static_cast<size_t>(num_bytes(g.type(st))));
    }
    for (ValueId p : frozen) {
      const Value& v = g.value(p);
      ex->set(p, initial_value(init.at(v.name), v.type, config.seed));
    }
  }

  // Every parameter, trainable or frozen, in id order.
  std::vector<ValueId> all_parameters() const { return train.graph.parameters(); }

  MeshExecutor& evaluator() {
    if (!eval_ex) {
      eval = build_model(config, model_options(Mode::eval, config.batch));
      eval_ex = std::make_unique<MeshExecutor>(eval.graph, layout, exec);
    }
    const Graph& g = train.graph;
    for (ValueId p : all_parameters()) {
      auto leaf = eval.graph.find_leaf(g.value(p).name);
      SY_CHECK(leaf.has_value(), "eval graph has no parameter '{}'", g.value(p).name);
      eval_ex->copy_from(*ex, p, *leaf);
    }
    *static_cast<int32_t*>(eval_ex->data(eval.step)) = 0;
    return *eval_ex;
  }
};

void check_training_layout(const ModelConfig& config, const Mesh& mesh, const Layout& layout) {
  check_layout(build_model(config, model_options(Mode::train, config.batch)).graph, mesh, layout);
}

Trainer::Trainer(const ModelConfig& config, int64_t total_steps, ExecutorOptions exec, const Layout& layout)
    : impl_(std::make_unique<Impl>(config, total_steps, std::move(exec), layout)) {}
Trainer::~Trainer() = default;

const ModelConfig& Trainer::config() const { return impl_->config; }
const Graph& Trainer::graph() const { return impl_->train.graph; }
const Graph& Trainer::program() const { return impl_->ex->program(); }
int64_t Trainer::step() const { return impl_->step; }
void Trainer::set_step(int64_t step) { impl_->step = step; }
int64_t Trainer::inputs_length() const {
  const ModelConfig& c = impl_->config;
  return c.has_encoder() ? c.input_length : c.target_length;
}
int64_t Trainer::targets_length() const { return impl_->config.target_length; }
int64_t Trainer::tokens_per_step() const {
  const ModelConfig& c = impl_->config;
  return c.batch * (c.input_length + c.target_length);
}

StepMetrics Trainer::train_step(const data::Batch& batch) {
  Impl& m = *impl_;
  MeshExecutor& ex = *m.ex;
  const Graph& g = m.train.graph;
  const int64_t t = m.step;
  const int64_t global = m.config.step_offset + t;  // train.step_offset: the step a fine-tuning run continues from
  const double lr = learning_rate(m.config.optimizer, global, m.total_steps);
  feed(ex, m.train, m.config, batch);
  *static_cast<int32_t*>(ex.data(m.train.step)) = static_cast<int32_t>(global);
  *static_cast<float*>(ex.data(m.lr)) = static_cast<float>(lr);
  ex.run();

  StepMetrics r;
  r.step = t + 1;
  r.loss = scalar(ex, m.loss);
  r.cross_entropy = scalar(ex, m.train.cross_entropy);
  if (m.train.aux_loss.valid()) r.aux_loss = scalar(ex, m.train.aux_loss);
  if (m.train.z_loss.valid()) r.z_loss = scalar(ex, m.train.z_loss);
  r.grad_norm = std::sqrt(scalar(ex, m.grad_norm_squared));
  r.clip_scale = scalar(ex, m.clip_scale);
  r.learning_rate = static_cast<float>(lr);
  r.tokens = tokens_per_step();
  r.target_tokens = batch.target_tokens();
  r.moe = read_moe(ex, m.train);

  for (const ParamSlot& s : m.slots) {
    copy_value(ex, s.param, s.new_param, g);
    for (size_t i = 0; i < s.state.size(); ++i) copy_value(ex, s.state[i], s.new_state[i], g);
  }
  m.step = t + 1;
  return r;
}

EvalMetrics Trainer::evaluate(data::BatchSource& source, int64_t max_batches) {
  return evaluate([&](data::Batch& b) { return source.next(b); }, max_batches);
}

EvalMetrics Trainer::evaluate(const std::function<bool(data::Batch&)>& next, int64_t max_batches) {
  Impl& m = *impl_;
  MeshExecutor& ex = m.evaluator();
  EvalMetrics r;
  double nll = 0, right = 0;
  data::Batch batch;
  while ((max_batches == 0 || r.batches < max_batches) && next(batch)) {
    const int64_t n = batch.target_tokens();
    if (n == 0) continue;
    feed(ex, m.eval, m.config, batch);
    ex.run();
    nll += scalar(ex, m.eval.cross_entropy) * static_cast<double>(n);
    right += scalar(ex, output_of(m.eval.graph, "accuracy")) * static_cast<double>(n);
    r.target_tokens += n;
    auto layers = read_moe(ex, m.eval);
    count_by_pos(ex, m.eval, batch, layers);
    if (r.moe.empty()) {
      r.moe = layers;
    } else {
      for (size_t i = 0; i < layers.size(); ++i) {
        MoeLayerMetrics& acc = r.moe[i];
        acc.aux_loss += layers[i].aux_loss;
        acc.z_loss += layers[i].z_loss;
        acc.router_entropy += layers[i].router_entropy;
        acc.max_logit = std::max(acc.max_logit, layers[i].max_logit);
        for (size_t k = 0; k < acc.fraction_dropped.size(); ++k) acc.fraction_dropped[k] += layers[i].fraction_dropped[k];
        for (size_t e = 0; e < acc.expert_load.size(); ++e) acc.expert_load[e] += layers[i].expert_load[e];
        const auto& pos = layers[i].tokens_by_pos;
        if (acc.tokens_by_pos.size() < pos.size()) acc.tokens_by_pos.resize(pos.size(), std::vector<int64_t>(acc.expert_load.size(), 0));
        for (size_t p = 0; p < pos.size(); ++p)
          for (size_t e = 0; e < pos[p].size(); ++e) acc.tokens_by_pos[p][e] += pos[p][e];
      }
    }
    ++r.batches;
  }
  if (r.target_tokens > 0) {
    r.neg_log_perplexity = -nll / static_cast<double>(r.target_tokens);
    r.accuracy = right / static_cast<double>(r.target_tokens);
  }
  const auto nb = static_cast<double>(std::max<int64_t>(1, r.batches));
  for (MoeLayerMetrics& l : r.moe) {  // means over batches (max_logit: the largest seen)
    l.aux_loss /= nb;
    l.z_loss /= nb;
    l.router_entropy /= nb;
    for (double& x : l.fraction_dropped) x /= nb;
    for (double& x : l.expert_load) x /= nb;
  }
  return r;
}

std::vector<StateTensor> Trainer::state() {
  Impl& m = *impl_;
  const Graph& g = m.train.graph;
  std::vector<StateTensor> out;
  for (ValueId p : m.all_parameters()) out.push_back({g.value(p).name, g.type(p), static_cast<float*>(m.ex->data(p))});
  for (const ParamSlot& s : m.slots)
    for (ValueId st : s.state) out.push_back({g.value(st).name, g.type(st), static_cast<float*>(m.ex->data(st))});
  return out;
}

void Trainer::set_op_observer(std::function<void(NodeId, double, double)> f) { impl_->observer = std::move(f); }

}  // namespace sy
