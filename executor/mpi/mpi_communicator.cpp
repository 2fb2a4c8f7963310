#include "executor/mpi/mpi_communicator.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>

namespace sy {
namespace {

int checked_int(int64_t n, const char* what) {
  SY_CHECK(n >= 0 && n <= INT_MAX, "MPI: {} = {} does not fit an int count", what, n);
  return static_cast<int>(n);
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean: return MPI_SUM;  // mean: divided afterwards
    case ReduceOp::max: return MPI_MAX;
  }
  return MPI_SUM;
}

// f32 and i32 reduce natively; bf16 is widened to f32, reduced, and rounded back.
MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32:
    case DType::bf16: return MPI_FLOAT;
    case DType::i32: return MPI_INT;
  }
  return MPI_FLOAT;
}

std::vector<float> widen(const void* p, int64_t count) {
  std::vector<float> f(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) f[static_cast<size_t>(i)] = bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return f;
}

void narrow(const std::vector<float>& f, void* p) {
  for (size_t i = 0; i < f.size(); ++i) static_cast<uint16_t*>(p)[i] = f32_to_bf16(f[i]);
}

// mean = sum / n, in the buffer's dtype (f32 or i32; bf16 arrives widened).
void divide(void* p, int64_t count, MPI_Datatype t, int64_t n) {
  if (t == MPI_INT) {
    for (int64_t i = 0; i < count; ++i) static_cast<int32_t*>(p)[i] /= static_cast<int32_t>(n);
  } else {
    for (int64_t i = 0; i < count; ++i) static_cast<float*>(p)[i] /= static_cast<float>(n);
  }
}

}  // namespace

// ---------------------------------------------------------------- session

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  }
}

MpiSession::~MpiSession() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (!finalised) MPI_Finalize();
}

int MpiSession::rank() const {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int MpiSession::size() const {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

void MpiSession::barrier() const { MPI_Barrier(MPI_COMM_WORLD); }

void MpiSession::abort(int code, const std::string& message) const {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

bool MpiSession::launched() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

int MpiSession::launched_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(name)) return std::max(1, std::atoi(v));
  return 1;
}

int MpiSession::launched_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK"})
    if (const char* v = std::getenv(name)) return std::max(0, std::atoi(v));
  return 0;
}

// ---------------------------------------------------------------- communicator

struct MpiCommunicator::Impl {
  Mesh mesh;
  int rank = 0;
  Watchdog watchdog;

  // The watchdog's guard over one collective: "all_reduce over [data] of 8.0 MiB".
  Watchdog::Guard watch(const char* kind, const std::vector<size_t>& axes, int64_t bytes) {
    std::string names;
    for (size_t a : axes) names += (names.empty() ? "" : ",") + mesh.axes[a].name;
    return watchdog.watch(fmt::format("{} over [{}] of {} bytes", kind, names, bytes));
  }
  MPI_Comm cart = MPI_COMM_NULL;
  std::map<std::vector<size_t>, MPI_Comm> groups;  // by the axes as a collective lists them

  // The communicator of this device's group over `axes` (ranks in group-index order).
  MPI_Comm group(const std::vector<size_t>& axes) {
    auto it = groups.find(axes);
    if (it != groups.end()) return it->second;
    bool ascending = true;
    for (size_t i = 1; i < axes.size(); ++i) ascending = ascending && axes[i - 1] < axes[i];
    MPI_Comm c = MPI_COMM_NULL;
    if (ascending) {
      std::vector<int> remain(mesh.axes.size(), 0);
      for (size_t a : axes) remain[a] = 1;
      MPI_Cart_sub(cart, remain.data(), &c);
    } else {
      // color: the coordinates off the axes; key: the group index over the axes as listed.
      std::vector<int64_t> coords = mesh.coords(rank);
      int64_t key = 0;
      for (size_t a : axes) {
        key = key * mesh.axes[a].size + coords[a];
        coords[a] = 0;
      }
      MPI_Comm_split(cart, static_cast<int>(mesh.device_at(coords)), static_cast<int>(key), &c);
    }
    groups.emplace(axes, c);
    return c;
  }

  int64_t size_of(const std::vector<size_t>& axes) const { return mesh_group_size(mesh, axes); }
};

MpiCommunicator::MpiCommunicator(const Mesh& mesh) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.mesh = mesh;
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != mesh.devices())
    throw InputError(fmt::format("mesh {} has {} devices but the job has {} MPI ranks (start it with mpiexec -n {})",
                                 to_string(mesh), mesh.devices(), world, mesh.devices()));
  std::vector<int> dims, periods;
  for (const MeshAxis& a : mesh.axes) {
    dims.push_back(static_cast<int>(a.size));
    periods.push_back(0);
  }
  MPI_Cart_create(MPI_COMM_WORLD, static_cast<int>(dims.size()), dims.data(), periods.data(), /*reorder=*/0, &m.cart);
  MPI_Comm_rank(m.cart, &m.rank);
}

