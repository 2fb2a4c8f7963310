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
#include <optional>
#include <limits>
#include <sstream>
#include <type_traits>
#include <variant>

namespace sy {
namespace {

// ---------------------------------------------------------------- writing

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

// One attribute field as JSON (its type's form; a new field type fails to compile here).
template <typename T>
Json field_json(const T& m) {
  if constexpr (std::is_same_v<T, double>) {
    return number(m);
  } else if constexpr (std::is_same_v<T, DType>) {
    return dtype_name(m);
  } else if constexpr (std::is_enum_v<T>) {
    return enum_name(m);
  } else if constexpr (std::is_same_v<T, Dim>) {
    return dim_json(m);
  } else if constexpr (std::is_same_v<T, Shape>) {
    return shape_json(m);
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    return strings_json(m);
  } else {
    static_assert(std::is_same_v<T, bool> || std::is_same_v<T, uint64_t> || std::is_same_v<T, std::string>);
    return m;
  }
}

// An attribute struct as an object: one key per field, as its fields() list names them (graph/attrs.hpp).
template <typename A>
Json attrs_json(const A& a) {
  Json j = Json::object();
  for_each_field(a, [&](std::string_view key, const auto& m) { j[std::string(key)] = field_json(m); });
  return j;
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

std::string join(const std::vector<std::string_view>& keys) {
  std::string r;
  for (std::string_view k : keys) r += fmt::format("{}{}", r.empty() ? "" : ", ", k);
  return r;
}

// `obj` (at key path `path`; "" for the entry itself) must be an object with exactly `keys`.
void expect_keys(const Reader& r, const Json& obj, const std::string& path, const std::vector<std::string_view>& keys) {
  if (!obj.is_object()) {
    if (path.empty()) r.fail_entry(fmt::format("expected an object, got {}", got(obj)));
    r.fail(path, fmt::format("expected an object, got {}", got(obj)));
  }
  for (std::string_view k : keys)
    if (!obj.contains(k))
      r.fail(path.empty() ? std::string(k) : path + "." + std::string(k),
             fmt::format("missing (required keys: {})", keys.size() ? join(keys) : "none"));
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool known = false;
    for (std::string_view k : keys) known = known || it.key() == k;
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

// How messages name the values of an attribute enum: "unknown reduction 'x' (allowed: ...)".
std::string_view enum_noun(Distribution) { return "distribution"; }
std::string_view enum_noun(ReduceOp) { return "reduction"; }

// One attribute field from JSON, mirroring field_json.
template <typename T>
void read_field(const Reader& r, const std::string& key, const Json& j, T& m) {
  if constexpr (std::is_same_v<T, double>) {
    m = as_double(r, key, j);
  } else if constexpr (std::is_same_v<T, bool>) {
    m = as_bool(r, key, j);
  } else if constexpr (std::is_same_v<T, uint64_t>) {
    m = as_u64(r, key, j);
  } else if constexpr (std::is_same_v<T, std::string>) {
    m = as_string(r, key, j);
  } else if constexpr (std::is_same_v<T, DType>) {
    m = as_dtype(r, key, j);
  } else if constexpr (std::is_enum_v<T>) {
    const std::string name = as_string(r, key, j);
    const std::optional<T> v = enum_from_name<T>(name);
    if (!v) r.fail(key, fmt::format("unknown {} '{}' (allowed: {})", enum_noun(T{}), name, enum_allowed<T>()));
    m = *v;
  } else if constexpr (std::is_same_v<T, Dim>) {
    m = as_dim(r, key, j);
  } else if constexpr (std::is_same_v<T, Shape>) {
    m = as_shape(r, key, j);
  } else {
    static_assert(std::is_same_v<T, std::vector<std::string>>);
    m = as_strings(r, key, j);
  }
}

// An attribute struct from its object: exactly the keys of its fields() list.
template <typename A>
void read_attrs(const Reader& r, const Json& j, A& a) {
  std::vector<std::string_view> keys;
  for_each_field(a, [&](std::string_view key, const auto&) { keys.push_back(key); });
  expect_keys(r, j, "attrs", keys);
  for_each_field(a, [&](std::string_view key, auto& m) { read_field(r, "attrs." + std::string(key), j[std::string(key)], m); });
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

namespace {

// A graph file nests objects and arrays a few levels deep (graph → nodes → node → attrs → dims).
// Text nested deeper than this is refused before parsing: nlohmann's json values are built,
// printed and destroyed recursively, so a file of 100000 '[' would overflow the stack.
constexpr int kMaxGraphJsonDepth = 64;

// The line of the first bracket deeper than kMaxGraphJsonDepth, or 0 (strings are skipped).
int64_t too_deep_line(std::string_view text) {
  int depth = 0;
  int64_t line = 1;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') ++line;
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxGraphJsonDepth) return line;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return 0;
}

}  // namespace

Graph graph_from_text(std::string_view text, std::string_view source_name) {
  if (const int64_t line = too_deep_line(text))
    throw InputError(fmt::format("{}:{}: JSON nested deeper than {} levels; a graph file nests a few levels", source_name,
                                 line, kMaxGraphJsonDepth));
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {  // parse_error, and out_of_range for a number beyond double (1e999)
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
