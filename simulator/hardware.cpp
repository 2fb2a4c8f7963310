#include "simulator/hardware.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#ifndef SY_SOURCE_DIR
#define SY_SOURCE_DIR "."
#endif

namespace sy {

double EfficiencyCurve::at(double size) const {
  if (points.empty()) return 1.0;
  if (size <= points.front().first) return points.front().second;
  if (size >= points.back().first) return points.back().second;
  for (size_t i = 1; i < points.size(); ++i) {
    const auto& [x1, y1] = points[i];
    if (size > x1) continue;
    const auto& [x0, y0] = points[i - 1];
    const double t = std::log(size / x0) / std::log(x1 / x0);
    return y0 + t * (y1 - y0);
  }
  return points.back().second;
}

std::string_view wraparound_name(Wraparound w) {
  switch (w) {
    case Wraparound::always: return "always";
    case Wraparound::full_axis: return "full_axis";
    case Wraparound::multiple_of: return "multiple_of";
  }
  return "?";
}

int64_t HardwareSpec::pod_chips() const {
  int64_t n = 1;
  for (int64_t t : torus) n *= t;
  return n;
}

double HardwareSpec::peak_flops(OpClass c, DType t) const {
  if (c != OpClass::matmul) return vector_flops;
  return t == DType::bf16 ? matmul_flops_bf16 : matmul_flops_f32;
}

const ClassEfficiency& HardwareSpec::efficiency_of(OpKind k, bool broadcast) const {
  if (broadcast)
    if (auto b = broadcast_efficiency.find(k); b != broadcast_efficiency.end()) return b->second;
  auto it = kind_efficiency.find(k);
  return it != kind_efficiency.end() ? it->second : efficiency_of(op_def(k).op_class);
}

std::string default_hardware_dir() { return std::string(SY_SOURCE_DIR) + "/simulator/hardware"; }

namespace {

constexpr std::array<OpClass, kOpClassCount> kClasses = {OpClass::matmul, OpClass::elementwise, OpClass::reduction,
                                                          OpClass::index, OpClass::layout};

// One table of the file; each getter names its key, so unread keys are reported as unknown.
class Table {
 public:
  Table(std::string file, const toml::table* t, std::string name) : file_(std::move(file)), t_(t), name_(std::move(name)) {}

  [[noreturn]] void fail(std::string_view key, const std::string& what) const {
    const toml::node* n = t_ ? t_->get(key) : nullptr;
    const auto line = n ? n->source().begin.line : (t_ ? t_->source().begin.line : 0);
    const std::string where = line > 0 ? fmt::format("{}:{}", file_, line) : file_;
    throw InputError(fmt::format("{}: key '{}{}': {}", where, name_.empty() ? "" : name_ + ".", key, what));
  }

  // A missing required key is reported by finish(), after unknown keys (a misspelt key is both).
  const toml::node* get(std::string_view key, bool required) {
    allowed_.insert(std::string(key));
    const toml::node* n = t_ ? t_->get(key) : nullptr;
    if (!n && required && missing_.empty()) missing_ = std::string(key);
    return n;
  }

  static std::string text(const toml::node& n) {
    std::ostringstream os;
    n.visit([&](const auto& v) { os << v; });
    return os.str();
  }

  double number(std::string_view key, std::optional<double> fallback, const std::function<bool(double)>& ok,
                std::string_view allowed) {
    const toml::node* n = get(key, !fallback);
    if (!n) return fallback.value_or(0.0);
    std::optional<double> v;
    if (n->is_floating_point()) v = n->value_exact<double>();
    if (n->is_integer()) v = static_cast<double>(*n->value_exact<int64_t>());
    if (!v) fail(key, fmt::format("expected a number, got {}", text(*n)));
    if (!ok(*v)) fail(key, fmt::format("{} is not allowed (allowed: {})", text(*n), allowed));
    return *v;
  }

