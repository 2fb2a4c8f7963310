// Chrome trace of selected training steps as measured by the executor, in the schema the simulator
// writes too (graph/trace_schema.hpp, "switchyard.trace v1", source "measured"): one "X" event per
// step on the "steps" track and one per executed op on the "compute" track (the executor runs every
// op, collectives included, one after another on one thread), named by op kind, categorised by
// phase (forward, backward, optimizer), with args node (id in the program the executor runs),
// scope, step, flops and bytes (OpDef::cost), and axes and collective_bytes for collectives.
// scripts/trace_diff.py compares it with `simulate`'s trace.json. summary() aggregates the
// recorded time by op kind and by phase, with the achieved FLOP/s, to see where a step's time goes.
#pragma once

#include "graph/ir.hpp"
#include "graph/op_def.hpp"

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

// "3,5-7" -> {3, 5, 6, 7} (1-based step numbers). Throws InputError naming the text.
std::set<int64_t> parse_step_list(std::string_view text);

class TraceRecorder {
 public:
  // g: the program the executor runs (it must outlive the recorder); process: the process
  // track's name (trace_process_name: "device 0 of data:2 (measured on the CPU executor)").
  TraceRecorder(const Graph& g, int device, std::string process);

  // Ops recorded between begin_step and end_step belong to `step`.
  void begin_step(int64_t step);
  void record(NodeId node, double t_begin_us, double t_end_us);
  void end_step();

  int64_t steps() const { return static_cast<int64_t>(steps_.size()); }
  bool empty() const { return events_.empty(); }

  // Writes the Chrome trace JSON (atomically). Times count from the first traced step's start,
  // whose steady_clock time is the trace's clock_origin_us (the ranks' traces align by it).
  void write(const std::filesystem::path& path) const;
  // A plain-text table: time per op kind and per phase (forward/backward/optimizer), share of the
  // traced time, calls, GFLOP/s.
  std::string summary() const;

 private:
  struct Event {
    NodeId node;
    int64_t step;
    double begin, end;  // µs on steady_clock
  };
  struct Step {
    int64_t step;
    double begin = 0, end = 0;
  };
  const Graph& g_;
  int device_;
  std::string process_;
  std::vector<OpCost> costs_;  // per node
  std::vector<Event> events_;
  std::vector<Step> steps_;
  int64_t current_ = -1;
};

}  // namespace sy
