// The simulator: a lowered training step (graph/lower) priced on a HardwareSpec.
//
//   ops        every node of the per-device program, the optimizer's update nodes included
//              (graph/models/training_graph.hpp): compute ops by roofline (roofline.hpp) on
//              their OpDef::cost, collectives by the torus model (topology.hpp).
//   schedule   event-driven, one compute stream and one communication stream per mesh axis
//              (a collective over several axes runs on the stream of its first axis). An op
//              starts when its inputs are done and its stream is free; among ready ops a stream
//              takes the earliest in program order. Dependent work serialises; independent
//              communication overlaps compute.
//   results    step time, the critical path (walking back along whichever of data or stream
//              order set each start), communication busy time split into overlapped (compute
//              running meanwhile) and exposed, the time split by kind, and memory per device by
//              liveness in the schedule's order (simulator/memory.hpp); "does not fit" is a
//              result (MemoryUse::fits).
#pragma once

#include "graph/parallel/lower.hpp"
#include "simulator/hardware.hpp"
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
  OpCost cost;
  DType dtype = DType::f32;
  OpTime roof;          // compute ops
  CollectiveTime comm;  // collectives
  Bound bound = Bound::memory;
  double duration = 0, start = 0, end = 0;
  bool critical = false;
};

struct SimResult {
  std::string hardware;
  Mesh mesh;
  Layout layout;
  Topology topology;
  std::string optimizer;              // the update nodes' kind: "adafactor", "adamw", or "none"
  std::vector<std::string> streams;  // "compute", "ici:data", ...
  std::vector<SimOp> ops;            // program order

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
};

// Places the mesh (InputError when it does not fit the pod), prices and schedules the program.
SimResult simulate(const Lowered& program, const HardwareSpec& hw, const SimOptions& opts = {});

}  // namespace sy
