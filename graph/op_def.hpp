// The op registry interface. Each op kind has exactly one OpDef, defined in ops/<family>.cpp and
// looked up here by kind; the executor, the simulator and autodiff never re-implement an op.
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
  bool operator==(const OpCost&) const = default;
};

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
};

const OpDef& op_def(OpKind k);

}  // namespace sy
