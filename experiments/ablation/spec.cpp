#include "experiments/ablation/spec.hpp"

#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/models/model_config.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace fs = std::filesystem;

namespace sy::ablation {
namespace {

constexpr const char* kTopKeys = "[sweep], [scale.<name>], [pretrain.<name>], [[arm]]";
constexpr const char* kSweepKeys =
    "name, description, model, steps, eval_every, checkpoint_every, seeds, vocab, threads, scale, simulate_model, set, task";
constexpr const char* kScaleKeys =
    "model, steps, eval_every, checkpoint_every, seeds, vocab, threads, simulate_model, set, task, pretrain";
constexpr const char* kArmKeys = "name, seeds, set, grid, zip, pretrain";
constexpr const char* kPretrainKeys = "model, steps, seed, set, checkpoint";

// A value as TOML writes it, for messages.
std::string toml_text(const toml::node& v) {
  std::ostringstream os;
  v.visit([&](const auto& x) { os << x; });
  return os.str();
}

int64_t line_of(const toml::node& n) { return static_cast<int64_t>(n.source().begin.line); }

// The spec file and "file:line" for messages.
struct Where {
  std::string file;
  std::string at(const toml::node& n) const { return at(line_of(n)); }
  std::string at(int64_t line) const { return line > 0 ? fmt::format("{}:{}", file, line) : file; }
};

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw InputError(fmt::format("{}: {}", where, what));
}

void check_keys(const Where& w, const toml::table& t, const std::string& table_name, const std::string& allowed) {
  std::set<std::string> ok;
  for (size_t start = 0; start < allowed.size();) {
    size_t end = allowed.find(", ", start);
    if (end == std::string::npos) end = allowed.size();
    ok.insert(allowed.substr(start, end - start));
    start = end + 2;
  }
  for (auto&& [k, v] : t)
    if (!ok.count(std::string(k.str())))
      fail(w.at(v), fmt::format("unknown key '{}' in {}; allowed keys: {}", k.str(), table_name, allowed));
}

int64_t positive_or_zero(const Where& w, const toml::node& v, const std::string& name, bool zero_ok) {
  const auto i = v.value_exact<int64_t>();
  if (!i || *i < 0 || (*i == 0 && !zero_ok))
    fail(w.at(v), fmt::format("{} = {}: expected {} integer", name, toml_text(v), zero_ok ? "a non-negative" : "a positive"));
  return *i;
}

std::string string_value(const Where& w, const toml::node& v, const std::string& name) {
  const auto s = v.value_exact<std::string>();
  if (!s) fail(w.at(v), fmt::format("{} = {}: expected a string", name, toml_text(v)));
  return *s;
}

std::vector<int64_t> seeds_value(const Where& w, const toml::node& v, const std::string& name) {
  std::vector<int64_t> seeds;
  if (const auto n = v.value_exact<int64_t>()) {
    if (*n < 1) fail(w.at(v), fmt::format("{} = {}: expected a count >= 1 or a list of seeds", name, *n));
    for (int64_t s = 1; s <= *n; ++s) seeds.push_back(s);
    return seeds;
  }
  const toml::array* a = v.as_array();
  if (!a || a->empty())
    fail(w.at(v), fmt::format("{} = {}: expected a count >= 1 or a non-empty list of seeds", name, toml_text(v)));
  for (const toml::node& e : *a) {
    const auto s = e.value_exact<int64_t>();
    if (!s || *s < 0) fail(w.at(e), fmt::format("{}: seed {} is not a non-negative integer", name, toml_text(e)));
    if (std::find(seeds.begin(), seeds.end(), *s) != seeds.end())
      fail(w.at(e), fmt::format("{}: seed {} is listed twice", name, *s));
    seeds.push_back(*s);
  }
  return seeds;
}

// ---- overrides ----

std::string float_text(double d) {
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // 2 -> 2.0: stays a TOML float
  return s;
}

Override make_override(const Where& w, const std::string& key, const toml::node& v, const std::string& table_name) {
  Override o;
  o.key = key;
  o.line = line_of(v);
  if (const auto s = v.value_exact<std::string>()) {
    o.text = *s;
    o.toml = nlohmann::json(*s).dump();  // JSON string escapes are TOML basic-string escapes
  } else if (const auto i = v.value_exact<int64_t>()) {
    o.text = o.toml = std::to_string(*i);
  } else if (const auto d = v.value_exact<double>()) {
    o.text = o.toml = float_text(*d);
  } else if (const auto b = v.value_exact<bool>()) {
    o.text = o.toml = *b ? "true" : "false";
  } else if (v.is_array()) {
    fail(w.at(v), fmt::format("{}: {} = {} is a list; a list of values to sweep goes in grid or zip", table_name, key,
                              toml_text(v)));
  } else {
    fail(w.at(v), fmt::format("{}: {} = {}: expected a string, number or boolean", table_name, key, toml_text(v)));
  }
  if (key.find('.') == std::string::npos)
    fail(w.at(v), fmt::format("{}: key '{}' must name its section, e.g. model.ffn, moe.cf_train, train.learning_rate",
                              table_name, key));
  if (key == "train.seed")
    fail(w.at(v), fmt::format("{}: train.seed is set by seeds (a count or a list), not by {}", table_name, table_name));
  return o;
}

// A table of settings flattened to dotted keys, in the order the spec writes them.
std::vector<std::pair<std::string, const toml::node*>> flatten(const toml::table& t) {
  std::vector<std::pair<std::string, const toml::node*>> out;
  auto walk = [&](auto&& self, const toml::table& table, const std::string& prefix) -> void {
    for (auto&& [k, v] : table) {
      const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (v.is_table())
        self(self, *v.as_table(), key);
      else
        out.emplace_back(key, &v);
    }
  };
  walk(walk, t, "");
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    const auto &sa = a.second->source().begin, &sb = b.second->source().begin;
    return std::pair(sa.line, sa.column) < std::pair(sb.line, sb.column);
  });
  return out;
}

