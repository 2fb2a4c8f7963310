// The model builders: a ModelConfig (and the TrainConfig's batch shape, seed and precision) -> one
// forward Graph (loss and metrics as outputs).
//
//   encoder_decoder (T5 v1.1 / ST-MoE / Switch):
//     encoder_input_tokens [B, L_in] ─embedding─► dropout ─► N × encoder layer ─► RMSNorm ─► dropout
//       encoder layer: x += drop(self_attention(norm(x), bias_enc))    bidirectional buckets
//                      x += drop(ffn(norm(x)))            dense, or MoE on sparse layers
//                      x += drop(extra_ffn(norm(x)))      sparse layers with moe.extra_dense_ffn
//     decoder_input_tokens [B, L_out] ─embedding (shared)─► dropout ─► N × decoder layer ─► norm
//       decoder layer: x += drop(self_attention(norm(x), bias_dec + causal mask))
//                      x += drop(cross_attention(norm(x), encoder output))   no position bias
//                      x += ... FFN as in the encoder
//     logits [B, L_out, V] = h · Eᵀ · d_model^-0.5 (tied) or h · W_logits (untied)
//   decoder_only: the decoder without cross-attention over decoder_input_tokens [B, L].
//
//   attention (Mesh-TF einsums, no 1/sqrt(d_kv): T5 folds it into the initialisation):
//     q = x·wq [B, L, H, K]   k, v = m·wk, m·wv [B, M, H, K]   (wq, wk, wv: [D, H, K])
//     p = softmax_M(q·k + bias) [B, H, L, M] ─dropout─► o = p·v [B, L, H, K] ─► o·wo [B, L, D]
//   FFN: GEGLU (gelu(x·wi_0) ⊙ x·wi_1)·wo, or ReLU relu(x·wi)·wo; dropout on the hidden units.
//
// loss = mean token cross-entropy (f32) + Σ_layers MoE aux loss + Σ_layers MoE z-loss, each MoE
// term already weighted by its coefficient (MoeLayer).
//
// Graph inputs (i32): "step" [] (the training step: the randomness of dropout, jitter, ...),
// "encoder_input_tokens" [batch, length] (encoder_decoder only), "decoder_input_tokens" and
// "decoder_target_tokens" [batch, length]. Named dims: batch, length, memory_length (keys and
// values of attention), d_model, heads, d_kv, d_ff, vocab, buckets; the MoE layer adds group,
// experts, capacity, ...
//
// Graph outputs: "loss" (Graph::loss), "cross_entropy", "accuracy" (argmax = target; unless
// BuildOptions::accuracy is false), and for MoE
// models "aux_loss", "z_loss" (the weighted sums) plus each MoE layer's metrics
// "<layer scope>/moe/metrics/<name>".
//
// Scopes (for counting by component; see graph/models/model_stats.hpp):
//   embedding                          token lookups; parameter embedding/table [vocab, d_model]
//   encoder/relative_position_bias     the stack's bucket ids and bias table [buckets, heads]
//   decoder/causal_mask
//   encoder/layer_03/attention         self-attention (attention_norm: its pre-norm)
//   decoder/layer_03/cross_attention   (cross_attention_norm)
//   encoder/layer_03/ffn               dense FFN (ffn_norm)
//   encoder/layer_03/moe               MoE FFN: moe/router, moe/dispatch, moe/experts (moe_norm)
//   encoder/layer_03/extra_ffn         ST-MoE's dense FFN after a sparse one (extra_ffn_norm)
//   encoder/final_norm, logits, loss, metrics
// Parameters are named <scope>/<name>: encoder/layer_03/attention/wq, .../ffn/wi_0, ...
#pragma once

#include "graph/ir.hpp"
#include "graph/models/model_config.hpp"
#include "graph/tensor.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace sy {

enum class Mode : uint8_t {
  train,  // dropout, jitter and train-time policies on; train CF
  eval,   // all randomness off; eval CF and eval policy
};

struct BuildOptions {
  Mode mode = Mode::train;
  int64_t batch = 0;         // sequences per step; 0: the config's train.batch
  int64_t batch_split = 1;   // mesh axis size splitting the batch (Mesh-TF MoE grouping)
  bool moe_metrics = true;   // each MoE layer's metrics as graph outputs
  // A per-target weight input "decoder_target_weights" f32 [batch, length]: cross_entropy and
  // accuracy become Σ w·(per-token value) instead of the mean. The caller passes weights that sum
  // to 1 over the real targets and are 0 on padding (executor/trainer does).
  bool loss_weights = false;
  // The "accuracy" output (an argmax over the vocabulary per target: a full pass over the logits;
  // executor/trainer leaves it out of training steps and keeps it for evaluation).
  bool accuracy = true;
  // A "predictions" output i32 [batch, length]: the argmax over the vocabulary per position (greedy
  // decoding, executor/train/finetune.hpp). Off by default; the graph is unchanged without it.
  bool predictions = false;
};

