// Which values of a graph are mostly zeros by construction, and how many nonzeros they have at most.
//
// The MoE layer is built Mesh-TF style (graph/models/moe.cpp): routing makes one-hot dispatch and
// combine tensors [G, S, E, C] and dense einsums move tokens into and out of the expert buffers. The
// executor runs those einsums over their operands' nonzeros (executor/sparse_einsum.hpp); the
// simulator prices them the same way on hardware that does (HardwareSpec::sparse_einsums: the
// executor's CPU backing; a TPU's XLA runs the dense dot). Both read this plan, so they agree on
// which nodes take the sparse paths.
//
//   maybe sparse   one_hot's output, and what mul, cast, transpose, reshape, broadcast, scale
//                  without offset, and an einsum of two such values make of them; plus a masked
//                  einsum's output and the casts of it on the way to its reader
//   masked         an einsum without sparse operands whose output reaches exactly one einsum
//                  (through casts with one reader each) whose other operand may be sparse and
//                  exists by then: only the entries that meet that operand's nonzeros are computed
//   deferrable     may be sparse, at least kMinSparse elements, not a graph output, read at least
//                  once and only by einsum, cast and reduce_sum: kept as its nonzeros, never
//                  written densely unless a dense path needs it
//   nonzeros       an upper bound from the shapes: one_hot of n indices has at most n; mul, cast,
//                  transpose, reshape and scale keep their sparse input's count; broadcast
//                  multiplies it by the new elements per old one; an einsum of two sparse
//                  operands has at most nnz(p)·nnz(q) / Π(sizes of the dims they share) pairs
//                  (every combination of shared coordinates holding an equal share: exact for the
//                  one-hot factors, one nonzero per [G, S, K] row each); a masked output
//                  nnz(mask)·Π(its dims not in the mask). Capped at the value's element count.
#pragma once

#include "graph/ir.hpp"

#include <cstdint>
#include <vector>

namespace sy {

// Smaller tensors always take the dense paths: a scan or a list costs more than it saves.
inline constexpr int64_t kMinSparse = 1024;
// A sparse path pays off when its work is below the dense contraction's multiply-adds / this.
inline constexpr int64_t kDenseAdvantage = 4;

struct SparsityPlan {
  std::vector<bool> maybe_sparse;  // per value
  std::vector<bool> deferrable;    // per value
  std::vector<ValueId> mask;       // per node: the sparse operand of its output's one reader (invalid: none)
  std::vector<double> nonzeros;    // per value: at most this many nonzeros (its element count when not sparse)
};

// kept[v]: v is a graph output (its value must be complete).
SparsityPlan plan_sparsity(const Graph& g, const std::vector<bool>& kept);

// The keep flags of plan_sparsity for a graph whose outputs are its GraphOutputs.
std::vector<bool> graph_outputs_kept(const Graph& g);

}  // namespace sy
