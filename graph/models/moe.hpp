// The MoE layer and its router library, built from primitive ops (Mesh-TF style: dense dispatch
// and combine tensors [G, S, E, C]). Formulas and conventions: docs/formulas.md.
//
// moe_layer() data flow (legend: T tokens, D d_model, E experts, K top-k, F d_ff, C capacity,
// G groups, S group size):
//
//   x [..., D] ─reshape─► [G, S, D] ─(router)─► logits [G, S, E] (router_dtype) ─► probs f32
//     top_k router:   scores softmax_E (or sigmoid per expert) ─► selection scores (+ balance
//                     bias; outside the token's top-M expert groups: -1e30) ─► top-k experts;
//                     gates = their scores [G, S, K], renormalised g/Σg (k ≥ 2); policy on ranks ≥ 2
//     noisy_top_k:    logits + N(0,1)·softplus(x W_noise) (training); gates = softmax over the top k
//     hash:           expert from the token id (one choice, gate 1); no learned router
//     expert_choice:  each expert takes its top-C tokens of the group by router probability
//   slots: exclusive cumsum over the group, all rank-1 choices before rank-2 (token order, or by
//          top-1 probability with BPR); a choice is kept iff its slot < C
//   dispatch, combine [G, S, E, C] ─► expert inputs [E, G, C, D] ─(experts: GEGLU/ReLU FFN)─►
//   [E, G, C, D] ─combine─► y [..., D] (0 for a dropped token: the caller adds the residual)
//
// Scopes (for parameter/FLOP counting by component), under the caller's scope:
//   router/    router logits, softmax, top-k, slots, losses, metrics; parameters router/w
//              (and router/w_noise for noisy_top_k)
//   dispatch/  the dispatch and combine einsums (the all-to-alls when experts are sharded)
//   experts/   the expert FFNs; parameters experts/wi_0, experts/wi_1 (GEGLU) or experts/wi (ReLU),
//              experts/wo, and experts/scale when expert_bias is on
//   shared_experts/  the always-on experts (shared_experts > 0): one FFN of x [..., D] with
//              shared_experts · shared_d_ff hidden units (dims d_model, d_ff: sharded as a dense
//              FFN is), parameters shared_experts/wi_0, wi_1 (or wi), wo; added to y
#pragma once

#include "graph/builder.hpp"
#include "graph/fields.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sy {

// The capacity dim C of the expert buffers [E, G, C, D]: each (expert, group) block's slots, its
// routed rows first (what the executor's ragged paths, the simulator's ragged pricing and
// calibrate's ragged samples find the buffers by).
inline constexpr std::string_view kCapacityDim = "capacity";

enum class RouterKind : uint8_t {
  top_k,          // Switch (k = 1), top-2 / top-n with a second-expert policy (Mesh-TF)
  expert_choice,  // Zhou et al. 2022: each expert takes its top-C tokens (C ≤ S); no aux loss (k ignored)
  hash,           // Roller et al. 2021: expert = hash(token id); no learned router (k ignored: 1)
  noisy_top_k,    // Shazeer et al. 2017: logits + N(0,1)·softplus(x·W_noise); CV² losses
};

enum class SecondPolicy : uint8_t { all, none, threshold, random };  // ranks >= 2 (Mesh-TF)

enum class CapacityRule : uint8_t {
  mesh_tf,     // C = max(min_capacity, min(S, floor(S·CF/E)))   (not × k)
  flaxformer,  // as mesh_tf with round-to-nearest (ties to even, as Python's round) instead of floor
  ceil_k,      // C = max(min_capacity, ceil(k·CF·S/E))
};

enum class BalanceLoss : uint8_t {
  none,
  switch_top1,      // E · Σ_e f_e P_e per group (= E²·mean_{g,e} f·P), f from top-1 choices (Switch / Mesh-TF)
  flaxformer_topk,  // as switch_top1, f counts every selected expert of the top k
  gshard,           // GShard eq. 4: (1/E)·Σ_e f_e P_e per group (= mean_{g,e} f·P): switch_top1 / E²
  sequence,         // DeepSeek-V3 eq. 17-20, per sequence: Σ_e f_e P_e with f_e = E/(k·T)·(tokens choosing e),
                    // P_e = mean_t s'_e,t (scores normalised over the experts), averaged over the sequences
};

