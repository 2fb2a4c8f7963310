// The router library (graph/models/moe_routing.hpp): small compositions, slots, losses, routers.
#include "graph/models/moe_routing.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <cmath>

namespace sy::moe_detail {

uint64_t stream_seed(uint64_t seed, Stream s) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(s);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

[[noreturn]] void bad_setting(std::string_view key, const std::string& value, std::string_view allowed) {
  throw InputError(fmt::format("MoE setting '{}' = {} is not allowed; allowed: {}", key, value, allowed));
}

bool is_set(const Expr& e) { return e.b != nullptr && e.id.valid(); }

// ---- small compositions ----
Expr constant(Builder& b, Shape shape, double v, DType t) { return fill(b, std::move(shape), v, t); }

// A 0/1 float mask as i32, by `where` (exact; it predates cast to i32, and keeps the graphs as they were).
Expr mask_to_i32(Expr mask) {
  Builder& b = *mask.b;
  return where(mask, constant(b, mask.shape(), 1, DType::i32), constant(b, mask.shape(), 0, DType::i32));
}

Expr abs_value(Expr x) { return relu(x) + relu(scale(x, -1.0)); }

// x[..., i, ...] along `dim` (dropped): an einsum with a one-hot selector.
Expr select(Expr x, const std::string& dim, int64_t i) {
  Builder& b = *x.b;
  Expr sel = one_hot(constant(b, {}, static_cast<double>(i), DType::i32), Dim{dim, x.dim_size(dim)}, x.dtype());  // [dim]
  std::vector<std::string> out;
  for (const Dim& d : x.shape())
    if (d.name != dim) out.push_back(d.name);
  return einsum(x, sel, out);
}

// 1 / (1 + exp(-t)) without overflow: e = exp(-|t|) ≤ 1, then 1/(1+e) for t ≥ 0, e/(1+e) else.
Expr sigmoid(Expr t) {
  Builder& b = *t.b;
  Expr e = exp(scale(abs_value(t), -1.0));
  Expr denom = scale(e, 1.0, 1.0);
  Expr one = constant(b, t.shape(), 1.0, t.dtype());
  return where(greater(t, constant(b, t.shape(), 0.0, t.dtype())), one / denom, e / denom);
}

// log(1 + exp(z)) = relu(z) + log(1 + exp(-|z|)), stable for large |z|.
Expr softplus(Expr z) { return relu(z) + log(scale(exp(scale(abs_value(z), -1.0)), 1.0, 1.0)); }

// Standard normal CDF Φ(z) ≈ sigmoid(2·sqrt(2/π)·(z + 0.044715 z³)): the tanh approximation also
// used by GELU (GELU(z) = z·Φ(z)); absolute error below 2e-4. The primitive set has no erf.
Expr normal_cdf(Expr z) {
  Expr inner = z + scale(z * z * z, 0.044715);
  return sigmoid(scale(inner, 2.0 * 0.7978845608028654));
}

// CV²(v) = var(v) / (mean(v)² + 1e-10), population variance over the single dim of v.
Expr cv_squared(Expr v) {
  const std::string d = v.shape().at(0).name;
  Expr m = mean(v, {d});                          // []
  Expr dev = v - m;                               // [E]
  Expr var = mean(dev * dev, {d});                // []
  return var / scale(m * m, 1.0, 1e-10);
}

Expr cast_to(Expr x, DType t) { return x.dtype() == t ? x : cast(x, t); }

std::string name_under(const Builder& b, const std::string& local) {
  return b.scope().empty() ? local : b.scope() + "/" + local;
}

// ---- slots ----

// assign [G, S, K, E] f32 0/1: each choice's expert, zero rows for choices the policy dropped.
// Slots: exclusive cumsum over the group of the choices per expert, every rank-1 choice before any
// rank-2 choice, tokens in order (or in `order` [G, priority] i32 for BPR). A choice is kept iff
// its slot < C, which one_hot implements (an id outside [0, C) gives an all-zero row).
Slots assign_slots(Expr assign, Expr order, int64_t C) {
  Builder& b = *assign.b;
  const int64_t G = assign.dim_size(kGroup), S = assign.dim_size(kGroupSize), K = assign.dim_size(kChoice),
                E = assign.dim_size(kExperts);
  Expr a = mask_to_i32(assign);  // [G, S, K, E] i32
  std::string seq = kGroupSize;
  if (is_set(order)) {  // tokens in priority order: a[g, p] = assign[g, order[g, p]]
    seq = kPriority;
    a = gather(a, broadcast(order, {{kGroup, G}, {kPriority, S}, {kChoice, K}, {kExperts, E}}), kGroupSize);
  }
  Expr by_rank = transpose(a, {kGroup, kChoice, seq, kExperts});                             // [G, K, S, E]
  Expr flat = reshape(by_rank, {{kGroup, G}, {kSlotOrder, K * S}, {kExperts, E}});            // [G, K·S, E]
  Expr before = reshape(cumsum(flat, kSlotOrder, /*exclusive=*/true),
                        {{kGroup, G}, {kChoice, K}, {seq, S}, {kExperts, E}});                // [G, K, S, E]
  Expr slot = sum(before * by_rank, {kExperts});                                             // [G, K, S] i32
  Expr assigned = sum(by_rank, {kExperts});                                                  // [G, K, S] 0/1
  slot = where(assigned, slot, constant(b, slot.shape(), static_cast<double>(C), DType::i32));  // none: no slot
  slot = transpose(slot, {kGroup, seq, kChoice});                                            // [G, S, K]
  if (is_set(order))  // back to token order: out[g, order[g, p], k] = slot[g, p, k]
    slot = scatter_add(slot, broadcast(order, slot.shape()), kPriority, Dim{kGroupSize, S});
  return Slots{one_hot(slot, Dim{kCapacity, C})};
}

GroupSlots assign_group_slots(Expr assign, const MoeConfig& cfg, int64_t Cg) {
  Builder& b = *assign.b;
  const int64_t G = assign.dim_size(kGroup), S = assign.dim_size(kGroupSize), K = assign.dim_size(kChoice);
  const int64_t R = cfg.expert_groups, L = cfg.experts / cfg.expert_groups;
  const Shape split{{kGroup, G}, {kGroupSize, S}, {kChoice, K}, {kDispatchGroup, R}, {kGroupExpert, L}};
  Expr choice_group = sum(reshape(assign, split), {kGroupExpert});                              // [G, S, K, EG]
  Expr visits = greater(sum(choice_group, {kChoice}), constant(b, {split[0], split[1], split[3]}, 0.5));  // [G, S, EG]
  Expr slot = cumsum(mask_to_i32(visits), kGroupSize, /*exclusive=*/true);                       // [G, S, EG] i32
  slot = where(visits, slot, constant(b, slot.shape(), static_cast<double>(Cg), DType::i32));    // none: no slot
  return GroupSlots{one_hot(slot, Dim{kGroupCapacity, Cg}), choice_group};
}

// ---- losses ----

// probs, top1, any_choice: [G, S, E] f32; the G·S tokens are sequences of seq_len tokens, row-major.
Expr balance_loss(const MoeConfig& cfg, Expr probs, Expr top1, Expr any_choice, int64_t seq_len) {
  // f and P per group: [G, E].
  Builder& b = *probs.b;
  const double E = static_cast<double>(cfg.experts);
  if (cfg.balance == BalanceLoss::sequence) {
    // Per sequence: Σ_e f_e P_e, f_e = E/(k·T)·Σ_t chosen(t, e), P_e = mean_t p(t, e); 1 when balanced.
    const int64_t n = probs.dim_size(kGroup) * probs.dim_size(kGroupSize);
    // Own dim names: a layout's batch rule must not meet its experts rule in one tensor.
    const Shape bte{{"sequence", n / seq_len}, {"position", seq_len}, {kExperts, cfg.experts}};
    Expr f = mean(reshape(any_choice, bte), {"position"});  // [B, E]
    Expr P = mean(reshape(probs, bte), {"position"});       // [B, E]
    return scale(mean(sum(f * P, {kExperts}), {"sequence"}), E / static_cast<double>(cfg.k));
  }
  auto fp_mean = [&](Expr mask) { return mean(mean(mask, {kGroupSize}) * mean(probs, {kGroupSize}), {kGroup, kExperts}); };
  switch (cfg.balance) {
    case BalanceLoss::none: return constant(b, {}, 0.0);
    case BalanceLoss::switch_top1: return scale(fp_mean(top1), E * E);
    case BalanceLoss::flaxformer_topk: return scale(fp_mean(any_choice), E * E);
    case BalanceLoss::gshard: return fp_mean(top1);
    case BalanceLoss::sequence: break;  // above
  }
  throw InternalError("balance_loss: unknown BalanceLoss");
}

// ---- routers: each produces the choices [G, S, K, E] and their gates [G, S, K] ----

Expr require_step(const MoeContext& ctx, const char* what) {
  if (!is_set(ctx.step))
    throw InputError(fmt::format("MoE layer: {} needs MoeContext.step (an i32 scalar input), which is unset", what));
  return ctx.step;
}

// Router logits [G, S, E] in cfg.router_dtype, from x [G, S, D].
Expr router_logits(Builder& b, Expr xg, const MoeConfig& cfg, const MoeContext& ctx) {
  Expr w = b.parameter(name_under(b, "w"), {{kModel, xg.dim_size(kModel)}, {kExperts, cfg.experts}});  // [D, E]
  Expr xr = cast_to(xg, cfg.router_dtype);
  if (ctx.training && cfg.jitter > 0.0)
    xr = xr * random_uniform(require_step(ctx, "router jitter"), xr.shape(), 1.0 - cfg.jitter, 1.0 + cfg.jitter,
                             stream_seed(ctx.seed, Stream::jitter), cfg.router_dtype);
  return einsum(xr, cast_to(w, cfg.router_dtype), {kGroup, kGroupSize, kExperts});
}

// Keep mask [G, S, K] for rank ≥ 2 choices under the policy; rank 1 is always kept.
Expr policy_keep(Builder& b, Expr gates, SecondPolicy policy, const MoeConfig& cfg, const MoeContext& ctx) {
  const Shape s = gates.shape();
  Expr ones = constant(b, s, 1.0);
  Expr later;  // verdict for every rank; rank 1 is overridden below
  switch (policy) {
    case SecondPolicy::all: return ones;
    case SecondPolicy::none: later = constant(b, s, 0.0); break;
    case SecondPolicy::threshold: later = greater(gates, constant(b, s, cfg.policy_threshold)); break;
    case SecondPolicy::random: {  // keep iff U < g/τ, i.e. g > U·τ
      Expr u = random_uniform(require_step(ctx, "the random second-expert policy"), s, 0.0, 1.0,
                              stream_seed(ctx.seed, Stream::policy));
      later = greater(gates, scale(u, cfg.policy_threshold));
      break;
    }
  }
  Expr first = one_hot(constant(b, {}, 0, DType::i32), Dim{kChoice, gates.dim_size(kChoice)});  // [K]
  return where(first, ones, later);
}

// Device-limited routing (DeepSeek-V2 §2.2.3): the experts form cfg.expert_groups equal groups in
// expert order (group j: experts j·E/EG ... (j+1)·E/EG − 1, one per device of the expert axis when
// EG is its size). Each token ranks the groups by the best selection score in them and keeps its
// top M = cfg.route_groups; every expert outside them gets -1e30, below any score, so top-k picks
// only inside (k ≤ M·E/EG is checked).  sel: [G, S, E] f32.
Expr limit_to_groups(Expr sel, const MoeConfig& cfg) {
  Builder& b = *sel.b;
  const Shape flat = sel.shape();
  const Shape grouped{flat[0], flat[1], {kExpertGroup, cfg.expert_groups}, {kGroupExpert, cfg.experts / cfg.expert_groups}};
  Expr best = max(reshape(sel, grouped), {kGroupExpert});                                // [G, S, EG]
  Expr picked = top_k(best, kExpertGroup, Dim{kRouteGroup, cfg.route_groups}).second;   // [G, S, M] i32
  Expr allowed = sum(one_hot(picked, Dim{kExpertGroup, cfg.expert_groups}), {kRouteGroup});  // [G, S, EG] 0/1
  Expr mask = reshape(broadcast(allowed, grouped), flat);                                // [G, S, E]
  return where(mask, sel, constant(b, flat, -1e30));
}

// top_k and noisy_top_k. seq_len: tokens per sequence (the sequence-wise balance loss); bias: the
// balance bias [E] (auxiliary-loss-free balancing) or unset.
Routed route_top_k(Builder& b, Expr xg, const MoeConfig& cfg, const MoeContext& ctx, int64_t seq_len, Expr bias) {
  const bool noisy = cfg.router == RouterKind::noisy_top_k;
  const Dim k_dim{kChoice, cfg.k};
  Routed r;
  Expr clean = cast_to(router_logits(b, xg, cfg, ctx), DType::f32);  // [G, S, E]
  Expr noise_std;
  r.logits = clean;
  if (noisy) {
    Expr w_noise = b.parameter(name_under(b, "w_noise"), {{kModel, xg.dim_size(kModel)}, {kExperts, cfg.experts}});
    if (ctx.training) {
      // Shazeer's noise: N(0,1)·(softplus(x W_noise) + 1e-2) (1e-2: noise_epsilon of the reference code)
      Expr raw = cast_to(einsum(cast_to(xg, cfg.router_dtype), cast_to(w_noise, cfg.router_dtype),
                                {kGroup, kGroupSize, kExperts}), DType::f32);
      noise_std = scale(softplus(raw), 1.0, 1e-2);
      r.logits = clean + random_normal(require_step(ctx, "noisy top-k"), clean.shape(), 0.0, 1.0,
                                       stream_seed(ctx.seed, Stream::noise)) * noise_std;
    }
  }
  // Scores in the router dtype (the Switch bf16-router ablation), then f32. The gates are scores;
  // probs (scores normalised over the experts) feed the balance losses and the metrics.
  Expr scores;  // [G, S, E] f32
  if (cfg.score == ScoreFunction::sigmoid) {
    scores = cast_to(sigmoid(cast_to(r.logits, cfg.router_dtype)), DType::f32);
    r.probs = scores / sum(scores, {kExperts});
  } else {
    r.probs = cast_to(softmax(cast_to(r.logits, cfg.router_dtype), kExperts), DType::f32);
    scores = r.probs;
  }

  // Selection: by the scores, plus the balance bias, limited to the token's expert groups. The
  // gates stay the unbiased scores of the chosen experts (DeepSeek-V3 eq. 16).
  Expr select_by = noisy ? r.logits : scores;
  if (is_set(bias)) select_by = select_by + bias;
  if (cfg.route_groups > 0) select_by = limit_to_groups(select_by, cfg);
  auto [top_values, top_index] = top_k(select_by, kExperts, k_dim);  // [G, S, K]
  r.onehot = one_hot(top_index, Dim{kExperts, cfg.experts});         // [G, S, K, E]
  if (select_by.id != (noisy ? r.logits : scores).id) top_values = einsum(r.onehot, scores, {kGroup, kGroupSize, kChoice});
  if (noisy) {
    r.gates = softmax(top_values, kChoice);  // Shazeer: softmax over the k kept logits
  } else if (cfg.k >= 2 && cfg.renormalize_gates) {
    r.gates = top_values / scale(sum(top_values, {kChoice}), 1.0, 1e-9);  // Mesh-TF: g / (g1 + g2 + 1e-9)
  } else {
    r.gates = top_values;  // Switch: the router probability itself
  }
  r.keep = cfg.k >= 2 ? policy_keep(b, r.gates, ctx.training ? cfg.policy_train : cfg.policy_eval, cfg, ctx)
                      : constant(b, r.gates.shape(), 1.0);

  if (cfg.batch_prioritized) {  // tokens by top-1 router probability, highest first (stable on ties)
    Expr top1 = max(r.probs, {kExperts});  // [G, S]
    r.order = top_k(top1, kGroupSize, Dim{kPriority, top1.dim_size(kGroupSize)}).second;  // [G, priority]
  }

  if (noisy) {
    // Importance: the gates summed per expert; load: the smooth estimate of the number of tokens
    // per expert, Φ((clean - threshold) / noise std) with the threshold the k-th (expert out) or
    // (k+1)-th (expert in) noisy logit (Shazeer et al. 2017, appendix A).
    Expr importance = einsum(r.onehot, r.gates, {kExperts});  // [E]
    Expr load;
    if (ctx.training && cfg.k < cfg.experts) {
      Expr top_k1 = top_k(r.logits, kExperts, Dim{"k_plus_1", cfg.k + 1}).first;  // [G, S, K+1]
      Expr threshold_in = select(top_k1, "k_plus_1", cfg.k);                     // [G, S]
      Expr threshold_out = select(top_k1, "k_plus_1", cfg.k - 1);                // [G, S]
      Expr is_in = greater(r.logits, threshold_in);                              // [G, S, E]
      Expr p_in = normal_cdf((clean - threshold_in) / noise_std);
      Expr p_out = normal_cdf((clean - threshold_out) / noise_std);
      load = sum(where(is_in, p_in, p_out), {kGroup, kGroupSize});  // [E]
    } else {
      load = sum(r.onehot, {kGroup, kGroupSize, kChoice});  // [E]: no noise, the counts
    }
    r.aux_raw = cfg.balance == BalanceLoss::none ? constant(b, {}, 0.0) : cv_squared(importance) + cv_squared(load);
  } else {
    Expr first = one_hot(constant(b, {}, 0, DType::i32), k_dim);         // [K]: 1 at rank 1
    Expr top1 = einsum(r.onehot, first, {kGroup, kGroupSize, kExperts});  // [G, S, E]
    Expr any = sum(r.onehot, {kChoice});                                 // [G, S, E]
    r.aux_raw = balance_loss(cfg, r.probs, top1, any, seq_len);
  }
  return r;
}

// Hash routing: one choice per token, gate 1, from a constant table [vocab, E] of one-hot rows.
Routed route_hash(Builder& b, const Shape& gs, const MoeConfig& cfg, const MoeContext& ctx) {
  if (!is_set(ctx.token_ids)) throw InputError("MoE layer: router 'hash' needs MoeContext.token_ids, which is unset");
  if (ctx.vocab < 1)
    throw InputError(fmt::format("MoE layer: router 'hash' needs MoeContext.vocab ≥ 1 (token ids lie in [0, vocab)), got {}",
                                 ctx.vocab));
  const int64_t E = cfg.experts, V = ctx.vocab;
  Expr table;  // [vocab, E] f32: row v is the one-hot of v's expert
  switch (cfg.hash) {
    case HashKind::mod: {
      // I_E tiled ceil(V/E) times: row r is the one-hot of r mod E. Rows ≥ V are never read.
      const int64_t reps = (V + E - 1) / E;
      Expr row = cumsum(constant(b, {{"hash_row", E}}, 1, DType::i32), "hash_row", /*exclusive=*/true);  // 0..E-1
      Expr eye = one_hot(row, Dim{kExperts, E});                                                         // [E, E]
      table = reshape(broadcast(eye, {{"hash_rep", reps}, {"hash_row", E}, {kExperts, E}}), {{"vocab", reps * E}, {kExperts, E}});
      break;
    }
    case HashKind::random: {
      // A fixed table: the same at every step (step 0 of the layer's hash stream).
      Expr u = random_uniform(constant(b, {}, 0, DType::i32), {{"vocab", V}, {kExperts, E}}, 0.0, 1.0,
                              stream_seed(ctx.seed, Stream::hash));
      Expr pick = top_k(u, kExperts, Dim{"hash_pick", 1}).second;                   // [vocab, 1]
      table = reshape(one_hot(pick, Dim{kExperts, E}), {{"vocab", V}, {kExperts, E}});
      break;
    }
  }
  Expr ids = reshape(ctx.token_ids, gs);                                       // [G, S]
  Routed r;
  r.onehot = reshape(embedding(table, ids), {gs[0], gs[1], {kChoice, 1}, {kExperts, E}});  // [G, S, 1, E]
  r.gates = constant(b, {gs[0], gs[1], {kChoice, 1}}, 1.0);
  r.keep = r.gates;
  r.aux_raw = constant(b, {}, 0.0);
  return r;
}

}  // namespace sy::moe_detail
