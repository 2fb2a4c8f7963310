#include "graph/parallel/mesh.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <charconv>

namespace sy {
namespace {

constexpr const char* kMeshSyntax = "NAME:SIZE pairs separated by commas, e.g. data:64,model:16";

bool valid_name(std::string_view s) {
  if (s.empty() || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

int64_t Mesh::devices() const {
  int64_t n = 1;
  for (const MeshAxis& a : axes) n *= a.size;
  return n;
}

std::optional<size_t> Mesh::axis_index(std::string_view name) const {
  for (size_t i = 0; i < axes.size(); ++i)
    if (axes[i].name == name) return i;
  return std::nullopt;
}

std::vector<int64_t> Mesh::coords(int64_t device) const {
  std::vector<int64_t> c(axes.size());
  for (size_t i = axes.size(); i-- > 0;) {
    c[i] = device % axes[i].size;
    device /= axes[i].size;
  }
  return c;
}

int64_t Mesh::device_at(const std::vector<int64_t>& c) const {
  int64_t d = 0;
  for (size_t i = 0; i < axes.size(); ++i) d = d * axes[i].size + c[i];
  return d;
}

Mesh parse_mesh(std::string_view text) {
  Mesh m;
  const std::string whole(text);
  if (trim(text).empty()) throw InputError(fmt::format("mesh '{}' is empty (expected {})", whole, kMeshSyntax));
  size_t start = 0;
  int64_t devices = 1;  // the product of the sizes so far
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view entry = trim(text.substr(start, end - start));
    const size_t colon = entry.find(':');
    if (colon == std::string_view::npos)
      throw InputError(fmt::format("mesh '{}': entry '{}' has no ':' (expected {})", whole, entry, kMeshSyntax));
    const std::string_view name = trim(entry.substr(0, colon));
    const std::string_view size_text = trim(entry.substr(colon + 1));
    if (!valid_name(name))
      throw InputError(fmt::format("mesh '{}': axis name '{}' is not allowed (lowercase letters, digits and '_', "
                                   "starting with a letter or '_')",
                                   whole, name));
    int64_t size = 0;
    auto [ptr, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size);
    if (ec != std::errc() || ptr != size_text.data() + size_text.size() || size < 1)
      throw InputError(fmt::format("mesh '{}': axis '{}' has size '{}' (allowed: a positive integer)", whole, name,
                                   size_text));
    if (m.axis_index(name))
      throw InputError(fmt::format("mesh '{}': axis '{}' is listed twice (axis names must be unique)", whole, name));
    if (size > kMaxMeshDevices / devices)  // devices * size > kMaxMeshDevices, without overflow
      throw InputError(fmt::format("mesh '{}': axis '{}' of size {} makes more than {} devices (allowed: at most {} "
                                   "devices in all, MPI's rank count)",
                                   whole, name, size_text, kMaxMeshDevices, kMaxMeshDevices));
    devices *= size;
    m.axes.push_back(MeshAxis{std::string(name), size});
    if (m.axes.size() > kMaxMeshAxes)
      throw InputError(fmt::format("mesh '{}' has more than {} axes", whole, kMaxMeshAxes));
    start = end + 1;
  }
  return m;
}

std::string to_string(const Mesh& m) {
  std::string s;
  for (const MeshAxis& a : m.axes) s += fmt::format("{}{}:{}", s.empty() ? "" : ",", a.name, a.size);
  return s;
}

}  // namespace sy
