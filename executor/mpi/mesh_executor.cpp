#include "executor/mpi/mesh_executor.hpp"

#include "executor/mpi/communicator.hpp"
#include "graph/error.hpp"

#include <algorithm>
#include <cstring>

namespace sy {

MeshExecutor::MeshExecutor(const Graph& global, const Layout& layout, ExecutorOptions opts)
    : global_(global), comm_(opts.communicator) {
  if (!comm_) {
    ex_ = std::make_unique<Executor>(global_, std::move(opts));
    return;
  }
  lowered_ = lower(global_, comm_->mesh(), layout);
  const Lowered& L = *lowered_;
  SY_CHECK(L.graph.outputs.size() == global_.outputs.size(), "lowering changed the number of graph outputs {} -> {}",
           global_.outputs.size(), L.graph.outputs.size());
  output_of_.assign(global_.values.size(), ValueId{});
  for (size_t i = 0; i < global_.outputs.size(); ++i) {
    SY_CHECK(L.graph.outputs[i].name == global_.outputs[i].name, "lowered output {} is '{}', the graph's is '{}'", i,
             L.graph.outputs[i].name, global_.outputs[i].name);
    output_of_[static_cast<size_t>(global_.outputs[i].value.v)] = L.graph.outputs[i].value;
  }
  staging_.resize(global_.values.size());
  // Updates between values split alike run on the device's blocks (in place where the Executor
  // can); the others go through the global tensor after each run.
  std::vector<LeafUpdate> local_updates;
  for (const LeafUpdate& u : opts.updates) {
    const ValueId l = local(u.leaf), x = local(u.value);
    if (sharding(l) == sharding(x))
      local_updates.push_back({l, x});
    else
      global_updates_.push_back(u);
  }
  opts.updates = std::move(local_updates);
  ex_ = std::make_unique<Executor>(L.graph, std::move(opts));
}

const Graph& MeshExecutor::program() const { return lowered_ ? lowered_->graph : global_; }

ValueId MeshExecutor::local(ValueId v) const {
  SY_CHECK(v.valid() && static_cast<size_t>(v.v) < global_.values.size(), "mesh executor: no value {}", v.v);
  if (!lowered_) return v;
  const Value& val = global_.value(v);
  if (val.role != ValueRole::computed) {
    const ValueId l = lowered_->value_of[static_cast<size_t>(v.v)];
    SY_CHECK(l.valid(), "mesh executor: leaf '{}' has no lowered value", val.name);
    return l;
  }
  const ValueId o = output_of_[static_cast<size_t>(v.v)];
  if (!o.valid())
    throw InputError(fmt::format("mesh executor: value {} (output of {}) is not a graph output", v.v,
                                 global_.describe(val.producer)));
  return o;
}

const Sharding& MeshExecutor::sharding(ValueId local_v) const { return lowered_->sharding[static_cast<size_t>(local_v.v)]; }

void MeshExecutor::set(ValueId leaf, const Tensor& t) {
  if (!lowered_) return ex_->set(leaf, t);
  const TensorType& type = global_.type(leaf);
  if (t.type != type)
    throw InputError(fmt::format("mesh executor set: leaf '{}' is {} but the tensor given is {}", global_.value(leaf).name,
                                 to_string(type), to_string(t.type)));
  const ValueId l = local(leaf);
  const Sharding& s = sharding(l);
  if (s.replicated()) return ex_->set(l, t);
  Tensor block(lowered_->graph.type(l));
  copy_block(t.data.data(), block.data.data(), type.shape, sizeof(double), s, comm_->mesh(),
             comm_->mesh().coords(comm_->device()));
  ex_->set(l, block);
}

void* MeshExecutor::data(ValueId leaf) {
  if (!lowered_) return ex_->data(leaf);
  const Value& v = global_.value(leaf);
  if (v.role == ValueRole::computed)
    throw InputError(fmt::format("mesh executor data: value {} is computed by {}; only leaves have global buffers", leaf.v,
                                 global_.describe(v.producer)));
  const ValueId l = local(leaf);
  auto& buf = staging_[static_cast<size_t>(leaf.v)];
  buf.resize(static_cast<size_t>(num_bytes(v.type)));
  assemble_global(*comm_, ex_->data(l), buf.data(), v.type.shape, static_cast<size_t>(dtype_bytes(v.type.dtype)),
                  sharding(l));
  if (std::find(pending_.begin(), pending_.end(), static_cast<size_t>(leaf.v)) == pending_.end())
    pending_.push_back(static_cast<size_t>(leaf.v));
  return buf.data();
}

void MeshExecutor::commit() {
  if (!lowered_) return;
  const std::vector<int64_t> coords = comm_->mesh().coords(comm_->device());
  for (size_t i : pending_) {
    const Value& v = global_.values[i];
    const ValueId l = local(v.id);
    copy_block(staging_[i].data(), ex_->data(l), v.type.shape, static_cast<size_t>(dtype_bytes(v.type.dtype)),
               sharding(l), comm_->mesh(), coords);
  }
  pending_.clear();
}

Tensor MeshExecutor::get(ValueId v) const {
  if (!lowered_) return ex_->get(v);
  const ValueId l = local(v);
  const Sharding& s = sharding(l);
  const Tensor block = ex_->get(l);
  if (s.replicated()) return block;
  const TensorType& type = global_.type(v);
  Tensor out(type);
  assemble_global(*comm_, block.data.data(), out.data.data(), type.shape, sizeof(double), s);
  return out;
}

void MeshExecutor::copy(ValueId dst, ValueId src) {
  const TensorType& type = global_.type(dst);
  SY_CHECK(global_.type(src) == type, "mesh executor copy: {} into {}", to_string(global_.type(src)), to_string(type));
  if (!lowered_) {
    std::memcpy(ex_->data(dst), ex_->data(src), static_cast<size_t>(num_bytes(type)));
    return;
  }
  const ValueId ld = local(dst), ls = local(src);
  if (sharding(ld) == sharding(ls)) {
    std::memcpy(ex_->data(ld), ex_->data(ls), static_cast<size_t>(num_bytes(lowered_->graph.type(ld))));
    return;
  }
  std::vector<std::byte> global(static_cast<size_t>(num_bytes(type)));
  const auto eb = static_cast<size_t>(dtype_bytes(type.dtype));
  assemble_global(*comm_, ex_->data(ls), global.data(), type.shape, eb, sharding(ls));
  copy_block(global.data(), ex_->data(ld), type.shape, eb, sharding(ld), comm_->mesh(), comm_->mesh().coords(comm_->device()));
}

void MeshExecutor::copy_from(MeshExecutor& other, ValueId src, ValueId dst) {
  other.commit();
  const TensorType& type = global_.type(dst);
  SY_CHECK(other.global_.type(src) == type, "mesh executor copy_from: {} into {}", to_string(other.global_.type(src)),
           to_string(type));
  if (lowered_ && other.lowered_ && sharding(local(dst)) == other.sharding(other.local(src))) {
    std::memcpy(ex_->data(local(dst)), other.ex_->data(other.local(src)),
                static_cast<size_t>(num_bytes(lowered_->graph.type(local(dst)))));
    return;
  }
  if (!lowered_ && !other.lowered_) {
    std::memcpy(ex_->data(dst), other.ex_->data(src), static_cast<size_t>(num_bytes(type)));
    return;
  }
  std::memcpy(data(dst), other.data(src), static_cast<size_t>(num_bytes(type)));
  commit();
}

void MeshExecutor::run() {
  commit();
  ex_->run();
  for (const LeafUpdate& u : global_updates_) copy(u.leaf, u.value);
}

}  // namespace sy
