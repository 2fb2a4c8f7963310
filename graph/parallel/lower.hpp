// Lowering: a global graph + Mesh + Layout -> the per-device (SPMD) program, with the
// collectives the layout forces inserted as ordinary nodes (ops/collective.cpp). The executor
// runs the program on every device (MPI); the simulator prices it on a torus.
//
// How each value is split (its Sharding) is decided node by node, in topological order:
//
//   leaves      split by the layout rules on their dims.
//   wanted      the sharding an output "should" have: per dim, the axis of its rule, or else the
//               axis splitting the same-named dim of an input (inherited: `group`, `length`, ...;
//               through a reshape, a split carries over between dims with the same row-major
//               prefix, e.g. batch -> group); when two dims of one tensor would take the same
//               axis, the outermost keeps it ([E, G, C, D]: experts; [G, S, E, C]: group).
//   iteration   the op runs on local blocks of a consistent split of all its dims. Two candidates
//               are priced in bytes sent and the cheaper taken (ties: output-driven):
//                 output-driven  iterate as the outputs want; then free axes may split a summed
//                                dim that an input already splits;
//                 input-driven   iterate as the inputs are split (first input first), then
//                                reshard the outputs to what they want.
//   inputs      resharded to the iteration: all_gather (split -> whole), all_to_all (the split
//               moves from one dim to another, e.g. group -> experts at the MoE dispatch),
//               shard_slice (whole -> split; local, no communication).
//   outputs     a summed-out dim that is split (einsum contraction, reduce_sum/mean/max,
//               embedding_grad over the ids, Adafactor's mean_square statistics) leaves partial
//               results: all_reduce over those axes,
//               or reduce_scatter when the output wants that axis on one of its dims. Partial
//               sums of a parameter gradient in bf16 are reduced in f32 (cast, reduce, cast back:
//               ST-MoE). Then the output is resharded to what it wants.
//   whole dims  an op that needs a dim entire (its OpDef::roles: softmax, logsumexp,
//               cross_entropy, rms_norm, top_k, cumsum, one_hot, gather, scatter_add, the vocab
//               of embedding and embedding_grad) all-gathers it first.
//   gradients   graph outputs that are gradients of parameters end split like their parameter
//               (so the optimizer update is local).
//
// Limits (documented, not hidden): random and dropout draw from element indices of the local
// block, so with split dims they are equal in distribution, not bitwise, to the single-process
// run; an embedding with a split vocab all-gathers the table (Mesh-TF's one-hot einsum would
// all-reduce the output instead).
//
// One code path decides and prices: lower() emits the decisions as nodes, whose OpDef::cost gives
// their bytes; LoweringPlanner reports the same decisions with the same costs without building
// the program (for layout search).
#pragma once

#include "graph/parallel/layout.hpp"
#include "graph/op_def.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sy {

// Kinds of the collective family (op_kinds.def).
bool is_collective(OpKind k);

struct LowerOptions {
  bool f32_gradient_reduce = true;  // all-reduce bf16 partial sums of parameter gradients in f32
};

struct CollectiveRecord {
  NodeId node;         // the collective in Lowered::graph
  NodeId origin;       // the node of the global graph it serves
  std::string reason;  // "sum over d_ff (split over model)", "group -> experts", ...
};

struct Lowered {
  Mesh mesh;
  Layout layout;
  Graph graph;                      // the per-device program: local shapes, collectives inserted
  std::vector<Shape> global_shape;  // per value of `graph`: the global tensor it is a block of
  std::vector<Sharding> sharding;   // per value of `graph`: how that global tensor is split
  std::vector<ValueId> value_of;    // per value of the global graph: its lowered value as produced
  std::vector<NodeId> origin;       // per node of `graph`: the global node it runs or serves
  std::vector<CollectiveRecord> collectives;  // in node order
};

// Checks the layout (check_layout) and lowers. Throws InputError for an illegal layout or a graph
// that already holds collectives.
Lowered lower(const Graph& g, const Mesh& mesh, const Layout& layout, const LowerOptions& opts = {});

// ---- the same decisions without building the program (layout search) ----

// One inserted collective (or local shard_slice) as the planner reports it.
struct PlannedCollective {
  OpKind kind = OpKind::all_reduce;
  uint32_t axes = 0;        // bit a: mesh axis a takes part
  OpCost cost;              // of the op lower() would emit (its OpDef::collective_cost)
  NodeId origin;            // the global node it serves
  bool gradient = false;    // reduces partial sums of a parameter gradient
};

// Receives a plan node by node, in graph order.
class PlanVisitor {
 public:
  virtual ~PlanVisitor() = default;
  // The global node `n` runs on its local blocks at cost `local` (OpDef::cost on local types).
  // `variant` numbers the distinct local shapes of n seen by this planner (stable across plans),
  // so a visitor can cache what it derives from `local`.
  virtual void node(NodeId n, const OpCost& local, uint32_t variant) = 0;
  virtual void collective(const PlannedCollective& c) = 0;
};

// Compiles a graph for one mesh once; then plans any layout quickly: each node's plan is cached
// under what it depends on (its inputs' shardings and the shardings its outputs want), and local
// costs under the node's local shapes, so a sweep re-plans only what a layout changes. Not
// thread-safe: use one planner per thread.
class LoweringPlanner {
 public:
  LoweringPlanner(const Graph& g, const Mesh& mesh, const LowerOptions& opts = {});
  ~LoweringPlanner();
  LoweringPlanner(const LoweringPlanner&) = delete;
  LoweringPlanner& operator=(const LoweringPlanner&) = delete;

  // Plans `layout` (checked first: InputError when illegal) and reports every node and collective
  // to `v`. Returns the final sharding of every global value.
  const std::vector<Sharding>& plan(const Layout& layout, PlanVisitor& v);

  // Legality alone (check_layout's rules), without throwing: empty when legal, else the message.
  std::string legality(const Layout& layout) const;
  // The same as a yes/no, without building a message (fast: for sweeps over many illegal layouts).
  bool legal(const Layout& layout) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sy
