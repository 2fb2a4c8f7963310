// The executor across MPI ranks (executor/communicator, mpi_communicator, mesh_executor). Hidden
// ([.mpi]): they need 4 ranks, so ctest runs them through tests/mpi/executor_collectives.sh as
// `mpiexec -n 4 --oversubscribe sy_tests "[mpi]"`; every rank checks its own results.
//
// The oracle is the definition in ops/collective.cpp (the same as the SPMD reference run of
// tests/graph/test_lower.cpp): each rank computes every group member's input (a function of the
// member's device number), forms the expected output from them, and compares it with what the
// collective returned over MPI.
#include "exec_test_util.hpp"
#include "tests/common/moe_test_graph.hpp"

#include "executor/mpi/communicator.hpp"
#include "executor/mpi/mesh_executor.hpp"
#include "executor/mpi/mpi_communicator.hpp"
#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/models/moe.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <memory>

using namespace sy;

namespace {

MpiSession& mpi() {
  static MpiSession session(nullptr, nullptr);
  return session;
}

std::shared_ptr<MpiCommunicator> communicator(const std::string& mesh) {
  mpi();
  return std::make_shared<MpiCommunicator>(parse_mesh(mesh));
}

// Device d's input: distinct values per device and element, exact in bf16 (multiples of 1/8
// below 32).
Tensor input_of(int64_t device, const TensorType& t) {
  Tensor x(t);
  for (size_t i = 0; i < x.data.size(); ++i)
    x.data[i] = t.dtype == DType::i32 ? static_cast<double>(device * 1000 + static_cast<int64_t>(i))
                                      : static_cast<double>((device * 37 + static_cast<int64_t>(i) * 11) % 200) / 8.0 - 12.0;
  return x;
}

// Block `index` of `count` along `dim`, and the concatenation along `dim` (as test_lower.cpp).
Tensor block(const Tensor& t, const std::string& dim, int64_t index, int64_t count) {
  Sharding s;
  s.dim[0] = static_cast<int8_t>(*dim_index(t.shape(), dim));
  const Mesh m{{{"x", count}}};
  Tensor out(TensorType{local_shape(t.shape(), s, m), t.dtype()});
  copy_block(t.data.data(), out.data.data(), t.shape(), sizeof(double), s, m, {index});
  return out;
}

Tensor concat(const std::vector<Tensor>& parts, const std::string& dim) {
  const size_t p = *dim_index(parts[0].shape(), dim);
  Shape s = parts[0].shape();
  const int64_t part = s[p].size;
  s[p].size *= static_cast<int64_t>(parts.size());
  Tensor out(TensorType{s, parts[0].dtype()});
  int64_t inner = 1, outer = 1;
  for (size_t i = p + 1; i < s.size(); ++i) inner *= s[i].size;
  for (size_t i = 0; i < p; ++i) outer *= s[i].size;
  const auto count = static_cast<int64_t>(parts.size());
  for (int64_t k = 0; k < count; ++k)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < part * inner; ++j)
        out.data[static_cast<size_t>((o * count + k) * part * inner + j)] =
            parts[static_cast<size_t>(k)].data[static_cast<size_t>(o * part * inner + j)];
  return out;
}

// Storage <-> Tensor in the tensor's dtype.
std::vector<std::byte> bytes_of(const Tensor& t) {
  std::vector<std::byte> b(static_cast<size_t>(num_bytes(t.type)));
  for (size_t i = 0; i < t.data.size(); ++i) {
    if (t.dtype() == DType::f32) reinterpret_cast<float*>(b.data())[i] = static_cast<float>(t.data[i]);
    if (t.dtype() == DType::bf16) reinterpret_cast<uint16_t*>(b.data())[i] = f32_to_bf16(static_cast<float>(t.data[i]));
    if (t.dtype() == DType::i32) reinterpret_cast<int32_t*>(b.data())[i] = static_cast<int32_t>(t.data[i]);
  }
  return b;
}

Tensor tensor_of(const std::vector<std::byte>& b, const TensorType& t) {
  Tensor r(t);
  for (size_t i = 0; i < r.data.size(); ++i) {
    if (t.dtype == DType::f32) r.data[i] = reinterpret_cast<const float*>(b.data())[i];
    if (t.dtype == DType::bf16) r.data[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(b.data())[i]);
    if (t.dtype == DType::i32) r.data[i] = reinterpret_cast<const int32_t*>(b.data())[i];
  }
  return r;
}