enum class ZLossRule : uint8_t {
  paper,    // c_z · mean (logsumexp x)²  (ST-MoE eq. 5, Flaxformer)
  mesh_tf,  // additionally × loss_coef (Mesh-TF's effective c_z · 1e-2)
};

enum class FfnKind : uint8_t { geglu, relu };

// How the router turns logits into expert scores (top_k router).
enum class ScoreFunction : uint8_t {
  softmax,  // p = softmax_E(logits) (Switch, GShard, ST-MoE)
  sigmoid,  // s_e = sigmoid(logit_e), each expert scored on its own (DeepSeek-V3); the gates of the
            // chosen experts are renormalised to sum to 1 (renormalize_gates, k ≥ 2)
};

enum class HashKind : uint8_t {
  mod,     // expert = token id mod E
  random,  // a fixed random table vocab -> expert (Roller et al.'s "random hash"), drawn from the
           // layer's seed: expert = argmax_e U(seed, id, e)
};

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
  // Added by the router library:
  bool renormalize_gates = true;          // top_k router, k ≥ 2: gates g/(Σ_k g + 1e-9) before drops (Mesh-TF)
  HashKind hash = HashKind::mod;          // hash router only
  // After ST-MoE (DeepSeekMoE, DeepSeek-V2/V3; top_k router only):
  ScoreFunction score = ScoreFunction::softmax;
  int64_t shared_experts = 0;             // always-on experts beside the routed ones (one dense FFN of
                                          // shared_experts · shared_d_ff hidden units, dims d_model/d_ff)
  int64_t shared_d_ff = 0;                // hidden size of one shared expert (0: d_ff)
  double bias_balance_rate = 0.0;         // γ > 0: auxiliary-loss-free balancing. A per-expert bias b
                                          // [experts] is added to the scores for the selection only;
                                          // after each training step b_e += γ·sign(mean load − load_e)
  int64_t expert_groups = 0;              // device-limited routing: experts in this many equal groups
                                          // (used with route_groups; it must divide experts)
  int64_t route_groups = 0;               // M > 0: each token picks its top-M groups (by the best
                                          // score in the group), then its top-k experts inside them
  bool group_dispatch = false;            // with route_groups: a token travels once to each expert
                                          // group it uses (DeepSeek-V3's dispatch: one copy per
                                          // device, then to its experts there), group capacity
                                          // Cg = min(S, ceil(CF·S·M/EG)); see moe_layer
  // Levers that act on the router alone (issue #18, the stability study):
  double router_init_scale = 1.0;         // × the router weights' initial σ (router/w, router/w_noise)
  double router_lr_scale = 1.0;           // × the learning rate of the router's parameters

  // The keys of [moe], [moe.encoder], [moe.decoder] and of the config JSON, in this order.
  static void fields(auto& s, auto&& v) {
    v("experts", s.experts, at_least(1));
    v("k", s.k, at_least(1));
    v("router", s.router);
    v("policy_train", s.policy_train);
    v("policy_eval", s.policy_eval);
    v("policy_threshold", s.policy_threshold, interval(0, 1, "(]"));
    v("cf_train", s.cf_train, above(0));
    v("cf_eval", s.cf_eval, above(0));
    v("min_capacity", s.min_capacity, at_least(1));
    v("group_size", s.group_size, at_least(0));
    v("capacity", s.capacity);
    v("dropless", s.dropless);
    v("batch_prioritized", s.batch_prioritized);
    v("router_dtype", s.router_dtype, kFloatDTypes);
    v("jitter", s.jitter, interval(0, 1, "[)"));
    v("balance", s.balance);
    v("balance_coef", s.balance_coef, at_least(0));
    v("z_rule", s.z_rule);
    v("z_coef", s.z_coef, at_least(0));
    v("mesh_tf_loss_coef", s.mesh_tf_loss_coef, at_least(0));
    v("expert_ffn", s.expert_ffn);
    v("d_ff", s.d_ff, at_least(1));
    v("expert_dropout", s.expert_dropout, interval(0, 1, "[)"));
    v("expert_bias", s.expert_bias);
    v("renormalize_gates", s.renormalize_gates);
    v("hash", s.hash);
    v("score", s.score);
    v("shared_experts", s.shared_experts, at_least(0));
    v("shared_d_ff", s.shared_d_ff, at_least(0));
    v("bias_balance_rate", s.bias_balance_rate, at_least(0));
    v("expert_groups", s.expert_groups, at_least(0));
    v("route_groups", s.route_groups, at_least(0), s.expert_groups > 0);
    v("group_dispatch", s.group_dispatch, kAny, s.route_groups > 0);
    v("router_init_scale", s.router_init_scale, interval(0, 1e3, "(]"));
    v("router_lr_scale", s.router_lr_scale, interval(0, 1e3, "[]"));
  }
  bool operator==(const MoeConfig&) const = default;
};

