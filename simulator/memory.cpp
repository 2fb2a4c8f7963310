#include "simulator/memory.hpp"

#include "graph/error.hpp"
#include "graph/models/training_graph.hpp"

#include <algorithm>
#include <queue>

namespace sy {
namespace {

// Nodes writing the new parameter or optimizer state (in place of the old).
bool is_update(OpKind k) {
  return k == OpKind::adafactor_update || k == OpKind::adafactor_moment || k == OpKind::adamw_update;
}

bool in_optimizer_scope(const std::string& scope) { return scope == "optimizer" || scope.starts_with("optimizer/"); }

}  // namespace

std::vector<int32_t> eager_update_order(const Graph& g) {
  std::vector<int32_t> order;
  order.reserve(g.nodes.size());
  std::vector<int32_t> missing(g.nodes.size(), 0);  // optimizer nodes: inputs not yet computed
  std::vector<std::vector<int32_t>> optimizer_readers(g.values.size());
  for (const Node& n : g.nodes) {
    if (!in_optimizer_scope(n.scope)) continue;
    for (ValueId v : n.inputs)
      if (g.value(v).producer.valid()) {
        ++missing[static_cast<size_t>(n.id.v)];
        optimizer_readers[static_cast<size_t>(v.v)].push_back(n.id.v);
      }
  }
  std::priority_queue<int32_t, std::vector<int32_t>, std::greater<>> ready;  // optimizer nodes, by program order
  std::vector<char> emitted(g.nodes.size(), 0);
  auto emit = [&](int32_t id) {
    emitted[static_cast<size_t>(id)] = 1;
    order.push_back(id);
    for (ValueId v : g.nodes[static_cast<size_t>(id)].outputs)
      for (int32_t r : optimizer_readers[static_cast<size_t>(v.v)])
        if (--missing[static_cast<size_t>(r)] == 0) ready.push(r);
  };
  for (const Node& n : g.nodes)  // reading only leaves (the clip scale without clipping, lr): ready at once
    if (in_optimizer_scope(n.scope) && missing[static_cast<size_t>(n.id.v)] == 0) ready.push(n.id.v);
  for (const Node& n : g.nodes) {
    while (!ready.empty()) {
      const int32_t r = ready.top();
      ready.pop();
      if (!emitted[static_cast<size_t>(r)]) emit(r);
    }
    if (!in_optimizer_scope(n.scope)) emit(n.id.v);
  }
  while (!ready.empty()) {
    const int32_t r = ready.top();
    ready.pop();
    if (!emitted[static_cast<size_t>(r)]) emit(r);
  }
  SY_CHECK(order.size() == g.nodes.size(), "eager_update_order: {} of {} nodes ordered", order.size(), g.nodes.size());
  return order;
}

MemoryModel::MemoryModel(const Graph& g, std::span<const int32_t> order, std::vector<double> weights) {
  if (weights.empty()) weights.assign(g.nodes.size(), 1.0);
  SY_CHECK(weights.size() == g.nodes.size(), "MemoryModel: {} weights for {} nodes", weights.size(), g.nodes.size());
  const size_t nv = g.values.size();
  kind_.assign(nv, Kind::transient);
  weight_.assign(nv, 1.0);
  std::vector<int32_t> readers(nv, 0);  // per value: node inputs reading it (graph outputs: +1, never freed)
  std::vector<char> read_by_backward(nv, 0);
  std::vector<double> first_reader(nv, -1.0);  // weight of the first node reading each value
  for (const Node& n : g.nodes)
    for (ValueId v : n.inputs) {
      const auto i = static_cast<size_t>(v.v);
      ++readers[i];
      if (n.backward) read_by_backward[i] = 1;
      if (first_reader[i] < 0) first_reader[i] = weights[static_cast<size_t>(n.id.v)];
    }
  for (const GraphOutput& o : g.outputs) ++readers[static_cast<size_t>(o.value.v)];
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
    if (kind_[i] == Kind::parameter || kind_[i] == Kind::optimizer || kind_[i] == Kind::input)
      persistent_.push_back(static_cast<int32_t>(i));
  }

  std::vector<int32_t> eager;
  if (order.empty()) {
    eager = eager_update_order(g);
    order = eager;
  }
  SY_CHECK(order.size() == g.nodes.size(), "MemoryModel: an order of {} nodes for {}", order.size(), g.nodes.size());
  auto live = [&](ValueId v) { return kind_[static_cast<size_t>(v.v)] <= Kind::transient; };
  for (int32_t id : order) {
    const Node& n = g.node(NodeId{id});
    bool wrote = false;
    for (ValueId v : n.outputs)
      if (live(v)) events_.push_back(2 * v.v), wrote = true;
    // Without a write the live bytes only fell since the last op that wrote: no new peak.
    if (wrote || events_.empty()) events_.push_back(-1 - id);
    for (ValueId v : n.inputs)
      if (--readers[static_cast<size_t>(v.v)] == 0 && live(v)) events_.push_back(2 * v.v + 1);
    for (ValueId v : n.outputs)
      if (readers[static_cast<size_t>(v.v)] == 0 && live(v)) events_.push_back(2 * v.v + 1);  // written, never read
  }
}

MemoryUse MemoryModel::evaluate(std::span<const double> bytes, double capacity) const {
  SY_CHECK(bytes.size() == kind_.size(), "MemoryModel: {} sizes for {} values", bytes.size(), kind_.size());
  MemoryUse m;
  m.capacity = capacity;
  for (int32_t v : persistent_) {
    const auto i = static_cast<size_t>(v);
    const double b = bytes[i] * weight_[i];
    if (kind_[i] == Kind::parameter) m.parameters += b;
    if (kind_[i] == Kind::optimizer) m.optimizer += b;
    if (kind_[i] == Kind::input) m.inputs += bytes[i];
  }
  // Live bytes by kind (activation, gradient, transient) while walking the events; the split at
  // the peak is kept.
  double live[3] = {0, 0, 0};
  double peak = -1;
  for (int32_t e : events_) {
    if (e < 0) {
      const double total = live[0] + live[1] + live[2];
      if (total > peak) {
        peak = total;
        m.peak_node = -1 - e;
        m.activations = live[0], m.gradients = live[1], m.transient = live[2];
      }
      continue;
    }
    const auto i = static_cast<size_t>(e >> 1);
    const double b = bytes[i] * weight_[i];
    live[static_cast<size_t>(kind_[i])] += (e & 1) ? -b : b;
  }
  return m;
}

}  // namespace sy
