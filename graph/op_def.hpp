// The op registry interface. Each op kind has exactly one OpDef, defined in ops/<family>.cpp and
// looked up here by kind; the executor, the simulator, autodiff and lowering never re-implement an
// op or switch over kinds for what an op is.
#pragma once

#include "graph/ir.hpp"
#include "graph/tensor.hpp"

#include <span>
#include <string>
#include <vector>

namespace sy {

class Builder;

enum class OpClass : uint8_t { matmul, elementwise, reduction, index, layout };
std::string_view op_class_name(OpClass c);

// Work of one op execution, counted from shapes (never from timing).
struct OpCost {
  double flops = 0;          // floating-point operations (multiply-add = 2)
  double bytes_read = 0;     // inputs read once, at their storage dtype
  double bytes_written = 0;  // outputs written once
  // Collectives only: bytes each device sends over the network (over the mesh axes named in the
  // op's CollectiveAttrs), by the ring algorithms of ops/collective.cpp. 0 for local ops.
  double collective_bytes = 0;
  // Transcendental evaluations (exp, log, rsqrt, tanh): a resource of their own, as in XLA's HLO
  // cost analysis (flops, transcendentals, bytes accessed). On a CPU each is a polynomial of tens
  // of vector instructions, so an exp-bearing op can be bound by them rather than by its bytes
  // (experiments/bench/machine_limits.hpp measures the rate).
  double transcendentals = 0;
  bool operator==(const OpCost&) const = default;
};

// How lowering (graph/parallel/) may split an op's dims over a mesh, from what OpDef::roles says.
// Every dim not named here is free: any mesh axis may split it and each device runs the op on its
// block. Lowering adds one rule of its own (graph/parallel/compile.cpp): an input dim that no
// output has must stay whole unless `sums_absent_dims`.
struct LoweringRoles {
  // Dims the op needs entire (softmax's dim, top_k's dim and k, ...): lowering gathers them first.
  std::vector<std::string> whole;
  // Input dims absent from every output are summed out (einsum contractions, reduce_*): a split of
  // one leaves partial results, combined by `reduce` (all_reduce, or reduce_scatter).
  bool sums_absent_dims = false;
  ReduceOp reduce = ReduceOp::sum;
  // Reshape-like: a split carries over between an input dim and the output dim with the same
  // row-major prefix (batch -> group); the input's other splits are gathered.
  bool reshape = false;
  // Linear in every input as-is (cast, add, scale, reshape, transpose): when the output is (part
  // of) a parameter gradient, so are the inputs, and their bf16 partial sums are reduced in f32.
  bool carries_gradient = false;
  // An optimization barrier (after): the output is input 0 as it is split; the other inputs
  // only order the op and are taken in whatever sharding they have, never resharded.
  bool control = false;
};

// The default roles, for ops that work per element by dim name (most elementwise ops, the
// optimizer updates): every dim free.
inline LoweringRoles per_element_roles(const std::vector<TensorType>&, const Attrs&) { return {}; }

// The default attribute localisation: attributes name no shape, so the local block's are the same.
inline Attrs same_attrs(const Attrs& attrs, const Shape&) { return attrs; }

struct OpDef {
  const char* name;
  OpClass op_class;

  // Output types from input types and attributes. Throws InputError with a message saying what
  // is wrong (the caller prefixes the node).
  std::vector<TensorType> (*infer)(const std::vector<TensorType>& in, const Attrs& attrs);

  // Reference forward: plain loops in double; `out` arrives sized and typed by infer().
  // Results are rounded to each output's dtype (round_to) unless `exact` (finite differences).
  void (*forward)(const Attrs& attrs, std::span<const Tensor* const> in, std::span<Tensor* const> out,
                  bool exact);

  // Backward: emits ordinary nodes through `b` computing the gradient of each input from the
  // gradients of the outputs (`dout[i]` may be invalid: no gradient flows into that output).
  // Returns one entry per input; invalid where no gradient exists (integer inputs, masks, and
  // every input of a piecewise-constant op such as greater). nullptr when the gradient is not
  // implemented (second order through a backward-only helper): autodiff then refuses.
  std::vector<ValueId> (*backward)(Builder& b, const Node& node, std::span<const ValueId> dout);

  // Analytic cost from types.
  OpCost (*cost)(const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& attrs);

  // ---- lowering (graph/parallel/); the defaults fit ops that work per element by dim name

  // Which dims the op needs whole, sums out, or carries through a reshape, from its input types
  // and attributes. nullptr for the collectives: they are what lowering inserts, and a graph that
  // holds them is already lowered.
  LoweringRoles (*roles)(const std::vector<TensorType>& in, const Attrs& attrs) = per_element_roles;

  // The attributes of the op run on one device's block, whose output shape is `local_out`:
  // attributes holding a shape (fill, random, broadcast, reshape) take the local shape.
  Attrs (*local_attrs)(const Attrs& attrs, const Shape& local_out) = same_attrs;

  // Collectives only (nullptr otherwise): the cost of one execution over a group of `devices`
  // devices from the local input's bytes and elements and the local output's bytes (ring
  // algorithms, ops/collective.cpp). `cost` is this applied to the op's types; lowering's planner
  // calls it directly when it prices a resharding step without building the op.
  OpCost (*collective_cost)(double devices, ReduceOp reduce, double local_in_bytes, double local_in_elems,
                            double local_out_bytes) = nullptr;
};

const OpDef& op_def(OpKind k);

}  // namespace sy