// Runs one collective over MPI and checks it against the definition.
void check_collective(Communicator& comm, OpKind kind, const CollectiveAttrs& a, const TensorType& in) {
  const Mesh& mesh = comm.mesh();
  const std::vector<size_t> axes = collective_axes(comm, a);
  const int64_t n = mesh_group_size(mesh, axes);
  const int64_t me = mesh_group_index(comm, axes);
  // The group's members in group order: this device's coords with the listed axes row-major.
  std::vector<Tensor> xs;
  for (int64_t k = 0; k < n; ++k) {
    auto c = mesh.coords(comm.device());
    int64_t rest = k;
    for (size_t i = axes.size(); i-- > 0;) {
      c[axes[i]] = rest % mesh.axes[axes[i]].size;
      rest /= mesh.axes[axes[i]].size;
    }
    xs.push_back(input_of(mesh.device_at(c), in));
  }
  auto reduce_all = [&] {
    Tensor acc = xs[0];
    for (size_t k = 1; k < xs.size(); ++k)
      for (size_t i = 0; i < acc.data.size(); ++i)
        acc.data[i] = a.reduce == ReduceOp::max ? std::max(acc.data[i], xs[k].data[i]) : acc.data[i] + xs[k].data[i];
    if (a.reduce == ReduceOp::mean)
      for (double& x : acc.data) x /= static_cast<double>(n);
    return acc;
  };
  Tensor want;
  switch (kind) {
    case OpKind::all_reduce: want = reduce_all(); break;
    case OpKind::all_gather: want = concat(xs, a.gather_dim); break;
    case OpKind::reduce_scatter: want = block(reduce_all(), a.scatter_dim, me, n); break;
    case OpKind::all_to_all: {
      std::vector<Tensor> parts;
      for (const Tensor& x : xs) parts.push_back(block(x, a.scatter_dim, me, n));
      want = concat(parts, a.gather_dim);
      break;
    }
    case OpKind::shard_slice: want = block(xs[static_cast<size_t>(me)], a.scatter_dim, me, n); break;
    default: FAIL("not a collective");
  }
  const std::vector<std::byte> x = bytes_of(input_of(comm.device(), in));
  std::vector<std::byte> y(static_cast<size_t>(num_bytes(want.type)));
  run_collective(comm, kind, a, in, x.data(), want.type, y.data());
  const Tensor got = tensor_of(y, want.type);
  INFO(op_name(kind) << " on device " << comm.device() << " of " << to_string(mesh) << ", " << to_string(in));
  for (size_t i = 0; i < want.data.size(); ++i) REQUIRE(got.data[i] == Approx(round_to(in.dtype, want.data[i])).epsilon(1e-6));
}

CollectiveAttrs attrs(const Mesh& mesh, const std::vector<std::string>& axes, std::string gather = {},
                      std::string scatter = {}, ReduceOp r = ReduceOp::sum) {
  CollectiveAttrs a;
  for (const std::string& name : axes) a.axes.push_back(Dim{name, mesh.axes[*mesh.axis_index(name)].size});
  a.gather_dim = std::move(gather);
  a.scatter_dim = std::move(scatter);
  a.reduce = r;
  return a;
}

}  // namespace

TEST_CASE("MPI collectives cut and join blocks as ops/collective.cpp defines", "[.mpi]") {
  REQUIRE(mpi().size() == 4);
  auto comm = communicator("a:2,b:2");
  const Mesh& mesh = comm->mesh();
  const TensorType t{{{"p", 4}, {"q", 12}, {"r", 4}}, DType::f32};
  // Axis lists in mesh order, reversed (group ranks follow the listed order), and single axes.
  for (const std::vector<std::string>& axes : std::vector<std::vector<std::string>>{{"a"}, {"b"}, {"a", "b"}, {"b", "a"}}) {
    for (ReduceOp r : {ReduceOp::sum, ReduceOp::mean, ReduceOp::max}) {
      check_collective(*comm, OpKind::all_reduce, attrs(mesh, axes, {}, {}, r), t);
      check_collective(*comm, OpKind::all_reduce, attrs(mesh, axes, {}, {}, r), TensorType{t.shape, DType::bf16});
      check_collective(*comm, OpKind::reduce_scatter, attrs(mesh, axes, {}, "r", r), t);
    }
    check_collective(*comm, OpKind::all_reduce, attrs(mesh, axes), TensorType{t.shape, DType::i32});
    check_collective(*comm, OpKind::reduce_scatter, attrs(mesh, axes, {}, "p"), TensorType{t.shape, DType::bf16});
    for (const char* d : {"p", "q", "r"}) {
      check_collective(*comm, OpKind::all_gather, attrs(mesh, axes, d), t);
      check_collective(*comm, OpKind::all_gather, attrs(mesh, axes, d), TensorType{t.shape, DType::i32});
      check_collective(*comm, OpKind::shard_slice, attrs(mesh, axes, {}, d), t);
    }
    check_collective(*comm, OpKind::all_to_all, attrs(mesh, axes, "p", "r"), t);  // group -> experts at a dispatch
    check_collective(*comm, OpKind::all_to_all, attrs(mesh, axes, "r", "p"), t);
    check_collective(*comm, OpKind::all_to_all, attrs(mesh, axes, "q", "p"), TensorType{t.shape, DType::bf16});
  }
}

