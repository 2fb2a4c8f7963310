// Memory per device of a training step, from the graph and the order its ops run in: one model
// for `simulate` (the lowered program in its event schedule's order) and the sweep (the global
// graph in program order, each value at its local size under the layout). The liveness events
// of the order are worked out once per graph; a layout only brings its sizes.
//
//   persistent   parameters, optimizer state (leaves "optimizer/<param>/<slot>",
//                graph/models/training_graph.hpp) and the other inputs: held for the whole step
//   live         every computed value from the op that writes it to the last op that reads it
//                (graph outputs to the end of the step), walked in execution order; the peak of
//                the live bytes is taken while each op runs (its inputs and outputs both live)
//   at the peak  the live bytes are split into activations (forward values a backward op
//                reads), gradients (of parameters) and transient (everything else)
// An optimizer update writes its parameter and state in place (XLA donates the step's
// parameter buffers; the executor copies them back into the leaves), so its outputs add nothing.
//
// A reduced graph (simulator/model_step.hpp: one layer standing for several) weighs parameters and
// optimizer state by the weight of the first node reading them, activations and gradients by
// their producer's weight: all layers' activations are live together between
// the forward and the backward pass, and all gradients before the updates. Transient values are
// not weighted (the layers run one after another).
#pragma once

#include "graph/ir.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace sy {

struct MemoryUse {
  double parameters = 0;
  double optimizer = 0;    // optimizer state leaves
  double inputs = 0;       // other leaves (tokens, targets, loss weights, step, learning rate)
  double activations = 0;  // at the peak: forward values the backward pass reads
  double gradients = 0;    // at the peak: parameter gradients
  double transient = 0;    // at the peak: every other live value
  double capacity = 0;     // HBM per device less the reserve
  int32_t peak_node = -1;  // the node running when the peak is reached
  double total() const { return parameters + optimizer + inputs + activations + gradients + transient; }
  bool fits() const { return total() <= capacity; }
};

// The order a training step runs in when the optimizer applies each update as soon as its
// gradient is ready: program order, except that every node in an "optimizer" scope
// (graph/models/training_graph.hpp) runs as soon as all its inputs exist. XLA's memory-aware list
// scheduler (HloMemoryScheduler's ListScheduler) ranks a ready instruction by the bytes it frees
// less the bytes it defines; an update frees its gradient and defines nothing new (its outputs
// are the donated parameter and state buffers), so it goes first, and a gradient stays live only
// from its op to its update. With global-norm clipping (train.grad_clip > 0) every update reads
// the clip scale, which needs every gradient, so they all wait: that memory is the clipping's.
std::vector<int32_t> eager_update_order(const Graph& g);

class MemoryModel {
 public:
  // `order`: every node of g once, in the order they run (empty: eager_update_order(g));
  // `weights`: per node of g (empty: all 1). The liveness events of that order are worked out
  // here once, so evaluating a layout is one pass over them with its sizes.
  explicit MemoryModel(const Graph& g, std::span<const int32_t> order = {}, std::vector<double> weights = {});

  // `bytes`: per value of g, its bytes on one device. capacity is copied into the result.
  MemoryUse evaluate(std::span<const double> bytes, double capacity) const;

 private:
  enum class Kind : uint8_t { activation, gradient, transient, parameter, optimizer, input, in_place };
  std::vector<Kind> kind_;      // per value
  std::vector<double> weight_;  // per value: its layer weight (see above), else 1
  // Live-byte events in execution order: 2·value (written), 2·value + 1 (freed), -1 - node (that
  // node runs: its inputs and outputs are live). Only activations, gradients and transients appear.
  std::vector<int32_t> events_;
  std::vector<int32_t> persistent_;  // parameters, optimizer state and inputs
};

}  // namespace sy