const toml::table& table_value(const Where& w, const toml::node& v, const std::string& name, const std::string& example) {
  if (!v.is_table()) fail(w.at(v), fmt::format("{} must be a table, e.g. {}", name, example));
  return *v.as_table();
}

std::vector<Override> overrides_of(const Where& w, const toml::node& v, const std::string& name) {
  std::vector<Override> out;
  for (const auto& [key, node] : flatten(table_value(w, v, name, "{ \"moe.cf_train\" = 2.0 }")))
    out.push_back(make_override(w, key, *node, name));
  return out;
}

// Lower-case letters, digits, '.', '-' and single '_' for everything else.
std::string slug_of(const std::string& name) {
  std::string s;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '.' || c == '-')
      s += static_cast<char>(std::tolower(u));
    else if (!s.empty() && s.back() != '_')
      s += '_';
  }
  while (!s.empty() && s.back() == '_') s.pop_back();
  return s.empty() ? "arm" : s;
}

// ---- [sweep] and [scale.X] ----

// A model path as given in the spec (relative to the spec's folder) and its line.
struct ModelRef {
  std::string given;
  int64_t line = 0;
};

void apply_settings(const Where& w, const toml::table& t, const std::string& table_name, Settings& s, ModelRef& model,
                    ModelRef& simulate_model, ModelRef& task) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string name = table_name + " " + key;
    if (key == "task") {
      task = {string_value(w, v, name), line_of(v)};
    } else if (key == "model") {
      model = {string_value(w, v, name), line_of(v)};
    } else if (key == "simulate_model") {
      simulate_model = {string_value(w, v, name), line_of(v)};
    } else if (key == "steps") {
      s.steps = positive_or_zero(w, v, name, false);
    } else if (key == "eval_every") {
      s.eval_every = positive_or_zero(w, v, name, true);
    } else if (key == "checkpoint_every") {
      s.checkpoint_every = positive_or_zero(w, v, name, true);
    } else if (key == "seeds") {
      s.seeds = seeds_value(w, v, name);
    } else if (key == "vocab") {
      s.vocab = positive_or_zero(w, v, name, false);
    } else if (key == "threads") {
      s.threads = positive_or_zero(w, v, name, true);
    } else if (key == "set") {
      for (Override& o : overrides_of(w, v, table_name + " set")) {
        auto it = std::find_if(s.common.begin(), s.common.end(), [&](const Override& c) { return c.key == o.key; });
        if (it != s.common.end())
          *it = o;
        else
          s.common.push_back(o);
      }
    }
  }
}

// ---- pre-training stages ----

struct StageRefs {
  ModelRef model, checkpoint;
};

