#include "graph/parallel/layout.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <set>

namespace sy {
namespace {

constexpr const char* kLayoutSyntax = "DIM:AXIS pairs separated by commas, e.g. batch:data,d_ff:model";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string axis_names(const Mesh& m) {
  std::string s;
  for (const MeshAxis& a : m.axes) s += fmt::format("{}{}", s.empty() ? "" : ", ", a.name);
  return s;
}

}  // namespace

const std::string* Layout::axis_of(std::string_view dim) const {
  for (const LayoutRule& r : rules)
    if (r.dim == dim) return &r.axis;
  if (dim == kDispatchGroupDim) return axis_of(kExpertsDim);  // the expert groups live with their experts
  return nullptr;
}

Layout parse_layout(std::string_view text, const Mesh& mesh) {
  Layout l;
  const std::string whole(text);
  if (trim(text).empty()) return l;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view entry = trim(text.substr(start, end - start));
    const size_t colon = entry.find(':');
    if (colon == std::string_view::npos || trim(entry.substr(0, colon)).empty() || trim(entry.substr(colon + 1)).empty())
      throw InputError(fmt::format("layout '{}': rule '{}' is not DIM:AXIS (expected {})", whole, entry, kLayoutSyntax));
    LayoutRule r{std::string(trim(entry.substr(0, colon))), std::string(trim(entry.substr(colon + 1)))};
    if (!mesh.axis_index(r.axis))
      throw InputError(fmt::format("layout '{}': rule '{}:{}' names mesh axis '{}', which mesh '{}' does not have "
                                   "(axes: {})",
                                   whole, r.dim, r.axis, r.axis, to_string(mesh), axis_names(mesh)));
    for (const LayoutRule& prev : l.rules)
      if (prev.dim == r.dim)
        throw InputError(fmt::format("layout '{}': dim '{}' is mapped twice ({}:{} and {}:{}); a tensor dim maps to at "
                                     "most one mesh axis",
                                     whole, r.dim, r.dim, prev.axis, r.dim, r.axis));
    l.rules.push_back(std::move(r));
    start = end + 1;
  }
  return l;
}

std::string to_string(const Layout& l) {
  std::string s;
  for (const LayoutRule& r : l.rules) s += fmt::format("{}{}:{}", s.empty() ? "" : ",", r.dim, r.axis);
  return s;
}

std::string tensor_label(const Graph& g, ValueId v) {
  const Value& val = g.value(v);
  if (val.role != ValueRole::computed) return fmt::format("'{}'", val.name);
  return fmt::format("output {} of {}", val.output_index, g.describe(val.producer));
}

void check_layout(const Graph& g, const Mesh& mesh, const Layout& layout) {
  const std::string text = to_string(layout);
  for (const LayoutRule& r : layout.rules)
    if (!mesh.axis_index(r.axis))
      throw InputError(fmt::format("layout '{}': rule '{}:{}' names mesh axis '{}', which mesh '{}' does not have",
                                   text, r.dim, r.axis, r.axis, to_string(mesh)));
  std::set<std::string> seen_dims;
  for (const Value& v : g.values) {
    const Shape& s = v.type.shape;
    for (size_t i = 0; i < s.size(); ++i) {
      seen_dims.insert(s[i].name);
      const std::string* axis = layout.axis_of(s[i].name);
      if (!axis) continue;
      const int64_t n = mesh.axes[*mesh.axis_index(*axis)].size;
      if (s[i].size % n != 0) {
        const bool follows = s[i].name == kDispatchGroupDim && layout.axis_of(kExpertsDim) == axis;
        throw InputError(fmt::format("layout '{}' is illegal for tensor {} {}: dim '{}' has size {}, which mesh axis "
                                     "'{}' of size {} does not divide (rule {}:{}{}; a split dim must divide evenly)",
                                     text, tensor_label(g, v.id), to_string(v.type), s[i].name, s[i].size, *axis, n,
                                     follows ? "experts" : s[i].name, *axis,
                                     follows ? ", which dispatch_group follows: moe.expert_groups must be a multiple of "
                                               "the axis size"
                                             : ""));
      }
      for (size_t j = 0; j < i; ++j) {
        const std::string* other = layout.axis_of(s[j].name);
        if (other && *other == *axis)
          throw InputError(fmt::format("layout '{}' is illegal for tensor {} {}: dims '{}' and '{}' both map to mesh "
                                       "axis '{}' (rules {}:{} and {}:{}; a mesh axis splits at most one dim of a "
                                       "tensor)",
                                       text, tensor_label(g, v.id), to_string(v.type), s[j].name, s[i].name, *axis,
                                       s[j].name, *axis, s[i].name, *axis));
      }
    }
  }
  for (const LayoutRule& r : layout.rules)
    if (!seen_dims.count(r.dim)) {
      std::string dims;
      for (const std::string& d : seen_dims) dims += fmt::format("{}{}", dims.empty() ? "" : ", ", d);
      throw InputError(fmt::format("layout '{}': rule '{}:{}' names dim '{}', which no tensor of the graph has "
                                   "(dims: {})",
                                   text, r.dim, r.axis, r.dim, dims));
    }
}

Shape local_shape(const Shape& global, const Sharding& s, const Mesh& mesh) {
  Shape out = global;
  for (size_t a = 0; a < mesh.axes.size(); ++a)
    if (s.dim[a] >= 0) out[static_cast<size_t>(s.dim[a])].size /= mesh.axes[a].size;
  return out;
}

std::string describe_sharding(const Shape& global, const Sharding& s, const Mesh& mesh) {
  std::string r = "[";
  for (size_t i = 0; i < global.size(); ++i) {
    r += fmt::format("{}{}={}", i ? ", " : "", global[i].name, global[i].size);
    for (size_t a = 0; a < mesh.axes.size(); ++a)
      if (s.dim[a] == static_cast<int8_t>(i)) r += "/" + mesh.axes[a].name;
  }
  return r + "]";
}

}  // namespace sy
