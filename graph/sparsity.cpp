#include "graph/sparsity.hpp"

#include <algorithm>

namespace sy {
namespace {

// Ops whose output is zero wherever their sparse input(s) are.
bool keeps_zeros(const Node& n, int sparse_inputs) {
  switch (n.kind) {
    case OpKind::einsum: return sparse_inputs == 2;
    case OpKind::mul:
    case OpKind::cast:
    case OpKind::transpose:
    case OpKind::reshape:
    case OpKind::broadcast:
      return true;
    case OpKind::scale: return std::get<ScaleAttrs>(n.attrs).offset == 0.0;
    default: return false;
  }
}

double elements(const Graph& g, ValueId v) { return static_cast<double>(num_elements(g.type(v).shape)); }

// The nonzero bound of n's output from its inputs' (see the header).
double output_nonzeros(const Graph& g, const Node& n, const std::vector<bool>& sparse, const std::vector<double>& nnz) {
  auto nz = [&](ValueId v) { return nnz[static_cast<size_t>(v.v)]; };
  auto is_sparse = [&](ValueId v) { return static_cast<bool>(sparse[static_cast<size_t>(v.v)]); };
  const ValueId y = n.outputs.at(0);
  double bound = elements(g, y);
  if (n.kind == OpKind::one_hot) {
    bound = elements(g, n.inputs.at(0));
  } else if (n.kind == OpKind::einsum) {
    const Shape& p = g.type(n.inputs[0]).shape;
    const Shape& q = g.type(n.inputs[1]).shape;
    double shared = 1;
    for (const Dim& d : p)
      if (has_dim(q, d.name)) shared *= static_cast<double>(d.size);
    bound = nz(n.inputs[0]) * nz(n.inputs[1]) / shared;
  } else if (n.kind == OpKind::broadcast) {
    bound = nz(n.inputs[0]) * elements(g, y) / elements(g, n.inputs[0]);
  } else {  // mul, cast, transpose, reshape, scale: the fewest of the sparse inputs'
    for (ValueId v : n.inputs)
      if (is_sparse(v)) bound = std::min(bound, nz(v));
  }
  return std::min(bound, elements(g, y));
}

}  // namespace

std::vector<bool> graph_outputs_kept(const Graph& g) {
  std::vector<bool> kept(g.values.size(), false);
  for (const GraphOutput& o : g.outputs) kept[static_cast<size_t>(o.value.v)] = true;
  if (g.loss.valid()) kept[static_cast<size_t>(g.loss.v)] = true;
  return kept;
}

SparsityPlan plan_sparsity(const Graph& g, const std::vector<bool>& kept) {
  const size_t nv = g.values.size();
  SparsityPlan p;
  p.maybe_sparse.assign(nv, false);
  p.mask.assign(g.nodes.size(), ValueId{});
  p.nonzeros.resize(nv);
  for (size_t v = 0; v < nv; ++v) p.nonzeros[v] = static_cast<double>(num_elements(g.values[v].type.shape));
  std::vector<int> readers(nv, 0);
  std::vector<NodeId> reader(nv);
  for (const Node& n : g.nodes) {
    int sparse_in = 0;
    for (ValueId v : n.inputs) {
      sparse_in += p.maybe_sparse[static_cast<size_t>(v.v)] ? 1 : 0;
      ++readers[static_cast<size_t>(v.v)];
      reader[static_cast<size_t>(v.v)] = n.id;
    }
    const bool out_sparse = n.kind == OpKind::one_hot || (sparse_in > 0 && keeps_zeros(n, sparse_in));
    if (out_sparse && n.outputs.size() == 1 && is_float(g.type(n.outputs[0]).dtype)) {
      const auto y = static_cast<size_t>(n.outputs[0].v);
      p.maybe_sparse[y] = true;
      p.nonzeros[y] = output_nonzeros(g, n, p.maybe_sparse, p.nonzeros);
    }
  }
  // Masked outputs: an einsum without sparse operands whose output reaches exactly one einsum
  // (through casts with one reader each) whose other operand may be sparse and exists by then.
  for (const Node& n : g.nodes) {
    if (n.kind != OpKind::einsum || n.outputs.size() != 1) continue;
    if (p.maybe_sparse[static_cast<size_t>(n.inputs[0].v)] || p.maybe_sparse[static_cast<size_t>(n.inputs[1].v)]) continue;
    ValueId v = n.outputs[0];
    const Shape& shape = g.type(v).shape;
    while (!kept[static_cast<size_t>(v.v)] && readers[static_cast<size_t>(v.v)] == 1) {
      const Node& r = g.node(reader[static_cast<size_t>(v.v)]);
      if (r.kind == OpKind::cast) {
        v = r.outputs[0];
        continue;
      }
      if (r.kind == OpKind::einsum && r.inputs[0] != r.inputs[1]) {
        const ValueId other = r.inputs[0] == v ? r.inputs[1] : r.inputs[0];
        const Value& ov = g.value(other);
        const bool ready = ov.role != ValueRole::computed || ov.producer.v < n.id.v;
        if (p.maybe_sparse[static_cast<size_t>(other.v)] && ready && g.type(v).shape == shape)
          p.mask[static_cast<size_t>(n.id.v)] = other;
      }
      break;
    }
  }
  // A masked output is zero outside the mask's rows, and so are the casts of it on the way to its
  // reader.
  for (const Node& n : g.nodes) {
    const ValueId m = p.mask[static_cast<size_t>(n.id.v)];
    if (!m.valid()) continue;
    ValueId v = n.outputs[0];
    double free = 1;  // out's elements per nonzero of the mask
    for (const Dim& d : g.type(v).shape)
      if (!has_dim(g.type(m).shape, d.name)) free *= static_cast<double>(d.size);
    const double bound = std::min(p.nonzeros[static_cast<size_t>(m.v)] * free, elements(g, v));
    p.maybe_sparse[static_cast<size_t>(v.v)] = true;
    p.nonzeros[static_cast<size_t>(v.v)] = bound;
    while (readers[static_cast<size_t>(v.v)] == 1 && g.node(reader[static_cast<size_t>(v.v)]).kind == OpKind::cast) {
      v = g.node(reader[static_cast<size_t>(v.v)]).outputs[0];
      p.maybe_sparse[static_cast<size_t>(v.v)] = true;
      p.nonzeros[static_cast<size_t>(v.v)] = bound;
    }
  }
  // Deferrable: may be sparse, large enough to scan (kMinSparse), not a graph output, read (at
  // least once) and only by kinds with a sparse path.
  p.deferrable.assign(nv, false);
  std::vector<bool> sparse_readers(nv, true);
  for (const Node& n : g.nodes)
    for (ValueId v : n.inputs)
      if (n.kind != OpKind::einsum && n.kind != OpKind::cast && n.kind != OpKind::reduce_sum)
        sparse_readers[static_cast<size_t>(v.v)] = false;
  for (size_t v = 0; v < nv; ++v)
    p.deferrable[v] = p.maybe_sparse[v] && num_elements(g.values[v].type.shape) >= kMinSparse && !kept[v] &&
                      readers[v] > 0 && sparse_readers[v];
  return p;
}

}  // namespace sy
