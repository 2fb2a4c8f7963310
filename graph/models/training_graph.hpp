// The training step as one graph: the program the executor runs (executor/train/trainer,
// executor/mpi/mesh_executor) and the simulator prices (simulator/model_step, simulate, sweep).
// Everybody builds it here, so the two backings see the same nodes.
//
//   build_model(config, train) ─► gradients() ─► per trainable parameter p, in scope "optimizer/<p>":
//     Σ g_p² (one term of the global norm)
//   "optimizer":
//     grad_norm_squared = Σ_p Σ g_p²                                             f32 []
//     clip_scale = grad_clip > 0 and ‖g‖ > grad_clip ? grad_clip / ‖g‖ : 1         (global-norm clipping)
//   "optimizer/<p>": adafactor_update or adamw_update (p, g_p, state..., lr, step, clip_scale); a
//     router parameter's lr is × moe.router_lr_scale of its stack
//     Adafactor with its statistics as nodes of their own (graph/builder.hpp adafactor_update),
//     which lowering reduces over the mesh axes that split p
//
// Graph inputs besides the model's: "optimizer/lr" f32 [] and the optimizer state leaves
// "optimizer/<param>/<slot>" (v_row, v_col or v for Adafactor; m, v for AdamW), f32. Graph outputs
// besides the model's: "optimizer/grad_norm_squared", "optimizer/clip_scale", each MoE layer's
// "<layer scope>/metrics/router_grad_norm_squared" (its trainable router parameters), "update/<param>" and
// "update/optimizer/<param>/<slot>" (a balance bias's "update/<param>" is its balancing rule's
// next value, computed in its MoE layer's router scope). Each parameter's update has its own scope so a reduced build
// (simulator/model_step) can weigh it by the layers its parameter stands for.
//
// Routing groups, one rule (Mesh-TF moe.py; docs/design.md): the MoE layers group their tokens
// into G groups with G a multiple of the number of data-parallel shards, the size of the mesh
// axis the layout splits `batch` over (routing_batch_split). Without moe.group_size that is one
// group per shard; with it, G = tokens / group_size rounded up to such a multiple
// (graph/models/moe.hpp moe_grouping). The grouping is part of the model's math: the same config
// on another data-parallel split routes differently unless group_size fixes G.
//
// Evaluation (Mode::eval) is the forward graph only (eval capacity factor and policy, no dropout,
// the accuracy output), with the same grouping.
#pragma once

#include "graph/ir.hpp"
#include "graph/models/model_config.hpp"
#include "graph/models/transformer.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/parallel/mesh.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sy {

struct TrainingGraphOptions {
  Mode mode = Mode::train;
  Mesh mesh;      // where the program will run; empty: one device
  Layout layout;  // how it is split over `mesh`
  // Training only: clipping and the optimizer's update nodes. false: forward and backward only
  // (the simulator's `--optimizer none`).
  bool optimizer = true;
  bool moe_metrics = true;  // each MoE layer's metrics as graph outputs (the trainer reads them)
};

// A trainable parameter, its optimizer state leaves and the values its update node writes.
struct OptimizerSlot {
  ValueId param, new_param;
  std::vector<ValueId> state, new_state;
};

struct TrainingGraph {
  ModelGraph model;                  // .graph: forward, backward, optimizer
  // The trainable parameters (train.trainable) and the MoE balance biases (moe.bias_balance_rate:
  // updated by their balancing rule, no state, never differentiated), in id order.
  std::vector<OptimizerSlot> slots;
  std::vector<ValueId> frozen;       // the other parameters, in id order
  ValueId loss;                      // f32 [] the differentiated total
  ValueId lr;                        // f32 [] "optimizer/lr"; invalid without an optimizer
  ValueId grad_norm_squared;         // f32 []; invalid without an optimizer
  ValueId clip_scale;                // f32 []; invalid without an optimizer
};

// The number of data-parallel shards of `layout` on `mesh`: the size of the axis `batch` is split
// over, 1 when it is not split.
int64_t routing_batch_split(const Mesh& mesh, const Layout& layout);

// Throws InputError for a config the model builder refuses, or when train.trainable matches no
// parameter.
TrainingGraph build_training_graph(const ModelConfig& config, const TrainConfig& train,
                                   const TrainingGraphOptions& opts = {});

// The state slots the optimizer keeps for a parameter of `shape` (ops/optimizer.cpp): AdamW m and v
// of the parameter's shape; Adafactor v_row (the last dim dropped) and v_col (the second-to-last
// dropped) when factored and rank ≥ 2, else v.
std::vector<std::pair<std::string, Shape>> optimizer_state_slots(const OptimizerConfig& o, const Shape& param);

// True for the optimizer's state leaves ("optimizer/<param>/<slot>", not "optimizer/lr"):
// checkpoints, fine-tuning and the memory model tell them from parameters by this name.
bool is_optimizer_state(const std::string& name);

}  // namespace sy
