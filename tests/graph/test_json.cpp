// Graph JSON: round trips (byte-identical text, every attribute struct, awkward doubles), load
// errors that name the source, entry and key, atomic saving, and the shipped example graphs.
#include "graph/json.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/verify.hpp"
#include "tests/graph/mlp_graph.hpp"

#include <catch2/catch.hpp>

#include <set>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

using namespace sy;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

// x [B=4, D=8] -> einsum w [D, F=16] -> relu -> h [B, F]; no autodiff.
Graph small_graph() {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 4}, {"d_model", 8}});
  Expr w = b.parameter("ffn/w", {{"d_model", 8}, {"d_ff", 16}});
  ScopeGuard s(b, "ffn");
  b.output("h", relu(einsum(x, w, {"batch", "d_ff"})));
  return g;
}

// Structural equality of two graphs, field by field.
void check_same_graph(const Graph& a, const Graph& b) {
  REQUIRE(a.values.size() == b.values.size());
  for (size_t i = 0; i < a.values.size(); ++i) {
    const Value &x = a.values[i], &y = b.values[i];
    CHECK(x.id == y.id);
    CHECK(x.name == y.name);
    CHECK(x.type == y.type);
    CHECK(x.role == y.role);
    CHECK(x.producer == y.producer);
    CHECK(x.output_index == y.output_index);
    CHECK(x.grad_of == y.grad_of);
  }
  REQUIRE(a.nodes.size() == b.nodes.size());
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    const Node &x = a.nodes[i], &y = b.nodes[i];
    CHECK(x.id == y.id);
    CHECK(x.kind == y.kind);
    CHECK(x.attrs == y.attrs);
    CHECK(x.inputs == y.inputs);
    CHECK(x.outputs == y.outputs);
    CHECK(x.scope == y.scope);
    CHECK(x.backward == y.backward);
  }
  CHECK(a.outputs == b.outputs);
  CHECK(a.loss == b.loss);
}

