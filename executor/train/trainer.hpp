// The training step, run by the Executor: the graph of graph/models/training_graph.hpp (forward,
// backward, global-norm clipping, one adafactor_update or adamw_update per trainable parameter),
// the same graph the simulator prices, with routing groups set by the communicator's mesh and the
// layout. The trainer feeds "optimizer/lr" (executor/train/schedule) and the model's "step" input
// (the 0-based step t, for both the model's randomness and the optimizer); the optimizer state
// leaves start at zero. After each run the new parameters and state are copied into their leaves.
// Parameters start from initial_value() with train.seed, drawn by the ids of
// the f32 graph, so f32 and bf16 runs of one seed start from the same weights.
//
// Evaluation builds the eval-mode graph of the same config (eval CF and policy, no dropout) with
// its own Executor and the current parameters: negative log perplexity = -(Σ target NLL) / (number
// of real targets) over the validation batches (the paper's quality metric, nats per token).
//
// Fine-tuning (executor/train/finetune.hpp): train.trainable freezes parameters: they stay in the
// graph and in state(), but gradients() is asked only for the trainable ones and only those get
// optimizer state and updates. train.step_offset shifts the step the model, the optimizer and the
// schedule see (global step = step_offset + updates done).
//
// Everything a step computes is a pure function of (parameters, optimizer state, step, batch):
// loading the state of step k and feeding the batches from k on repeats a run bit for bit.
#pragma once

#include "executor/data/batches.hpp"
#include "executor/executor.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/models/model_config.hpp"
#include "graph/models/transformer.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sy {

// One MoE layer's metrics (graph/models/moe.hpp MoeLayer), raw (not multiplied by coefficients).
struct MoeLayerMetrics {
  std::string scope;                     // "decoder/layer_01/moe"
  double aux_loss = 0, z_loss = 0;
  double router_entropy = 0, max_logit = 0;
  // The router's numerics (graph/models/moe.hpp MoeLayer): RMS logit, mean logsumexp, bf16
  // softmax round-off and the fraction of top-1 flips; router_grad_norm: training steps only
  // (its trainable router parameters; 0 when frozen or in evaluation).
  double rms_logit = 0, logsumexp = 0, softmax_roundoff = 0, top1_flip = 0, router_grad_norm = 0;
  std::vector<double> fraction_dropped;  // [k] per choice rank
  std::vector<double> expert_load;       // [experts]
  std::vector<double> balance_bias;      // [experts] after the step (moe.bias_balance_rate > 0), else empty
  // Evaluation only: tokens by part of speech and top expert (the expert of highest router
  // probability), [POS id][expert], POS ids of data::Corpus::pos_tags; tokens without a POS
  // (sentinels, padding, the decoder's first input) are not counted. Empty for the hash router.
  std::vector<std::vector<int64_t>> tokens_by_pos;
};

struct StepMetrics {
  int64_t step = 0;           // updates done, this one included (1-based)
  double loss = 0;            // cross_entropy + aux_loss + z_loss (the differentiated total)
  double cross_entropy = 0;   // mean over the batch's real targets, nats
  double aux_loss = 0;        // weighted sums over the MoE layers (0 for a dense model)
  double z_loss = 0;
  double grad_norm = 0;       // global norm before clipping
  double clip_scale = 1;      // factor applied to the gradients: min(1, grad_clip / grad_norm), 1 without clipping
  double learning_rate = 0;
  int64_t tokens = 0;         // B·(T_in + T_out) fed to the model
  int64_t target_tokens = 0;  // real (non-padding) targets
  std::vector<MoeLayerMetrics> moe;
};

struct EvalMetrics {
  double neg_log_perplexity = 0;  // -(Σ NLL) / target_tokens
  double accuracy = 0;            // over the real targets
  int64_t target_tokens = 0;
  int64_t batches = 0;
  std::vector<MoeLayerMetrics> moe;  // means over the batches
};

// A named f32 tensor of the training state (parameters and optimizer state), for checkpoints.
struct StateTensor {
  std::string name;
  TensorType type;
  float* data;  // the executor's leaf storage: read to save, written to restore
};

// Throws InputError naming the tensor, the dims and the rule broken when `layout` is illegal on
// `mesh` for the training graph of `config` and `train` (graph/parallel/layout.hpp check_layout).
// Builds the model graph only: cheap enough to run before any other work.
void check_training_layout(const ModelConfig& config, const TrainConfig& train, const Mesh& mesh, const Layout& layout);

class Trainer {
 public:
  // `config`: the model and its [train] settings (batch shape, seed, precision, optimizer,
  // trainable, step_offset). `total_steps` resolves a cosine schedule without decay_steps. Throws InputError for a config
  // the model builder refuses.
  // With exec.communicator set, every device of its mesh constructs a Trainer and makes the same
  // calls: the graphs are lowered for the mesh and `layout` (executor/mpi/mesh_executor.hpp), batches
  // and state are global (each device keeps its block), metrics are global values. Throws
  // InputError for an illegal layout.
  // `routing_mesh` (single process only): run the graph routed as on that mesh with `layout`
  // (its data-parallel split sets the routing groups; graph/models/training_graph.hpp), e.g. to
  // compare one process with a mesh run of the same math; empty: one device.
  Trainer(const RunConfig& config, int64_t total_steps, ExecutorOptions exec = {}, const Layout& layout = {},
          const Mesh& routing_mesh = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  const RunConfig& config() const;  // .model, .train
  const Graph& graph() const;       // the training graph (forward, backward, optimizer)
  const Graph& program() const;     // the graph the executor runs: graph(), or its lowering for the mesh
  int64_t step() const;             // updates done
  void set_step(int64_t step);      // after restoring a checkpoint's state
  int64_t tokens_per_step() const;  // B·(T_in + T_out)
  // This device's training program's memory plan, with how many parameter and state updates are
  // written in place (ExecutorOptions::updates) and how many are copied after each step.
  const MemoryPlanStats& memory() const;

  // Token lengths a batch source must produce: T_in (encoder, or the one sequence of a
  // decoder-only model) and the most targets the model takes.
  int64_t inputs_length() const;
  int64_t targets_length() const;

  // One update on `batch` (objective matching the architecture; targets up to targets_length(),
  // padded with weight 0). Returns the step's metrics; the update is applied even when they are
  // not finite (the caller decides to stop).
  StepMetrics train_step(const data::Batch& batch);

  // Evaluates the current parameters on up to `max_batches` batches of `source` (0: until it is
  // exhausted), from its current position.
  EvalMetrics evaluate(data::BatchSource& source, int64_t max_batches);
  // The same over batches from `next` (false: no more), e.g. a fine-tuning task's batches.
  EvalMetrics evaluate(const std::function<bool(data::Batch&)>& next, int64_t max_batches);

  // Parameters (by their graph names, frozen ones included) then the optimizer state of the
  // trainable ones, in leaf id order. On a mesh the tensors are global (gathered from the
  // devices' blocks: every device calls state()); writes reach the devices at the next step.
  std::vector<StateTensor> state();

  // Called after every op of the program (program()) with (node, begin µs, end µs); empty: none.
  void set_op_observer(std::function<void(NodeId, double, double)> f);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sy
