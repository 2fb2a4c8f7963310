// Settings a sweep ranks beside the layouts: `simulate --sweep --sweep-set KEY=V1,V2,...`.
//
// Each --sweep-set names one config key (any --set key: moe.cf_train, moe.k, moe.dropless,
// moe.route_groups, ...) and the values to try. The sweep prices every layout under every
// combination of the values (the Cartesian product, the first key varying slowest) and ranks all
// (settings, layout) pairs together, so a researcher can ask which capacity factor, top-k or
// routing scheme is cheapest at scale and on which layout.
#pragma once

#include <string>
#include <vector>

namespace sy {

struct SweepSetting {
  std::string key;
  std::vector<std::string> values;
};

// Parses the --sweep-set texts. InputError (naming --sweep-set, the text and the form allowed)
// for a text without '=', an empty key or value, a key given twice, or more than kMaxSweepSettings
// combinations in all.
inline constexpr size_t kMaxSweepSettings = 256;
std::vector<SweepSetting> parse_sweep_settings(const std::vector<std::string>& texts);

// Every combination as --set overrides ("key=value"), the first setting varying slowest. One empty
// combination when there are no settings.
std::vector<std::vector<std::string>> sweep_combinations(const std::vector<SweepSetting>& settings);

// A combination as one label: "key=value key=value" ("" for the empty one).
std::string settings_label(const std::vector<std::string>& combination);

}  // namespace sy
