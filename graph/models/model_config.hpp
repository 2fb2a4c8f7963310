// Model configuration files (TOML) -> RunConfig: the ModelConfig ([model], [moe]), the one
// description of a model that the builders (graph/transformer), the counters (graph/model_stats)
// and the tools read, and the TrainConfig ([train], graph/models/train_config.hpp: batch shape,
// seed, precision, optimizer, fine-tuning settings).
//
// Schema (every key optional unless noted; the defaults are below in ModelConfig):
//
//   [model]                             required (it may be empty): a file without it (an empty
//                                       file, only comments or [train]) is refused naming the file
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
//   first_dense = 0                     ... except the first this many layers of each stack
//                                       (DeepSeek-V3: 3 dense layers, then every layer sparse)
//   extra_dense_ffn = false             ST-MoE sparse-dense: a dense FFN after each sparse FFN
//   experts, k, router, policy_train, policy_eval, policy_threshold, cf_train, cf_eval,
//   min_capacity, group_size, capacity, dropless, batch_prioritized, router_dtype, jitter,
//   balance, balance_coef, z_rule, z_coef, mesh_tf_loss_coef, expert_ffn, d_ff, expert_dropout,
//   expert_bias, renormalize_gates, hash, score, shared_experts, shared_d_ff, bias_balance_rate,
//   expert_groups, route_groups, router_init_scale, router_lr_scale
//                                       the MoeConfig fields (graph/models/moe.hpp), same names and
//                                       defaults; enum values by their spellings there ("top_k",
//                                       "mesh_tf", ...); expert_ffn defaults to model.ffn, d_ff to
//                                       model.d_ff
//   [moe.encoder] / [moe.decoder]       the same MoeConfig keys, overriding [moe] for the sparse
//                                       layers of one stack (e.g. group_size = 456 in the decoder,
//                                       batch_prioritized = true in the encoder only)
//
//   [train]                             batch, lengths, seed, precision, optimizer, ...: the
//                                       TrainConfig keys, schema in graph/models/train_config.hpp
//
// Errors are sy::InputError naming the file, the key (and its line, or the --set override that
// gave it), the bad value and what is allowed, in the wording of graph/toml_schema.hpp. Unknown keys and sections are errors listing the
// allowed ones. Inconsistent settings are errors too: k > experts, batch-prioritized routing in a
// decoder (it leaks future tokens), CF <= 0, heads not dividing d_model without d_kv, keys of the
// other architecture (layers in an encoder-decoder), ...
#pragma once

#include "graph/fields.hpp"
#include "graph/models/moe.hpp"
#include "graph/models/train_config.hpp"

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
  int64_t moe_first_dense = 0;  // the first this many layers of each stack stay dense (DeepSeek's first_k_dense_replace)
  bool moe_extra_dense_ffn = false;
  MoeConfig moe_encoder;  // the encoder's sparse layers (encoder_decoder only)
  MoeConfig moe_decoder;  // the decoder's (or the decoder-only stack's) sparse layers

  bool has_encoder() const { return architecture == Architecture::encoder_decoder; }
  bool is_moe() const { return moe_every > 0; }
  // Layer `index` (0-based) of a stack is sparse: layers every, 2·every, ... counted from 1.
  // Layer `index` (0-based) of a stack is sparse: layers every, 2·every, ... counted from 1, except
  // the first moe_first_dense layers.
  bool is_sparse_layer(int64_t index) const {
    return moe_every > 0 && index >= moe_first_dense && (index + 1) % moe_every == 0;
  }
};

// A model config file: the model and how to train it.
struct RunConfig {
  ModelConfig model;  // [model], [moe]
  TrainConfig train;  // [train]
};

// Reads `path` and applies `overrides` ("section.key=value", e.g. "moe.cf_train=2.0" or
// "moe.decoder.group_size=456"; the value is TOML, a bare word is taken as a string), then
// validates. Throws InputError as described above.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The same from TOML text; `source_name` stands for the file in messages and gives the default
// name (its stem).
RunConfig parse_run_config(std::string_view text, std::string_view source_name,
                           const std::vector<std::string>& overrides = {});

// Every resolved setting (the MoE blocks only for MoE models), for reports and run records:
// {"model": ..., "moe": ..., "train": ...}. Checkpoints hold it (executor/train/checkpoint.hpp).
nlohmann::ordered_json to_json(const RunConfig& c);

}  // namespace sy
