#include "experiments/ablation/results.hpp"

#include "graph/error.hpp"
#include "graph/file_io.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace sy::ablation {
namespace {

using Json = nlohmann::json;

std::optional<double> number(const Json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;  // null: not finite
  return j[key].get<double>();
}

std::optional<double> mean(const std::vector<double>& v) {
  if (v.empty()) return std::nullopt;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

std::optional<double> median(std::vector<double> v) {
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string fmt_opt(const std::optional<double>& v) { return v ? fmt::format("{:.6g}", *v) : ""; }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q;
  q.push_back('"');
  for (char c : s) {
    q.push_back(c);
    if (c == '"') q.push_back('"');
  }
  q.push_back('"');
  return q;
}

Json read_json_file(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return Json();
  return Json::parse(in, nullptr, false);
}

}  // namespace

std::string train_status(const fs::path& dir) {
  const Json s = read_json_file(dir / "status.json");
  return s.is_object() && s.contains("status") && s["status"].is_string() ? s["status"].get<std::string>() : "";
}

RunResult read_train_run(const fs::path& dir, double wall_seconds, const std::string& crash_reason) {
  RunResult r;
  r.wall_seconds = wall_seconds;
  const Json status = read_json_file(dir / "status.json");
  const std::string st = train_status(dir);
  if (st == "completed") {
    r.status = "ok";
  } else if (st == "diverged") {
    r.status = "diverged";
    r.diverged_step = status.value("step", int64_t{0});
    r.reason = status.value("reason", std::string());
  } else {
    r.status = "crashed";
    r.reason = crash_reason;
  }

  // Per step: the loss, the MoE layers' metrics, evaluations, throughput. A line cut short by a
  // killed process ends the file.
  struct Step {
    double loss;
    std::vector<double> z, aux, dropped, overload;
  };
  std::vector<Step> steps;
  std::vector<double> rates;
  std::ifstream in(dir / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const Json j = Json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) break;
    const int64_t step = j.value("step", int64_t{0});
    r.steps = std::max(r.steps, step);
    if (j.contains("moe") && j["moe"].is_object())
      for (const auto& [scope, m] : j["moe"].items())
        for (auto [key, slot] : {std::pair{"max_logit", &r.max_router_logit}, std::pair{"softmax_roundoff", &r.max_softmax_roundoff},
                                 std::pair{"top1_flip", &r.max_top1_flip}, std::pair{"router_grad_norm", &r.max_router_grad_norm}})
          if (const auto v = number(m, key)) *slot = std::max(slot->value_or(*v), *v);
    if (j.contains("eval"))
      if (const auto q = number(j["eval"], "neg_log_perplexity")) r.best_quality = std::max(r.best_quality.value_or(*q), *q);
    if (step > 1)
      if (const auto t = number(j, "tokens_per_s")) rates.push_back(*t);
    if (r.diverged_step && step >= *r.diverged_step) continue;  // the diverged step is not a training result
    Step s{number(j, "loss").value_or(NAN), {}, {}, {}, {}};
    if (j.contains("moe") && j["moe"].is_object())
      for (const auto& [scope, m] : j["moe"].items()) {
        if (const auto z = number(m, "z_loss")) s.z.push_back(*z);
        if (const auto a = number(m, "aux_loss")) s.aux.push_back(*a);
        if (m.contains("fraction_dropped") && m["fraction_dropped"].is_array() && !m["fraction_dropped"].empty() &&
            m["fraction_dropped"][0].is_number())
          s.dropped.push_back(m["fraction_dropped"][0].get<double>());
        if (m.contains("expert_load") && m["expert_load"].is_array() && !m["expert_load"].empty()) {
          double sum = 0, most = 0;
          bool numbers = true;
          for (const auto& x : m["expert_load"]) {
            numbers = numbers && x.is_number();
            if (!numbers) break;
            sum += x.get<double>();
            most = std::max(most, x.get<double>());
          }
          if (numbers && sum > 0) s.overload.push_back(most / (sum / static_cast<double>(m["expert_load"].size())));
        }
      }
    steps.push_back(std::move(s));
  }
  if (status.contains("eval"))
    if (const auto q = number(status["eval"], "neg_log_perplexity")) {
      if (r.status == "ok") r.final_quality = q;
      r.best_quality = std::max(r.best_quality.value_or(*q), *q);
    }

