#include "graph/autodiff.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/op_def.hpp"

#include <algorithm>
#include <unordered_map>

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

// An einsum whose output rematerialisation keeps under Remat::dots: no batch dim (a dim both
// operands and the output have), as checkpoint_dots_with_no_batch_dims decides on dot_general.
bool dot_without_batch_dims(const Graph& g, const Node& n) {
  if (n.kind != OpKind::einsum) return false;
  for (const Dim& d : g.type(n.outputs[0]).shape)
    if (has_dim(g.type(n.inputs[0]).shape, d.name) && has_dim(g.type(n.inputs[1]).shape, d.name)) return false;
  return true;
}

// The recomputation of the rematerialised segments (Remat, autodiff.hpp): per segment, its forward
// nodes, and once the reverse walk reaches it, the recomputed copy of each forward value.
class Rematerialiser {
 public:
  Rematerialiser(const Graph& g, size_t n_nodes, Remat remat) : remat_(remat) {
    if (remat == Remat::none) return;
    for (size_t i = 0; i < n_nodes; ++i) {
      const std::string seg = remat_segment(g.nodes[i].scope);
      if (seg.empty()) continue;
      nodes_[seg].push_back(static_cast<int32_t>(i));
    }
  }

  // The node the backward function of forward node `n` sees: its inputs and outputs produced in
  // n's segment replaced by their recomputed copies, which are emitted first when the walk enters
  // the segment (`control`: the gradient arriving there).
  Node use(Builder& b, const Node& n, ValueId control) {
    if (remat_ == Remat::none) return n;
    const std::string seg = remat_segment(n.scope);
    if (seg.empty()) return n;
    auto& copies = copies_[seg];
    if (!entered_[seg]) {
      entered_[seg] = true;
      control_[seg] = control;
      recompute(b, seg, copies);
    }
    // Every forward value the backward function reads is its recomputed copy or, when kept (the
    // layer's inputs, parameters, kept dots), comes through the segment's barrier: no backward
    // node of the segment can run before the gradient reaches it.
    auto remap = [&](ValueId& v) {
      if (auto it = copies.find(v.v); it != copies.end()) v = it->second;
      else v = through_barrier(b, seg, v, n.scope);
    };
    Node u = n;
    for (ValueId& v : u.inputs) remap(v);
    for (ValueId& v : u.outputs) remap(v);
    return u;
  }

 private:
  // after(v, the gradient arriving at the segment), one per value and segment.
  ValueId through_barrier(Builder& b, const std::string& seg, ValueId v, const std::string& scope) {
    const ValueId control = control_[seg];
    if (!control.valid()) return v;
    ValueId& bar = barrier_[seg][v.v];
    if (!bar.valid()) {
      ScopeGuard guard(b, scope);
      bar = after(b.wrap(v), b.wrap(control)).id;
    }
    return bar;
  }

  void recompute(Builder& b, const std::string& seg, std::unordered_map<int32_t, ValueId>& copies) {
    Graph& g = b.graph();
    for (int32_t id : nodes_[seg]) {
      const Node f = g.nodes[static_cast<size_t>(id)];  // copy: emitting grows g.nodes
      if (remat_ == Remat::dots && dot_without_batch_dims(g, f)) continue;  // kept from the forward pass
      std::vector<ValueId> in;
      for (ValueId v : f.inputs) {
        auto it = copies.find(v.v);
        in.push_back(it != copies.end() ? it->second : through_barrier(b, seg, v, f.scope));
      }
      ScopeGuard scope(b, f.scope);
      const std::vector<Expr> outs = b.op(f.kind, f.attrs, in);
      for (size_t k = 0; k < outs.size(); ++k) copies[f.outputs[k].v] = outs[k].id;
    }
  }

  Remat remat_;
  std::map<std::string, std::vector<int32_t>> nodes_;  // forward nodes per segment, in order
  std::map<std::string, std::unordered_map<int32_t, ValueId>> copies_;
  std::map<std::string, bool> entered_;
  std::map<std::string, ValueId> control_;  // per segment: the gradient arriving there
  std::map<std::string, std::unordered_map<int32_t, ValueId>> barrier_;
};

}  // namespace

std::string remat_segment(const std::string& scope) {
  size_t start = 0;
  while (start < scope.size()) {
    size_t end = scope.find('/', start);
    if (end == std::string::npos) end = scope.size();
    if (scope.compare(start, 6, "layer_") == 0) return scope.substr(0, end);
    start = end + 1;
  }
  return {};
}

std::map<ValueId, ValueId> gradients(Graph& g, std::span<const ValueId> wrt_in, Remat remat) {
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
  Rematerialiser rematerialiser(g, n_nodes, remat);
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
    ValueId control;  // the gradient arriving at n: recomputation waits for it
    for (ValueId d : dout)
      if (!control.valid() && d.valid()) control = d;
    const Node use = rematerialiser.use(b, n, control);
    b.push_scope(n.scope);
    std::vector<ValueId> din = def.backward(b, use, dout);
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