  double positive(std::string_view key) { return number(key, std::nullopt, [](double x) { return x > 0; }, "a number > 0"); }

  int64_t integer(std::string_view key, std::optional<int64_t> fallback, int64_t lo) {
    const toml::node* n = get(key, !fallback);
    if (!n) return fallback.value_or(lo);
    auto v = n->value_exact<int64_t>();
    if (!v) fail(key, fmt::format("expected an integer, got {}", text(*n)));
    if (*v < lo) fail(key, fmt::format("{} is not allowed (allowed: integers >= {})", *v, lo));
    return *v;
  }

  std::string string(std::string_view key, std::optional<std::string> fallback) {
    const toml::node* n = get(key, !fallback);
    if (!n) return fallback.value_or(std::string());
    auto v = n->value_exact<std::string>();
    if (!v) fail(key, fmt::format("expected a string, got {}", text(*n)));
    return *v;
  }

  std::vector<int64_t> integers(std::string_view key) {
    const toml::node* n = get(key, true);
    if (!n) return {1};
    const toml::array* a = n->as_array();
    if (!a || a->empty()) fail(key, "expected a non-empty array of integers, e.g. [16, 16, 16]");
    std::vector<int64_t> r;
    for (const toml::node& e : *a) {
      auto v = e.value_exact<int64_t>();
      if (!v || *v < 1) fail(key, fmt::format("element {} is not an integer >= 1", text(e)));
      r.push_back(*v);
    }
    return r;
  }

  EfficiencyCurve curve(std::string_view key) {
    EfficiencyCurve c;
    const toml::node* n = get(key, false);
    if (!n) return c;
    const toml::array* a = n->as_array();
    const char* form = "an array of [size, fraction] pairs with sizes increasing and fractions in (0, 1], e.g. "
                       "[[1e6, 0.2], [1e9, 0.7]]";
    if (!a || a->empty()) fail(key, fmt::format("expected {}", form));
    for (const toml::node& e : *a) {
      const toml::array* p = e.as_array();
      auto num = [](const toml::node& x) -> std::optional<double> {
        if (x.is_floating_point()) return x.value_exact<double>();
        if (x.is_integer()) return static_cast<double>(*x.value_exact<int64_t>());
        return std::nullopt;
      };
      if (!p || p->size() != 2) fail(key, fmt::format("point {} is not a [size, fraction] pair (expected {})", text(e), form));
      auto sz = num(*p->get(0));
      auto fr = num(*p->get(1));
      if (!sz || !fr || *sz <= 0 || *fr <= 0 || *fr > 1 || (!c.points.empty() && *sz <= c.points.back().first))
        fail(key, fmt::format("point {} is not allowed (expected {})", text(e), form));
      c.points.emplace_back(*sz, *fr);
    }
    return c;
  }

  const toml::table* subtable(std::string_view key) {
    const toml::node* n = get(key, false);
    if (!n) return nullptr;
    if (!n->is_table()) fail(key, "expected a table");
    return n->as_table();
  }

  void finish() const {
    if (t_)
      for (const auto& [k, v] : *t_) {
        if (allowed_.count(std::string(k.str()))) continue;
        std::string allowed;
        for (const std::string& a : allowed_) allowed += (allowed.empty() ? "" : ", ") + a;
        fail(k.str(), fmt::format("unknown key (allowed: {})", allowed));
      }
    if (!missing_.empty()) {
      const auto line = t_ ? t_->source().begin.line : 0;
      throw InputError(fmt::format("{}{}: key '{}{}' is missing (required)", file_,
                                   line > 0 ? fmt::format(":{}", line) : std::string(), name_.empty() ? "" : name_ + ".",
                                   missing_));
    }
  }

