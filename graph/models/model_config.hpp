// Model configuration files (TOML) -> ModelConfig, the one description of a model that the
// builders (graph/transformer), the counters (graph/model_stats) and the tools read.
//
// Schema (every key optional unless noted; the defaults are below in ModelConfig):
//
//   [model]
//   name = "st_moe_32b"                 default: the file's stem
//   architecture = "encoder_decoder"    encoder_decoder | decoder_only
//   vocab = 32128
//   d_model = 512
//   d_ff = 2048                         dense FFN hidden size (GEGLU: of each of the two inputs)
//   heads = 8
//   d_kv = 64                           default: d_model / heads (then heads must divide d_model)
//   encoder_layers = 6                  encoder_decoder only
//   decoder_layers = 6                  encoder_decoder only
//   layers = 6                          decoder_only only
//   ffn = "geglu"                       geglu | relu
//   relu_matches_geglu_flops = false    relu only: hidden size round(1.5·d_ff), the FLOPs and
//                                       parameters of a GEGLU FFN of d_ff (ST-MoE's ReLU baseline)
//   norm_scale = true                   RMSNorm learned scale g (false: g fixed at ones)
//   norm_eps = 1e-6
//   position_bias = true                T5 relative position bias, one table per stack
//   position_buckets = 32               (shared by the stack's layers; bidirectional in the
//   position_max_distance = 128          encoder, causal in the decoder)
//   tied_embeddings = true              tied: logits = h · Eᵀ · d_model^-0.5 (Mesh-TF);
//                                       untied: a separate [d_model, vocab] kernel, no scaling
//   dropout = 0.0                       T5 dropout: embeddings, attention probabilities, FFN
//                                       hidden, each residual branch, the final norm's output
//   init_scale = 0.1                    truncated normal, σ = sqrt(init_scale / fan_in)
//
//   [moe]                               present = the model has MoE layers
//   every = 1                           layers every, 2·every, ... (1-based) are sparse
//   extra_dense_ffn = false             ST-MoE sparse-dense: a dense FFN after each sparse FFN
//   experts, k, router, policy_train, policy_eval, policy_threshold, cf_train, cf_eval,
//   min_capacity, group_size, capacity, dropless, batch_prioritized, router_dtype, jitter,
//   balance, balance_coef, z_rule, z_coef, mesh_tf_loss_coef, expert_ffn, d_ff, expert_dropout,
//   expert_bias, renormalize_gates, hash
//                                       the MoeConfig fields (graph/models/moe.hpp), same names and
//                                       defaults; enum values by their spellings there ("top_k",
//                                       "mesh_tf", ...); expert_ffn defaults to model.ffn, d_ff to
//                                       model.d_ff
//   [moe.encoder] / [moe.decoder]       the same MoeConfig keys, overriding [moe] for the sparse
//                                       layers of one stack (e.g. group_size = 456 in the decoder,
//                                       batch_prioritized = true in the encoder only)
//
//   [train]
//   batch = 8                           sequences per step
//   input_length = 512                  encoder tokens per sequence (encoder_decoder)
//   target_length = 114                 decoder tokens per sequence (encoder_decoder)
//   length = 256                        tokens per sequence (decoder_only)
//   seed = 0                            dropout and other randomness
//   precision = "f32"                   f32 | bf16: ST-MoE selective precision (every einsum but
//                                       the router's in bf16; router, softmax, losses and master
//                                       weights f32; see graph/models/transformer.hpp)
//   optimizer = "adafactor"             adafactor | adamw (ops/optimizer.cpp)
//   schedule = "inverse_sqrt"           inverse_sqrt: lr = learning_rate · sqrt(warmup_steps /
//                                       max(t, warmup_steps)), with the defaults the paper's
//                                       1/sqrt(max(t, 10⁴)); constant: learning_rate; cosine:
//                                       linear warm-up to learning_rate over warmup_steps, then a
//                                       half cosine down to min_learning_rate at decay_steps
//   learning_rate = 0.01                the peak learning rate
//   warmup_steps = 10000
//   decay_steps = 0                     cosine: the step the decay ends; 0: the run's --steps
//   min_learning_rate = 0.0             cosine: the floor
//   grad_clip = 0.0                     maximum global gradient norm; 0: no clipping
//   clip_threshold = 1.0                Adafactor update clipping d (0: none)
//   decay_exponent = 0.8                Adafactor second-moment decay 1 - (t+1)^-decay_exponent
//   parameter_scale = true              Adafactor: step × max(RMS(param), epsilon2)
//   factored = true                     Adafactor: factored second moments for rank >= 2
//   epsilon1 = 1e-30, epsilon2 = 1e-3   Adafactor
//   beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8, weight_decay = 0.0     AdamW
//   divergence_factor = 4.0             the run stops as diverged when a loss exceeds this factor
//                                       times the lowest running mean of earlier losses (0: only NaN/Inf)
//   eval_batches = 0                    validation batches per evaluation; 0: the whole split
//   trainable = "all"                   which parameters train (fine-tuning, ST-MoE Fig. 5); the
//                                       others are frozen: no gradient, no optimizer state, never
//                                       written. Presets, by parameter name (graph/models/transformer.hpp):
//                                         all        every parameter
//                                         moe        the MoE layers' expert weights and router:
//                                                    names with a "/moe/" component
//                                                    (.../moe/experts/wi_0, .../moe/router/w);
//                                                    not the moe_norm before the layer
//                                         non_moe    every parameter that moe does not match
//                                         attention  self- and cross-attention projections and
//                                                    the relative position bias tables: names
//                                                    with "/attention/", "/cross_attention/" or
//                                                    "relative_position_bias/" (not their norms)
//                                         ffn        the dense FFNs: names with "/ffn/" or
//                                                    "/extra_ffn/" (not the experts, not norms)
//                                       anything else is an ECMAScript regular expression searched
//                                       in each name (std::regex_search): "router|_norm/scale"
//   reset_optimizer = false             with train --init-from: start the optimizer state at zero
//                                       (ST-MoE Table 20) instead of the checkpoint's
//   step_offset = 0                     the global step the run starts from: the model's and the
//                                       optimizer's step input and the schedule see step_offset + t
//                                       (train --init-from sets it to the checkpoint's step, so
//                                       kept Adafactor moments keep their weight, as in T5
//                                       fine-tuning where the global step continues)
//
// Errors are sy::InputError naming the file, the key (and its line, or the --set override that
// gave it), the bad value and what is allowed, in the wording of graph/toml_schema.hpp. Unknown keys and sections are errors listing the
// allowed ones. Inconsistent settings are errors too: k > experts, batch-prioritized routing in a
// decoder (it leaks future tokens), CF <= 0, heads not dividing d_model without d_kv, keys of the
// other architecture (layers in an encoder-decoder), ...
#pragma once

