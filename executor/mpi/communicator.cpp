#include "executor/mpi/communicator.hpp"

#include "executor/mpi/staging.hpp"
#include "graph/error.hpp"
#include "graph/parallel/collective_blocks.hpp"

#include <fmt/format.h>

#include <cstddef>
#include <cstring>
#include <memory>

namespace sy {
namespace {

// src [outer][n][chunk] -> dst [n][outer][chunk] (the blocks of a dim brought to the front; the
// staging graph/parallel/collective_blocks.hpp describes).
void blocks_to_front(const std::byte* src, std::byte* dst, int64_t outer, int64_t n, int64_t chunk) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < n; ++j)
      std::memcpy(dst + (j * outer + o) * chunk, src + (o * n + j) * chunk, static_cast<size_t>(chunk));
}

// src [n][outer][chunk] -> dst [outer][n][chunk] (the inverse).
void blocks_from_front(const std::byte* src, std::byte* dst, int64_t outer, int64_t n, int64_t chunk) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(dst + (o * n + j) * chunk, src + (j * outer + o) * chunk, static_cast<size_t>(chunk));
}

std::string axes_text(const CollectiveAttrs& a) {
  std::string s;
  for (const Dim& d : a.axes) s += fmt::format("{}{}:{}", s.empty() ? "" : ",", d.name, d.size);
  return s;
}

// Per dim of a block: its offset in the global array (this device's coords times the block size).
std::vector<int64_t> block_offsets(const Shape& local, const Sharding& s, const Mesh& mesh,
                                   const std::vector<int64_t>& coords) {
  // A dim split by several axes is cut by each in mesh-axis order (row-major block index).
  std::vector<int64_t> block(local.size(), 0);
  for (size_t a = 0; a < mesh.axes.size(); ++a) {
    if (s.dim[a] < 0) continue;
    const auto d = static_cast<size_t>(s.dim[a]);
    SY_CHECK(d < local.size(), "sharding splits dim {} of a rank-{} tensor", d, local.size());
    block[d] = block[d] * mesh.axes[a].size + coords[a];
  }
  for (size_t d = 0; d < local.size(); ++d) block[d] *= local[d].size;
  return block;
}

// Visits the rows (runs of the last dim) of a block: f(local byte offset, global byte offset, bytes).
template <class F>
void for_each_block_row(const Shape& global_shape, size_t elem_bytes, const Sharding& s, const Mesh& mesh,
                        const std::vector<int64_t>& coords, F&& f) {
  const Shape local = local_shape(global_shape, s, mesh);
  const size_t r = local.size();
  if (r == 0) {
    f(0, 0, static_cast<int64_t>(elem_bytes));
    return;
  }
  const std::vector<int64_t> off = block_offsets(local, s, mesh, coords);
  const std::vector<int64_t> gst = strides_of(global_shape);
  const int64_t run = local[r - 1].size;
  const int64_t rows = run == 0 ? 0 : num_elements(local) / run;
  std::vector<int64_t> idx(r - 1, 0);
  const auto eb = static_cast<int64_t>(elem_bytes);
  for (int64_t row = 0; row < rows; ++row) {
    int64_t g = off[r - 1] * gst[r - 1];
    for (size_t i = 0; i + 1 < r; ++i) g += (idx[i] + off[i]) * gst[i];
    f(row * run * eb, g * eb, run * eb);
    for (size_t i = r - 1; i-- > 0;) {
      if (++idx[i] < local[i].size) break;
      idx[i] = 0;
    }
  }
}

}  // namespace

int64_t mesh_group_size(const Mesh& mesh, const std::vector<size_t>& axes) {
  int64_t n = 1;
  for (size_t a : axes) n *= mesh.axes.at(a).size;
  return n;
}

int64_t mesh_group_index(const Communicator& comm, const std::vector<size_t>& axes) {
  const Mesh& mesh = comm.mesh();
  const std::vector<int64_t> coords = mesh.coords(comm.device());
  int64_t i = 0;
  for (size_t a : axes) i = i * mesh.axes.at(a).size + coords.at(a);
  return i;
}