 private:
  std::string file_;
  const toml::table* t_;
  std::string name_;
  std::set<std::string> allowed_;
  std::string missing_;  // the first required key not found
};

}  // namespace

HardwareSpec parse_hardware(std::string_view text, std::string_view source_name) {
  const std::string file(source_name);
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    throw InputError(fmt::format("{}:{}: not valid TOML: {}", file, e.source().begin.line, e.description()));
  }
  HardwareSpec s;
  s.source = file;
  Table top(file, &root, "");
  const toml::table* chip_table = top.subtable("chip");
  const toml::table* ici_table = top.subtable("ici");
  const toml::table* eff = top.subtable("efficiency");
  if (!chip_table) top.get("chip", true);
  if (!ici_table) top.get("ici", true);
  top.finish();
  Table chip(file, chip_table, "chip");
  Table ici(file, ici_table, "ici");

  auto fraction = [](double x) { return x >= 0 && x < 1; };
  s.name = chip.string("name", std::nullopt);
  s.description = chip.string("description", std::string());
  s.devices_per_chip = chip.integer("devices_per_chip", std::nullopt, 1);
  s.matmul_flops_bf16 = chip.positive("matmul_flops_bf16");
  s.matmul_flops_f32 = chip.positive("matmul_flops_f32");
  s.vector_flops = chip.positive("vector_flops");
  s.hbm_bytes = chip.positive("hbm_bytes");
  s.hbm_bandwidth = chip.positive("hbm_bandwidth");
  s.op_overhead = chip.number("op_overhead", 0.0, [](double x) { return x >= 0; }, "seconds >= 0");
  s.memory_reserve = chip.number("memory_reserve", 0.0, fraction, "a fraction in [0, 1)");
  chip.finish();

  s.link_bandwidth = ici.positive("link_bandwidth");
  s.hop_latency = ici.number("hop_latency", std::nullopt, [](double x) { return x >= 0; }, "seconds >= 0");
  s.collective_overhead = ici.number("collective_overhead", 0.0, [](double x) { return x >= 0; }, "seconds >= 0");
  s.ici_efficiency = ici.number("efficiency", 1.0, [](double x) { return x > 0 && x <= 1; }, "a fraction in (0, 1]");
  s.torus = ici.integers("torus");
  if (s.torus.size() > 3) ici.fail("torus", fmt::format("{} axes given (allowed: 1 to 3)", s.torus.size()));
  const std::string wrap = ici.string("wraparound", std::nullopt);
  bool known = false;
  for (Wraparound w : {Wraparound::always, Wraparound::full_axis, Wraparound::multiple_of})
    if (wrap == wraparound_name(w)) s.wraparound = w, known = true;
  if (!known) ici.fail("wraparound", fmt::format("'{}' is not allowed (allowed: always, full_axis, multiple_of)", wrap));
  s.wraparound_multiple = s.wraparound == Wraparound::multiple_of ? ici.integer("wraparound_multiple", std::nullopt, 1)
                                                                  : ici.integer("wraparound_multiple", 1, 1);
  s.core_link_bandwidth = s.devices_per_chip > 1 ? ici.positive("core_link_bandwidth")
                                                 : ici.number("core_link_bandwidth", 0.0, [](double x) { return x >= 0; },
                                                              "a number >= 0");
  ici.finish();

  Table effs(file, eff, "efficiency");
  for (OpClass c : kClasses) {
    const std::string cname(op_class_name(c));
    Table t(file, effs.subtable(cname), "efficiency." + cname);
    s.efficiency[static_cast<size_t>(c)] = ClassEfficiency{t.curve("compute"), t.curve("memory")};
    t.finish();
  }
  for (const char* group : {"op", "broadcast"}) {
    const toml::table* ops = effs.subtable(group);
    if (!ops) continue;
    Table kinds(file, ops, fmt::format("efficiency.{}", group));
    for (const auto& [key, node] : *ops) {
      const std::string name(key.str());
      auto kind = op_from_name(name);
      if (!kind) {
        std::string known;
        for (OpKind k : kAllOpKinds) known += fmt::format("{}{}", known.empty() ? "" : ", ", op_name(k));
        kinds.fail(name, fmt::format("unknown op kind (known: {})", known));
      }
      Table t(file, kinds.subtable(name), fmt::format("efficiency.{}.{}", group, name));
      (std::string_view(group) == "op" ? s.kind_efficiency : s.broadcast_efficiency)[*kind] =
          ClassEfficiency{t.curve("compute"), t.curve("memory")};
      t.finish();
    }
    kinds.finish();
  }
  effs.finish();
  return s;
}

