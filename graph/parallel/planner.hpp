// Internal to graph/parallel/ (not an API): the compiled graph and the Planner that makes every
// lowering decision for one node. lower() (lower.cpp) emits those decisions as nodes and
// LoweringPlanner (lowering_planner.cpp) reports them with their costs; both read the same
// NodePlan, so the program the executor runs and the program the simulator prices agree.
#pragma once

#include "graph/parallel/lower.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <string_view>
#include <unordered_map>

namespace sy::lowering {


constexpr int kMaxRank = 8;
constexpr int kMaxIn = 8;   // optimizer updates: param, grad, 2 state slots, lr, step, clip scale
constexpr int kMaxOut = 4;  // optimizer updates: the new param and state
constexpr int kMaxSteps = 2 * static_cast<int>(kMaxMeshAxes);

using DimId = int16_t;
using AxisDims = std::array<DimId, kMaxMeshAxes>;  // per mesh axis: the dim it splits, or -1

inline AxisDims no_axes() {
  AxisDims a;
  a.fill(-1);
  return a;
}

// ---------------------------------------------------------------- the compiled graph

struct CValue {  // kept small: the planner reads one per operand of every node it plans
  double elems = 1;
  std::array<DimId, kMaxRank> dim{};
  int8_t rank = 0;
  DType dtype = DType::f32;
  bool leaf = false;
  bool feeds_grad = false;  // a partial sum here is (part of) a parameter gradient
  int pos(DimId d) const {
    for (int i = 0; i < rank; ++i)
      if (dim[static_cast<size_t>(i)] == d) return i;
    return -1;
  }
};

enum class Role : uint8_t { free, whole, summed };

struct CNode {
  OpKind kind = OpKind::add;
  int nin = 0, nout = 0;
  std::array<int32_t, kMaxIn> in{};
  std::array<int32_t, kMaxOut> out{};
  // Dims whose role is not `free` (inline: looked up for every dim of every plan).
  struct Roles {
    std::array<std::pair<DimId, Role>, 16> r{};
    int n = 0;
    void emplace_back(DimId d, Role role) {
      SY_CHECK(n < static_cast<int>(r.size()), "lower: a node with more than {} summed or whole dims", r.size());
      r[static_cast<size_t>(n++)] = {d, role};
    }
    const std::pair<DimId, Role>* begin() const { return r.data(); }
    const std::pair<DimId, Role>* end() const { return r.data() + n; }
  } roles;
  ReduceOp reduce = ReduceOp::sum;
  bool reshape = false;
  bool control = false;  // an optimization barrier (LoweringRoles::control)
  std::array<int8_t, kMaxRank> reshape_map{};  // input position -> output position (same prefix), or -1
  Role role(DimId d) const {
    for (const auto& [dim, r] : roles)
      if (dim == d) return r;
    return Role::free;
  }
};

struct Compiled {
  std::vector<std::string> dim_names;
  std::vector<CValue> values;
  std::vector<std::array<int64_t, kMaxRank>> sizes;  // per value: its dims' sizes
  std::vector<CNode> nodes;
  std::vector<std::pair<int32_t, int32_t>> grad_outputs;  // (graph output value, its parameter)
  // Distinct (dims, sizes) of the values, for fast legality checks.
  std::vector<int32_t> distinct_shapes;  // value ids, one per distinct shape
};

// The graph as small fixed-size records, dim names interned; the roles of every node's dims
// (compile.cpp).
Compiled compile(const Graph& g);

// ---------------------------------------------------------------- plans

// One resharding step of one value (positions are dims of that value).
struct Step {
  OpKind kind = OpKind::all_gather;  // all_gather, all_to_all, shard_slice, all_reduce, reduce_scatter
  uint32_t axes = 0;                 // bit per mesh axis
  int8_t gather_pos = -1;
  int8_t scatter_pos = -1;
  ReduceOp reduce = ReduceOp::sum;   // all_reduce, reduce_scatter
  double in_bytes = 0, in_elems = 0, out_bytes = 0;  // local, at the step's dtype
};

struct StepList {
  std::array<Step, kMaxSteps> s;
  int n = 0;
  void push(const Step& x) {
    SY_CHECK(n < kMaxSteps, "too many resharding steps");
    s[static_cast<size_t>(n++)] = x;
  }
};

struct NodePlan {
  AxisDims iter = no_axes();
  std::array<Sharding, kMaxIn> in_from{}, in_to{};
  std::array<StepList, kMaxIn> in_steps{};
  std::array<Sharding, kMaxOut> computed{};  // outputs as the op produces them
  std::array<Sharding, kMaxOut> final_{};    // after partial results are reduced and resharding
  std::array<StepList, kMaxOut> out_steps{};  // computed -> final (reductions first)
  bool f32_reduce = false;                    // the reductions of out_steps run in f32
  double comm_bytes = 0;
};

inline double local_factor(const Sharding& s, const std::array<int64_t, kMaxMeshAxes>& n, size_t axes) {
  double f = 1;
  for (size_t a = 0; a < axes; ++a)
    if (s.dim[a] >= 0) f *= static_cast<double>(n[a]);
  return f;
}

struct Planner {
  const Compiled& c;
  const Mesh& mesh;
  LowerOptions opts;
  size_t axes = 0;
  std::array<int64_t, kMaxMeshAxes> n{};
  std::vector<int16_t> rule_axis;  // per dim id: the axis of its rule, or -1
  // Per dim id: the axis a reshape carried a split onto (batch -> group), for dims without a
  // rule; from then on it acts as that dim's rule.
  std::vector<int16_t> derived_axis;

