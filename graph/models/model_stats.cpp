#include "graph/models/model_stats.hpp"

#include "graph/checked_math.hpp"
#include "graph/autodiff.hpp"
#include "graph/op_def.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <span>

namespace sy {
namespace {

std::vector<std::string_view> split_path(std::string_view s) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t slash = s.find('/', start);
    parts.push_back(s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return parts;
    start = slash + 1;
  }
}

double node_flops(const Graph& g, const Node& n) {
  std::vector<TensorType> in, out;
  for (ValueId v : n.inputs) in.push_back(g.type(v));
  for (ValueId v : n.outputs) out.push_back(g.type(v));
  return op_def(n.kind).cost(in, out, n.attrs).flops;
}

// The parameter behind an einsum operand: the operand itself, or the parameter it is a cast of
// (bf16 weights); invalid otherwise.
ValueId weight_behind(const Graph& g, ValueId v) {
  for (;;) {
    const Value& val = g.value(v);
    if (val.role == ValueRole::parameter) return v;
    if (!val.producer.valid()) return ValueId{};
    const Node& n = g.node(val.producer);
    if (n.kind != OpKind::cast) return ValueId{};
    v = n.inputs[0];
  }
}

bool in_encoder(std::string_view scope_or_name) { return split_path(scope_or_name).front() == "encoder"; }

// Experts each token is processed by in one MoE layer (the published convention's k).
double experts_per_token(const MoeConfig& m, const MoeLayerInfo* layer) {
  switch (m.router) {
    case RouterKind::top_k:
    case RouterKind::noisy_top_k: return static_cast<double>(m.k);
    case RouterKind::hash: return 1.0;
    case RouterKind::expert_choice:  // each expert takes C of the S tokens of a group
      if (layer && layer->group_size > 0)
        return static_cast<double>(layer->capacity) * static_cast<double>(m.experts) / static_cast<double>(layer->group_size);
      return m.cf_train;
  }
  return static_cast<double>(m.k);
}

// The fraction of parameter `p` a token multiplies by: (experts per token)/E for expert weights.
double active_fraction(const ModelConfig& c, const ModelGraph& m, const Value& p) {
  if (component_of(p.name) != Component::experts) return 1.0;
  const bool encoder = in_encoder(p.name);
  const MoeConfig& cfg = encoder ? c.moe_encoder : c.moe_decoder;
  const MoeLayerInfo* layer = nullptr;
  for (const MoeLayerInfo& l : m.moe_layers)
    if (p.name.rfind(l.scope + "/", 0) == 0) layer = &l;
  return std::min(1.0, experts_per_token(cfg, layer) / static_cast<double>(cfg.experts));
}

ComponentStats& entry(ModelStats& s, Component c) { return s.components[static_cast<size_t>(c)]; }

}  // namespace

std::string_view component_name(Component c) {
  switch (c) {
    case Component::attention: return "attention";
    case Component::dense_ffn: return "dense_ffn";
    case Component::experts: return "experts";
    case Component::router: return "router";
    case Component::dispatch: return "dispatch";
    case Component::embedding: return "embedding";
    case Component::other: return "other";
  }
  return "?";
}

Component component_of(std::string_view scope_or_name) {
  const auto parts = split_path(scope_or_name);
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string_view p = parts[i];
    if (p == "moe") {
      const std::string_view next = i + 1 < parts.size() ? parts[i + 1] : std::string_view();
      if (next == "experts") return Component::experts;
      if (next == "dispatch") return Component::dispatch;
      if (next == "shared_experts") return Component::dense_ffn;  // always on: a dense FFN beside the experts
      return Component::router;
    }
    if (p.size() >= 4 && p.substr(p.size() - 4) == "norm") return Component::other;
    if (p == "attention" || p == "cross_attention" || p == "relative_position_bias" || p == "causal_mask")
      return Component::attention;
    if (p == "ffn" || p == "extra_ffn") return Component::dense_ffn;
    if (i == 0 && (p == "embedding" || p == "logits")) return Component::embedding;
  }
  return Component::other;
}

