#include "executor/train/metrics.hpp"

#include "executor/data/corpus.hpp"
#include "graph/error.hpp"
#include "graph/file_io.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace sy {
namespace {

using Json = nlohmann::ordered_json;

Json number(double x) { return std::isfinite(x) ? Json(x) : Json(nullptr); }

Json numbers(const std::vector<double>& v) {
  Json a = Json::array();
  for (double x : v) a.push_back(number(x));
  return a;
}

Json moe_json(const std::vector<MoeLayerMetrics>& layers) {
  Json j = Json::object();
  for (const MoeLayerMetrics& l : layers) {
    const LoadSummary s = load_summary(l.expert_load);
    Json layer = {{"aux_loss", number(l.aux_loss)},
                  {"z_loss", number(l.z_loss)},
                  {"router_entropy", number(l.router_entropy)},
                  {"max_logit", number(l.max_logit)},
                  {"rms_logit", number(l.rms_logit)},
                  {"logsumexp", number(l.logsumexp)},
                  {"softmax_roundoff", number(l.softmax_roundoff)},
                  {"top1_flip", number(l.top1_flip)},
                  {"router_grad_norm", number(l.router_grad_norm)},
                  {"fraction_dropped", numbers(l.fraction_dropped)},
                  {"expert_load", numbers(l.expert_load)},
                  {"load",
                   {{"min", number(s.min)}, {"max", number(s.max)}, {"mean", number(s.mean)}, {"std", number(s.std)},
                    {"p50", number(s.p50)}, {"p90", number(s.p90)}, {"p99", number(s.p99)},
                    {"overload", number(s.overload)}}}};
    if (!l.balance_bias.empty()) layer["balance_bias"] = numbers(l.balance_bias);
    j[l.scope] = std::move(layer);
  }
  return j;
}

Json eval_json(const EvalMetrics& eval) {
  Json e = {{"neg_log_perplexity", number(eval.neg_log_perplexity)},
            {"accuracy", number(eval.accuracy)},
            {"target_tokens", eval.target_tokens},
            {"batches", eval.batches}};
  if (!eval.moe.empty()) e["moe"] = moe_json(eval.moe);
  return e;
}

}  // namespace

LoadSummary load_summary(const std::vector<double>& load) {
  LoadSummary s;
  if (load.empty()) return s;
  std::vector<double> sorted = load;
  std::sort(sorted.begin(), sorted.end());
  const auto n = static_cast<double>(sorted.size());
  double sum = 0, sq = 0;
  for (double x : sorted) sum += x;
  s.mean = sum / n;
  for (double x : sorted) sq += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(sq / n);
  s.min = sorted.front();
  s.max = sorted.back();
  auto rank = [&](double q) {  // nearest rank: the ⌈q·n⌉-th smallest, at least the first
    const auto r = static_cast<size_t>(std::ceil(q * n));
    return sorted[std::max<size_t>(r, 1) - 1];
  };
  s.p50 = rank(0.5);
  s.p90 = rank(0.9);
  s.p99 = rank(0.99);
  s.overload = s.mean > 0 ? s.max / s.mean : 0.0;
  return s;
}

std::string metrics_line(const StepMetrics& m, int64_t epoch, const EvalMetrics* eval, const StepTiming& t) {
  Json j = {{"step", m.step},
            {"epoch", epoch},
            {"loss", number(m.loss)},
            {"cross_entropy", number(m.cross_entropy)},
            {"aux_loss", number(m.aux_loss)},
            {"z_loss", number(m.z_loss)},
            {"grad_norm", number(m.grad_norm)},
            {"clip_scale", number(m.clip_scale)},
            {"learning_rate", number(m.learning_rate)},
            {"tokens", m.tokens},
            {"target_tokens", m.target_tokens}};
  if (!m.moe.empty()) j["moe"] = moe_json(m.moe);
  if (eval) j["eval"] = eval_json(*eval);
  j[std::string(kTimingKeys[0])] = number(t.step_seconds);
  j[std::string(kTimingKeys[1])] = number(t.tokens_per_s);
  j[std::string(kTimingKeys[2])] = number(t.elapsed_seconds);
  return j.dump();
}

void write_status(const std::filesystem::path& dir, std::string_view status, int64_t step, std::string_view reason,
                  const EvalMetrics* eval) {
  Json j = {{"status", status}, {"step", step}};
  if (!reason.empty()) j["reason"] = reason;
  if (eval) j["eval"] = eval_json(*eval);
  write_file_atomic(dir / "status.json", j.dump(2) + "\n");
}

void truncate_metrics(const std::filesystem::path& file, int64_t step) {
  if (!std::filesystem::exists(file)) return;
  // Read whole (checked: a read error must not become an empty file), keep the lines up to `step`,
  // and rewrite atomically: on a full disk the old file stays as it was.
  const std::string text = read_file(file);
  std::string kept;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + at, end - at);
    at = end + 1;
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() > step) break;
    kept += line;
    kept += '\n';
  }
  if (kept.size() == text.size()) return;  // nothing to drop: no rewrite
  write_file_atomic(file, kept);
}

void write_routing_by_pos(const std::filesystem::path& file, const EvalMetrics& eval, const std::vector<std::string>& pos_tags) {
  Json layers = Json::array();
  for (const MoeLayerMetrics& l : eval.moe) {
    if (l.tokens_by_pos.empty()) continue;
    std::vector<std::vector<int64_t>> counts = l.tokens_by_pos;
    counts.resize(pos_tags.size(), std::vector<int64_t>(l.expert_load.size(), 0));
    layers.push_back({{"scope", l.scope}, {"experts", l.expert_load.size()}, {"counts", counts}});
  }
  if (layers.empty()) return;
  Json tags = Json::array();
  for (const std::string& t : pos_tags)
    tags.push_back({{"tag", t}, {"universal", std::string(data::universal_pos_name(data::universal_pos(t)))}});
  Json j = {{"pos_tags", tags}, {"layers", layers}};
  write_file_atomic(file.string(), j.dump() + "\n");
}

}  // namespace sy
