// How to train a model: the [train] section of a model config file (graph/models/model_config.hpp
// reads the file into a RunConfig: its ModelConfig and this TrainConfig). The trainer
// (executor/train), the training graph (graph/models/training_graph) and the simulator read it;
// the model builder (graph/models/transformer) takes its batch shape, seed and precision.
//
// Schema (every key optional; the defaults are below in TrainConfig and OptimizerConfig):
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
//   activation_dtype = "f32"            f32 | bf16 (needs precision = "bf16"): bf16 also keeps every
//                                       activation outside the router and the loss in bf16, as
//                                       Mesh-TF's activation_dtype = bfloat16 did for ST-MoE (the
//                                       router upcasts its input; parameters stay f32)
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
//   collective_timeout = 0              on a mesh: seconds an MPI collective may wait before the
//                                       job ends with status "failed" naming the rank, host and
//                                       collective (a cut link, a stalled host); 0: automatic,
//                                       20 × the longest step so far, at least 15 s, and 300 s
//                                       before the first step completes (executor/mpi/watchdog.hpp)
//   remat = "none"                      none | layer | dots: rematerialisation of each layer's
//                                       activations in the backward pass (graph/autodiff.hpp Remat):
//                                       layer keeps only each layer's input (Mesh-TF recompute_grad,
//                                       T5X "full"), dots also keeps einsum outputs without batch
//                                       dims (T5X "minimal"); the same program runs and is priced
//   step_offset = 0                     the global step the run starts from: the model's and the
//                                       optimizer's step input and the schedule see step_offset + t
//                                       (train --init-from sets it to the checkpoint's step, so
//                                       kept Adafactor moments keep their weight, as in T5
//                                       fine-tuning where the global step continues)
//
//
// Settings derived in code (train --init-from sets step_offset to the checkpoint's step,
// --reset-optimizer sets reset_optimizer, a cosine schedule without decay_steps takes the run's
// --steps) are set on the TrainConfig by executor/train/training_run, not passed as --set strings.
#pragma once

#include "graph/attrs.hpp"
#include "graph/autodiff.hpp"
#include "graph/dtype.hpp"
#include "graph/fields.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace sy {

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

// The presets of train.trainable, in the order the schema lists them.
inline constexpr const char* kTrainablePresets[] = {"all", "moe", "non_moe", "attention", "ffn"};

// Whether train.trainable = `trainable` (a preset or a regex, see the schema) trains the parameter
// named `name`. Throws InputError for a regex that does not compile.
bool parameter_is_trainable(const std::string& trainable, const std::string& name);

struct TrainConfig {
  // The batch shape. Read and written by hand (graph/models/model_config.cpp), not by fields():
  // which length keys a file has depends on the model's architecture (input_length and
  // target_length for encoder_decoder, length for decoder_only, with its own default), and the
  // config JSON lists batch before them.
  int64_t batch = 8;
  int64_t input_length = 512;   // encoder tokens per sequence; 0 for decoder_only
  int64_t target_length = 114;  // decoder tokens per sequence (decoder_only: `length`)

  uint64_t seed = 0;
  DType precision = DType::f32;
  DType activation_dtype = DType::f32;  // bf16 needs precision bf16 (checked by the config reader)
  OptimizerConfig optimizer;
  double divergence_factor = 4.0;
  int64_t eval_batches = 0;
  std::string trainable = "all";  // a preset or a regex (see the schema and parameter_is_trainable)
  bool reset_optimizer = false;
  int64_t step_offset = 0;
  double collective_timeout = 0;  // seconds; 0: automatic (executor/mpi/watchdog.hpp)
  Remat remat = Remat::none;

  // The [train] keys after the batch shape, in file and JSON order. The fine-tuning keys are in
  // the JSON only when set, so the configs (and checkpoints) of other runs read as before.
  static void fields(auto& s, auto&& v) {
    v("seed", s.seed, at_least(0));
    v("precision", s.precision, kFloatDTypes);
    v("activation_dtype", s.activation_dtype, kFloatDTypes, s.activation_dtype != DType::f32);
    OptimizerConfig::fields(s.optimizer, v);
    v("divergence_factor", s.divergence_factor,
      Predicate{[](double x) { return x == 0 || x > 1; }, "0 (off) or > 1"});
    v("eval_batches", s.eval_batches, at_least(0));
    v("trainable", s.trainable, StringCheck{[](const std::string& t) { parameter_is_trainable(t, ""); }},
      s.trainable != "all");
    v("reset_optimizer", s.reset_optimizer, kAny, s.reset_optimizer);
    v("step_offset", s.step_offset, at_least(0), s.step_offset != 0);
    v("collective_timeout", s.collective_timeout, at_least(0, "seconds; 0: automatic"), s.collective_timeout != 0);
    v("remat", s.remat, kAny, s.remat != Remat::none);
  }
  bool operator==(const TrainConfig&) const = default;
};

}  // namespace sy
