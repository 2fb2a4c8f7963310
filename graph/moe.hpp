// The MoE layer and its router library, built from primitive ops (Mesh-TF style: dense dispatch
// and combine tensors [G, S, E, C]). Formulas and conventions: ../shared/REFERENCE.md.
#pragma once

#include "graph/builder.hpp"

#include <cstdint>
#include <string>

namespace sy {

enum class RouterKind : uint8_t {
  top_k,          // Switch (k = 1), top-2 / top-n with a second-expert policy (Mesh-TF)
  expert_choice,  // Zhou et al. 2022: each expert takes its top-C tokens; no aux loss
  hash,           // Roller et al. 2021: expert = hash(token id) mod E; no learned router
  noisy_top_k,    // Shazeer et al. 2017: logits + N(0,1)·softplus(x·W_noise); CV² losses
};

enum class SecondPolicy : uint8_t { all, none, threshold, random };  // ranks >= 2 (Mesh-TF)

enum class CapacityRule : uint8_t {
  mesh_tf,     // C = max(min_capacity, min(S, floor(S·CF/E)))   (not × k)
  flaxformer,  // as mesh_tf with round-to-nearest instead of floor
  ceil_k,      // C = ceil(k·CF·S/E)
};

enum class BalanceLoss : uint8_t {
  none,
  switch_top1,      // E · Σ_e f_e P_e, f from top-1 choices (Switch / Mesh-TF)
  flaxformer_topk,  // f counts every selected expert
  gshard,           // GShard's mean-over-groups variant
};

enum class ZLossRule : uint8_t {
  paper,    // c_z · mean (logsumexp x)²  (ST-MoE eq. 5, Flaxformer)
  mesh_tf,  // additionally × loss_coef (Mesh-TF's effective c_z · 1e-2)
};

enum class FfnKind : uint8_t { geglu, relu };

struct MoeConfig {
  int64_t experts = 8;                    // E
  int64_t k = 2;                          // experts per token
  RouterKind router = RouterKind::top_k;
  SecondPolicy policy_train = SecondPolicy::random;
  SecondPolicy policy_eval = SecondPolicy::all;  // deterministic eval unless asked
  double policy_threshold = 0.2;          // τ
  double cf_train = 1.25;
  double cf_eval = 2.0;
  int64_t min_capacity = 4;
  int64_t group_size = 0;                 // tokens per group; 0 = the whole batch is one group
  CapacityRule capacity = CapacityRule::mesh_tf;
  bool dropless = false;                  // capacity = max load (for comparison)
  bool batch_prioritized = false;         // BPR: encoder only
  DType router_dtype = DType::f32;        // selective precision: f32 router
  double jitter = 0.0;                    // multiplicative U(1-ε, 1+ε) on router input, training only
  BalanceLoss balance = BalanceLoss::switch_top1;
  double balance_coef = 1e-2;             // c_b
  ZLossRule z_rule = ZLossRule::paper;
  double z_coef = 1e-3;                   // c_z
  double mesh_tf_loss_coef = 1e-2;        // Mesh-TF's loss_coef, used by ZLossRule::mesh_tf
  FfnKind expert_ffn = FfnKind::geglu;
  int64_t d_ff = 0;                       // expert hidden size
  double expert_dropout = 0.0;
  bool expert_bias = false;               // multiplicative per-expert bias
};

}  // namespace sy
