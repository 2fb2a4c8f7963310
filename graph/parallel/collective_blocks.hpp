// How a collective's tensor maps onto the contiguous blocks a collective library moves.
//
// A library such as MPI (MPI_Allgather, MPI_Reduce_scatter_block, MPI_Alltoall) moves one
// contiguous block per group member. A collective node splits or concatenates along a named dim;
// seen as [outer, dim, rest] (row-major), that dim's blocks are contiguous only when outer == 1
// (the dim is outermost, or every dim before it has size 1). Otherwise the device packs the blocks
// to the front before the call ([outer][n][chunk] -> [n][outer][chunk]) or unpacks them after it:
// one pass that reads and writes the packed bytes. The MPI executor does exactly these copies
// (executor/mpi/communicator.cpp); the simulator prices them on hardware whose collectives are
// staged that way (HardwareSpec::staged_collectives).
#pragma once

#include "graph/attrs.hpp"
#include "graph/ir.hpp"

#include <cstdint>
#include <string>

namespace sy {

// A row-major array seen as [outer, dim, rest]: the product of the sizes before `dim` (outer) and
// the bytes of one slab from `dim` inward.
struct Slabs {
  int64_t outer = 1;
  int64_t slab_bytes = 0;
};
Slabs slabs_at(const TensorType& t, const std::string& dim);

// Bytes a device packs before the library call and unpacks after it, for a collective of `kind`
// over n members whose input is `in`. all_reduce: its input copied into the output buffer, which
// the library reduces in place (MPI_IN_PLACE). shard_slice: none.
struct StagingBytes {
  int64_t pack = 0;
  int64_t unpack = 0;
};
StagingBytes staging_bytes(OpKind kind, const CollectiveAttrs& a, const TensorType& in, int64_t n);

}  // namespace sy
