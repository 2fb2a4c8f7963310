#include "simulator/sweep_settings.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

namespace sy {

std::vector<SweepSetting> parse_sweep_settings(const std::vector<std::string>& texts) {
  std::vector<SweepSetting> out;
  size_t combinations = 1;
  for (const std::string& t : texts) {
    const size_t eq = t.find('=');
    auto bad = [&](const std::string& why) {
      return InputError(fmt::format("--sweep-set '{}': {}; allowed: KEY=V1,V2,... (a config key, as --set takes it, and "
                                    "the values to try)",
                                    t, why));
    };
    if (eq == std::string::npos) throw bad("no '='");
    SweepSetting s{t.substr(0, eq), {}};
    if (s.key.empty()) throw bad("empty key");
    for (const SweepSetting& o : out)
      if (o.key == s.key) throw bad("the key is already swept");
    const std::string values = t.substr(eq + 1);
    size_t start = 0;
    while (true) {
      const size_t end = values.find(',', start);
      s.values.push_back(values.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (s.values.back().empty()) throw bad("an empty value");
      if (end == std::string::npos) break;
      start = end + 1;
    }
    combinations *= s.values.size();
    if (combinations > kMaxSweepSettings)
      throw bad(fmt::format("more than {} combinations of settings in all", kMaxSweepSettings));
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::vector<std::string>> sweep_combinations(const std::vector<SweepSetting>& settings) {
  std::vector<std::vector<std::string>> out{{}};
  for (const SweepSetting& s : settings) {
    std::vector<std::vector<std::string>> next;
    for (const auto& prefix : out)
      for (const std::string& v : s.values) {
        next.push_back(prefix);
        next.back().push_back(s.key + "=" + v);
      }
    out = std::move(next);
  }
  return out;
}

std::string settings_label(const std::vector<std::string>& combination) {
  std::string s;
  for (const std::string& c : combination) s += (s.empty() ? "" : " ") + c;
  return s;
}

}  // namespace sy
