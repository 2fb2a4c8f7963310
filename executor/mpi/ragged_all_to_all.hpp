// The all_to_all of an expert buffer with zero tails (executor/row_tails.hpp): only each block's
// rows before its tail travel. Run by the executor (executor.cpp); timed whole by calibrate
// (experiments/calibrate/network.hpp: measure_ragged_all_to_all), which the simulator prices it by.
//
// Expert parallelism moves the dispatched tokens x [E, G, C, D] (experts whole, groups split) to
// [E/N, G·N, C, D] (experts split, groups whole) and back. With tails, each (expert, group) block
// holds its routed rows and then zeros; under moe.dropless (C = S) most of a block is zeros. Here
// the members first exchange the extents of the blocks they send each other (one int64 per
// block, an all_to_all), then the rows before them (all_to_all_v: variable sizes, MPI_Alltoallv),
// and each receiver writes its rows into place. The output gets tails of the same blocks, its rows
// past them unspecified (executor/ragged_rows.hpp zero-fills them for a reader that needs it).
// A token's rows go only to the members holding the experts it chose, so device-limited routing
// (moe.route_groups = M, one expert group per member) sends each token to at most M members.
#pragma once

#include "executor/mpi/communicator.hpp"
#include "executor/row_tails.hpp"

namespace sy::exec {

// y = all_to_all(x) as run_collective defines it, moving the rows of x before its tails `tx`.
// False (nothing done, no communication) when the scatter or gather dim is not a dim of the
// blocks (before the tails' row dim): every member decides alike, as their shapes and tails'
// blocks agree. On success, ty is y's tails.
bool ragged_all_to_all(Communicator& comm, const CollectiveAttrs& attrs, const TensorType& in, const void* x,
                       const RowTails& tx, const TensorType& out, void* y, RowTails& ty);

}  // namespace sy::exec