  // The last 10% of the steps (at least one).
  const size_t window = std::max<size_t>(1, steps.size() / 10);
  std::vector<double> loss, z, aux, dropped, overload;
  for (size_t i = steps.size() - std::min(window, steps.size()); i < steps.size(); ++i) {
    if (std::isfinite(steps[i].loss)) loss.push_back(steps[i].loss);
    if (auto m = mean(steps[i].z)) z.push_back(*m);
    if (auto m = mean(steps[i].aux)) aux.push_back(*m);
    if (auto m = mean(steps[i].dropped)) dropped.push_back(*m);
    if (auto m = mean(steps[i].overload)) overload.push_back(*m);
  }
  r.final_loss = mean(loss);
  r.z_loss = mean(z);
  r.aux_loss = mean(aux);
  r.fraction_dropped = mean(dropped);
  r.overload = mean(overload);
  r.tokens_per_s = median(rates);
  const Json ft = read_json_file(dir / "finetune.json");  // fine-tuning runs (train --task)
  if (ft.is_object() && r.status == "ok") {
    r.exact_match = number(ft, "exact_match");
    r.target_nll = number(ft, "target_nll");
    r.fraction_dropped_eval = number(ft, "fraction_dropped_eval");
    if (ft.contains("majority_baseline") && ft["majority_baseline"].is_object()) {
      r.majority_accuracy = number(ft["majority_baseline"], "accuracy");
      r.majority_target = ft["majority_baseline"].value("target", std::string());
    }
  }
  return r;
}

nlohmann::ordered_json result_json(const RunResult& r) {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(); };
  nlohmann::ordered_json j = {{"status", r.status},
                              {"steps", r.steps},
                              {"diverged_step", r.diverged_step ? nlohmann::ordered_json(*r.diverged_step) : nlohmann::ordered_json()},
                              {"reason", r.reason},
                              {"final_quality", opt(r.final_quality)},
                              {"best_quality", opt(r.best_quality)},
                              {"final_loss", opt(r.final_loss)},
                              {"max_router_logit", opt(r.max_router_logit)},
                              {"z_loss", opt(r.z_loss)},
                              {"aux_loss", opt(r.aux_loss)},
                              {"fraction_dropped", opt(r.fraction_dropped)},
                              {"overload", opt(r.overload)},
                              {"max_softmax_roundoff", opt(r.max_softmax_roundoff)},
                              {"max_top1_flip", opt(r.max_top1_flip)},
                              {"max_router_grad_norm", opt(r.max_router_grad_norm)},
                              {"tokens_per_s", opt(r.tokens_per_s)},
                              {"wall_seconds", r.wall_seconds}};
  if (r.exact_match || r.target_nll) {  // fine-tuning runs only, so other sweeps' records read as before
    j["exact_match"] = opt(r.exact_match);
    j["target_nll"] = opt(r.target_nll);
    j["fraction_dropped_eval"] = opt(r.fraction_dropped_eval);
    j["majority_accuracy"] = opt(r.majority_accuracy);
    j["majority_target"] = r.majority_target;
  }
  return j;
}

RunResult result_from_json(const Json& j) {
  if (!j.is_object() || !j.contains("status") || !j["status"].is_string())
    throw InputError("not a run_ablation result (no \"status\")");
  RunResult r;
  r.status = j["status"].get<std::string>();
  if (r.status != "ok" && r.status != "diverged" && r.status != "crashed")
    throw InputError(fmt::format("status \"{}\" is not one of ok, diverged, crashed", r.status));
  r.steps = j.value("steps", int64_t{0});
  if (j.contains("diverged_step") && j["diverged_step"].is_number_integer()) r.diverged_step = j["diverged_step"].get<int64_t>();
  r.reason = j.value("reason", std::string());
  r.final_quality = number(j, "final_quality");
  r.best_quality = number(j, "best_quality");
  r.final_loss = number(j, "final_loss");
  r.max_router_logit = number(j, "max_router_logit");
  r.z_loss = number(j, "z_loss");
  r.aux_loss = number(j, "aux_loss");
  r.fraction_dropped = number(j, "fraction_dropped");
  r.overload = number(j, "overload");
  r.max_softmax_roundoff = number(j, "max_softmax_roundoff");
  r.max_top1_flip = number(j, "max_top1_flip");
  r.max_router_grad_norm = number(j, "max_router_grad_norm");
  r.tokens_per_s = number(j, "tokens_per_s");
  r.wall_seconds = number(j, "wall_seconds").value_or(0);
  r.exact_match = number(j, "exact_match");
  r.target_nll = number(j, "target_nll");
  r.fraction_dropped_eval = number(j, "fraction_dropped_eval");
  r.majority_accuracy = number(j, "majority_accuracy");
  r.majority_target = j.value("majority_target", std::string());
  return r;
}