#include "graph/attrs.hpp"
#include "graph/dtype.hpp"
#include "graph/fields.hpp"
#include "graph/models/moe.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

enum class Architecture : uint8_t { encoder_decoder, decoder_only };
SY_ENUM_NAMES(Architecture, {Architecture::encoder_decoder, "encoder_decoder"},
              {Architecture::decoder_only, "decoder_only"})
std::string_view architecture_name(Architecture a);

enum class OptimizerKind : uint8_t { adafactor, adamw };
SY_ENUM_NAMES(OptimizerKind, {OptimizerKind::adafactor, "adafactor"}, {OptimizerKind::adamw, "adamw"})
std::string_view optimizer_name(OptimizerKind k);

enum class LrSchedule : uint8_t { inverse_sqrt, constant, cosine };
SY_ENUM_NAMES(LrSchedule, {LrSchedule::inverse_sqrt, "inverse_sqrt"}, {LrSchedule::constant, "constant"},
              {LrSchedule::cosine, "cosine"})
std::string_view schedule_name(LrSchedule s);

// [train] optimizer keys (see the schema above; executor/schedule and ops/optimizer use them).
// The update rules' settings are the op attributes themselves (graph/attrs.hpp), so the
// optimizer nodes take them as they are.
struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::adafactor;
  LrSchedule schedule = LrSchedule::inverse_sqrt;
  double learning_rate = 0.01;
  int64_t warmup_steps = 10000;
  int64_t decay_steps = 0;
  double min_learning_rate = 0.0;
  double grad_clip = 0.0;
  AdafactorAttrs adafactor;
  AdamWAttrs adamw;

  // The [train] keys, in file and JSON order. The config JSON shows the schedule's and the
  // optimizer's own keys only (decay_steps under cosine, beta1 under adamw, ...).
  static void fields(auto& s, auto&& v) {
    v("optimizer", s.kind);
    v("schedule", s.schedule);
    v("learning_rate", s.learning_rate, above(0));
    v("warmup_steps", s.warmup_steps, at_least(0));
    const bool cosine = s.schedule == LrSchedule::cosine;  // (a reader has read `schedule` by now)
    v("decay_steps", s.decay_steps, at_least(0), cosine);
    v("min_learning_rate", s.min_learning_rate, at_least(0), cosine);
    v("grad_clip", s.grad_clip, at_least(0, "0: no clipping"));
    const bool adafactor = s.kind == OptimizerKind::adafactor;
    v("clip_threshold", s.adafactor.clip_threshold, at_least(0, "0: no update clipping"), adafactor);
    v("decay_exponent", s.adafactor.decay_exponent, above(0), adafactor);
    v("parameter_scale", s.adafactor.parameter_scale, kAny, adafactor);
    v("factored", s.adafactor.factored, kAny, adafactor);
    v("epsilon1", s.adafactor.epsilon1, at_least(0), adafactor);
    v("epsilon2", s.adafactor.epsilon2, at_least(0), adafactor);
    v("beta1", s.adamw.beta1, interval(0, 1, "[)"), !adafactor);
    v("beta2", s.adamw.beta2, interval(0, 1, "[)"), !adafactor);
    v("epsilon", s.adamw.epsilon, above(0), !adafactor);
    v("weight_decay", s.adamw.weight_decay, at_least(0), !adafactor);
  }
  bool operator==(const OptimizerConfig&) const = default;
};

