// The IR: plain data referenced by integer ids. Nodes are stored in topological (creation)
// order; every value is either a leaf (input, parameter) or the output of exactly one node.
#pragma once

#include "graph/attrs.hpp"
#include "graph/shape.hpp"

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

enum class OpKind : uint8_t {
#define SY_OP(kind, attrs, family) kind,
#include "graph/op_kinds.def"
#undef SY_OP
};

inline constexpr size_t kOpKindCount = 0
#define SY_OP(kind, attrs, family) +1
#include "graph/op_kinds.def"
#undef SY_OP
    ;

inline constexpr std::array<OpKind, kOpKindCount> kAllOpKinds = {
#define SY_OP(kind, attrs, family) OpKind::kind,
#include "graph/op_kinds.def"
#undef SY_OP
};

std::string_view op_name(OpKind k);
std::optional<OpKind> op_from_name(std::string_view name);

// True iff `a` holds the attribute struct that op kind `k` uses (op_kinds.def).
bool attrs_match(OpKind k, const Attrs& a);
// A default-constructed attribute struct of the type op kind `k` uses.
Attrs default_attrs(OpKind k);

struct ValueId {
  int32_t v = -1;
  bool valid() const { return v >= 0; }
  bool operator==(const ValueId&) const = default;
  auto operator<=>(const ValueId&) const = default;
};

struct NodeId {
  int32_t v = -1;
  bool valid() const { return v >= 0; }
  bool operator==(const NodeId&) const = default;
  auto operator<=>(const NodeId&) const = default;
};

enum class ValueRole : uint8_t {
  input,      // fed per step (tokens, labels, activations in tests)
  parameter,  // trained weight
  computed,   // output of a node
};

std::string_view role_name(ValueRole r);
std::optional<ValueRole> role_from_name(std::string_view s);

struct Value {
  ValueId id;
  std::string name;  // unique for leaves ("encoder/layer_0/wq"); may be empty for computed
  TensorType type;
  ValueRole role = ValueRole::computed;
  NodeId producer;   // invalid for leaves
  int32_t output_index = 0;
  ValueId grad_of;   // set on the gradient of a parameter/input (autodiff)
};

struct Node {
  NodeId id;
  OpKind kind = OpKind::add;
  Attrs attrs;
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  std::string scope;  // "decoder/layer_1/moe" — clusters in DOT, per-layer tables in reports
  bool backward = false;  // emitted by autodiff
};

// A named output of the graph (loss, metrics, gradients): kept alive by memory planning.
struct GraphOutput {
  std::string name;
  ValueId value;
  bool operator==(const GraphOutput&) const = default;
};

// values and nodes are deques: appending (the builder, autodiff) never moves existing elements,
// so a reference to a value's shape stays valid while backward functions emit nodes.
struct Graph {
  std::deque<Value> values;  // index = ValueId
  std::deque<Node> nodes;    // index = NodeId, topological order
  std::vector<GraphOutput> outputs;
  ValueId loss;               // the scalar that autodiff differentiates, if any

  const Value& value(ValueId id) const { return values.at(static_cast<size_t>(id.v)); }
  Value& value(ValueId id) { return values.at(static_cast<size_t>(id.v)); }
  const Node& node(NodeId id) const { return nodes.at(static_cast<size_t>(id.v)); }
  const TensorType& type(ValueId id) const { return value(id).type; }

  std::vector<ValueId> parameters() const;  // in id order
  std::vector<ValueId> inputs() const;      // in id order
  std::optional<ValueId> find_leaf(std::string_view name) const;
  std::optional<ValueId> find_output(std::string_view name) const;
  // "node 12 (einsum @ decoder/layer_0/ffn)"
  std::string describe(NodeId id) const;
};

}  // namespace sy