std::vector<size_t> collective_axes(const Communicator& comm, const CollectiveAttrs& a) {
  const Mesh& mesh = comm.mesh();
  std::vector<size_t> axes;
  for (const Dim& d : a.axes) {
    const auto i = mesh.axis_index(d.name);
    if (!i || mesh.axes[*i].size != d.size)
      throw InputError(fmt::format("collective over axes {}: axis {}:{} is not an axis of the executor's mesh {} (the "
                                   "program was lowered for another mesh)",
                                   axes_text(a), d.name, d.size, to_string(mesh)));
    axes.push_back(*i);
  }
  return axes;
}

void run_collective(Communicator& comm, OpKind kind, const CollectiveAttrs& a, const TensorType& in, const void* x,
                    const TensorType& out, void* y) {
  const std::vector<size_t> axes = collective_axes(comm, a);
  const int64_t n = mesh_group_size(comm.mesh(), axes);
  const auto* src = static_cast<const std::byte*>(x);
  auto* dst = static_cast<std::byte*>(y);
  const int64_t in_bytes = num_bytes(in);
  const int64_t out_bytes = num_bytes(out);
  if (n == 1) {  // every kind is the identity on one device
    SY_CHECK(in_bytes == out_bytes, "{} on one device changes the size {} -> {}", op_name(kind), to_string(in), to_string(out));
    std::memcpy(dst, src, static_cast<size_t>(in_bytes));
    return;
  }
  auto expect = [&](const std::string& dim, bool scattered, int64_t out_over_in_times_n) {
    if (scattered) {
      const auto p = dim_index(in.shape, dim);
      SY_CHECK(p && in.shape[*p].size % n == 0, "{}: dim '{}' of {} does not split over {} devices", op_name(kind), dim,
               to_string(in), n);
    }
    SY_CHECK(out_bytes * n == in_bytes * out_over_in_times_n, "{} over {} devices: {} -> {}", op_name(kind), n,
             to_string(in), to_string(out));
  };
  switch (kind) {
    case OpKind::all_reduce: expect({}, false, n); break;
    case OpKind::all_gather: expect({}, false, n * n); break;
    case OpKind::reduce_scatter:
    case OpKind::shard_slice: expect(a.scatter_dim, true, 1); break;
    case OpKind::all_to_all: expect(a.scatter_dim, true, n); break;
    default: break;
  }
  // Two staging buffers per thread: all_to_all packs into one and receives into the other.
  thread_local exec::Staging send_staging, recv_staging;
  switch (kind) {
    case OpKind::all_reduce:
      // x [...] -> y [...] = reduce of every member's x.
      std::memcpy(dst, src, static_cast<size_t>(in_bytes));
      comm.all_reduce(dst, num_elements(in.shape), in.dtype, a.reduce, axes);
      return;
    case OpKind::all_gather: {
      // x [outer][slab] -> members' x [n][outer][slab] -> y [outer][n·slab] (concatenated along gather_dim).
      const Slabs s = slabs_at(in, a.gather_dim);
      if (s.outer == 1) return comm.all_gather(src, dst, in_bytes, axes);
      std::byte* recv = recv_staging.get(n * in_bytes);
      comm.all_gather(src, recv, in_bytes, axes);
      blocks_from_front(recv, dst, s.outer, n, s.slab_bytes);
      return;
    }
    case OpKind::reduce_scatter: {
      // x [outer][n][slab/n] -> [n][outer][slab/n] -> y [outer][slab/n] = reduce of the members' block i.
      const Slabs s = slabs_at(in, a.scatter_dim);
      const int64_t count = num_elements(out.shape);
      if (s.outer == 1) return comm.reduce_scatter(src, dst, count, in.dtype, a.reduce, axes);
      std::byte* send = send_staging.get(in_bytes);
      blocks_to_front(src, send, s.outer, n, s.slab_bytes / n);
      comm.reduce_scatter(send, dst, count, in.dtype, a.reduce, axes);
      return;
    }
    case OpKind::all_to_all: {
      // x [o_s][n][b_s] -> send [n][o_s][b_s]: block j of x along scatter_dim goes to member j;
      // recv [n][block] with block [o_g][c_g] along gather_dim -> y [o_g][n][c_g] (concatenated).
      const Slabs s = slabs_at(in, a.scatter_dim);
      TensorType block = in;
      for (Dim& d : block.shape)
        if (d.name == a.scatter_dim) d.size /= n;
      const Slabs g = slabs_at(block, a.gather_dim);
      const int64_t block_bytes = in_bytes / n;
      const std::byte* send_ptr = src;
      if (s.outer != 1) {
        std::byte* send = send_staging.get(in_bytes);
        blocks_to_front(src, send, s.outer, n, s.slab_bytes / n);
        send_ptr = send;
      }
      if (g.outer == 1) return comm.all_to_all(send_ptr, dst, block_bytes, axes);
      std::byte* recv = recv_staging.get(in_bytes);
      comm.all_to_all(send_ptr, recv, block_bytes, axes);
      blocks_from_front(recv, dst, g.outer, n, g.slab_bytes);
      return;
    }
    case OpKind::shard_slice: {
      // x [outer][n][slab/n] -> y [outer][slab/n]: block i, no communication.
      const Slabs s = slabs_at(in, a.scatter_dim);
      const int64_t i = mesh_group_index(comm, axes);
      const int64_t chunk = s.slab_bytes / n;
      for (int64_t o = 0; o < s.outer; ++o)
        std::memcpy(dst + o * chunk, src + (o * n + i) * chunk, static_cast<size_t>(chunk));
      return;
    }
    default: break;
  }
  SY_CHECK(false, "run_collective: {} is not a collective", op_name(kind));
}

