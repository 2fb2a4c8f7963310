// The router library of the MoE layer (graph/models/moe.hpp): the dim names, the small
// compositions, the slot assignment, the balance losses and the routers that moe_layer composes.
// Private to graph/models/ (moe.cpp and moe_routing.cpp).
#pragma once

#include "graph/builder.hpp"
#include "graph/models/moe.hpp"
#include "graph/parallel/layout.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace sy::moe_detail {

// ---- dims ----
inline const std::string kGroup = "group";            // G
inline const std::string kGroupSize = "group_size";   // S: the tokens of one group
inline const std::string kModel = "d_model";          // D
inline const std::string kExperts = "experts";        // E
inline const std::string kChoice = "k";               // K: a token's choices, best first
inline const std::string kCapacity{kCapacityDim};    // C
inline const std::string kFf = "d_ff";                // F
inline const std::string kPriority = "priority";      // S in BPR order (best top-1 probability first)
inline const std::string kSlotOrder = "choice";       // K·S: every choice of a group, rank-major
inline const std::string kExpertGroup = "expert_group";  // EG: device-limited routing's groups of experts
inline const std::string kGroupExpert = "group_expert";  // E/EG: the experts of one such group
inline const std::string kRouteGroup = "route_group";    // M: the groups a token may use
inline const std::string kDispatchGroup{kDispatchGroupDim};  // EG in group_dispatch's buffers (a layout's
                                                            // experts rule splits it: graph/parallel/layout.hpp)
inline const std::string kGroupCapacity = "group_capacity";  // Cg: slots of an expert group per token group

// Independent random streams of one layer, derived from its seed.
enum class Stream : uint64_t { jitter = 1, policy = 2, noise = 3, dropout = 4, hash = 5, shared_dropout = 6 };

uint64_t stream_seed(uint64_t seed, Stream s);

[[noreturn]] void bad_setting(std::string_view key, const std::string& value, std::string_view allowed);

bool is_set(const Expr& e);

// ---- small compositions ----
Expr constant(Builder& b, Shape shape, double v, DType t = DType::f32);

// A 0/1 float mask as i32, by `where` (exact; it predates cast to i32, and keeps the graphs as they were).
Expr mask_to_i32(Expr mask);

Expr abs_value(Expr x);

// x[..., i, ...] along `dim` (dropped): an einsum with a one-hot selector.
Expr select(Expr x, const std::string& dim, int64_t i);

// 1 / (1 + exp(-t)) without overflow: e = exp(-|t|) ≤ 1, then 1/(1+e) for t ≥ 0, e/(1+e) else.
Expr sigmoid(Expr t);

// log(1 + exp(z)) = relu(z) + log(1 + exp(-|z|)), stable for large |z|.
Expr softplus(Expr z);

// Standard normal CDF Φ(z) ≈ sigmoid(2·sqrt(2/π)·(z + 0.044715 z³)): the tanh approximation also
// used by GELU (GELU(z) = z·Φ(z)); absolute error below 2e-4. The primitive set has no erf.
Expr normal_cdf(Expr z);

// CV²(v) = var(v) / (mean(v)² + 1e-10), population variance over the single dim of v.
Expr cv_squared(Expr v);

Expr cast_to(Expr x, DType t);

std::string name_under(const Builder& b, const std::string& local);

struct Slots {
  Expr onehot;  // [G, S, K, C] f32: the slot of each choice (all zero: dropped or not assigned)
};

// assign [G, S, K, E] f32 0/1: each choice's expert, zero rows for choices the policy dropped.
// Slots: exclusive cumsum over the group of the choices per expert, every rank-1 choice before any
// rank-2 choice, tokens in order (or in `order` [G, priority] i32 for BPR). A choice is kept iff
// its slot < C, which one_hot implements (an id outside [0, C) gives an all-zero row).
Slots assign_slots(Expr assign, Expr order, int64_t C);

// Group dispatch (moe.group_dispatch): each token's visits to the expert groups and its slot in
// each. assign [G, S, K, E] f32 0/1 (the choices the policy kept). A token visits group r when any
// of its choices is an expert of r; its slot there is the exclusive cumsum of the visits over the
// group's tokens in order, kept iff < Cg (one_hot gives a zero row otherwise).
struct GroupSlots {
  Expr onehot;        // [G, S, EG, Cg] f32: the token's slot in each group it visits
  Expr choice_group;  // [G, S, K, EG] f32 0/1: the group of each choice
};

GroupSlots assign_group_slots(Expr assign, const MoeConfig& cfg, int64_t Cg);

// probs, top1, any_choice: [G, S, E] f32; the G·S tokens are sequences of seq_len tokens, row-major.
Expr balance_loss(const MoeConfig& cfg, Expr probs, Expr top1, Expr any_choice, int64_t seq_len);

struct Routed {
  Expr onehot;      // [G, S, K, E] f32: the experts chosen, before the policy
  Expr keep;        // [G, S, K] f32 0/1: the policy's verdict
  Expr gates;       // [G, S, K] f32
  Expr order;       // [G, priority] i32 for BPR, else unset
  Expr logits;      // [G, S, E] f32 (unset for hash)
  Expr probs;       // [G, S, E] f32 (unset for hash)
  Expr aux_raw;     // [] f32
};

Expr require_step(const MoeContext& ctx, const char* what);

// Router logits [G, S, E] in cfg.router_dtype, from x [G, S, D].
Expr router_logits(Builder& b, Expr xg, const MoeConfig& cfg, const MoeContext& ctx);

// Keep mask [G, S, K] for rank ≥ 2 choices under the policy; rank 1 is always kept.
Expr policy_keep(Builder& b, Expr gates, SecondPolicy policy, const MoeConfig& cfg, const MoeContext& ctx);

// Device-limited routing (DeepSeek-V2 §2.2.3): the experts form cfg.expert_groups equal groups in
// expert order (group j: experts j·E/EG ... (j+1)·E/EG − 1, one per device of the expert axis when
// EG is its size). Each token ranks the groups by the best selection score in them and keeps its
// top M = cfg.route_groups; every expert outside them gets -1e30, below any score, so top-k picks
// only inside (k ≤ M·E/EG is checked).  sel: [G, S, E] f32.
Expr limit_to_groups(Expr sel, const MoeConfig& cfg);

// top_k and noisy_top_k. seq_len: tokens per sequence (the sequence-wise balance loss); bias: the
// balance bias [E] (auxiliary-loss-free balancing) or unset.
Routed route_top_k(Builder& b, Expr xg, const MoeConfig& cfg, const MoeContext& ctx, int64_t seq_len, Expr bias);

// Hash routing: one choice per token, gate 1, from a constant table [vocab, E] of one-hot rows.
Routed route_hash(Builder& b, const Shape& gs, const MoeConfig& cfg, const MoeContext& ctx);

}  // namespace sy::moe_detail
