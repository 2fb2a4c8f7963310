// Lowering (see lower.hpp for the rules). The graph is compiled once into small fixed-size
// records (dim names interned); plan_node() makes every decision for one node; lower() emits the
// decisions as nodes and LoweringPlanner reports them with their costs. Both read the same
// NodePlan, so the program the executor runs and the program the simulator prices agree.
#include "graph/parallel/lower.hpp"

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

namespace {

constexpr int kMaxRank = 8;
constexpr int kMaxIn = 8;   // optimizer updates: param, grad, 2 state slots, lr, step, clip scale
constexpr int kMaxOut = 4;  // optimizer updates: the new param and state
constexpr int kMaxSteps = 2 * static_cast<int>(kMaxMeshAxes);

using DimId = int16_t;
using AxisDims = std::array<DimId, kMaxMeshAxes>;  // per mesh axis: the dim it splits, or -1

AxisDims no_axes() {
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

DimId intern(Compiled& c, std::unordered_map<std::string, DimId>& ids, const std::string& name) {
  auto it = ids.find(name);
  if (it != ids.end()) return it->second;
  const auto id = static_cast<DimId>(c.dim_names.size());
  c.dim_names.push_back(name);
  ids.emplace(name, id);
  return id;
}

// The roles of a node's dims (whole: may not be split; summed: summed out, splits give partial
// results) and how partial results combine.
void set_roles(const Graph& g, const Node& n, CNode& cn, Compiled& c, std::unordered_map<std::string, DimId>& ids) {
  auto whole = [&](const std::string& d) { cn.roles.emplace_back(intern(c, ids, d), Role::whole); };
  auto in_shape = [&](size_t i) -> const Shape& { return g.type(n.inputs.at(i)).shape; };
  auto summed_all_but_outputs = [&] {  // input dims absent from every output
    for (ValueId v : n.inputs)
      for (const Dim& d : g.type(v).shape) {
        bool in_out = false;
        for (ValueId o : n.outputs) in_out = in_out || has_dim(g.type(o).shape, d.name);
        const DimId id = intern(c, ids, d.name);
        if (!in_out && cn.role(id) == Role::free) cn.roles.emplace_back(id, Role::summed);
      }
  };
  switch (n.kind) {
    case OpKind::einsum: summed_all_but_outputs(); break;
    case OpKind::reduce_sum: summed_all_but_outputs(); break;
    case OpKind::reduce_mean:
      summed_all_but_outputs();
      cn.reduce = ReduceOp::mean;
      break;
    case OpKind::reduce_max:
      summed_all_but_outputs();
      cn.reduce = ReduceOp::max;
      break;
    case OpKind::embedding_grad:
      whole(std::get<DimAttrs>(n.attrs).dim.name);
      summed_all_but_outputs();
      break;
    case OpKind::embedding: whole(in_shape(0).at(0).name); break;
    case OpKind::softmax:
    case OpKind::logsumexp:
    case OpKind::cross_entropy: whole(std::get<DimAttrs>(n.attrs).dim.name); break;
    case OpKind::rms_norm: whole(std::get<RmsNormAttrs>(n.attrs).dim); break;
    case OpKind::top_k:
      whole(std::get<TopKAttrs>(n.attrs).dim);
      whole(std::get<TopKAttrs>(n.attrs).k.name);
      break;
    case OpKind::cumsum: whole(std::get<CumsumAttrs>(n.attrs).dim); break;
    case OpKind::one_hot: whole(std::get<OneHotAttrs>(n.attrs).dim.name); break;
    case OpKind::gather: {
      const std::string& d = std::get<DimAttrs>(n.attrs).dim.name;
      whole(d);
      const auto p = dim_index(in_shape(0), d);
      if (p && *p < in_shape(1).size()) whole(in_shape(1)[*p].name);
      break;
    }
    case OpKind::scatter_add:
      whole(std::get<ScatterAttrs>(n.attrs).index_dim);
      whole(std::get<ScatterAttrs>(n.attrs).out_dim.name);
      break;
    case OpKind::reshape: cn.reshape = true; break;
    case OpKind::all_reduce:
    case OpKind::all_gather:
    case OpKind::reduce_scatter:
    case OpKind::all_to_all:
    case OpKind::shard_slice:
      throw InputError(fmt::format("lower: {} is a collective: the graph is already lowered", g.describe(n.id)));
    case OpKind::add:
    case OpKind::sub:
    case OpKind::mul:
    case OpKind::div:
    case OpKind::greater:
    case OpKind::where:
    case OpKind::scale:
    case OpKind::relu:
    case OpKind::relu_grad:
    case OpKind::gelu:
    case OpKind::gelu_grad:
    case OpKind::exp:
    case OpKind::log:
    case OpKind::rsqrt:
    case OpKind::cast:
    case OpKind::dropout:
    case OpKind::fill:
    case OpKind::random:
    case OpKind::broadcast:
    case OpKind::transpose:
    // Optimizer updates run per element on the parameter's block (Adafactor's factored moments
    // follow the parameter's dims by name; its RMS terms are then per block).
    case OpKind::adafactor_update:
    case OpKind::adamw_update: break;
  }
  // Anything an input has that no output has and that is not summed must stay whole.
  if (!cn.reshape)
    for (ValueId v : n.inputs)
      for (const Dim& d : g.type(v).shape) {
        bool in_out = false;
        for (ValueId o : n.outputs) in_out = in_out || has_dim(g.type(o).shape, d.name);
        const DimId id = intern(c, ids, d.name);
        if (!in_out && cn.role(id) == Role::free) cn.roles.emplace_back(id, Role::whole);
      }
}

Compiled compile(const Graph& g) {
  Compiled c;
  std::unordered_map<std::string, DimId> ids;
  c.values.resize(g.values.size());
  c.sizes.resize(g.values.size());
  std::map<std::vector<std::pair<DimId, int64_t>>, int32_t> shapes;
  for (const Value& v : g.values) {
    CValue& cv = c.values[static_cast<size_t>(v.id.v)];
    const Shape& s = v.type.shape;
    if (s.size() > static_cast<size_t>(kMaxRank))
      throw InputError(fmt::format("lower: tensor {} {} has more than {} dims", tensor_label(g, v.id), to_string(v.type),
                                   kMaxRank));
    cv.rank = static_cast<int8_t>(s.size());
    std::vector<std::pair<DimId, int64_t>> key;
    for (size_t i = 0; i < s.size(); ++i) {
      cv.dim[i] = intern(c, ids, s[i].name);
      c.sizes[static_cast<size_t>(v.id.v)][i] = s[i].size;
      cv.elems *= static_cast<double>(s[i].size);
      key.emplace_back(cv.dim[i], s[i].size);
    }
    cv.dtype = v.type.dtype;
    cv.leaf = v.role != ValueRole::computed;
    if (shapes.emplace(key, v.id.v).second) c.distinct_shapes.push_back(v.id.v);
  }
  c.nodes.resize(g.nodes.size());
  for (const Node& n : g.nodes) {
    CNode& cn = c.nodes[static_cast<size_t>(n.id.v)];
    cn.kind = n.kind;
    if (n.inputs.size() > static_cast<size_t>(kMaxIn) || n.outputs.size() > static_cast<size_t>(kMaxOut))
      throw InputError(fmt::format("lower: {} has {} inputs and {} outputs (at most {} and {})", g.describe(n.id),
                                   n.inputs.size(), n.outputs.size(), kMaxIn, kMaxOut));
    cn.nin = static_cast<int>(n.inputs.size());
    cn.nout = static_cast<int>(n.outputs.size());
    for (size_t i = 0; i < n.inputs.size(); ++i) cn.in[i] = n.inputs[i].v;
    for (size_t i = 0; i < n.outputs.size(); ++i) cn.out[i] = n.outputs[i].v;
    set_roles(g, n, cn, c, ids);
    if (cn.reshape) {  // input dim i and output dim j hold the same row-major blocks iff their prefixes match
      cn.reshape_map.fill(-1);
      const Shape& in = g.type(n.inputs[0]).shape;
      const Shape& out = g.type(n.outputs[0]).shape;
      int64_t pin = 1;
      for (size_t i = 0; i < in.size(); ++i) {
        int64_t pout = 1;
        for (size_t j = 0; j < out.size(); ++j) {
          if (pout == pin) {
            cn.reshape_map[i] = static_cast<int8_t>(j);
            break;
          }
          pout *= out[j].size;
        }
        pin *= in[i].size;
      }
    }
  }
  // Which values carry parameter gradients: graph outputs with grad_of a parameter, and back
  // through the linear, elementwise-by-name ops that lead to them.
  for (const GraphOutput& o : g.outputs) {
    const Value& v = g.value(o.value);
    if (v.grad_of.valid() && g.value(v.grad_of).role == ValueRole::parameter) {
      c.grad_outputs.emplace_back(o.value.v, v.grad_of.v);
      c.values[static_cast<size_t>(o.value.v)].feeds_grad = true;
    }
  }
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    if (n.outputs.size() != 1 || !c.values[static_cast<size_t>(n.outputs[0].v)].feeds_grad) continue;
    if (n.kind == OpKind::cast || n.kind == OpKind::add || n.kind == OpKind::reshape || n.kind == OpKind::transpose ||
        n.kind == OpKind::scale)
      for (ValueId v : n.inputs) c.values[static_cast<size_t>(v.v)].feeds_grad = true;
  }
  return c;
}

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

double local_factor(const Sharding& s, const std::array<int64_t, kMaxMeshAxes>& n, size_t axes) {
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
      b += collective_cost(st.kind, group(st.axes), st.reduce, st.in_bytes, st.in_elems, st.out_bytes).collective_bytes;
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

std::vector<Dim> axes_of(uint32_t mask, const Mesh& mesh) {
  std::vector<Dim> r;
  for (size_t a = 0; a < mesh.axes.size(); ++a)
    if (mask & (1u << a)) r.push_back(Dim{mesh.axes[a].name, mesh.axes[a].size});
  return r;
}

// check_layout's message for a layout the fast check found illegal.
std::string legality_message(const Graph& g, const Mesh& mesh, const Layout& layout) {
  try {
    check_layout(g, mesh, layout);
  } catch (const InputError& e) {
    return e.what();
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------- lower()

namespace {

// Localized attributes: shapes in attributes (fill, random, broadcast, reshape) become the local
// block's shape.
Attrs local_attrs(const Attrs& a, const Shape& local_out) {
  if (const auto* f = std::get_if<FillAttrs>(&a)) {
    FillAttrs r = *f;
    r.shape = local_out;
    return r;
  }
  if (const auto* r0 = std::get_if<RandomAttrs>(&a)) {
    RandomAttrs r = *r0;
    r.shape = local_out;
    return r;
  }
  if (std::holds_alternative<ShapeAttrs>(a)) return ShapeAttrs{local_out};
  return a;
}

}  // namespace

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
      outs = b.op(n.kind, local_attrs(n.attrs, local_out), inputs);
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

// ---------------------------------------------------------------- LoweringPlanner

namespace {

// The local shapes of a node's operands: the packed shardings of its inputs and outputs.
using CostKey = std::array<uint64_t, kMaxIn + kMaxOut>;
struct MemoEntry {
  CostKey key;
  OpCost cost;
};
uint64_t hash_key(const CostKey& k) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (uint64_t x : k) h = (h ^ x) * 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 31);
}
uint64_t pack(const Sharding& s) { return s.bits(); }
bool same_key(const CostKey& a, const CostKey& b) {
  bool eq = true;
  for (size_t i = 0; i < a.size(); ++i) eq &= a[i] == b[i];
  return eq;
}

}  // namespace

struct LoweringPlanner::Impl {
  const Graph& g;
  Mesh mesh;
  LowerOptions opts;
  Compiled c;
  Planner pl;
  std::vector<std::vector<MemoEntry>> memo;       // per node: the local shapes seen so far and their cost
  std::vector<std::vector<uint64_t>> memo_hash;   // per node: hash_key of each entry (scanned first)

  Impl(const Graph& graph, const Mesh& m, const LowerOptions& o)
      : g(graph), mesh(m), opts(o), c(compile(graph)), pl(c, mesh, o), memo(graph.nodes.size()),
        memo_hash(graph.nodes.size()), effects(graph.nodes.size()), effect_hash(graph.nodes.size()),
        effect_index(graph.nodes.size()) {}

  // The node's cost on its local blocks, and the index of those local shapes among the node's.
  std::pair<const OpCost*, uint32_t> local_cost(const Node& n, const NodePlan& p) {
    const CNode& cn = c.nodes[static_cast<size_t>(n.id.v)];
    CostKey key{};
    for (int k = 0; k < cn.nin; ++k) key[static_cast<size_t>(k)] = pack(p.in_to[static_cast<size_t>(k)]);
    for (int o = 0; o < cn.nout; ++o) key[static_cast<size_t>(kMaxIn + o)] = pack(p.computed[static_cast<size_t>(o)]);
    std::vector<MemoEntry>& seen = memo[static_cast<size_t>(n.id.v)];
    std::vector<uint64_t>& hashes = memo_hash[static_cast<size_t>(n.id.v)];
    const uint64_t h = hash_key(key);
    for (size_t i = 0; i < hashes.size(); ++i)
      if (hashes[i] == h && same_key(seen[i].key, key)) return {&seen[i].cost, static_cast<uint32_t>(i)};
    hashes.push_back(h);
    std::vector<TensorType> in, out;
    for (int k = 0; k < cn.nin; ++k) {
      const TensorType& t = g.type(n.inputs[static_cast<size_t>(k)]);
      in.push_back(TensorType{local_shape(t.shape, p.in_to[static_cast<size_t>(k)], mesh), t.dtype});
    }
    for (int o = 0; o < cn.nout; ++o) {
      const TensorType& t = g.type(n.outputs[static_cast<size_t>(o)]);
      out.push_back(TensorType{local_shape(t.shape, p.computed[static_cast<size_t>(o)], mesh), t.dtype});
    }
    Attrs a = n.attrs;
    if (!out.empty()) a = local_attrs(n.attrs, out[0].shape);
    seen.push_back(MemoEntry{key, op_def(n.kind).cost(in, out, a)});
    return {&seen.back().cost, static_cast<uint32_t>(seen.size() - 1)};
  }

  void collectives_of(const StepList& l, NodeId origin, bool gradient, std::vector<PlannedCollective>& out) const {
    for (int i = 0; i < l.n; ++i) {
      const Step& st = l.s[static_cast<size_t>(i)];
      PlannedCollective pc;
      pc.kind = st.kind;
      pc.axes = st.axes;
      pc.cost = collective_cost(st.kind, pl.group(st.axes), st.reduce, st.in_bytes, st.in_elems, st.out_bytes);
      pc.origin = origin;
      pc.gradient = gradient && (st.kind == OpKind::all_reduce || st.kind == OpKind::reduce_scatter);
      out.push_back(pc);
    }
  }

  // ---- plans memoized by what they read
  //
  // A node's plan is a function of its inputs' shardings (primary and available variants) and of
  // the shardings its outputs want (which is all it reads of the layout's rules), so it is cached
  // under exactly those. An entry keeps the plan's effects: what it reports and how it changes the
  // shardings, replayed on a hit exactly as on a miss.
  struct Effect {
    std::vector<uint64_t> key;
    std::vector<PlannedCollective> before, after;  // reported before and after the node
    uint32_t cost_variant = 0;                      // index into memo[node]
    std::vector<std::pair<int32_t, Sharding>> in_variants;
    Sharding computed0;  // a reshape's output as computed (derived axes)
    std::array<Sharding, kMaxOut> final_{};
  };
  std::vector<std::vector<Effect>> effects;                       // per node
  std::vector<std::vector<uint64_t>> effect_hash;  // per node: hash_of(key) of each entry, in entry order
  // Per node with many entries: hash_of(key) -> the first entry of that hash (a sweep of thousands
  // of layouts fills up to kMaxEffects entries per node; scanning them all was a third of its time).
  std::vector<std::unordered_map<uint64_t, uint32_t>> effect_index;
  static constexpr size_t kScanEffects = 16;  // up to this many entries a node's hashes are scanned
  static constexpr size_t kMaxEffects = 256;  // per node; beyond, plans are computed, not cached

  // The cache key of node n now; false when an input has too many variants to key.
  bool plan_key(const CNode& cn, std::vector<uint64_t>& key) const {
    key.clear();
    std::array<Sharding, kMaxIn> cur{};
    for (int k = 0; k < cn.nin; ++k) {
      const int32_t id = cn.in[static_cast<size_t>(k)];
      cur[static_cast<size_t>(k)] = pl.primary[static_cast<size_t>(id)];
      const auto& vars = pl.variants[static_cast<size_t>(id)];
      if (vars.size() > 4) return false;
      key.push_back(cur[static_cast<size_t>(k)].bits());
      key.push_back(vars.size());
      for (const auto& [sh, low] : vars) key.push_back(sh.bits());
    }
    const auto splits = pl.splits_of(cn, cur);
    for (int o = 0; o < cn.nout; ++o) key.push_back(pl.wanted(cn, o, splits).bits());
    return true;
  }

  static uint64_t hash_of(const std::vector<uint64_t>& key) {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (uint64_t x : key) h = (h ^ x) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
  }

  Effect effect_of(const Node& n, const CNode& cn, const NodePlan& p) {
    Effect e;
    for (int k = 0; k < cn.nin; ++k) {
      const auto ks = static_cast<size_t>(k);
      collectives_of(p.in_steps[ks], n.id, false, e.before);
      Sharding sh = p.in_from[ks];
      for (int i = 0; i < p.in_steps[ks].n; ++i) {
        sh = pl.apply(sh, p.in_steps[ks].s[static_cast<size_t>(i)]);
        e.in_variants.emplace_back(cn.in[ks], sh);
      }
    }
    e.cost_variant = local_cost(n, p).second;
    for (int o = 0; o < cn.nout; ++o) {
      const auto os = static_cast<size_t>(o);
      collectives_of(p.out_steps[os], n.id, c.values[static_cast<size_t>(cn.out[os])].feeds_grad, e.after);
      e.final_[os] = p.final_[os];
    }
    e.computed0 = p.computed[0];
    return e;
  }

  // Reports an effect and applies it to the planner's state (what Planner::record does).
  void replay(const Node& n, const CNode& cn, const Effect& e, PlanVisitor& v) {
    for (const PlannedCollective& pc : e.before) v.collective(pc);
    v.node(n.id, memo[static_cast<size_t>(n.id.v)][e.cost_variant].cost, e.cost_variant);
    for (const PlannedCollective& pc : e.after) v.collective(pc);
    for (const auto& [id, sh] : e.in_variants) pl.add_variant(id, sh, -1);
    if (cn.reshape) {
      const CValue& ov = c.values[static_cast<size_t>(cn.out[0])];
      for (size_t a = 0; a < pl.axes; ++a) {
        const int8_t pos = e.computed0.dim[a];
        if (pos < 0) continue;
        const auto d = static_cast<size_t>(ov.dim[static_cast<size_t>(pos)]);
        if (pl.rule_axis[d] < 0 && pl.derived_axis[d] < 0) pl.derived_axis[d] = static_cast<int16_t>(a);
      }
    }
    for (int o = 0; o < cn.nout; ++o) {
      const auto os = static_cast<size_t>(o);
      const int32_t id = cn.out[os];
      pl.primary[static_cast<size_t>(id)] = e.final_[os];
      pl.variants[static_cast<size_t>(id)].clear();
      pl.add_variant(id, e.final_[os], -1);
    }
  }

  void plan_node_cached(const Node& n, PlanVisitor& v) {
    const auto i = static_cast<size_t>(n.id.v);
    const CNode& cn = c.nodes[i];
    const bool keyed = plan_key(cn, key_scratch);
    const uint64_t h = keyed ? hash_of(key_scratch) : 0;
    if (keyed) {
      const std::vector<uint64_t>& hashes = effect_hash[i];
      if (hashes.size() > kScanEffects) {
        const auto it = effect_index[i].find(h);
        if (it != effect_index[i].end() && effects[i][it->second].key == key_scratch)
          return replay(n, cn, effects[i][it->second], v);
        if (it != effect_index[i].end())  // two keys of one hash (never seen): scan them all
          for (size_t e = 0; e < hashes.size(); ++e)
            if (hashes[e] == h && effects[i][e].key == key_scratch) return replay(n, cn, effects[i][e], v);
      } else {
        for (size_t e = 0; e < hashes.size(); ++e)
          if (hashes[e] == h && effects[i][e].key == key_scratch) return replay(n, cn, effects[i][e], v);
      }
    }
    Effect e = effect_of(n, cn, pl.plan_node(cn));
    replay(n, cn, e, v);
    if (keyed && effects[i].size() < kMaxEffects) {
      effect_hash[i].push_back(h);
      e.key = key_scratch;
      effects[i].push_back(std::move(e));
      if (effects[i].size() == kScanEffects + 1)  // from now on looked up by hash
        for (size_t k = 0; k < effect_hash[i].size(); ++k) effect_index[i].emplace(effect_hash[i][k], static_cast<uint32_t>(k));
      else if (effects[i].size() > kScanEffects + 1)
        effect_index[i].emplace(h, static_cast<uint32_t>(effects[i].size() - 1));
    }
  }
  std::vector<uint64_t> key_scratch;
};

LoweringPlanner::LoweringPlanner(const Graph& g, const Mesh& mesh, const LowerOptions& opts)
    : impl_(std::make_unique<Impl>(g, mesh, opts)) {}
LoweringPlanner::~LoweringPlanner() = default;

bool LoweringPlanner::legal(const Layout& layout) const {
  // The checks of check_layout over the distinct shapes of the graph.
  const Impl& m = *impl_;
  for (const LayoutRule& r : layout.rules)
    if (!m.mesh.axis_index(r.axis)) return false;
  std::vector<int16_t> rule(m.c.dim_names.size(), -1);
  for (size_t d = 0; d < m.c.dim_names.size(); ++d)
    if (const std::string* ax = layout.axis_of(m.c.dim_names[d])) rule[d] = static_cast<int16_t>(*m.mesh.axis_index(*ax));
  for (const LayoutRule& r : layout.rules)
    if (std::find(m.c.dim_names.begin(), m.c.dim_names.end(), r.dim) == m.c.dim_names.end()) return false;
  for (int32_t id : m.c.distinct_shapes) {
    const CValue& v = m.c.values[static_cast<size_t>(id)];
    uint32_t used = 0;
    for (int i = 0; i < v.rank; ++i) {
      const int16_t a = rule[static_cast<size_t>(v.dim[static_cast<size_t>(i)])];
      if (a < 0) continue;
      if ((used & (1u << a)) || m.c.sizes[static_cast<size_t>(id)][static_cast<size_t>(i)] % m.mesh.axes[static_cast<size_t>(a)].size != 0)
        return false;
      used |= 1u << a;
    }
  }
  return true;
}

std::string LoweringPlanner::legality(const Layout& layout) const {
  return legal(layout) ? std::string() : legality_message(impl_->g, impl_->mesh, layout);
}

const std::vector<Sharding>& LoweringPlanner::plan(const Layout& layout, PlanVisitor& v) {
  Impl& m = *impl_;
  if (!legal(layout)) throw InputError(legality_message(m.g, m.mesh, layout));
  m.pl.set_layout(layout);
  for (size_t i = 0; i < m.c.values.size(); ++i)
    if (m.c.values[i].leaf) {
      m.pl.primary[i] = m.pl.leaf_sharding(static_cast<int32_t>(i));
      m.pl.add_variant(static_cast<int32_t>(i), m.pl.primary[i], -1);
    }
  for (const Node& n : m.g.nodes) m.plan_node_cached(n, v);
  std::vector<PlannedCollective> tail;
  for (const auto& [out, param] : m.c.grad_outputs) {
    StepList steps;
    m.pl.reshard(m.c.values[static_cast<size_t>(out)], m.pl.primary[static_cast<size_t>(out)],
                 m.pl.primary[static_cast<size_t>(param)], m.c.values[static_cast<size_t>(out)].dtype, steps);
    m.collectives_of(steps, m.g.value(ValueId{out}).producer, false, tail);
  }
  for (const PlannedCollective& pc : tail) v.collective(pc);
  return m.pl.primary;
}

}  // namespace sy
