// Field lists: each settings struct (op attributes, MoeConfig, OptimizerConfig, ...) names its
// fields once, in a static member
//
//   static void fields(auto& s, auto&& v) {      // s: the struct, const or not
//     v("experts", s.experts, at_least(1));      // name, member, what is allowed
//     v("router", s.router);                     // an enum: its EnumNames spellings are allowed
//     v("decay_steps", s.decay_steps, at_least(0), s.schedule == LrSchedule::cosine);
//   }
//
// and every reader and writer walks that list: the TOML reader (graph/toml_schema.hpp
// read_fields), the config JSON writer (graph/models/model_config.cpp) and the graph JSON reader
// and writer of op attributes (graph/json.cpp). Adding a field is one line in fields().
//
// The third argument says what a TOML file may give (kAny: anything of the member's type):
//   Range (at_least, above, interval)  numbers; integers take at_least(lo) or interval(lo, hi, "[]")
//   Predicate{ok, "words"}            numbers `ok` accepts
//   a (value, spelling) array         an enum limited to some values (kFloatDTypes)
//   StringCheck{check}                strings `check` accepts (train.trainable: a preset or a regex)
// The fourth, `shown` (default true), is false where the JSON writer leaves the field out
// (settings that do not apply, e.g. AdamW's beta1 under Adafactor); readers ignore it.
#pragma once

#include "graph/dtype.hpp"

#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sy {

// Visits the fields of `s` (a struct with a static fields(), const or not) with `v`.
template <typename S, typename V>
void for_each_field(S& s, V&& v) {
  std::remove_const_t<S>::fields(s, v);
}

// ---- what a field allows ----

struct Any {};  // anything of the member's type
inline constexpr Any kAny{};

// The allowed real numbers of a key: an interval, and its words for messages (the functions are
// defined in graph/toml_schema.cpp). An integer field's Range gives the integers in it.
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;
  bool hi_open = false;
  std::string note;  // appended in parentheses: ">= 0 (0: no clipping)"

  bool contains(double v) const;
  std::string text() const;  // "> 0", ">= 0", "[0, 1)", "(0, 1]", with the note
};
Range above(double lo, std::string note = {});     // > lo
Range at_least(double lo, std::string note = {});  // >= lo
// lo..hi with the ends as `brackets` says: "[]", "[)", "(]" or "()".
Range interval(double lo, double hi, std::string_view brackets, std::string note = {});

// Numbers that `ok` accepts; `allowed` says which in words ("0 (off) or > 1").
struct Predicate {
  bool (*ok)(double);
  std::string_view allowed;
};

// Strings that `check` accepts: it throws InputError saying why not, and the TOML reader reports
// that at the key.
struct StringCheck {
  void (*check)(const std::string&);
};

// The float dtypes a model setting may name (train.precision, moe.router_dtype).
inline constexpr std::pair<DType, std::string_view> kFloatDTypes[] = {{DType::f32, "f32"}, {DType::bf16, "bf16"}};

// ---- names of enum values (the spellings files use) ----
// enum_name(RouterKind::top_k) == "top_k"; enum_from_name<RouterKind>("hash") == RouterKind::hash;
// enum_allowed<RouterKind>() == "top_k, expert_choice, hash, noisy_top_k" (for error messages).
template <typename Enum>
struct EnumNames;  // specialised with SY_ENUM_NAMES: a static `names` array of (value, spelling)

#define SY_ENUM_NAMES(Enum, ...)                                                \
  template <>                                                                   \
  struct EnumNames<Enum> {                                                      \
    static constexpr std::pair<Enum, std::string_view> names[] = {__VA_ARGS__}; \
  };

template <typename Enum>
constexpr std::string_view enum_name(Enum v) {
  for (const auto& [value, name] : EnumNames<Enum>::names)
    if (value == v) return name;
  return "?";
}

template <typename Enum>
std::optional<Enum> enum_from_name(std::string_view s) {
  for (const auto& [value, name] : EnumNames<Enum>::names)
    if (name == s) return value;
  return std::nullopt;
}

template <typename Enum>
std::string enum_allowed() {
  std::string out;
  for (const auto& [value, name] : EnumNames<Enum>::names) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

}  // namespace sy
