#include "ops/interpret.hpp"

#include "graph/error.hpp"
#include "graph/op_def.hpp"

namespace sy {

std::vector<Tensor> interpret(const Graph& g, const std::map<ValueId, Tensor>& leaves, bool exact) {
  std::vector<Tensor> vals(g.values.size());
  for (const Value& v : g.values) {
    if (v.role == ValueRole::computed) continue;
    auto it = leaves.find(v.id);
    if (it == leaves.end()) throw InputError(fmt::format("interpret: no tensor given for leaf '{}' {}", v.name, to_string(v.type)));
    if (it->second.type != v.type)
      throw InputError(fmt::format("interpret: leaf '{}' is {} but the tensor given is {}", v.name, to_string(v.type),
                                   to_string(it->second.type)));
    vals[static_cast<size_t>(v.id.v)] = it->second;
  }
  for (const Node& n : g.nodes) {
    std::vector<const Tensor*> in;
    for (ValueId v : n.inputs) in.push_back(&vals[static_cast<size_t>(v.v)]);
    std::vector<Tensor*> out;
    for (ValueId v : n.outputs) {
      Tensor& t = vals[static_cast<size_t>(v.v)];
      t = Tensor(g.type(v));
      out.push_back(&t);
    }
    op_def(n.kind).forward(n.attrs, in, out, exact);
  }
  return vals;
}

}  // namespace sy
