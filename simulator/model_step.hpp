// A model config's training step as the simulator prices it: the forward graph (graph/transformer)
// with its gradients (graph/autodiff), the published FLOPs for MFU, and, for fast layout search, a
// reduced build with one layer of each kind standing for the whole stack.
#pragma once

#include "graph/parallel/layout.hpp"
#include "graph/models/model_config.hpp"
#include "graph/models/transformer.hpp"
#include "simulator/simulate.hpp"

#include <cstdint>
#include <vector>

namespace sy {

struct TrainingStep {
  ModelGraph model;              // forward + backward (gradients of every parameter)
  double model_flops = 0;        // published training FLOPs of the whole step (all sequences); 0 when reduced
  double tokens = 0;             // tokens of the step (batch × tokens per sequence); 0 when reduced
  std::vector<double> weights;   // per node: how many layers of the full model it stands for
  OptimizerModel optimizer = OptimizerModel::adafactor;  // from the config
};

// The mesh axis size splitting the batch under `layout` (1 when batch is not split), for the
// Mesh-TF grouping of the MoE layers.
int64_t batch_split(const Mesh& mesh, const Layout& layout);

// Builds the training step with the MoE grouping of `split`. reduced: each stack keeps one layer
// of each kind (one dense and one sparse layer; one layer when all are alike), and the nodes of a
// kept layer weigh as many layers of the full stack as are of its kind (all other nodes weigh 1).
// A stack whose layer count is not a multiple of moe.every is built whole.
TrainingStep build_training_step(const ModelConfig& c, int64_t split, bool reduced = false);

}  // namespace sy