void copy_block(const void* global, void* local, const Shape& global_shape, size_t elem_bytes, const Sharding& s,
                const Mesh& mesh, const std::vector<int64_t>& coords) {
  const auto* g = static_cast<const std::byte*>(global);
  auto* l = static_cast<std::byte*>(local);
  for_each_block_row(global_shape, elem_bytes, s, mesh, coords, [&](int64_t lo, int64_t go, int64_t bytes) {
    std::memcpy(l + lo, g + go, static_cast<size_t>(bytes));
  });
}

void assemble_global(Communicator& comm, const void* local, void* global, const Shape& global_shape, size_t elem_bytes,
                     const Sharding& s) {
  const Mesh& mesh = comm.mesh();
  const int64_t local_bytes = num_elements(local_shape(global_shape, s, mesh)) * static_cast<int64_t>(elem_bytes);
  if (s.replicated()) {
    std::memcpy(global, local, static_cast<size_t>(local_bytes));
    return;
  }
  std::vector<size_t> all(mesh.axes.size());
  for (size_t a = 0; a < all.size(); ++a) all[a] = a;
  std::vector<std::byte> blocks(static_cast<size_t>(local_bytes * mesh.devices()));
  comm.all_gather(local, blocks.data(), local_bytes, all);  // [device][block]: the group over all axes is device order
  auto* g = static_cast<std::byte*>(global);
  for (int64_t d = 0; d < mesh.devices(); ++d) {
    const std::vector<int64_t> coords = mesh.coords(d);
    bool lowest = true;  // the first replica: coordinate 0 on every axis that does not split the tensor
    for (size_t a = 0; a < mesh.axes.size(); ++a) lowest = lowest && (s.dim[a] >= 0 || coords[a] == 0);
    if (!lowest) continue;
    const std::byte* b = blocks.data() + d * local_bytes;
    for_each_block_row(global_shape, elem_bytes, s, mesh, coords, [&](int64_t lo, int64_t go, int64_t bytes) {
      std::memcpy(g + go, b + lo, static_cast<size_t>(bytes));
    });
  }
}

}  // namespace sy