std::string results_csv(const Spec& spec, const std::vector<Run>& runs, const std::vector<std::optional<RunResult>>& results,
                        const ArmColumns& extra) {
  std::string out = "arm";
  for (const std::string& k : spec.keys) out += fmt::format(",{}", csv_field(k));
  out +=
      ",seed,status,diverged_step,steps,final_quality,best_quality,final_loss,max_router_logit,z_loss,aux_loss,"
      "fraction_dropped,overload,max_softmax_roundoff,max_top1_flip,max_router_grad_norm,tokens_per_s,wall_seconds,dir";
  const bool task = !spec.settings.task.empty();
  if (task) out += ",exact_match,target_nll,fraction_dropped_eval,majority_accuracy";
  for (const std::string& c : extra.csv_names) out += fmt::format(",{}", csv_field(c));
  out += "\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    if (!results[i]) continue;
    const Run& run = runs[i];
    const Arm& arm = spec.arms[run.arm];
    const RunResult& r = *results[i];
    out += csv_field(arm.name);
    for (const std::string& v : arm.key_values) out += fmt::format(",{}", csv_field(v));
    out += fmt::format(",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2f},{}", run.seed, r.status,
                       r.diverged_step ? std::to_string(*r.diverged_step) : "", r.steps, fmt_opt(r.final_quality),
                       fmt_opt(r.best_quality), fmt_opt(r.final_loss), fmt_opt(r.max_router_logit), fmt_opt(r.z_loss),
                       fmt_opt(r.aux_loss), fmt_opt(r.fraction_dropped), fmt_opt(r.overload), fmt_opt(r.max_softmax_roundoff),
                       fmt_opt(r.max_top1_flip), fmt_opt(r.max_router_grad_norm), fmt_opt(r.tokens_per_s), r.wall_seconds,
                       csv_field(run.dir));
    if (task)
      out += fmt::format(",{},{},{},{}", fmt_opt(r.exact_match), fmt_opt(r.target_nll), fmt_opt(r.fraction_dropped_eval),
                         fmt_opt(r.majority_accuracy));
    if (!extra.csv_values.empty())
      for (const std::string& v : extra.csv_values[run.arm]) out += fmt::format(",{}", csv_field(v));
    out += "\n";
  }
  return out;
}

