#include "graph/json.hpp"

#include "graph/error.hpp"
#include "graph/verify.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <variant>

namespace sy {
namespace {

// ---------------------------------------------------------------- writing

const char* distribution_name(Distribution d) {
  switch (d) {
    case Distribution::uniform: return "uniform";
    case Distribution::normal: return "normal";
  }
  return "?";
}

Json id_or_null(int32_t id) { return id >= 0 ? Json(id) : Json(nullptr); }

// JSON has no inf/nan: non-finite doubles are written as the strings "inf", "-inf", "nan".
Json number(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

Json dim_json(const Dim& d) { return Json::array({d.name, d.size}); }

Json shape_json(const Shape& s) {
  Json r = Json::array();
  for (const Dim& d : s) r.push_back(dim_json(d));
  return r;
}

Json strings_json(const std::vector<std::string>& v) {
  Json r = Json::array();
  for (const std::string& s : v) r.push_back(s);
  return r;
}

// One overload per attribute struct (graph/attrs.hpp); std::visit below fails to compile if one
// is missing. Keys are the struct's field names.
Json attrs_json(const NoAttrs&) { return Json::object(); }
Json attrs_json(const ScaleAttrs& a) { return {{"factor", number(a.factor)}, {"offset", number(a.offset)}}; }
Json attrs_json(const CastAttrs& a) { return {{"to", dtype_name(a.to)}}; }
Json attrs_json(const DropoutAttrs& a) { return {{"rate", number(a.rate)}, {"seed", a.seed}}; }
Json attrs_json(const FillAttrs& a) {
  return {{"shape", shape_json(a.shape)}, {"dtype", dtype_name(a.dtype)}, {"value", number(a.value)}};
}
Json attrs_json(const RandomAttrs& a) {
  return {{"shape", shape_json(a.shape)}, {"dtype", dtype_name(a.dtype)}, {"dist", distribution_name(a.dist)},
          {"a", number(a.a)},           {"b", number(a.b)},           {"seed", a.seed}};
}
Json attrs_json(const ShapeAttrs& a) { return {{"shape", shape_json(a.shape)}}; }
Json attrs_json(const DimsAttrs& a) { return {{"dims", strings_json(a.dims)}}; }
Json attrs_json(const DimAttrs& a) { return {{"dim", dim_json(a.dim)}}; }
Json attrs_json(const RmsNormAttrs& a) { return {{"dim", a.dim}, {"eps", number(a.eps)}}; }
Json attrs_json(const EinsumAttrs& a) { return {{"out", strings_json(a.out)}}; }
Json attrs_json(const OneHotAttrs& a) { return {{"dim", dim_json(a.dim)}, {"dtype", dtype_name(a.dtype)}}; }
Json attrs_json(const TopKAttrs& a) { return {{"dim", a.dim}, {"k", dim_json(a.k)}}; }
Json attrs_json(const CumsumAttrs& a) {
  return {{"dim", a.dim}, {"exclusive", a.exclusive}, {"reverse", a.reverse}};
}
Json attrs_json(const ScatterAttrs& a) { return {{"index_dim", a.index_dim}, {"out_dim", dim_json(a.out_dim)}}; }
const char* reduce_op_name(ReduceOp r) {
  switch (r) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::mean: return "mean";
    case ReduceOp::max: return "max";
  }
  return "?";
}
Json attrs_json(const CollectiveAttrs& a) {
  return {{"axes", shape_json(a.axes)},
          {"gather_dim", a.gather_dim},
          {"scatter_dim", a.scatter_dim},
          {"reduce", reduce_op_name(a.reduce)}};
}

Json attrs_json(const AdafactorAttrs& a) {
  return {{"decay_exponent", number(a.decay_exponent)}, {"clip_threshold", number(a.clip_threshold)},
          {"epsilon1", number(a.epsilon1)},             {"epsilon2", number(a.epsilon2)},
          {"parameter_scale", a.parameter_scale},       {"factored", a.factored}};
}
Json attrs_json(const AdamWAttrs& a) {
  return {{"beta1", number(a.beta1)},
          {"beta2", number(a.beta2)},
          {"epsilon", number(a.epsilon)},
          {"weight_decay", number(a.weight_decay)}};
}

Json ids_json(const std::vector<ValueId>& ids) {
  Json r = Json::array();
  for (ValueId id : ids) r.push_back(id.v);
  return r;
}

std::string dump_line(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// ---------------------------------------------------------------- reading

// Where an error is: the source, the entry ("nodes[3] (einsum)") and, per call, the key.
struct Reader {
  std::string_view source;
  std::string entry;  // empty at the top level

  [[noreturn]] void fail(std::string_view key, const std::string& msg) const {
    if (entry.empty()) throw InputError(fmt::format("{}: key '{}': {}", source, key, msg));
    throw InputError(fmt::format("{}: {}: key '{}': {}", source, entry, key, msg));
  }
  // A problem with the entry itself (not one of its keys).
  [[noreturn]] void fail_entry(const std::string& msg) const {
    if (entry.empty()) throw InputError(fmt::format("{}: {}", source, msg));
    throw InputError(fmt::format("{}: {}: {}", source, entry, msg));
  }
};

// "string \"abc\"" — the JSON type and (the start of) the value, for "got ..." in messages.
std::string got(const Json& j) {
  std::string text = dump_line(j);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return fmt::format("{} {}", j.type_name(), text);
}

std::string join(std::initializer_list<const char*> keys) {
  std::string r;
  for (const char* k : keys) r += fmt::format("{}{}", r.empty() ? "" : ", ", k);
  return r;
}

// `obj` (at key path `path`; "" for the entry itself) must be an object with exactly `keys`.
void expect_keys(const Reader& r, const Json& obj, const std::string& path, std::initializer_list<const char*> keys) {
  if (!obj.is_object()) {
    if (path.empty()) r.fail_entry(fmt::format("expected an object, got {}", got(obj)));
    r.fail(path, fmt::format("expected an object, got {}", got(obj)));
  }
  for (const char* k : keys)
    if (!obj.contains(k))
      r.fail(path.empty() ? std::string(k) : path + "." + k,
             fmt::format("missing (required keys: {})", keys.size() ? join(keys) : "none"));
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool known = false;
    for (const char* k : keys) known = known || it.key() == k;
    if (!known)
      r.fail(path.empty() ? it.key() : path + "." + it.key(),
             fmt::format("unknown key (allowed: {})", keys.size() ? join(keys) : "none"));
  }
}

int64_t as_int(const Reader& r, const std::string& key, const Json& j) {
  if (!j.is_number_integer()) r.fail(key, fmt::format("expected an integer, got {}", got(j)));
  if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    r.fail(key, fmt::format("integer {} is too large", dump_line(j)));
  return j.get<int64_t>();
}

int32_t as_int32(const Reader& r, const std::string& key, const Json& j) {
  const int64_t v = as_int(r, key, j);
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
    r.fail(key, fmt::format("{} is out of range for an id or index (32-bit)", v));
  return static_cast<int32_t>(v);
}

// An id that may be absent: null -> -1; otherwise an integer >= 0.
int32_t as_id_or_null(const Reader& r, const std::string& key, const Json& j) {
  if (j.is_null()) return -1;
  if (!j.is_number_integer()) r.fail(key, fmt::format("expected an id (integer >= 0) or null, got {}", got(j)));
  const int32_t v = as_int32(r, key, j);
  if (v < 0) r.fail(key, fmt::format("expected an id (integer >= 0) or null, got {}", v));
  return v;
}

uint64_t as_u64(const Reader& r, const std::string& key, const Json& j) {
  if (!j.is_number_unsigned()) r.fail(key, fmt::format("expected an integer >= 0, got {}", got(j)));
  return j.get<uint64_t>();
}

double as_double(const Reader& r, const std::string& key, const Json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  }
  r.fail(key, fmt::format("expected a number (or \"inf\", \"-inf\", \"nan\"), got {}", got(j)));
}

bool as_bool(const Reader& r, const std::string& key, const Json& j) {
  if (!j.is_boolean()) r.fail(key, fmt::format("expected true or false, got {}", got(j)));
  return j.get<bool>();
}

std::string as_string(const Reader& r, const std::string& key, const Json& j) {
  if (!j.is_string()) r.fail(key, fmt::format("expected a string, got {}", got(j)));
  return j.get<std::string>();
}

DType as_dtype(const Reader& r, const std::string& key, const Json& j) {
  const std::string s = as_string(r, key, j);
  auto t = dtype_from_name(s);
  if (!t)
    r.fail(key, fmt::format("unknown dtype '{}' (allowed: {}, {}, {})", s, dtype_name(DType::f32),
                            dtype_name(DType::bf16), dtype_name(DType::i32)));
  return *t;
}

Dim as_dim(const Reader& r, const std::string& key, const Json& j) {
  if (!j.is_array() || j.size() != 2 || !j[0].is_string())
    r.fail(key, fmt::format("expected a dim [name, size] like [\"batch\", 4], got {}", got(j)));
  return Dim{j[0].get<std::string>(), as_int(r, key + "[1]", j[1])};
}

Shape as_shape(const Reader& r, const std::string& key, const Json& j) {
  if (!j.is_array()) r.fail(key, fmt::format("expected a shape (an array of [name, size] dims), got {}", got(j)));
  Shape s;
  for (size_t i = 0; i < j.size(); ++i) s.push_back(as_dim(r, fmt::format("{}[{}]", key, i), j[i]));
  return s;
}

std::vector<std::string> as_strings(const Reader& r, const std::string& key, const Json& j) {
  if (!j.is_array()) r.fail(key, fmt::format("expected an array of strings, got {}", got(j)));
  std::vector<std::string> v;
  for (size_t i = 0; i < j.size(); ++i) v.push_back(as_string(r, fmt::format("{}[{}]", key, i), j[i]));
  return v;
}

std::vector<ValueId> as_ids(const Reader& r, const std::string& key, const Json& j) {
  if (!j.is_array()) r.fail(key, fmt::format("expected an array of value ids, got {}", got(j)));
  std::vector<ValueId> v;
  for (size_t i = 0; i < j.size(); ++i) v.push_back(ValueId{as_int32(r, fmt::format("{}[{}]", key, i), j[i])});
  return v;
}

// One overload per attribute struct, mirroring attrs_json.
void read_attrs(const Reader& r, const Json& j, NoAttrs&) { expect_keys(r, j, "attrs", {}); }
void read_attrs(const Reader& r, const Json& j, ScaleAttrs& a) {
  expect_keys(r, j, "attrs", {"factor", "offset"});
  a.factor = as_double(r, "attrs.factor", j["factor"]);
  a.offset = as_double(r, "attrs.offset", j["offset"]);
}
void read_attrs(const Reader& r, const Json& j, CastAttrs& a) {
  expect_keys(r, j, "attrs", {"to"});
  a.to = as_dtype(r, "attrs.to", j["to"]);
}
void read_attrs(const Reader& r, const Json& j, DropoutAttrs& a) {
  expect_keys(r, j, "attrs", {"rate", "seed"});
  a.rate = as_double(r, "attrs.rate", j["rate"]);
  a.seed = as_u64(r, "attrs.seed", j["seed"]);
}
void read_attrs(const Reader& r, const Json& j, FillAttrs& a) {
  expect_keys(r, j, "attrs", {"shape", "dtype", "value"});
  a.shape = as_shape(r, "attrs.shape", j["shape"]);
  a.dtype = as_dtype(r, "attrs.dtype", j["dtype"]);
  a.value = as_double(r, "attrs.value", j["value"]);
}
void read_attrs(const Reader& r, const Json& j, RandomAttrs& a) {
  expect_keys(r, j, "attrs", {"shape", "dtype", "dist", "a", "b", "seed"});
  a.shape = as_shape(r, "attrs.shape", j["shape"]);
  a.dtype = as_dtype(r, "attrs.dtype", j["dtype"]);
  const std::string dist = as_string(r, "attrs.dist", j["dist"]);
  if (dist == distribution_name(Distribution::uniform)) {
    a.dist = Distribution::uniform;
  } else if (dist == distribution_name(Distribution::normal)) {
    a.dist = Distribution::normal;
  } else {
    r.fail("attrs.dist", fmt::format("unknown distribution '{}' (allowed: uniform, normal)", dist));
  }
  a.a = as_double(r, "attrs.a", j["a"]);
  a.b = as_double(r, "attrs.b", j["b"]);
  a.seed = as_u64(r, "attrs.seed", j["seed"]);
}
void read_attrs(const Reader& r, const Json& j, ShapeAttrs& a) {
  expect_keys(r, j, "attrs", {"shape"});
  a.shape = as_shape(r, "attrs.shape", j["shape"]);
}
void read_attrs(const Reader& r, const Json& j, DimsAttrs& a) {
  expect_keys(r, j, "attrs", {"dims"});
  a.dims = as_strings(r, "attrs.dims", j["dims"]);
}
void read_attrs(const Reader& r, const Json& j, DimAttrs& a) {
  expect_keys(r, j, "attrs", {"dim"});
  a.dim = as_dim(r, "attrs.dim", j["dim"]);
}
void read_attrs(const Reader& r, const Json& j, RmsNormAttrs& a) {
  expect_keys(r, j, "attrs", {"dim", "eps"});
  a.dim = as_string(r, "attrs.dim", j["dim"]);
  a.eps = as_double(r, "attrs.eps", j["eps"]);
}
void read_attrs(const Reader& r, const Json& j, EinsumAttrs& a) {
  expect_keys(r, j, "attrs", {"out"});
  a.out = as_strings(r, "attrs.out", j["out"]);
}
void read_attrs(const Reader& r, const Json& j, OneHotAttrs& a) {
  expect_keys(r, j, "attrs", {"dim", "dtype"});
  a.dim = as_dim(r, "attrs.dim", j["dim"]);
  a.dtype = as_dtype(r, "attrs.dtype", j["dtype"]);
}
void read_attrs(const Reader& r, const Json& j, TopKAttrs& a) {
  expect_keys(r, j, "attrs", {"dim", "k"});
  a.dim = as_string(r, "attrs.dim", j["dim"]);
  a.k = as_dim(r, "attrs.k", j["k"]);
}
void read_attrs(const Reader& r, const Json& j, CumsumAttrs& a) {
  expect_keys(r, j, "attrs", {"dim", "exclusive", "reverse"});
  a.dim = as_string(r, "attrs.dim", j["dim"]);
  a.exclusive = as_bool(r, "attrs.exclusive", j["exclusive"]);
  a.reverse = as_bool(r, "attrs.reverse", j["reverse"]);
}
void read_attrs(const Reader& r, const Json& j, ScatterAttrs& a) {
  expect_keys(r, j, "attrs", {"index_dim", "out_dim"});
  a.index_dim = as_string(r, "attrs.index_dim", j["index_dim"]);
  a.out_dim = as_dim(r, "attrs.out_dim", j["out_dim"]);
}

void read_attrs(const Reader& r, const Json& j, CollectiveAttrs& a) {
  expect_keys(r, j, "attrs", {"axes", "gather_dim", "scatter_dim", "reduce"});
  a.axes = as_shape(r, "attrs.axes", j["axes"]);
  a.gather_dim = as_string(r, "attrs.gather_dim", j["gather_dim"]);
  a.scatter_dim = as_string(r, "attrs.scatter_dim", j["scatter_dim"]);
  const std::string op = as_string(r, "attrs.reduce", j["reduce"]);
  bool known = false;
  for (ReduceOp x : {ReduceOp::sum, ReduceOp::mean, ReduceOp::max})
    if (op == reduce_op_name(x)) a.reduce = x, known = true;
  if (!known) r.fail("attrs.reduce", fmt::format("unknown reduction '{}' (allowed: sum, mean, max)", op));
}

void read_attrs(const Reader& r, const Json& j, AdafactorAttrs& a) {
  expect_keys(r, j, "attrs", {"decay_exponent", "clip_threshold", "epsilon1", "epsilon2", "parameter_scale", "factored"});
  a.decay_exponent = as_double(r, "attrs.decay_exponent", j["decay_exponent"]);
  a.clip_threshold = as_double(r, "attrs.clip_threshold", j["clip_threshold"]);
  a.epsilon1 = as_double(r, "attrs.epsilon1", j["epsilon1"]);
  a.epsilon2 = as_double(r, "attrs.epsilon2", j["epsilon2"]);
  a.parameter_scale = as_bool(r, "attrs.parameter_scale", j["parameter_scale"]);
  a.factored = as_bool(r, "attrs.factored", j["factored"]);
}
void read_attrs(const Reader& r, const Json& j, AdamWAttrs& a) {
  expect_keys(r, j, "attrs", {"beta1", "beta2", "epsilon", "weight_decay"});
  a.beta1 = as_double(r, "attrs.beta1", j["beta1"]);
  a.beta2 = as_double(r, "attrs.beta2", j["beta2"]);
  a.epsilon = as_double(r, "attrs.epsilon", j["epsilon"]);
  a.weight_decay = as_double(r, "attrs.weight_decay", j["weight_decay"]);
}

Attrs read_attrs_of(const Reader& r, OpKind kind, const Json& j) {
  Attrs a = default_attrs(kind);
  std::visit([&](auto& fields) { read_attrs(r, j, fields); }, a);
  return a;
}

std::string known_ops() {
  std::string r;
  for (OpKind k : kAllOpKinds) r += fmt::format("{}{}", r.empty() ? "" : ", ", op_name(k));
  return r;
}

Value read_value(const Reader& r, const Json& j) {
  expect_keys(r, j, "", {"id", "name", "role", "dtype", "shape", "producer", "output_index", "grad_of"});
  Value v;
  v.id = ValueId{as_int32(r, "id", j["id"])};
  v.name = as_string(r, "name", j["name"]);
  const std::string role = as_string(r, "role", j["role"]);
  auto rl = role_from_name(role);
  if (!rl)
    r.fail("role", fmt::format("unknown role '{}' (allowed: {}, {}, {})", role, role_name(ValueRole::input),
                               role_name(ValueRole::parameter), role_name(ValueRole::computed)));
  v.role = *rl;
  v.type.dtype = as_dtype(r, "dtype", j["dtype"]);
  v.type.shape = as_shape(r, "shape", j["shape"]);
  v.producer = NodeId{as_id_or_null(r, "producer", j["producer"])};
  v.output_index = as_int32(r, "output_index", j["output_index"]);
  v.grad_of = ValueId{as_id_or_null(r, "grad_of", j["grad_of"])};
  return v;
}

Node read_node(Reader& r, const Json& j) {
  if (j.is_object() && j.contains("op") && j["op"].is_string()) r.entry += fmt::format(" ({})", j["op"].get<std::string>());
  expect_keys(r, j, "", {"id", "op", "attrs", "inputs", "outputs", "scope", "backward"});
  Node n;
  const std::string op = as_string(r, "op", j["op"]);
  auto kind = op_from_name(op);
  if (!kind) r.fail("op", fmt::format("unknown op '{}' (known: {})", op, known_ops()));
  n.kind = *kind;
  n.id = NodeId{as_int32(r, "id", j["id"])};
  n.attrs = read_attrs_of(r, n.kind, j["attrs"]);
  n.inputs = as_ids(r, "inputs", j["inputs"]);
  n.outputs = as_ids(r, "outputs", j["outputs"]);
  n.scope = as_string(r, "scope", j["scope"]);
  n.backward = as_bool(r, "backward", j["backward"]);
  return n;
}

const Json& array_at(const Reader& r, const Json& top, const char* key) {
  const Json& a = top[key];
  if (!a.is_array()) r.fail(key, fmt::format("expected an array, got {}", got(a)));
  return a;
}

}  // namespace

