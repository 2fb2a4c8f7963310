#include "executor/mpi/ragged_all_to_all.hpp"

#include "executor/mpi/staging.hpp"
#include "graph/dtype.hpp"

#include <array>
#include <cstring>
#include <vector>

namespace sy::exec {
namespace {

// Row-major coordinates of block o over `dims` sizes.
void coords_of(int64_t o, const std::vector<int64_t>& dims, std::vector<int64_t>& c) {
  for (size_t i = dims.size(); i-- > 0;) {
    c[i] = o % dims[i];
    o /= dims[i];
  }
}

int64_t index_of(const std::vector<int64_t>& c, const std::vector<int64_t>& dims) {
  int64_t o = 0;
  for (size_t i = 0; i < dims.size(); ++i) o = o * dims[i] + c[i];
  return o;
}

}  // namespace

bool ragged_all_to_all(Communicator& comm, const CollectiveAttrs& attrs, const TensorType& in, const void* x,
                       const RowTails& tx, const TensorType& out, void* y, RowTails& ty) {
  const std::vector<size_t> axes = collective_axes(comm, attrs);
  const int64_t n = mesh_group_size(comm.mesh(), axes), me = mesh_group_index(comm, axes);
  // Whether this member can: its input has tails whose blocks hold the scatter and gather dims.
  // (Indices, npos when absent: GCC 12 takes std::optional's value for uninitialised here.)
  constexpr size_t npos = static_cast<size_t>(-1);
  const size_t ax = tx.valid() ? tail_axis(in.shape, tx).value_or(npos) : npos;
  const size_t si = dim_index(in.shape, attrs.scatter_dim).value_or(npos);
  const size_t gi = dim_index(in.shape, attrs.gather_dim).value_or(npos);
  const bool able = ax != npos && si < ax && gi < ax && si != gi && in.shape[si].size % n == 0 && tx.outer % n == 0;
  // Every member takes the same path: all able, with the same blocks (else all run the dense one).
  const std::array<int64_t, 4> head{able ? 1 : 0, tx.outer, tx.rows, tx.inner};
  std::vector<std::array<int64_t, 4>> heads(static_cast<size_t>(n));
  comm.all_gather(head.data(), heads.data(), sizeof head, axes);
  for (const auto& h : heads)
    if (h[0] == 0 || h != heads.front()) return false;

  const int64_t rows = tx.rows, inner = tx.inner, eb = dtype_bytes(in.dtype), row_bytes = inner * eb;
  std::vector<int64_t> dims_in, dims_out;  // the blocks' dims
  for (size_t i = 0; i < ax; ++i) {
    dims_in.push_back(in.shape[i].size);
    dims_out.push_back(out.shape[i].size);
  }
  const int64_t ns = dims_in[si] / n, mg = dims_in[gi];
  const int64_t per = tx.outer / n;  // blocks each member sends each member
  std::vector<int64_t> c(dims_in.size());

  // 1. The extents of the blocks for each member, in block order.
  thread_local std::vector<int64_t> send_ext, recv_ext;
  send_ext.assign(static_cast<size_t>(tx.outer), 0);
  recv_ext.assign(static_cast<size_t>(tx.outer), 0);
  std::vector<int64_t> filled(static_cast<size_t>(n), 0), send_bytes(static_cast<size_t>(n), 0);
  for (int64_t o = 0; o < tx.outer; ++o) {
    coords_of(o, dims_in, c);
    const int64_t j = c[si] / ns;
    const int64_t e = tx.extent[static_cast<size_t>(o)];
    send_ext[static_cast<size_t>(j * per + filled[static_cast<size_t>(j)]++)] = e;
    send_bytes[static_cast<size_t>(j)] += e * row_bytes;
  }
  comm.all_to_all(send_ext.data(), recv_ext.data(), per * static_cast<int64_t>(sizeof(int64_t)), axes);

  // 2. The rows before them.
  thread_local Staging send_staging, recv_staging;
  int64_t send_total = 0, recv_total = 0;
  for (int64_t b : send_bytes) send_total += b;
  std::vector<int64_t> recv_bytes(static_cast<size_t>(n), 0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < per; ++k) recv_bytes[static_cast<size_t>(r)] += recv_ext[static_cast<size_t>(r * per + k)] * row_bytes;
  for (int64_t b : recv_bytes) recv_total += b;
  std::byte* send = send_staging.get(std::max<int64_t>(send_total, 1));
  std::byte* recv = recv_staging.get(std::max<int64_t>(recv_total, 1));
  std::vector<int64_t> at(static_cast<size_t>(n), 0);  // write offset per member
  for (int64_t j = 1; j < n; ++j) at[static_cast<size_t>(j)] = at[static_cast<size_t>(j - 1)] + send_bytes[static_cast<size_t>(j - 1)];
  const auto* src = static_cast<const std::byte*>(x);
  for (int64_t o = 0; o < tx.outer; ++o) {  // in block order: each member's blocks in order
    coords_of(o, dims_in, c);
    const int64_t j = c[si] / ns, bytes = tx.extent[static_cast<size_t>(o)] * row_bytes;
    std::memcpy(send + at[static_cast<size_t>(j)], src + o * rows * row_bytes, static_cast<size_t>(bytes));
    at[static_cast<size_t>(j)] += bytes;
  }
  comm.all_to_all_v(send, send_bytes, recv, recv_bytes, axes);

  // 3. Into place: member r's k-th block is its k-th block (in block order) among those whose
  // scatter coordinate is this member's; it lands at scatter coordinate - me·ns, gather
  // coordinate r·mg + its own.
  ty = RowTails{tx.outer, rows, inner, std::vector<int64_t>(static_cast<size_t>(tx.outer), 0), {}};
  auto* dst = static_cast<std::byte*>(y);
  int64_t off = 0;
  for (int64_t r = 0; r < n; ++r) {
    int64_t k = 0;
    for (int64_t o = 0; o < tx.outer; ++o) {
      coords_of(o, dims_in, c);
      if (c[si] / ns != me) continue;
      const int64_t e = recv_ext[static_cast<size_t>(r * per + k++)];
      c[si] -= me * ns;
      c[gi] += r * mg;
      const int64_t o2 = index_of(c, dims_out);
      std::memcpy(dst + o2 * rows * row_bytes, recv + off, static_cast<size_t>(e * row_bytes));
      off += e * row_bytes;
      ty.extent[static_cast<size_t>(o2)] = e;
    }
  }
  ty.zeroed = ty.extent;
  return true;
}

}  // namespace sy::exec
