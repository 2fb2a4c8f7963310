#include "simulator/load_skew.hpp"

#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/models/moe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <sstream>

namespace sy {
namespace {

// Dim names of graph/models/moe.cpp.
const std::string kExperts = "experts", kGroup = "group", kCapacity{kCapacityDim}, kGroupSize = "group_size", kChoice = "k";

const char* const kSkewAllowed = "allowed: uniform, zipf:S (S ≥ 0), hot:P (1/experts ≤ P ≤ 1)";

bool parse_number(std::string_view s, double& x) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(x);
}

[[noreturn]] void bad_skew(const std::string& text, const std::string& why) {
  std::string m = "--skew '";
  m += text;
  m += "': ";
  m += why;
  m += " (";
  m += kSkewAllowed;
  m += ")";
  throw InputError(m);
}

// "decoder/layer_01/moe/experts/wi" -> "decoder/layer_01/moe"; "" when not inside an MoE layer.
std::string moe_scope(const std::string& scope) {
  if (scope.starts_with("optimizer/")) return "";
  const size_t pos = scope.find("/moe/");
  if (pos != std::string::npos) return scope.substr(0, pos + 4);
  if (scope.starts_with("moe/")) return "moe";
  return "";
}

bool touches_capacity(const std::vector<TensorType>& in, const std::vector<TensorType>& out) {
  for (const auto* ts : {&in, &out})
    for (const TensorType& t : *ts)
      if (has_dim(t.shape, kCapacity)) return true;
  return false;
}

// Loads -> the layer's overloads, drops and row ratios (the header's formulas).
void price_layer(MoeLayerLoad& l) {
  const auto E = static_cast<size_t>(l.experts);
  const double S = static_cast<double>(l.group_size), C = static_cast<double>(l.capacity);
  double total = 0, dropped = 0, rows = 0;
  for (size_t e = 0; e < E; ++e) {
    const double x = l.loads[e] * S;
    total += x;
    dropped += std::max(0.0, x - C);
    rows += std::min(x, C);
    if (l.loads[e] > l.loads[static_cast<size_t>(l.busiest_expert)]) l.busiest_expert = static_cast<int64_t>(e);
  }
  const double mean = total / S / static_cast<double>(E);
  l.expert_overload = mean > 0 ? l.loads[static_cast<size_t>(l.busiest_expert)] / mean : 1.0;
  l.dropped_fraction = total > 0 ? dropped / total : 0.0;
  const auto per = static_cast<size_t>(l.experts / l.expert_shards);
  double max_load = -1, max_rows = 0;
  for (size_t d = 0; d < static_cast<size_t>(l.expert_shards); ++d) {
    double load = 0, r = 0;
    for (size_t e = d * per; e < (d + 1) * per; ++e) {
      load += l.loads[e];
      r += std::min(l.loads[e] * S, C);
    }
    if (load > max_load) max_load = load, l.busiest_device = static_cast<int64_t>(d);
    max_rows = std::max(max_rows, r);
  }
  const double mean_device = total / S / static_cast<double>(l.expert_shards);
  l.device_overload = mean_device > 0 ? max_load / mean_device : 1.0;
  l.rows_busiest = max_rows / (static_cast<double>(per) * C);
  l.rows_mean = rows / (static_cast<double>(E) * C);
}

}  // namespace

ExpertLoads skew_model(const std::string& text) {
  (void)skew_model_loads(text, 1024, 1);  // the syntax (each layer checks its own E and k again)
  std::string source = "skew model ";
  source += text;
  return ExpertLoads{.source = source, .model = text, .by_scope = {}};
}

