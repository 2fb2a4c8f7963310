#include "experiments/ablation/spec.hpp"

#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/models/model_config.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/parallel/mesh.hpp"
#include "graph/toml_schema.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

namespace fs = std::filesystem;

namespace sy::ablation {
namespace {

// seeds: a count n (train.seed = 1..n) or a list of distinct seeds.
std::vector<int64_t> read_seeds(TomlSection& t, std::vector<int64_t> fallback) {
  const toml::node* v = t.node("seeds");
  if (!v) return fallback;
  const std::string allowed =
      fmt::format("allowed: a count 1..{} or a non-empty list of distinct seeds >= 0 (at most {})", kMaxRuns, kMaxRuns);
  std::vector<int64_t> seeds;
  if (const auto n = v->value_exact<int64_t>()) {
    if (*n < 1 || *n > kMaxRuns) t.fail("seeds", allowed);
    for (int64_t s = 1; s <= *n; ++s) seeds.push_back(s);
    return seeds;
  }
  const toml::array* a = v->as_array();
  if (!a || a->empty()) t.fail("seeds", allowed);
  for (const toml::node& e : *a) {
    const auto s = e.value_exact<int64_t>();
    if (!s || *s < 0) t.fail("seeds", fmt::format("seed {} is not an integer >= 0; {}", TomlDocument::value_text(e), allowed));
    if (std::find(seeds.begin(), seeds.end(), *s) != seeds.end())
      t.fail("seeds", fmt::format("seed {} is listed twice; {}", *s, allowed));
    seeds.push_back(*s);
    if (static_cast<int64_t>(seeds.size()) > kMaxRuns) t.fail("seeds", allowed);
  }
  return seeds;
}

// ---- overrides ----

std::string float_text(double d) {
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // 2 -> 2.0: stays a TOML float
  return s;
}

// `key` = `v` from the table at `table` ("sweep.set", "arm.grid", ...).
Override make_override(const TomlDocument& doc, const std::string& table, const std::string& key, const toml::node& v) {
  const std::string dotted = fmt::format("{}.{}", table, key);
  Override o;
  o.key = key;
  o.line = v.source().begin.line;
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
    doc.fail_value(dotted, &v, "a list of values to sweep goes in grid or zip; allowed here: a string, number or boolean");
  } else {
    doc.fail_value(dotted, &v, "allowed: a string, number or boolean");
  }
  if (key.find('.') == std::string::npos)
    doc.fail_value(dotted, &v, fmt::format("the key '{}' must name its section; allowed: section.key, e.g. model.ffn, "
                                           "moe.cf_train, train.learning_rate", key));
  if (key == "train.seed") doc.fail_value(dotted, &v, "train.seed is set by seeds (a count or a list), not by set");
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

// The overrides in table `key` of `t` (set = { "moe.cf_train" = 2.0 }), nested tables flattened.
std::vector<Override> read_overrides(TomlSection& t, std::string_view key) {
  std::vector<Override> out;
  if (const toml::table* set = t.table(key))
    for (const auto& [k, node] : flatten(*set)) out.push_back(make_override(t.document(), t.dotted(key), k, *node));
  return out;
}

// `given` over `into`, key by key.
void merge(std::vector<Override>& into, std::vector<Override> given) {
  for (Override& o : given) {
    auto it = std::find_if(into.begin(), into.end(), [&](const Override& c) { return c.key == o.key; });
    if (it != into.end())
      *it = std::move(o);
    else
      into.push_back(std::move(o));
  }
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

// ---- [sweep], [scale.X] and [pretrain.X] ----

// A path as given in the spec (relative to the spec's folder) and its line.
struct ModelRef {
  std::string given;
  int64_t line = 0;
};

void read_ref(TomlSection& t, std::string_view key, ModelRef& ref) {
  if (t.has(key)) ref = {t.string(key, ""), t.line(key)};
}

struct StageRefs {
  ModelRef model, checkpoint;
};

// What [sweep], a [scale.X] and the stages set, before any file they name is read.
struct Reading {
  Settings settings;
  ModelRef model, simulate_model, task;
  std::vector<PretrainStage> stages;
  std::vector<StageRefs> stage_refs;
};

// The keys [sweep] and [scale.X] share, over the values so far.
void read_settings(TomlSection& t, Reading& r) {
  Settings& s = r.settings;
  read_ref(t, "model", r.model);
  s.steps = t.integer("steps", s.steps, 1);
  s.eval_every = t.integer("eval_every", s.eval_every, 0);
  s.checkpoint_every = t.integer("checkpoint_every", s.checkpoint_every, 0);
  s.seeds = read_seeds(t, s.seeds);
  s.vocab = t.integer("vocab", s.vocab, 1);
  s.threads = t.integer("threads", s.threads, 0);
  read_ref(t, "simulate_model", r.simulate_model);
  merge(s.common, read_overrides(t, "set"));
  read_ref(t, "task", r.task);
  if (t.has("mesh")) {
    s.mesh = t.string("mesh", "");
    s.mesh_line = t.line("mesh");
  }
  s.layout = t.string("layout", s.layout);
}

// [pretrain.X], or its [scale.Y.pretrain.X] over it.
void read_stage(TomlSection& t, PretrainStage& st, StageRefs& refs) {
  read_ref(t, "model", refs.model);
  st.steps = t.integer("steps", st.steps, 1);
  st.seed = t.integer("seed", st.seed, 0);
  merge(st.sets, read_overrides(t, "set"));
  read_ref(t, "checkpoint", refs.checkpoint);
  t.finish();
}

// [scale.X] over `r`, with its [scale.X.pretrain.<stage>] tables over the stages.
void read_scale(const TomlDocument& doc, const toml::table* table, const std::string& name, Reading& r) {
  TomlSection t(doc, table, "scale." + name);
  read_settings(t, r);
  TomlSection stages(doc, t.table("pretrain"), t.dotted("pretrain"),
                     fmt::format("[{}] (the spec's [pretrain.<name>] stages)", t.dotted("pretrain")));
  for (size_t i = 0; i < r.stages.size(); ++i)
    if (const toml::table* st = stages.table(r.stages[i].name)) {
      TomlSection s(doc, st, stages.dotted(r.stages[i].name));
      read_stage(s, r.stages[i], r.stage_refs[i]);
    }
  stages.finish();
  t.finish();
}

// ---- arms ----

struct SweepAxis {
  std::vector<std::vector<Override>> points;  // each point: one override per key of the axis
};

// grid: one axis per key; zip: one axis whose points pair the keys' values by position.
std::vector<SweepAxis> sweep_axes(const TomlDocument& doc, const toml::table* grid, const toml::table* zip,
                                  std::set<std::string>& keys) {
  std::vector<SweepAxis> axes;
  auto list_of = [&](const std::string& table, const std::string& key, const toml::node& v) -> const toml::array& {
    const std::string dotted = fmt::format("{}.{}", table, key);
    if (!v.is_array() || v.as_array()->empty()) doc.fail_value(dotted, &v, "allowed: a non-empty list of values");
    if (!keys.insert(key).second)
      doc.fail_value(dotted, &v, fmt::format("{} is given twice in the arm; allowed: each key once (in set, grid or zip)", key));
    return *v.as_array();
  };
  if (grid) {
    for (const auto& [key, node] : flatten(*grid)) {
      SweepAxis axis;
      for (const toml::node& e : list_of("arm.grid", key, *node)) {
        axis.points.push_back({make_override(doc, "arm.grid", key, e)});
        axis.points.back().back().swept = true;
      }
      axes.push_back(std::move(axis));
    }
  }
  if (zip) {
    SweepAxis axis;
    for (const auto& [key, node] : flatten(*zip)) {
      const toml::array& values = list_of("arm.zip", key, *node);
      if (!axis.points.empty() && values.size() != axis.points.size())
        doc.fail_value("arm.zip." + key, node,
                       fmt::format("{} values where the keys before it have {}; zip pairs values by position, so "
                                   "allowed: lists of the same length",
                                   values.size(), axis.points.size()));
      if (axis.points.empty()) axis.points.resize(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        axis.points[i].push_back(make_override(doc, "arm.zip", key, values[i]));
        axis.points[i].back().swept = true;
      }
    }
    if (axis.points.empty())
      doc.fail_at_line(zip->source().begin.line, "arm.zip is empty; give it lists of values, or drop it");
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

std::vector<Arm> expand_arm(const TomlDocument& doc, const toml::table* table, const Settings& settings,
                            const std::vector<PretrainStage>& stages) {
  TomlSection t(doc, table, "arm", "[[arm]]");
  Arm base;
  base.line = t.line();
  base.model = settings.model;
  base.model_text = settings.model_text;
  base.name = t.string("name", "");
  base.seeds = read_seeds(t, settings.seeds);
  std::set<std::string> keys;
  for (Override& o : read_overrides(t, "set")) {
    if (!keys.insert(o.key).second)
      doc.fail_at_line(o.line, fmt::format("arm.set.{} is given twice; allowed: each key once", o.key));
    base.overrides.push_back(std::move(o));
  }
  const toml::table* grid = t.table("grid");
  const toml::table* zip = t.table("zip");
  std::string stage_names;
  for (const PretrainStage& st : stages) stage_names += (stage_names.empty() ? "" : ", ") + st.name;
  bool no_stage = false;
  if (t.has("pretrain")) {
    const std::string name = t.string("pretrain", "");
    auto it = std::find_if(stages.begin(), stages.end(), [&](const PretrainStage& st) { return st.name == name; });
    no_stage = name == "none" && it == stages.end();
    if (it == stages.end() && !no_stage)
      t.fail("pretrain", fmt::format("no [pretrain.{}] stage; allowed: {}", name,
                                     stage_names.empty() ? "none (the spec has no [pretrain.<name>] stages)"
                                                         : stage_names + ", none"));
    if (!no_stage) base.pretrain = it - stages.begin();
  }
  base.upcycle = t.boolean("upcycle", false);
  t.finish();
  if (base.pretrain < 0 && stages.size() == 1 && !no_stage) base.pretrain = 0;
  if (base.pretrain < 0 && stages.size() > 1 && !no_stage)
    doc.fail_at_line(base.line, fmt::format("missing key arm.pretrain (required in [[arm]] when the spec has several "
                                            "stages; allowed: {}, none)", stage_names));
  if (base.upcycle && base.pretrain < 0)
    doc.fail_at_line(base.line, "arm.upcycle = true needs a [pretrain.<name>] stage (the dense checkpoint to upcycle); "
                                "allowed: upcycle with pretrain = \"<a stage>\"");
  if (base.pretrain >= 0 && !base.upcycle) {
    base.model = stages[static_cast<size_t>(base.pretrain)].model;
    base.model_text = stages[static_cast<size_t>(base.pretrain)].model_text;
  }
  const std::vector<SweepAxis> axes = sweep_axes(doc, grid, zip, keys);
  if (axes.empty()) {
    if (base.name.empty())
      doc.fail_at_line(base.line, "missing key arm.name (required in [[arm]] without a grid or zip, which name their arms)");
    return {base};
  }

  // The grid's combinations (first key slowest) × the zip's positions.
  std::vector<std::vector<Override>> combos{{}};
  for (const SweepAxis& axis : axes) {
    if (combos.size() * axis.points.size() > static_cast<size_t>(kMaxRuns))  // both <= kMaxRuns: no overflow
      doc.fail_at_line(base.line, fmt::format("the arm's grid and zip make more than {} arms; allowed: at most {} runs "
                                              "in a sweep (arms × seeds)", kMaxRuns, kMaxRuns));
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
RunConfig check_against_model(const TomlDocument& doc, const std::string& model, const std::string& model_text,
                                const std::vector<std::string>& sets, const std::vector<const Override*>& given,
                                int64_t fallback_line, const std::string& what) {
  try {
    return parse_run_config(model_text, model, sets);
  } catch (const InputError& e) {
    const std::string msg = e.what();
    int64_t line = fallback_line;
    std::string key;
    for (const Override* o : given)
      if (msg.find("(--set " + o->set_arg() + ")") != std::string::npos) {
        line = o->line;
        key = o->key;
      }
    doc.fail_at_line(line, fmt::format("{}{} is not accepted by the model config {}: {}", what,
                                       key.empty() ? "" : fmt::format(": key {}", key), model, msg));
  }
}

}  // namespace

Spec load_spec(const std::string& path, const std::string& scale) {
  Spec spec;
  spec.path = path;
  spec.text = read_file(path);
  const TomlDocument doc = TomlDocument::parse(spec.text, path);
  TomlSection top(doc, &doc.root, "");
  TomlSection sweep(doc, top.table("sweep"), "sweep");
  const auto scale_tables = top.named_tables("scale");
  const auto stage_tables = top.named_tables("pretrain");
  const std::vector<const toml::table*> arm_tables = top.tables("arm");
  top.finish();

  Reading r;
  r.model.line = sweep.line();
  spec.name = sweep.string("name", fs::path(path).stem().string());
  spec.description = sweep.string("description", "");
  read_settings(sweep, r);
  const std::string default_scale = sweep.string("scale", "");
  sweep.finish();

  // Pre-training stages, then the scale presets (each read, the chosen one applied).
  for (const auto& [name, table] : stage_tables) {
    PretrainStage st;
    st.name = name;
    st.line = table->source().begin.line;
    StageRefs refs;
    TomlSection t(doc, table, "pretrain." + name);
    read_stage(t, st, refs);
    r.stages.push_back(std::move(st));
    r.stage_refs.push_back(refs);
  }
  for (const auto& [name, table] : scale_tables) spec.scales.push_back(name);
  std::string allowed_scales;
  for (const std::string& s : spec.scales) allowed_scales += (allowed_scales.empty() ? "" : ", ") + s;
  if (allowed_scales.empty()) allowed_scales = "none: the spec defines no [scale.<name>] tables";
  if (!default_scale.empty() && std::find(spec.scales.begin(), spec.scales.end(), default_scale) == spec.scales.end())
    sweep.fail("scale", fmt::format("not a preset of this spec; allowed: {}", allowed_scales));
  spec.scale = scale.empty() ? default_scale : scale;
  if (!spec.scale.empty() && std::find(spec.scales.begin(), spec.scales.end(), spec.scale) == spec.scales.end())
    doc.fail_at_line(0, fmt::format("--scale {}: no [scale.{}] in this spec; allowed: {}", spec.scale, spec.scale,
                                    allowed_scales));
  for (const auto& [name, table] : scale_tables) {
    Reading scaled = r;
    read_scale(doc, table, name, scaled);
    if (name == spec.scale) r = std::move(scaled);
  }
  spec.settings = r.settings;
  spec.pretrain = r.stages;
  const ModelRef &model = r.model, &simulate_model = r.simulate_model, &task = r.task;
  const std::string scale_name = spec.scale.empty() ? "[sweep]" : fmt::format("[sweep] and [scale.{}]", spec.scale);
  const std::string given_in = spec.scale.empty() ? "[sweep]" : fmt::format("[sweep] or [scale.{}]", spec.scale);
  if (model.given.empty())
    doc.fail_at_line(sweep.line(), fmt::format("missing key sweep.model (required in {}): the base model config, e.g. "
                                               "model = \"../configs/models/small.toml\"", given_in));
  if (spec.settings.steps == 0)
    doc.fail_at_line(sweep.line(), fmt::format("missing key sweep.steps (required in {}): training steps per run, e.g. "
                                               "steps = 100", given_in));

  // The models, relative to the spec's folder.
  auto read_model = [&](const ModelRef& m, const char* key, std::string& resolved, std::string& text) {
    const fs::path p = fs::path(m.given).is_absolute() ? fs::path(m.given) : (fs::path(path).parent_path() / m.given).lexically_normal();
    resolved = p.string();
    try {
      text = read_file(resolved);
    } catch (const InputError& e) {
      doc.fail_at_line(m.line, fmt::format("{} = \"{}\": {}", key, m.given, e.what()));
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
      doc.fail_at_line(task.line, fmt::format("task = \"{}\": no directory {}; allowed: a directory holding train.tsv "
                                              "and validation.tsv, or a name under DATA/tasks such as brown_genre",
                                              task.given, dir.string()));
  }

  for (size_t i = 0; i < spec.pretrain.size(); ++i) {
    PretrainStage& st = spec.pretrain[i];
    const StageRefs& refs = r.stage_refs[i];
    if (refs.model.given.empty()) {
      st.model = spec.settings.model;
      st.model_text = spec.settings.model_text;
    } else {
      read_model(refs.model, "model", st.model, st.model_text);
    }
    if (!refs.checkpoint.given.empty()) {
      const fs::path c = fs::path(refs.checkpoint.given).is_absolute() ? fs::path(refs.checkpoint.given) : spec_dir / refs.checkpoint.given;
      if (!fs::exists(c))
        doc.fail_at_line(refs.checkpoint.line,
                         fmt::format("pretrain.{}.checkpoint = \"{}\": {} does not exist; allowed: a checkpoint file or "
                                     "run directory, relative to the spec's folder",
                                     st.name, refs.checkpoint.given, c.string()));
      st.checkpoint = fs::absolute(c).lexically_normal().string();
    } else if (st.steps == 0) {
      doc.fail_at_line(st.line, fmt::format("missing key pretrain.{}.steps (required in [pretrain.{}] without a "
                                            "checkpoint to reuse): pre-training steps, e.g. steps = 300",
                                            st.name, st.name));
    }
    std::vector<const Override*> given;
    for (const Override& o : st.sets) given.push_back(&o);
    check_against_model(doc, st.model, st.model_text, st.set_args(), given, st.line, fmt::format("[pretrain.{}] set", st.name));
  }

  // The runs' MPI mesh and layout, read here; each arm's model is checked against them by
  // run_ablation (experiments/ablation/cluster.hpp), which may replace the mesh (--mpi N).
  Settings& s = spec.settings;
  if (!s.layout.empty() && s.mesh.empty())
    doc.fail_at_line(0, fmt::format("layout = \"{}\" without a mesh; allowed: give mesh = \"data:N\" beside it in {}", s.layout,
                                    given_in));
  if (!s.mesh.empty()) {
    try {
      parse_layout(s.layout.empty() ? "batch:data" : s.layout, parse_mesh(s.mesh));
    } catch (const InputError& e) {
      doc.fail_at_line(s.mesh_line, fmt::format("mesh = \"{}\", layout = \"{}\": {}", s.mesh, s.layout, e.what()));
    }
  }

  // The common overrides alone, then each arm.
  {
    std::vector<const Override*> given;
    for (const Override& o : s.common) given.push_back(&o);
    std::vector<std::string> sets;
    for (const Override& o : s.common) sets.push_back(o.set_arg());
    check_against_model(doc, s.model, s.model_text, sets, given, model_line, fmt::format("{} set", scale_name));
  }
  if (arm_tables.empty())
    doc.fail_at_line(0, "the spec has no arms; add at least one [[arm]] table, e.g. [[arm]] name = \"baseline\"");
  int64_t run_count = 0;
  for (const toml::table* t : arm_tables)
    for (Arm& a : expand_arm(doc, t, s, spec.pretrain)) {
      run_count += static_cast<int64_t>(a.seeds.size());  // each <= kMaxRuns: no overflow before the check
      if (run_count > kMaxRuns)
        doc.fail_at_line(a.line, fmt::format("arm \"{}\" brings the sweep to more than {} runs (arms × seeds); allowed: "
                                             "at most {}", a.name, kMaxRuns, kMaxRuns));
      spec.arms.push_back(std::move(a));
    }

  // Names and directories unique; every arm accepted by the model config.
  std::map<std::string, int64_t> names, slugs;
  for (Arm& a : spec.arms) {
    if (auto [it, fresh] = names.emplace(a.name, a.line); !fresh)
      doc.fail_at_line(a.line, fmt::format("arm \"{}\" is named twice (also at line {}); arm names must be unique", a.name,
                                           it->second));
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
    const RunConfig cfg = check_against_model(doc, a.model, a.model_text, sets, given, a.line, fmt::format("arm \"{}\"", a.name));
    if (!s.simulate_model.empty()) {
      std::vector<const Override*> own;
      for (const Override& o : a.overrides) own.push_back(&o);
      check_against_model(doc, s.simulate_model, s.simulate_model_text, simulate_sets(a), own, a.line,
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
