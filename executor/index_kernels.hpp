// Fast CPU kernels of the integer-indexed ops the training step runs every time: the embedding
// gather and its gradient, a scatter-add of rows. Private to executor/.
//
// Both move whole rows of d_model elements (row-wise, TBB-parallel, inner loops the compiler
// vectorises) and give the reference forwards' bits exactly (ops/index.cpp): the gather copies,
// and the gradient sums each vocab row's contributions in double, in token order, rounding once
// on store, as the reference does. A kernel returns false for an id outside the table (the
// reference then names it) or for dtypes it does not cover.
#pragma once

#include "executor/kernels.hpp"

namespace sy::exec {

// y [ids..., D] = table [V, D] rows at ids (i32). table and y share a float dtype.
bool embedding(ConstView table, ConstView ids, View y);

// y [V, D] = zeros, then y[ids[i], :] += dy[i, :] for every token i (ids i32 [N...], dy [N..., D]).
// Work is split by vocab row: the tokens are bucketed by id first (a stable counting sort), so
// each row is summed by one task in token order.
bool embedding_grad(ConstView ids, ConstView dy, View y);

}  // namespace sy::exec
