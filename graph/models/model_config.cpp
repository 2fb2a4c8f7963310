#include "graph/models/model_config.hpp"

#include "graph/checked_math.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/toml_schema.hpp"
#include "graph/utf8.hpp"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

namespace sy {
namespace {

// Upper bounds on the sizes a config may give (the messages state them). They sit far above every
// real model (vocabularies ≤ 256k, widths ≤ 65536, ≤ 128 layers; switch_c and st_moe_32b are in
// experiments/configs) and keep every dimension inside the int32 range oneDNN handles: sizes of
// 2^32 reached oneDNN and ended in SIGFPE, and a vocabulary of billions ran for ever. Products of
// sizes within these bounds can still pass 2^63 (batch · length · vocab = 2^64): those are checked
// (check_size_products, graph/checked_math.hpp), and a model that fits in int64 but not in the
// machine's memory is refused by the executor before it allocates (executor/memory_limit.hpp).
constexpr int64_t kMaxVocab = int64_t{1} << 24;   // token ids are int32
constexpr int64_t kMaxWidth = int64_t{1} << 18;   // d_model, d_ff, d_kv
constexpr int64_t kMaxHeads = int64_t{1} << 12;
constexpr int64_t kMaxLayers = int64_t{1} << 10;
constexpr int64_t kMaxBatch = int64_t{1} << 20;   // sequences
constexpr int64_t kMaxLength = int64_t{1} << 20;  // tokens per sequence

// The config JSON of a fields() list (graph/fields.hpp): enums by their spellings, the rest as
// they are; a field whose `shown` is false is left out.
struct JsonFieldWriter {
  nlohmann::ordered_json& out;

