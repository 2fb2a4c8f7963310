// The cost of a node as the executor's sparse paths run it (executor/sparse_einsum.hpp), for
// hardware that has them (HardwareSpec::sparse_einsums: the sy executor on a CPU; a TPU's XLA
// runs the dense dot_general of the one-hot tensors on the MXU, which is what GShard and Mesh-TF
// designed the dispatch for).
//
// Which nodes take a sparse path is graph/sparsity.hpp's plan, with the run-time test made on the
// plan's nonzero bound instead of a count: a value is sparse when it may be, has at least
// kMinSparse elements and at most a quarter of them nonzero; a path is taken when its work is
// below the dense contraction's multiply-adds / kDenseAdvantage, as the executor decides. A list
// of nonzeros costs 12 bytes an entry (an int64 index and an f32 value).
//
//   einsum, masked output   2·nnz(mask)·F·K flops (F: out's elements per mask entry, K: the summed
//                           sizes); reads a, b and the mask's list; writes out densely, or its list
//                           when deferred
//   einsum, sparse × sparse 2·pairs flops (pairs: the plan's bound on the output); reads both lists;
//                           writes out densely, or its list when deferred
//   einsum, sparse × dense  2·nnz(p)·R flops (R: q's elements per p entry); reads p's list and q;
//                           writes out densely (zero-filled, then accumulated)
//   one_hot, deferred       reads the indices, writes the list
//   cast of a sparse value  reads the list; writes out's list when deferred, else out densely
//   reduce_sum, deferred    nnz flops; reads the list, writes out
#pragma once

#include "graph/ir.hpp"
#include "graph/op_def.hpp"
#include "graph/sparsity.hpp"

namespace sy {

// `dense`: the node's registered cost (OpDef::cost). Returns it unchanged when n takes a dense path.
OpCost sparse_cost(const Graph& g, const Node& n, const SparsityPlan& plan, const OpCost& dense);

}  // namespace sy
