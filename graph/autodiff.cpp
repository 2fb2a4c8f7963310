#include "graph/autodiff.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/op_def.hpp"

#include <algorithm>

namespace sy {

namespace {

// Backward functions emit the gradient of every input; those of inputs that need none (targets,
// constants) are dead. Removes the nodes appended from `first` on whose outputs nothing reads,
// renumbering the values and nodes after them (only appended ones, from `first_value` on, so
// forward ids never change).
void remove_dead_nodes(Graph& g, size_t first, size_t first_value, std::map<ValueId, ValueId>& result) {
  std::vector<char> used(g.values.size(), 0);
  for (const GraphOutput& o : g.outputs) used[static_cast<size_t>(o.value.v)] = 1;
  if (g.loss.valid()) used[static_cast<size_t>(g.loss.v)] = 1;
  std::vector<char> keep(g.nodes.size(), 1);
  for (size_t i = g.nodes.size(); i-- > first;) {
    const Node& n = g.nodes[i];
    bool live = false;
    for (ValueId v : n.outputs) live = live || used[static_cast<size_t>(v.v)];
    keep[i] = live;
    if (live)
      for (ValueId v : n.inputs) used[static_cast<size_t>(v.v)] = 1;
  }
  if (std::all_of(keep.begin(), keep.end(), [](char k) { return k; })) return;

  std::vector<int32_t> value_map(g.values.size()), node_map(g.nodes.size(), -1);
  for (size_t v = 0; v < first_value; ++v) value_map[v] = static_cast<int32_t>(v);
  std::deque<Value> values(g.values.begin(), g.values.begin() + static_cast<std::ptrdiff_t>(first_value));
  std::deque<Node> nodes(g.nodes.begin(), g.nodes.begin() + static_cast<std::ptrdiff_t>(first));
  for (size_t i = 0; i < first; ++i) node_map[i] = static_cast<int32_t>(i);
  for (size_t i = first; i < g.nodes.size(); ++i) {
    if (!keep[i]) continue;
    Node n = g.nodes[i];
    n.id = NodeId{static_cast<int32_t>(nodes.size())};
    node_map[i] = n.id.v;
    for (ValueId& v : n.inputs) v = ValueId{value_map[static_cast<size_t>(v.v)]};
    for (ValueId& v : n.outputs) {
      Value val = g.values[static_cast<size_t>(v.v)];
      val.id = ValueId{static_cast<int32_t>(values.size())};
      val.producer = n.id;
      value_map[static_cast<size_t>(v.v)] = val.id.v;
      v = val.id;
      values.push_back(std::move(val));
    }
    nodes.push_back(std::move(n));
  }
  g.values = std::move(values);
  g.nodes = std::move(nodes);
  for (GraphOutput& o : g.outputs) o.value = ValueId{value_map[static_cast<size_t>(o.value.v)]};
  for (auto& [w, gv] : result) gv = ValueId{value_map[static_cast<size_t>(gv.v)]};
}

}  // namespace

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
    if (loss.producer.valid()) b.push_scope(g.node(loss.producer).scope);
    grad[static_cast<size_t>(g.loss.v)] = fill(b, {}, 1.0, loss.type.dtype).id;
    if (loss.producer.valid()) b.pop_scope();
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
  remove_dead_nodes(g, n_nodes, n_values, result);
  return result;
}

}  // namespace sy
