// Lowering (see lower.hpp for the rules): lower() emits the Planner's decisions
// (planner.hpp) for every node as the nodes of one device's program.
#include "graph/parallel/lower.hpp"

#include "graph/parallel/planner.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <string_view>
#include <unordered_map>

namespace sy {

bool is_collective(OpKind k) {
  switch (k) {
#define SY_OP(kind, attrs, family) \
  case OpKind::kind: return std::string_view(#family) == "collective";
#include "graph/op_kinds.def"
#undef SY_OP
  }
  return false;
}

using namespace lowering;

Lowered lower(const Graph& g, const Mesh& mesh, const Layout& layout, const LowerOptions& opts) {
  check_layout(g, mesh, layout);
  const Compiled c = compile(g);
  Planner pl(c, mesh, opts);
  pl.set_layout(layout);

  Lowered L;
  L.mesh = mesh;
  L.layout = layout;
  Builder b(L.graph);
  L.value_of.assign(g.values.size(), ValueId{});
  auto note_value = [&](ValueId lowered, const Shape& global, const Sharding& s) {
    if (L.global_shape.size() <= static_cast<size_t>(lowered.v)) {
      L.global_shape.resize(static_cast<size_t>(lowered.v) + 1);
      L.sharding.resize(static_cast<size_t>(lowered.v) + 1);
    }
    L.global_shape[static_cast<size_t>(lowered.v)] = global;
    L.sharding[static_cast<size_t>(lowered.v)] = s;
  };
  auto note_nodes = [&](NodeId origin) {
    while (L.origin.size() < L.graph.nodes.size()) L.origin.push_back(origin);
  };
  auto lowered_of = [&](int32_t id, const Sharding& s) -> int32_t {
    for (const auto& [have, low] : pl.variants[static_cast<size_t>(id)])
      if (have == s) return low;
    SY_CHECK(false, "lower: value {} is not available as {}", id, describe_sharding(g.type(ValueId{id}).shape, s, mesh));
    return -1;
  };

  // Emits the steps of a value; returns the lowered ids after each step.
  auto emit_steps = [&](int32_t gid, int32_t from_id, const Sharding& from, const StepList& steps, bool f32,
                        NodeId origin) {
    std::vector<int32_t> ids;
    const CValue& v = c.values[static_cast<size_t>(gid)];
    const Shape& global = g.type(ValueId{gid}).shape;
    auto dim = [&](int8_t p) { return global[static_cast<size_t>(p)].name; };
    Expr x = b.wrap(ValueId{from_id});
    Sharding s = from;
    for (int i = 0; i < steps.n; ++i) {
      const Step& st = steps.s[static_cast<size_t>(i)];
      const auto ax = axes_of(st.axes, mesh);
      const bool reduction = st.kind == OpKind::all_reduce || st.kind == OpKind::reduce_scatter;
      const DType orig = x.dtype();
      if (reduction && f32 && orig != DType::f32) {
        x = cast(x, DType::f32);
        note_value(x.id, global, s);
      }
      const ReduceOp op = st.reduce;
      if (st.kind == OpKind::all_gather) x = all_gather(x, ax, dim(st.gather_pos));
      if (st.kind == OpKind::all_to_all) x = all_to_all(x, ax, dim(st.gather_pos), dim(st.scatter_pos));
      if (st.kind == OpKind::shard_slice) x = shard_slice(x, ax, dim(st.scatter_pos));
      if (st.kind == OpKind::all_reduce) x = all_reduce(x, ax, op);
      if (st.kind == OpKind::reduce_scatter) x = reduce_scatter(x, ax, dim(st.scatter_pos), op);
      s = pl.apply(s, st);
      note_value(x.id, global, s);
      if (st.kind != OpKind::shard_slice)
        L.collectives.push_back(CollectiveRecord{NodeId{static_cast<int32_t>(L.graph.nodes.size() - 1)}, origin,
                                                 pl.reason(st, v)});
      if (reduction && f32 && orig != DType::f32) {
        note_nodes(origin);
        x = cast(x, orig);
        note_value(x.id, global, s);
      }
      note_nodes(origin);
      ids.push_back(x.id.v);
    }
    return ids;
  };

  // Leaves.
  for (const Value& v : g.values) {
    if (v.role == ValueRole::computed) continue;
    const Sharding s = pl.leaf_sharding(v.id.v);
    const Shape local = local_shape(v.type.shape, s, mesh);
    Expr e = v.role == ValueRole::input ? b.input(v.name, local, v.type.dtype) : b.parameter(v.name, local, v.type.dtype);
    note_value(e.id, v.type.shape, s);
    pl.primary[static_cast<size_t>(v.id.v)] = s;
    pl.add_variant(v.id.v, s, e.id.v);
    L.value_of[static_cast<size_t>(v.id.v)] = e.id;
  }

  for (const Node& n : g.nodes) {
    const CNode& cn = c.nodes[static_cast<size_t>(n.id.v)];
    const NodePlan& p = pl.plan_node(cn);
    b.set_backward(n.backward);
    ScopeGuard scope(b, n.scope);
    std::array<std::vector<int32_t>, kMaxIn> in_ids;
    std::vector<ValueId> inputs;
    for (int k = 0; k < cn.nin; ++k) {
      const auto ks = static_cast<size_t>(k);
      const int32_t from = lowered_of(cn.in[ks], p.in_from[ks]);
      in_ids[ks] = emit_steps(cn.in[ks], from, p.in_from[ks], p.in_steps[ks], false, n.id);
      inputs.push_back(ValueId{in_ids[ks].empty() ? from : in_ids[ks].back()});
    }
    const Shape local_out = cn.nout > 0 ? local_shape(g.type(n.outputs[0]).shape, p.computed[0], mesh) : Shape{};
    std::vector<Expr> outs;
    try {
      outs = b.op(n.kind, op_def(n.kind).local_attrs(n.attrs, local_out), inputs);
    } catch (const InputError& e) {
      throw InternalError(fmt::format("lower: {} does not run on its local blocks: {}", g.describe(n.id), e.what()));
    }
    note_nodes(n.id);
    std::array<std::vector<int32_t>, kMaxOut> out_ids;
    for (int o = 0; o < cn.nout; ++o) {
      const auto os = static_cast<size_t>(o);
      const Shape& global = g.type(n.outputs[os]).shape;
      SY_CHECK(outs[os].shape() == local_shape(global, p.computed[os], mesh), "lower: {} output {} is {}, expected {}",
               g.describe(n.id), o, to_string(outs[os].type()), describe_sharding(global, p.computed[os], mesh));
      note_value(outs[os].id, global, p.computed[os]);
      out_ids[os] = emit_steps(cn.out[os], outs[os].id.v, p.computed[os], p.out_steps[os], p.f32_reduce, n.id);
      if (out_ids[os].empty()) out_ids[os].push_back(outs[os].id.v);
      L.value_of[static_cast<size_t>(n.outputs[os].v)] = ValueId{out_ids[os].back()};
      if (const ValueId p = g.value(n.outputs[os]).grad_of; p.valid() && g.value(p).role == ValueRole::parameter)
        L.graph.value(ValueId{out_ids[os].back()}).grad_of = L.value_of[static_cast<size_t>(p.v)];
    }
    pl.record(cn, p, &in_ids, &out_ids);
  }

  // Graph outputs; gradients end split like their parameters.
  b.set_backward(true);
  for (const GraphOutput& o : g.outputs) {
    const int32_t gid = o.value.v;
    ValueId lowered = L.value_of[static_cast<size_t>(gid)];
    const Value& v = g.value(o.value);
    if (v.grad_of.valid() && g.value(v.grad_of).role == ValueRole::parameter) {
      const Sharding want = pl.primary[static_cast<size_t>(v.grad_of.v)];
      const Sharding from = pl.primary[static_cast<size_t>(gid)];
      StepList steps;
      pl.reshard(c.values[static_cast<size_t>(gid)], from, want, v.type.dtype, steps);
      if (steps.n > 0) {
        const NodeId origin = v.producer;
        ScopeGuard scope(b, origin.valid() ? g.node(origin).scope : std::string());
        const auto ids = emit_steps(gid, lowered.v, from, steps, false, origin);
        lowered = ValueId{ids.back()};
      }
      L.graph.value(lowered).grad_of = L.value_of[static_cast<size_t>(v.grad_of.v)];
    }
    b.output(o.name, b.wrap(lowered));
  }
  if (g.loss.valid()) L.graph.loss = L.value_of[static_cast<size_t>(g.loss.v)];
  SY_CHECK(L.origin.size() == L.graph.nodes.size(), "lower: {} origins for {} nodes", L.origin.size(), L.graph.nodes.size());
  return L;
}
}  // namespace sy
