// The TOML schema reader (graph/toml_schema): typed keys with defaults, ranges and choices, and one
// error wording naming the file, the line, the key, the value and what is allowed.
#include "graph/toml_schema.hpp"

#include "graph/error.hpp"

#include <catch2/catch.hpp>

using namespace sy;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using Catch::Matchers::StartsWith;

namespace {

enum class Color { red, green };
constexpr std::pair<Color, std::string_view> kColors[] = {{Color::red, "red"}, {Color::green, "green"}};

// The InputError message of reading [part] of `text` with `read` (fails the test if it reads).
template <typename Read>
std::string error_of(const std::string& text, Read read) {
  try {
    const TomlDocument doc = TomlDocument::parse(text, "s.toml");
    TomlSection part(doc, doc.root["part"].as_table(), "part");
    read(part);
    part.finish();
  } catch (const InputError& e) {
    return e.what();
  }
  FAIL("reading did not throw InputError:\n" << text);
  return "";
}

}  // namespace

TEST_CASE("toml schema: typed keys read their values, absent keys their fallbacks", "[toml]") {
  const TomlDocument doc = TomlDocument::parse(
      "[part]\ncount = 3\nrate = 2\nratio = 0.5\non = true\nname = \"x\"\ncolor = \"green\"\ndims = [2, 4]\n"
      "[part.sub]\nk = 1\n",
      "s.toml");
  TomlSection part(doc, doc.root["part"].as_table(), "part");
  CHECK(part.integer("count", 1, 1) == 3);
  CHECK(part.number("rate", 1.0, above(0)) == 2.0);  // an integer is a number
  CHECK(part.number("ratio", kRequired, interval(0, 1, "[)")) == 0.5);
  CHECK(part.boolean("on", false));
  CHECK(part.string("name", "") == "x");
  CHECK(part.choice("color", Color::red, kColors) == Color::green);
  CHECK(part.integers("dims", kRequired, 1) == std::vector<int64_t>{2, 4});
  CHECK(part.table("sub") != nullptr);
  CHECK(part.integer("absent", 7, 1) == 7);
  CHECK(part.choice("absent_color", Color::red, kColors) == Color::red);
  CHECK(part.table("absent_table") == nullptr);
  CHECK_NOTHROW(part.finish());

  // An absent table: every key takes its fallback.
  TomlSection none(doc, nullptr, "none");
  CHECK(none.integer("n", 5, 1) == 5);
  CHECK_NOTHROW(none.finish());
}

TEST_CASE("toml schema: a value of the wrong type names file, line, key, value and what is allowed", "[toml]") {
  CHECK_THAT(error_of("[part]\nn = \"big\"\n", [](TomlSection& s) { s.integer("n", 1, 1); }),
             Equals("s.toml:2: part.n = \"big\": expected an integer; allowed: integers >= 1"));
  CHECK_THAT(error_of("[part]\n\nx = true\n", [](TomlSection& s) { s.number("x", 1.0, above(0)); }),
             Equals("s.toml:3: part.x = true: expected a number; allowed: > 0"));
  CHECK_THAT(error_of("[part]\non = 1\n", [](TomlSection& s) { s.boolean("on", false); }),
             Equals("s.toml:2: part.on = 1: expected true or false"));
  CHECK_THAT(error_of("[part]\nname = 1.5\n", [](TomlSection& s) { s.string("name", ""); }),
             Equals("s.toml:2: part.name = 1.5: expected a string"));
  CHECK_THAT(error_of("[part]\nsub = 3\n", [](TomlSection& s) { s.table("sub"); }),
             Equals("s.toml:2: part.sub = 3: expected a table [part.sub]"));
}

TEST_CASE("toml schema: a value out of range says which values are allowed", "[toml]") {
  CHECK_THAT(error_of("[part]\nn = 0\n", [](TomlSection& s) { s.integer("n", 1, 1); }),
             Equals("s.toml:2: part.n = 0: allowed: integers >= 1"));
  CHECK_THAT(error_of("[part]\nk = 9\n", [](TomlSection& s) { s.integer("k", 1, 1, 4); }),
             Equals("s.toml:2: part.k = 9: allowed: 1..4"));
  CHECK_THAT(error_of("[part]\nx = 1.0\n", [](TomlSection& s) { s.number("x", 0.0, interval(0, 1, "[)")); }),
             Equals("s.toml:2: part.x = 1.0: allowed: [0, 1)"));
  CHECK_THAT(error_of("[part]\nx = -2\n", [](TomlSection& s) { s.number("x", 0.0, at_least(0, "seconds")); }),
             Equals("s.toml:2: part.x = -2: allowed: >= 0 (seconds)"));
  CHECK_THAT(error_of("[part]\nx = 0.5\n",
                      [](TomlSection& s) { s.number("x", 0.0, [](double v) { return v == 0 || v > 1; }, "0 (off) or > 1"); }),
             Equals("s.toml:2: part.x = 0.5: allowed: 0 (off) or > 1"));
  CHECK_THAT(error_of("[part]\ndims = [2, 0]\n", [](TomlSection& s) { s.integers("dims", kRequired, 1); }),
             Contains("s.toml:2: part.dims = [2, 0]: element 0 is not an integer >= 1; allowed: a non-empty array"));
}

