// Layouts (Mesh-TensorFlow style): rules "tensor dim -> mesh axis", written
// "batch:data,experts:data,d_ff:model,heads:model". A rule applies to every tensor that has a dim
// of that name. Legality (check_layout):
//   - a tensor dim maps to at most one mesh axis (a dim is named in at most one rule);
//   - a mesh axis splits at most one dim of any tensor (two ruled dims of one tensor may not
//     share an axis);
//   - every ruled dim's size is divisible by its axis's size, in every tensor that has it;
//   - every rule names an axis of the mesh and a dim some tensor of the graph has.
// Violations throw InputError naming the tensor (its leaf name, or the node producing it), the
// dims and the rule broken.
//
// A Sharding says, for one value, which of its dims each mesh axis splits (graph/parallel/planner.hpp
// decides it from the rules and from the shardings of the op's inputs).
#pragma once

#include "graph/ir.hpp"
#include "graph/parallel/mesh.hpp"

#include <array>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

struct LayoutRule {
  std::string dim;   // tensor dim name, e.g. "d_ff"
  std::string axis;  // mesh axis name, e.g. "model"
  bool operator==(const LayoutRule&) const = default;
};

// moe.group_dispatch's buffers [dispatch_group, ...] hold one row block per group of experts
// (graph/models/moe.cpp): unless a rule names dispatch_group, it is split as the experts rule splits
// experts, so each device holds the groups of the experts it holds (dispatch_group must then be
// divisible by that axis: one or more whole groups per device).
inline constexpr std::string_view kExpertsDim = "experts";
inline constexpr std::string_view kDispatchGroupDim = "dispatch_group";

struct Layout {
  std::vector<LayoutRule> rules;

  // The axis the rules map `dim` to, or nullptr (dispatch_group: the experts rule's, unless named).
  const std::string* axis_of(std::string_view dim) const;
  bool operator==(const Layout&) const = default;
};

// "batch:data,d_ff:model" -> Layout. "" is the empty layout (everything replicated). Throws
// InputError for bad syntax, an axis not in the mesh, or a dim named twice.
Layout parse_layout(std::string_view text, const Mesh& mesh);

// "batch:data,d_ff:model"
std::string to_string(const Layout& l);

// The legality rules above, over every value of g. Throws InputError on the first violation.
void check_layout(const Graph& g, const Mesh& mesh, const Layout& layout);

// A value's tensor for messages: its leaf name, or "output 0 of node 12 (einsum @ scope)".
std::string tensor_label(const Graph& g, ValueId v);

// Per mesh axis, the position of the dim of the value it splits, or -1 (replicated along it).
struct Sharding {
  std::array<int8_t, kMaxMeshAxes> dim;
  Sharding() { dim.fill(-1); }
  // The eight slots as one word (fast comparison and hashing).
  uint64_t bits() const { return std::bit_cast<uint64_t>(dim); }
  bool replicated() const { return bits() == ~uint64_t{0}; }
  bool operator==(const Sharding& o) const { return bits() == o.bits(); }
};

// The shape each device holds: split dims divided by their axis sizes.
Shape local_shape(const Shape& global, const Sharding& s, const Mesh& mesh);

// "[batch=2048/data, length=512, d_model=5120]"
std::string describe_sharding(const Shape& global, const Sharding& s, const Mesh& mesh);

}  // namespace sy