std::vector<double> skew_model_loads(const std::string& text, int64_t experts, int64_t k) {
  SY_CHECK(experts >= 1 && k >= 1, "skew_model_loads: {} experts, k {}", experts, k);
  const auto E = static_cast<size_t>(experts);
  const double K = static_cast<double>(k);
  std::vector<double> f(E, K / static_cast<double>(E));
  const size_t colon = text.find(':');
  const std::string name = text.substr(0, colon);
  double x = 0;
  if (name == "uniform") {
    if (colon != std::string::npos) bad_skew(text, "uniform takes no parameter");
  } else if (name == "zipf") {
    if (colon == std::string::npos || !parse_number(std::string_view(text).substr(colon + 1), x) || x < 0)
      bad_skew(text, "zipf needs an exponent S ≥ 0");
    double z = 0;
    for (size_t e = 0; e < E; ++e) z += std::pow(static_cast<double>(e + 1), -x);
    for (size_t e = 0; e < E; ++e) f[e] = K * std::pow(static_cast<double>(e + 1), -x) / z;
  } else if (name == "hot") {
    if (colon == std::string::npos || !parse_number(std::string_view(text).substr(colon + 1), x) || x > 1 ||
        x < 1.0 / static_cast<double>(E))
      bad_skew(text, fmt::format("hot needs a share P of the routed choices, {:.4g} ≤ P ≤ 1 for {} experts",
                                 1.0 / static_cast<double>(E), experts));
    f[0] = x * K;
    for (size_t e = 1; e < E; ++e) f[e] = (1 - x) * K / static_cast<double>(E - 1);
  } else {
    bad_skew(text, "unknown skew model");
  }
  if (f[0] > 1 + 1e-12)
    bad_skew(text, fmt::format("expert 0 would receive {:.4g} choices per token with k = {} over {} experts; top-k picks "
                               "distinct experts, so at most 1", f[0], k, experts));
  return f;
}

ExpertLoads read_expert_loads(const std::string& path, const std::string& steps) {
  std::string flag = "--expert-load ";
  flag += path;
  // The spec: last:N or step:S.
  const size_t colon = steps.find(':');
  double n = 0;
  const std::string kind = steps.substr(0, colon);
  if (colon == std::string::npos || (kind != "last" && kind != "step") ||
      !parse_number(std::string_view(steps).substr(colon + 1), n) || n != std::floor(n) || n < (kind == "last" ? 1 : 0))
    throw InputError(fmt::format("--expert-load-steps '{}': allowed: last:N (the mean of the last N ≥ 1 training steps) "
                                 "or step:S (the line of step S)", steps));
  if (!std::filesystem::is_regular_file(path)) throw InputError(fmt::format("{}: no such file", flag));
  std::istringstream in(read_file(path));
  std::vector<std::pair<int64_t, nlohmann::json>> lines;  // (step, "moe")
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      throw InputError(fmt::format("{}: line {} is not a metrics line of train (a JSON object with an integer \"step\")",
                                   flag, lineno));
    if (j.contains("moe") && j["moe"].is_object()) lines.emplace_back(j["step"].get<int64_t>(), j["moe"]);
  }
  if (lines.empty()) throw InputError(fmt::format("{}: no line holds MoE loads (\"moe\"); is it a metrics.jsonl of an MoE model?", flag));
  std::vector<size_t> chosen;
  if (kind == "last") {
    const size_t count = std::min(lines.size(), static_cast<size_t>(n));
    for (size_t i = lines.size() - count; i < lines.size(); ++i) chosen.push_back(i);
  } else {
    const auto it = std::find_if(lines.begin(), lines.end(), [&](const auto& l) { return l.first == static_cast<int64_t>(n); });
    if (it == lines.end())
      throw InputError(fmt::format("--expert-load-steps {}: {} has MoE loads for steps {}..{} only", steps, path,
                                   lines.front().first, lines.back().first));
    chosen.push_back(static_cast<size_t>(it - lines.begin()));
  }
  ExpertLoads out;
  for (size_t i : chosen)
    for (const auto& [scope, m] : lines[i].second.items()) {
      if (!m.contains("expert_load") || !m["expert_load"].is_array())
        throw InputError(fmt::format("{}: step {} layer {} has no \"expert_load\" array", flag, lines[i].first, scope));
      std::vector<double>& acc = out.by_scope[scope];
      const auto& a = m["expert_load"];
      if (acc.empty()) acc.assign(a.size(), 0.0);
      if (acc.size() != a.size())
        throw InputError(fmt::format("{}: layer {} changes its expert count between steps", flag, scope));
      for (size_t e = 0; e < a.size(); ++e) {
        if (!a[e].is_number() || !std::isfinite(a[e].get<double>()) || a[e].get<double>() < 0)
          throw InputError(fmt::format("{}: step {} layer {} expert {}: load {} (allowed: a finite number ≥ 0)", flag,
                                       lines[i].first, scope, e, a[e].dump()));
        acc[e] += a[e].get<double>() / static_cast<double>(chosen.size());
      }
    }
  out.source = kind == "last" ? fmt::format("{} (mean of steps {}..{}, {} steps)", path, lines[chosen.front()].first,
                                            lines[chosen.back()].first, chosen.size())
                              : fmt::format("{} (step {})", path, lines[chosen.front()].first);
  return out;
}