TEST_CASE("toml schema: a bad choice lists the allowed spellings", "[toml]") {
  CHECK_THAT(error_of("[part]\ncolor = \"blue\"\n", [](TomlSection& s) { s.choice("color", Color::red, kColors); }),
             Equals("s.toml:2: part.color = \"blue\": allowed: red, green"));
  CHECK_THAT(error_of("[part]\ncolor = 1\n", [](TomlSection& s) { s.choice("color", Color::red, kColors); }),
             Equals("s.toml:2: part.color = 1: allowed: red, green"));
}

TEST_CASE("toml schema: an unknown key names it and lists the allowed keys", "[toml]") {
  CHECK_THAT(error_of("[part]\nn = 1\n\ncolour = \"red\"\n",
                      [](TomlSection& s) {
                        s.integer("n", 1, 1);
                        s.choice("color", Color::red, kColors);
                        s.table("sub");
                      }),
             Equals("s.toml:4: unknown key part.colour; allowed keys in [part]: n, color, sub"));
  // At the top level, tables are listed as [name], named tables as [name.<name>], arrays of
  // tables as [[name]].
  const TomlDocument doc = TomlDocument::parse("[a]\n[b.x]\n[[c]]\n[d]\n", "s.toml");
  TomlSection top(doc, &doc.root, "");
  top.table("a");
  CHECK(top.named_tables("b").size() == 1);
  CHECK(top.tables("c").size() == 1);
  CHECK_THROWS_WITH(top.finish(), Equals("s.toml:4: unknown key d; allowed keys at the top level: [a], [b.<name>], [[c]]"));
}

TEST_CASE("toml schema: a missing required key is reported after unknown keys", "[toml]") {
  auto read = [](TomlSection& s) {
    s.number("rate", kRequired, above(0));
    s.integer("n", 1, 1);
  };
  // A misspelt key is both unknown and missing: the unknown one is the useful message.
  CHECK_THAT(error_of("[part]\nrte = 1\n", read), Equals("s.toml:2: unknown key part.rte; allowed keys in [part]: rate, n"));
  CHECK_THAT(error_of("\n[part]\nn = 2\n", read), Equals("s.toml:2: missing key part.rate (required in [part])"));
}

TEST_CASE("toml schema: the line is the key's, an override names its --set argument", "[toml]") {
  const std::string text = "# comment\n\n[part]\na = 1\n\n\nb = -1\n";
  CHECK_THAT(error_of(text, [](TomlSection& s) { s.integer("b", 0, 0); }), StartsWith("s.toml:7: part.b = -1"));
  TomlDocument doc = TomlDocument::parse(text, "s.toml");
  doc.root["part"].as_table()->insert_or_assign("b", -5);
  doc.overridden["part.b"] = "part.b=-5";
  TomlSection part(doc, doc.root["part"].as_table(), "part");
  CHECK_THROWS_WITH(part.integer("b", 0, 0), Equals("s.toml (--set part.b=-5): part.b = -5: allowed: integers >= 0"));
  // Checks over several keys name their own keys; the line is the first key's.
  CHECK_THROWS_WITH(doc.fail("part.a", "part.a = 1 exceeds part.b; allowed: a <= b"),
                    Equals("s.toml:4: part.a = 1 exceeds part.b; allowed: a <= b"));
}

TEST_CASE("toml schema: syntax errors and value texts", "[toml]") {
  CHECK_THROWS_WITH(TomlDocument::parse("[part]\nx = [1,\n", "s.toml"), StartsWith("s.toml:2: TOML syntax error: "));
  const TomlDocument doc = TomlDocument::parse("a = 0.1\nb = 2.0\nc = [1, \"x\", [true]]\nd = 1e9\n", "s.toml");
  CHECK(TomlDocument::value_text(*doc.root.get("a")) == "0.1");
  CHECK(TomlDocument::value_text(*doc.root.get("b")) == "2.0");
  CHECK(TomlDocument::value_text(*doc.root.get("c")) == "[1, \"x\", [true]]");
  CHECK(TomlDocument::value_text(*doc.root.get("d")) == "1000000000.0");
  CHECK(above(0).text() == "> 0");
  CHECK(interval(0, 1, "(]").text() == "(0, 1]");
  CHECK_FALSE(above(0).contains(0));
  CHECK(interval(0, 1, "(]").contains(1));
}