  template <typename T, typename A = Any>
  void operator()(std::string_view key, const T& m, const A& /*allowed*/ = A{}, bool shown = true) const {
    if (!shown) return;
    if constexpr (std::is_same_v<T, DType>) {
      out[std::string(key)] = dtype_name(m);
    } else if constexpr (std::is_enum_v<T>) {
      out[std::string(key)] = enum_name(m);
    } else {
      out[std::string(key)] = m;
    }
  }
};

template <typename S>
void write_fields(nlohmann::ordered_json& out, const S& s) {
  for_each_field(s, JsonFieldWriter{out});
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
  // A TOML file is checked for UTF-8 by its parser; an argument taken as a bare string is not, and
  // the value and the argument go into JSON run records (to_json, checkpoints), which need UTF-8.
  // The message shows the argument with bytes outside printable ASCII as \xNN (it may be recorded).
  if (const size_t bad = invalid_utf8(arg); bad != std::string::npos) {
    std::string shown;
    for (const char ch : arg) {
      const auto c = static_cast<unsigned char>(ch);
      if (c >= 0x20 && c < 0x7f) shown += ch;
      else shown += fmt::format("\\x{:02x}", c);
    }
    throw InputError(fmt::format("{} (--set {}): byte {} (0x{:02x}) is not valid UTF-8; allowed: UTF-8 text", doc.file,
                                 shown, bad + 1, static_cast<unsigned char>(arg[bad])));
  }
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

// The largest counts a config gives, each within its bounds but not their product: the
// attention scores, logits and weights of a step, named by the keys that give them. Any other
// tensor is checked when the graph is built (num_elements, graph/shape.hpp), by its dims.
void check_size_products(const TomlDocument& doc, const RunConfig& run) {
  const ModelConfig& c = run.model;
  const TrainConfig& t = run.train;
  const bool enc_dec = c.has_encoder();
  const std::string_view target = enc_dec ? "train.target_length" : "train.length";
  try {
    checked_product("the decoder's attention scores per step",
                    {{"train.batch", t.batch}, {"model.heads", c.heads}, {target, t.target_length}, {target, t.target_length}});
    checked_product("the logits per step", {{"train.batch", t.batch}, {target, t.target_length}, {"model.vocab", c.vocab}});
    if (enc_dec) {
      checked_product("the encoder's attention scores per step", {{"train.batch", t.batch},
                                                                   {"model.heads", c.heads},
                                                                   {"train.input_length", t.input_length},
                                                                   {"train.input_length", t.input_length}});
      checked_product("the cross-attention scores per step", {{"train.batch", t.batch},
                                                              {"model.heads", c.heads},
                                                              {"train.target_length", t.target_length},
                                                              {"train.input_length", t.input_length}});
    }
    const std::string_view layers_key = enc_dec ? "model.encoder_layers + model.decoder_layers" : "model.layers";
    const int64_t layers = checked_add(c.encoder_layers, c.decoder_layers, layers_key);
    checked_product("the dense FFN weights (3 matrices per GEGLU FFN)",
                    {{"model.d_model", c.d_model}, {"model.d_ff", c.d_ff}, {layers_key, layers}, {"matrices", 3}});
    checked_product("the attention weights (q, k, v, o)", {{"model.d_model", c.d_model},
                                                           {"model.heads", c.heads},
                                                           {"model.d_kv", c.d_kv},
                                                           {layers_key, layers},
                                                           {"matrices", 4}});
    if (c.is_moe())
      for (const MoeConfig* m : {&c.moe_encoder, &c.moe_decoder})
        checked_product("the expert weights (3 matrices per GEGLU expert)", {{"moe.experts", m->experts},
                                                                             {"model.d_model", c.d_model},
                                                                             {"moe.d_ff", m->d_ff},
                                                                             {layers_key, layers},
                                                                             {"matrices", 3}});
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", doc.file, e.what()));
  }
}

}  // namespace

std::string_view architecture_name(Architecture a) { return enum_name(a); }

RunConfig parse_run_config(std::string_view text, std::string_view source_name,
                           const std::vector<std::string>& overrides) {
  TomlDocument doc = TomlDocument::parse(text, std::string(source_name));
  // The file itself must describe a model: an empty file (or one holding only comments, or only
  // [train]) would otherwise run the defaults below without a word. The keys of [model] all have
  // defaults; the table is what says "this is a model". Checked before --set, which cannot add it.
  if (!doc.root.contains("model"))
    throw InputError(fmt::format("{}: missing table [model] (required: a model config describes its model there; "
                                 "{}; each key of [model] has a default, graph/models/model_config.hpp)",
                                 doc.file, doc.root.empty() ? "the file holds no key at all" : "the file has no [model]"));
  for (const std::string& o : overrides) apply_override(doc, o);

  RunConfig run;
  ModelConfig& c = run.model;
  TrainConfig& t = run.train;
  c.source = doc.file;
  TomlSection top(doc, &doc.root, "");
  const toml::table* model_t = top.table("model");
  const toml::table* moe_t = top.table("moe");
  const toml::table* train_t = top.table("train");
  top.finish();

  // ---- [model] ----
  TomlSection model(doc, model_t, "model");
  c.name = model.string("name", std::filesystem::path(doc.file).stem().string());
  c.architecture = model.choice("architecture", c.architecture, EnumNames<Architecture>::names);
  const bool enc_dec = c.has_encoder();
  c.vocab = model.integer("vocab", c.vocab, 2, kMaxVocab);
  c.d_model = model.integer("d_model", c.d_model, 1, kMaxWidth);
  const int64_t d_ff_given = model.integer("d_ff", c.d_ff, 1, kMaxWidth);
  c.heads = model.integer("heads", c.heads, 1, kMaxHeads);
  if (model.has("d_kv")) {
    c.d_kv = model.integer("d_kv", c.d_kv, 1, kMaxWidth);
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
    c.encoder_layers = model.integer("encoder_layers", c.encoder_layers, 1, kMaxLayers);
    c.decoder_layers = model.integer("decoder_layers", c.decoder_layers, 1, kMaxLayers);
  } else {
    if (has_enc_layers) model.fail("encoder_layers", "a decoder_only model has no encoder; use model.layers");
    if (has_dec_layers) model.fail("decoder_layers", "a decoder_only model has one stack; use model.layers");
    c.encoder_layers = 0;
    c.decoder_layers = model.integer("layers", c.decoder_layers, 1, kMaxLayers);
  }
  c.ffn = model.choice("ffn", c.ffn, EnumNames<FfnKind>::names);
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
    c.moe_first_dense = moe.integer("first_dense", 0, 0);
    c.moe_extra_dense_ffn = moe.boolean("extra_dense_ffn", c.moe_extra_dense_ffn);
    MoeConfig base;
    base.expert_ffn = c.ffn;
    base.d_ff = d_ff_given;
    read_fields(moe, base);
    const toml::table* enc_t = moe.table("encoder");
    const toml::table* dec_t = moe.table("decoder");
    moe.finish();
    if (!enc_dec && enc_t)
      doc.fail("moe.encoder",
              "[moe.encoder] in a decoder_only model, which has no encoder; allowed: [moe], [moe.decoder]");
    TomlSection enc(doc, enc_t, "moe.encoder");
    TomlSection dec(doc, dec_t, "moe.decoder");
    c.moe_encoder = base;
    c.moe_decoder = base;
    read_fields(enc, c.moe_encoder);
    read_fields(dec, c.moe_decoder);
    enc.finish();
    dec.finish();
    const int64_t deepest = std::max(c.encoder_layers, c.decoder_layers);
    if (c.moe_every > deepest)
      doc.fail("moe.every",
              fmt::format("moe.every = {} makes no layer sparse (the deepest stack has {} layers); allowed: 1..{}",
                          c.moe_every, deepest, deepest));
    bool any_sparse = false;
    for (int64_t i = 0; i < deepest; ++i) any_sparse = any_sparse || c.is_sparse_layer(i);
    if (!any_sparse)
      doc.fail("moe.first_dense",
              fmt::format("moe.first_dense = {} with moe.every = {} makes no layer sparse (the deepest stack has {} layers); "
                          "allowed: fewer dense layers than that", c.moe_first_dense, c.moe_every, deepest));
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
  // The batch shape by hand (see TrainConfig): the length keys depend on the architecture.
  t.batch = train.integer("batch", t.batch, 1, kMaxBatch);
  if (enc_dec) {
    if (train.has("length"))
      train.fail("length", "an encoder_decoder model has input_length and target_length; allowed keys: "
                           "input_length, target_length");
    t.input_length = train.integer("input_length", t.input_length, 1, kMaxLength);
    t.target_length = train.integer("target_length", t.target_length, 1, kMaxLength);
  } else {
    if (train.has("input_length")) train.fail("input_length", "a decoder_only model has one sequence; use train.length");
    if (train.has("target_length")) train.fail("target_length", "a decoder_only model has one sequence; use train.length");
    t.input_length = 0;
    t.target_length = train.integer("length", 256, 1, kMaxLength);
  }
  read_fields(train, t);
  if (t.activation_dtype == DType::bf16 && t.precision != DType::bf16)
    train.fail("activation_dtype", fmt::format("activation_dtype = \"bf16\" needs precision = \"bf16\" (precision is "
                                               "\"{}\"); allowed: \"f32\", or \"bf16\" with precision = \"bf16\"",
                                               dtype_name(t.precision)));
  if (t.optimizer.schedule != LrSchedule::cosine && train.has("decay_steps"))
    train.fail("decay_steps",
               fmt::format("applies to schedule \"cosine\" only (schedule is \"{}\")", schedule_name(t.optimizer.schedule)));
  train.finish();
  check_size_products(doc, run);
  return run;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_run_config(read_file(path), path, overrides);
}

nlohmann::ordered_json to_json(const RunConfig& run) {
  using J = nlohmann::ordered_json;
  const ModelConfig& c = run.model;
  const TrainConfig& t = run.train;
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
    J j = J::object();
    write_fields(j, m);
    return j;
  };
  J out = {{"model", model}};
  if (c.is_moe()) {
    J moe = {{"every", c.moe_every}, {"first_dense", c.moe_first_dense}, {"extra_dense_ffn", c.moe_extra_dense_ffn}};
    if (c.has_encoder()) moe["encoder"] = moe_json(c.moe_encoder);
    moe["decoder"] = moe_json(c.moe_decoder);
    out["moe"] = moe;
  }
  J train = {{"batch", t.batch}};
  if (c.has_encoder()) {
    train["input_length"] = t.input_length;
    train["target_length"] = t.target_length;
  } else {
    train["length"] = t.target_length;
  }
  write_fields(train, t);
  out["train"] = train;
  return out;
}

}  // namespace sy
