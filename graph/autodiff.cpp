#include "graph/autodiff.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/op_def.hpp"

namespace sy {

std::map<ValueId, ValueId> gradients(Graph& g, std::span<const ValueId> wrt_in) {
  if (!g.loss.valid()) throw InputError("gradients: the graph has no loss (Builder::set_loss)");
  std::vector<ValueId> wrt(wrt_in.begin(), wrt_in.end());
  if (wrt.empty()) wrt = g.parameters();
  for (ValueId w : wrt)
    if (g.value(w).role == ValueRole::computed || !is_float(g.type(w).dtype))
      throw InputError(fmt::format("gradients: value {} ('{}') is not a float leaf", w.v, g.value(w).name));

  const size_t n_values = g.values.size();
  const size_t n_nodes = g.nodes.size();

  // Values that depend on some wrt leaf (forward sweep): only their gradients are needed.
  std::vector<char> depends(n_values, 0);
  for (ValueId w : wrt) depends[static_cast<size_t>(w.v)] = 1;
  for (size_t i = 0; i < n_nodes; ++i) {
    const Node& n = g.nodes[i];
    bool any = false;
    for (ValueId v : n.inputs) any = any || depends[static_cast<size_t>(v.v)];
    if (any)
      for (ValueId v : n.outputs) depends[static_cast<size_t>(v.v)] = 1;
  }

  Builder b(g);
  b.set_backward(true);
  std::vector<ValueId> grad(n_values);  // accumulated gradient per value
  {
    const Value& loss = g.value(g.loss);
    grad[static_cast<size_t>(g.loss.v)] = fill(b, {}, 1.0, loss.type.dtype).id;
  }

  for (size_t i = n_nodes; i-- > 0;) {
    // Copy: emitting nodes below grows g.nodes and would invalidate a reference.
    const Node n = g.nodes[i];
    std::vector<ValueId> dout;
    bool flows = false;
    for (ValueId v : n.outputs) {
      dout.push_back(grad[static_cast<size_t>(v.v)]);
      flows = flows || dout.back().valid();
    }
    bool needed = false;
    for (ValueId v : n.inputs) needed = needed || depends[static_cast<size_t>(v.v)];
    if (!flows || !needed) continue;

    const OpDef& def = op_def(n.kind);
    if (def.backward == nullptr)
      throw InputError(fmt::format("gradients: the gradient must flow through {}, whose backward is not implemented "
                                   "(it is a backward-only helper; second-order gradients are not supported)",
                                   g.describe(n.id)));
    b.push_scope(n.scope);
    std::vector<ValueId> din = def.backward(b, n, dout);
    b.pop_scope();
    SY_CHECK(din.size() == n.inputs.size(), "{}: backward returned {} gradients for {} inputs", g.describe(n.id),
             din.size(), n.inputs.size());
    for (size_t k = 0; k < din.size(); ++k) {
      const ValueId in = n.inputs[k];
      if (!din[k].valid() || !depends[static_cast<size_t>(in.v)]) continue;
      SY_CHECK(g.type(din[k]) == g.type(in), "{}: gradient of input {} is {} but the input is {}", g.describe(n.id), k,
               to_string(g.type(din[k])), to_string(g.type(in)));
      ValueId& acc = grad[static_cast<size_t>(in.v)];
      if (!acc.valid()) {
        acc = din[k];
      } else {
        b.push_scope(n.scope);
        acc = (b.wrap(acc) + b.wrap(din[k])).id;
        b.pop_scope();
      }
    }
  }

  std::map<ValueId, ValueId> result;
  for (ValueId w : wrt) {
    ValueId gv = grad[static_cast<size_t>(w.v)];
    if (!gv.valid()) gv = fill(b, g.type(w).shape, 0.0, g.type(w).dtype).id;  // loss does not depend on w
    if (g.value(gv).grad_of.valid()) gv = scale(b.wrap(gv), 1.0).id;           // shared with another leaf: own copy
    g.value(gv).grad_of = w;
    b.output("grad/" + g.value(w).name, b.wrap(gv));
    result[w] = gv;
  }
  return result;
}

}  // namespace sy