namespace {

std::string mean_std(const std::vector<double>& v, double scale, int digits) {
  if (v.empty()) return "–";
  const double m = *mean(v);
  if (v.size() == 1) return fmt::format("{:.{}f}", m * scale, digits);
  double var = 0;
  for (double x : v) var += (x - m) * (x - m);
  return fmt::format("{:.{}f} ± {:.{}f}", m * scale, digits, std::sqrt(var / static_cast<double>(v.size() - 1)) * scale, digits);
}

// The fine-tuning table (ST-MoE §4 layout): per arm, the swept settings, exact match (%) and
// target NLL mean ± std over the finished runs, dropped tokens in training and evaluation.
std::string finetune_summary(const Spec& spec, const std::vector<Run>& runs, const std::vector<std::optional<RunResult>>& results) {
  const Settings& s = spec.settings;
  std::string out = fmt::format("# {}{}\n\n", spec.name, spec.scale.empty() ? "" : fmt::format(" (scale {})", spec.scale));
  if (!spec.description.empty()) out += spec.description + "\n\n";
  std::string stages;
  for (const PretrainStage& st : spec.pretrain)
    stages += fmt::format("{}`{}`: {}", stages.empty() ? "" : "; ", st.name,
                          st.checkpoint.empty() ? fmt::format("{} pre-trained {} steps", st.model, st.steps)
                                                : fmt::format("checkpoint {}", st.checkpoint));
  std::string common;
  for (const Override& o : s.common) common += fmt::format("{}`{}={}`", common.empty() ? "" : ", ", o.key, o.text);
  std::optional<double> majority;
  std::string majority_target;
  for (const auto& r : results)
    if (r && r->majority_accuracy) {
      majority = r->majority_accuracy;
      majority_target = r->majority_target;
    }
  out += fmt::format("Task `{}`; pre-training: {}. Fine-tuning {} steps{}. Exact match: greedy decoding of the "
                     "validation targets after the last step, mean ± std over the finished runs (majority-class "
                     "baseline: {}). Target NLL: nats per target token, teacher forced. Dropped: first choices over "
                     "capacity, in training (train CF) and in the final evaluation (eval CF).\n\n",
                     s.task, stages.empty() ? "none" : stages, s.steps, common.empty() ? "" : " with " + common,
                     majority ? fmt::format("\"{}\" {:.1f}%", majority_target, 100 * *majority) : "–");
  std::vector<std::string> columns;
  for (const std::string& k : spec.swept_keys) columns.push_back(k.substr(k.rfind('.') + 1));
  out += "| Arm |";
  if (!spec.pretrain.empty()) out += " Pre-trained |";
  for (const std::string& c : columns) out += fmt::format(" {} |", c);
  out += " Exact match % (↑) | Target NLL (↓) | Dropped train | Dropped eval | Runs | Notes |\n|---|";
  for (size_t i = 0; i < columns.size() + (spec.pretrain.empty() ? 0 : 1); ++i) out += "---|";
  out += "---|---|---|---|---|---|\n";
  for (size_t a = 0; a < spec.arms.size(); ++a) {
    const Arm& arm = spec.arms[a];
    std::vector<double> em, nll, dtrain, deval;
    int64_t ok = 0, bad = 0, pending = 0;
    for (size_t i = 0; i < runs.size(); ++i) {
      if (runs[i].arm != a) continue;
      if (!results[i]) {
        ++pending;
        continue;
      }
      const RunResult& r = *results[i];
      if (r.status != "ok") {
        ++bad;
        continue;
      }
      ++ok;
      if (r.exact_match) em.push_back(*r.exact_match);
      if (r.target_nll) nll.push_back(*r.target_nll);
      if (r.fraction_dropped) dtrain.push_back(*r.fraction_dropped);
      if (r.fraction_dropped_eval) deval.push_back(*r.fraction_dropped_eval);
    }
    std::string notes;
    if (bad) notes += fmt::format("{} diverged or crashed", bad);
    if (pending) notes += fmt::format("{}{} pending", notes.empty() ? "" : ", ", pending);
    out += fmt::format("| {} |", arm.name);
    if (!spec.pretrain.empty())
      out += fmt::format(" {} |", arm.pretrain >= 0 ? spec.pretrain[static_cast<size_t>(arm.pretrain)].name : "–");
    for (const std::string& k : spec.swept_keys) {
      const size_t i = static_cast<size_t>(std::find(spec.keys.begin(), spec.keys.end(), k) - spec.keys.begin());
      out += fmt::format(" {} |", arm.key_values[i]);
    }
    auto pct = [](const std::vector<double>& v) { return v.empty() ? std::string("–") : fmt::format("{:.1f}%", 100 * *mean(v)); };
    out += fmt::format(" {} | {} | {} | {} | {} | {} |\n", mean_std(em, 100, 1), mean_std(nll, 1, 3), pct(dtrain), pct(deval),
                       ok, notes);
  }
  return out;
}

}  // namespace

