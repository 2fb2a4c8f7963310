// The mesh seen from one device: what the Executor needs to run the collective nodes that
// graph/lower inserts (semantics in ops/collective.cpp), and what a trainer needs to cut global
// tensors into this device's blocks and to assemble them again.
//
// A collective runs over a list of mesh axes. Its group is the devices that differ from this one
// only on those axes, numbered row-major over the axes in the order listed (the last varies
// fastest); a device's place in it is its group index. Buffers hold one contiguous block per
// group member, in group-index order.
//
// One backing runs across processes: MpiCommunicator (executor/mpi/mpi_communicator.hpp), one MPI
// rank per device. Every device of a group must make the same calls in the same order.
#pragma once

#include "graph/attrs.hpp"
#include "graph/dtype.hpp"
#include "graph/ir.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/parallel/mesh.hpp"
#include "graph/tensor.hpp"

#include <cstdint>
#include <vector>

namespace sy {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual const Mesh& mesh() const = 0;
  virtual int64_t device() const = 0;  // this process's device number (row-major over the mesh)

  // `axes`: indices into mesh().axes, each at most once, in the collective's order.
  // In place: data [count] = reduce over the group of every member's data (sum, mean or max).
  virtual void all_reduce(void* data, int64_t count, DType dtype, ReduceOp op, const std::vector<size_t>& axes) = 0;
  // out [N][bytes] = every member's in [bytes], in group order.
  virtual void all_gather(const void* in, void* out, int64_t bytes, const std::vector<size_t>& axes) = 0;
  // in [N][count] -> out [count] = reduce over members of their block i (i: this device's group index).
  virtual void reduce_scatter(const void* in, void* out, int64_t count, DType dtype, ReduceOp op,
                              const std::vector<size_t>& axes) = 0;
  // in [N][bytes]: block j goes to member j; out [N][bytes]: block j came from member j.
  virtual void all_to_all(const void* in, void* out, int64_t bytes, const std::vector<size_t>& axes) = 0;
  // Variable sizes: in holds send_bytes[j] bytes for member j, back to back in member order; out
  // receives recv_bytes[j] bytes from member j, back to back in member order (each member's
  // recv_bytes[i] must equal member i's send_bytes for it).
  virtual void all_to_all_v(const void* in, const std::vector<int64_t>& send_bytes, void* out,
                            const std::vector<int64_t>& recv_bytes, const std::vector<size_t>& axes) = 0;
};

// This device's index in the group of `axes` (row-major over the axes as listed), and the size
// of that group.
int64_t mesh_group_index(const Communicator& comm, const std::vector<size_t>& axes);
int64_t mesh_group_size(const Mesh& mesh, const std::vector<size_t>& axes);

// The mesh axes of a collective node's attributes as indices into comm.mesh(). Throws InputError
// when an axis is not in the mesh or has another size there.
std::vector<size_t> collective_axes(const Communicator& comm, const CollectiveAttrs& a);

// Runs one collective node (all_reduce, all_gather, reduce_scatter, all_to_all, shard_slice) of
// a lowered program: x of type `in` -> y of type `out`, row-major storage of their dtype. The
// blocks are cut and concatenated along the attrs' dims exactly as ops/collective.cpp defines.
void run_collective(Communicator& comm, OpKind kind, const CollectiveAttrs& attrs, const TensorType& in, const void* x,
                    const TensorType& out, void* y);

// ---- global tensors and this device's blocks ----

// Copies this device's block of a global row-major array (`global` shape, elements of
// `elem_bytes`) split as `s` into `local` (the block's shape: local_shape(global, s, mesh)).
void copy_block(const void* global, void* local, const Shape& global_shape, size_t elem_bytes, const Sharding& s,
                const Mesh& mesh, const std::vector<int64_t>& coords);

// The global array from every device's block (a collective over all mesh axes: every device
// calls it). `local` is this device's block; `global` receives product(global_shape) elements.
// Replicas of a block are taken from the lowest device holding it.
void assemble_global(Communicator& comm, const void* local, void* global, const Shape& global_shape, size_t elem_bytes,
                     const Sharding& s);

}  // namespace sy
