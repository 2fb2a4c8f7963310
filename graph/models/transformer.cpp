#include "graph/models/transformer.hpp"

#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/models/moe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>

namespace sy {
namespace {

uint64_t mix64(uint64_t z) {  // splitmix64 finaliser: distinct seeds per use from one config seed
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Bucket of a non-negative distance n among `buckets` (T5): exact below buckets/2, then
// logarithmic up to max_distance, then the last bucket.
int64_t distance_bucket(int64_t n, int64_t buckets, int64_t max_distance) {
  const int64_t max_exact = buckets / 2;
  if (n < max_exact) return n;
  const double v = std::log(static_cast<double>(n) / static_cast<double>(max_exact)) /
                   std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                   static_cast<double>(buckets - max_exact);
  return std::min(max_exact + static_cast<int64_t>(v), buckets - 1);
}

// The smallest distance of each bucket 1, 2, ... that a distance <= limit reaches: bucket(n) is
// the number of thresholds <= n, since distance_bucket is non-decreasing in n.
std::vector<int64_t> bucket_thresholds(int64_t buckets, int64_t max_distance, int64_t limit) {
  std::vector<int64_t> t;
  int64_t last = 0;
  for (int64_t n = 0; n <= limit && last < buckets - 1; ++n) {
    const int64_t b = distance_bucket(n, buckets, max_distance);
    for (; last < b; ++last) t.push_back(n);
  }
  return t;
}

// Names the parts of a layer's scope: "layer_03".
std::string layer_name(int64_t i) { return fmt::format("layer_{:02d}", i); }

class TransformerBuilder {
 public:
  TransformerBuilder(const ModelConfig& c, const TrainConfig& t, const BuildOptions& o, ModelGraph& m)
      : c_(c), t_(t), o_(o), m_(m), b_(m.graph), training_(o.mode == Mode::train) {}

  void build() {
    const int64_t batch = o_.batch > 0 ? o_.batch : t_.batch;
    m_.batch = batch;
    m_.mode = o_.mode;
    step_ = b_.input("step", {}, DType::i32);
    m_.step = step_.id;
    Expr enc_tokens, dec_tokens, targets;
    if (c_.has_encoder()) {
      enc_tokens = b_.input("encoder_input_tokens", {{"batch", batch}, {"length", t_.input_length}}, DType::i32);
      m_.encoder_input_tokens = enc_tokens.id;
    }
    dec_tokens = b_.input("decoder_input_tokens", {{"batch", batch}, {"length", t_.target_length}}, DType::i32);
    targets = b_.input("decoder_target_tokens", {{"batch", batch}, {"length", t_.target_length}}, DType::i32);
    m_.decoder_input_tokens = dec_tokens.id;
    m_.decoder_target_tokens = targets.id;

    Expr table;  // [vocab, d_model], shared by the encoder and decoder inputs (and tied logits)
    {
      ScopeGuard s(b_, "embedding");
      table = param("table", {{"vocab", c_.vocab}, {"d_model", c_.d_model}}, InitKind::truncated_normal, 0, 1.0);
    }

    std::optional<Expr> memory;  // encoder output as attention memory [B, M, D]
    if (c_.has_encoder()) {
      Expr enc = stack("encoder", table, enc_tokens, std::nullopt);  // [B, L_in, D]
      ScopeGuard s(b_, "decoder");
      ScopeGuard s2(b_, "encoder_memory");
      memory = rename_length(enc);
    }
    Expr h = stack("decoder", table, dec_tokens, memory);  // [B, L_out, D]

    Expr logits;  // [B, L, V] f32
    {
      ScopeGuard s(b_, "logits");
      if (c_.tied_embeddings) {
        logits = scale(einsum(h, table, {"batch", "length", "vocab"}), 1.0 / std::sqrt(static_cast<double>(c_.d_model)));
      } else {
        Expr w = param("kernel", {{"d_model", c_.d_model}, {"vocab", c_.vocab}}, InitKind::truncated_normal, c_.d_model);
        logits = einsum(h, w, {"batch", "length", "vocab"});
      }
    }
    Expr loss;
    {
      ScopeGuard s(b_, "loss");
      Expr per_token = cross_entropy(logits, targets, "vocab");  // [B, L]
      Expr ce;                                                    // []
      if (o_.loss_weights) {
        weights_ = b_.input("decoder_target_weights", targets.shape());
        m_.decoder_target_weights = weights_.id;
        ce = sum(per_token * weights_, {"batch", "length"});
      } else {
        ce = mean(per_token, {"batch", "length"});
      }
      m_.cross_entropy = ce.id;
      b_.output("cross_entropy", ce);
      loss = ce;
      if (!aux_terms_.empty()) {
        Expr aux = sum_all(aux_terms_);
        Expr z = sum_all(z_terms_);
        m_.aux_loss = aux.id;
        m_.z_loss = z.id;
        b_.output("aux_loss", aux);
        b_.output("z_loss", z);
        loss = loss + aux + z;
      }
      b_.set_loss(loss);
    }
    if (o_.accuracy) {
      ScopeGuard s(b_, "metrics");
      // accuracy = mean [argmax_V logits == target]
      Expr predicted = top_k(logits, "vocab", {"top", 1}).second;                  // i32 [B, L, top=1]
      predicted = reshape(predicted, targets.shape());                             // i32 [B, L]
      Expr wrong = predicted - targets;                                            // 0 where right
      Expr zeros = fill(b_, targets.shape(), 0.0);
      Expr ones = fill(b_, targets.shape(), 1.0);
      Expr right = where(wrong, zeros, ones);                                      // [B, L]
      b_.output("accuracy", o_.loss_weights ? sum(right * weights_, {"batch", "length"}) : mean(right, {"batch", "length"}));
    }
    if (o_.predictions) {
      ScopeGuard s(b_, "predictions");
      Expr predicted = top_k(logits, "vocab", {"top", 1}).second;  // i32 [B, L, top=1]
      b_.output("predictions", reshape(predicted, targets.shape()));  // i32 [B, L]
    }
    complete_init();
  }

 private:
  // ---- parameters and their initialisers ----
  Expr param(const std::string& name, Shape shape, InitKind kind, int64_t fan_in, double stddev = 0.0) {
    const std::string full = b_.scope().empty() ? name : b_.scope() + "/" + name;
    Expr p = b_.parameter(full, std::move(shape));
    if (kind == InitKind::truncated_normal && stddev == 0.0)
      stddev = std::sqrt(c_.init_scale / static_cast<double>(fan_in));
    init_[p.id] = ParamInit{p.id, kind, stddev, kind == InitKind::truncated_normal && fan_in > 0 ? fan_in : 0};
    return p;
  }

  // Parameters created elsewhere (the MoE layer): initialised by how the graph uses them. An
  // einsum weight gets the fan-in rule with fan_in = the product of its dims the einsum sums
  // over; a multiplicative operand (mul, rms_norm scale) ones; an additive one zeros.
  // (A cast, e.g. to bf16, between the parameter and its use is looked through.)
  void complete_init() {
    const Graph& g = m_.graph;
    for (ValueId p : g.parameters()) {
      if (init_.count(p)) continue;
      ParamInit pi{p, InitKind::ones, 0.0, 0};
      ValueId use = p;  // p, or the cast of p that is used
      for (const Node& n : g.nodes) {
        auto it = std::find(n.inputs.begin(), n.inputs.end(), use);
        if (it == n.inputs.end()) continue;
        if (n.kind == OpKind::cast) {
          use = n.outputs[0];
          continue;
        }
        if (n.kind == OpKind::einsum) {
          const auto& out = std::get<EinsumAttrs>(n.attrs).out;
          int64_t fan_in = 1;
          for (const Dim& d : g.type(p).shape)
            if (std::find(out.begin(), out.end(), d.name) == out.end()) fan_in *= d.size;
          pi = ParamInit{p, InitKind::truncated_normal, std::sqrt(c_.init_scale / static_cast<double>(fan_in)), fan_in};
          const std::string& name = g.value(p).name;
          if (name.find("/moe/router/") != std::string::npos)  // moe.router_init_scale
            pi.stddev *= (name.starts_with("encoder/") ? c_.moe_encoder : c_.moe_decoder).router_init_scale;
        } else if (n.kind == OpKind::add || n.kind == OpKind::sub) {
          pi.kind = InitKind::zeros;
        }
        break;
      }
      init_[p] = pi;
    }
    for (ValueId p : g.parameters()) m_.init.push_back(init_.at(p));
  }

  // ---- small pieces ----
  Expr drop(Expr x) {
    if (!training_ || c_.dropout == 0.0) return x;
    return dropout(x, step_, c_.dropout, mix64(t_.seed ^ mix64(++random_uses_)));
  }

  Expr norm(Expr x, const std::string& scope) {  // RMSNorm over d_model
    ScopeGuard s(b_, scope);
    Expr g = c_.norm_scale ? param("scale", {{"d_model", c_.d_model}}, InitKind::ones, 0)
                           : fill(b_, {{"d_model", c_.d_model}}, 1.0);
    return rms_norm(x, g, "d_model", c_.norm_eps);
  }

  // [B, length, D] -> [B, memory_length, D]: the same elements under the memory's dim name.
  Expr rename_length(Expr x) {
    Shape s = x.shape();
    s[*dim_index(s, "length")].name = "memory_length";
    return reshape(x, s);
  }

  static Expr sum_all(const std::vector<Expr>& terms) {
    Expr acc = terms.front();
    for (size_t i = 1; i < terms.size(); ++i) acc = acc + terms[i];
    return acc;
  }

  // Integer positions 0..n-1 along a new dim: [dim] i32.
  Expr positions(const std::string& dim, int64_t n) {
    return cumsum(fill(b_, {{dim, n}}, 1.0, DType::i32), dim, /*exclusive=*/true);
  }

  // Relative position bias of one stack: [length, memory_length, heads], shared by its layers.
  Expr position_bias(int64_t length, bool bidirectional) {
    ScopeGuard s(b_, "relative_position_bias");
    const Shape lm{{"length", length}, {"memory_length", length}};
    Expr qpos = broadcast(positions("length", length), lm);         // i32 [L, M]: i
    Expr kpos = broadcast(positions("memory_length", length), lm);  // i32 [L, M]: j
    Expr back = qpos - kpos;                                        // i - j
    auto scalar = [&](int64_t v) { return fill(b_, {}, static_cast<double>(v), DType::i32); };
    auto at_least = [&](Expr n, int64_t t) { return greater(n, scalar(t - 1)); };  // [n >= t]
    Expr bucket;  // i32 [L, M]
    if (bidirectional) {
      const int64_t half = c_.position_buckets / 2;
      Expr ahead = kpos - qpos;  // j - i
      bucket = greater(ahead, scalar(0)) * scalar(half);
      for (int64_t t : bucket_thresholds(half, c_.position_max_distance, length - 1))
        bucket = bucket + at_least(back, t) + at_least(ahead, t);
    } else {
      bucket = fill(b_, lm, 0.0, DType::i32);
      for (int64_t t : bucket_thresholds(c_.position_buckets, c_.position_max_distance, length - 1))
        bucket = bucket + at_least(back, t);
    }
    Expr table = param("table", {{"buckets", c_.position_buckets}, {"heads", c_.heads}}, InitKind::truncated_normal,
                       c_.position_buckets);
    return embedding(table, bucket);  // [L, M, H]
  }

  // 0 where j <= i, -1e9 where j > i: [length, memory_length].
  Expr causal_mask(int64_t length) {
    ScopeGuard s(b_, "causal_mask");
    const Shape lm{{"length", length}, {"memory_length", length}};
    Expr future = greater(broadcast(positions("memory_length", length), lm), positions("length", length));
    return where(future, fill(b_, lm, -1e9), fill(b_, lm, 0.0));
  }

  // x [B, L, D] attends to memory [B, M, D] (self-attention: memory = x renamed).
  Expr attention(Expr x, std::optional<Expr> memory, std::optional<Expr> bias, const std::string& scope) {
    ScopeGuard s(b_, scope);
    const Shape w_in{{"d_model", c_.d_model}, {"heads", c_.heads}, {"d_kv", c_.d_kv}};
    const Shape w_out{{"heads", c_.heads}, {"d_kv", c_.d_kv}, {"d_model", c_.d_model}};
    Expr wq = param("wq", w_in, InitKind::truncated_normal, c_.d_model);
    Expr wk = param("wk", w_in, InitKind::truncated_normal, c_.d_model);
    Expr wv = param("wv", w_in, InitKind::truncated_normal, c_.d_model);
    Expr wo = param("wo", w_out, InitKind::truncated_normal, c_.heads * c_.d_kv);
    Expr m = memory ? *memory : rename_length(x);                             // [B, M, D]
    Expr q = einsum(x, wq, {"batch", "length", "heads", "d_kv"});             // [B, L, H, K]
    Expr k = einsum(m, wk, {"batch", "memory_length", "heads", "d_kv"});      // [B, M, H, K]
    Expr v = einsum(m, wv, {"batch", "memory_length", "heads", "d_kv"});      // [B, M, H, K]
    Expr scores = einsum(q, k, {"batch", "heads", "length", "memory_length"});  // [B, H, L, M]
    if (bias) scores = scores + *bias;                                        // [L, M, H] or [L, M]
    Expr p = drop(softmax(scores, "memory_length"));                          // [B, H, L, M]
    Expr o = einsum(p, v, {"batch", "length", "heads", "d_kv"});              // [B, L, H, K]
    return einsum(o, wo, {"batch", "length", "d_model"});                     // [B, L, D]
  }

  Expr ffn(Expr x, const std::string& scope) {  // dense FFN [B, L, D] -> [B, L, D]
    ScopeGuard s(b_, scope);
    const Shape w_in{{"d_model", c_.d_model}, {"d_ff", c_.d_ff}};
    Expr wo = param("wo", {{"d_ff", c_.d_ff}, {"d_model", c_.d_model}}, InitKind::truncated_normal, c_.d_ff);
    Expr h;  // [B, L, F]
    switch (c_.ffn) {
      case FfnKind::geglu: {
        Expr wi_0 = param("wi_0", w_in, InitKind::truncated_normal, c_.d_model);
        Expr wi_1 = param("wi_1", w_in, InitKind::truncated_normal, c_.d_model);
        h = gelu(einsum(x, wi_0, {"batch", "length", "d_ff"})) * einsum(x, wi_1, {"batch", "length", "d_ff"});
        break;
      }
      case FfnKind::relu: {
        Expr wi = param("wi", w_in, InitKind::truncated_normal, c_.d_model);
        h = relu(einsum(x, wi, {"batch", "length", "d_ff"}));
        break;
      }
    }
    return einsum(drop(h), wo, {"batch", "length", "d_model"});
  }

  Expr moe(Expr x, Expr tokens, bool decoder, const std::string& layer_scope) {
    const MoeConfig& cfg = decoder ? c_.moe_decoder : c_.moe_encoder;
    ScopeGuard s(b_, "moe");
    MoeContext ctx;
    ctx.training = training_;
    ctx.is_decoder = decoder;
    ctx.step = step_;
    ctx.seed = mix64(t_.seed ^ mix64(++random_uses_));
    ctx.token_ids = tokens;
    ctx.vocab = c_.vocab;
    ctx.batch_split = o_.batch_split;
    ctx.output_metrics = o_.moe_metrics;
    MoeLayer l = moe_layer(b_, x, cfg, ctx);
    aux_terms_.push_back(l.aux_loss);
    z_terms_.push_back(l.z_loss);
    m_.moe_layers.push_back(MoeLayerInfo{layer_scope + "/moe", decoder, l.groups, l.group_size, l.capacity,
                                         l.balance_bias.id, l.balance_bias_next.id});
    return l.y;
  }

  // One stack over `tokens` [B, L]: embedding, layers, final norm. `memory`: cross-attention
  // memory (a decoder of an encoder-decoder model).
  Expr stack(const std::string& name, Expr table, Expr tokens, std::optional<Expr> memory) {
    const bool decoder = name == "decoder";
    const int64_t layers = decoder ? c_.decoder_layers : c_.encoder_layers;
    const int64_t length = tokens.dim_size("length");
    Expr x;
    {
      ScopeGuard s(b_, "embedding");
      x = drop(embedding(table, tokens));  // [B, L, D]
    }
    ScopeGuard s(b_, name);
    std::optional<Expr> bias;  // [L, M, H] and/or [L, M]
    if (c_.position_bias) bias = position_bias(length, !decoder);
    if (decoder) bias = bias ? *bias + causal_mask(length) : causal_mask(length);

    for (int64_t i = 0; i < layers; ++i) {
      const std::string layer = layer_name(i);
      ScopeGuard sl(b_, layer);
      const std::string layer_scope = b_.scope();
      x = x + drop(attention(norm(x, "attention_norm"), std::nullopt, bias, "attention"));
      if (memory) x = x + drop(attention(norm(x, "cross_attention_norm"), memory, std::nullopt, "cross_attention"));
      if (c_.is_sparse_layer(i)) {
        x = x + drop(moe(norm(x, "moe_norm"), tokens, decoder, layer_scope));
        if (c_.moe_extra_dense_ffn) x = x + drop(ffn(norm(x, "extra_ffn_norm"), "extra_ffn"));
      } else {
        x = x + drop(ffn(norm(x, "ffn_norm"), "ffn"));
      }
    }
    return drop(norm(x, "final_norm"));
  }

  const ModelConfig& c_;
  const TrainConfig& t_;  // the batch shape and seed
  const BuildOptions& o_;
  ModelGraph& m_;
  Builder b_;
  bool training_;
  Expr step_;
  Expr weights_;  // decoder_target_weights, with BuildOptions::loss_weights
  uint64_t random_uses_ = 0;
  std::vector<Expr> aux_terms_, z_terms_;
  std::map<ValueId, ParamInit> init_;
};

// A router's nodes stay f32 under selective precision: scopes ".../router" and below.
bool in_router_scope(const std::string& scope) {
  return scope == "router" || scope.starts_with("router/") || scope.ends_with("/router") ||
         scope.find("/router/") != std::string::npos;
}

// The loss, and the metrics and predictions read from the logits, stay f32 under every
// precision: scopes "loss", "metrics", "predictions" (T5X casts the logits to f32 before the
// cross-entropy; Mesh-TF's softmax_cross_entropy_with_logits upcasts them the same way).
bool in_loss_scope(const std::string& scope) {
  for (std::string_view s : {"loss", "metrics", "predictions"})
    if (scope == s || scope.starts_with(std::string(s) + "/")) return true;
  return false;
}

// Which nodes of the f32 graph a precision computes in bf16, and whether their results return to
// f32 at once (see build_model in the header).
struct PrecisionPolicy {
  bool (*demoted)(const Node& n);
  bool restore_f32;  // true: each demoted node's float outputs are cast back to f32 right after it
};

// Selective precision: einsums outside a router, results back in f32.
bool demote_einsum(const Node& n) { return n.kind == OpKind::einsum && !in_router_scope(n.scope); }
// bf16 activations: every node outside a router and the loss; results stay bf16.
bool demote_activation(const Node& n) { return !in_router_scope(n.scope) && !in_loss_scope(n.scope); }

// The dtype a demoted node uses where the f32 graph has `t`: bf16 for f32, else `t`.
DType demoted_dtype(DType t) { return t == DType::f32 ? DType::bf16 : t; }

// The attributes of a demoted node: an f32 it creates (fill, random, one_hot) is made in bf16.
Attrs demoted_attrs(const Attrs& a) {
  Attrs r = a;
  if (auto* f = std::get_if<FillAttrs>(&r)) f->dtype = demoted_dtype(f->dtype);
  if (auto* x = std::get_if<RandomAttrs>(&r)) x->dtype = demoted_dtype(x->dtype);
  if (auto* o = std::get_if<OneHotAttrs>(&r)) o->dtype = demoted_dtype(o->dtype);
  if (auto* c = std::get_if<CastAttrs>(&r)) c->to = demoted_dtype(c->to);
  return r;
}

// The graph of `m` with the nodes `policy` demotes computed in bf16. Replays the values in id
// order through a Builder: a leaf is recreated as it was (parameters stay f32: the master
// weights), the first output of a node re-emits the node, and every id in the ModelGraph is mapped
// to its new value. Each float input is cast to the dtype the node computes in, the f32 graph's
// dtype for a node kept as it is (a router's explicit bf16 stays bf16; its f32 input from a bf16
// stream is upcast there), bf16 for a demoted one. A demoted cast to the dtype its input already
// has is dropped.
ModelGraph with_precision(const ModelGraph& m, const PrecisionPolicy& policy) {
  const Graph& g = m.graph;
  ModelGraph r;
  r.mode = m.mode;
  r.batch = m.batch;
  r.moe_layers = m.moe_layers;
  Builder b(r.graph);
  std::vector<ValueId> map(g.values.size());
  for (const Value& v : g.values) {
    const auto vi = static_cast<size_t>(v.id.v);
    if (v.role == ValueRole::input) {
      map[vi] = b.input(v.name, v.type.shape, v.type.dtype).id;
      continue;
    }
    if (v.role == ValueRole::parameter) {
      map[vi] = b.parameter(v.name, v.type.shape, v.type.dtype).id;
      continue;
    }
    if (v.output_index != 0) continue;  // mapped with the node's first output
    const Node& n = g.node(v.producer);
    const bool demoted = policy.demoted(n);
    if (!n.scope.empty()) b.push_scope(n.scope);
    std::vector<ValueId> in;
    for (ValueId x : n.inputs) {
      Expr e = b.wrap(map[static_cast<size_t>(x.v)]);
      const DType want = demoted ? demoted_dtype(g.type(x).dtype) : g.type(x).dtype;
      in.push_back(is_float(e.dtype()) && e.dtype() != want ? cast(e, want).id : e.id);
    }
    const Attrs attrs = demoted ? demoted_attrs(n.attrs) : n.attrs;
    if (n.kind == OpKind::cast && r.graph.type(in[0]).dtype == std::get<CastAttrs>(attrs).to) {
      map[static_cast<size_t>(n.outputs[0].v)] = in[0];
    } else {
      const auto outs = b.op(n.kind, attrs, in);
      for (size_t i = 0; i < outs.size(); ++i) {
        const DType was = g.type(n.outputs[i]).dtype;
        const bool back = demoted && policy.restore_f32 && outs[i].dtype() != was;
        map[static_cast<size_t>(n.outputs[i].v)] = back ? cast(outs[i], was).id : outs[i].id;
      }
    }
    if (!n.scope.empty()) b.pop_scope();
  }
  auto mapped = [&](ValueId id) { return id.valid() ? map[static_cast<size_t>(id.v)] : id; };
  for (const GraphOutput& o : g.outputs) {
    // An output keeps the f32 graph's dtype (a metric computed in a demoted scope is read as f32).
    Expr e = b.wrap(mapped(o.value));
    const DType was = g.type(o.value).dtype;
    b.output(o.name, e.dtype() == was ? e : cast(e, was));
  }
  if (g.loss.valid()) b.set_loss(b.wrap(mapped(g.loss)));
  r.step = mapped(m.step);
  r.encoder_input_tokens = mapped(m.encoder_input_tokens);
  r.decoder_input_tokens = mapped(m.decoder_input_tokens);
  r.decoder_target_tokens = mapped(m.decoder_target_tokens);
  r.decoder_target_weights = mapped(m.decoder_target_weights);
  r.cross_entropy = mapped(m.cross_entropy);
  r.aux_loss = mapped(m.aux_loss);
  r.z_loss = mapped(m.z_loss);
  for (ParamInit p : m.init) {
    p.param = mapped(p.param);
    r.init.push_back(p);
  }
  for (MoeLayerInfo& l : r.moe_layers) {
    l.balance_bias = mapped(l.balance_bias);
    l.balance_bias_next = mapped(l.balance_bias_next);
  }
  return r;
}

}  // namespace

std::string_view init_kind_name(InitKind k) {
  switch (k) {
    case InitKind::truncated_normal: return "truncated_normal";
    case InitKind::ones: return "ones";
    case InitKind::zeros: return "zeros";
  }
  return "?";
}

int64_t relative_position_bucket(int64_t i, int64_t j, bool bidirectional, int64_t buckets, int64_t max_distance) {
  const int64_t n = i - j;
  if (!bidirectional) return distance_bucket(std::max<int64_t>(n, 0), buckets, max_distance);
  const int64_t half = buckets / 2;
  return (n < 0 ? half : 0) + distance_bucket(std::abs(n), half, max_distance);
}

ModelGraph build_model(const ModelConfig& c, const TrainConfig& train, const BuildOptions& opts) {
  ModelGraph m;
  TransformerBuilder(c, train, opts, m).build();
  if (train.precision != DType::bf16) return m;
  if (train.activation_dtype == DType::bf16) return with_precision(m, {demote_activation, false});
  return with_precision(m, {demote_einsum, true});
  return m;
}

Tensor initial_value(const ParamInit& init, const TensorType& type, uint64_t seed) {
  Tensor t(type, init.kind == InitKind::ones ? 1.0 : 0.0);
  if (init.kind != InitKind::truncated_normal) return t;
  std::mt19937_64 gen(mix64(seed ^ mix64(static_cast<uint64_t>(init.param.v) + 1)));
  std::normal_distribution<double> normal(0.0, 1.0);
  for (double& x : t.data) {
    double z = normal(gen);
    while (std::abs(z) > 2.0) z = normal(gen);
    x = round_to(type.dtype, z * init.stddev);
  }
  return t;
}

}  // namespace sy
