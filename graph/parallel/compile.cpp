// Compiling a graph for the planner: dim names interned, and each node's dim roles (whole: may
// not be split; summed: splits give partial results) and how partial results combine, as each
// op's OpDef::roles (ops/*.cpp) says.
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

// An input dim of `n` that no output of `n` has.
bool absent_from_outputs(const Graph& g, const Node& n, const std::string& dim) {
  bool in_out = false;
  for (ValueId o : n.outputs) in_out = in_out || has_dim(g.type(o).shape, dim);
  return !in_out;
}

// The roles of a node's dims (whole: may not be split; summed: summed out, splits give partial
// results) and how partial results combine: what the op's OpDef::roles says, then lowering's own
// rule that anything an input has, no output has and is not summed must stay whole.
LoweringRoles set_roles(const Graph& g, const Node& n, CNode& cn, Compiled& c,
                        std::unordered_map<std::string, DimId>& ids) {
  const OpDef& def = op_def(n.kind);
  if (!def.roles)
    throw InputError(fmt::format("lower: {} is a collective: the graph is already lowered", g.describe(n.id)));
  std::vector<TensorType> in;
  for (ValueId v : n.inputs) in.push_back(g.type(v));
  const LoweringRoles r = def.roles(in, n.attrs);
  for (const std::string& d : r.whole) cn.roles.emplace_back(intern(c, ids, d), Role::whole);
  cn.reduce = r.reduce;
  cn.reshape = r.reshape;
  cn.control = r.control;
  if (cn.control) return r;  // the control inputs' dims have no role; input 0's are the output's
  auto mark_absent = [&](Role role) {  // input dims absent from every output, not yet given a role
    for (ValueId v : n.inputs)
      for (const Dim& d : g.type(v).shape) {
        const DimId id = intern(c, ids, d.name);
        if (absent_from_outputs(g, n, d.name) && cn.role(id) == Role::free) cn.roles.emplace_back(id, role);
      }
  };
  if (r.sums_absent_dims) mark_absent(Role::summed);
  if (!cn.reshape) mark_absent(Role::whole);
  return r;
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
  std::vector<bool> carries_gradient(g.nodes.size());  // per node: LoweringRoles::carries_gradient
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
    carries_gradient[static_cast<size_t>(n.id.v)] = set_roles(g, n, cn, c, ids).carries_gradient;
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
  // Which values carry parameter gradients: values with grad_of a parameter (autodiff), and back
  // through the ops that carry gradients (LoweringRoles::carries_gradient) that lead to them.
  // Gradients that are graph outputs end split like their parameters (grad_outputs).
  for (const Value& v : g.values)
    if (v.grad_of.valid() && g.value(v.grad_of).role == ValueRole::parameter) c.values[static_cast<size_t>(v.id.v)].feeds_grad = true;
  for (const GraphOutput& o : g.outputs) {
    const Value& v = g.value(o.value);
    if (v.grad_of.valid() && g.value(v.grad_of).role == ValueRole::parameter) c.grad_outputs.emplace_back(o.value.v, v.grad_of.v);
  }
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    if (n.outputs.size() != 1 || !c.values[static_cast<size_t>(n.outputs[0].v)].feeds_grad) continue;
    if (carries_gradient[static_cast<size_t>(n.id.v)])
      for (ValueId v : n.inputs) c.values[static_cast<size_t>(v.v)].feeds_grad = true;
  }
  return c;
}

}  // namespace sy::lowering
