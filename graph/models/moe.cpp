// The MoE layer by composition of primitive ops (see graph/models/moe.hpp for the data flow and
// docs/formulas.md for the formulas). Integer routing state (expert choices, slots) is i32;
// everything differentiable (gates, losses) is f32; the expert FFN runs in x's dtype.
#include "graph/models/moe.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <cmath>

namespace sy {
namespace {

// ---- dims ----
const std::string kGroup = "group";            // G
const std::string kGroupSize = "group_size";   // S: the tokens of one group
const std::string kModel = "d_model";          // D
const std::string kExperts = "experts";        // E
const std::string kChoice = "k";               // K: a token's choices, best first
const std::string kCapacity = "capacity";      // C
const std::string kFf = "d_ff";                // F
const std::string kPriority = "priority";      // S in BPR order (best top-1 probability first)
const std::string kSlotOrder = "choice";       // K·S: every choice of a group, rank-major
const std::string kExpertGroup = "expert_group";  // EG: device-limited routing's groups of experts
const std::string kGroupExpert = "group_expert";  // E/EG: the experts of one such group
const std::string kRouteGroup = "route_group";    // M: the groups a token may use
const std::string kDispatchGroup = "dispatch_group";  // EG in group_dispatch's buffers (a layout's
                                                       // experts rule splits it: graph/parallel/layout.hpp)
const std::string kGroupCapacity = "group_capacity";  // Cg: slots of an expert group per token group

// Independent random streams of one layer, derived from its seed.
enum class Stream : uint64_t { jitter = 1, policy = 2, noise = 3, dropout = 4, hash = 5, shared_dropout = 6 };
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
Expr constant(Builder& b, Shape shape, double v, DType t = DType::f32) { return fill(b, std::move(shape), v, t); }

// A 0/1 float mask as i32 (the primitive set has no float -> int cast; where does it exactly).
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

struct Slots {
  Expr onehot;  // [G, S, K, C] f32: the slot of each choice (all zero: dropped or not assigned)
};

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

// Group dispatch (moe.group_dispatch): each token's visits to the expert groups and its slot in
// each. assign [G, S, K, E] f32 0/1 (the choices the policy kept). A token visits group r when any
// of its choices is an expert of r; its slot there is the exclusive cumsum of the visits over the
// group's tokens in order, kept iff < Cg (one_hot gives a zero row otherwise).
struct GroupSlots {
  Expr onehot;        // [G, S, EG, Cg] f32: the token's slot in each group it visits
  Expr choice_group;  // [G, S, K, EG] f32 0/1: the group of each choice
};

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

struct Routed {
  Expr onehot;      // [G, S, K, E] f32: the experts chosen, before the policy
  Expr keep;        // [G, S, K] f32 0/1: the policy's verdict
  Expr gates;       // [G, S, K] f32
  Expr order;       // [G, priority] i32 for BPR, else unset
  Expr logits;      // [G, S, E] f32 (unset for hash)
  Expr probs;       // [G, S, E] f32 (unset for hash)
  Expr aux_raw;     // [] f32
};

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

}  // namespace

// ---- pure helpers ----

void check_moe_config(const MoeConfig& c) {
  auto num = [](auto v) { return fmt::format("{}", v); };
  // Upper bounds as for the model's sizes (graph/models/model_config.cpp: far above real models,
  // counts inside int64, dims inside oneDNN's int32 range).
  if (c.experts < 1 || c.experts > 65536) bad_setting("experts", num(c.experts), "1..65536");
  const bool top_k_like = c.router == RouterKind::top_k || c.router == RouterKind::noisy_top_k;
  if (top_k_like && (c.k < 1 || c.k > c.experts))
    bad_setting("k", num(c.k), fmt::format("1..{} (the number of experts)", c.experts));
  // The upper bound keeps capacity = cf·k·S/E (S ≤ 2^40 tokens per group) far inside int64, whose
  // cast from a larger double is undefined (1e19 gave capacity 1); a factor above E already gives
  // every token a slot, so 1e6 refuses nothing useful.
  const auto cf_ok = [](double cf) { return cf > 0 && cf <= 1e6; };
  if (!cf_ok(c.cf_train)) bad_setting("cf_train", num(c.cf_train), "a capacity factor in (0, 1e6]");
  if (!cf_ok(c.cf_eval)) bad_setting("cf_eval", num(c.cf_eval), "a capacity factor in (0, 1e6]");
  if (c.min_capacity < 1 || c.min_capacity > (int64_t{1} << 30)) bad_setting("min_capacity", num(c.min_capacity), "1..2^30");
  if (c.group_size < 0) bad_setting("group_size", num(c.group_size), "an integer ≥ 0 (0: the whole batch is one group)");
  auto uses_tau = [](SecondPolicy p) { return p == SecondPolicy::threshold || p == SecondPolicy::random; };
  if ((uses_tau(c.policy_train) || uses_tau(c.policy_eval)) && !(c.policy_threshold > 0))
    bad_setting("policy_threshold", num(c.policy_threshold), "τ > 0 (used by the threshold and random policies)");
  if (!(c.jitter >= 0 && c.jitter < 1)) bad_setting("jitter", num(c.jitter), "ε in [0, 1)");
  if (!(c.expert_dropout >= 0 && c.expert_dropout < 1)) bad_setting("expert_dropout", num(c.expert_dropout), "a rate in [0, 1)");
  if (c.d_ff < 1 || c.d_ff > (int64_t{1} << 18)) bad_setting("d_ff", num(c.d_ff), "1..262144");
  if (!is_float(c.router_dtype)) bad_setting("router_dtype", std::string(dtype_name(c.router_dtype)), "f32, bf16");
  if (!(c.balance_coef >= 0)) bad_setting("balance_coef", num(c.balance_coef), "a coefficient ≥ 0");
  if (!(c.z_coef >= 0)) bad_setting("z_coef", num(c.z_coef), "a coefficient ≥ 0");
  if (!(c.mesh_tf_loss_coef >= 0)) bad_setting("mesh_tf_loss_coef", num(c.mesh_tf_loss_coef), "a coefficient ≥ 0");
  if (c.batch_prioritized && !top_k_like)
    bad_setting("batch_prioritized", fmt::format("true with router '{}'", enum_name(c.router)),
                "true only with router top_k or noisy_top_k (BPR orders tokens by router probability)");
  // After ST-MoE: scores, balancing and device limits of the top_k router; shared experts with any.
  const bool top_k = c.router == RouterKind::top_k;
  const std::string with_router = fmt::format(" with router '{}'", enum_name(c.router));
  if (c.score != ScoreFunction::softmax && !top_k)
    bad_setting("score", std::string(enum_name(c.score)) + with_router, "sigmoid only with router top_k");
  if (c.balance == BalanceLoss::sequence && !top_k)
    bad_setting("balance", "sequence" + with_router, "sequence only with router top_k");
  if (c.shared_experts < 0 || c.shared_experts > 64) bad_setting("shared_experts", num(c.shared_experts), "0..64");
  if (c.shared_d_ff < 0 || c.shared_d_ff > (int64_t{1} << 18)) bad_setting("shared_d_ff", num(c.shared_d_ff), "0 (d_ff) or 1..262144");
  if (!(c.bias_balance_rate >= 0 && c.bias_balance_rate <= 1))
    bad_setting("bias_balance_rate", num(c.bias_balance_rate), "a rate γ in [0, 1] (0: off; DeepSeek-V3 used 0.001)");
  if (c.bias_balance_rate > 0 && !top_k)
    bad_setting("bias_balance_rate", num(c.bias_balance_rate) + with_router, "> 0 only with router top_k");
  if (!(c.router_init_scale > 0 && c.router_init_scale <= 1e3))
    bad_setting("router_init_scale", num(c.router_init_scale), "a factor in (0, 1000]");
  if (!(c.router_lr_scale >= 0 && c.router_lr_scale <= 1e3))
    bad_setting("router_lr_scale", num(c.router_lr_scale), "a factor in [0, 1000] (0 freezes the router)");
  if (c.route_groups < 0) bad_setting("route_groups", num(c.route_groups), "0 (off) or 1..expert_groups");
  if (c.expert_groups < 0) bad_setting("expert_groups", num(c.expert_groups), "0 (off) or a divisor of experts");
  if (c.expert_groups > 0 && c.experts % c.expert_groups != 0)
    bad_setting("expert_groups", num(c.expert_groups), fmt::format("0 or a divisor of experts = {}", c.experts));
  if (c.route_groups > 0) {
    if (!top_k) bad_setting("route_groups", num(c.route_groups) + with_router, "device-limited routing only with router top_k");
    if (c.expert_groups < 1)
      bad_setting("expert_groups", num(c.expert_groups), fmt::format("a divisor of experts = {} (route_groups > 0 needs groups)", c.experts));
    if (c.route_groups < 1 || c.route_groups > c.expert_groups)
      bad_setting("route_groups", num(c.route_groups), fmt::format("1..{} (expert_groups; with expert_groups set)", c.expert_groups));
    const int64_t reachable = c.route_groups * (c.experts / c.expert_groups);
    if (c.k > reachable)
      bad_setting("k", num(c.k), fmt::format("1..{} (route_groups · experts / expert_groups: the experts a token can reach)", reachable));
  }
  if (c.group_dispatch && c.route_groups < 1)
    bad_setting("group_dispatch", "true", "true only with device-limited routing (route_groups ≥ 1 and expert_groups)");
}

int64_t group_capacity(const MoeConfig& cfg, int64_t S, bool training) {
  if (cfg.dropless) return S;
  const double cf = training ? cfg.cf_train : cfg.cf_eval;
  const double per_group = static_cast<double>(S) * static_cast<double>(cfg.route_groups) / static_cast<double>(cfg.expert_groups);
  return std::min(S, std::max(cfg.min_capacity, static_cast<int64_t>(std::ceil(cf * per_group))));
}

int64_t capacity(const MoeConfig& cfg, int64_t S, bool training) {
  if (cfg.dropless) return S;
  const double cf = training ? cfg.cf_train : cfg.cf_eval;
  const double S_ = static_cast<double>(S), E = static_cast<double>(cfg.experts);
  int64_t c = 0;
  switch (cfg.capacity) {
    case CapacityRule::mesh_tf: c = std::min(S, static_cast<int64_t>(std::floor(S_ * cf / E))); break;
    case CapacityRule::flaxformer: c = std::min(S, static_cast<int64_t>(std::nearbyint(S_ * cf / E))); break;
    case CapacityRule::ceil_k: {
      const bool one_choice = cfg.router == RouterKind::hash || cfg.router == RouterKind::expert_choice;  // they ignore k
      c = static_cast<int64_t>(std::ceil(static_cast<double>(one_choice ? 1 : cfg.k) * cf * S_ / E));
      break;
    }
  }
  return std::max(cfg.min_capacity, c);
}

MoeGrouping moe_grouping(int64_t n, int64_t group_size, int64_t batch_split) {
  if (n < 1) throw InputError(fmt::format("MoE grouping: {} tokens; need at least 1", n));
  if (batch_split < 1) throw InputError(fmt::format("MoE grouping: batch_split {} must be ≥ 1", batch_split));
  if (n % batch_split != 0)
    throw InputError(fmt::format("MoE grouping: {} tokens cannot be split into groups over a batch axis of size {} "
                                 "(the token count must be a multiple of it)", n, batch_split));
  int64_t G = group_size > 0 ? std::max<int64_t>(1, n / group_size) : 1;
  while (G % batch_split != 0 || n % G != 0) ++G;
  return MoeGrouping{G, n / G};
}

// ---- the layer ----

MoeLayer moe_layer(Builder& b, Expr x, const MoeConfig& cfg, const MoeContext& ctx) {
  check_moe_config(cfg);
  if (cfg.batch_prioritized && ctx.is_decoder)
    bad_setting("batch_prioritized", "true in a decoder",
                "false in a decoder (BPR orders a group by router probability, which routes on future tokens); "
                "true only in an encoder");
  const Shape xs = x.shape();  // a copy: building nodes grows the value table
  if (xs.size() < 2 || xs.back().name != kModel)
    throw InputError(fmt::format("MoE layer: x {} must be [..., d_model] with d_model last and at least one token dim",
                                 to_string(x.type())));
  const int64_t D = xs.back().size, E = cfg.experts;
  const int64_t n_tokens = num_elements(xs) / D;

  MoeLayer out;
  const MoeGrouping grouping = moe_grouping(n_tokens, cfg.group_size, ctx.batch_split);
  const int64_t G = grouping.groups, S = grouping.group_size;
  const bool expert_choice = cfg.router == RouterKind::expert_choice;
  const int64_t C = expert_choice ? std::min(capacity(cfg, S, ctx.training), S) : capacity(cfg, S, ctx.training);
  out.groups = G, out.group_size = S, out.capacity = C;
  const int64_t Cg = cfg.group_dispatch ? group_capacity(cfg, S, ctx.training) : 0;
  GroupSlots group;               // group_dispatch: the token side of the two-stage dispatch
  Expr kept_choices, choice_slots;  // top_k and hash routers: [G, S, K, E] and [G, S, K, C]
  Expr choice_gates;                // [G, S, K, E]: kept_choices times each choice's gate
  Expr place, gate_of_row;          // group_dispatch, expert side: [EG, G, Cg, E/EG, C], [EG, G, Cg, E/EG]
  const Shape gs{{kGroup, G}, {kGroupSize, S}};
  Expr xg;
  {
    ScopeGuard scope(b, "dispatch");
    xg = reshape(x, {gs[0], gs[1], {kModel, D}});  // [G, S, D]
  }
  const double inv_tokens = 1.0 / static_cast<double>(n_tokens);
  const int64_t seq_len = xs.size() >= 3 ? xs[xs.size() - 2].size : n_tokens;  // [batch, length, D]: length

  // ---- router ----
  {
    ScopeGuard scope(b, "router");
    Expr lse;
    if (expert_choice) {
      // Each expert takes its top-C tokens of the group (C ≤ S), weighted by its router probability.
      Expr logits = cast_to(router_logits(b, xg, cfg, ctx), DType::f32);                       // [G, S, E]
      Expr probs = cast_to(softmax(cast_to(logits, cfg.router_dtype), kExperts), DType::f32);  // [G, S, E]
      auto [vals, tokens] = top_k(transpose(probs, {kGroup, kExperts, kGroupSize}), kGroupSize, Dim{kCapacity, C});  // [G, E, C]
      Expr taken = one_hot(tokens, Dim{kGroupSize, S});                                                  // [G, E, C, S]
      out.dispatch = transpose(taken, {kGroup, kGroupSize, kExperts, kCapacity});                        // [G, S, E, C]
      out.combine = transpose(taken * vals, {kGroup, kGroupSize, kExperts, kCapacity});
      Expr covered = greater(sum(out.dispatch, {kExperts, kCapacity}), constant(b, gs, 0.5));             // [G, S]
      out.fraction_dropped = reshape(scale(mean(covered, {kGroup, kGroupSize}), -1.0, 1.0), {{kChoice, 1}});
      out.expert_load = scale(sum(out.dispatch, {kGroup, kGroupSize, kCapacity}), inv_tokens);
      out.aux_loss_raw = constant(b, {}, 0.0);
      out.router_probs = probs;
      out.max_logit = max(abs_value(logits), {kGroup, kGroupSize, kExperts});
      out.router_logits = logits;
      lse = logsumexp(logits, kExperts);
      out.router_entropy = mean(lse - sum(probs * logits, {kExperts}), {kGroup, kGroupSize});
    } else {
      const bool hash = cfg.router == RouterKind::hash;
      if (hash && is_set(ctx.token_ids)) {
        Shape want(xs.begin(), xs.end() - 1);
        if (ctx.token_ids.shape() != want || ctx.token_ids.dtype() != DType::i32)
          throw InputError(fmt::format("MoE layer: token_ids {} must be i32 with x's token dims {}",
                                       to_string(ctx.token_ids.type()), to_string(want)));
      }
      if (cfg.bias_balance_rate > 0) out.balance_bias = b.parameter(name_under(b, "balance_bias"), {{kExperts, E}});  // [E]
      Routed r = hash ? route_hash(b, gs, cfg, ctx) : route_top_k(b, xg, cfg, ctx, seq_len, out.balance_bias);
      Expr assign = r.onehot * r.keep;                               // [G, S, K, E]
      if (cfg.group_dispatch) {
        // First each token's slot in the expert groups it visits; a choice whose token found its
        // group full is dropped before it takes an expert slot.
        group = assign_group_slots(assign, cfg, Cg);
        Expr visit_kept = sum(group.onehot, {kGroupCapacity});                                        // [G, S, EG]
        assign = assign * einsum(group.choice_group, visit_kept, {kGroup, kGroupSize, kChoice});     // [G, S, K, E]
      }
      const Slots slots = assign_slots(assign, r.order, C);           // [G, S, K, C]
      kept_choices = assign;
      choice_slots = slots.onehot;
      const std::vector<std::string> gsec{kGroup, kGroupSize, kExperts, kCapacity};
      out.dispatch = einsum(assign, slots.onehot, gsec);              // [G, S, E, C]
      choice_gates = assign * r.gates;                                // [G, S, K, E]
      out.combine = einsum(choice_gates, slots.onehot, gsec);         // [G, S, E, C]
      Expr kept = sum(slots.onehot, {kCapacity});                     // [G, S, K]
      out.fraction_dropped = scale(sum(r.keep - kept, {kGroup, kGroupSize}), inv_tokens);  // [K]
      Expr load_count = sum(assign, {kGroup, kGroupSize, kChoice});                        // [E]
      out.expert_load = scale(load_count, inv_tokens);                                     // [E]
      out.aux_loss_raw = r.aux_raw;
      if (hash) {
        out.max_logit = constant(b, {}, 0.0);
        out.router_entropy = constant(b, {}, 0.0);
      } else {
        out.router_probs = r.probs;
        out.max_logit = max(abs_value(r.logits), {kGroup, kGroupSize, kExperts});
        out.router_logits = r.logits;
        lse = logsumexp(r.logits, kExperts);  // [G, S]
        // -Σ p log p: lse − Σ p·logit for a softmax; sigmoid scores normalised have no such form
        // (1e-30 keeps log finite for a score that underflowed to 0, whose term is 0).
        out.router_entropy =
            cfg.score == ScoreFunction::softmax
                ? mean(lse - sum(r.probs * r.logits, {kExperts}), {kGroup, kGroupSize})
                : scale(mean(sum(r.probs * log(scale(r.probs, 1.0, 1e-30)), {kExperts}), {kGroup, kGroupSize}), -1.0);
      }
      if (is_set(out.balance_bias) && ctx.training) {
        // DeepSeek-V3 §2.1.2: an overloaded expert's bias falls by γ, an underloaded one's rises by γ.
        // Compared in whole counts (Σ counts vs E·count_e), so an expert exactly at the mean load
        // keeps its bias: no rounding of a mean decides the sign.
        Expr gap = scale(load_count, -static_cast<double>(E)) + sum(load_count, {kExperts});  // [E]: > 0 underloaded
        Expr zero = constant(b, gap.shape(), 0.0);
        Expr sign = greater(gap, zero) - greater(zero, gap);             // [E] in {-1, 0, 1}
        out.balance_bias_next = out.balance_bias + scale(sign, cfg.bias_balance_rate);
      }
    }
    out.z_loss_raw = is_set(lse) ? mean(lse * lse, {kGroup, kGroupSize}) : constant(b, {}, 0.0);
    if (is_set(lse)) {
      Expr logits = out.router_logits;  // [G, S, E] f32
      out.logit_mean_square = mean(logits * logits, {kGroup, kGroupSize, kExperts});
      out.logsumexp_mean = mean(lse, {kGroup, kGroupSize});
      Expr p32 = softmax(logits, kExperts);
      Expr p16 = cast_to(softmax(cast_to(logits, DType::bf16), kExperts), DType::f32);
      out.softmax_roundoff = max(abs_value(p16 - p32), {kGroup, kGroupSize, kExperts});
      const Dim top1{"top1", 1};
      Expr same = einsum(one_hot(top_k(p32, kExperts, top1).second, Dim{kExperts, E}),
                         one_hot(top_k(p16, kExperts, top1).second, Dim{kExperts, E}), {kGroup, kGroupSize});  // [G, S] 0/1
      out.top1_flip = scale(mean(same, {kGroup, kGroupSize}), -1.0, 1.0);
    } else {
      out.logit_mean_square = out.logsumexp_mean = out.softmax_roundoff = out.top1_flip = constant(b, {}, 0.0);
    }
    const double z_scale = cfg.z_coef * (cfg.z_rule == ZLossRule::mesh_tf ? cfg.mesh_tf_loss_coef : 1.0);
    out.z_loss = scale(out.z_loss_raw, z_scale);
    out.aux_loss = scale(out.aux_loss_raw, cfg.balance_coef);
  }

  // ---- dispatch, experts, combine ----
  Expr expert_in;
  {
    ScopeGuard scope(b, "dispatch");
    if (cfg.group_dispatch) {
      // Two stages (DeepSeek-V3 §3.2.2: a token goes to each device it uses once, then to its
      // experts there). The token side writes each token once into every expert group it visits,
      // group_in [EG, G, Cg, D], and, for each such row, the slot + 1 its choice takes in each
      // expert of that group (0: none), targets [EG, G, Cg, E/EG]. With the groups split over the
      // expert axis (a layout's experts rule splits dispatch_group too), those two move in the
      // all-to-all: a token's row crosses to at most M = route_groups devices, not k. The expert
      // side then places each row in its experts' slots locally: expert_in [E, G, C, D].
      const int64_t R = cfg.expert_groups, L = E / R;
      const Dim eg{kDispatchGroup, R}, ge{kGroupExpert, L}, cap{kCapacity, C};
      Expr choices = reshape(kept_choices, {gs[0], gs[1], {kChoice, kept_choices.dim_size(kChoice)}, eg, ge});  // [G, S, K, EG, E/EG]
      Expr first_slot = cumsum(constant(b, {cap}, 1.0), kCapacity);  // [C]: 1..C
      Expr slot_of = einsum(einsum(choices, choice_slots, {kGroup, kGroupSize, kDispatchGroup, kGroupExpert, kCapacity}),
                            first_slot, {kGroup, kGroupSize, kDispatchGroup, kGroupExpert});              // [G, S, EG, E/EG]
      Expr group_in = einsum(cast_to(group.onehot, x.dtype()), xg, {kDispatchGroup, kGroup, kGroupCapacity, kModel});
      Expr targets = einsum(group.onehot, slot_of, {kDispatchGroup, kGroup, kGroupCapacity, kGroupExpert});  // [EG, G, Cg, E/EG]
      place = one_hot(cast(scale(targets, 1.0, -1.0), DType::i32), cap);  // [EG, G, Cg, E/EG, C]; -1: a zero row
      // The gates travel with the rows too: the expert side sums each token's outputs of a group
      // before they return (the combine moves M rows per token as well).
      Expr gates = reshape(sum(choice_gates, {kChoice}), {gs[0], gs[1], eg, ge});  // [G, S, EG, E/EG]
      gate_of_row = einsum(group.onehot, gates, {kDispatchGroup, kGroup, kGroupCapacity, kGroupExpert});
      Expr in5 = einsum(cast_to(place, x.dtype()), group_in, {kDispatchGroup, kGroupExpert, kGroup, kCapacity, kModel});
      expert_in = reshape(in5, {{kExperts, E}, gs[0], cap, {kModel, D}});  // [E, G, C, D]
    } else {
      expert_in = einsum(cast_to(out.dispatch, x.dtype()), xg, {kExperts, kGroup, kCapacity, kModel});  // [E, G, C, D]
    }
  }
  Expr expert_out;
  {
    ScopeGuard scope(b, "experts");
    const Dim e{kExperts, E}, d{kModel, D}, f{kFf, cfg.d_ff};
    const std::vector<std::string> egcf{kExperts, kGroup, kCapacity, kFf};
    auto weight = [&](const std::string& local, Shape shape) {
      return cast_to(b.parameter(name_under(b, local), std::move(shape)), x.dtype());
    };
    Expr wi0 = weight(cfg.expert_ffn == FfnKind::geglu ? "wi_0" : "wi", {e, d, f});  // [E, D, F]
    Expr wi1 = cfg.expert_ffn == FfnKind::geglu ? weight("wi_1", {e, d, f}) : Expr{};
    Expr wo = weight("wo", {e, f, d});                                                // [E, F, D]
    Expr bias = cfg.expert_bias ? weight("scale", {e, d}) : Expr{};                   // [E, D], init 1
    Expr h = cfg.expert_ffn == FfnKind::geglu ? gelu(einsum(expert_in, wi0, egcf)) * einsum(expert_in, wi1, egcf)
                                              : relu(einsum(expert_in, wi0, egcf));  // [E, G, C, F]
    if (ctx.training && cfg.expert_dropout > 0)
      h = dropout(h, require_step(ctx, "expert dropout"), cfg.expert_dropout, stream_seed(ctx.seed, Stream::dropout));
    expert_out = einsum(h, wo, {kExperts, kGroup, kCapacity, kModel});  // [E, G, C, D]
    if (cfg.expert_bias) expert_out = expert_out * bias;
  }
  {
    ScopeGuard scope(b, "dispatch");
    Expr yg;  // [G, S, D]
    if (cfg.group_dispatch) {
      // Expert side: each row of a group buffer sums its token's gated outputs of that group's
      // experts; token side: the token sums its rows over the groups.
      const int64_t R = cfg.expert_groups, L = E / R;
      const Dim eg{kDispatchGroup, R}, ge{kGroupExpert, L};
      Expr out5 = reshape(expert_out, {eg, ge, gs[0], {kCapacity, C}, {kModel, D}});  // [EG, E/EG, G, C, D]
      Expr weight = einsum(place, gate_of_row, {kDispatchGroup, kGroup, kGroupCapacity, kGroupExpert, kCapacity});
      Expr group_out = einsum(cast_to(weight, x.dtype()), out5, {kDispatchGroup, kGroup, kGroupCapacity, kModel});
      yg = einsum(cast_to(group.onehot, x.dtype()), group_out, {kGroup, kGroupSize, kModel});
    } else {
      yg = einsum(cast_to(out.combine, x.dtype()), expert_out, {kGroup, kGroupSize, kModel});
    }
    out.y = reshape(yg, xs);
  }
  if (cfg.shared_experts > 0) {
    // DeepSeekMoE's shared experts: N always-on experts are one FFN of N·d_ff hidden units.
    ScopeGuard scope(b, "shared_experts");
    const int64_t F = cfg.shared_experts * (cfg.shared_d_ff > 0 ? cfg.shared_d_ff : cfg.d_ff);
    const Dim d{kModel, D}, f{kFf, F};
    std::vector<std::string> to_f, to_d;  // x's token dims, then d_ff or d_model
    for (size_t i = 0; i + 1 < xs.size(); ++i) to_f.push_back(xs[i].name);
    to_d = to_f;
    to_f.push_back(kFf);
    to_d.push_back(kModel);
    auto weight = [&](const std::string& local, Shape shape) {
      return cast_to(b.parameter(name_under(b, local), std::move(shape)), x.dtype());
    };
    Expr h = cfg.expert_ffn == FfnKind::geglu
                 ? gelu(einsum(x, weight("wi_0", {d, f}), to_f)) * einsum(x, weight("wi_1", {d, f}), to_f)
                 : relu(einsum(x, weight("wi", {d, f}), to_f));  // [..., F]
    if (ctx.training && cfg.expert_dropout > 0)
      h = dropout(h, require_step(ctx, "expert dropout"), cfg.expert_dropout, stream_seed(ctx.seed, Stream::shared_dropout));
    out.y = out.y + einsum(h, weight("wo", {f, d}), to_d);  // [..., D]
  }

  if (ctx.output_metrics) {
    const std::string prefix = (b.scope().empty() ? std::string("moe") : b.scope()) + "/metrics/";
    b.output(prefix + "aux_loss", out.aux_loss_raw);
    b.output(prefix + "z_loss", out.z_loss_raw);
    b.output(prefix + "fraction_dropped", out.fraction_dropped);
    b.output(prefix + "expert_load", out.expert_load);
    b.output(prefix + "router_entropy", out.router_entropy);
    b.output(prefix + "max_logit", out.max_logit);
    b.output(prefix + "logit_mean_square", out.logit_mean_square);
    b.output(prefix + "logsumexp", out.logsumexp_mean);
    b.output(prefix + "softmax_roundoff", out.softmax_roundoff);
    b.output(prefix + "top1_flip", out.top1_flip);
    // Evaluation: each token's expert of highest router probability (top-k's first choice), for
    // routing analysis by token class (ST-MoE Table 13); the hash router has no probabilities.
    if (!ctx.training && out.router_probs.b != nullptr) {
      ScopeGuard scope(b, "router");
      b.output(prefix + "top_expert", top_k(out.router_probs, kExperts, Dim{"top_expert", 1}).second);  // [G, S, 1] i32
    }
  }
  return out;
}

}  // namespace sy