void apply_stage(const Where& w, const toml::table& t, const std::string& table_name, PretrainStage& st, StageRefs& refs) {
  check_keys(w, t, table_name, kPretrainKeys);
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string name = table_name + " " + key;
    if (key == "model") {
      refs.model = {string_value(w, v, name), line_of(v)};
    } else if (key == "checkpoint") {
      refs.checkpoint = {string_value(w, v, name), line_of(v)};
    } else if (key == "steps") {
      st.steps = positive_or_zero(w, v, name, false);
    } else if (key == "seed") {
      st.seed = positive_or_zero(w, v, name, true);
    } else if (key == "set") {
      for (Override& o : overrides_of(w, v, table_name + " set")) {
        auto it = std::find_if(st.sets.begin(), st.sets.end(), [&](const Override& c) { return c.key == o.key; });
        if (it != st.sets.end())
          *it = o;
        else
          st.sets.push_back(o);
      }
    }
  }
}

// ---- arms ----

struct SweepAxis {
  std::vector<std::vector<Override>> points;  // each point: one override per key of the axis
};

// grid: one axis per key; zip: one axis whose points pair the keys' values by position.
std::vector<SweepAxis> sweep_axes(const Where& w, const toml::table& arm, std::set<std::string>& keys) {
  std::vector<SweepAxis> axes;
  auto list_of = [&](const std::string& table, const std::string& key, const toml::node& v) -> const toml::array& {
    if (!v.is_array() || v.as_array()->empty())
      fail(w.at(v), fmt::format("[[arm]] {}: {} = {}: expected a non-empty list of values", table, key, toml_text(v)));
    if (!keys.insert(key).second) fail(w.at(v), fmt::format("[[arm]] {}: key {} is given twice in the arm", table, key));
    return *v.as_array();
  };
  if (const toml::node* g = arm.get("grid")) {
    for (const auto& [key, node] : flatten(table_value(w, *g, "[[arm]] grid", "{ \"moe.cf_train\" = [1.0, 2.0] }"))) {
      SweepAxis axis;
      for (const toml::node& e : list_of("grid", key, *node)) {
        axis.points.push_back({make_override(w, key, e, "[[arm]] grid")});
        axis.points.back().back().swept = true;
      }
      axes.push_back(std::move(axis));
    }
  }
  if (const toml::node* z = arm.get("zip")) {
    SweepAxis axis;
    int64_t zip_line = line_of(*z);
    for (const auto& [key, node] : flatten(table_value(w, *z, "[[arm]] zip", "{ \"moe.cf_train\" = [1.0, 2.0] }"))) {
      const toml::array& values = list_of("zip", key, *node);
      if (!axis.points.empty() && values.size() != axis.points.size())
        fail(w.at(*node), fmt::format("[[arm]] zip: {} has {} values, the keys before it {}; zip pairs values by "
                                      "position, so every list needs the same length",
                                      key, values.size(), axis.points.size()));
      if (axis.points.empty()) axis.points.resize(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        axis.points[i].push_back(make_override(w, key, values[i], "[[arm]] zip"));
        axis.points[i].back().swept = true;
      }
    }
    if (axis.points.empty()) fail(w.at(zip_line), "[[arm]] zip is empty; give it lists of values, or drop it");
    axes.push_back(std::move(axis));
  }
  return axes;
}

std::string short_key(const std::string& key, const std::vector<std::string>& all) {
  const std::string last = key.substr(key.rfind('.') + 1);
  for (const std::string& k : all)
    if (k != key && k.substr(k.rfind('.') + 1) == last) return key;
  return last;
}

