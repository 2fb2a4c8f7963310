#include "graph/ir.hpp"

#include <fmt/format.h>

namespace sy {

std::string to_string(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += fmt::format("{}{}={}", i ? ", " : "", s[i].name, s[i].size);
  return r + "]";
}

std::string to_string(const TensorType& t) { return fmt::format("{}{}", dtype_name(t.dtype), to_string(t.shape)); }

std::string_view op_name(OpKind k) {
  switch (k) {
#define SY_OP(kind, attrs, family) \
  case OpKind::kind: return #kind;
#include "graph/op_kinds.def"
#undef SY_OP
  }
  return "?";
}

std::optional<OpKind> op_from_name(std::string_view name) {
  for (OpKind k : kAllOpKinds)
    if (op_name(k) == name) return k;
  return std::nullopt;
}

bool attrs_match(OpKind k, const Attrs& a) {
  switch (k) {
#define SY_OP(kind, attrs, family) \
  case OpKind::kind: return std::holds_alternative<attrs>(a);
#include "graph/op_kinds.def"
#undef SY_OP
  }
  return false;
}

Attrs default_attrs(OpKind k) {
  switch (k) {
#define SY_OP(kind, attrs, family) \
  case OpKind::kind: return attrs{};
#include "graph/op_kinds.def"
#undef SY_OP
  }
  return NoAttrs{};
}

std::string_view role_name(ValueRole r) {
  switch (r) {
    case ValueRole::input: return "input";
    case ValueRole::parameter: return "parameter";
    case ValueRole::computed: return "computed";
  }
  return "?";
}

std::optional<ValueRole> role_from_name(std::string_view s) {
  if (s == "input") return ValueRole::input;
  if (s == "parameter") return ValueRole::parameter;
  if (s == "computed") return ValueRole::computed;
  return std::nullopt;
}

std::vector<ValueId> Graph::parameters() const {
  std::vector<ValueId> r;
  for (const Value& v : values)
    if (v.role == ValueRole::parameter) r.push_back(v.id);
  return r;
}

std::vector<ValueId> Graph::inputs() const {
  std::vector<ValueId> r;
  for (const Value& v : values)
    if (v.role == ValueRole::input) r.push_back(v.id);
  return r;
}

std::optional<ValueId> Graph::find_leaf(std::string_view name) const {
  for (const Value& v : values)
    if (v.role != ValueRole::computed && v.name == name) return v.id;
  return std::nullopt;
}

std::optional<ValueId> Graph::find_output(std::string_view name) const {
  for (const GraphOutput& o : outputs)
    if (o.name == name) return o.value;
  return std::nullopt;
}

std::string Graph::describe(NodeId id) const {
  if (!id.valid() || static_cast<size_t>(id.v) >= nodes.size()) return fmt::format("node {} (no such node)", id.v);
  const Node& n = node(id);
  if (n.scope.empty()) return fmt::format("node {} ({})", id.v, op_name(n.kind));
  return fmt::format("node {} ({} @ {})", id.v, op_name(n.kind), n.scope);
}

}  // namespace sy