// How to initialise one parameter (recorded beside the graph, not in it).
enum class InitKind : uint8_t {
  truncated_normal,  // N(0, stddev²) redrawn outside ±2·stddev (TensorFlow's truncated_normal)
  ones,              // RMSNorm scales, multiplicative biases
  zeros,             // additive biases
};
std::string_view init_kind_name(InitKind k);

struct ParamInit {
  ValueId param;
  InitKind kind = InitKind::truncated_normal;
  double stddev = 0.0;  // truncated_normal: sqrt(init_scale / fan_in), or 1.0 for the token embedding
  int64_t fan_in = 0;   // the input units behind stddev (0 where stddev is not fan-in scaled)
};

// One MoE layer of the model.
struct MoeLayerInfo {
  std::string scope;  // "decoder/layer_03/moe"
  bool decoder = false;
  int64_t groups = 0, group_size = 0, capacity = 0;
  // Auxiliary-loss-free balancing (moe.bias_balance_rate > 0): the bias parameter and, in a
  // training graph, its next value (MoeLayer::balance_bias_next); invalid otherwise.
  ValueId balance_bias, balance_bias_next;
};

struct ModelGraph {
  Graph graph;
  Mode mode = Mode::train;
  int64_t batch = 0;
  ValueId step;                  // i32 []
  ValueId encoder_input_tokens;  // i32 [batch, length]; invalid for decoder_only
  ValueId decoder_input_tokens;  // i32 [batch, length]
  ValueId decoder_target_tokens; // i32 [batch, length]
  ValueId decoder_target_weights; // f32 [batch, length]; valid with BuildOptions::loss_weights
  ValueId cross_entropy;         // f32 []
  ValueId aux_loss, z_loss;      // f32 [] (weighted sums over the MoE layers); invalid when dense
  std::vector<ParamInit> init;   // one per parameter, in parameter id order
  std::vector<MoeLayerInfo> moe_layers;
};

// Builds the forward graph of `c` (no gradients: run gradients() on .graph for training) for
// batches of `train`'s shape (train.batch unless opts.batch; train.input_length and
// target_length), its randomness seeded by train.seed. Only shapes are created, so a
// 269B-parameter model builds in milliseconds.
//
// Precision (train.precision, train.activation_dtype): f32 builds everything in f32. bf16 with
// f32 activations computes only the einsums in bf16 (selective precision): the f32 graph is
// rewritten so that every einsum outside a router scope casts its operands to bf16, multiplies
// in bf16 (oneDNN accumulates in f32; AMX where the CPU has it) and casts the product back to
// f32; norms, softmax, losses and every elementwise op stay f32. bf16 with bf16 activations is
// Mesh-TF's activation_dtype = bfloat16, as ST-MoE, Switch and T5 trained: every value outside a
// router scope and the loss ("loss", "metrics", "predictions") is bf16 (fills and one-hots made
// in bf16), the router upcasts its input to f32 (ST-MoE §3) and the logits are upcast for the
// loss.
// Either way parameters (the master weights) stay f32 and are cast at use; autodiff
// differentiates through the casts, so the gradients arrive in f32. Value ids differ from the
// f32 graph's (the casts are new values); executor/trainer draws initial values by the f32
// graph's ids, so every precision starts from the same weights for one seed.
ModelGraph build_model(const ModelConfig& c, const TrainConfig& train, const BuildOptions& opts = {});

// A parameter's initial value: `init` drawn from a generator seeded by (seed, init.param), so the
// same seed gives the same weights in every process.
Tensor initial_value(const ParamInit& init, const TensorType& type, uint64_t seed);

// T5's relative position bucket of query position i and memory position j (n = i - j):
// bidirectional: buckets/2 for j > i plus the bucket of |n| among buckets/2; causal: the bucket of
// max(n, 0) among `buckets`. Within a half, distances below half the buckets are exact, larger
// ones logarithmic up to max_distance (then the last bucket).
int64_t relative_position_bucket(int64_t i, int64_t j, bool bidirectional, int64_t buckets, int64_t max_distance);

}  // namespace sy