ModelStats model_stats(const ModelConfig& c, const TrainConfig& train, const ModelGraph& m) {
  const Graph& g = m.graph;
  ModelStats s;
  s.model = c.name;
  s.architecture = c.architecture;
  s.mode = m.mode;
  s.batch = m.batch;
  s.input_length = c.has_encoder() ? train.input_length : 0;
  s.target_length = train.target_length;
  s.tokens_per_sequence = s.input_length + s.target_length;
  s.moe_layers = m.moe_layers;
  for (Component comp : kAllComponents) s.components.push_back(ComponentStats{comp});
  const double batch = static_cast<double>(m.batch);

  for (const Value& v : g.values) {
    if (v.role != ValueRole::parameter) continue;
    const int64_t n = num_elements(v.type.shape);
    const double active = static_cast<double>(n) * active_fraction(c, m, v);
    ComponentStats& e = entry(s, component_of(v.name));
    e.parameters = checked_add(e.parameters, n, "a component's parameter count");
    e.active_parameters += active;
    s.parameters = checked_add(s.parameters, n, "the model's parameter count");
    s.active_parameters += active;
    ++s.parameter_tensors;
  }

  for (const Node& n : g.nodes) {
    const double f = node_flops(g, n) / batch;
    ComponentStats& e = entry(s, component_of(n.scope));
    e.graph_training_flops += f;
    s.graph_training_flops += f;
    if (n.backward) {
      ++s.backward_nodes;
      continue;
    }
    ++s.forward_nodes;
    e.graph_forward_flops += f;
    s.graph_forward_flops += f;
    if (n.kind != OpKind::einsum) continue;
    e.graph_forward_matmul_flops += f;
    s.graph_forward_matmul_flops += f;
    // Published convention: 2 · |W| · active fraction · tokens of the node's stack, router
    // weights excluded.
    if (component_of(n.scope) == Component::router) continue;
    const double tokens = static_cast<double>(in_encoder(n.scope) ? train.input_length : train.target_length);
    for (ValueId in : n.inputs) {
      const ValueId wid = weight_behind(g, in);
      if (!wid.valid()) continue;
      const Value& w = g.value(wid);
      const double pf = 2.0 * static_cast<double>(num_elements(w.type.shape)) * active_fraction(c, m, w) * tokens;
      e.published_forward_flops += pf;
      s.published_forward_flops += pf;
    }
  }
  if (s.backward_nodes == 0) {  // no backward pass counted
    s.graph_training_flops = 0;
    for (ComponentStats& e : s.components) e.graph_training_flops = 0;
  }
  s.published_training_flops = 3.0 * s.published_forward_flops;
  return s;
}

ModelStats model_stats(const ModelConfig& c, const TrainConfig& train, const StatsOptions& opts) {
  BuildOptions bo;
  bo.mode = opts.mode;
  bo.batch = opts.batch;
  bo.moe_metrics = false;
  ModelGraph m = build_model(c, train, bo);
  if (opts.training) {
    gradients(m.graph);
  }
  return model_stats(c, train, m);
}

std::string format_count(double v, bool flops) {
  struct Unit {
    double scale;
    const char* suffix;
  };
  static constexpr Unit kFlopUnits[] = {{1e15, "P"}, {1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "K"}};
  static constexpr Unit kParamUnits[] = {{1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "K"}};
  const auto units = flops ? std::span<const Unit>(kFlopUnits) : std::span<const Unit>(kParamUnits);
  for (const Unit& u : units)
    if (std::abs(v) >= u.scale) {
      const double x = v / u.scale;
      return fmt::format("{:.{}f}{}", x, x >= 100 ? 1 : 2, u.suffix);
    }
  return fmt::format("{:.0f}", v);
}