HardwareSpec load_hardware(const std::string& name_or_path, const std::string& hardware_dir) {
  std::string path = name_or_path;
  const bool is_path = name_or_path.find('/') != std::string::npos || name_or_path.ends_with(".toml");
  if (!is_path) path = hardware_dir + "/" + name_or_path + ".toml";
  std::ifstream in(path);
  if (!in) {
    std::string known;
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(hardware_dir, ec))
      if (e.path().extension() == ".toml") names.push_back(e.path().stem().string());
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
    throw InputError(fmt::format("hardware '{}': cannot read {} (known chips in {}: {})", name_or_path, path, hardware_dir,
                                 known.empty() ? "none" : known));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hardware(ss.str(), path);
}

std::string to_toml(const HardwareSpec& s) {
  auto num = [](double x) { return fmt::format("{:.6g}", x); };
  std::string r;
  r += fmt::format("[chip]\nname = \"{}\"\ndescription = \"{}\"\ndevices_per_chip = {}\n", s.name, s.description,
                   s.devices_per_chip);
  r += fmt::format("matmul_flops_bf16 = {}\nmatmul_flops_f32 = {}\nvector_flops = {}\n", num(s.matmul_flops_bf16),
                   num(s.matmul_flops_f32), num(s.vector_flops));
  r += fmt::format("hbm_bytes = {}\nhbm_bandwidth = {}\nop_overhead = {}\nmemory_reserve = {}\n", num(s.hbm_bytes),
                   num(s.hbm_bandwidth), num(s.op_overhead), num(s.memory_reserve));
  std::string torus;
  for (int64_t t : s.torus) torus += (torus.empty() ? "" : ", ") + std::to_string(t);
  r += fmt::format("\n[ici]\nlink_bandwidth = {}\nhop_latency = {}\ncollective_overhead = {}\nefficiency = {}\n",
                   num(s.link_bandwidth), num(s.hop_latency), num(s.collective_overhead), num(s.ici_efficiency));
  r += fmt::format("torus = [{}]\nwraparound = \"{}\"\nwraparound_multiple = {}\ncore_link_bandwidth = {}\n", torus,
                   wraparound_name(s.wraparound), s.wraparound_multiple, num(s.core_link_bandwidth));
  auto curve = [&](const EfficiencyCurve& k) {
    std::string t;
    for (const auto& [x, y] : k.points) t += fmt::format("{}[{}, {}]", t.empty() ? "" : ", ", num(x), num(y));
    return "[" + t + "]";
  };
  for (OpClass c : kClasses) {
    const ClassEfficiency& e = s.efficiency_of(c);
    r += fmt::format("\n[efficiency.{}]\n", op_class_name(c));
    if (!e.compute.points.empty()) r += fmt::format("compute = {}\n", curve(e.compute));
    if (!e.memory.points.empty()) r += fmt::format("memory = {}\n", curve(e.memory));
  }
  for (const char* group : {"op", "broadcast"})
    for (const auto& [k, e] : std::string_view(group) == "op" ? s.kind_efficiency : s.broadcast_efficiency) {
      r += fmt::format("\n[efficiency.{}.{}]\n", group, op_name(k));
      if (!e.compute.points.empty()) r += fmt::format("compute = {}\n", curve(e.compute));
      if (!e.memory.points.empty()) r += fmt::format("memory = {}\n", curve(e.memory));
    }
  return r;
}

}  // namespace sy
