// Chrome trace of selected training steps: one complete ("X") event per executed op, viewable in
// Perfetto (ui.perfetto.dev) or chrome://tracing, plus one event per step on its own track.
// Event name: the op kind; category: forward, backward or optimizer; args: node id, scope, step,
// flops and bytes (OpDef::cost). summary() aggregates the recorded time by op kind and by phase,
// with the achieved FLOP/s, to see where a step's time goes.
#pragma once

#include "graph/ir.hpp"

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
  explicit TraceRecorder(const Graph& g);  // g must outlive the recorder

  // Ops recorded between begin_step and end_step belong to `step`.
  void begin_step(int64_t step);
  void record(NodeId node, double t_begin_us, double t_end_us);
  void end_step();

  int64_t steps() const { return static_cast<int64_t>(steps_.size()); }
  bool empty() const { return events_.empty(); }

  // Writes the Chrome trace JSON.
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
  std::vector<double> flops_, bytes_;  // per node
  std::vector<Event> events_;
  std::vector<Step> steps_;
  int64_t current_ = -1;
};

}  // namespace sy
