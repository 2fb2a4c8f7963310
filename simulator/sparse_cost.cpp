#include "simulator/sparse_cost.hpp"

#include <algorithm>

namespace sy {
namespace {

constexpr double kEntryBytes = 12;  // a nonzero in a list: int64 index + f32 value

struct Values {
  const Graph& g;
  const SparsityPlan& plan;
  double elements(ValueId v) const { return static_cast<double>(num_elements(g.type(v).shape)); }
  double bytes(ValueId v) const { return elements(v) * static_cast<double>(dtype_bytes(g.type(v).dtype)); }
  double nnz(ValueId v) const { return plan.nonzeros[static_cast<size_t>(v.v)]; }
  // What the executor's count would find: sparse enough to take a sparse path.
  bool sparse(ValueId v) const {
    const double n = elements(v);
    return plan.maybe_sparse[static_cast<size_t>(v.v)] && n >= static_cast<double>(kMinSparse) && nnz(v) <= n / 4;
  }
  bool deferred(ValueId v) const { return plan.deferrable[static_cast<size_t>(v.v)] && sparse(v); }
  // Writing v: its list when deferred, else its dense buffer.
  double written(ValueId v) const { return deferred(v) ? kEntryBytes * nnz(v) : bytes(v); }
};

OpCost einsum_cost(const Values& V, const Node& n, const OpCost& dense_cost) {
  const Graph& g = V.g;
  const ValueId a = n.inputs.at(0), b = n.inputs.at(1), y = n.outputs.at(0);
  const Shape& as = g.type(a).shape;
  const Shape& ys = g.type(y).shape;
  double summed = 1;
  for (const Dim& d : as)
    if (!has_dim(ys, d.name)) summed *= static_cast<double>(d.size);
  const double dense = V.elements(y) * summed;
  OpCost c = dense_cost;
  if (const ValueId m = V.plan.mask[static_cast<size_t>(n.id.v)]; m.valid()) {
    if (!V.sparse(m)) return dense_cost;
    double free = 1;
    for (const Dim& d : ys)
      if (!has_dim(g.type(m).shape, d.name)) free *= static_cast<double>(d.size);
    const double macs = V.nnz(m) * free * summed;
    if ((macs + (V.deferred(y) ? 0.0 : V.elements(y))) * kDenseAdvantage > dense) return dense_cost;
    c.flops = 2 * macs;
    c.bytes_read = V.bytes(a) + V.bytes(b) + kEntryBytes * V.nnz(m);
    c.bytes_written = V.written(y);
    return c;
  }
  if (V.sparse(a) && V.sparse(b) && a != b && V.nnz(y) <= dense / kDenseAdvantage) {
    c.flops = 2 * V.nnz(y);
    c.bytes_read = kEntryBytes * (V.nnz(a) + V.nnz(b));
    c.bytes_written = V.written(y);
    return c;
  }
  double best = dense / kDenseAdvantage;
  int pick = -1;
  for (int i = 0; i < 2; ++i) {
    const ValueId p = i == 0 ? a : b, q = i == 0 ? b : a;
    if (!V.sparse(p)) continue;
    const double row = V.elements(q) / [&] {  // q's elements per p entry: q's dims not in p
      double shared = 1;
      for (const Dim& d : g.type(q).shape)
        if (has_dim(g.type(p).shape, d.name)) shared *= static_cast<double>(d.size);
      return shared;
    }();
    const double work = V.nnz(p) * row + V.elements(y);
    if (work < best) {
      best = work;
      pick = i;
      c.flops = 2 * V.nnz(p) * row;
      c.bytes_read = kEntryBytes * V.nnz(p) + V.bytes(q);
      c.bytes_written = V.bytes(y);
    }
  }
  return pick < 0 ? dense_cost : c;
}

}  // namespace

OpCost sparse_cost(const Graph& g, const Node& n, const SparsityPlan& plan, const OpCost& dense) {
  if (n.outputs.empty() || n.inputs.empty()) return dense;
  const Values V{g, plan};
  const ValueId x = n.inputs[0], y = n.outputs[0];
  OpCost c = dense;
  switch (n.kind) {
    case OpKind::einsum: return n.inputs.size() == 2 ? einsum_cost(V, n, dense) : dense;
    case OpKind::one_hot:
      if (!V.deferred(y)) return dense;
      c.bytes_written = V.written(y);
      return c;
    case OpKind::cast:
      if (!plan.maybe_sparse[static_cast<size_t>(y.v)] || !V.sparse(x)) return dense;
      c.bytes_read = kEntryBytes * V.nnz(x);
      c.bytes_written = V.written(y);
      return c;
    case OpKind::reduce_sum:
      if (!V.deferred(x)) return dense;
      c.flops = V.nnz(x);
      c.bytes_read = kEntryBytes * V.nnz(x);
      return c;
    default: return dense;
  }
}

}  // namespace sy