LoadSkew::LoadSkew(const Lowered& L, const ExpertLoads& loads, bool ragged) {
  report_.enabled = true;
  report_.ragged = ragged;
  report_.source = loads.source;
  const Graph& g = L.graph;
  layer_of_node_.assign(g.nodes.size(), -1);
  std::map<std::string, size_t> index;
  // The layers and their geometry from the global shapes of the values their ops touch.
  for (const Node& n : g.nodes) {
    const std::string layer = moe_scope(n.scope);
    if (layer.empty()) continue;
    if (!index.count(layer)) {
      index[layer] = report_.layers.size();
      report_.layers.push_back(MoeLayerLoad{.scope = layer});
    }
    MoeLayerLoad& l = report_.layers[index[layer]];
    for (const auto* vs : {&n.inputs, &n.outputs})
      for (ValueId v : *vs) {
        const Shape& gs = L.global_shape[static_cast<size_t>(v.v)];
        if (has_dim(gs, kExperts) && has_dim(gs, kGroup) && has_dim(gs, kCapacity)) {
          l.experts = gs[*dim_index(gs, kExperts)].size;
          l.groups = gs[*dim_index(gs, kGroup)].size;
          l.capacity = gs[*dim_index(gs, kCapacity)].size;
          // The expert computation's blocks: experts split over the expert axis (the dispatch side
          // of the all-to-all is split by group instead).
          const Shape& local = g.type(v).shape;
          if (n.scope.starts_with(layer + "/experts"))
            l.expert_shards = std::max(l.expert_shards, l.experts / local[*dim_index(local, kExperts)].size);
        }
        if (has_dim(gs, kGroupSize) && l.group_size == 0) l.group_size = gs[*dim_index(gs, kGroupSize)].size;
        if (has_dim(gs, kChoice) && n.scope.starts_with(layer + "/router")) l.k = gs[*dim_index(gs, kChoice)].size;
      }
  }
  std::erase_if(report_.layers, [](const MoeLayerLoad& l) { return l.capacity == 0 || l.group_size == 0; });
  if (report_.layers.empty())
    throw InputError("--expert-load / --skew / --ragged-experts: the model has no MoE layers to load");
  index.clear();
  for (size_t i = 0; i < report_.layers.size(); ++i) index[report_.layers[i].scope] = i;
  for (MoeLayerLoad& l : report_.layers) {
    if (!loads.model.empty()) {
      l.loads = skew_model_loads(loads.model, l.experts, l.k);
    } else {
      const auto it = loads.by_scope.find(l.scope);
      if (it == loads.by_scope.end()) {
        std::string have;
        for (const auto& [s, v] : loads.by_scope) {
          if (!have.empty()) have += ", ";
          have += s;
        }
        throw InputError(fmt::format("--expert-load {}: no loads for the model's MoE layer {} (the file has: {})",
                                     loads.source, l.scope, have));
      }
      if (static_cast<int64_t>(it->second.size()) != l.experts)
        throw InputError(fmt::format("--expert-load {}: layer {} has loads for {} experts, the model {}", loads.source,
                                     l.scope, it->second.size(), l.experts));
      l.loads = it->second;
    }
    price_layer(l);
  }
  if (!ragged) return;
  for (const Node& n : g.nodes) {
    const auto it = index.find(moe_scope(n.scope));
    if (it == index.end()) continue;
    const bool expert_op = n.scope.starts_with(it->first + "/experts") && !is_collective(n.kind);
    if (!expert_op && n.kind != OpKind::all_to_all) continue;
    std::vector<TensorType> in, out;
    for (ValueId v : n.inputs) in.push_back(g.type(v));
    for (ValueId v : n.outputs) out.push_back(g.type(v));
    if (touches_capacity(in, out)) layer_of_node_[static_cast<size_t>(n.id.v)] = static_cast<int>(it->second);
  }
}