std::vector<Arm> expand_arm(const Where& w, const toml::table& t, const Settings& settings,
                            const std::vector<PretrainStage>& stages) {
  check_keys(w, t, "[[arm]]", kArmKeys);
  Arm base;
  base.line = line_of(t);
  base.seeds = settings.seeds;
  base.model = settings.model;
  base.model_text = settings.model_text;
  std::set<std::string> keys;
  std::string stage_names;
  for (const PretrainStage& st : stages) stage_names += (stage_names.empty() ? "" : ", ") + st.name;
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    if (key == "pretrain") {
      const std::string name = string_value(w, v, "[[arm]] pretrain");
      auto it = std::find_if(stages.begin(), stages.end(), [&](const PretrainStage& st) { return st.name == name; });
      if (it == stages.end())
        fail(w.at(v), fmt::format("[[arm]] pretrain = \"{}\": no [pretrain.{}] stage; allowed: {}", name, name,
                                  stage_names.empty() ? "none (the spec has no [pretrain.<name>] stages)" : stage_names));
      base.pretrain = it - stages.begin();
    }
    if (key == "name") base.name = string_value(w, v, "[[arm]] name");
    if (key == "seeds") base.seeds = seeds_value(w, v, "[[arm]] seeds");
    if (key == "set") {
      for (Override& o : overrides_of(w, v, "[[arm]] set")) {
        if (!keys.insert(o.key).second) fail(w.at(o.line), fmt::format("[[arm]] set: key {} is given twice", o.key));
        base.overrides.push_back(std::move(o));
      }
    }
  }
  if (base.pretrain < 0 && stages.size() == 1) base.pretrain = 0;
  if (base.pretrain < 0 && stages.size() > 1)
    fail(w.at(base.line), fmt::format("[[arm]] needs pretrain = \"<stage>\" (the spec has several stages: {})", stage_names));
  if (base.pretrain >= 0) {
    base.model = stages[static_cast<size_t>(base.pretrain)].model;
    base.model_text = stages[static_cast<size_t>(base.pretrain)].model_text;
  }
  const std::vector<SweepAxis> axes = sweep_axes(w, t, keys);
  if (axes.empty()) {
    if (base.name.empty()) fail(w.at(base.line), "[[arm]] needs a name (or a grid/zip that names its arms)");
    return {base};
  }

  // The grid's combinations (first key slowest) × the zip's positions.
  std::vector<std::vector<Override>> combos{{}};
  for (const SweepAxis& axis : axes) {
    std::vector<std::vector<Override>> next;
    for (const auto& c : combos)
      for (const auto& p : axis.points) {
        next.push_back(c);
        next.back().insert(next.back().end(), p.begin(), p.end());
      }
    combos = std::move(next);
  }
  std::vector<std::string> swept;
  for (const Override& o : combos.front()) swept.push_back(o.key);
  std::vector<Arm> arms;
  for (const auto& combo : combos) {
    Arm a = base;
    a.swept = true;
    std::string label;
    for (const Override& o : combo) label += fmt::format("{}{}={}", label.empty() ? "" : ", ", short_key(o.key, swept), o.text);
    a.name = base.name.empty() ? label : fmt::format("{} ({})", base.name, label);
    a.overrides.insert(a.overrides.end(), combo.begin(), combo.end());
    arms.push_back(std::move(a));
  }
  return arms;
}

// The resolved value of `key` in a config's JSON (moe.X falls back to moe.decoder.X).
std::string resolved_value(const nlohmann::ordered_json& config, const std::string& key) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  auto lookup = [&](const std::vector<std::string>& path) -> const nlohmann::ordered_json* {
    const nlohmann::ordered_json* j = &config;
    for (const std::string& p : path) {
      if (!j->is_object() || !j->contains(p)) return nullptr;
      j = &(*j)[p];
    }
    return j;
  };
  const nlohmann::ordered_json* j = lookup(parts);
  if (!j && parts.size() == 2 && parts[0] == "moe") j = lookup({"moe", "decoder", parts[1]});
  if (!j) return "";
  if (j->is_string()) return j->get<std::string>();
  if (j->is_number_float()) return float_text(j->get<double>());
  return j->dump();
}

// The --set arguments of an arm: the common overrides it does not replace, then its own.
std::vector<std::string> arm_sets(const Settings& s, const Arm& arm) {
  std::vector<std::string> sets;
  for (const Override& c : s.common)
    if (std::none_of(arm.overrides.begin(), arm.overrides.end(), [&](const Override& o) { return o.key == c.key; }))
      sets.push_back(c.set_arg());
  for (const Override& o : arm.overrides) sets.push_back(o.set_arg());
  return sets;
}

// Parses the base model with `sets`; an InputError is re-thrown naming the spec line of the
// override it blames (the model config names the --set argument), else `fallback_line`.
ModelConfig check_against_model(const Where& w, const std::string& model, const std::string& model_text,
                                const std::vector<std::string>& sets, const std::vector<const Override*>& given,
                                int64_t fallback_line, const std::string& what) {
  try {
    return parse_model_config(model_text, model, sets);
  } catch (const InputError& e) {
    const std::string msg = e.what();
    int64_t line = fallback_line;
    std::string key;
    for (const Override* o : given)
      if (msg.find("(--set " + o->set_arg() + ")") != std::string::npos ||
          msg.find("--set " + o->set_arg() + ":") != std::string::npos) {
        line = o->line;
        key = o->key;
      }
    fail(w.at(line), fmt::format("{}{} is not accepted by the model config {}: {}", what,
                                 key.empty() ? "" : fmt::format(": key {}", key), model, msg));
  }
}

}  // namespace

