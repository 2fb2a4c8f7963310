#include "simulator/model_step.hpp"

#include "graph/models/model_stats.hpp"

#include <fmt/format.h>

#include <numeric>

namespace sy {

namespace {

// A reduced build keeps one layer of each kind per stack: a dense model one layer; an MoE model
// with a sparse layer every `every` layers one dense and one sparse layer (the build then uses
// every = 2; every = 1 keeps one sparse layer). Stacks whose layer count is not a multiple of
// `every` are kept whole. With first_dense > 0 (every = 1 only) the build keeps one dense layer
// (first_dense = 1) and one sparse one.
bool reducible(const ModelConfig& c) {
  if (c.moe_first_dense > 0) return c.moe_every == 1;
  const int64_t period = c.moe_every > 0 ? c.moe_every : 1;
  return c.decoder_layers % period == 0 && (!c.has_encoder() || c.encoder_layers % period == 0);
}
int64_t kept_layers(const ModelConfig& c) { return c.moe_every > 1 || c.moe_first_dense > 0 ? 2 : 1; }

// "encoder/layer_03/moe/experts" -> ("encoder", 3); an optimizer scope names its parameter:
// "optimizer/encoder/layer_03/moe/experts/wi" -> ("encoder", 3); anything else -> ("", -1).
std::pair<std::string, int64_t> layer_of(std::string scope) {
  if (scope.starts_with("optimizer/")) scope = scope.substr(10);
  const size_t slash = scope.find('/');
  if (slash == std::string::npos) return {"", -1};
  const std::string rest = scope.substr(slash + 1);
  if (rest.rfind("layer_", 0) != 0) return {"", -1};
  const size_t end = rest.find('/');
  return {scope.substr(0, slash), std::stoll(rest.substr(6, end == std::string::npos ? std::string::npos : end - 6))};
}

}  // namespace

TrainingStep build_training_step(const ModelConfig& c, const TrainConfig& train, const TrainingGraphOptions& opts,
                                 bool reduced) {
  ModelConfig cfg = c;
  reduced = reduced && reducible(c);
  if (reduced) {
    if (cfg.has_encoder()) cfg.encoder_layers = std::min(c.encoder_layers, kept_layers(c));
    cfg.decoder_layers = std::min(c.decoder_layers, kept_layers(c));
    if (c.moe_every > 1) cfg.moe_every = 2;
    if (c.moe_first_dense > 0) cfg.moe_first_dense = 1;
  }
  TrainingStep step;
  step.training = build_training_graph(cfg, train, opts);

  // Published FLOPs of the full model (a forward-only count of the full config; it builds the whole
  // forward graph, so a reduced build, made for layout search, skips it).
  if (!reduced) {
    StatsOptions so;
    so.training = false;
    const ModelStats stats = model_stats(c, train, so);
    step.model_flops = stats.published_training_flops * static_cast<double>(stats.batch);
    step.tokens = static_cast<double>(stats.batch * stats.tokens_per_sequence);
  }

  step.weights.assign(step.graph().nodes.size(), 1.0);
  if (reduced)
    for (const Node& n : step.graph().nodes) {
      const auto [stack, index] = layer_of(n.scope);
      if (index < 0) continue;
      // Layer `index` of the reduced stack stands for the full stack's layers of its kind.
      const int64_t full = stack == "encoder" ? c.encoder_layers : c.decoder_layers;
      int64_t sparse = 0;
      for (int64_t i = 0; i < full; ++i) sparse += c.is_sparse_layer(i) ? 1 : 0;
      const bool is_sparse = cfg.is_sparse_layer(index);
      step.weights[static_cast<size_t>(n.id.v)] = static_cast<double>(is_sparse ? sparse : full - sparse);
    }
  return step;
}

}  // namespace sy
