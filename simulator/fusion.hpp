// XLA-style fusion of a lowered per-device program, for pricing (simulator/simulate.hpp).
//
// XLA does not run an HLO op per kernel: its fusion passes merge producers into consumers so that
// intermediate values stay in vector registers/VMEM and only a fusion's inputs and outputs touch
// HBM. The fusion kinds (xla/hlo/ir/hlo_instruction.h FusionKind): kLoop (elementwise ops fused
// into one loop), kInput (a reduction with its elementwise producers fused into its input),
// kOutput (a dot/convolution with its elementwise consumers fused into its output, the
// "epilogue"). The pass (xla/service/instruction_fusion.cc InstructionFusion) walks the
// computation from the root back, consumers first, and fuses a producer into its consumer when
// every user of the producer is in that fusion (otherwise the producer's value must be
// materialised anyway) and the producer is fusible. Reductions are never fused into their
// consumers (a reduction is the root of an input fusion). Identical instructions (same opcode,
// operands, attributes) are merged first by common-subexpression elimination
// (xla/service/hlo_cse.cc), so a parameter cast to bf16 twice is cast once.
//
// The rules here, in that order:
//   CSE        a node with the same kind, (canonical) inputs and attributes as an earlier node is a
//              duplicate: its output stands for the earlier one's and it costs nothing
//              (collectives and the optimizer's update nodes are not merged).
//   never      collectives (they run on the ICI streams; nothing fuses across a stream boundary),
//              index ops (gather, scatter_add, top_k, cumsum, one_hot, embedding*: data-dependent
//              addressing) and the optimizer nodes (each already one fused update) stay alone.
//   loop       elementwise and layout ops (cast, add, gelu, broadcast, transpose, reshape, fill,
//              random, ...) fuse into the group of their consumers when all their consumers are
//              in one group: a chain of elementwise ops is one pass (kLoop); into a reduction's
//              group they are its fused input (kInput); into an einsum's group its fused operands
//              (the TPU compiler fuses converts, broadcasts and elementwise producers into the
//              convolution/dot fusion: the MXU reads the operand once from HBM).
//   reduction  reduce_*, softmax, logsumexp, rms_norm, cross_entropy absorb producers but are never
//              fused into a consumer (the root of a kInput fusion).
//   einsum     fuses into its consumers' group when all its consumers are in one group that holds
//              no einsum or reduction yet (kOutput: dot + elementwise epilogue). At most one
//              einsum or reduction per group.
// A group of several nodes is priced as one op: flops summed; HBM bytes = the bytes of the
// distinct values entering the group + the values it writes (read by a node outside the group,
// or a graph output: multi-output fusion, xla/service/multi_output_fusion.h); values produced and
// consumed inside stay on chip. A group of one node keeps its own OpDef::cost.
#pragma once

#include "graph/ir.hpp"
#include "graph/op_def.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace sy {

struct FusionOptions {
  bool fuse = true;  // false: every node its own group (per-op pricing)
  bool cse = true;   // merge identical nodes
};

struct Fusion {
  // Per node: its group (index into groups).
  std::vector<int32_t> group_of;
  // Nodes of each group in program order; the last is the root (it runs the group). Duplicates
  // removed by CSE are singleton groups of their own.
  std::vector<std::vector<int32_t>> groups;
  // Per node: the earlier identical node it duplicates (CSE), else -1.
  std::vector<int32_t> duplicate_of;
  // Per value: the value that stands for it after CSE (itself unless a duplicate's output).
  std::vector<int32_t> canonical;
  // Per value: whether it is written to HBM (leaves; values read outside their group or graph
  // outputs; every output of a single-node group). False for values that stay on chip inside a
  // fused group, and for the outputs of CSE duplicates (the canonical value is read instead).
  // For memory accounting: a value that is not materialised needs no HBM buffer.
  std::vector<bool> materialised;
  size_t fused_groups() const;  // groups of two or more nodes
};

Fusion fuse(const Graph& g, const FusionOptions& opts = {});

// The cost of group `k` priced as one op (see the header comment). For a group of one node, its
// OpDef::cost; for a CSE duplicate, zero.
OpCost group_cost(const Graph& g, const Fusion& f, int32_t k);
// The same with each node's cost and each value's bytes given (per node and per value of g): one
// device's local sizes under a layout (simulator/sweep.hpp prices the global graph's groups so).
OpCost group_cost(const Graph& g, const Fusion& f, int32_t k, std::span<const OpCost> node_costs,
                  std::span<const double> value_bytes);

}  // namespace sy
