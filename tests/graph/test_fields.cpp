// Field lists (graph/fields.hpp): every settings struct lists each of its members once in
// fields(), and that list drives every reader and writer. These tests walk the lists: each member
// is listed (the count of aggregate members equals the count of listed fields), and each field set
// to a non-default value survives TOML -> struct -> JSON -> struct (op attributes: struct -> JSON
// -> struct). A field left out of one path fails here.
#include "graph/fields.hpp"

#include "graph/json.hpp"
#include "graph/models/model_config.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <fmt/format.h>

#include <cstddef>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

using namespace sy;

namespace {

// ---- the number of members of an aggregate: the most initializers T{...} accepts ----

struct AnyMember {
  template <typename T>
  operator T() const;  // unevaluated only
};

template <typename T, typename... Init>
constexpr size_t member_count() {
  if constexpr (requires { T{Init{}..., AnyMember{}}; })
    return member_count<T, Init..., AnyMember>();
  else
    return sizeof...(Init);
}

template <typename S>
std::vector<std::string> field_names() {
  S s{};
  std::vector<std::string> names;
  for_each_field(s, [&](std::string_view key, auto&&...) { names.emplace_back(key); });
  return names;
}

// ---- a value different from `m` that `allowed` accepts, and its TOML text ----

template <typename E, size_t N>
E next_of(E m, const std::pair<E, std::string_view> (&names)[N]) {
  for (size_t i = 0; i < N; ++i)
    if (names[i].first == m) return names[(i + 1) % N].first;
  return names[0].first;
}

template <typename E, size_t N>
std::string spelling(E m, const std::pair<E, std::string_view> (&names)[N]) {
  for (const auto& [value, name] : names)
    if (value == m) return fmt::format("\"{}\"", name);
  return "?";
}

double other_number(double m, const Range& r) {
  for (double x : {m + 0.1, m * 0.5, m * 2})
    if (x != m && r.contains(x)) return x;
  FAIL("no other value in " << r.text());
  return m;
}
[[maybe_unused]] double other_number(double m, const Predicate& p) {
  for (double x : {m + 0.5, m * 2, 0.0})
    if (x != m && p.ok(x)) return x;
  FAIL("no other value in " << p.allowed);
  return m;
}

// Sets field number `target` of the list to another allowed value and writes it as TOML.
struct Perturb {
  size_t target;
  size_t index = 0;
  std::string key, toml;

  template <typename T, typename A = Any>
  void operator()(std::string_view k, T& m, const A& allowed = A{}, bool /*shown*/ = true) {
    if (index++ != target) return;
    key = k;
    if constexpr (std::is_same_v<T, bool>) {
      m = !m;
      toml = m ? "true" : "false";
    } else if constexpr (std::is_same_v<T, std::string>) {
      m += "x";
      toml = fmt::format("\"{}\"", m);
    } else if constexpr (std::is_enum_v<T> && std::is_same_v<A, Any>) {
      m = next_of(m, EnumNames<T>::names);
      toml = spelling(m, EnumNames<T>::names);
    } else if constexpr (std::is_enum_v<T>) {
      m = next_of(m, allowed);
      toml = spelling(m, allowed);
    } else if constexpr (std::is_integral_v<T>) {
      m = allowed.contains(static_cast<double>(m + 1)) ? m + 1 : m - 1;
      toml = std::to_string(m);
    } else {
      m = other_number(m, allowed);
      toml = fmt::format("{}", m);  // the shortest text that reads back
      if (toml.find_first_of(".e") == std::string::npos) toml += ".0";
    }
  }
};

// Whether the JSON writer shows field `key` of `s`.
template <typename S>
bool shown(const S& s, const std::string& key) {
  bool out = false;
  for_each_field(s, [&](std::string_view k, const auto&, const auto&... rest) {
    if (k != key) return;
    out = true;
    if constexpr (sizeof...(rest) == 2) out = std::get<1>(std::forward_as_tuple(rest...));
  });
  return out;
}

// The config JSON written back as a TOML file: objects are tables, the rest values.
void toml_tables(const nlohmann::ordered_json& j, const std::string& path, std::string& out) {
  std::string values, tables;
  for (const auto& [k, v] : j.items()) {
    const std::string dotted = path.empty() ? k : path + "." + k;
    if (v.is_object())
      toml_tables(v, dotted, tables);
    else
      values += fmt::format("{} = {}\n", k, v.dump());
  }
  if (!path.empty()) out += fmt::format("[{}]\n", path);
  out += values + tables;
}

std::string json_as_toml(const nlohmann::ordered_json& j) {
  std::string out;
  toml_tables(j, "", out);
  return out;
}

// For each field of the struct that `get` picks out of a config and each base (a list of --set
// overrides): set the field to another allowed value with --set TABLE.KEY=VALUE, parse, and check
// the struct changed as asked; then write the config JSON, read it back as TOML and check the
// struct is the same. Every field must be shown in the JSON under at least one base.
template <typename S, typename Get>
void check_round_trip(const std::string& table, const std::vector<std::vector<std::string>>& bases, Get get) {
  const std::string text = "[model]\nname = \"f\"\n[moe]\nevery = 2\n";
  const size_t n = field_names<S>().size();
  for (size_t i = 0; i < n; ++i) {
    bool tested = false;
    for (const std::vector<std::string>& base : bases) {
      S expected = get(parse_run_config(text, "f.toml", base));
      Perturb p{i};
      for_each_field(expected, p);
      if (!shown(expected, p.key)) continue;
      std::vector<std::string> sets = base;
      sets.push_back(fmt::format("{}.{}={}", table, p.key, p.toml));
      INFO("--set " << sets.back());
      // A base that enables a dependent key (route_groups, for group_dispatch) may refuse another
      // field's new value in combination (router "expert_choice" with route_groups): that pair is
      // not a round trip to test; each field must still round-trip under some base.
      std::optional<RunConfig> parsed;
      try {
        parsed = parse_run_config(text, "f.toml", sets);
      } catch (const InputError&) {
        if (!base.empty()) continue;
        throw;
      }
      tested = true;
      const RunConfig& read = *parsed;
      CHECK(get(read) == expected);
      const nlohmann::ordered_json json = to_json(read);
      const std::string again = json_as_toml(json);
      INFO("written back:\n" << again);
      const RunConfig reread = parse_run_config(again, "f.toml");
      CHECK(get(reread) == expected);
      CHECK(to_json(reread) == json);
    }
    INFO("field " << field_names<S>()[i]);
    CHECK(tested);
  }
}

// Another value for each type an attribute field has.
template <typename T>
void change(T& m) {
  if constexpr (std::is_same_v<T, bool>) {
    m = !m;
  } else if constexpr (std::is_same_v<T, DType>) {
    m = m == DType::f32 ? DType::bf16 : DType::f32;
  } else if constexpr (std::is_enum_v<T>) {
    m = next_of(m, EnumNames<T>::names);
  } else if constexpr (std::is_same_v<T, Dim>) {
    m = Dim{m.name + "x", m.size + 3};
  } else if constexpr (std::is_same_v<T, Shape>) {
    m.push_back(Dim{"extra", 5});
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    m.push_back("extra");
  } else if constexpr (std::is_same_v<T, std::string>) {
    m += "x";
  } else {
    m = m + 1;
  }
}

}  // namespace