struct ModelConfig {
  std::string name;    // [model] name, or the file's stem
  std::string source;  // the file it came from ("" when built in code)

  // [model]
  Architecture architecture = Architecture::encoder_decoder;
  int64_t vocab = 32128;
  int64_t d_model = 512;
  int64_t d_ff = 2048;  // the dense FFN's hidden size as built (relu_matches_geglu_flops applied)
  int64_t heads = 8;
  int64_t d_kv = 64;
  int64_t encoder_layers = 6;  // 0 for decoder_only
  int64_t decoder_layers = 6;  // decoder_only: the layers of the one stack
  FfnKind ffn = FfnKind::geglu;
  bool relu_matches_geglu_flops = false;
  bool norm_scale = true;
  double norm_eps = 1e-6;
  bool position_bias = true;
  int64_t position_buckets = 32;
  int64_t position_max_distance = 128;
  bool tied_embeddings = true;
  double dropout = 0.0;
  double init_scale = 0.1;

  // [moe]: moe_every == 0 means dense. The MoeConfigs are complete (expert d_ff and FFN kind
  // filled in from the model when not given).
  int64_t moe_every = 0;
  bool moe_extra_dense_ffn = false;
  MoeConfig moe_encoder;  // the encoder's sparse layers (encoder_decoder only)
  MoeConfig moe_decoder;  // the decoder's (or the decoder-only stack's) sparse layers

  // [train]
  int64_t batch = 8;
  int64_t input_length = 512;   // encoder tokens per sequence; 0 for decoder_only
  int64_t target_length = 114;  // decoder tokens per sequence (decoder_only: `length`)
  uint64_t seed = 0;
  DType precision = DType::f32;
  OptimizerConfig optimizer;
  double divergence_factor = 4.0;
  int64_t eval_batches = 0;
  std::string trainable = "all";  // a preset or a regex (see the schema and parameter_is_trainable)
  bool reset_optimizer = false;
  int64_t step_offset = 0;

  bool has_encoder() const { return architecture == Architecture::encoder_decoder; }
  bool is_moe() const { return moe_every > 0; }
  // Layer `index` (0-based) of a stack is sparse: layers every, 2·every, ... counted from 1.
  bool is_sparse_layer(int64_t index) const { return moe_every > 0 && (index + 1) % moe_every == 0; }
};

// The presets of train.trainable, in the order the schema lists them.
inline constexpr const char* kTrainablePresets[] = {"all", "moe", "non_moe", "attention", "ffn"};

// Whether train.trainable = `trainable` (a preset or a regex, see the schema) trains the parameter
// named `name`. Throws InputError for a regex that does not compile.
bool parameter_is_trainable(const std::string& trainable, const std::string& name);

// Reads `path` and applies `overrides` ("section.key=value", e.g. "moe.cf_train=2.0" or
// "moe.decoder.group_size=456"; the value is TOML, a bare word is taken as a string), then
// validates. Throws InputError as described above.
ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The same from TOML text; `source_name` stands for the file in messages and gives the default
// name (its stem).
ModelConfig parse_model_config(std::string_view text, std::string_view source_name,
                               const std::vector<std::string>& overrides = {});

// Every resolved setting (the MoE blocks only for MoE models), for reports and run records.
nlohmann::ordered_json to_json(const ModelConfig& c);

}  // namespace sy
