// Compiling a graph for the planner: dim names interned, and each node's dim roles (whole: may
// not be split; summed: splits give partial results) and how partial results combine.
#include "graph/parallel/planner.hpp"

namespace sy::lowering {

namespace {

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

}  // namespace

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

}  // namespace sy::lowering