TEST_CASE("fields: every member of a settings struct is in its fields() list", "[fields]") {
  CHECK(member_count<MoeConfig>() == field_names<MoeConfig>().size());
  // OptimizerConfig lists the update rules' fields (AdafactorAttrs, AdamWAttrs) under its own keys.
  CHECK(member_count<OptimizerConfig>() == 9);
  // TrainConfig lists its own keys and the optimizer's, all but the batch shape (batch,
  // input_length, target_length: read and written by hand, their keys depend on the architecture).
  CHECK(member_count<TrainConfig>() == 14);
  CHECK(field_names<TrainConfig>().size() == 14 - 1 - 3 + field_names<OptimizerConfig>().size());
  std::vector<std::string> optimizer_names = field_names<OptimizerConfig>();
  const std::set<std::string> optimizer_keys(optimizer_names.begin(), optimizer_names.end());
  CHECK(optimizer_names.size() == 7 + field_names<AdafactorAttrs>().size() + field_names<AdamWAttrs>().size());
  for (const std::string& k : field_names<AdafactorAttrs>()) CHECK(optimizer_keys.count(k) == 1);
  for (const std::string& k : field_names<AdamWAttrs>()) CHECK(optimizer_keys.count(k) == 1);
  // Every attribute struct.
  auto check_attrs = [](const auto& attrs) {
    using A = std::remove_cvref_t<decltype(attrs)>;
    INFO(typeid(A).name());
    CHECK(member_count<A>() == field_names<A>().size());
  };
  for (OpKind k : kAllOpKinds) std::visit(check_attrs, default_attrs(k));
}

TEST_CASE("fields: each MoeConfig field round-trips TOML -> config -> JSON -> config", "[fields]") {
  // [moe.encoder]: batch_prioritized = true is allowed there, not in the decoder.
  // expert_groups = 1 in a base: route_groups is written only where expert groups exist.
  check_round_trip<MoeConfig>("moe.encoder", {{}, {"moe.encoder.expert_groups=1"}, {"moe.encoder.expert_groups=1", "moe.encoder.route_groups=1"}},
                              [](const RunConfig& c) { return c.model.moe_encoder; });
}

TEST_CASE("fields: each optimizer field round-trips TOML -> config -> JSON -> config", "[fields]") {
  check_round_trip<OptimizerConfig>("train", {{}, {"train.optimizer=\"adamw\"", "train.schedule=\"cosine\""}},
                                    [](const RunConfig& c) { return c.train.optimizer; });
}

TEST_CASE("fields: each TrainConfig field round-trips TOML -> config -> JSON -> config", "[fields]") {
  // precision bf16 in the bases: activation_dtype = "bf16" needs it.
  check_round_trip<TrainConfig>("train", {{"train.precision=\"bf16\""}, {"train.optimizer=\"adamw\"", "train.schedule=\"cosine\"", "train.precision=\"bf16\""}},
                                [](const RunConfig& c) { return c.train; });
}

TEST_CASE("fields: each attribute field round-trips struct -> JSON -> struct", "[fields]") {
  for (OpKind kind : kAllOpKinds) {
    std::visit(
        [&](auto attrs) {
          using A = decltype(attrs);
          const std::vector<std::string> names = field_names<A>();
          for (size_t i = 0; i < names.size(); ++i) {
            A changed{};
            size_t index = 0;
            for_each_field(changed, [&](std::string_view, auto& m) {
              if (index++ == i) change(m);
            });
            INFO(op_name(kind) << " attrs." << names[i]);
            REQUIRE_FALSE(changed == A{});
            const Json j = attrs_to_json(Attrs{changed});
            CHECK(j.size() == names.size());
            CHECK(std::get<A>(attrs_from_json(kind, j, "<test>")) == changed);
          }
        },
        default_attrs(kind));
  }
}
