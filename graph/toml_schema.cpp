#include "graph/toml_schema.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace sy {

// ---- TomlDocument ----

TomlDocument TomlDocument::parse(std::string_view text, std::string file) {
  TomlDocument doc;
  doc.file = std::move(file);
  try {
    doc.root = toml::parse(text, std::string_view(doc.file));
  } catch (const toml::parse_error& e) {
    throw InputError(
        fmt::format("{}: TOML syntax error: {}", doc.at_line(e.source().begin.line), e.description()));
  }
  return doc;
}

std::string TomlDocument::at_line(int64_t line) const {
  return line > 0 ? fmt::format("{}:{}", file, line) : file;
}

std::string TomlDocument::where(std::string_view dotted, const toml::node* node) const {
  if (auto it = overridden.find(std::string(dotted)); it != overridden.end())
    return fmt::format("{} (--set {})", file, it->second);
  if (!node) node = toml::at_path(root, dotted).node();
  return at_line(node ? node->source().begin.line : 0);
}

std::string TomlDocument::value_text(const toml::node& node) {
  if (auto v = node.value_exact<std::string>()) return fmt::format("\"{}\"", *v);  // as written, not TOML's 'x'
  if (auto v = node.value_exact<int64_t>()) return std::to_string(*v);
  if (auto v = node.value_exact<double>()) {
    std::string t = fmt::format("{}", *v);  // the shortest text that reads back: 0.1, not 0.10000000000000001
    if (t.find_first_of(".en") == std::string::npos) t += ".0";  // 2.0 stays a float
    return t;
  }
  if (auto v = node.value_exact<bool>()) return *v ? "true" : "false";
  if (const toml::array* a = node.as_array()) {
    std::string t;
    for (const toml::node& e : *a) t += (t.empty() ? "" : ", ") + value_text(e);
    return "[" + t + "]";
  }
  if (node.is_table()) return "a table";
  std::ostringstream os;  // dates and times
  node.visit([&](const auto& v) { os << v; });
  return os.str();
}

void TomlDocument::fail_value(std::string_view dotted, const toml::node* node, std::string_view what) const {
  if (!node) node = toml::at_path(root, dotted).node();
  if (!node) fail(dotted, fmt::format("{}: {}", dotted, what));
  throw InputError(fmt::format("{}: {} = {}: {}", where(dotted, node), dotted, value_text(*node), what));
}

void TomlDocument::fail(std::string_view dotted, std::string_view what) const {
  throw InputError(fmt::format("{}: {}", where(dotted), what));
}

void TomlDocument::fail_at_line(int64_t line, std::string_view what) const {
  throw InputError(fmt::format("{}: {}", at_line(line), what));
}

// ---- Range ----

bool Range::contains(double v) const {
  if (std::isnan(v)) return false;
  const bool lo_ok = lo_open ? v > lo : v >= lo;
  const bool hi_ok = hi_open ? v < hi : v <= hi;
  return lo_ok && hi_ok;
}

std::string Range::text() const {
  std::string t;
  if (std::isinf(lo) && std::isinf(hi))
    t = "any number";
  else if (std::isinf(hi))
    t = fmt::format("{} {}", lo_open ? ">" : ">=", lo);
  else if (std::isinf(lo))
    t = fmt::format("{} {}", hi_open ? "<" : "<=", hi);
  else
    t = fmt::format("{}{}, {}{}", lo_open ? "(" : "[", lo, hi, hi_open ? ")" : "]");
  return note.empty() ? t : fmt::format("{} ({})", t, note);
}

Range above(double lo, std::string note) { return Range{lo, Range{}.hi, true, false, std::move(note)}; }
Range at_least(double lo, std::string note) { return Range{lo, Range{}.hi, false, false, std::move(note)}; }
Range interval(double lo, double hi, std::string_view brackets, std::string note) {
  return Range{lo, hi, brackets.starts_with('('), brackets.ends_with(')'), std::move(note)};
}

// ---- TomlSection ----

TomlSection::TomlSection(const TomlDocument& doc, const toml::table* table, std::string path, std::string header)
    : doc_(doc), table_(table), path_(std::move(path)), header_(std::move(header)) {
  if (header_.empty()) header_ = path_.empty() ? "the top level" : fmt::format("[{}]", path_);
}

std::string TomlSection::place() const { return (path_.empty() ? "at " : "in ") + header_; }