  // Per global value: its final sharding, and the shardings it is available in (with the
  // lowered value holding each, when emitting).
  std::vector<Sharding> primary;
  std::vector<std::vector<std::pair<Sharding, int32_t>>> variants;

  std::vector<uint64_t> divisible;  // per value: bit 8·i + a set when dim i divides over axis a

  Planner(const Compiled& comp, const Mesh& m, const LowerOptions& o) : c(comp), mesh(m), opts(o) {
    axes = m.axes.size();
    for (size_t a = 0; a < axes; ++a) n[a] = m.axes[a].size;
    divisible.resize(c.values.size());
    for (size_t v = 0; v < c.values.size(); ++v)
      for (int i = 0; i < c.values[v].rank; ++i)
        for (size_t a = 0; a < axes; ++a)
          if (c.sizes[v][static_cast<size_t>(i)] % n[a] == 0) divisible[v] |= uint64_t{1} << (8 * i + static_cast<int>(a));
  }
  bool divides(int32_t value, int i, int a) const {
    return (divisible[static_cast<size_t>(value)] >> (8 * i + a)) & 1u;
  }

  void set_layout(const Layout& layout) {
    rule_axis.assign(c.dim_names.size(), -1);
    derived_axis.assign(c.dim_names.size(), -1);
    for (size_t d = 0; d < c.dim_names.size(); ++d)
      if (const std::string* ax = layout.axis_of(c.dim_names[d])) rule_axis[d] = static_cast<int16_t>(*mesh.axis_index(*ax));
    primary.assign(c.values.size(), Sharding{});
    variants.resize(c.values.size());
    for (auto& v : variants) v.clear();
  }

  double bytes_of(const CValue& v, const Sharding& s, DType t) const {
    return v.elems * static_cast<double>(dtype_bytes(t)) / local_factor(s, n, axes);
  }

  // Leaves: split by their rules, outermost dim first.
  Sharding leaf_sharding(int32_t id) const {
    const CValue& v = c.values[static_cast<size_t>(id)];
    Sharding s;
    for (int i = 0; i < v.rank; ++i) {
      const int16_t a = rule_axis[static_cast<size_t>(v.dim[static_cast<size_t>(i)])];
      if (a >= 0 && s.dim[static_cast<size_t>(a)] < 0 && divides(id, i, a))
        s.dim[static_cast<size_t>(a)] = static_cast<int8_t>(i);
    }
    return s;
  }

