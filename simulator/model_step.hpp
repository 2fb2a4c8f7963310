// A model config's training step as the simulator prices it: the training graph the executor runs
// (graph/models/training_graph.hpp: forward, backward, clipping, optimizer updates, routing
// groups from the mesh and layout), the published FLOPs for MFU, and, for fast layout search, a
// reduced build with one layer of each kind standing for the whole stack.
#pragma once

#include "graph/models/model_config.hpp"
#include "graph/models/training_graph.hpp"

#include <cstdint>
#include <vector>

namespace sy {

struct TrainingStep {
  TrainingGraph training;       // .model.graph: the program
  double model_flops = 0;       // published training FLOPs of the whole step (all sequences); 0 when reduced
  double tokens = 0;            // tokens of the step (batch × tokens per sequence); 0 when reduced
  std::vector<double> weights;  // per node: how many layers of the full model it stands for
  const Graph& graph() const { return training.model.graph; }
};

// Builds the training graph of `c` trained as `train` says for `opts` (its mesh and layout set the routing groups).
// reduced: each stack keeps one layer of each kind (one dense and one sparse layer; one layer
// when all are alike), and the nodes of a kept layer, and the optimizer nodes of its parameters,
// weigh as many layers of the full stack as are of its kind (all other nodes weigh 1). A stack
// whose layer count is not a multiple of moe.every is built whole.
TrainingStep build_training_step(const ModelConfig& c, const TrainConfig& train, const TrainingGraphOptions& opts,
                                 bool reduced = false);

}  // namespace sy