std::string format_model_stats(const ModelStats& s) {
  auto fl = [](double v) { return format_count(v, true); };
  auto pa = [](double v) { return format_count(v, false); };
  std::string out;
  const std::string seq = s.architecture == Architecture::encoder_decoder
                              ? fmt::format("{} input + {} target tokens", s.input_length, s.target_length)
                              : fmt::format("{} tokens", s.target_length);
  out += fmt::format("model {} ({}), {} graph, batch {} sequences of {}\n", s.model, architecture_name(s.architecture),
                     s.mode == Mode::train ? "train" : "eval", s.batch, seq);
  if (!s.moe_layers.empty()) {
    out += fmt::format("MoE layers: {}", s.moe_layers.size());
    const MoeLayerInfo& l = s.moe_layers.front();
    out += fmt::format(" (first: {}: {} groups of {} tokens, capacity {})\n", l.scope, l.groups, l.group_size, l.capacity);
  }
  out += fmt::format("parameters: {} total ({}), {} active per token (experts counted (experts per token)/E), {} tensors\n",
                     pa(static_cast<double>(s.parameters)), s.parameters, pa(s.active_parameters), s.parameter_tensors);
  out += fmt::format("graph: {} forward nodes{}\n", s.forward_nodes,
                     s.backward_nodes ? fmt::format(", {} backward nodes", s.backward_nodes) : std::string());
  out += "\nFLOPs per sequence            forward   per token   training\n";
  out += fmt::format("  published convention      {:>9}   {:>9}   {:>9}   (2 · active weights · tokens of their stack)\n",
                     fl(s.published_forward_flops), fl(s.per_token(s.published_forward_flops)),
                     fl(s.published_training_flops));
  out += fmt::format("  graph, every op           {:>9}   {:>9}   {:>9}\n", fl(s.graph_forward_flops),
                     fl(s.per_token(s.graph_forward_flops)),
                     s.graph_training_flops > 0 ? fl(s.graph_training_flops) : std::string("-"));
  out += fmt::format("  graph, einsums only       {:>9}   {:>9}\n", fl(s.graph_forward_matmul_flops),
                     fl(s.per_token(s.graph_forward_matmul_flops)));
  out += "\ncomponent      parameters      active   fwd (published)   fwd (graph)   fwd (graph einsums)   training (graph)\n";
  for (const ComponentStats& e : s.components)
    out += fmt::format("  {:<11} {:>11}  {:>10}   {:>15}   {:>11}   {:>19}   {:>16}\n", component_name(e.component),
                       pa(static_cast<double>(e.parameters)), pa(e.active_parameters), fl(e.published_forward_flops),
                       fl(e.graph_forward_flops), fl(e.graph_forward_matmul_flops),
                       s.graph_training_flops > 0 ? fl(e.graph_training_flops) : std::string("-"));
  return out;
}

nlohmann::ordered_json to_json(const ModelStats& s) {
  using J = nlohmann::ordered_json;
  J j = {{"model", s.model},
         {"architecture", architecture_name(s.architecture)},
         {"mode", s.mode == Mode::train ? "train" : "eval"},
         {"batch", s.batch},
         {"input_length", s.input_length},
         {"target_length", s.target_length},
         {"tokens_per_sequence", s.tokens_per_sequence},
         {"parameters", s.parameters},
         {"parameter_tensors", s.parameter_tensors},
         {"active_parameters", s.active_parameters},
         {"forward_nodes", s.forward_nodes},
         {"backward_nodes", s.backward_nodes}};
  j["flops_per_sequence"] = {{"published_forward", s.published_forward_flops},
                             {"published_training", s.published_training_flops},
                             {"graph_forward", s.graph_forward_flops},
                             {"graph_forward_matmul", s.graph_forward_matmul_flops},
                             {"graph_training", s.graph_training_flops}};
  j["flops_per_token"] = {{"published_forward", s.per_token(s.published_forward_flops)},
                          {"published_training", s.per_token(s.published_training_flops)},
                          {"graph_forward", s.per_token(s.graph_forward_flops)},
                          {"graph_forward_matmul", s.per_token(s.graph_forward_matmul_flops)},
                          {"graph_training", s.per_token(s.graph_training_flops)}};
  J comps = J::array();
  for (const ComponentStats& e : s.components)
    comps.push_back({{"component", component_name(e.component)},
                     {"parameters", e.parameters},
                     {"active_parameters", e.active_parameters},
                     {"published_forward_flops", e.published_forward_flops},
                     {"graph_forward_flops", e.graph_forward_flops},
                     {"graph_forward_matmul_flops", e.graph_forward_matmul_flops},
                     {"graph_training_flops", e.graph_training_flops}});
  j["components"] = comps;
  J layers = J::array();
  for (const MoeLayerInfo& l : s.moe_layers)
    layers.push_back({{"scope", l.scope},
                      {"decoder", l.decoder},
                      {"groups", l.groups},
                      {"group_size", l.group_size},
                      {"capacity", l.capacity}});
  j["moe_layers"] = layers;
  return j;
}

}  // namespace sy