// ---------------------------------------------------------------- public

Json attrs_to_json(const Attrs& a) {
  return std::visit([](const auto& fields) { return attrs_json(fields); }, a);
}

Attrs attrs_from_json(OpKind kind, const Json& j, std::string_view source_name) {
  return read_attrs_of(Reader{source_name, ""}, kind, j);
}

Json to_json(const Graph& g) {
  Json values = Json::array();
  for (const Value& v : g.values)
    values.push_back({{"id", v.id.v},
                      {"name", v.name},
                      {"role", role_name(v.role)},
                      {"dtype", dtype_name(v.type.dtype)},
                      {"shape", shape_json(v.type.shape)},
                      {"producer", id_or_null(v.producer.v)},
                      {"output_index", v.output_index},
                      {"grad_of", id_or_null(v.grad_of.v)}});
  Json nodes = Json::array();
  for (const Node& n : g.nodes)
    nodes.push_back({{"id", n.id.v},
                     {"op", op_name(n.kind)},
                     {"attrs", attrs_to_json(n.attrs)},
                     {"inputs", ids_json(n.inputs)},
                     {"outputs", ids_json(n.outputs)},
                     {"scope", n.scope},
                     {"backward", n.backward}});
  Json outputs = Json::array();
  for (const GraphOutput& o : g.outputs) outputs.push_back({{"name", o.name}, {"value", o.value.v}});
  Json j = Json::object();
  j["format"] = kGraphFormat;
  j["version"] = kGraphFormatVersion;
  j["values"] = std::move(values);
  j["nodes"] = std::move(nodes);
  j["outputs"] = std::move(outputs);
  j["loss"] = id_or_null(g.loss.v);
  return j;
}