std::string TomlSection::dotted(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

const toml::node* TomlSection::get(std::string_view key, bool required, std::string shown) {
  if (shown.empty()) shown = std::string(key);
  auto it = std::find_if(allowed_.begin(), allowed_.end(), [&](const auto& a) { return a.first == key; });
  if (it == allowed_.end())
    allowed_.emplace_back(std::string(key), std::move(shown));
  else if (shown != key)
    it->second = std::move(shown);  // a table's form wins over has()'s plain key
  const toml::node* n = table_ ? table_->get(key) : nullptr;
  if (!n && required && missing_.empty()) missing_ = std::string(key);
  return n;
}

const toml::node* TomlSection::node(std::string_view key) { return get(key, false); }

bool TomlSection::has(std::string_view key) { return get(key, false) != nullptr; }

int64_t TomlSection::line() const { return table_ ? table_->source().begin.line : 0; }

int64_t TomlSection::line(std::string_view key) const {
  const toml::node* n = table_ ? table_->get(key) : nullptr;
  return n && n->source().begin.line > 0 ? n->source().begin.line : line();
}

void TomlSection::fail(std::string_view key, std::string_view what) const {
  doc_.fail_value(dotted(key), table_ ? table_->get(key) : nullptr, what);
}

int64_t TomlSection::integer(std::string_view key, std::optional<int64_t> fallback, int64_t lo, int64_t hi) {
  const toml::node* n = get(key, !fallback);
  if (!n) return fallback.value_or(lo);
  const std::string allowed = hi == std::numeric_limits<int64_t>::max() ? fmt::format("allowed: integers >= {}", lo)
                                                                        : fmt::format("allowed: {}..{}", lo, hi);
  auto v = n->value_exact<int64_t>();
  if (!v) fail(key, "expected an integer; " + allowed);
  if (*v < lo || *v > hi) fail(key, allowed);
  return *v;
}

double TomlSection::number(std::string_view key, std::optional<double> fallback, const Range& allowed) {
  return number(key, fallback, [&](double v) { return allowed.contains(v); }, allowed.text());
}

double TomlSection::number(std::string_view key, std::optional<double> fallback, const std::function<bool(double)>& ok,
                           std::string_view allowed) {
  const toml::node* n = get(key, !fallback);
  if (!n) return fallback.value_or(0.0);
  std::optional<double> v;
  if (n->is_floating_point()) v = n->value_exact<double>();
  if (n->is_integer()) v = static_cast<double>(*n->value_exact<int64_t>());
  if (!v) fail(key, fmt::format("expected a number; allowed: {}", allowed));
  // inf and nan (TOML spells them inf, nan) are never a setting: every range below assumes finite.
  if (!std::isfinite(*v)) fail(key, fmt::format("not a finite number; allowed: {}", allowed));
  if (!ok(*v)) fail(key, fmt::format("allowed: {}", allowed));
  return *v;
}

bool TomlSection::boolean(std::string_view key, std::optional<bool> fallback) {
  const toml::node* n = get(key, !fallback);
  if (!n) return fallback.value_or(false);
  auto v = n->value_exact<bool>();
  if (!v) fail(key, "expected true or false");
  return *v;
}

std::string TomlSection::string(std::string_view key, std::optional<std::string> fallback) {
  const toml::node* n = get(key, !fallback);
  if (!n) return fallback.value_or(std::string());
  auto v = n->value_exact<std::string>();
  if (!v) fail(key, "expected a string");
  return *v;
}

std::optional<size_t> TomlSection::choice_index(std::string_view key, bool has_fallback,
                                                const std::vector<std::string_view>& names) {
  const toml::node* n = get(key, !has_fallback);
  if (!n) return std::nullopt;
  if (auto v = n->value_exact<std::string>())
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == *v) return i;
  std::string list;
  for (std::string_view name : names) list += fmt::format("{}{}", list.empty() ? "" : ", ", name);
  fail(key, fmt::format("allowed: {}", list));
}

std::vector<int64_t> TomlSection::integers(std::string_view key, std::optional<std::vector<int64_t>> fallback,
                                           int64_t lo) {
  const toml::node* n = get(key, !fallback);
  if (!n) return fallback.value_or(std::vector<int64_t>{});
  const std::string allowed = fmt::format("allowed: a non-empty array of integers >= {}, e.g. [16, 16, 16]", lo);
  const toml::array* a = n->as_array();
  if (!a || a->empty()) fail(key, allowed);
  std::vector<int64_t> r;
  for (const toml::node& e : *a) {
    auto v = e.value_exact<int64_t>();
    if (!v || *v < lo) fail(key, fmt::format("element {} is not an integer >= {}; {}", TomlDocument::value_text(e), lo, allowed));
    r.push_back(*v);
  }
  return r;
}

const toml::table* TomlSection::table(std::string_view key, bool required) {
  const toml::node* n = get(key, required, path_.empty() ? fmt::format("[{}]", key) : std::string(key));
  if (!n) return nullptr;
  if (!n->is_table()) fail(key, fmt::format("expected a table [{}]", dotted(key)));
  return n->as_table();
}

std::vector<std::pair<std::string, const toml::table*>> TomlSection::named_tables(std::string_view key) {
  std::vector<std::pair<std::string, const toml::table*>> out;
  const toml::node* n = get(key, false, fmt::format("[{}.<name>]", dotted(key)));
  if (!n) return out;
  const std::string example = fmt::format("expected tables [{}.<name>]", dotted(key));
  if (!n->is_table()) fail(key, example);
  for (const auto& [name, value] : *n->as_table()) {
    const std::string sub = fmt::format("{}.{}", dotted(key), name.str());
    if (!value.is_table()) doc_.fail_value(sub, &value, example);
    out.emplace_back(std::string(name.str()), value.as_table());
  }
  return out;
}

std::vector<const toml::table*> TomlSection::tables(std::string_view key) {
  std::vector<const toml::table*> out;
  const toml::node* n = get(key, false, fmt::format("[[{}]]", dotted(key)));
  if (!n) return out;
  if (!n->is_array_of_tables())
    fail(key, fmt::format("expected tables [[{}]] (two brackets, one per entry)", dotted(key)));
  for (const toml::node& t : *n->as_array()) out.push_back(t.as_table());
  return out;
}

void TomlSection::finish() const {
  if (table_)
    for (const auto& [key, value] : *table_) {
      const std::string k(key.str());
      if (std::any_of(allowed_.begin(), allowed_.end(), [&](const auto& a) { return a.first == k; })) continue;
      std::string list;
      for (const auto& a : allowed_) list += (list.empty() ? "" : ", ") + a.second;
      throw InputError(fmt::format("{}: unknown key {}; allowed keys {}: {}", doc_.where(dotted(k), &value), dotted(k),
                                   place(), list.empty() ? "none" : list));
    }
  if (!missing_.empty())
    throw InputError(fmt::format("{}: missing key {} (required {})", doc_.at_line(line()), dotted(missing_), place()));
}

std::string toml_quote(std::string_view s) {
  std::ostringstream out;
  out << toml::value<std::string>(std::string(s));
  return out.str();
}

}  // namespace sy