// Throws InputError naming the setting (the MoeConfig field name), its bad value and what is
// allowed: experts ≥ 1; k in 1..experts (top_k, noisy_top_k); CF > 0; min_capacity ≥ 1;
// group_size ≥ 0; τ > 0 where a policy uses it; jitter and expert_dropout in [0, 1); d_ff ≥ 1;
// router_dtype f32 or bf16; coefficients ≥ 0; BPR only with top_k or noisy_top_k.
void check_moe_config(const MoeConfig& cfg);

// The spellings of the settings in config files (graph/fields.hpp EnumNames).
SY_ENUM_NAMES(RouterKind, {RouterKind::top_k, "top_k"}, {RouterKind::expert_choice, "expert_choice"},
              {RouterKind::hash, "hash"}, {RouterKind::noisy_top_k, "noisy_top_k"})
SY_ENUM_NAMES(SecondPolicy, {SecondPolicy::all, "all"}, {SecondPolicy::none, "none"},
              {SecondPolicy::threshold, "threshold"}, {SecondPolicy::random, "random"})
SY_ENUM_NAMES(CapacityRule, {CapacityRule::mesh_tf, "mesh_tf"}, {CapacityRule::flaxformer, "flaxformer"},
              {CapacityRule::ceil_k, "ceil_k"})
SY_ENUM_NAMES(BalanceLoss, {BalanceLoss::none, "none"}, {BalanceLoss::switch_top1, "switch_top1"},
              {BalanceLoss::flaxformer_topk, "flaxformer_topk"}, {BalanceLoss::gshard, "gshard"},
              {BalanceLoss::sequence, "sequence"})
SY_ENUM_NAMES(ScoreFunction, {ScoreFunction::softmax, "softmax"}, {ScoreFunction::sigmoid, "sigmoid"})
SY_ENUM_NAMES(ZLossRule, {ZLossRule::paper, "paper"}, {ZLossRule::mesh_tf, "mesh_tf"})
SY_ENUM_NAMES(FfnKind, {FfnKind::geglu, "geglu"}, {FfnKind::relu, "relu"})
SY_ENUM_NAMES(HashKind, {HashKind::mod, "mod"}, {HashKind::random, "random"})

// ---- pure helpers (tested directly) ----

// Expert capacity C for a group of S tokens under cfg.capacity, with the train or eval CF.
// ceil_k counts k as 1 for the hash and expert_choice routers (they ignore k).
// Dropless: C = S, the largest load an expert can get (each token picks an expert at most once),
// so nothing is ever dropped; a data-dependent "max load" is not a static shape.
// The products are computed in Mesh-TF's order ((S·CF)/E, and ((k·CF)·S)/E) in double, so the
// result equals the Python reference's bit for bit.
int64_t capacity(const MoeConfig& cfg, int64_t S, bool training);

// Group capacity Cg of moe.group_dispatch: the slots of one expert group per group of S tokens.
// A token visits at most M = route_groups of the EG groups, so a balanced group receives S·M/EG
// tokens: Cg = min(S, max(min_capacity, ceil(CF·S·M/EG))). Dropless: S (nothing dropped).
int64_t group_capacity(const MoeConfig& cfg, int64_t S, bool training);

// Mesh-TF grouping of n tokens: G starts at max(1, n / group_size) (1 when group_size is 0) and
// increases until G is a multiple of batch_split and divides n; S = n / G. Throws InputError when
// no such G exists (n not a multiple of batch_split).
struct MoeGrouping {
  int64_t groups = 1;      // G
  int64_t group_size = 1;  // S
};
MoeGrouping moe_grouping(int64_t n_tokens, int64_t group_size, int64_t batch_split);

