#include "executor/train/trainer.hpp"

#include "executor/mpi/communicator.hpp"
#include "executor/mpi/mesh_executor.hpp"
#include "executor/train/schedule.hpp"
#include "graph/models/training_graph.hpp"
#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

namespace sy {
namespace {

ValueId output_of(const Graph& g, const std::string& name) {
  auto v = g.find_output(name);
  SY_CHECK(v.has_value(), "training graph has no output '{}'", name);
  return *v;
}

double scalar(const MeshExecutor& ex, ValueId v) { return ex.get(v).data.at(0); }

// The step's model inputs: tokens from `batch`, targets padded to the model's length, and the
// per-target weights normalised to sum to 1 over the real targets.
void feed(MeshExecutor& ex, const ModelGraph& m, const ModelConfig& c, const TrainConfig& train, const data::Batch& batch) {
  const int64_t B = m.batch;
  const int64_t t_out = train.target_length;
  const bool enc_dec = c.has_encoder();
  const int64_t t_in = enc_dec ? train.input_length : train.target_length;
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
    x.rms_logit = std::sqrt(std::max(0.0, scalar(ex, output_of(m.graph, p + "logit_mean_square"))));
    x.logsumexp = scalar(ex, output_of(m.graph, p + "logsumexp"));
    x.softmax_roundoff = scalar(ex, output_of(m.graph, p + "softmax_roundoff"));
    x.top1_flip = scalar(ex, output_of(m.graph, p + "top1_flip"));
    if (const auto g = m.graph.find_output(p + "router_grad_norm_squared"))
      x.router_grad_norm = std::sqrt(std::max(0.0, scalar(ex, *g)));
    x.fraction_dropped = tensor_values(ex, output_of(m.graph, p + "fraction_dropped"));
    x.expert_load = tensor_values(ex, output_of(m.graph, p + "expert_load"));
    if (l.balance_bias_next.valid()) x.balance_bias = tensor_values(ex, l.balance_bias_next);
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

// The training graph's options on the communicator's mesh (without one: `routing_mesh`, whose
// data-parallel split then only sets the routing groups).
TrainingGraphOptions graph_options(Mode mode, const ExecutorOptions& exec, const Layout& layout, const Mesh& routing_mesh) {
  TrainingGraphOptions o;
  o.mode = mode;
  o.mesh = exec.communicator ? exec.communicator->mesh() : routing_mesh;
  o.layout = layout;
  return o;
}

}  // namespace

struct Trainer::Impl {
  RunConfig config;
  int64_t total_steps;
  ExecutorOptions exec;
  Layout layout;  // with exec.communicator: how the programs split over its mesh
  Mesh routing_mesh;  // without one: the mesh whose data-parallel split sets the routing groups
  TrainingGraph tg;   // graph/models/training_graph.hpp
  ModelGraph& train;  // tg.model
  std::unique_ptr<MeshExecutor> ex;
  ModelGraph eval;
  std::unique_ptr<MeshExecutor> eval_ex;
  int64_t step = 0;
  std::function<void(NodeId, double, double)> observer;

  Impl(const RunConfig& c, int64_t total, ExecutorOptions e, const Layout& l, const Mesh& rm)
      : config(c), total_steps(total), exec(std::move(e)), layout(l), routing_mesh(rm),
        tg(build_training_graph(config.model, config.train, graph_options(Mode::train, exec, layout, routing_mesh))),
        train(tg.model) {
    ExecutorOptions opts = exec;
    for (const OptimizerSlot& s : tg.slots) {  // each run ends with the parameters and states updated
      opts.updates.push_back({s.param, s.new_param});
      for (size_t i = 0; i < s.state.size(); ++i) opts.updates.push_back({s.state[i], s.new_state[i]});
    }
    opts.on_op = [this](NodeId n, double t0, double t1) {
      if (observer) observer(n, t0, t1);
    };
    ex = std::make_unique<MeshExecutor>(train.graph, layout, opts);
    initialise();
  }

  // Parameters from initial_value (by the f32 graph's ids), optimizer state zero.
  void initialise() {
    const Graph& g = train.graph;
    std::map<std::string, ParamInit> init;
    if (config.train.precision == DType::f32) {
      for (const ParamInit& p : train.init) init[g.value(p.param).name] = p;
    } else {
      TrainConfig f32 = config.train;
      f32.precision = DType::f32;
      f32.activation_dtype = DType::f32;
      const ModelGraph m =
          build_training_graph(config.model, f32, graph_options(Mode::train, exec, layout, routing_mesh)).model;
      for (const ParamInit& p : m.init) init[m.graph.value(p.param).name] = p;
    }
    for (const OptimizerSlot& s : tg.slots) {
      const Value& v = g.value(s.param);
      ex->set(s.param, initial_value(init.at(v.name), v.type, config.train.seed));
      for (ValueId st : s.state) std::memset(ex->data(st), 0, static_cast<size_t>(num_bytes(g.type(st))));
    }
    for (ValueId p : tg.frozen) {
      const Value& v = g.value(p);
      ex->set(p, initial_value(init.at(v.name), v.type, config.train.seed));
    }
  }