  // Steps turning sharding `from` of value v into `to` (gathers and moves, then slices).
  void reshard(const CValue& v, const Sharding& from, const Sharding& to, DType t, StepList& out) const {
    if (from == to) return;
    Sharding cur = from;
    auto held_by_other = [&](size_t a, int8_t pos) {
      for (size_t b = 0; b < axes; ++b)
        if (b != a && cur.dim[b] == pos) return true;
      return false;
    };
    for (size_t a = 0; a < axes; ++a) {
      if (cur.dim[a] < 0 || cur.dim[a] == to.dim[a]) continue;
      Step st;
      st.axes = 1u << a;
      st.in_bytes = bytes_of(v, cur, t);
      st.in_elems = st.in_bytes / static_cast<double>(dtype_bytes(t));
      st.gather_pos = cur.dim[a];
      if (to.dim[a] >= 0 && !held_by_other(a, to.dim[a])) {
        st.kind = OpKind::all_to_all;
        st.scatter_pos = to.dim[a];
        cur.dim[a] = to.dim[a];
      } else {
        st.kind = OpKind::all_gather;
        cur.dim[a] = -1;
      }
      st.out_bytes = bytes_of(v, cur, t);
      out.push(st);
    }
    for (size_t a = 0; a < axes; ++a) {
      if (cur.dim[a] == to.dim[a]) continue;
      Step st;
      st.kind = OpKind::shard_slice;
      st.axes = 1u << a;
      st.in_bytes = bytes_of(v, cur, t);
      st.in_elems = st.in_bytes / static_cast<double>(dtype_bytes(t));
      st.scatter_pos = to.dim[a];
      cur.dim[a] = to.dim[a];
      st.out_bytes = bytes_of(v, cur, t);
      out.push(st);
    }
  }

  // The sharding an output wants (lower.hpp: rules, else inherited; outermost first).
  // The splits of a node's inputs as (dim, axis) pairs, first input first: what outputs inherit.
  struct Split {
    DimId dim;  // a dim id (a reshape's input: a position)
    int8_t axis;
  };
  struct Splits {
    std::array<Split, kMaxIn * kMaxMeshAxes> s;  // the first n are set
    int n = 0;
  };
  Splits splits_of(const CNode& cn, const std::array<Sharding, kMaxIn>& ins) const {
    Splits r;
    for (int k = 0; k < cn.nin; ++k) {
      const Sharding& sh = ins[static_cast<size_t>(k)];
      if (sh.replicated()) continue;
      const CValue& iv = c.values[static_cast<size_t>(cn.in[static_cast<size_t>(k)])];
      for (size_t ax = 0; ax < axes; ++ax)
        if (sh.dim[ax] >= 0)
          r.s[static_cast<size_t>(r.n++)] =
              Split{cn.reshape ? static_cast<DimId>(sh.dim[ax]) : iv.dim[static_cast<size_t>(sh.dim[ax])], static_cast<int8_t>(ax)};
    }
    return r;
  }

  Sharding wanted(const CNode& cn, int o, const Splits& in_splits) const {
    const CValue& v = c.values[static_cast<size_t>(cn.out[static_cast<size_t>(o)])];
    Sharding s;
    for (int i = 0; i < v.rank; ++i) {
      const DimId d = v.dim[static_cast<size_t>(i)];
      if (cn.role(d) == Role::whole) continue;
      int a = rule_axis[static_cast<size_t>(d)];
      if (a < 0) a = derived_axis[static_cast<size_t>(d)];
      // Inherited: an input splits the same-named dim (a reshape: the input dim with the same
      // row-major prefix; its splits are listed by input position).
      for (int k = 0; a < 0 && k < in_splits.n; ++k) {
        const Split& sp = in_splits.s[static_cast<size_t>(k)];
        if (cn.reshape ? cn.reshape_map[static_cast<size_t>(sp.dim)] == i : sp.dim == d) a = sp.axis;
      }
      if (a >= 0 && s.dim[static_cast<size_t>(a)] < 0 && divides(cn.out[static_cast<size_t>(o)], i, a))
        s.dim[static_cast<size_t>(a)] = static_cast<int8_t>(i);
    }
    return s;
  }

  Sharding restrict_to(const AxisDims& iter, const CValue& v) const {
    Sharding s;
    for (size_t a = 0; a < axes; ++a)
      if (iter[a] >= 0) s.dim[a] = static_cast<int8_t>(v.pos(iter[a]));
    return s;
  }

  bool assigned(const AxisDims& iter, DimId d) const {
    for (size_t a = 0; a < axes; ++a)
      if (iter[a] == d) return true;
    return false;
  }

