#include "executor/executor.hpp"

#include "executor/mpi/communicator.hpp"
#include "executor/mpi/ragged_all_to_all.hpp"
#include "executor/einsum.hpp"
#include "executor/kernel_choice.hpp"
#include "executor/host_memory.hpp"
#include "executor/index_kernels.hpp"
#include "executor/kernels.hpp"
#include "executor/memory_limit.hpp"
#include "executor/memory_plan.hpp"
#include "executor/ragged_rows.hpp"
#include "executor/train/optimizer_kernels.hpp"
#include "executor/sparse_einsum.hpp"
#include "graph/cse.hpp"
#include "graph/error.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/op_def.hpp"

#include <omp.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <thread>

namespace sy {
namespace {

using Bytes = exec::HostBytes;
using exec::alloc_host_bytes;

// Storage -> Tensor (double) and back; bf16 rounds to nearest even on store.
Tensor to_tensor(const void* p, const TensorType& t) {
  Tensor r(t);
  const size_t n = r.data.size();
  switch (t.dtype) {
    case DType::f32:
      for (size_t i = 0; i < n; ++i) r.data[i] = static_cast<const float*>(p)[i];
      break;
    case DType::bf16:
      for (size_t i = 0; i < n; ++i) r.data[i] = bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
      break;
    case DType::i32:
      for (size_t i = 0; i < n; ++i) r.data[i] = static_cast<const int32_t*>(p)[i];
      break;
  }
  return r;
}

void from_tensor(const Tensor& t, void* p) {
  const size_t n = t.data.size();
  switch (t.dtype()) {
    case DType::f32:
      for (size_t i = 0; i < n; ++i) static_cast<float*>(p)[i] = static_cast<float>(t.data[i]);
      break;
    case DType::bf16:
      for (size_t i = 0; i < n; ++i) static_cast<uint16_t*>(p)[i] = f32_to_bf16(static_cast<float>(t.data[i]));
      break;
    case DType::i32:
      for (size_t i = 0; i < n; ++i) static_cast<int32_t*>(p)[i] = static_cast<int32_t>(t.data[i]);
      break;
  }
}

int resolve_threads(int requested) {
  if (requested < 0) throw InputError(fmt::format("executor: threads = {} (must be 0 for all cores, or positive)", requested));
  if (requested > 0) return requested;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

// Threads: oneDNN runs its matmuls on OpenMP threads and the other kernels run on TBB. Both pools
// are capped at `threads`: omp_set_num_threads for oneDNN (set again at each run(), since the
// setting belongs to the calling thread) and a tbb::global_control held for the executor's
// lifetime (process-wide while it lives; with several executors the smallest cap wins). Ops run
// one at a time, each on one pool, so at most `threads` threads compute at any moment. (Workers
// of the idle pool may spin briefly after their last op before sleeping.)
struct Executor::Impl {
  Graph g;
  ExecutorOptions opts;
  int threads;
  tbb::global_control tbb_threads;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::vector<std::optional<exec::EinsumKernel>> einsum;  // per node: the oneDNN plan, if any
  std::optional<exec::SparseEinsums> sparse;              // one-hot values and the einsums over them
  std::optional<exec::RaggedRows> ragged;                 // zero tails of the expert buffers
  exec::MemoryPlan plan;
  Bytes arena;
  std::vector<Bytes> leaf;        // per value: storage of leaves (null for computed values)
  std::vector<bool> leaf_needed;  // per value: a leaf some node reads or the graph outputs
  std::vector<bool> leaf_set;     // per value: set() or data() was called
  std::vector<int32_t> canonical; // per value: the value holding it (graph/cse.hpp; itself unless a duplicate's output)
  std::vector<bool> duplicate;    // per node: identical to an earlier node, so it does not run
  std::vector<int32_t> leaf_of;   // per value: the leaf whose storage holds it (an update in place), or -1
  std::vector<LeafUpdate> copied; // the updates copied in after each run (canonical values)
  MemoryPlanStats stats;
  bool ran = false;
  size_t ran_to = 0;  // run_nodes: where the last call stopped

  Impl(const Graph& graph, ExecutorOptions o)
      : g(graph),
        opts(o),
        threads(resolve_threads(o.threads)),
        tbb_threads(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads)) {
    omp_set_num_threads(threads);
    const size_t nv = g.values.size();
    leaf_needed.assign(nv, false);
    for (const Node& n : g.nodes)
      for (ValueId v : n.inputs) {
        if (!v.valid() || static_cast<size_t>(v.v) >= nv)
          throw InputError(fmt::format("executor: {} reads value {}, which does not exist", g.describe(n.id), v.v));
        const Value& val = g.value(v);
        if (val.role == ValueRole::computed && val.producer.v >= n.id.v)
          throw InputError(fmt::format("executor: {} reads value {} produced later by {} (nodes must be in topological order)",
                                       g.describe(n.id), v.v, g.describe(val.producer)));
        if (val.role != ValueRole::computed) leaf_needed[static_cast<size_t>(v.v)] = true;
      }
    for (const GraphOutput& out : g.outputs)
      if (g.value(out.value).role != ValueRole::computed) leaf_needed[static_cast<size_t>(out.value.v)] = true;

    // The machine's memory (executor/memory_limit.hpp), before anything is allocated: first the
    // leaves alone (parameters, optimizer state, inputs), so that a model far too large is refused
    // before oneDNN plans kernels for it; then the whole plan with the kernels' workspaces.
    int64_t leaf_bytes = 0;
    for (const Value& v : g.values)
      if (v.role != ValueRole::computed) leaf_bytes = checked_add(leaf_bytes, num_bytes(v.type), "the executor's leaf bytes");
    check_memory_fits(leaf_bytes, "the program",
                      fmt::format("{} B for its parameters, optimizer state and inputs alone, {} tensors", leaf_bytes,
                                  std::count_if(g.values.begin(), g.values.end(),
                                                [](const Value& v) { return v.role != ValueRole::computed; })));

    // CSE (graph/cse.hpp, fast kernels only): a node identical to an earlier one does not run;
    // in this copy of the graph it reads and writes nothing, and the readers of its outputs (and
    // the graph outputs) read the earlier node's instead, whose buffer lives until their last use.
    canonical.resize(nv);
    for (size_t v = 0; v < nv; ++v) canonical[v] = static_cast<int32_t>(v);
    duplicate.assign(g.nodes.size(), false);
    if (opts.fast_kernels) {
      Duplicates d = find_duplicates(g);
      canonical = std::move(d.canonical);
      auto canon = [&](ValueId v) { return ValueId{canonical[static_cast<size_t>(v.v)]}; };
      for (Node& n : g.nodes) {
        if (d.duplicate_of[static_cast<size_t>(n.id.v)] >= 0) {
          duplicate[static_cast<size_t>(n.id.v)] = true;
          n.inputs.clear();
          n.outputs.clear();
          continue;
        }
        for (ValueId& v : n.inputs) v = canon(v);
      }
      for (GraphOutput& o : g.outputs) o.value = canon(o.value);
      if (g.loss.valid()) g.loss = canon(g.loss);
      read_bf16_through_casts();
    }

    // Kernel plans first: their workspaces are part of the memory plan.
    einsum.resize(g.nodes.size());
    std::vector<std::vector<int64_t>> workspace(g.nodes.size());
    for (const Node& n : g.nodes) {
      if (n.kind != OpKind::einsum || !opts.fast_kernels || duplicate[static_cast<size_t>(n.id.v)]) continue;
      auto& k = einsum[static_cast<size_t>(n.id.v)];
      const TensorType &ta = g.type(n.inputs.at(0)), &tb = g.type(n.inputs.at(1)), &tc = g.type(n.outputs.at(0));
      const EinsumAttrs& attrs = std::get<EinsumAttrs>(n.attrs);
      // bf16 x bf16 on a CPU with bf16 dot products: native or widened, whichever this machine
      // runs faster for the shape (executor/kernel_choice.hpp).
      exec::Bf16Path path = exec::Bf16Path::native;
      if (ta.dtype == DType::bf16 && tb.dtype == DType::bf16 && exec::bf16_matmul_native())
        path = exec::choose_bf16_path(fmt::format("{} x {} -> {}", to_string(ta), to_string(tb), to_string(tc)), threads,
                                      [&] { return exec::EinsumKernel::time_bf16_paths(ta, tb, tc, attrs, engine); });
      k = exec::EinsumKernel::make(ta, tb, tc, attrs, engine, path);
      if (k) workspace[static_cast<size_t>(n.id.v)].assign(k->workspace_bytes().begin(), k->workspace_bytes().end());
    }
    plan = exec::plan_memory(g, workspace, plan_updates());
    check_memory_fits(checked_add(leaf_bytes, plan.arena_bytes, "the executor's bytes"), "the program",
                      fmt::format("{} B of parameters, optimizer state and inputs + {} B of activations and "
                                  "workspaces by the memory plan",
                                  leaf_bytes, plan.arena_bytes));
    arena = alloc_host_bytes(plan.arena_bytes);
    if (opts.fast_kernels) {
      sparse.emplace(g, plan.kept);
      if (opts.ragged_rows) {
        ragged.emplace(g);
        // The sparse x dense einsum that fills an expert buffer zero-fills only its routed rows.
        sparse->set_output_zeroing([this](const Node& n, int p_index, const exec::Nonzeros& p) {
          return ragged->zero_sparse_dense_output(n, p_index, p, [this](ValueId v) { return ptr(v); });
        });
      }
    }

    leaf.resize(nv);
    leaf_set.assign(nv, false);
    for (const Value& v : g.values) {
      if (v.role == ValueRole::computed) continue;
      leaf[static_cast<size_t>(v.id.v)] = alloc_host_bytes(num_bytes(v.type));
      stats.leaf_bytes += num_bytes(v.type);
    }
    stats.arena_bytes = plan.arena_bytes;
    stats.unplanned_bytes = plan.unplanned_bytes;
    stats.buffers = plan.buffers;
    stats.updates_copied = static_cast<int64_t>(copied.size());
    stats.updates_in_place = static_cast<int64_t>(opts.updates.size()) - stats.updates_copied;
  }

  // ExecutorOptions::updates: which are written in place (leaf_of) and which are copied after the
  // run (copied); returns the values the memory plan leaves out. In place only when the value's
  // producer is an optimizer kind that reads the leaf, if at all, at the element it writes (its
  // kernels and the reference forward both allow that), and no other node reads the leaf after it.
  std::vector<bool> plan_updates() {
    const size_t nv = g.values.size();
    leaf_of.assign(nv, -1);
    std::vector<bool> in_leaf(nv, false);
    std::vector<int32_t> last_reader(nv, -1);
    for (const Node& n : g.nodes)
      for (ValueId v : n.inputs) last_reader[static_cast<size_t>(v.v)] = n.id.v;
    std::vector<bool> is_output(nv, false), is_target(nv, false);
    for (const GraphOutput& o : g.outputs) is_output[static_cast<size_t>(o.value.v)] = true;
    if (g.loss.valid()) is_output[static_cast<size_t>(g.loss.v)] = true;
    // Per optimizer kind: the (input, output) pairs that may share storage (same shape, one element
    // read where it is written).
    auto may_share = [](OpKind k, size_t in, size_t out) {
      switch (k) {
        case OpKind::adamw_update: return (in == 0 && out == 0) || (in == 2 && out == 1) || (in == 3 && out == 2);
        case OpKind::adafactor_update:
        case OpKind::adafactor_moment: return in == 0 && out == 0;
        default: return false;
      }
    };
    struct Candidate {
      ValueId leaf, value;
      NodeId producer;
      bool safe;
    };
    std::vector<Candidate> candidates;
    std::vector<bool> is_source(nv, false);  // a value some update takes
    for (const LeafUpdate& u : opts.updates) {
      const Value& l = value(u.leaf, "update");
      const Value& x = value(u.value, "update");
      if (l.role == ValueRole::computed || x.role != ValueRole::computed || l.type != x.type)
        throw InputError(fmt::format("executor update: value {} ({}) into {} ({}): must be a computed value into a leaf "
                                     "of the same type",
                                     u.value.v, to_string(x.type), u.leaf.v, to_string(l.type)));
      const auto li = static_cast<size_t>(u.leaf.v);
      const auto xi = static_cast<size_t>(canonical[static_cast<size_t>(u.value.v)]);
      if (!is_output[xi] || is_output[li] || is_target[li])
        throw InputError(fmt::format("executor update: '{}' into leaf '{}': the value must be a graph output, the leaf "
                                     "neither a graph output nor the target of another update",
                                     x.name, l.name));
      is_target[li] = true;
      const Node& p = g.node(g.values[xi].producer);
      bool safe = !duplicate[static_cast<size_t>(p.id.v)] && !is_source[xi] && last_reader[li] <= p.id.v;
      is_source[xi] = true;
      const size_t out = static_cast<size_t>(std::find(p.outputs.begin(), p.outputs.end(), ValueId{static_cast<int32_t>(xi)}) -
                                             p.outputs.begin());
      safe = safe && (p.kind == OpKind::adamw_update || p.kind == OpKind::adafactor_update ||
                      p.kind == OpKind::adafactor_moment);
      for (size_t i = 0; safe && i < p.inputs.size(); ++i)
        if (p.inputs[i] == u.leaf && !may_share(p.kind, i, out)) safe = false;
      candidates.push_back({u.leaf, ValueId{static_cast<int32_t>(xi)}, p.id, safe});
    }
    // A producer's updates all in place or none (its kernels have the two variants only).
    std::vector<bool> unsafe_producer(g.nodes.size(), false);
    for (const Candidate& c : candidates)
      if (!c.safe) unsafe_producer[static_cast<size_t>(c.producer.v)] = true;
    for (const Candidate& c : candidates) {
      if (unsafe_producer[static_cast<size_t>(c.producer.v)]) {
        copied.push_back({c.leaf, c.value});
      } else {
        leaf_of[static_cast<size_t>(c.value.v)] = c.leaf.v;
        in_leaf[static_cast<size_t>(c.value.v)] = true;
      }
    }
    return in_leaf;
  }

  // Widening on load: a cast from bf16 to f32 (exact: every bf16 value is an f32 value) whose
  // readers all load either dtype and compute in f32 (elementwise ops, reductions, softmax,
  // rms_norm, cross_entropy, casts) does not run; in this copy of the graph they read its bf16
  // input instead. Bit for bit the same results, one pass over the cast's output saved, and the
  // readers load half the bytes. (Selective precision casts every bf16 einsum result to f32.)
  void read_bf16_through_casts() {
    const size_t nv = g.values.size();
    std::vector<bool> kept(nv, false);
    for (const GraphOutput& o : g.outputs) kept[static_cast<size_t>(o.value.v)] = true;
    if (g.loss.valid()) kept[static_cast<size_t>(g.loss.v)] = true;
    auto loads_any_float = [](OpKind k) {
      switch (k) {
        case OpKind::add: case OpKind::sub: case OpKind::mul: case OpKind::div: case OpKind::relu_grad:
        case OpKind::gelu_grad: case OpKind::scale: case OpKind::relu: case OpKind::gelu: case OpKind::exp:
        case OpKind::log: case OpKind::rsqrt: case OpKind::cast: case OpKind::reduce_sum: case OpKind::reduce_mean:
        case OpKind::reduce_max: case OpKind::softmax: case OpKind::rms_norm: case OpKind::cross_entropy:
          return true;
        default: return false;
      }
    };
    std::vector<bool> all_load_any(nv, true);  // per value: every reader loads either dtype
    std::vector<int> readers(nv, 0);
    for (const Node& n : g.nodes)
      for (ValueId v : n.inputs) {
        ++readers[static_cast<size_t>(v.v)];
        if (!loads_any_float(n.kind)) all_load_any[static_cast<size_t>(v.v)] = false;
      }
    std::vector<ValueId> source(nv);  // per value: the bf16 value its readers read instead
    for (Node& n : g.nodes) {
      for (ValueId& v : n.inputs)
        if (source[static_cast<size_t>(v.v)].valid()) v = source[static_cast<size_t>(v.v)];
      if (n.kind != OpKind::cast || duplicate[static_cast<size_t>(n.id.v)] || n.outputs.size() != 1) continue;
      const ValueId x = n.inputs.at(0), y = n.outputs[0];
      const auto i = static_cast<size_t>(y.v);
      if (g.type(x).dtype != DType::bf16 || g.type(y).dtype != DType::f32 || kept[i] || readers[i] == 0 ||
          !all_load_any[i])
        continue;
      source[i] = x;
      duplicate[static_cast<size_t>(n.id.v)] = true;  // runs nowhere, like a duplicate
      n.inputs.clear();
      n.outputs.clear();
    }
  }

  const Value& value(ValueId v, const char* what) const {
    if (!v.valid() || static_cast<size_t>(v.v) >= g.values.size())
      throw InputError(fmt::format("executor {}: value {} does not exist (the graph has {} values)", what, v.v, g.values.size()));
    return g.value(v);
  }

  std::byte* ptr(ValueId v) const {
    const size_t i = static_cast<size_t>(canonical[static_cast<size_t>(v.v)]);
    if (leaf[i]) return leaf[i].get();
    if (leaf_of[i] >= 0) return leaf[static_cast<size_t>(leaf_of[i])].get();
    return arena.get() + plan.value_offset[i];
  }

  void run_reference(const Node& n) {
    std::vector<Tensor> in_t, out_t;
    in_t.reserve(n.inputs.size());
    for (ValueId v : n.inputs) in_t.push_back(to_tensor(ptr(v), g.type(v)));
    for (ValueId v : n.outputs) out_t.emplace_back(g.type(v));
    std::vector<const Tensor*> in;
    std::vector<Tensor*> out;
    for (const Tensor& t : in_t) in.push_back(&t);
    for (Tensor& t : out_t) out.push_back(&t);
    op_def(n.kind).forward(n.attrs, in, out, /*exact=*/false);
    for (size_t i = 0; i < n.outputs.size(); ++i) from_tensor(out_t[i], ptr(n.outputs[i]));
  }

  // The one dispatcher: every kind says whether it has a fast kernel. A fast kernel returns false
  // for shapes it does not cover, and the reference forward runs instead.
  void run_node(const Node& n) {
    if (duplicate[static_cast<size_t>(n.id.v)]) return;  // runs nowhere (its inputs and outputs are cleared)
    const auto ptr_of = [&](ValueId v) { return ptr(v); };
    if (sparse) {  // one-hot values and what reads them (executor/sparse_einsum.hpp)
      // The sparse paths read their dense operands at the coordinates of the sparse operand's (or
      // the mask's) nonzeros: tails zero-filled first unless those lie before them.
      if (ragged && n.kind == OpKind::einsum && (ragged->has_tails(n.inputs.at(0)) || ragged->has_tails(n.inputs.at(1)))) {
        ValueId p = sparse->mask_of(n.id);
        for (size_t i = 0; i < 2 && !p.valid(); ++i)
          if (sparse->maybe_sparse(n.inputs[i]) && !ragged->has_tails(n.inputs[i])) p = n.inputs[i];
        if (p.valid()) {
          const exec::Nonzeros* nz = sparse->nonzeros_of(p, ptr_of);
          if (!nz || !ragged->covers(n, p, *nz)) ragged->materialize_inputs(n, ptr_of);
        }
      }
      if (sparse->run(n, ptr_of)) return;
      sparse->materialize_inputs(n, ptr_of);
    }
    if (ragged) {  // expert buffers over their routed rows (executor/ragged_rows.hpp)
      if (ragged->run_elementwise(n, ptr_of)) return;
      if (n.kind == OpKind::einsum && einsum[static_cast<size_t>(n.id.v)] &&
          ragged->run_einsum(n, *einsum[static_cast<size_t>(n.id.v)], stream, ptr_of))
        return;
      // Every member of the group calls it (they agree on the path inside).
      if (opts.communicator && n.kind == OpKind::all_to_all) {
        const ValueId x = n.inputs.at(0), y = n.outputs.at(0);
        exec::RowTails ty;
        if (exec::ragged_all_to_all(*opts.communicator, std::get<CollectiveAttrs>(n.attrs), g.type(x), ptr(x),
                                    ragged->tails(x), g.type(y), ptr(y), ty)) {
          ragged->set_tails(y, std::move(ty));
          return;
        }
      }
      ragged->materialize_inputs(n, ptr_of);
    }
    if (opts.communicator && is_collective(n.kind))  // across the mesh (executor/mpi/communicator.hpp)
      return run_collective(*opts.communicator, n.kind, std::get<CollectiveAttrs>(n.attrs), g.type(n.inputs.at(0)),
                            ptr(n.inputs.at(0)), g.type(n.outputs.at(0)), ptr(n.outputs.at(0)));
    if (!opts.fast_kernels) return run_reference(n);
    auto in = [&](size_t i) { return exec::ConstView{ptr(n.inputs.at(i)), g.type(n.inputs.at(i))}; };
    auto out = [&](size_t i) { return exec::View{ptr(n.outputs.at(i)), g.type(n.outputs.at(i))}; };
    auto unary = [&](exec::UnaryOp op, const ScaleAttrs& s = {}) { return exec::unary(op, s, in(0), out(0)); };
    auto binary = [&](exec::BinaryOp op) { return exec::binary(op, in(0), in(1), out(0)); };
    auto reduce = [&](exec::ReduceOp op) { return exec::reduce(op, std::get<DimsAttrs>(n.attrs).dims, in(0), out(0)); };
    auto ins = [&] {
      std::vector<exec::ConstView> v;
      for (size_t i = 0; i < n.inputs.size(); ++i) v.push_back(in(i));
      return v;
    };
    auto outs = [&] {
      std::vector<exec::View> v;
      for (size_t i = 0; i < n.outputs.size(); ++i) v.push_back(out(i));
      return v;
    };
    bool done = false;
    switch (n.kind) {
      // Fast: TBB loops (executor/kernels.cpp).
      case OpKind::add: done = binary(exec::BinaryOp::add); break;
      case OpKind::sub: done = binary(exec::BinaryOp::sub); break;
      case OpKind::mul: done = binary(exec::BinaryOp::mul); break;
      case OpKind::div: done = binary(exec::BinaryOp::div); break;
      case OpKind::relu_grad: done = binary(exec::BinaryOp::relu_grad); break;
      case OpKind::gelu_grad: done = binary(exec::BinaryOp::gelu_grad); break;
      case OpKind::scale: done = unary(exec::UnaryOp::scale, std::get<ScaleAttrs>(n.attrs)); break;
      case OpKind::relu: done = unary(exec::UnaryOp::relu); break;
      case OpKind::gelu: done = unary(exec::UnaryOp::gelu); break;
      case OpKind::exp: done = unary(exec::UnaryOp::exp); break;
      case OpKind::log: done = unary(exec::UnaryOp::log); break;
      case OpKind::rsqrt: done = unary(exec::UnaryOp::rsqrt); break;
      case OpKind::cast:
        done = unary(exec::UnaryOp::cast);
        break;
      case OpKind::reduce_sum: done = reduce(exec::ReduceOp::sum); break;
      case OpKind::reduce_mean: done = reduce(exec::ReduceOp::mean); break;
      case OpKind::reduce_max: done = reduce(exec::ReduceOp::max); break;
      case OpKind::softmax: done = exec::softmax(std::get<DimAttrs>(n.attrs).dim.name, in(0), out(0)); break;
      case OpKind::cross_entropy: done = exec::cross_entropy(std::get<DimAttrs>(n.attrs).dim.name, in(0), in(1), out(0)); break;
      case OpKind::one_hot: done = exec::one_hot(in(0), out(0)); break;
      case OpKind::rms_norm: {
        const auto& a = std::get<RmsNormAttrs>(n.attrs);
        done = exec::rms_norm(a.dim, a.eps, in(0), in(1), out(0));
        break;
      }
      case OpKind::transpose:
        if (in(0).type.dtype == out(0).type.dtype) {
          exec::permute_copy(in(0), out(0));
          done = true;
        }
        break;
      case OpKind::after:  // an optimization barrier: x itself (the control inputs only order it)
      case OpKind::reshape:
        if (in(0).type.dtype == out(0).type.dtype) {
          std::memcpy(out(0).data, in(0).data, static_cast<size_t>(num_bytes(in(0).type)));
          done = true;
        }
        break;
      // Fast: row gather and scatter-add (executor/index_kernels.cpp).
      case OpKind::embedding: done = exec::embedding(in(0), in(1), out(0)); break;
      case OpKind::embedding_grad: done = exec::embedding_grad(in(0), in(1), out(0)); break;
      // Fast: oneDNN matmul (executor/einsum.cpp), planned at construction.
      case OpKind::einsum:
        if (const auto& k = einsum[static_cast<size_t>(n.id.v)]) {
          const auto& off = plan.workspace_offset[static_cast<size_t>(n.id.v)];
          std::array<std::byte*, 3> ws{};
          for (size_t i = 0; i < ws.size(); ++i) ws[i] = off[i] >= 0 ? arena.get() + off[i] : nullptr;
          k->run(in(0).data, in(1).data, out(0).data, ws, stream);
          done = true;
        }
        break;
      // Reference forward (ops/*.cpp).
      case OpKind::greater:
      case OpKind::where:
      case OpKind::dropout:
      case OpKind::fill:
      case OpKind::random:
      case OpKind::broadcast:
      case OpKind::logsumexp:
      case OpKind::top_k:
      case OpKind::cumsum:
      case OpKind::gather:
      case OpKind::scatter_add:
      // Collectives: without a communicator, the identity over mesh axes of size 1 (with one, they
      // never get here).
      case OpKind::all_reduce:
      case OpKind::all_gather:
      case OpKind::reduce_scatter:
      case OpKind::all_to_all:
      case OpKind::shard_slice:
        break;
      // Fast: optimizer updates and statistics (executor/train/optimizer_kernels.cpp).
      case OpKind::mean_square: done = exec::mean_square(std::get<DimsAttrs>(n.attrs), ins(), outs()); break;
      case OpKind::adafactor_moment: done = exec::adafactor_moment(std::get<AdafactorAttrs>(n.attrs), ins(), outs()); break;
      case OpKind::adafactor_update: done = exec::adafactor_update(std::get<AdafactorAttrs>(n.attrs), ins(), outs()); break;
      case OpKind::adamw_update: done = exec::adamw_update(std::get<AdamWAttrs>(n.attrs), ins(), outs()); break;
    }
    if (!done) run_reference(n);
  }
};

Executor::Executor(const Graph& g, ExecutorOptions opts) : impl_(std::make_unique<Impl>(g, opts)) {}
Executor::~Executor() = default;

void Executor::set(ValueId leaf, const Tensor& t) {
  const Value& v = impl_->value(leaf, "set");
  if (v.role == ValueRole::computed)
    throw InputError(fmt::format("executor set: value {} is computed by {}, only inputs and parameters can be set", leaf.v,
                                 impl_->g.describe(v.producer)));
  if (t.type != v.type)
    throw InputError(fmt::format("executor set: leaf '{}' is {} but the tensor given is {}", v.name, to_string(v.type),
                                 to_string(t.type)));
  if (t.size() != num_elements(v.type.shape))
    throw InputError(fmt::format("executor set: leaf '{}' {} needs {} elements, the tensor holds {}", v.name,
                                 to_string(v.type), num_elements(v.type.shape), t.size()));
  if (v.type.dtype == DType::i32)
    for (int64_t i = 0; i < t.size(); ++i) {
      const double x = t.data[static_cast<size_t>(i)];
      if (x != std::trunc(x) || x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
        throw InputError(fmt::format("executor set: leaf '{}' is i32 but element {} is {} (must be an integer in i32 range)",
                                     v.name, i, x));
    }
  from_tensor(t, impl_->ptr(leaf));
  impl_->leaf_set[static_cast<size_t>(leaf.v)] = true;
}

void* Executor::data(ValueId v) {
  const Value& val = impl_->value(v, "data");
  const size_t i = static_cast<size_t>(v.v);
  if (val.role != ValueRole::computed) {
    impl_->leaf_set[i] = true;  // the caller writes it
  } else if (!impl_->plan.kept[static_cast<size_t>(impl_->canonical[i])]) {
    throw InputError(fmt::format("executor data: value {} (output of {}) is not kept; only leaves and graph outputs have "
                                 "storage that outlives its last use",
                                 v.v, impl_->g.describe(val.producer)));
  }
  return impl_->ptr(v);
}

void Executor::run() { run_nodes(0, impl_->g.nodes.size()); }

void Executor::run_nodes(size_t first, size_t last) {
  Impl& m = *impl_;
  SY_CHECK(first <= last && last <= m.g.nodes.size(), "executor run_nodes: [{}, {}) of {} nodes", first, last,
           m.g.nodes.size());
  SY_CHECK(first == 0 || m.ran_to == first, "executor run_nodes: from node {}, but the run stopped at {}", first, m.ran_to);
  if (first == 0) {
    for (const Value& v : m.g.values)
      if (m.leaf_needed[static_cast<size_t>(v.id.v)] && !m.leaf_set[static_cast<size_t>(v.id.v)])
        throw InputError(fmt::format("executor run: leaf '{}' {} was never set (call set() or write through data())", v.name,
                                     to_string(v.type)));
    if (m.sparse) m.sparse->begin_run();
    if (m.ragged) m.ragged->begin_run();
  }
  omp_set_num_threads(m.threads);
  m.ran_to = last;
  if (m.opts.on_op) {
    using Clock = std::chrono::steady_clock;
    auto us = [](Clock::time_point t) { return std::chrono::duration<double, std::micro>(t.time_since_epoch()).count(); };
    for (size_t i = first; i < last; ++i) {
      const Node& n = m.g.nodes[i];
      if (m.duplicate[static_cast<size_t>(n.id.v)]) {  // runs nowhere: reported with begin == end
        const double t = us(Clock::now());
        m.opts.on_op(n.id, t, t);
        continue;
      }
      const auto begin = Clock::now();
      m.run_node(n);
      m.opts.on_op(n.id, us(begin), us(Clock::now()));
    }
  } else {
    for (size_t i = first; i < last; ++i) m.run_node(m.g.nodes[i]);
  }
  if (last < m.g.nodes.size()) return;
  if (m.ragged) {  // outputs complete: their zero tails written
    const auto ptr_of = [&](ValueId v) { return m.ptr(v); };
    for (const GraphOutput& o : m.g.outputs) m.ragged->materialize(o.value, ptr_of);
    if (m.g.loss.valid()) m.ragged->materialize(m.g.loss, ptr_of);
  }
  for (const LeafUpdate& u : m.copied)
    std::memcpy(m.ptr(u.leaf), m.ptr(u.value), static_cast<size_t>(num_bytes(m.g.type(u.leaf))));
  m.ran = true;
}

Tensor Executor::get(ValueId v) const {
  const Value& val = impl_->value(v, "get");
  const size_t i = static_cast<size_t>(v.v);
  if (val.role == ValueRole::computed) {
    if (!impl_->plan.kept[static_cast<size_t>(impl_->canonical[i])])
      throw InputError(fmt::format("executor get: value {} (output of {}) is not a graph output; its buffer is reused "
                                   "(add it with Builder::output to read it)",
                                   v.v, impl_->g.describe(val.producer)));
    if (!impl_->ran) throw InputError(fmt::format("executor get: value {} is read before run()", v.v));
  }
  return to_tensor(impl_->ptr(v), val.type);
}

const MemoryPlanStats& Executor::memory() const { return impl_->stats; }

Executor::RaggedStats Executor::ragged_stats() const {
  if (!impl_->ragged) return {};
  const auto& s = impl_->ragged->stats();
  return {s.ops, s.rows_skipped, s.rows, s.all_to_alls};
}

Executor::SparseStats Executor::sparse_stats() const {
  if (!impl_->sparse) return {};
  return {impl_->sparse->stats().deferred, impl_->sparse->stats().materialized};
}

}  // namespace sy
