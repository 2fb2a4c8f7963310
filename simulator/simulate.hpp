// The simulator: a lowered training step (graph/lower) priced on a HardwareSpec.
//
//   ops        every node of the per-device program, the optimizer's update nodes included
//              (graph/models/training_graph.hpp): compute ops by roofline (roofline.hpp) on
//              their OpDef::cost, collectives by the torus model (topology.hpp).
//   fusion     (on by default; SimOptions::fusion) XLA-style fusion groups (simulator/fusion.hpp):
//              identical nodes merged (CSE: a parameter cast once per step), elementwise chains,
//              reductions with their fused inputs, einsums with fused operands and epilogue. A
//              group runs as one op at its root (its last node): flops summed, HBM bytes = values
//              entering + values written out, one op_overhead; it starts when all its external
//              inputs are ready. Its other members (and CSE duplicates) take no time, run just
//              before the root, and their outputs are ready when the root ends. Collectives are
//              never fused. fusion = false prices every op alone (the per-op roofline).
//   schedule   event-driven, one compute stream and one communication stream per mesh axis
//              (a collective over several axes runs on the stream of its first axis). An op
//              starts when its inputs are done and its stream is free; among ready ops a stream
//              takes the earliest in program order, an optimizer update first (memory.hpp
//              eager_update_order: XLA's memory-aware scheduler). Dependent work serialises; independent
//              communication overlaps compute. On a backing whose collectives block the compute
//              thread (HardwareSpec::async_collectives = false: the sy MPI executor) collectives
//              are scheduled on the compute stream, so the program runs in its order.
//   results    step time, the critical path (walking back along whichever of data or stream
//              order set each start), communication busy time split into overlapped (compute
//              running meanwhile) and exposed, the time split by kind, and memory per device by
//              liveness in the schedule's order (simulator/memory.hpp); "does not fit" is a
//              result (MemoryUse::fits).
#pragma once

#include "graph/parallel/lower.hpp"
#include "simulator/hardware.hpp"
#include "simulator/load_skew.hpp"
#include "simulator/memory.hpp"
#include "simulator/roofline.hpp"
#include "simulator/topology.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

enum class Phase : uint8_t { forward, backward, optimizer };
std::string_view phase_name(Phase p);

struct SimOptions {
  double model_flops_per_step = 0;  // global FLOPs of a step for MFU (0: the graph's own count)
  double tokens_per_step = 0;       // global tokens of a step (for tokens/s; 0: not reported)
  bool fusion = true;               // XLA-style fusion and CSE (simulator/fusion.hpp); false: per-op pricing
  const LoadSkew* load_skew = nullptr;  // expert loads (simulator/load_skew.hpp): reported, and priced when ragged
};

struct SimOp {
  int32_t node = -1;  // node of the lowered graph
  OpKind kind = OpKind::add;
  std::string label;  // op kind name
  std::string scope;
  Phase phase = Phase::forward;
  bool collective = false;
  int stream = 0;     // index into SimResult::streams
  uint32_t axes = 0;  // collectives: bit a = mesh axis a
  // Collectives: the bytes one device sends one peer (what picks the library's protocol:
  // HardwareSpec::eager_limit), and whether small calls on the eager path come first (the MPI
  // executor's ragged all-to-all agrees on its path and exchanges its row counts).
  double message_bytes = 0;
  bool eager_preamble = false;
  // Collectives: priced from a sample taken after the step's streaming (HardwareSpec::
  // ragged_all_to_all_seconds), so no cold cost (latency_after_streaming) is added to it.
  bool cold_measured = false;
  OpCost cost;
  DType dtype = DType::f32;
  OpTime roof;          // compute ops
  CollectiveTime comm;  // collectives
  Bound bound = Bound::memory;
  double duration = 0, start = 0, end = 0;
  bool critical = false;
  // Fusion: the op's group (SimResult::fused index) when it is in a group of two or more nodes,
  // else -1; the CSE'd node it duplicates, else -1; its own cost and time priced alone.
  int32_t fused = -1;
  int32_t duplicate_of = -1;
  OpCost own_cost;
  double own_duration = 0;
};

// A fusion group of two or more nodes, run as one op (its root).
struct FusedGroup {
  std::vector<int32_t> ops;  // indices into SimResult::ops, program order; the last is the root
  std::string kinds;         // member op kinds in program order, "cast+einsum+cast"
  OpCost cost;               // of the group (simulator/fusion.hpp group_cost)
  double duration = 0;
  double own_bytes = 0;     // Σ members' bytes priced alone
  double own_duration = 0;  // Σ members' durations priced alone
  int32_t root() const { return ops.back(); }
};

struct SimResult {
  std::string hardware;
  Mesh mesh;
  Layout layout;
  Topology topology;
  std::string optimizer;              // the update nodes' kind: "adafactor", "adamw", or "none"
  std::vector<std::string> streams;  // "compute", "ici:data", ...
  std::vector<SimOp> ops;            // program order
  bool fusion = false;               // SimOptions::fusion
  std::vector<FusedGroup> fused;     // groups of two or more nodes, in the order of their roots
  int cse_duplicates = 0;            // nodes merged into an identical earlier node
  double unfused_op_time = 0;        // Σ compute-op durations priced alone (what --no-fusion sums)
  // Per value of the lowered graph: whether it is written to HBM (Fusion::materialised; all true
  // without fusion). A value that stays on chip inside a fused group needs no HBM buffer.
  std::vector<bool> materialised;

  double step_time = 0;
  // Op time by kind (sums of durations, seconds).
  double compute_bound = 0;   // compute ops limited by flops
  double memory_bound = 0;    // compute ops limited by HBM (optimizer updates included)
  double optimizer_time = 0;  // of which optimizer updates
  double all_to_all = 0;
  double all_reduce = 0;
  double other_comm = 0;      // all_gather, reduce_scatter
  // Wall-clock occupancy.
  double compute_busy = 0;
  double comm_busy = 0;        // union over the communication streams
  double overlapped_comm = 0;  // communication while compute runs
  double exposed_comm = 0;     // communication while compute waits
  // The critical path.
  int critical_ops = 0;
  double critical_compute = 0;
  double critical_comm = 0;
  // Work per device.
  double flops = 0;  // compute ops (collectives' reduction adds excluded)
  double all_to_all_bytes = 0, all_reduce_bytes = 0, other_comm_bytes = 0;  // collective_bytes sent
  std::vector<double> comm_bytes_by_axis;  // by mesh axis (a multi-axis collective counts on each)
  MemoryUse memory;
  // Throughput.
  double model_flops = 0;  // global per step
  double tokens_per_step = 0;
  double tokens_per_second = 0;
  double mfu = 0;  // model_flops / (step_time · devices · bf16 matmul peak)
  double hfu = 0;  // graph flops executed / the same
  LoadSkewReport expert_load;  // with SimOptions::load_skew
};

// Places the mesh (InputError when it does not fit the pod), prices and schedules the program.
SimResult simulate(const Lowered& program, const HardwareSpec& hw, const SimOptions& opts = {});

}  // namespace sy