  // The available sharding of value `id` closest to `to` (exact match first, else the primary).
  const Sharding& source_for(int32_t id, const Sharding& to) const {
    for (const auto& [s, lowered] : variants[static_cast<size_t>(id)])
      if (s == to) return s;
    return primary[static_cast<size_t>(id)];
  }

  double group(uint32_t mask) const {
    double g = 1;
    for (size_t a = 0; a < axes; ++a)
      if (mask & (1u << a)) g *= static_cast<double>(n[a]);
    return g;
  }

  double steps_bytes(const StepList& l) const {
    double b = 0;
    for (int i = 0; i < l.n; ++i) {
      const Step& st = l.s[static_cast<size_t>(i)];
      const OpCost cost = op_def(st.kind).collective_cost(group(st.axes), st.reduce, st.in_bytes, st.in_elems, st.out_bytes);
      b += cost.collective_bytes;
    }
    return b;
  }

  // Completes a plan for iteration `iter`: input reshards, partial reductions, output reshards.
  void complete(const CNode& cn, const AxisDims& iter, const std::array<Sharding, kMaxOut>& want, NodePlan& p) const {
    p.iter = iter;
    p.comm_bytes = 0;
    p.f32_reduce = false;
    for (int k = 0; k < cn.nin; ++k) {
      const auto ks = static_cast<size_t>(k);
      const CValue& iv = c.values[static_cast<size_t>(cn.in[ks])];
      p.in_to[ks] = restrict_to(iter, iv);
      p.in_from[ks] = source_for(cn.in[ks], p.in_to[ks]);
      p.in_steps[ks].n = 0;
      reshard(iv, p.in_from[ks], p.in_to[ks], iv.dtype, p.in_steps[ks]);
      p.comm_bytes += steps_bytes(p.in_steps[ks]);
    }
    for (int o = 0; o < cn.nout; ++o) {
      const auto os = static_cast<size_t>(o);
      const CValue& ov = c.values[static_cast<size_t>(cn.out[os])];
      p.out_steps[os].n = 0;
      p.computed[os] = restrict_to(iter, ov);
      // Partial results: axes iterating a summed dim.
      uint32_t partial = 0;
      for (size_t a = 0; a < axes; ++a)
        if (iter[a] >= 0 && cn.role(iter[a]) == Role::summed) partial |= 1u << a;
      Sharding s = p.computed[os];
      const bool f32 = opts.f32_gradient_reduce && ov.dtype == DType::bf16 && ov.feeds_grad && partial;
      p.f32_reduce = f32;
      const DType t = f32 ? DType::f32 : ov.dtype;
      uint32_t all_reduce_axes = 0;
      for (size_t a = 0; a < axes; ++a) {
        if (!(partial & (1u << a))) continue;
        const int8_t w = want[os].dim[a];
        bool free_dim = w >= 0 && cn.reduce != ReduceOp::max;
        for (size_t b = 0; b < axes && free_dim; ++b) free_dim = s.dim[b] != w;
        if (free_dim) {
          Step st;
          st.kind = OpKind::reduce_scatter;
          st.reduce = cn.reduce;
          st.axes = 1u << a;
          st.in_bytes = bytes_of(ov, s, t);
          st.in_elems = st.in_bytes / static_cast<double>(dtype_bytes(t));
          st.scatter_pos = w;
          s.dim[a] = w;
          st.out_bytes = bytes_of(ov, s, t);
          p.out_steps[os].push(st);
        } else {
          all_reduce_axes |= 1u << a;
        }
      }
      if (all_reduce_axes) {
        Step st;
        st.kind = OpKind::all_reduce;
        st.reduce = cn.reduce;
        st.axes = all_reduce_axes;
        st.in_bytes = st.out_bytes = bytes_of(ov, s, t);
        st.in_elems = st.in_bytes / static_cast<double>(dtype_bytes(t));
        p.out_steps[os].push(st);
      }
      reshard(ov, s, want[os], ov.dtype, p.out_steps[os]);
      p.final_[os] = want[os];
      p.comm_bytes += steps_bytes(p.out_steps[os]);
    }
  }

  mutable std::array<NodePlan, 2> scratch;  // the two candidates of plan_node

