#include "simulator/hardware.hpp"

#include "graph/error.hpp"
#include "graph/toml_schema.hpp"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
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

double HardwareSpec::ragged_all_to_all_time(double bytes) const {
  const auto& p = ragged_all_to_all_seconds.points;
  SY_CHECK(!p.empty(), "ragged_all_to_all_time: the hardware file has no ragged_all_to_all_seconds");
  if (bytes <= p.front().first) return p.front().second;
  if (bytes >= p.back().first) return p.back().second * bytes / p.back().first;
  for (size_t i = 1; i < p.size(); ++i)
    if (bytes <= p[i].first) {
      const double t = (bytes - p[i - 1].first) / (p[i].first - p[i - 1].first);
      return p[i - 1].second + t * (p[i].second - p[i - 1].second);
    }
  return p.back().second;
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

double HardwareSpec::hop_latency_of(OpKind k) const {
  auto it = collective_kinds.find(k);
  return it != collective_kinds.end() ? it->second.hop_latency : hop_latency;
}

double HardwareSpec::eager_warmed_share(OpKind k, OpKind by) const {
  if (k == by) return 1;
  auto it = collective_kinds.find(k);
  if (it == collective_kinds.end()) return eager_path_share;
  auto w = it->second.warmed_by.find(by);
  return w != it->second.warmed_by.end() ? w->second : eager_path_share;
}

double HardwareSpec::eager_curve_of(OpKind k, double c) const {
  auto it = collective_kinds.find(k);
  if (it == collective_kinds.end()) return c;
  return c * (c < 0 ? it->second.curve_scale_below : it->second.curve_scale_above);
}

const EfficiencyCurve& HardwareSpec::ici_efficiency_of(OpKind k) const {
  auto it = collective_kinds.find(k);
  return it != collective_kinds.end() && !it->second.efficiency_by_size.points.empty() ? it->second.efficiency_by_size
                                                                                      : ici_efficiency_by_size;
}

std::string default_hardware_dir() { return std::string(SY_SOURCE_DIR) + "/simulator/hardware"; }

namespace {

constexpr std::array<OpClass, kOpClassCount> kClasses = {OpClass::matmul, OpClass::elementwise, OpClass::reduction,
                                                          OpClass::index, OpClass::layout};

// An efficiency curve: [[size, fraction], ...] with sizes increasing and fractions in (0, 1].
// A curve of [size, fraction] points (fractions in (0, 1]), or with `seconds` of [bytes, seconds]
// points (seconds >= 0).
// A curve's values: efficiency fractions in (0, 1], times in seconds (>= 0), or times relative to
// the samples (> -1 s: below 0 where a collective is faster than its sample).
enum class CurveValues { fraction, seconds, relative_seconds };

EfficiencyCurve read_curve(TomlSection& t, std::string_view key, CurveValues values = CurveValues::fraction) {
  EfficiencyCurve c;
  const toml::node* n = t.node(key);
  if (!n) return c;
  const char* form =
      values == CurveValues::relative_seconds
          ? "allowed: an array of [bytes, seconds] pairs with bytes increasing and seconds > -1 (below 0: faster than the "
            "samples), e.g. [[1.3e5, -4e-6], [6.7e7, 2e-5], [1.07e9, 5e-5]]"
      : values == CurveValues::seconds
          ? "allowed: an array of [bytes, seconds] pairs with bytes increasing and seconds >= 0, e.g. [[1.3e5, 2e-4], [1.3e6, 7e-4]]"
          : "allowed: an array of [size, fraction] pairs with sizes increasing and fractions in (0, 1], e.g. [[1e6, 0.2], [1e9, 0.7]]";
  auto allowed = [&](double v) {
    switch (values) {
      case CurveValues::fraction: return v > 0 && v <= 1;
      case CurveValues::seconds: return v >= 0;
      case CurveValues::relative_seconds: return v > -1;
    }
    return false;
  };
  const toml::array* a = n->as_array();
  if (!a || a->empty()) t.fail(key, form);
  auto num = [](const toml::node* x) -> std::optional<double> {
    if (x && x->is_floating_point()) return x->value_exact<double>();
    if (x && x->is_integer()) return static_cast<double>(*x->value_exact<int64_t>());
    return std::nullopt;
  };
  for (const toml::node& e : *a) {
    const toml::array* p = e.as_array();
    auto sz = p && p->size() == 2 ? num(p->get(0)) : std::nullopt;
    auto fr = p && p->size() == 2 ? num(p->get(1)) : std::nullopt;
    if (!sz || !fr || !std::isfinite(*sz) || !std::isfinite(*fr) || *sz <= 0 || !allowed(*fr) || (!c.points.empty() && *sz <= c.points.back().first))
      t.fail(key, fmt::format("point {} is not allowed; {}", TomlDocument::value_text(e), form));
    c.points.emplace_back(*sz, *fr);
  }
  return c;
}

ClassEfficiency read_efficiency(const TomlDocument& doc, const toml::table* table, const std::string& path) {
  TomlSection t(doc, table, path);
  ClassEfficiency e{read_curve(t, "compute"), read_curve(t, "memory")};
  t.finish();
  return e;
}

constexpr std::pair<Wraparound, std::string_view> kWraparounds[] = {
    {Wraparound::always, "always"}, {Wraparound::full_axis, "full_axis"}, {Wraparound::multiple_of, "multiple_of"}};

}  // namespace

HardwareSpec parse_hardware(std::string_view text, std::string_view source_name) {
  const TomlDocument doc = TomlDocument::parse(text, std::string(source_name));
  HardwareSpec s;
  s.source = doc.file;
  TomlSection top(doc, &doc.root, "");
  TomlSection chip(doc, top.table("chip", true), "chip");
  TomlSection ici(doc, top.table("ici", true), "ici");
  TomlSection effs(doc, top.table("efficiency"), "efficiency");
  top.finish();

  s.name = chip.string("name", kRequired);
  s.description = chip.string("description", "");
  s.devices_per_chip = chip.integer("devices_per_chip", kRequired, 1);
  s.matmul_flops_bf16 = chip.number("matmul_flops_bf16", kRequired, above(0));
  if (chip.has("f32_matmul_passes")) {  // an MXU of bf16 multipliers: an f32 dot is bf16 passes
    if (chip.has("matmul_flops_f32"))
      chip.fail("matmul_flops_f32", "give matmul_flops_f32 (a native f32 rate) or f32_matmul_passes (f32 dots as bf16 "
                                    "passes at matmul_flops_bf16), not both");
    s.f32_matmul_passes = chip.integer("f32_matmul_passes", kRequired, 1, 6);
    s.matmul_flops_f32 = s.matmul_flops_bf16 / static_cast<double>(s.f32_matmul_passes);
  } else {
    s.matmul_flops_f32 = chip.number("matmul_flops_f32", kRequired, above(0));
  }
  s.vector_flops = chip.number("vector_flops", kRequired, above(0));
  s.hbm_bytes = chip.number("hbm_bytes", kRequired, above(0));
  s.hbm_bandwidth = chip.number("hbm_bandwidth", kRequired, above(0));
  s.op_overhead = chip.number("op_overhead", 0.0, at_least(0, "seconds"));
  s.memory_reserve = chip.number("memory_reserve", 0.0, interval(0, 1, "[)", "a fraction"));
  s.fuses = chip.boolean("fuses", true);
  s.sparse_einsums = chip.boolean("sparse_einsums", false);
  chip.finish();

  s.link_bandwidth = ici.number("link_bandwidth", kRequired, above(0));
  s.hop_latency = ici.number("hop_latency", kRequired, at_least(0, "seconds"));
  s.collective_overhead = ici.number("collective_overhead", 0.0, at_least(0, "seconds"));
  s.ici_efficiency = ici.number("efficiency", 1.0, interval(0, 1, "(]", "a fraction"));
  s.torus = ici.integers("torus", kRequired, 1);
  if (s.torus.size() > 3) ici.fail("torus", fmt::format("{} axes; allowed: 1 to 3 axes", s.torus.size()));
  s.wraparound = ici.choice("wraparound", kRequired, kWraparounds);
  // Required with multiple_of; core links with several devices per chip.
  s.wraparound_multiple = ici.integer("wraparound_multiple",
                                      s.wraparound == Wraparound::multiple_of ? std::nullopt : std::optional<int64_t>(1), 1);
  if (const toml::node* n = ici.node("slices")) {
    const std::string form = fmt::format("allowed: an array of slice shapes, each {} chip counts >= 1 within the pod "
                                         "(torus), e.g. [[2, 2], [4, 4]]",
                                         s.torus.size());
    const toml::array* a = n->as_array();
    if (!a || a->empty()) ici.fail("slices", form);
    for (const toml::node& e : *a) {
      const toml::array* shape = e.as_array();
      std::vector<int64_t> sides;
      bool ok = shape && shape->size() == s.torus.size();
      for (size_t i = 0; ok && i < shape->size(); ++i) {
        const auto v = shape->get(i)->value_exact<int64_t>();
        ok = v && *v >= 1 && *v <= s.torus[i];
        if (ok) sides.push_back(*v);
      }
      if (!ok) ici.fail("slices", fmt::format("slice {} is not allowed; {}", TomlDocument::value_text(e), form));
      s.slices.push_back(std::move(sides));
    }
  }
  s.core_link_bandwidth = s.devices_per_chip > 1 ? ici.number("core_link_bandwidth", kRequired, above(0))
                                                 : ici.number("core_link_bandwidth", 0.0, at_least(0));
  s.reduction_bandwidth = ici.number("reduction_bandwidth", 0.0, at_least(0, "bytes per second; 0: overlapped"));
  s.ici_efficiency_by_size = read_curve(ici, "efficiency_by_size");
  s.latency_after_streaming = read_curve(ici, "latency_after_streaming", CurveValues::relative_seconds);
  s.eager_limit = ici.number("eager_limit", 0.0, at_least(0, "bytes per peer; 0: one path"));
  s.eager_latency_after_streaming = read_curve(ici, "eager_latency_after_streaming", CurveValues::relative_seconds);
  s.eager_path_share = ici.number("eager_path_share", 1.0, interval(0, 1, "[]"));
  s.copy_path_share = ici.number("copy_path_share", 1.0, interval(0, 1, "[]"));
  s.copy_warm_share = ici.number("copy_warm_share", 0.0, interval(0, 1, "[]"));
  // The eager curve and the single copies' shares only mean something with two paths.
  for (const char* key : {"eager_latency_after_streaming", "copy_path_share", "copy_warm_share"})
    if (s.eager_limit == 0 && ici.node(key))
      ici.fail(key, "allowed only with eager_limit > 0 (two paths); with eager_limit 0 every collective takes "
                    "latency_after_streaming and eager_path_share");
  if (s.copy_path_share + s.copy_warm_share > 1 + 1e-9)
    ici.fail("copy_warm_share", fmt::format("with copy_path_share = {} sums past 1; allowed: copy_path_share + "
                                            "copy_warm_share <= 1 (shares of one cold cost)",
                                            s.copy_path_share));
  s.staged_collectives = ici.boolean("staged_collectives", false);
  s.async_collectives = ici.boolean("async_collectives", true);
  s.ragged_all_to_all_seconds = read_curve(ici, "ragged_all_to_all_seconds", CurveValues::seconds);
  if (!s.ragged_all_to_all_seconds.points.empty() && !s.staged_collectives)
    ici.fail("ragged_all_to_all_seconds", "allowed only with staged_collectives = true (the MPI executor's ragged "
                                          "all_to_all; a TPU's collectives are not staged)");
  for (OpKind k : {OpKind::all_gather, OpKind::reduce_scatter, OpKind::all_reduce, OpKind::all_to_all})
    if (const toml::table* t = ici.table(op_name(k))) {
      TomlSection kt(doc, t, fmt::format("ici.{}", op_name(k)));
      CollectiveKindNetwork c;
      c.hop_latency = kt.number("hop_latency", s.hop_latency, at_least(0, "seconds"));
      c.efficiency_by_size = read_curve(kt, "efficiency_by_size");
      if (const toml::table* w = kt.table("warmed_by")) {
        TomlSection wt(doc, w, fmt::format("ici.{}.warmed_by", op_name(k)));
        for (OpKind by : {OpKind::all_gather, OpKind::reduce_scatter, OpKind::all_reduce, OpKind::all_to_all})
          if (by != k && wt.has(op_name(by)))
            c.warmed_by[by] =
                wt.number(op_name(by), 1.0, interval(0, 1, "[]", "the share of this kind's cold cost that call warms"));
        wt.finish();
      }
      const auto scale = at_least(0, "times the all_gather's curve");
      c.curve_scale_below = kt.number("curve_scale_below", 1.0, scale);
      c.curve_scale_above = kt.number("curve_scale_above", 1.0, scale);
      kt.finish();
      s.collective_kinds[k] = std::move(c);
    }
  ici.finish();

  for (OpClass c : kClasses) {
    const std::string cname(op_class_name(c));
    s.efficiency[static_cast<size_t>(c)] = read_efficiency(doc, effs.table(cname), "efficiency." + cname);
  }
  for (const char* group : {"op", "broadcast"}) {
    TomlSection kinds(doc, effs.table(group), fmt::format("efficiency.{}", group));
    for (OpKind k : kAllOpKinds)
      if (const toml::table* t = kinds.table(op_name(k)))
        (std::string_view(group) == "op" ? s.kind_efficiency : s.broadcast_efficiency)[k] =
            read_efficiency(doc, t, fmt::format("efficiency.{}.{}", group, op_name(k)));
    kinds.finish();
  }
  effs.finish();
  return s;
}

HardwareSpec load_hardware(const std::string& name_or_path, const std::string& hardware_dir) {
  std::string path = name_or_path;
  const bool is_path = name_or_path.find('/') != std::string::npos || name_or_path.ends_with(".toml");
  if (!is_path) path = hardware_dir + "/" + name_or_path + ".toml";
  if (std::error_code dir_ec; std::filesystem::is_directory(path, dir_ec))
    throw InputError(fmt::format("hardware '{}': {} is a directory, not a hardware file", name_or_path, path));
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
  // -0.0 is written as 0 ("-0" reads back as the integer 0, so a second write would differ).
  auto num = [](double x) { return fmt::format("{:.6g}", x == 0 ? 0.0 : x); };
  std::string r;
  r += fmt::format("[chip]\nname = {}\ndescription = {}\ndevices_per_chip = {}\n", toml_quote(s.name),
                   toml_quote(s.description), s.devices_per_chip);
  r += fmt::format("matmul_flops_bf16 = {}\n", num(s.matmul_flops_bf16));
  if (s.f32_matmul_passes > 0) r += fmt::format("f32_matmul_passes = {}\n", s.f32_matmul_passes);
  else r += fmt::format("matmul_flops_f32 = {}\n", num(s.matmul_flops_f32));
  r += fmt::format("vector_flops = {}\n", num(s.vector_flops));
  r += fmt::format("hbm_bytes = {}\nhbm_bandwidth = {}\nop_overhead = {}\nmemory_reserve = {}\nfuses = {}\nsparse_einsums = {}\n",
                   num(s.hbm_bytes), num(s.hbm_bandwidth), num(s.op_overhead), num(s.memory_reserve),
                   s.fuses ? "true" : "false", s.sparse_einsums ? "true" : "false");
  std::string torus;
  for (int64_t t : s.torus) torus += (torus.empty() ? "" : ", ") + std::to_string(t);
  r += fmt::format("\n[ici]\nlink_bandwidth = {}\nhop_latency = {}\ncollective_overhead = {}\nefficiency = {}\n",
                   num(s.link_bandwidth), num(s.hop_latency), num(s.collective_overhead), num(s.ici_efficiency));
  r += fmt::format("torus = [{}]\nwraparound = \"{}\"\nwraparound_multiple = {}\ncore_link_bandwidth = {}\n", torus,
                   wraparound_name(s.wraparound), s.wraparound_multiple, num(s.core_link_bandwidth));
  if (!s.slices.empty()) {
    std::string list;
    for (const std::vector<int64_t>& shape : s.slices)
      list += fmt::format("{}[{}]", list.empty() ? "" : ", ", fmt::join(shape, ", "));
    r += fmt::format("slices = [{}]\n", list);
  }
  auto curve = [&](const EfficiencyCurve& k) {
    std::string t;
    for (const auto& [x, y] : k.points) t += fmt::format("{}[{}, {}]", t.empty() ? "" : ", ", num(x), num(y));
    return "[" + t + "]";
  };
  r += fmt::format("reduction_bandwidth = {}\nstaged_collectives = {}\nasync_collectives = {}\n",
                   num(s.reduction_bandwidth), s.staged_collectives ? "true" : "false",
                   s.async_collectives ? "true" : "false");
  if (!s.ici_efficiency_by_size.points.empty())
    r += fmt::format("efficiency_by_size = {}\n", curve(s.ici_efficiency_by_size));
  if (!s.latency_after_streaming.points.empty())
    r += fmt::format("latency_after_streaming = {}\n", curve(s.latency_after_streaming));
  if (s.eager_limit > 0) r += fmt::format("eager_limit = {}\n", num(s.eager_limit));
  if (s.eager_path_share != 1) r += fmt::format("eager_path_share = {}\n", num(s.eager_path_share));
  if (s.copy_path_share != 1) r += fmt::format("copy_path_share = {}\n", num(s.copy_path_share));
  if (s.copy_warm_share != 0) r += fmt::format("copy_warm_share = {}\n", num(s.copy_warm_share));
  if (!s.eager_latency_after_streaming.points.empty())
    r += fmt::format("eager_latency_after_streaming = {}\n", curve(s.eager_latency_after_streaming));
  if (!s.ragged_all_to_all_seconds.points.empty())
    r += fmt::format("ragged_all_to_all_seconds = {}\n", curve(s.ragged_all_to_all_seconds));
  for (const auto& [k, c] : s.collective_kinds) {
    r += fmt::format("\n[ici.{}]\nhop_latency = {}\n", op_name(k), num(c.hop_latency));
    if (!c.efficiency_by_size.points.empty()) r += fmt::format("efficiency_by_size = {}\n", curve(c.efficiency_by_size));
    if (!c.warmed_by.empty()) {
      std::vector<std::string> shares;
      for (const auto& [by, w] : c.warmed_by) shares.push_back(fmt::format("{} = {}", op_name(by), num(w)));
      r += fmt::format("warmed_by = {{ {} }}\n", fmt::join(shares, ", "));
    }
    if (c.curve_scale_below != 1 || c.curve_scale_above != 1)
      r += fmt::format("curve_scale_below = {}\ncurve_scale_above = {}\n", num(c.curve_scale_below),
                       num(c.curve_scale_above));
  }
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