// A fresh scratch directory under the system temp dir.
fs::path scratch_dir(const char* name) {
  fs::path d = fs::temp_directory_path() / fmt::format("sy_test_json_{}_{}", name, ::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The small graph's text with `from` replaced by `to` (exactly once).
std::string edited(const std::string& from, const std::string& to) {
  std::string text = graph_to_text(small_graph());
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("graph JSON has the documented top-level layout", "[json]") {
  const Json j = to_json(small_graph());
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  CHECK(keys == std::vector<std::string>{"format", "version", "values", "nodes", "outputs", "loss"});
  CHECK(j["format"] == "switchyard.graph");
  CHECK(j["version"] == 1);
  CHECK(j["loss"].is_null());
  CHECK(j["values"][0].dump() ==
        R"({"id":0,"name":"x","role":"input","dtype":"f32","shape":[["batch",4],["d_model",8]],"producer":null,)"
        R"("output_index":0,"grad_of":null})");
  CHECK(j["nodes"][0].dump() ==
        R"({"id":0,"op":"einsum","attrs":{"out":["batch","d_ff"]},"inputs":[0,1],"outputs":[2],"scope":"ffn",)"
        R"("backward":false})");
  CHECK(j["outputs"].dump() == R"([{"name":"h","value":3}])");
}

TEST_CASE("graph JSON round trip: save -> load -> save is byte-identical", "[json]") {
  const Graph g = test::build_mlp();
  const std::string text = graph_to_text(g);
  const Graph back = graph_from_text(text, "<mlp>");
  check_same_graph(g, back);
  CHECK(graph_to_text(back) == text);

  const fs::path dir = scratch_dir("roundtrip");
  const std::string p1 = (dir / "a.json").string(), p2 = (dir / "b.json").string();
  save_graph(g, p1);
  save_graph(load_graph(p1), p2);
  CHECK(read_file(p1) == read_file(p2));
  CHECK(read_file(p1) == text);
  fs::remove_all(dir);
}

TEST_CASE("graph JSON round trip keeps doubles exactly (0.1, 1e-6, infinities)", "[json]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 3}, {"d_model", 4}});
  Expr step = b.input("step", {}, DType::i32);
  Expr gain = b.parameter("gain", {{"d_model", 4}});
  Expr y = scale(x, 0.1, 1e-6);
  y = rms_norm(y, gain, "d_model", 1e-6);
  y = dropout(y, step, 0.1, 18446744073709551615ull);  // the largest uint64 seed
  Expr mask = fill(b, {{"batch", 3}, {"d_model", 4}}, -std::numeric_limits<double>::infinity());
  b.output("y", y + mask);
  b.output("third", scale(x, 1.0 / 3.0, -2.5e-300));

  const std::string text = graph_to_text(g);
  CHECK_THAT(text, Contains(R"("factor":0.1,"offset":1e-06)") && Contains(R"("eps":1e-06)") &&
                       Contains(R"("seed":18446744073709551615)") && Contains(R"("value":"-inf")"));
  const Graph back = graph_from_text(text, "<doubles>");
  check_same_graph(g, back);
  CHECK(std::get<ScaleAttrs>(back.nodes[0].attrs).factor == 0.1);
  CHECK(std::get<ScaleAttrs>(back.nodes[0].attrs).offset == 1e-6);
  CHECK(std::get<ScaleAttrs>(back.nodes.back().attrs).factor == 1.0 / 3.0);
  CHECK(std::get<FillAttrs>(back.nodes[3].attrs).value == -std::numeric_limits<double>::infinity());
  CHECK(graph_to_text(back) == text);
}

TEST_CASE("graph JSON round trips every attribute struct", "[json]") {
  // One case per attribute struct, through attrs_to_json / attrs_from_json (the functions the
  // graph writer and loader use for "attrs").
  const std::vector<std::pair<OpKind, Attrs>> cases = {
      {OpKind::add, NoAttrs{}},
      {OpKind::scale, ScaleAttrs{0.1, -1e-6}},
      {OpKind::cast, CastAttrs{DType::bf16}},
      {OpKind::dropout, DropoutAttrs{0.25, 12345678901234567ull}},
      {OpKind::fill, FillAttrs{{{"batch", 2}, {"d_model", 3}}, DType::i32, 7.5}},
      {OpKind::random, RandomAttrs{{{"experts", 4}}, DType::bf16, Distribution::normal, 0.1, 1e-2, 99}},
      {OpKind::reshape, ShapeAttrs{{{"tokens", 6}}}},
      {OpKind::reduce_sum, DimsAttrs{{"batch", "d_model"}}},
      {OpKind::softmax, DimAttrs{{"experts", 8}}},
      {OpKind::rms_norm, RmsNormAttrs{"d_model", 1e-6}},
      {OpKind::einsum, EinsumAttrs{{"batch", "d_ff"}}},
      {OpKind::one_hot, OneHotAttrs{{"experts", 4}, DType::bf16}},
      {OpKind::top_k, TopKAttrs{"experts", {"k", 2}}},
      {OpKind::cumsum, CumsumAttrs{"tokens", true, false}},
      {OpKind::scatter_add, ScatterAttrs{"k", {"capacity", 5}}},
      {OpKind::all_to_all, CollectiveAttrs{{{"data", 4}, {"model", 2}}, "group", "experts", ReduceOp::max}},
      {OpKind::adafactor_update, AdafactorAttrs{0.8, 0.1, 1e-30, 1e-3, false, true}},
      {OpKind::adamw_update, AdamWAttrs{0.9, 0.98, 1e-6, 0.01}},
  };
  // Every alternative of the Attrs variant is covered.
  std::vector<bool> seen(std::variant_size_v<Attrs>, false);
  for (const auto& [kind, attrs] : cases) seen[attrs.index()] = true;
  CHECK(std::count(seen.begin(), seen.end(), true) == static_cast<long>(seen.size()));

  for (const auto& [kind, attrs] : cases) {
    INFO(op_name(kind));
    REQUIRE(attrs_match(kind, attrs));
    const Json j = attrs_to_json(attrs);
    CHECK(attrs_from_json(kind, j, "<attrs>") == attrs);
    CHECK(attrs_to_json(attrs_from_json(kind, Json::parse(j.dump()), "<attrs>")).dump() == j.dump());
  }
  CHECK(attrs_to_json(TopKAttrs{"experts", {"k", 2}}).dump() == R"({"dim":"experts","k":["k",2]})");
  CHECK_THROWS_WITH(attrs_from_json(OpKind::top_k, Json::parse(R"({"dim":"experts"})"), "<attrs>"),
                    Contains("<attrs>: key 'attrs.k': missing (required keys: dim, k)"));
  CHECK_THROWS_WITH(attrs_from_json(OpKind::relu, Json::parse(R"({"dim":"experts"})"), "<attrs>"),
                    Contains("key 'attrs.dim': unknown key (allowed: none)"));
}

TEST_CASE("graph JSON load errors name the source, the entry and the key", "[json]") {
  auto load = [](const std::string& text) { return graph_from_text(text, "g.json"); };
  // A number beyond double: nlohmann throws out_of_range, not parse_error (found by
  // tests/fuzz/fuzz_graph_json: it escaped as an uncaught exception).
  CHECK_THROWS_WITH(load(R"({"format":"switchyard.graph","version":1e999})"),
                    Contains("g.json: not valid JSON: number overflow parsing '1e999'"));

  CHECK_THROWS_WITH(load(edited(R"("op":"relu")", R"("op":"relu6")")),
                    Contains("g.json: nodes[1] (relu6): key 'op': unknown op 'relu6' (known: add, sub, mul,") &&
                        Contains("einsum"));
  CHECK_THROWS_WITH(load(edited(R"("scope":"ffn","backward":false)", R"("backward":false)")),
                    Contains("g.json: nodes[0] (einsum): key 'scope': missing (required keys: id, op, attrs, inputs, "
                             "outputs, scope, backward)"));
  CHECK_THROWS_WITH(load(edited(R"("inputs":[0,1])", R"("inputs":[0,"w"])")),
                    Contains("g.json: nodes[0] (einsum): key 'inputs[1]': expected an integer, got string \"w\""));
  CHECK_THROWS_WITH(load(edited(R"("dtype":"f32")", R"("dtype":"f16")")),
                    Contains("g.json: values[0]: key 'dtype': unknown dtype 'f16' (allowed: f32, bf16, i32)"));
  CHECK_THROWS_WITH(load(edited(R"("out":["batch","d_ff"])", R"("out":"batch")")),
                    Contains("g.json: nodes[0] (einsum): key 'attrs.out': expected an array of strings, got string"));
  CHECK_THROWS_WITH(load(edited(R"("out":["batch","d_ff"])", R"("out":["batch","d_ff"],"extra":1)")),
                    Contains("key 'attrs.extra': unknown key (allowed: out)"));
  CHECK_THROWS_WITH(load(edited(R"(["batch",4],["d_model",8])", R"(["batch",4],["d_model"])")),
                    Contains("g.json: values[0]: key 'shape[1]': expected a dim [name, size]"));
  CHECK_THROWS_WITH(load(edited(R"("role":"input")", R"("role":"weight")")),
                    Contains("unknown role 'weight' (allowed: input, parameter, computed)"));
  CHECK_THROWS_WITH(load(edited(R"("version": 1)", R"("version": 2)")),
                    Contains("g.json: key 'version': expected 1"));
  CHECK_THROWS_WITH(load(edited(R"("format": "switchyard.graph")", R"("format": "onnx")")),
                    Contains("not a Switchyard graph file"));
  CHECK_THROWS_WITH(load(edited(R"("loss": null)", R"("loss": -1)")),
                    Contains("g.json: key 'loss': expected an id (integer >= 0) or null, got -1"));
  CHECK_THROWS_WITH(load("{\"format\": \"switchyard.graph\",\n  \"version\": 1,\n  \"values\": [\n"),
                    Contains("g.json: not valid JSON: parse error at line 4"));
  CHECK_THROWS_WITH(load("[1, 2]"), Contains("g.json: expected a JSON object at the top level, got array"));
  // Problems found by verify() after parsing are prefixed with the source.
  CHECK_THROWS_WITH(load(edited(R"("inputs":[2])", R"("inputs":[9])")),
                    Contains("g.json: node 1 (relu @ ffn): input 0 is value 9, which does not exist"));
}

TEST_CASE("load_graph names a file it cannot open", "[json]") {
  CHECK_THROWS_WITH(load_graph("/nonexistent/graph.json"), Contains("cannot open '/nonexistent/graph.json'"));
}

TEST_CASE("save_graph writes atomically and leaves nothing behind on failure", "[json]") {
  const fs::path dir = scratch_dir("atomic");
  const std::string path = (dir / "g.json").string();
  auto files = [&] {  // what the directory holds
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    return names;
  };
  save_graph(small_graph(), path);
  CHECK(files() == std::set<std::string>{"g.json"});  // no temporary left behind
  save_graph(small_graph(), path);  // overwrite
  CHECK(read_file(path) == graph_to_text(small_graph()));
  CHECK(files() == std::set<std::string>{"g.json"});

  const std::string bad = (dir / "missing_dir" / "g.json").string();
  CHECK_THROWS_AS(save_graph(small_graph(), bad), InputError);
  CHECK_FALSE(fs::exists(bad));
  CHECK(files() == std::set<std::string>{"g.json"});
  fs::remove_all(dir);
}

TEST_CASE("experiments/graphs/mlp.json is the Builder's MLP, serialised", "[json]") {
  const fs::path path = test::source_root() / "experiments" / "graphs" / "mlp.json";
  const std::string fresh = graph_to_text(test::build_mlp());
  if (std::getenv("SY_UPDATE_GOLDEN") != nullptr) save_graph(test::build_mlp(), path.string());
  INFO("if the change is intended, rerun with SY_UPDATE_GOLDEN=1 to rewrite " << path.string());
  CHECK(read_file(path.string()) == fresh);
  CHECK_NOTHROW(load_graph(path.string()));
}

TEST_CASE("malformed example graphs under tests/data are rejected naming the node", "[json]") {
  const fs::path data = test::source_root() / "tests" / "data";
  CHECK_THROWS_WITH(load_graph((data / "graph_bad_id.json").string()),
                    Contains("graph_bad_id.json: node 1 (relu @ ffn): input 0 is value 42, which does not exist"));
  CHECK_THROWS_WITH(load_graph((data / "graph_cycle.json").string()),
                    Contains("graph_cycle.json: the graph has a cycle: node 0 (einsum @ ffn) -> node 1 (relu @ ffn) -> "
                             "node 0 (einsum @ ffn)"));
  CHECK_THROWS_WITH(load_graph((data / "graph_shape_mismatch.json").string()),
                    Contains("graph_shape_mismatch.json: node 2 (einsum @ ffn): with inputs"));
  CHECK_THROWS_WITH(load_graph((data / "graph_malformed.json").string()),
                    Contains("graph_malformed.json: not valid JSON: parse error at line"));
}
