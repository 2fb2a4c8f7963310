// The one TOML schema reader: model configs (graph/models/model_config), hardware files
// (simulator/hardware) and ablation specs (experiments/ablation/spec) read their tables through it,
// so every bad file gets the same one-line InputError:
//
//   FILE:LINE: KEY = VALUE: WHAT            a bad value, e.g.
//                                           tiny.toml:4: moe.k = 9: allowed: 1..4
//                                           tiny.toml:3: model.d_model = "big": expected an
//                                           integer; allowed: integers >= 1
//   FILE:LINE: unknown key KEY; allowed keys in [TABLE]: a, b, ...
//   FILE:LINE: missing key KEY (required in [TABLE])
//                                           (at the top level: "allowed keys at the top level")
//   FILE:LINE: TOML syntax error: ...
//
// FILE:LINE is the key's line (toml++'s source region); a key given by a --set override reads
// `FILE (--set moe.k=9)` instead, and a key with no line reads FILE alone. KEY is the dotted path
// from the top of the file (moe.encoder.cf_eval). VALUE is written as TOML writes it, strings in
// double quotes. WHAT says what is allowed: "allowed: ..." for a value out of range or not among
// the choices, "expected <type>; allowed: ..." for a value of the wrong type ("expected true or
// false" and "expected a string" need no more), and checks of several keys end with "allowed: ...".
//
// Usage: parse a TomlDocument, then read each table with a TomlSection. Every getter names its key,
// which makes the key allowed; finish() then reports the first key nobody asked for (a misspelt
// key), then the first missing required key.
//
//   TomlDocument doc = TomlDocument::parse(text, path);
//   TomlSection chip(doc, doc.root["chip"].as_table(), "chip");
//   double bw = chip.number("hbm_bandwidth", kRequired, above(0));
//   int64_t n = chip.integer("devices_per_chip", 1, 1);
//   chip.finish();
//
// A struct with a fields() list (graph/fields.hpp) is read in one call: read_fields(section, moe).
#pragma once

#include "graph/error.hpp"
#include "graph/fields.hpp"

#include <toml++/toml.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sy {

// The fallback of a key that must be given.
inline constexpr std::nullopt_t kRequired = std::nullopt;

// A parsed file and the overrides applied to it (model configs' --set).
struct TomlDocument {
  std::string file;
  toml::table root;
  std::map<std::string, std::string> overridden;  // dotted key -> the --set argument that gave it

  // Parses `text`; a syntax error is an InputError "FILE:LINE: TOML syntax error: ...".
  static TomlDocument parse(std::string_view text, std::string file);

  // "FILE (--set ARG)" for an overridden key, else "FILE:LINE" from `node` (or, without one, the
  // node at `dotted` in root), else "FILE".
  std::string where(std::string_view dotted, const toml::node* node = nullptr) const;
  std::string at_line(int64_t line) const;  // "FILE:LINE", or "FILE" for line 0

  // A value as the file writes it: strings in double quotes, the rest as toml++ prints them.
  static std::string value_text(const toml::node& node);

  // "WHERE: DOTTED = VALUE: WHAT" (the value of `node`, else of the node at `dotted`).
  [[noreturn]] void fail_value(std::string_view dotted, const toml::node* node, std::string_view what) const;
  // "WHERE: WHAT", for checks that involve several keys (the message names them).
  [[noreturn]] void fail(std::string_view dotted, std::string_view what) const;
  // "FILE:LINE: WHAT" ("FILE: WHAT" for line 0), for what belongs to a line or to the whole file.
  [[noreturn]] void fail_at_line(int64_t line, std::string_view what) const;
};

// One table of a document ([model], [moe.encoder], an [[arm]], ...). `table` may be null (the
// table is absent): getters then return their fallbacks and required keys are reported missing.
class TomlSection {
 public:
  // `path`: the table's dotted path ("" for the top level); keys in messages are `path.key`.
  // `header`: how messages name the table; default "[path]" ("the top level" for "").
  TomlSection(const TomlDocument& doc, const toml::table* table, std::string path, std::string header = {});

  // ---- typed keys: the value, or `fallback` when the key is absent (kRequired: missing) ----
  int64_t integer(std::string_view key, std::optional<int64_t> fallback, int64_t lo,
                  int64_t hi = std::numeric_limits<int64_t>::max());
  double number(std::string_view key, std::optional<double> fallback, const Range& allowed);
  // A number that `ok` accepts; `allowed` says which in words ("0 (off) or > 1").
  double number(std::string_view key, std::optional<double> fallback, const std::function<bool(double)>& ok,
                std::string_view allowed);
  bool boolean(std::string_view key, std::optional<bool> fallback);
  std::string string(std::string_view key, std::optional<std::string> fallback);
  // A string naming one of `names` (value, spelling), e.g. EnumNames<RouterKind>::names.
  template <typename E, size_t N>
  E choice(std::string_view key, std::type_identity_t<std::optional<E>> fallback,
           const std::pair<E, std::string_view> (&names)[N]) {
    std::vector<std::string_view> spellings;
    for (const auto& [value, name] : names) spellings.push_back(name);
    const std::optional<size_t> i = choice_index(key, fallback.has_value(), spellings);
    return i ? names[*i].first : fallback.value_or(names[0].first);
  }
  // A non-empty array of integers >= lo (e.g. torus = [16, 16, 16]).
  std::vector<int64_t> integers(std::string_view key, std::optional<std::vector<int64_t>> fallback, int64_t lo);