MpiCommunicator::~MpiCommunicator() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (finalised) return;
  for (auto& [axes, c] : impl_->groups) MPI_Comm_free(&c);
  MPI_Comm_free(&impl_->cart);
}

const Mesh& MpiCommunicator::mesh() const { return impl_->mesh; }
Watchdog& MpiCommunicator::watchdog() { return impl_->watchdog; }
int64_t MpiCommunicator::device() const { return impl_->rank; }

void MpiCommunicator::all_reduce(void* data, int64_t count, DType dtype, ReduceOp op, const std::vector<size_t>& axes) {
  MPI_Comm c = impl_->group(axes);
  const int n = checked_int(count, "all_reduce count");
  const auto guard = impl_->watch("all_reduce", axes, count * static_cast<int64_t>(dtype_bytes(dtype)));
  const MPI_Datatype t = mpi_type(dtype);
  if (dtype == DType::bf16) {
    std::vector<float> f = widen(data, count);
    MPI_Allreduce(MPI_IN_PLACE, f.data(), n, t, mpi_op(op), c);
    if (op == ReduceOp::mean) divide(f.data(), count, t, impl_->size_of(axes));
    narrow(f, data);
    return;
  }
  MPI_Allreduce(MPI_IN_PLACE, data, n, t, mpi_op(op), c);
  if (op == ReduceOp::mean) divide(data, count, t, impl_->size_of(axes));
}

void MpiCommunicator::all_gather(const void* in, void* out, int64_t bytes, const std::vector<size_t>& axes) {
  const int n = checked_int(bytes, "all_gather bytes");
  const auto guard = impl_->watch("all_gather", axes, bytes);
  MPI_Allgather(in, n, MPI_BYTE, out, n, MPI_BYTE, impl_->group(axes));
}

void MpiCommunicator::reduce_scatter(const void* in, void* out, int64_t count, DType dtype, ReduceOp op,
                                     const std::vector<size_t>& axes) {
  MPI_Comm c = impl_->group(axes);
  const int n = checked_int(count, "reduce_scatter count");
  const auto guard = impl_->watch("reduce_scatter", axes, count * static_cast<int64_t>(dtype_bytes(dtype)));
  const MPI_Datatype t = mpi_type(dtype);
  if (dtype == DType::bf16) {
    const std::vector<float> f = widen(in, count * impl_->size_of(axes));
    std::vector<float> r(static_cast<size_t>(count));
    MPI_Reduce_scatter_block(f.data(), r.data(), n, t, mpi_op(op), c);
    if (op == ReduceOp::mean) divide(r.data(), count, t, impl_->size_of(axes));
    narrow(r, out);
    return;
  }
  MPI_Reduce_scatter_block(in, out, n, t, mpi_op(op), c);
  if (op == ReduceOp::mean) divide(out, count, t, impl_->size_of(axes));
}

void MpiCommunicator::all_to_all(const void* in, void* out, int64_t bytes, const std::vector<size_t>& axes) {
  const int n = checked_int(bytes, "all_to_all bytes");
  const auto guard = impl_->watch("all_to_all", axes, bytes);
  MPI_Alltoall(in, n, MPI_BYTE, out, n, MPI_BYTE, impl_->group(axes));
}

void MpiCommunicator::all_to_all_v(const void* in, const std::vector<int64_t>& send_bytes, void* out,
                                   const std::vector<int64_t>& recv_bytes, const std::vector<size_t>& axes) {
  // MPI counts and displacements are ints: each member's total must stay below 2^31 bytes.
  std::vector<int> sc(send_bytes.size()), sd(send_bytes.size()), rc(recv_bytes.size()), rd(recv_bytes.size());
  int64_t so = 0, ro = 0;
  for (size_t j = 0; j < send_bytes.size(); ++j) {
    sc[j] = checked_int(send_bytes[j], "all_to_all_v bytes");
    sd[j] = checked_int(so, "all_to_all_v offset");
    so += send_bytes[j];
  }
  for (size_t j = 0; j < recv_bytes.size(); ++j) {
    rc[j] = checked_int(recv_bytes[j], "all_to_all_v bytes");
    rd[j] = checked_int(ro, "all_to_all_v offset");
    ro += recv_bytes[j];
  }
  checked_int(so, "all_to_all_v bytes sent");
  checked_int(ro, "all_to_all_v bytes received");
  const auto guard = impl_->watch("all_to_all_v", axes, so);
  MPI_Alltoallv(in, sc.data(), sd.data(), MPI_BYTE, out, rc.data(), rd.data(), MPI_BYTE, impl_->group(axes));
}

}  // namespace sy
