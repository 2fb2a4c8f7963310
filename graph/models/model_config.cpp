#include "graph/models/model_config.hpp"

#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/toml_schema.hpp"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <regex>

namespace sy {
namespace {

// ---- names of enum values, as written in the files ----

template <typename E>
using Names = std::pair<E, std::string_view>;

constexpr Names<Architecture> kArchitectures[] = {{Architecture::encoder_decoder, "encoder_decoder"},
                                                  {Architecture::decoder_only, "decoder_only"}};
constexpr Names<DType> kRouterDtypes[] = {{DType::f32, "f32"}, {DType::bf16, "bf16"}};
constexpr Names<OptimizerKind> kOptimizers[] = {{OptimizerKind::adafactor, "adafactor"}, {OptimizerKind::adamw, "adamw"}};
constexpr Names<LrSchedule> kSchedules[] = {
    {LrSchedule::inverse_sqrt, "inverse_sqrt"}, {LrSchedule::constant, "constant"}, {LrSchedule::cosine, "cosine"}};

template <typename E, size_t N>
std::string_view name_of(const Names<E> (&table)[N], E v) {
  for (const auto& [value, name] : table)
    if (value == v) return name;
  return "?";
}

// A setting named by the router library's spellings (graph/models/moe.hpp EnumNames).
template <typename E>
E named(TomlSection& s, std::string_view key, E fallback) {
  return s.choice(key, fallback, EnumNames<E>::names);
}

// The MoeConfig keys of one table, over `base` (the defaults, or [moe] for a stack's table).
MoeConfig read_moe(TomlSection& s, MoeConfig m) {
  m.experts = s.integer("experts", m.experts, 1);
  m.k = s.integer("k", m.k, 1);
  m.router = named<RouterKind>(s, "router", m.router);
  m.policy_train = named<SecondPolicy>(s, "policy_train", m.policy_train);
  m.policy_eval = named<SecondPolicy>(s, "policy_eval", m.policy_eval);
  m.policy_threshold = s.number("policy_threshold", m.policy_threshold, interval(0, 1, "(]"));
  m.cf_train = s.number("cf_train", m.cf_train, above(0));
  m.cf_eval = s.number("cf_eval", m.cf_eval, above(0));
  m.min_capacity = s.integer("min_capacity", m.min_capacity, 1);
  m.group_size = s.integer("group_size", m.group_size, 0);
  m.capacity = named<CapacityRule>(s, "capacity", m.capacity);
  m.dropless = s.boolean("dropless", m.dropless);
  m.batch_prioritized = s.boolean("batch_prioritized", m.batch_prioritized);
  m.router_dtype = s.choice("router_dtype", m.router_dtype, kRouterDtypes);
  m.jitter = s.number("jitter", m.jitter, interval(0, 1, "[)"));
  m.balance = named<BalanceLoss>(s, "balance", m.balance);
  m.balance_coef = s.number("balance_coef", m.balance_coef, at_least(0));
  m.z_rule = named<ZLossRule>(s, "z_rule", m.z_rule);
  m.z_coef = s.number("z_coef", m.z_coef, at_least(0));
  m.mesh_tf_loss_coef = s.number("mesh_tf_loss_coef", m.mesh_tf_loss_coef, at_least(0));
  m.expert_ffn = named<FfnKind>(s, "expert_ffn", m.expert_ffn);
  m.d_ff = s.integer("d_ff", m.d_ff, 1);
  m.expert_dropout = s.number("expert_dropout", m.expert_dropout, interval(0, 1, "[)"));
  m.expert_bias = s.boolean("expert_bias", m.expert_bias);
  m.renormalize_gates = s.boolean("renormalize_gates", m.renormalize_gates);
  m.hash = named<HashKind>(s, "hash", m.hash);
  return m;
}

// The dotted key of the table that set `key` for a stack: "moe.decoder.k" if the stack's table
// has it, else "moe.k".
std::string moe_key(const TomlDocument& doc, const char* stack, std::string_view key) {
  const std::string own = fmt::format("moe.{}.{}", stack, key);
  return toml::at_path(doc.root, own) ? own : fmt::format("moe.{}", key);
}

// Checks that involve several keys of one stack's MoE settings.
void check_moe(const TomlDocument& doc, const MoeConfig& m, const char* stack, bool decoder) {
  auto key = [&](std::string_view k) { return moe_key(doc, stack, k); };
  const bool has_k = m.router == RouterKind::top_k || m.router == RouterKind::noisy_top_k;
  if (has_k && m.k > m.experts)
    doc.fail(key("k"),
            fmt::format("{} = {} in the {}: more experts per token than experts ({} = {}); allowed: 1..{}", key("k"), m.k,
                        stack, key("experts"), m.experts, m.experts));
  if (m.batch_prioritized && !has_k)
    doc.fail(key("batch_prioritized"),
            fmt::format("{} = true with {} = \"{}\" in the {}: batch-prioritized routing orders top-k choices; "
                        "allowed with router top_k or noisy_top_k",
                        key("batch_prioritized"), key("router"), enum_name(m.router), stack));
  if (decoder && m.batch_prioritized)
    doc.fail(key("batch_prioritized"),
            fmt::format("{} = true applies to the decoder's MoE layers: batch-prioritized routing sorts a group by "
                        "router probability and so leaks future tokens in a decoder; allowed in the encoder only "
                        "(set it under [moe.encoder] of an encoder_decoder model)",
                        key("batch_prioritized")));
  // Anything else the router library refuses (its message names the MoeConfig field = the key).
  try {
    check_moe_config(m);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: MoE settings of the {} ([moe], [moe.{}]): {}", doc.file, stack, stack, e.what()));
  }
}

// "a.b.c=value" applied to the document. The value is parsed as TOML; a bare word (not valid
// TOML) is taken as a string, so --set moe.router=hash works without quotes.
void apply_override(TomlDocument& doc, const std::string& arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError(fmt::format("{} (--set {}): expected section.key=value (e.g. moe.cf_train=2.0)", doc.file, arg));
  const std::string dotted = arg.substr(0, eq);
  const std::string text = arg.substr(eq + 1);
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = dotted.find('.', start);
    parts.push_back(dotted.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (parts.size() < 2)
    throw InputError(fmt::format("{} (--set {}): the key must name its section (e.g. model.d_model, moe.k)", doc.file, arg));
  for (const std::string& p : parts)
    if (p.empty()) throw InputError(fmt::format("{} (--set {}): empty part in key '{}'", doc.file, arg, dotted));

  toml::table value_doc;
  try {
    value_doc = toml::parse(std::string_view("v = " + text), std::string_view("--set " + arg));
  } catch (const toml::parse_error&) {
    value_doc.insert_or_assign("v", text);
  }
  toml::table* t = &doc.root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* n = t->get(parts[i]);
    if (!n) n = &t->insert_or_assign(parts[i], toml::table{}).first->second;
    if (!n->is_table())
      throw InputError(fmt::format("{} (--set {}): '{}' is a value, not a section", doc.file, arg, parts[i]));
    t = n->as_table();
  }
  t->insert_or_assign(parts.back(), *value_doc.get("v"));
  doc.overridden[dotted] = arg;
}

int64_t matched_relu_d_ff(int64_t geglu_d_ff) { return std::llround(1.5 * static_cast<double>(geglu_d_ff)); }

}  // namespace

std::string_view architecture_name(Architecture a) { return name_of(kArchitectures, a); }
std::string_view optimizer_name(OptimizerKind k) { return name_of(kOptimizers, k); }
std::string_view schedule_name(LrSchedule s) { return name_of(kSchedules, s); }

ModelConfig parse_model_config(std::string_view text, std::string_view source_name,
                               const std::vector<std::string>& overrides) {
  TomlDocument doc = TomlDocument::parse(text, std::string(source_name));
  for (const std::string& o : overrides) apply_override(doc, o);

  ModelConfig c;
  c.source = doc.file;
  TomlSection top(doc, &doc.root, "");
  const toml::table* model_t = top.table("model");
  const toml::table* moe_t = top.table("moe");
  const toml::table* train_t = top.table("train");
  top.finish();

  // ---- [model] ----
  TomlSection model(doc, model_t, "model");
  c.name = model.string("name", std::filesystem::path(doc.file).stem().string());
  c.architecture = model.choice("architecture", c.architecture, kArchitectures);
  const bool enc_dec = c.has_encoder();
  c.vocab = model.integer("vocab", c.vocab, 2);
  c.d_model = model.integer("d_model", c.d_model, 1);
  const int64_t d_ff_given = model.integer("d_ff", c.d_ff, 1);
  c.heads = model.integer("heads", c.heads, 1);
  if (model.has("d_kv")) {
    c.d_kv = model.integer("d_kv", c.d_kv, 1);
  } else {
    if (c.d_model % c.heads != 0)
      doc.fail("model.heads",
              fmt::format("model.heads = {} does not divide model.d_model = {} and model.d_kv is not set; allowed: a "
                          "divisor of d_model, or set d_kv explicitly",
                          c.heads, c.d_model));
    c.d_kv = c.d_model / c.heads;
  }
  const bool has_enc_layers = model.has("encoder_layers");
  const bool has_dec_layers = model.has("decoder_layers");
  const bool has_layers = model.has("layers");
  if (enc_dec) {
    if (has_layers)
      model.fail("layers", "an encoder_decoder model has encoder_layers and decoder_layers; allowed keys: "
                           "encoder_layers, decoder_layers");
    c.encoder_layers = model.integer("encoder_layers", c.encoder_layers, 1);
    c.decoder_layers = model.integer("decoder_layers", c.decoder_layers, 1);
  } else {
    if (has_enc_layers) model.fail("encoder_layers", "a decoder_only model has no encoder; use model.layers");
    if (has_dec_layers) model.fail("decoder_layers", "a decoder_only model has one stack; use model.layers");
    c.encoder_layers = 0;
    c.decoder_layers = model.integer("layers", c.decoder_layers, 1);
  }
  c.ffn = named<FfnKind>(model, "ffn", c.ffn);
  c.relu_matches_geglu_flops = model.boolean("relu_matches_geglu_flops", c.relu_matches_geglu_flops);
  c.norm_scale = model.boolean("norm_scale", c.norm_scale);
  c.norm_eps = model.number("norm_eps", c.norm_eps, above(0));
  c.position_bias = model.boolean("position_bias", c.position_bias);
  c.position_buckets = model.integer("position_buckets", c.position_buckets, 4);
  if (c.position_buckets % 2 != 0)
    model.fail("position_buckets", "allowed: an even number >= 4 (the encoder splits the buckets between the two "
                                   "directions)");
  c.position_max_distance = model.integer("position_max_distance", c.position_max_distance, c.position_buckets);
  c.tied_embeddings = model.boolean("tied_embeddings", c.tied_embeddings);
  c.dropout = model.number("dropout", c.dropout, interval(0, 1, "[)"));
  c.init_scale = model.number("init_scale", c.init_scale, above(0));
  model.finish();
  c.d_ff = (c.ffn == FfnKind::relu && c.relu_matches_geglu_flops) ? matched_relu_d_ff(d_ff_given) : d_ff_given;

  // ---- [moe] ----
  TomlSection moe(doc, moe_t, "moe");
  if (moe_t) {
    c.moe_every = moe.integer("every", 1, 1);
    c.moe_extra_dense_ffn = moe.boolean("extra_dense_ffn", c.moe_extra_dense_ffn);
    MoeConfig base;
    base.expert_ffn = c.ffn;
    base.d_ff = d_ff_given;
    base = read_moe(moe, base);
    const toml::table* enc_t = moe.table("encoder");
    const toml::table* dec_t = moe.table("decoder");
    moe.finish();
    if (!enc_dec && enc_t)
      doc.fail("moe.encoder",
              "[moe.encoder] in a decoder_only model, which has no encoder; allowed: [moe], [moe.decoder]");
    TomlSection enc(doc, enc_t, "moe.encoder");
    TomlSection dec(doc, dec_t, "moe.decoder");
    c.moe_encoder = read_moe(enc, base);
    c.moe_decoder = read_moe(dec, base);
    enc.finish();
    dec.finish();
    const int64_t deepest = std::max(c.encoder_layers, c.decoder_layers);
    if (c.moe_every > deepest)
      doc.fail("moe.every",
              fmt::format("moe.every = {} makes no layer sparse (the deepest stack has {} layers); allowed: 1..{}",
                          c.moe_every, deepest, deepest));
    if (enc_dec) check_moe(doc, c.moe_encoder, "encoder", false);
    check_moe(doc, c.moe_decoder, "decoder", true);
    for (MoeConfig* m : {&c.moe_encoder, &c.moe_decoder})
      if (m->expert_ffn == FfnKind::relu && c.relu_matches_geglu_flops) m->d_ff = matched_relu_d_ff(m->d_ff);
    if (!enc_dec) c.moe_encoder = MoeConfig{};
  }
  const bool any_relu = c.ffn == FfnKind::relu ||
                        (c.is_moe() && (c.moe_decoder.expert_ffn == FfnKind::relu ||
                                        (enc_dec && c.moe_encoder.expert_ffn == FfnKind::relu)));
  if (c.relu_matches_geglu_flops && !any_relu)
    doc.fail("model.relu_matches_geglu_flops",
            "model.relu_matches_geglu_flops = true but no FFN is relu (model.ffn and moe.expert_ffn are geglu); "
            "allowed: true only with a relu FFN");

  // ---- [train] ----
  TomlSection train(doc, train_t, "train");
  c.batch = train.integer("batch", c.batch, 1);
  if (enc_dec) {
    if (train.has("length"))
      train.fail("length", "an encoder_decoder model has input_length and target_length; allowed keys: "
                           "input_length, target_length");
    c.input_length = train.integer("input_length", c.input_length, 1);
    c.target_length = train.integer("target_length", c.target_length, 1);
  } else {
    if (train.has("input_length")) train.fail("input_length", "a decoder_only model has one sequence; use train.length");
    if (train.has("target_length")) train.fail("target_length", "a decoder_only model has one sequence; use train.length");
    c.input_length = 0;
    c.target_length = train.integer("length", 256, 1);
  }
  c.seed = static_cast<uint64_t>(train.integer("seed", 0, 0));
  c.precision = train.choice("precision", c.precision, kRouterDtypes);
  OptimizerConfig& o = c.optimizer;
  o.kind = train.choice("optimizer", o.kind, kOptimizers);
  o.schedule = train.choice("schedule", o.schedule, kSchedules);
  o.learning_rate = train.number("learning_rate", o.learning_rate, above(0));
  o.warmup_steps = train.integer("warmup_steps", o.warmup_steps, 0);
  o.decay_steps = train.integer("decay_steps", o.decay_steps, 0);
  o.min_learning_rate = train.number("min_learning_rate", o.min_learning_rate, at_least(0));
  o.grad_clip = train.number("grad_clip", o.grad_clip, at_least(0, "0: no clipping"));
  o.clip_threshold = train.number("clip_threshold", o.clip_threshold, at_least(0, "0: no update clipping"));
  o.decay_exponent = train.number("decay_exponent", o.decay_exponent, above(0));
  o.parameter_scale = train.boolean("parameter_scale", o.parameter_scale);
  o.factored = train.boolean("factored", o.factored);
  o.epsilon1 = train.number("epsilon1", o.epsilon1, at_least(0));
  o.epsilon2 = train.number("epsilon2", o.epsilon2, at_least(0));
  o.beta1 = train.number("beta1", o.beta1, interval(0, 1, "[)"));
  o.beta2 = train.number("beta2", o.beta2, interval(0, 1, "[)"));
  o.epsilon = train.number("epsilon", o.epsilon, above(0));
  o.weight_decay = train.number("weight_decay", o.weight_decay, at_least(0));
  c.divergence_factor = train.number("divergence_factor", c.divergence_factor,
                                     [](double v) { return v == 0 || v > 1; }, "0 (off) or > 1");
  c.eval_batches = train.integer("eval_batches", c.eval_batches, 0);
  c.trainable = train.string("trainable", c.trainable);
  try {
    parameter_is_trainable(c.trainable, "");
  } catch (const InputError& e) {
    train.fail("trainable", e.what());
  }
  c.reset_optimizer = train.boolean("reset_optimizer", c.reset_optimizer);
  c.step_offset = train.integer("step_offset", c.step_offset, 0);
  if (o.schedule != LrSchedule::cosine && train.has("decay_steps"))
    train.fail("decay_steps", fmt::format("applies to schedule \"cosine\" only (schedule is \"{}\")", schedule_name(o.schedule)));
  train.finish();
  return c;
}

bool parameter_is_trainable(const std::string& trainable, const std::string& name) {
  auto has = [&](std::string_view part) { return name.find(part) != std::string::npos; };
  const bool moe = has("/moe/");
  if (trainable == "all") return true;
  if (trainable == "moe") return moe;
  if (trainable == "non_moe") return !moe;
  if (trainable == "attention") return has("/attention/") || has("/cross_attention/") || has("relative_position_bias/");
  if (trainable == "ffn") return has("/ffn/") || has("/extra_ffn/");
  std::regex re;
  try {
    re = std::regex(trainable, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    std::string presets;
    for (const char* p : kTrainablePresets) presets += fmt::format("{}{}", presets.empty() ? "" : ", ", p);
    throw InputError(fmt::format("not a preset and not a valid regular expression ({}); allowed: {} or an ECMAScript "
                                 "regex over parameter names",
                                 e.what(), presets));
  }
  return std::regex_search(name, re);
}

ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_model_config(read_file(path), path, overrides);
}

nlohmann::ordered_json to_json(const ModelConfig& c) {
  using J = nlohmann::ordered_json;
  J model = {{"name", c.name},
             {"architecture", architecture_name(c.architecture)},
             {"vocab", c.vocab},
             {"d_model", c.d_model},
             {"d_ff", c.d_ff},
             {"heads", c.heads},
             {"d_kv", c.d_kv}};
  if (c.has_encoder()) {
    model["encoder_layers"] = c.encoder_layers;
    model["decoder_layers"] = c.decoder_layers;
  } else {
    model["layers"] = c.decoder_layers;
  }
  model["ffn"] = enum_name(c.ffn);
  model["relu_matches_geglu_flops"] = c.relu_matches_geglu_flops;
  model["norm_scale"] = c.norm_scale;
  model["norm_eps"] = c.norm_eps;
  model["position_bias"] = c.position_bias;
  model["position_buckets"] = c.position_buckets;
  model["position_max_distance"] = c.position_max_distance;
  model["tied_embeddings"] = c.tied_embeddings;
  model["dropout"] = c.dropout;
  model["init_scale"] = c.init_scale;

  auto moe_json = [](const MoeConfig& m) {
    return J{{"experts", m.experts},
             {"k", m.k},
             {"router", enum_name(m.router)},
             {"policy_train", enum_name(m.policy_train)},
             {"policy_eval", enum_name(m.policy_eval)},
             {"policy_threshold", m.policy_threshold},
             {"cf_train", m.cf_train},
             {"cf_eval", m.cf_eval},
             {"min_capacity", m.min_capacity},
             {"group_size", m.group_size},
             {"capacity", enum_name(m.capacity)},
             {"dropless", m.dropless},
             {"batch_prioritized", m.batch_prioritized},
             {"router_dtype", dtype_name(m.router_dtype)},
             {"jitter", m.jitter},
             {"balance", enum_name(m.balance)},
             {"balance_coef", m.balance_coef},
             {"z_rule", enum_name(m.z_rule)},
             {"z_coef", m.z_coef},
             {"mesh_tf_loss_coef", m.mesh_tf_loss_coef},
             {"expert_ffn", enum_name(m.expert_ffn)},
             {"d_ff", m.d_ff},
             {"expert_dropout", m.expert_dropout},
             {"expert_bias", m.expert_bias},
             {"renormalize_gates", m.renormalize_gates},
             {"hash", enum_name(m.hash)}};
  };
  J out = {{"model", model}};
  if (c.is_moe()) {
    J moe = {{"every", c.moe_every}, {"extra_dense_ffn", c.moe_extra_dense_ffn}};
    if (c.has_encoder()) moe["encoder"] = moe_json(c.moe_encoder);
    moe["decoder"] = moe_json(c.moe_decoder);
    out["moe"] = moe;
  }
  J train = {{"batch", c.batch}};
  if (c.has_encoder()) {
    train["input_length"] = c.input_length;
    train["target_length"] = c.target_length;
  } else {
    train["length"] = c.target_length;
  }
  train["seed"] = c.seed;
  train["precision"] = dtype_name(c.precision);
  const OptimizerConfig& o = c.optimizer;
  train["optimizer"] = optimizer_name(o.kind);
  train["schedule"] = schedule_name(o.schedule);
  train["learning_rate"] = o.learning_rate;
  train["warmup_steps"] = o.warmup_steps;
  if (o.schedule == LrSchedule::cosine) {
    train["decay_steps"] = o.decay_steps;
    train["min_learning_rate"] = o.min_learning_rate;
  }
  train["grad_clip"] = o.grad_clip;
  if (o.kind == OptimizerKind::adafactor) {
    train["clip_threshold"] = o.clip_threshold;
    train["decay_exponent"] = o.decay_exponent;
    train["parameter_scale"] = o.parameter_scale;
    train["factored"] = o.factored;
    train["epsilon1"] = o.epsilon1;
    train["epsilon2"] = o.epsilon2;
  } else {
    train["beta1"] = o.beta1;
    train["beta2"] = o.beta2;
    train["epsilon"] = o.epsilon;
    train["weight_decay"] = o.weight_decay;
  }
  train["divergence_factor"] = c.divergence_factor;
  train["eval_batches"] = c.eval_batches;
  // Fine-tuning keys only when set, so the configs (and checkpoints) of other runs read as before.
  if (c.trainable != "all") train["trainable"] = c.trainable;
  if (c.reset_optimizer) train["reset_optimizer"] = true;
  if (c.step_offset != 0) train["step_offset"] = c.step_offset;
  out["train"] = train;
  return out;
}

}  // namespace sy