  const NodePlan& plan_node(const CNode& cn) const {
    std::array<Sharding, kMaxIn> cur{};
    for (int k = 0; k < cn.nin; ++k) cur[static_cast<size_t>(k)] = primary[static_cast<size_t>(cn.in[static_cast<size_t>(k)])];
    std::array<Sharding, kMaxOut> want{};
    const Splits in_splits = splits_of(cn, cur);
    for (int o = 0; o < cn.nout; ++o) want[static_cast<size_t>(o)] = wanted(cn, o, in_splits);

    if (cn.control) {  // an optimization barrier: every input as it is, the output as input 0
      NodePlan& p = scratch[0];
      p.iter = no_axes();
      p.comm_bytes = 0;
      p.f32_reduce = false;
      for (int k = 0; k < cn.nin; ++k) {
        const auto ks = static_cast<size_t>(k);
        p.in_to[ks] = p.in_from[ks] = cur[ks];
        p.in_steps[ks].n = 0;
      }
      p.computed[0] = p.final_[0] = cur[0];
      p.out_steps[0].n = 0;
      return p;
    }

    if (cn.reshape) {  // the input's splits carry over where the prefixes match; the others are gathered
      const CValue& iv = c.values[static_cast<size_t>(cn.in[0])];
      const CValue& ov = c.values[static_cast<size_t>(cn.out[0])];
      NodePlan& p = scratch[0];
      p.comm_bytes = 0;
      p.f32_reduce = false;
      p.in_to[0] = Sharding{};
      Sharding mapped;
      for (size_t a = 0; a < axes; ++a) {
        const int8_t pi = cur[0].dim[a];
        if (pi < 0) continue;
        const int8_t po = cn.reshape_map[static_cast<size_t>(pi)];
        if (po >= 0 && divides(cn.out[0], po, static_cast<int>(a))) {
          p.in_to[0].dim[a] = pi;
          mapped.dim[a] = po;
        }
      }
      p.in_from[0] = source_for(cn.in[0], p.in_to[0]);
      p.in_steps[0].n = 0;
      reshard(iv, p.in_from[0], p.in_to[0], iv.dtype, p.in_steps[0]);
      p.computed[0] = mapped;
      p.out_steps[0].n = 0;
      reshard(ov, mapped, want[0], ov.dtype, p.out_steps[0]);
      p.final_[0] = want[0];
      return p;
    }

    // Output-driven: as the outputs want, then summed dims an input splits on free axes.
    AxisDims out_iter = no_axes();
    for (int o = 0; o < cn.nout; ++o) {
      const CValue& ov = c.values[static_cast<size_t>(cn.out[static_cast<size_t>(o)])];
      for (size_t a = 0; a < axes; ++a) {
        const int8_t pos = want[static_cast<size_t>(o)].dim[a];
        if (pos >= 0 && out_iter[a] < 0 && !assigned(out_iter, ov.dim[static_cast<size_t>(pos)]))
          out_iter[a] = ov.dim[static_cast<size_t>(pos)];
      }
    }
    auto fill_from_inputs = [&](AxisDims& iter, bool summed_only) {
      for (int k = 0; k < cn.nin; ++k) {
        const CValue& iv = c.values[static_cast<size_t>(cn.in[static_cast<size_t>(k)])];
        for (size_t a = 0; a < axes; ++a) {
          const int8_t pos = cur[static_cast<size_t>(k)].dim[a];
          if (pos < 0 || iter[a] >= 0) continue;
          const DimId d = iv.dim[static_cast<size_t>(pos)];
          const Role r = cn.role(d);
          if (r == Role::whole || (summed_only && r != Role::summed) || assigned(iter, d)) continue;
          iter[a] = d;
        }
      }
    };
    fill_from_inputs(out_iter, true);
    complete(cn, out_iter, want, scratch[0]);

    // Input-driven: as the inputs are split, then free axes as the outputs want.
    AxisDims in_iter = no_axes();
    fill_from_inputs(in_iter, false);
    for (size_t a = 0; a < axes; ++a)
      if (in_iter[a] < 0 && out_iter[a] >= 0 && !assigned(in_iter, out_iter[a]) &&
          cn.role(out_iter[a]) != Role::summed)
        in_iter[a] = out_iter[a];
    if (in_iter != out_iter && scratch[0].comm_bytes > 0) {  // nothing beats moving nothing
      complete(cn, in_iter, want, scratch[1]);
      if (scratch[1].comm_bytes < scratch[0].comm_bytes) return scratch[1];
    }
    return scratch[0];
  }