  // Every parameter, trainable or frozen, in id order.
  std::vector<ValueId> all_parameters() const { return train.graph.parameters(); }

  MeshExecutor& evaluator() {
    if (!eval_ex) {
      eval = build_training_graph(config.model, config.train, graph_options(Mode::eval, exec, layout, routing_mesh)).model;
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

void check_training_layout(const ModelConfig& config, const TrainConfig& train, const Mesh& mesh, const Layout& layout) {
  // Built for one device: a layout that does not divide the batch is reported as such, before
  // the routing groups (which follow the split) could not be formed.
  TrainingGraphOptions o;
  o.optimizer = false;
  check_layout(build_training_graph(config, train, o).model.graph, mesh, layout);
}

Trainer::Trainer(const RunConfig& config, int64_t total_steps, ExecutorOptions exec, const Layout& layout,
                 const Mesh& routing_mesh)
    : impl_(std::make_unique<Impl>(config, total_steps, std::move(exec), layout, routing_mesh)) {}
Trainer::~Trainer() = default;

const RunConfig& Trainer::config() const { return impl_->config; }
const Graph& Trainer::graph() const { return impl_->train.graph; }
const Graph& Trainer::program() const { return impl_->ex->program(); }
int64_t Trainer::step() const { return impl_->step; }
const MemoryPlanStats& Trainer::memory() const { return impl_->ex->memory(); }
void Trainer::set_step(int64_t step) { impl_->step = step; }
int64_t Trainer::inputs_length() const {
  const RunConfig& c = impl_->config;
  return c.model.has_encoder() ? c.train.input_length : c.train.target_length;
}
int64_t Trainer::targets_length() const { return impl_->config.train.target_length; }
int64_t Trainer::tokens_per_step() const {
  const TrainConfig& t = impl_->config.train;
  return t.batch * (t.input_length + t.target_length);
}

StepMetrics Trainer::train_step(const data::Batch& batch) {
  Impl& m = *impl_;
  MeshExecutor& ex = *m.ex;
  const int64_t t = m.step;
  const int64_t global = m.config.train.step_offset + t;  // the step a fine-tuning run continues from
  const double lr = learning_rate(m.config.train.optimizer, global, m.total_steps);
  feed(ex, m.train, m.config.model, m.config.train, batch);
  *static_cast<int32_t*>(ex.data(m.train.step)) = static_cast<int32_t>(global);
  *static_cast<float*>(ex.data(m.tg.lr)) = static_cast<float>(lr);
  ex.run();

  StepMetrics r;
  r.step = t + 1;
  r.loss = scalar(ex, m.tg.loss);
  r.cross_entropy = scalar(ex, m.train.cross_entropy);
  if (m.train.aux_loss.valid()) r.aux_loss = scalar(ex, m.train.aux_loss);
  if (m.train.z_loss.valid()) r.z_loss = scalar(ex, m.train.z_loss);
  r.grad_norm = std::sqrt(scalar(ex, m.tg.grad_norm_squared));
  r.clip_scale = scalar(ex, m.tg.clip_scale);
  r.learning_rate = static_cast<float>(lr);
  r.tokens = tokens_per_step();
  r.target_tokens = batch.target_tokens();
  r.moe = read_moe(ex, m.train);
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
    feed(ex, m.eval, m.config.model, m.config.train, batch);
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
        acc.rms_logit += layers[i].rms_logit;
        acc.logsumexp += layers[i].logsumexp;
        acc.softmax_roundoff = std::max(acc.softmax_roundoff, layers[i].softmax_roundoff);
        acc.top1_flip += layers[i].top1_flip;
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
  for (MoeLayerMetrics& l : r.moe) {  // means over batches (max_logit, softmax_roundoff: the largest seen)
    l.aux_loss /= nb;
    l.z_loss /= nb;
    l.router_entropy /= nb;
    l.rms_logit /= nb;
    l.logsumexp /= nb;
    l.top1_flip /= nb;
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
  for (const OptimizerSlot& s : m.tg.slots)
    for (ValueId st : s.state) out.push_back({g.value(st).name, g.type(st), static_cast<float*>(m.ex->data(st))});
  return out;
}

void Trainer::set_op_observer(std::function<void(NodeId, double, double)> f) { impl_->observer = std::move(f); }

}  // namespace sy