// The Mesh-TF random policy keeps a rank ≥ 2 choice iff U < g/τ, written U·τ < g (as here).

// ---- the layer ----

struct MoeContext {
  bool training = false;
  bool is_decoder = false;  // refuses BPR (it would route on future tokens)
  Expr step;                // i32 []: randomness per step (jitter, random policy, noise, expert dropout);
                            // needed only when one of them is active
  uint64_t seed = 0;        // per layer; each random use derives its own stream from it
  Expr token_ids;           // i32, x's shape without d_model: hash routing only
  int64_t vocab = 0;        // hash routing: token ids lie in [0, vocab)
  int64_t batch_split = 1;  // mesh axis size splitting the batch (Mesh-TF grouping)
  bool output_metrics = true;  // register the metrics as graph outputs "<scope>/metrics/<name>"
                               // ("moe/metrics/<name>" at the root scope)
};

struct MoeLayer {
  Expr y;                 // x's shape and dtype; zero for a token whose every choice was dropped
  // Losses, f32 []. aux_loss and z_loss are already multiplied by their coefficients (c_b; c_z,
  // and × mesh_tf_loss_coef under ZLossRule::mesh_tf), so a trainer adds them to the loss as is.
  // The raw values are also graph outputs (metrics .../aux_loss and .../z_loss).
  Expr aux_loss;
  Expr z_loss;
  Expr aux_loss_raw;      // balance loss as defined by cfg.balance (CV²(importance) + CV²(load) for noisy_top_k; 0 for expert_choice, hash, none)
  Expr z_loss_raw;        // mean over tokens of (logsumexp_e logits)² (0 for hash)
  // Metrics, f32:
  Expr fraction_dropped;  // [k]: per choice rank, tokens whose choice passed the policy but found its expert full, / T
                          //      (expert_choice: [k=1], the fraction of tokens no expert took)
  Expr expert_load;       // [experts]: choices routed to each expert (after the policy, before capacity), / T
  Expr router_entropy;    // []: mean over tokens of -Σ_e p log p (0 for hash)
  Expr max_logit;         // []: max |logit| (0 for hash)
  // The router's numerics (ST-MoE §3: bf16 round-off in the router's exponentials), f32 [], 0 for hash:
  Expr logit_mean_square;  // mean over tokens and experts of logit² (its square root: the RMS logit)
  Expr logsumexp_mean;     // mean over tokens of logsumexp_e logit
  Expr softmax_roundoff;   // max |softmax_bf16(logits) − softmax_f32(logits)| over tokens and experts:
                           // the same logits, the softmax computed in bf16 (input and output rounded) or f32
  Expr top1_flip;          // the fraction of tokens whose highest-probability expert differs between the
                           // two (a bf16 tie goes to the lower expert, as top-k does)
  // For analysis and tests:
  Expr router_probs;      // [group, group_size, experts] f32 softmax (invalid for hash)
  Expr router_logits;     // [group, group_size, experts] f32 (invalid for hash)
  // Auxiliary-loss-free balancing (cfg.bias_balance_rate > 0, training): the bias parameter
  // "<scope>/router/balance_bias" f32 [experts] (zeros at init; never differentiated) and its value
  // after this step, b + γ·sign(mean_e load − load) from this step's expert_load. The training
  // graph writes it back as the parameter's update (graph/models/training_graph.hpp).
  Expr balance_bias, balance_bias_next;
  Expr dispatch;          // [group, group_size, experts, capacity], x's dtype: 1 where a token sits in a slot
  Expr combine;           // same shape: the gate weight of that token at that slot
  int64_t groups = 0, group_size = 0, capacity = 0;
};

// x: [batch, length, d_model] or [tokens, d_model] (d_model last; every other dim is a token
// dim, flattened row-major into groups). Creates its parameters with b.parameter, named under the
// current scope (see the header comment). Throws InputError for a bad config (check_moe_config),
// BPR in a decoder, a missing step/token_ids, or an x without a last dim "d_model".
MoeLayer moe_layer(Builder& b, Expr x, const MoeConfig& cfg, const MoeContext& ctx);

}  // namespace sy