std::string graph_to_text(const Graph& g) {
  const Json j = to_json(g);
  std::string s = "{\n";
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it != j.begin()) s += ",\n";
    s += "  " + dump_line(Json(it.key())) + ": ";
    const Json& v = it.value();
    if (!v.is_array() || v.empty()) {
      s += dump_line(v);
      continue;
    }
    s += "[\n";
    for (size_t i = 0; i < v.size(); ++i) s += "    " + dump_line(v[i]) + (i + 1 < v.size() ? ",\n" : "\n");
    s += "  ]";
  }
  return s + "\n}\n";
}

Graph graph_from_json(const Json& j, std::string_view source_name) {
  Reader top{source_name, ""};
  if (!j.is_object()) top.fail_entry(fmt::format("expected a JSON object at the top level, got {}", got(j)));
  if (!j.contains("format") || j["format"] != Json(std::string(kGraphFormat)))
    top.fail("format", fmt::format("expected \"{}\", got {} (not a Switchyard graph file?)", kGraphFormat,
                                   j.contains("format") ? got(j["format"]) : std::string("nothing")));
  if (!j.contains("version") || j["version"] != Json(kGraphFormatVersion))
    top.fail("version", fmt::format("expected {} (the version this build reads), got {}", kGraphFormatVersion,
                                    j.contains("version") ? got(j["version"]) : std::string("nothing")));
  expect_keys(top, j, "", {"format", "version", "values", "nodes", "outputs", "loss"});

  Graph g;
  const Json& values = array_at(top, j, "values");
  for (size_t i = 0; i < values.size(); ++i) g.values.push_back(read_value(Reader{source_name, fmt::format("values[{}]", i)}, values[i]));
  const Json& nodes = array_at(top, j, "nodes");
  for (size_t i = 0; i < nodes.size(); ++i) {
    Reader r{source_name, fmt::format("nodes[{}]", i)};
    g.nodes.push_back(read_node(r, nodes[i]));
  }
  const Json& outputs = array_at(top, j, "outputs");
  for (size_t i = 0; i < outputs.size(); ++i) {
    Reader r{source_name, fmt::format("outputs[{}]", i)};
    expect_keys(r, outputs[i], "", {"name", "value"});
    g.outputs.push_back(
        GraphOutput{as_string(r, "name", outputs[i]["name"]), ValueId{as_int32(r, "value", outputs[i]["value"])}});
  }
  g.loss = ValueId{as_id_or_null(top, "loss", j["loss"])};

  try {
    verify(g);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", source_name, e.what()));
  }
  return g;
}

Graph graph_from_text(std::string_view text, std::string_view source_name) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    // Drop nlohmann's "[json.exception.parse_error.101] " prefix; keep "parse error at line L, column C: ...".
    std::string_view msg = e.what();
    if (auto p = msg.find("] "); msg.starts_with("[json.exception") && p != std::string_view::npos) msg.remove_prefix(p + 2);
    throw InputError(fmt::format("{}: not valid JSON: {}", source_name, msg));
  }
  return graph_from_json(j, source_name);
}

void save_graph(const Graph& g, const std::string& path) { write_file_atomic(path, graph_to_text(g)); }

Graph load_graph(const std::string& path) { return graph_from_text(read_file(path), path); }


}  // namespace sy