  // Marks the shardings a plan makes available.
  void record(const CNode& cn, const NodePlan& p, const std::array<std::vector<int32_t>, kMaxIn>* in_ids,
              const std::array<std::vector<int32_t>, kMaxOut>* out_ids) {
    for (int k = 0; k < cn.nin; ++k) {
      const auto ks = static_cast<size_t>(k);
      const StepList& l = p.in_steps[ks];
      Sharding s = p.in_from[ks];
      for (int i = 0; i < l.n; ++i) {
        s = apply(s, l.s[static_cast<size_t>(i)]);
        add_variant(cn.in[ks], s, in_ids ? (*in_ids)[ks][static_cast<size_t>(i)] : -1);
      }
    }
    if (cn.reshape) {
      const CValue& ov = c.values[static_cast<size_t>(cn.out[0])];
      for (size_t a = 0; a < axes; ++a) {
        const int8_t pos = p.computed[0].dim[a];
        if (pos < 0) continue;
        const auto d = static_cast<size_t>(ov.dim[static_cast<size_t>(pos)]);
        if (rule_axis[d] < 0 && derived_axis[d] < 0) derived_axis[d] = static_cast<int16_t>(a);
      }
    }
    for (int o = 0; o < cn.nout; ++o) {
      const auto os = static_cast<size_t>(o);
      const int32_t id = cn.out[os];
      primary[static_cast<size_t>(id)] = p.final_[os];
      variants[static_cast<size_t>(id)].clear();
      add_variant(id, p.final_[os], out_ids ? (*out_ids)[os].back() : -1);
    }
  }

  Sharding apply(Sharding s, const Step& st) const {
    for (size_t a = 0; a < axes; ++a) {
      if (!(st.axes & (1u << a))) continue;
      if (st.kind == OpKind::all_gather) s.dim[a] = -1;
      if (st.kind == OpKind::all_to_all || st.kind == OpKind::shard_slice || st.kind == OpKind::reduce_scatter)
        s.dim[a] = st.scatter_pos;
    }
    return s;
  }

  void add_variant(int32_t id, const Sharding& s, int32_t lowered) {
    auto& v = variants[static_cast<size_t>(id)];
    for (auto& [have, low] : v)
      if (have == s) {
        if (lowered >= 0) low = lowered;
        return;
      }
    v.emplace_back(s, lowered);
  }

  std::string reason(const Step& st, const CValue& v) const {
    auto dim = [&](int8_t p) { return c.dim_names[static_cast<size_t>(v.dim[static_cast<size_t>(p)])]; };
    std::string ax;
    for (size_t a = 0; a < axes; ++a)
      if (st.axes & (1u << a)) ax += (ax.empty() ? "" : ",") + mesh.axes[a].name;
    if (st.kind == OpKind::all_gather) return fmt::format("gather {} (split over {})", dim(st.gather_pos), ax);
    if (st.kind == OpKind::all_to_all)
      return fmt::format("split over {} moves {} -> {}", ax, dim(st.gather_pos), dim(st.scatter_pos));
    if (st.kind == OpKind::shard_slice) return fmt::format("slice {} over {}", dim(st.scatter_pos), ax);
    return fmt::format("partial sums over {}{}", ax,
                       st.kind == OpKind::reduce_scatter ? fmt::format(", scattered along {}", dim(st.scatter_pos)) : "");
  }
};

inline std::vector<Dim> axes_of(uint32_t mask, const Mesh& mesh) {
  std::vector<Dim> r;
  for (size_t a = 0; a < mesh.axes.size(); ++a)
    if (mask & (1u << a)) r.push_back(Dim{mesh.axes[a].name, mesh.axes[a].size});
  return r;
}

// check_layout's message for a layout the fast check found illegal.
inline std::string legality_message(const Graph& g, const Mesh& mesh, const Layout& layout) {
  try {
    check_layout(g, mesh, layout);
  } catch (const InputError& e) {
    return e.what();
  }
  return {};
}

}  // namespace sy::lowering