TEST_CASE("MPI blocks of global tensors: copy_block and assemble_global invert each other", "[.mpi]") {
  REQUIRE(mpi().size() == 4);
  auto comm = communicator("a:2,b:2");
  const Mesh& mesh = comm->mesh();
  const Shape shape{{"p", 4}, {"q", 3}, {"r", 8}};
  const Tensor global = input_of(7, TensorType{shape, DType::f32});
  std::vector<Sharding> cases(4);
  cases[1].dim[0] = 2;                     // r over a
  cases[2].dim[0] = 0, cases[2].dim[1] = 2;  // p over a, r over b
  cases[3].dim[0] = 2, cases[3].dim[1] = 2;  // r over a, then over b (nested)
  for (const Sharding& s : cases) {
    Tensor local(TensorType{local_shape(shape, s, mesh), DType::f32});
    copy_block(global.data.data(), local.data.data(), shape, sizeof(double), s, mesh, mesh.coords(comm->device()));
    Tensor back(global.type);
    assemble_global(*comm, local.data.data(), back.data.data(), shape, sizeof(double), s);
    CHECK(back.data == global.data);
  }
}

// Runs g lowered for `mesh` and `layout` with the global leaves; every graph output must equal
// the single-process `want` within 1e-5. Returns the run's ragged-rows counters.
Executor::RaggedStats run_on_mesh(const Graph& g, const std::map<ValueId, Tensor>& leaves, const std::vector<Tensor>& want,
                                  const std::string& mesh, const std::string& layout) {
  ExecutorOptions opts;
  opts.threads = 1;
  opts.communicator = communicator(mesh);
  MeshExecutor ex(g, parse_layout(layout, opts.communicator->mesh()), opts);
  REQUIRE(ex.distributed());
  for (const auto& [v, t] : leaves) ex.set(v, t);
  ex.run();
  for (const GraphOutput& o : g.outputs) {
    INFO("output " << o.name << " on " << mesh << " with " << layout);
    CHECK(test::max_rel_err(ex.get(o.value), want[static_cast<size_t>(o.value.v)]) < 1e-5);
  }
  return ex.ragged_stats();
}

TEST_CASE("MPI mesh executor: lowered MLP and MoE layer with gradients match the single-process run", "[.mpi]") {
  REQUIRE(mpi().size() == 4);
  // An MoE layer with a parameter before it (so gradients flow back through the dispatch).
  test::MoeTestGraph o;
  o.batch = 4, o.length = 4, o.d_model = 4, o.d_ff = 8;
  const Graph g = test::moe_training_graph(o);
  const auto leaves = test::random_leaves(g, 3);
  const std::vector<Tensor> want = interpret(g, leaves);
  for (const auto& [mesh, layout] : std::vector<std::pair<std::string, std::string>>{
           {"data:4", "batch:data,experts:data"},
           {"data:2,model:2", "batch:data,experts:data,d_ff:model"},
           {"data:2,expert:2", "batch:data,experts:expert"},
           {"model:4", "d_ff:model"}})
    run_on_mesh(g, leaves, want, mesh, layout);
}

TEST_CASE("MPI mesh executor: a dropless MoE layer moves only routed rows and matches the single-process run", "[.mpi]") {
  REQUIRE(mpi().size() == 4);
  // 8 groups of 32 tokens to 4 experts, top-2, dropless (C = S = 32): dispatch [G, S, E, C] is kept
  // as nonzeros on every device (above kMinSparse, a quarter of it at most nonzero), so the expert
  // buffers have zero tails, and the expert-parallel all_to_all moves the routed rows only.
  test::MoeTestGraph o;
  o.batch = 8, o.length = 32, o.d_model = 4, o.d_ff = 8;
  o.dropless = true;
  const Graph g = test::moe_training_graph(o);
  const auto leaves = test::random_leaves(g, 3);
  const std::vector<Tensor> want = interpret(g, leaves);
  struct Case {
    std::string mesh, layout;
    bool all_to_all;  // batch and experts on one axis: tokens travel to their experts
  };
  for (const Case& c : std::vector<Case>{{"data:4", "batch:data,experts:data", true},
                                         {"data:2,model:2", "batch:data,experts:data,d_ff:model", true},
                                         {"data:2,expert:2", "batch:data,experts:expert", false}}) {
    const Executor::RaggedStats st = run_on_mesh(g, leaves, want, c.mesh, c.layout);
    if (!c.all_to_all) continue;
    // The all_to_alls (dispatch and combine, forward and backward) and the expert computation ran
    // over tails: with 4 experts and top-2, half of every expert buffer on average is zero rows.
    INFO(c.mesh << " " << c.layout << ": " << st.ops << " ragged ops, " << st.rows_skipped << " of " << st.rows << " rows skipped");
    CHECK(st.ops >= 4);
    CHECK(st.all_to_alls >= 2);  // tokens to their experts; d expert_out back to them
    CHECK(st.rows_skipped * 4 >= st.rows);
  }
}
