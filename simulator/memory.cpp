#include "simulator/memory.hpp"

#include "graph/error.hpp"
#include "graph/models/training_graph.hpp"

#include <algorithm>

namespace sy {
namespace {

bool is_update(OpKind k) { return k == OpKind::adafactor_update || k == OpKind::adamw_update; }

}  // namespace

MemoryModel::MemoryModel(const Graph& g, std::vector<double> weights) : g_(g) {
  if (weights.empty()) weights.assign(g.nodes.size(), 1.0);
  SY_CHECK(weights.size() == g.nodes.size(), "MemoryModel: {} weights for {} nodes", weights.size(), g.nodes.size());
  const size_t nv = g.values.size();
  kind_.assign(nv, Kind::transient);
  weight_.assign(nv, 1.0);
  readers_.assign(nv, 0);
  std::vector<char> read_by_backward(nv, 0);
  std::vector<double> first_reader(nv, -1.0);  // weight of the first node reading each value
  for (const Node& n : g.nodes)
    for (ValueId v : n.inputs) {
      const auto i = static_cast<size_t>(v.v);
      ++readers_[i];
      if (n.backward) read_by_backward[i] = 1;
      if (first_reader[i] < 0) first_reader[i] = weights[static_cast<size_t>(n.id.v)];
    }
  for (const GraphOutput& o : g.outputs) ++readers_[static_cast<size_t>(o.value.v)];
  for (const Value& v : g.values) {
    const auto i = static_cast<size_t>(v.id.v);
    if (v.role == ValueRole::parameter) {
      kind_[i] = Kind::parameter, weight_[i] = first_reader[i] < 0 ? 1.0 : first_reader[i];
    } else if (v.role == ValueRole::input && is_optimizer_state(v.name)) {
      kind_[i] = Kind::optimizer, weight_[i] = first_reader[i] < 0 ? 1.0 : first_reader[i];
    } else if (v.role == ValueRole::input) {
      kind_[i] = Kind::input;
    } else {
      const Node& p = g.node(v.producer);
      const double w = weights[static_cast<size_t>(p.id.v)];
      if (is_update(p.kind)) {
        kind_[i] = Kind::in_place;
      } else if (v.grad_of.valid() && g.value(v.grad_of).role == ValueRole::parameter) {
        kind_[i] = Kind::gradient, weight_[i] = w;
      } else if (read_by_backward[i] && !p.backward) {
        kind_[i] = Kind::activation, weight_[i] = w;
      }
    }
  }
  program_order_.resize(g.nodes.size());
  for (size_t i = 0; i < program_order_.size(); ++i) program_order_[i] = static_cast<int32_t>(i);
}

MemoryUse MemoryModel::evaluate(std::span<const double> bytes, std::span<const int32_t> order, double capacity) const {
  SY_CHECK(bytes.size() == g_.values.size(), "MemoryModel: {} sizes for {} values", bytes.size(), g_.values.size());
  MemoryUse m;
  m.capacity = capacity;
  for (const Value& v : g_.values) {
    const auto i = static_cast<size_t>(v.id.v);
    if (kind_[i] == Kind::parameter) m.parameters += bytes[i] * weight_[i];
    if (kind_[i] == Kind::optimizer) m.optimizer += bytes[i] * weight_[i];
    if (kind_[i] == Kind::input) m.inputs += bytes[i];
  }
  // Live bytes by kind while walking the schedule; the split at the peak is kept.
  double act = 0, grad = 0, other = 0, peak = -1;
  std::vector<int32_t> left(readers_);
  auto add = [&](ValueId v, double sign) {
    const auto i = static_cast<size_t>(v.v);
    const double b = sign * bytes[i] * weight_[i];
    switch (kind_[i]) {
      case Kind::activation: act += b; break;
      case Kind::gradient: grad += b; break;
      case Kind::transient: other += b; break;
      default: break;  // leaves are persistent; in-place outputs add nothing
    }
  };
  for (int32_t id : order) {
    const Node& n = g_.node(NodeId{id});
    for (ValueId v : n.outputs) add(v, +1);
    if (act + grad + other > peak) {
      peak = act + grad + other;
      m.activations = act, m.gradients = grad, m.transient = other;
    }
    for (ValueId v : n.inputs)
      if (--left[static_cast<size_t>(v.v)] == 0) add(v, -1);
    for (ValueId v : n.outputs)
      if (left[static_cast<size_t>(v.v)] == 0) add(v, -1);  // written, never read
  }
  return m;
}

}  // namespace sy