std::string summary_markdown(const Spec& spec, const std::vector<Run>& runs,
                             const std::vector<std::optional<RunResult>>& results, const ArmColumns& extra) {
  if (!spec.settings.task.empty()) return finetune_summary(spec, runs, results);
  const Settings& s = spec.settings;
  std::string out = fmt::format("# {}{}\n\n", spec.name, spec.scale.empty() ? "" : fmt::format(" (scale {})", spec.scale));
  if (!spec.description.empty()) out += spec.description + "\n\n";
  std::string common;
  for (const Override& o : s.common) common += fmt::format("{}`{}={}`", common.empty() ? "" : ", ", o.key, o.text);
  out += fmt::format("Base model `{}`{}; {} steps per run. Quality: negative log perplexity on the validation split "
                     "after the last step (higher is better), mean ± std over the stable runs. Fraction stable: runs "
                     "that did not diverge / runs finished. Max router logit: median over the arm's runs of each run's "
                     "largest |logit|. Dropped: tokens whose first choice was dropped, mean over the stable runs. Overload: "
                     "the busiest expert's load over the mean load, mean over layers, the last 10% of the steps and the "
                     "stable runs (1 is perfectly balanced).\n\n",
                     s.model, common.empty() ? "" : " with " + common, s.steps);

  std::vector<std::string> columns;
  for (const std::string& k : spec.swept_keys) columns.push_back(k.substr(k.rfind('.') + 1));
  out += "| Arm |";
  for (const std::string& c : columns) out += fmt::format(" {} |", c);
  out += " Fraction stable | Quality (↑) | Max router logit | Dropped | Overload |";
  for (const std::string& c : extra.table_names) out += fmt::format(" {} |", c);
  out += " Notes |\n|---|";
  for (size_t i = 0; i < columns.size() + extra.table_names.size(); ++i) out += "---|";
  out += "---|---|---|---|---|---|\n";

  std::vector<std::string> diverged, crashed;
  for (size_t a = 0; a < spec.arms.size(); ++a) {
    const Arm& arm = spec.arms[a];
    int64_t ok = 0, div = 0, crash = 0, pending = 0;
    std::vector<double> quality, logits, dropped, overloads;
    for (size_t i = 0; i < runs.size(); ++i) {
      if (runs[i].arm != a) continue;
      if (!results[i]) {
        ++pending;
        continue;
      }
      const RunResult& r = *results[i];
      if (r.status == "crashed") {
        ++crash;
        crashed.push_back(fmt::format("{} seed {} ({}; log: {}/train.log)", arm.name, runs[i].seed, r.reason, runs[i].dir));
        continue;
      }
      if (r.max_router_logit) logits.push_back(*r.max_router_logit);
      if (r.status == "diverged") {
        ++div;
        diverged.push_back(fmt::format("{} seed {} at step {}", arm.name, runs[i].seed, r.diverged_step.value_or(0)));
        continue;
      }
      ++ok;
      if (r.final_quality) quality.push_back(*r.final_quality);
      if (r.fraction_dropped) dropped.push_back(*r.fraction_dropped);
      if (r.overload) overloads.push_back(*r.overload);
    }
    std::string q = "–";
    if (quality.size() == 1) q = fmt::format("{:.3f}", quality[0]);
    if (quality.size() > 1) {
      const double m = *mean(quality);
      double var = 0;
      for (double x : quality) var += (x - m) * (x - m);
      q = fmt::format("{:.3f} ± {:.3f}", m, std::sqrt(var / static_cast<double>(quality.size() - 1)));
    }
    std::string notes;
    if (crash) notes += fmt::format("{} crashed", crash);
    if (pending) notes += fmt::format("{}{} pending", notes.empty() ? "" : ", ", pending);
    out += fmt::format("| {} |", arm.name);
    for (const std::string& k : spec.swept_keys) {
      const size_t i = static_cast<size_t>(std::find(spec.keys.begin(), spec.keys.end(), k) - spec.keys.begin());
      out += fmt::format(" {} |", arm.key_values[i]);
    }
    const auto logit = median(logits);
    const auto drop = mean(dropped);
    const auto overload = mean(overloads);
    out += fmt::format(" {} | {} | {} | {} | {} |", ok + div > 0 ? fmt::format("{}/{}", ok, ok + div) : "–", q,
                       logit ? fmt::format("{:.2f}", *logit) : "–", drop ? fmt::format("{:.1f}%", 100 * *drop) : "–",
                       overload ? fmt::format("{:.2f}", *overload) : "–");
    if (!extra.table_values.empty())
      for (const std::string& v : extra.table_values[a]) out += fmt::format(" {} |", v);
    out += fmt::format(" {} |\n", notes);
  }
  if (!diverged.empty()) {
    out += "\nDiverged: ";
    out += fmt::format("{}", fmt::join(diverged, "; "));
    out += ".\n";
  }
  if (!crashed.empty()) {
    out += "\nCrashed (re-running the sweep retries them): ";
    out += fmt::format("{}", fmt::join(crashed, "; "));
    out += ".\n";
  }
  return out;
}

}  // namespace sy::ablation
