#include "graph/models/train_config.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <regex>

namespace sy {

std::string_view optimizer_name(OptimizerKind k) { return enum_name(k); }
std::string_view schedule_name(LrSchedule s) { return enum_name(s); }

bool parameter_is_trainable(const std::string& trainable, const std::string& name) {
  auto has = [&](std::string_view part) { return name.find(part) != std::string::npos; };
  const bool moe = has("/moe/");
  if (trainable == "all") return true;
  if (trainable == "moe") return moe;
  if (trainable == "non_moe") return !moe;
  if (trainable == "attention") return has("/attention/") || has("/cross_attention/") || has("relative_position_bias/");
  if (trainable == "ffn") return has("/ffn/") || has("/extra_ffn/");
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
