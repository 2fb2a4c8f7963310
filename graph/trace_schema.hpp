// The one Chrome trace schema, "switchyard.trace v1", shared by the measured steps of the
// executor (executor/trace.hpp, `train --trace`) and the priced step of the simulator
// (simulator/report.hpp, `simulate --out`). Both traces name the same node of the same program
// (graph/models/training_graph.hpp) the same way, so a measured and a simulated step open side by
// side in Perfetto (ui.perfetto.dev) or chrome://tracing and diff by script
// (scripts/trace_diff.py).
//
// File: {"otherData":{"schema":"switchyard.trace v1","source":"measured"|"simulated"
//        [,"clock_origin_us":T]},"displayTimeUnit":"ns","traceEvents":[...]}, one event per line,
//        deterministic text. clock_origin_us (measured traces): the time of ts 0 on the host's
//        CLOCK_MONOTONIC (std::chrono::steady_clock), in µs, so the traces of the ranks of one
//        MPI run align (processes of one kernel, network namespaces included, share that clock).
// Metadata: "process_name" (pid = device index, "device 0 of data:4,model:2 (...)"), and one
//   "thread_name" per track: tid 0 "steps", tid 1 "compute", tid 1+k "ici:<mesh axis k>".
//   The simulator has a communication stream per mesh axis (a collective over several axes runs
//   on its first); the executor runs every op on one thread, so it has only "compute".
// Step: one "X" event per step on tid 0: name "step N", cat "step", args {"step": N}. The
//   simulator prices one step, numbered 1.
// Op: one "X" event per op of a step: name = op kind (collectives: all_to_all, all_reduce, ...),
//   cat = phase (trace_phase), tid = its stream, ts/dur in µs from the first step's start,
//   args = node (id in the program), scope, step, flops, bytes (OpDef::cost: bytes_read +
//   bytes_written), and for communicating collectives axes ("data", "data+model") and
//   collective_bytes (bytes sent per device); the simulator adds bound (compute, memory,
//   network or latency: what limits the op in its model) and, with fusion, fusion ("fusion.<k>
//   <member kinds>" on every member of a fused group: the root's event carries the group's time
//   and cost, the others dur 0 and no cost; "cse:<node>" on a node merged into an identical one).
#pragma once

#include "graph/ir.hpp"
#include "graph/op_def.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

inline constexpr std::string_view kTraceSchema = "switchyard.trace v1";
inline constexpr std::string_view kComputeStream = "compute";

// "ici:data": the communication stream of a mesh axis.
std::string comm_stream_name(std::string_view axis);

// Clipping and updates (graph/models/training_graph.hpp): scope "optimizer" or "optimizer/<param>".
bool is_optimizer_scope(std::string_view scope);
// "optimizer" (is_optimizer_scope), else "backward" for nodes autodiff made, else "forward".
std::string_view trace_phase(const Node& n);
// A collective that moves data between devices (all but shard_slice): it gets axes and
// collective_bytes and, in the simulator, an ici stream.
bool communicates(const Node& n);
// "data", "data+model": the mesh axes of a communicating collective, in its attributes' order
// (the lowering lists them in mesh order); "" for other ops.
std::string collective_axes(const Node& n);
// OpDef::cost of the node at its graph's types.
OpCost node_cost(const Graph& g, const Node& n);
// The process track's name: "device 0 of data:4,model:2 (simulated on tpu_v4)".
std::string trace_process_name(int device, std::string_view mesh, std::string_view how);

// One op of a step, as either side knows it.
struct TraceOp {
  int32_t node = -1;
  std::string_view name;   // op kind name
  std::string_view phase;  // trace_phase
  std::string_view scope;
  int stream = 0;  // index into the writer's streams
  int64_t step = 1;
  double start_us = 0, dur_us = 0;
  OpCost cost;
  std::string_view axes;   // collective_axes; empty for local ops
  std::string_view bound;  // simulator only; empty: not written
  std::string_view fusion;  // simulator only: "fusion.<k> <member kinds>" or "cse:<node>"; empty: not written
};

// Writes one trace. Events come out in the order they are added.
class TraceWriter {
 public:
  // source: "measured" or "simulated"; process: the process track's name; streams: the op
  // tracks, "compute" first (tid 1 + index); clock_origin_us: written when given (above).
  TraceWriter(std::string_view source, int device, std::string_view process, const std::vector<std::string>& streams,
              std::optional<double> clock_origin_us = std::nullopt);
  void step(int64_t step, double start_us, double dur_us);
  void op(const TraceOp& op);
  // The JSON text (ends with a newline).
  std::string finish() const;

 private:
  int device_;
  std::string text_;
};

}  // namespace sy