  // ---- tables ----
  // A sub-table [path.key] (or key = { ... }); null when absent.
  const toml::table* table(std::string_view key, bool required = false);
  // A table of named tables, [path.key.<name>], in file order (e.g. [scale.tiny], [scale.small]).
  std::vector<std::pair<std::string, const toml::table*>> named_tables(std::string_view key);
  // An array of tables [[path.key]], in file order.
  std::vector<const toml::table*> tables(std::string_view key);

  // ---- anything else: the caller checks the value and reports with fail() ----
  const toml::node* node(std::string_view key);
  bool has(std::string_view key);  // allows `key` too
  int64_t line(std::string_view key) const;  // the key's line, else the table's (0: none)
  int64_t line() const;                      // the table's line (0: none)

  std::string dotted(std::string_view key) const;  // "path.key"
  const std::string& header() const { return header_; }
  std::string place() const;  // "in [path]", or "at the top level"
  const toml::table* raw() const { return table_; }
  const TomlDocument& document() const { return doc_; }

  // "WHERE: path.key = VALUE: WHAT".
  [[noreturn]] void fail(std::string_view key, std::string_view what) const;

  // Unknown keys (naming the allowed ones), then the first missing required key.
  void finish() const;

 private:
  std::optional<size_t> choice_index(std::string_view key, bool has_fallback, const std::vector<std::string_view>& names);
  const toml::node* get(std::string_view key, bool required, std::string shown = {});

  const TomlDocument& doc_;
  const toml::table* table_;
  std::string path_;
  std::string header_;
  // Each key, and how messages list it: by name; a table at the top level as [k], named tables
  // as [k.<name>], an array of tables as [[k]].
  std::vector<std::pair<std::string, std::string>> allowed_;
  std::string missing_;  // the first required key not given
};

// Reads the fields of `s` (its fields() list, graph/fields.hpp) from table `t`: each key is
// optional, its fallback the member's current value, its allowed values the list's.
template <typename S>
void read_fields(TomlSection& t, S& s);

// ---- implementation ----

namespace fields_detail {

struct TomlFieldReader {
  TomlSection& t;

  template <typename T, typename A = Any>
  void operator()(std::string_view key, T& m, const A& allowed = A{}, bool /*shown*/ = true) const {
    if constexpr (std::is_same_v<T, bool>) {
      static_assert(std::is_same_v<A, Any>);
      m = t.boolean(key, m);
    } else if constexpr (std::is_same_v<T, std::string>) {
      static_assert(std::is_same_v<A, Any> || std::is_same_v<A, StringCheck>);
      m = t.string(key, m);
      if constexpr (std::is_same_v<A, StringCheck>) {
        try {
          allowed.check(m);
        } catch (const InputError& e) {
          t.fail(key, e.what());
        }
      }
    } else if constexpr (std::is_enum_v<T> && std::is_same_v<A, Any>) {
      m = t.choice(key, m, EnumNames<T>::names);
    } else if constexpr (std::is_enum_v<T>) {
      m = t.choice(key, m, allowed);  // a (value, spelling) array
    } else if constexpr (std::is_integral_v<T>) {
      static_assert(std::is_same_v<A, Range>, "integers take a Range: at_least(lo), interval(lo, hi, \"[]\"), ...");
      const int64_t lo = static_cast<int64_t>(allowed.lo) + (allowed.lo_open ? 1 : 0);
      const int64_t hi = allowed.hi == Range{}.hi ? std::numeric_limits<int64_t>::max()
                                                  : static_cast<int64_t>(allowed.hi) - (allowed.hi_open ? 1 : 0);
      m = static_cast<T>(t.integer(key, static_cast<int64_t>(m), lo, hi));
    } else if constexpr (std::is_same_v<A, Predicate>) {
      m = t.number(key, m, allowed.ok, allowed.allowed);
    } else {
      static_assert(std::is_same_v<T, double> && std::is_same_v<A, Range>, "numbers take a Range or a Predicate");
      m = t.number(key, m, allowed);
    }
  }
};

}  // namespace fields_detail

template <typename S>
void read_fields(TomlSection& t, S& s) {
  for_each_field(s, fields_detail::TomlFieldReader{t});
}

// `s` as a TOML string value, quoted, with backslashes, quotes and control characters escaped as
// toml++'s own formatter writes them (it may choose a literal 'string'), for files the tools
// write and read back (calibrate's hardware file).
std::string toml_quote(std::string_view s);

}  // namespace sy
