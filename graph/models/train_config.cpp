#include "graph/models/train_config.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <regex>
#include <string_view>
#include <vector>

namespace sy {

std::string_view optimizer_name(OptimizerKind k) { return enum_name(k); }
std::string_view schedule_name(LrSchedule s) { return enum_name(s); }

namespace {

// std::regex backtracks: a quantified group that itself holds a quantifier ("(a+)+", "(\\w*)*",
// "(x|y+){2,}") takes time exponential in the name's length (2^60 steps on a 60-character name:
// train hung). Such patterns are refused, which keeps every match polynomial (without nested
// quantifiers a backtracking match of an n-character name is O(n^k) for k quantifiers, and names
// are short); they never add anything for selecting parameter names. Returns the offset of the
// outer quantifier, or npos.
size_t nested_quantifier(std::string_view re) {
  std::vector<bool> inner;  // per open group: holds a quantifier
  bool after_quantified_group = false;
  for (size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    const bool was_after = after_quantified_group;
    after_quantified_group = false;
    if (c == '\\') {
      ++i;
    } else if (c == '[') {  // a class: its characters are literal
      for (++i; i < re.size() && re[i] != ']'; ++i)
        if (re[i] == '\\') ++i;
    } else if (c == '(') {
      inner.push_back(false);
    } else if (c == ')' && !inner.empty()) {
      after_quantified_group = inner.back();
      inner.pop_back();
      if (after_quantified_group && !inner.empty()) inner.back() = true;
    } else if (c == '*' || c == '+' || c == '{' || c == '?') {
      if (was_after && c != '?') return i;
      if (!inner.empty()) inner.back() = true;
    }
  }
  return std::string_view::npos;
}

}  // namespace

bool parameter_is_trainable(const std::string& trainable, const std::string& name) {
  auto has = [&](std::string_view part) { return name.find(part) != std::string::npos; };
  const bool moe = has("/moe/");
  if (trainable == "all") return true;
  if (trainable == "moe") return moe;
  if (trainable == "non_moe") return !moe;
  if (trainable == "attention") return has("/attention/") || has("/cross_attention/") || has("relative_position_bias/");
  if (trainable == "ffn") return has("/ffn/") || has("/extra_ffn/");
  if (trainable.size() > 1000)
    throw InputError(fmt::format("a regular expression of {} characters; allowed: at most 1000", trainable.size()));
  if (const size_t at = nested_quantifier(trainable); at != std::string_view::npos)
    throw InputError(fmt::format("'{}': a quantifier at offset {} repeats a group that holds a quantifier (nested "
                                 "quantifiers backtrack exponentially); allowed: presets or a regex without them, "
                                 "e.g. 'router|_norm/scale'",
                                 trainable, at));
  std::regex re;
  try {
    re = std::regex(trainable, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    std::string presets;
    for (const char* p : kTrainablePresets) presets += fmt::format("{}{}", presets.empty() ? "" : ", ", p);
    throw InputError(fmt::format("not a preset and not a valid regular expression ({}); allowed: {} or an ECMAScript "
                                 "regex over parameter names",
                                 e.what(), presets));
  }
  return std::regex_search(name, re);
}

}  // namespace sy
