// The MoE layer by composition of primitive ops (see graph/models/moe.hpp for the data flow and
// docs/formulas.md for the formulas). Integer routing state (expert choices, slots) is i32;
// everything differentiable (gates, losses) is f32; the expert FFN runs in x's dtype.
#include "graph/models/moe.hpp"

#include "graph/models/moe_routing.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <cmath>

namespace sy {
using namespace moe_detail;

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
      // expert of that group (0: none), targets [EG, G, Cg, E/EG], and their gates. With the groups
      // split over the expert axis (a layout's experts rule splits dispatch_group too), these move
      // in the all-to-all: a token's row crosses to at most M = route_groups devices, not k. The
      // expert side then places each row in its experts' slots locally: expert_in [E, G, C, D].
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