OpCost LoadSkew::cost(const Node& n, const std::vector<TensorType>& in, const std::vector<TensorType>& out,
                      const OpCost& priced) const {
  const int layer = layer_of_node_.at(static_cast<size_t>(n.id.v));
  if (layer < 0) return priced;
  auto empty = [](std::vector<TensorType> ts) {
    for (TensorType& t : ts)
      for (Dim& d : t.shape)
        if (d.name == kCapacity) d.size = 0;
    return ts;
  };
  const OpCost zero = op_def(n.kind).cost(empty(in), empty(out), n.attrs);
  const double rho = report_.layers[static_cast<size_t>(layer)].rows_busiest;
  auto at = [&](double c0, double c) { return c0 + rho * (c - c0); };
  return OpCost{.flops = at(zero.flops, priced.flops),
                .bytes_read = at(zero.bytes_read, priced.bytes_read),
                .bytes_written = at(zero.bytes_written, priced.bytes_written),
                .collective_bytes = at(zero.collective_bytes, priced.collective_bytes)};
}

int64_t LoadSkew::ragged_all_to_all_blocks(const Node& n, const TensorType& in) const {
  if (!report_.ragged || n.kind != OpKind::all_to_all || layer_of_node_.at(static_cast<size_t>(n.id.v)) < 0) return 0;
  int64_t blocks = 1;
  for (const Dim& d : in.shape) {
    if (d.name == kCapacity) return blocks;
    blocks *= d.size;
  }
  return 0;  // no capacity dim: not an expert buffer
}

LoadSkewReport LoadSkew::report(const std::vector<double>& duration_by_node) const {
  LoadSkewReport r = report_;
  for (size_t i = 0; i < layer_of_node_.size() && i < duration_by_node.size(); ++i)
    if (layer_of_node_[i] >= 0) r.layers[static_cast<size_t>(layer_of_node_[i])].scaled_time += duration_by_node[i];
  for (MoeLayerLoad& l : r.layers)
    l.extra_time = l.rows_busiest > 0 ? l.scaled_time * (1.0 - l.rows_mean / l.rows_busiest) : 0.0;
  return r;
}

std::string expert_load_markdown(const LoadSkewReport& r) {
  if (!r.enabled) return "";
  std::string s = "\n## Expert load\n\n";
  s += fmt::format("Loads: {}. Backing: {}.\n\n", r.source,
                   r.ragged ? "ragged (only routed rows computed and sent; the step waits for the busiest device)"
                            : "capacity (static shapes: expert matmuls and all-to-alls process every capacity slot, so "
                              "skew drops choices and costs no time)");
  s += "| layer | experts (shards) | G × S, C | busiest expert (max/mean) | busiest device (max/mean) | dropped | "
       "rows busiest / mean | scaled op time | extra time |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const MoeLayerLoad& l : r.layers)
    s += fmt::format("| {} | {} ({}) | {} × {}, {} | {} ({:.3f}) | {} ({:.3f}) | {:.2f} % | {:.3f} / {:.3f} | {} | {} |\n",
                     l.scope, l.experts, l.expert_shards, l.groups, l.group_size, l.capacity, l.busiest_expert,
                     l.expert_overload, l.busiest_device, l.device_overload, 100 * l.dropped_fraction, l.rows_busiest,
                     l.rows_mean, r.ragged ? fmt::format("{:.3g} s", l.scaled_time) : "–",
                     r.ragged ? fmt::format("{:.3g} s", l.extra_time) : "0 (static shapes)");
  s += "\nDropped: Σ max(0, f·S − C) / Σ f·S with every group routing alike (a lower bound: groups fluctuate). "
       "Rows: Σ min(f·S, C) over a device's experts / its capacity slots.\n";
  return s;
}

nlohmann::ordered_json expert_load_json(const LoadSkewReport& r) {
  using J = nlohmann::ordered_json;
  if (!r.enabled) return nullptr;
  J layers = J::array();
  for (const MoeLayerLoad& l : r.layers)
    layers.push_back(J{{"scope", l.scope},
                       {"experts", l.experts},
                       {"expert_shards", l.expert_shards},
                       {"groups", l.groups},
                       {"group_size", l.group_size},
                       {"capacity", l.capacity},
                       {"k", l.k},
                       {"loads", l.loads},
                       {"busiest_expert", l.busiest_expert},
                       {"expert_overload", l.expert_overload},
                       {"busiest_device", l.busiest_device},
                       {"device_overload", l.device_overload},
                       {"dropped_fraction", l.dropped_fraction},
                       {"rows_busiest", l.rows_busiest},
                       {"rows_mean", l.rows_mean},
                       {"scaled_time_s", l.scaled_time},
                       {"extra_time_s", l.extra_time}});
  return J{{"source", r.source}, {"backing", r.ragged ? "ragged" : "capacity"}, {"layers", layers}};
}

}  // namespace sy