Spec load_spec(const std::string& path, const std::string& scale) {
  Spec spec;
  spec.path = path;
  spec.text = read_file(path);
  const Where w{path};
  toml::table doc;
  try {
    doc = toml::parse(std::string_view(spec.text), std::string_view(path));
  } catch (const toml::parse_error& e) {
    fail(w.at(static_cast<int64_t>(e.source().begin.line)), fmt::format("TOML syntax error: {}", e.description()));
  }

  for (auto&& [k, v] : doc) {
    const std::string key(k.str());
    if (key != "sweep" && key != "scale" && key != "arm" && key != "pretrain")
      fail(w.at(v), fmt::format("unknown key '{}' at the top level; allowed: {}", key, kTopKeys));
  }
  const toml::node* sweep_node = doc.get("sweep");
  if (!sweep_node) fail(path, fmt::format("no [sweep] table; it needs at least model and steps (allowed keys: {})", kSweepKeys));
  const toml::table& sweep = table_value(w, *sweep_node, "[sweep]", "[sweep] with model = \"...\" and steps = 100");
  check_keys(w, sweep, "[sweep]", kSweepKeys);

  spec.name = fs::path(path).stem().string();
  std::string default_scale;
  ModelRef model{"", line_of(sweep)}, simulate_model, task;
  int64_t scale_line = 0;
  if (const toml::node* n = sweep.get("name")) spec.name = string_value(w, *n, "[sweep] name");
  if (const toml::node* n = sweep.get("description")) spec.description = string_value(w, *n, "[sweep] description");
  if (const toml::node* n = sweep.get("scale")) {
    default_scale = string_value(w, *n, "[sweep] scale");
    scale_line = line_of(*n);
  }
  apply_settings(w, sweep, "[sweep]", spec.settings, model, simulate_model, task);

  // Scale presets.
  std::map<std::string, const toml::table*> scales;
  if (const toml::node* n = doc.get("scale")) {
    for (auto&& [k, v] : table_value(w, *n, "[scale]", "[scale.tiny] with steps = 20")) {
      const std::string name(k.str());
      const toml::table& t = table_value(w, v, fmt::format("[scale.{}]", name), "[scale.tiny] with steps = 20");
      check_keys(w, t, fmt::format("[scale.{}]", name), kScaleKeys);
      scales[name] = &t;
      spec.scales.push_back(name);
    }
  }
  std::string allowed_scales;
  for (const std::string& s : spec.scales) allowed_scales += (allowed_scales.empty() ? "" : ", ") + s;
  if (allowed_scales.empty()) allowed_scales = "none: the spec defines no [scale.<name>] tables";
  if (!default_scale.empty() && !scales.count(default_scale))
    fail(w.at(scale_line), fmt::format("[sweep] scale = \"{}\" is not a preset of this spec; allowed: {}", default_scale,
                                       allowed_scales));
  spec.scale = scale.empty() ? default_scale : scale;
  if (!spec.scale.empty()) {
    if (!scales.count(spec.scale))
      fail(path, fmt::format("--scale {}: no [scale.{}] in this spec; allowed: {}", spec.scale, spec.scale, allowed_scales));
    apply_settings(w, *scales.at(spec.scale), fmt::format("[scale.{}]", spec.scale), spec.settings, model, simulate_model,
                   task);
  }
  const std::string scale_name = spec.scale.empty() ? "[sweep]" : fmt::format("[sweep] and [scale.{}]", spec.scale);
  if (model.given.empty()) fail(path, fmt::format("{} give no model (the base model config, e.g. model = \"../configs/models/small.toml\")", scale_name));
  if (spec.settings.steps == 0) fail(path, fmt::format("{} give no steps (training steps per run, e.g. steps = 100)", scale_name));

  // The models, relative to the spec's folder.
  auto read_model = [&](const ModelRef& m, const char* key, std::string& resolved, std::string& text) {
    const fs::path p = fs::path(m.given).is_absolute() ? fs::path(m.given) : (fs::path(path).parent_path() / m.given).lexically_normal();
    resolved = p.string();
    try {
      text = read_file(resolved);
    } catch (const InputError& e) {
      fail(w.at(m.line), fmt::format("{} = \"{}\": {}", key, m.given, e.what()));
    }
  };
  read_model(model, "model", spec.settings.model, spec.settings.model_text);
  if (!simulate_model.given.empty())
    read_model(simulate_model, "simulate_model", spec.settings.simulate_model, spec.settings.simulate_model_text);
  const int64_t model_line = model.line;
  const fs::path spec_dir = fs::path(path).parent_path();
  if (!task.given.empty()) {  // a directory relative to the spec's folder, else a name under DATA/tasks
    const fs::path dir = fs::path(task.given).is_absolute() ? fs::path(task.given) : spec_dir / task.given;
    spec.settings.task = fs::is_directory(dir) ? fs::absolute(dir).lexically_normal().string() : task.given;
    if (task.given.find('/') != std::string::npos && !fs::is_directory(dir))
      fail(w.at(task.line), fmt::format("task = \"{}\": no directory {} (a task is a directory holding train.tsv and "
                                        "validation.tsv, or a name under DATA/tasks such as brown_genre)",
                                        task.given, dir.string()));
  }

  // Pre-training stages, merged with the scale's.
  std::vector<StageRefs> stage_refs;
  if (const toml::node* n = doc.get("pretrain")) {
    for (auto&& [k, v] : table_value(w, *n, "[pretrain]", "[pretrain.sparse] with steps = 300")) {
      PretrainStage st;
      st.name = std::string(k.str());
      st.line = line_of(v);
      StageRefs refs;
      apply_stage(w, table_value(w, v, fmt::format("[pretrain.{}]", st.name), "[pretrain.sparse] with steps = 300"),
                  fmt::format("[pretrain.{}]", st.name), st, refs);
      spec.pretrain.push_back(std::move(st));
      stage_refs.push_back(refs);
    }
  }
  if (!spec.scale.empty())
    if (const toml::node* n = scales.at(spec.scale)->get("pretrain")) {
      for (auto&& [k, v] : table_value(w, *n, fmt::format("[scale.{}.pretrain]", spec.scale), "[scale.tiny.pretrain.sparse]")) {
        const std::string name(k.str());
        auto it = std::find_if(spec.pretrain.begin(), spec.pretrain.end(), [&](const PretrainStage& st) { return st.name == name; });
        if (it == spec.pretrain.end())
          fail(w.at(v), fmt::format("[scale.{}.pretrain.{}]: the spec has no [pretrain.{}] stage", spec.scale, name, name));
        const std::string table = fmt::format("[scale.{}.pretrain.{}]", spec.scale, name);
        apply_stage(w, table_value(w, v, table, table), table, *it, stage_refs[static_cast<size_t>(it - spec.pretrain.begin())]);
      }
    }
  for (size_t i = 0; i < spec.pretrain.size(); ++i) {
    PretrainStage& st = spec.pretrain[i];
    const StageRefs& refs = stage_refs[i];
    if (refs.model.given.empty()) {
      st.model = spec.settings.model;
      st.model_text = spec.settings.model_text;
    } else {
      read_model(refs.model, "model", st.model, st.model_text);
    }
    if (!refs.checkpoint.given.empty()) {
      const fs::path c = fs::path(refs.checkpoint.given).is_absolute() ? fs::path(refs.checkpoint.given) : spec_dir / refs.checkpoint.given;
      if (!fs::exists(c))
        fail(w.at(refs.checkpoint.line), fmt::format("[pretrain.{}] checkpoint = \"{}\": {} does not exist", st.name,
                                                     refs.checkpoint.given, c.string()));
      st.checkpoint = fs::absolute(c).lexically_normal().string();
    } else if (st.steps == 0) {
      fail(w.at(st.line), fmt::format("[pretrain.{}] gives no steps (pre-training steps, e.g. steps = 300) and no checkpoint "
                                      "to reuse", st.name));
    }
    std::vector<const Override*> given;
    for (const Override& o : st.sets) given.push_back(&o);
    check_against_model(w, st.model, st.model_text, st.set_args(), given, st.line, fmt::format("[pretrain.{}] set", st.name));
  }

  // The common overrides alone, then each arm.
  Settings& s = spec.settings;
  {
    std::vector<const Override*> given;
    for (const Override& o : s.common) given.push_back(&o);
    std::vector<std::string> sets;
    for (const Override& o : s.common) sets.push_back(o.set_arg());
    check_against_model(w, s.model, s.model_text, sets, given, model_line, fmt::format("{} set", scale_name));
  }
  const toml::node* arms_node = doc.get("arm");
  if (arms_node && !arms_node->is_array_of_tables())
    fail(w.at(*arms_node), "arm must be a list of tables: write each arm as [[arm]] (two brackets), not [arm] or arm = ...");
  if (!arms_node || arms_node->as_array()->empty())
    fail(arms_node ? w.at(*arms_node) : path,
         fmt::format("the spec has no arms; add at least one [[arm]] table (allowed keys: {})", kArmKeys));
  for (const toml::node& t : *arms_node->as_array())
    for (Arm& a : expand_arm(w, *t.as_table(), s, spec.pretrain)) spec.arms.push_back(std::move(a));

  // Names and directories unique; every arm accepted by the model config.
  std::map<std::string, int64_t> names, slugs;
  for (Arm& a : spec.arms) {
    if (auto [it, fresh] = names.emplace(a.name, a.line); !fresh)
      fail(w.at(a.line), fmt::format("arm \"{}\" is named twice (also at line {}); arm names must be unique", a.name, it->second));
    a.slug = slug_of(a.name);
    for (int i = 2; slugs.count(a.slug); ++i) a.slug = fmt::format("{}_{}", slug_of(a.name), i);
    slugs[a.slug] = a.line;
  }
  for (const Override& o : s.common) spec.keys.push_back(o.key);
  for (const Arm& a : spec.arms)
    for (const Override& o : a.overrides) {
      if (std::find(spec.keys.begin(), spec.keys.end(), o.key) == spec.keys.end()) spec.keys.push_back(o.key);
      if (o.swept && std::find(spec.swept_keys.begin(), spec.swept_keys.end(), o.key) == spec.swept_keys.end())
        spec.swept_keys.push_back(o.key);
    }
  for (Arm& a : spec.arms) {
    std::vector<const Override*> given;
    for (const Override& o : s.common) given.push_back(&o);
    for (const Override& o : a.overrides) given.push_back(&o);
    std::vector<std::string> sets = arm_sets(s, a);
    sets.push_back(fmt::format("train.seed={}", a.seeds.front()));
    const ModelConfig cfg = check_against_model(w, a.model, a.model_text, sets, given, a.line, fmt::format("arm \"{}\"", a.name));
    if (!s.simulate_model.empty()) {
      std::vector<const Override*> own;
      for (const Override& o : a.overrides) own.push_back(&o);
      check_against_model(w, s.simulate_model, s.simulate_model_text, simulate_sets(a), own, a.line,
                          fmt::format("arm \"{}\" (priced on simulate_model)", a.name));
    }
    const nlohmann::ordered_json config = to_json(cfg);
    for (const std::string& key : spec.keys) {
      auto own = std::find_if(a.overrides.begin(), a.overrides.end(), [&](const Override& o) { return o.key == key; });
      auto common = std::find_if(s.common.begin(), s.common.end(), [&](const Override& o) { return o.key == key; });
      a.key_values.push_back(own != a.overrides.end()      ? own->text
                             : common != s.common.end() ? common->text
                                                        : resolved_value(config, key));
    }
  }
  return spec;
}

std::vector<std::string> simulate_sets(const Arm& arm) {
  std::vector<std::string> sets;
  for (const Override& o : arm.overrides) sets.push_back(o.set_arg());
  return sets;
}

std::vector<Run> plan_runs(const Spec& spec) {
  std::vector<Run> runs;
  for (size_t i = 0; i < spec.arms.size(); ++i) {
    const Arm& a = spec.arms[i];
    for (int64_t seed : a.seeds) {
      Run r;
      r.arm = i;
      r.seed = seed;
      r.dir = fmt::format("runs/{}/seed_{}", a.slug, seed);
      r.sets = arm_sets(spec.settings, a);
      r.sets.push_back(fmt::format("train.seed={}", seed));
      runs.push_back(std::move(r));
    }
  }
  return runs;
}

}  // namespace sy::ablation
