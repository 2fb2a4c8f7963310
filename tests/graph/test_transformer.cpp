// The model builders: graph structure (scopes, parameters, inputs, outputs), relative position
// buckets, causal masking, dropout per mode, the initialiser table, and a forward + backward run
// of the tiny model through the reference interpreter.
#include "graph/models/transformer.hpp"

#include "graph/autodiff.hpp"
#include "graph/error.hpp"
#include "graph/verify.hpp"
#include "ops/interpret.hpp"
#include "tests/graph/mlp_graph.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>

using namespace sy;
namespace fs = std::filesystem;

namespace {

RunConfig model(const std::string& name, const std::vector<std::string>& overrides = {}) {
  return load_run_config((test::source_root() / "experiments" / "configs" / "models" / (name + ".toml")).string(),
                         overrides);
}

ModelGraph build(const RunConfig& c, const BuildOptions& opts = {}) { return build_model(c.model, c.train, opts); }

bool has_param(const Graph& g, const std::string& name) {
  auto v = g.find_leaf(name);
  return v && g.value(*v).role == ValueRole::parameter;
}

bool has_scope(const Graph& g, const std::string& prefix) {
  for (const Node& n : g.nodes)
    if (n.scope.rfind(prefix, 0) == 0) return true;
  return false;
}

int count_kind(const Graph& g, OpKind k) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.kind == k;
  return n;
}

const ParamInit& init_of(const ModelGraph& m, const std::string& name) {
  const ValueId v = m.graph.find_leaf(name).value();
  for (const ParamInit& p : m.init)
    if (p.param == v) return p;
  FAIL("no initialiser for " << name);
  return m.init.front();
}

// Leaves for a run: tokens uniform in [0, vocab), step 1, parameters from their initialisers.
std::map<ValueId, Tensor> leaves_for(const ModelGraph& m, int64_t vocab, uint64_t seed) {
  std::map<ValueId, Tensor> leaves;
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  for (ValueId id : {m.encoder_input_tokens, m.decoder_input_tokens, m.decoder_target_tokens}) {
    if (!id.valid()) continue;
    Tensor t(m.graph.type(id));
    for (double& x : t.data) x = static_cast<double>(token(gen));
    leaves[id] = t;
  }
  leaves[m.step] = Tensor(m.graph.type(m.step), 1.0);
  for (const ParamInit& p : m.init) leaves[p.param] = initial_value(p, m.graph.type(p.param), seed);
  return leaves;
}

// The output value of the first node of `kind` whose scope is exactly `scope`.
ValueId output_of(const Graph& g, OpKind kind, const std::string& scope, size_t input_index = SIZE_MAX) {
  for (const Node& n : g.nodes)
    if (n.kind == kind && n.scope == scope && !n.backward)
      return input_index == SIZE_MAX ? n.outputs[0] : n.inputs[input_index];
  FAIL("no " << op_name(kind) << " node in scope " << scope);
  return ValueId{};
}

}  // namespace

TEST_CASE("transformer: T5 relative position buckets match T5's function", "[transformer]") {
  // Values from T5's _relative_position_bucket (mesh_tensorflow/transformer/attention.py) with
  // 32 buckets and max distance 128, at (query i, memory j).
  struct Case {
    int64_t i, j, bidirectional, causal;
  };
  const Case cases[] = {{0, 0, 0, 0},    {0, 1, 17, 0},  {1, 0, 1, 1},     {0, 7, 23, 0},    {8, 0, 8, 8},
                        {16, 0, 10, 16}, {0, 16, 26, 0}, {20, 0, 10, 17},  {45, 0, 12, 23},  {127, 0, 15, 31},
                        {128, 0, 15, 31}, {300, 0, 15, 31}, {0, 300, 31, 0}, {5, 3, 2, 2},    {3, 5, 18, 0}};
  for (const Case& c : cases) {
    INFO("i=" << c.i << " j=" << c.j);
    CHECK(relative_position_bucket(c.i, c.j, true, 32, 128) == c.bidirectional);
    CHECK(relative_position_bucket(c.i, c.j, false, 32, 128) == c.causal);
  }
}

TEST_CASE("transformer: tiny encoder-decoder has the T5 structure, scopes and named leaves", "[transformer]") {
  const RunConfig c = model("tiny");
  const ModelGraph m = build(c);
  const Graph& g = m.graph;
  verify(g);

  // Inputs
  CHECK(g.type(m.step) == TensorType{{}, DType::i32});
  CHECK(g.type(m.encoder_input_tokens) == TensorType{{{"batch", 2}, {"length", 8}}, DType::i32});
  CHECK(g.type(m.decoder_input_tokens) == TensorType{{{"batch", 2}, {"length", 6}}, DType::i32});
  CHECK(g.type(m.decoder_target_tokens) == TensorType{{{"batch", 2}, {"length", 6}}, DType::i32});
  CHECK(g.inputs().size() == 4);

  // Outputs: loss and metrics
  REQUIRE(g.loss.valid());
  for (const char* name : {"loss", "cross_entropy", "accuracy", "aux_loss", "z_loss"}) {
    INFO(name);
    CHECK(g.find_output(name));
  }
  CHECK(g.find_output("encoder/layer_01/moe/metrics/fraction_dropped"));
  CHECK(g.find_output("decoder/layer_01/moe/metrics/expert_load"));

  // Parameters: Mesh-TF shapes
  CHECK(g.type(*g.find_leaf("embedding/table")).shape == Shape{{"vocab", 64}, {"d_model", 16}});
  CHECK(g.type(*g.find_leaf("encoder/layer_00/attention/wq")).shape ==
        Shape{{"d_model", 16}, {"heads", 2}, {"d_kv", 8}});
  CHECK(g.type(*g.find_leaf("encoder/layer_00/attention/wo")).shape ==
        Shape{{"heads", 2}, {"d_kv", 8}, {"d_model", 16}});
  CHECK(g.type(*g.find_leaf("encoder/layer_00/ffn/wi_0")).shape == Shape{{"d_model", 16}, {"d_ff", 32}});
  CHECK(g.type(*g.find_leaf("encoder/relative_position_bias/table")).shape == Shape{{"buckets", 8}, {"heads", 2}});
  CHECK(has_param(g, "decoder/relative_position_bias/table"));
  CHECK(has_param(g, "decoder/layer_00/cross_attention/wk"));
  CHECK_FALSE(has_param(g, "encoder/layer_00/cross_attention/wk"));
  CHECK(has_param(g, "encoder/layer_00/attention_norm/scale"));
  CHECK(has_param(g, "encoder/final_norm/scale"));
  CHECK(has_param(g, "decoder/final_norm/scale"));
  CHECK_FALSE(has_param(g, "logits/kernel"));  // tied

  // Layer 1 of each stack is sparse (every 2nd) and followed by the extra dense FFN.
  CHECK(has_scope(g, "encoder/layer_01/moe/router"));
  CHECK(has_scope(g, "encoder/layer_01/moe/experts"));
  CHECK(has_scope(g, "decoder/layer_01/moe/experts"));
  CHECK(has_param(g, "encoder/layer_01/extra_ffn/wo"));
  CHECK_FALSE(has_param(g, "encoder/layer_01/ffn/wo"));
  CHECK_FALSE(has_scope(g, "encoder/layer_00/moe"));
  CHECK(has_param(g, "encoder/layer_00/ffn/wo"));
  CHECK_FALSE(has_param(g, "encoder/layer_00/extra_ffn/wo"));
  REQUIRE(m.moe_layers.size() == 2);
  CHECK(m.moe_layers[0].scope == "encoder/layer_01/moe");
  CHECK_FALSE(m.moe_layers[0].decoder);
  CHECK(m.moe_layers[1].scope == "decoder/layer_01/moe");
  CHECK(m.moe_layers[1].decoder);
  CHECK(m.moe_layers[0].group_size == 16);  // one group: the whole batch of 2 x 8 encoder tokens
  CHECK(m.moe_layers[0].capacity == 5);     // floor(16 * 1.25 / 4)

  // Every node has a scope; no dropout at rate 0.
  for (const Node& n : g.nodes) CHECK_FALSE(n.scope.empty());
  CHECK(count_kind(g, OpKind::dropout) == 0);
}

TEST_CASE("transformer: the parameter count of tiny equals the hand count", "[transformer]") {
  const RunConfig c = model("tiny");
  const ModelGraph m = build(c);
  const int64_t D = 16, F = 32, HK = 16, V = 64, E = 4, buckets = 8, H = 2;
  const int64_t attention = 4 * D * HK + D;  // wq, wk, wv, wo + pre-norm scale
  const int64_t ffn = 3 * D * F + D;         // GEGLU + pre-norm
  const int64_t moe = D * E + E * 3 * D * F + D;
  const int64_t layer0 = attention + ffn;
  const int64_t layer1 = attention + moe + ffn;  // sparse + extra dense FFN
  const int64_t encoder = layer0 + layer1 + buckets * H + D;
  const int64_t decoder = encoder + 2 * attention;  // cross-attention in each of the 2 layers
  int64_t params = 0;
  for (ValueId p : m.graph.parameters()) params += num_elements(m.graph.type(p).shape);
  CHECK(params == V * D + encoder + decoder);
}

TEST_CASE("transformer: every shipped config builds and verifies, with one MoE layer per sparse layer",
          "[transformer]") {
  for (const auto& entry : fs::directory_iterator(test::source_root() / "experiments" / "configs" / "models")) {
    if (entry.path().extension() != ".toml") continue;
    INFO(entry.path().string());
    const RunConfig run = load_run_config(entry.path().string());
    const ModelConfig& c = run.model;
    const ModelGraph m = build(run);
    verify(m.graph);
    CHECK(m.init.size() == m.graph.parameters().size());
    // Sparse: layers every, 2·every, ... of each stack after the first first_dense.
    auto sparse_in = [&](int64_t layers) {
      if (!c.is_moe()) return int64_t{0};
      int64_t n = 0;
      for (int64_t i = c.moe_first_dense; i < layers; ++i) n += (i + 1) % c.moe_every == 0 ? 1 : 0;
      return n;
    };
    CHECK(m.moe_layers.size() == static_cast<size_t>(sparse_in(c.encoder_layers) + sparse_in(c.decoder_layers)));
  }
}

TEST_CASE("transformer: moe.first_dense keeps the first layers dense (DeepSeek-V3: 3 dense, then all sparse)",
          "[transformer]") {
  const RunConfig run = load_run_config((test::source_root() / "experiments/configs/models/tiny.toml").string(),
                                        {"moe.every=1", "moe.first_dense=1"});
  const ModelGraph m = build(run);
  std::vector<std::string> scopes;
  for (const MoeLayerInfo& l : m.moe_layers) scopes.push_back(l.scope);
  CHECK(scopes == std::vector<std::string>{"encoder/layer_01/moe", "decoder/layer_01/moe"});
  CHECK(m.graph.find_leaf("encoder/layer_00/ffn/wo").has_value());
  CHECK_THROWS_WITH(load_run_config((test::source_root() / "experiments/configs/models/tiny.toml").string(),
                                    {"moe.every=1", "moe.first_dense=2"}),
                    Catch::Contains("moe.first_dense = 2") && Catch::Contains("makes no layer sparse"));
}

TEST_CASE("transformer: bench_moe is a decoder-only LM with MoE in layers 2 and 4", "[transformer]") {
  const RunConfig c = model("bench_moe");
  const ModelGraph m = build(c);
  const Graph& g = m.graph;
  verify(g);
  CHECK_FALSE(m.encoder_input_tokens.valid());
  CHECK(g.type(m.decoder_input_tokens).shape == Shape{{"batch", 16}, {"length", 256}});
  CHECK_FALSE(has_scope(g, "encoder"));
  CHECK_FALSE(has_scope(g, "decoder/layer_00/cross_attention"));
  CHECK_FALSE(has_scope(g, "decoder/relative_position_bias"));
  CHECK(has_scope(g, "decoder/causal_mask"));
  REQUIRE(m.moe_layers.size() == 2);
  CHECK(m.moe_layers[0].scope == "decoder/layer_01/moe");
  CHECK(m.moe_layers[1].scope == "decoder/layer_03/moe");
  CHECK(m.moe_layers[0].groups == 1);
  CHECK(m.moe_layers[0].group_size == 16 * 256);
  CHECK(m.moe_layers[0].capacity == 1280);  // ceil(2 * 1.25 * 4096 / 8)
  CHECK_FALSE(has_param(g, "logits/kernel"));
  // Tied logits scaled by d_model^-0.5
  bool scaled = false;
  for (const Node& n : g.nodes)
    if (n.scope == "logits" && n.kind == OpKind::scale)
      scaled = std::abs(std::get<ScaleAttrs>(n.attrs).factor - 1.0 / std::sqrt(512.0)) < 1e-15;
  CHECK(scaled);
}

TEST_CASE("transformer: untied embeddings, ReLU FFN and no norm scale", "[transformer]") {
  const RunConfig c = model("tiny", {"model.tied_embeddings=false", "model.ffn=relu", "model.norm_scale=false",
                                       "moe.expert_ffn=relu"});
  const ModelGraph m = build(c);
  const Graph& g = m.graph;
  verify(g);
  CHECK(g.type(*g.find_leaf("logits/kernel")).shape == Shape{{"d_model", 16}, {"vocab", 64}});
  for (const Node& n : g.nodes) CHECK_FALSE((n.scope == "logits" && n.kind == OpKind::scale));
  CHECK(has_param(g, "encoder/layer_00/ffn/wi"));
  CHECK_FALSE(has_param(g, "encoder/layer_00/ffn/wi_0"));
  for (ValueId p : g.parameters()) CHECK(g.value(p).name.find("norm/scale") == std::string::npos);
  CHECK(count_kind(g, OpKind::rms_norm) > 0);
}

TEST_CASE("transformer: dropout in train mode only; the eval graph uses the eval CF", "[transformer]") {
  const RunConfig c = model("tiny", {"model.dropout=0.1"});
  BuildOptions train;
  const ModelGraph t = build(c, train);
  BuildOptions eval;
  eval.mode = Mode::eval;
  const ModelGraph e = build(c, eval);
  verify(t.graph);
  verify(e.graph);
  CHECK(count_kind(t.graph, OpKind::dropout) > 0);
  CHECK(count_kind(e.graph, OpKind::dropout) == 0);
  // Distinct seeds per dropout site
  std::set<uint64_t> seeds;
  int sites = 0;
  for (const Node& n : t.graph.nodes)
    if (n.kind == OpKind::dropout) {
      seeds.insert(std::get<DropoutAttrs>(n.attrs).seed);
      ++sites;
    }
  CHECK(static_cast<int>(seeds.size()) == sites);
  CHECK(t.moe_layers[0].capacity == 5);   // floor(16 * 1.25 / 4)
  CHECK(e.moe_layers[0].capacity == 8);   // floor(16 * 2.0 / 4)
  BuildOptions bigger;
  bigger.batch = 4;
  CHECK(build(c, bigger).graph.type(build(c, bigger).encoder_input_tokens).shape[0].size == 4);
}

TEST_CASE("transformer: the initialiser table follows the Switch rule sigma = sqrt(0.1 / fan_in)", "[transformer]") {
  const RunConfig c = model("tiny");
  const ModelGraph m = build(c);
  REQUIRE(m.init.size() == m.graph.parameters().size());
  auto sigma = [](double fan_in) { return std::sqrt(0.1 / fan_in); };
  CHECK(init_of(m, "encoder/layer_00/attention/wq").stddev == Approx(sigma(16)));
  CHECK(init_of(m, "encoder/layer_00/attention/wq").fan_in == 16);
  CHECK(init_of(m, "encoder/layer_00/attention/wo").stddev == Approx(sigma(16)));  // heads * d_kv = 16
  CHECK(init_of(m, "encoder/layer_00/ffn/wo").stddev == Approx(sigma(32)));
  CHECK(init_of(m, "encoder/layer_00/ffn/wo").fan_in == 32);
  CHECK(init_of(m, "encoder/layer_00/attention_norm/scale").kind == InitKind::ones);
  CHECK(init_of(m, "embedding/table").stddev == 1.0);
  CHECK(init_of(m, "embedding/table").fan_in == 0);
  // MoE parameters (created by the router library) get the rule from how they are used.
  CHECK(init_of(m, "encoder/layer_01/moe/router/w").stddev == Approx(sigma(16)));
  CHECK(init_of(m, "encoder/layer_01/moe/experts/wi_0").stddev == Approx(sigma(16)));
  CHECK(init_of(m, "encoder/layer_01/moe/experts/wo").stddev == Approx(sigma(32)));
  CHECK(init_of(m, "encoder/layer_01/moe/experts/wo").kind == InitKind::truncated_normal);

  const ParamInit& wq = init_of(m, "encoder/layer_00/attention/wq");
  const TensorType& type = m.graph.type(wq.param);
  const Tensor a = initial_value(wq, type, 7);
  const Tensor b = initial_value(wq, type, 7);
  const Tensor other = initial_value(wq, type, 8);
  CHECK(a.data == b.data);
  CHECK(a.data != other.data);
  double sq = 0;
  for (double x : a.data) {
    CHECK(std::abs(x) <= 2 * wq.stddev);
    sq += x * x;
  }
  CHECK(std::sqrt(sq / static_cast<double>(a.size())) == Approx(wq.stddev * 0.88).epsilon(0.3));  // truncation shrinks σ
  const Tensor ones = initial_value(init_of(m, "encoder/final_norm/scale"), {{{"d_model", 16}}, DType::f32}, 7);
  for (double x : ones.data) CHECK(x == 1.0);
}

TEST_CASE("transformer: tiny runs forward in the reference interpreter with a loss near log(vocab)",
          "[transformer]") {
  const RunConfig c = model("tiny");
  const ModelGraph m = build(c);
  const auto leaves = leaves_for(m, c.model.vocab, 3);
  const std::vector<Tensor> out = interpret(m.graph, leaves);
  const double ce = out[static_cast<size_t>(m.cross_entropy.v)].data.at(0);
  const double loss = out[static_cast<size_t>(m.graph.loss.v)].data.at(0);
  const double aux = out[static_cast<size_t>(m.aux_loss.v)].data.at(0);
  const double z = out[static_cast<size_t>(m.z_loss.v)].data.at(0);
  INFO("ce " << ce << " aux " << aux << " z " << z);
  CHECK(std::isfinite(loss));
  // Logits start near N(0, 1) (unit embeddings, d_model^-0.5): CE a little above log(64) = 4.16.
  CHECK(ce > std::log(64.0) - 0.5);
  CHECK(ce < std::log(64.0) + 2.0);
  CHECK(aux > 0);
  CHECK(z > 0);
  CHECK(loss == Approx(ce + aux + z).epsilon(1e-6));
  const double acc = out[static_cast<size_t>(m.graph.find_output("accuracy")->v)].data.at(0);
  CHECK(acc >= 0.0);
  CHECK(acc <= 1.0);

  // The encoder's position buckets are T5's, at every (i, j) ...
  const Tensor& enc_buckets =
      out[static_cast<size_t>(output_of(m.graph, OpKind::embedding, "encoder/relative_position_bias", 1).v)];
  const Tensor& dec_buckets =
      out[static_cast<size_t>(output_of(m.graph, OpKind::embedding, "decoder/relative_position_bias", 1).v)];
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t j = 0; j < 8; ++j)
      CHECK(enc_buckets.data[static_cast<size_t>(i * 8 + j)] == relative_position_bucket(i, j, true, 8, 16));
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 6; ++j)
      CHECK(dec_buckets.data[static_cast<size_t>(i * 6 + j)] == relative_position_bucket(i, j, false, 8, 16));

  // ... and decoder self-attention never looks ahead: p[b, h, i, j] = 0 for j > i, rows sum to 1.
  const Tensor& p = out[static_cast<size_t>(output_of(m.graph, OpKind::softmax, "decoder/layer_00/attention").v)];
  REQUIRE(p.shape() == Shape{{"batch", 2}, {"heads", 2}, {"length", 6}, {"memory_length", 6}});
  for (int64_t bh = 0; bh < 4; ++bh)
    for (int64_t i = 0; i < 6; ++i) {
      double row = 0;
      for (int64_t j = 0; j < 6; ++j) {
        const double v = p.data[static_cast<size_t>((bh * 6 + i) * 6 + j)];
        row += v;
        if (j > i) CHECK(v == 0.0);
      }
      CHECK(row == Approx(1.0));
    }
}

TEST_CASE("transformer: bf16 activations keep every value bf16 but the router's, the loss's and the weights",
          "[transformer][precision]") {
  const RunConfig f = model("tiny");
  const RunConfig c = model("tiny", {"train.precision=\"bf16\"", "train.activation_dtype=\"bf16\""});
  const ModelGraph m32 = build(f), m = build(c);
  const Graph& g = m.graph;
  auto starts = [](const std::string& s, const std::string& p) { return s == p || s.starts_with(p + "/"); };
  int bf16_values = 0, router_einsums = 0, upcasts_into_router = 0;
  for (const Node& n : g.nodes) {
    const bool router = n.scope.find("router") != std::string::npos;
    const bool loss = starts(n.scope, "loss") || starts(n.scope, "metrics") || starts(n.scope, "predictions");
    INFO(op_name(n.kind) << " @ " << n.scope);
    if (n.scope.empty()) continue;  // the casts of graph outputs back to f32
    if (router) {
      if (n.kind == OpKind::einsum) {
        ++router_einsums;
        CHECK(g.type(n.inputs[0]).dtype == DType::f32);  // ST-MoE: the router computes in f32
        CHECK(g.type(n.inputs[1]).dtype == DType::f32);
      }
      upcasts_into_router += n.kind == OpKind::cast && g.type(n.inputs[0]).dtype == DType::bf16 &&
                             g.type(n.outputs[0]).dtype == DType::f32;
      continue;
    }
    if (loss) {  // upcast before the loss
      if (n.kind != OpKind::cast)
        for (ValueId x : n.inputs) CHECK(g.type(x).dtype != DType::bf16);
      continue;
    }
    for (ValueId y : n.outputs)
      if (is_float(g.type(y).dtype)) {
        CHECK(g.type(y).dtype == DType::bf16);
        ++bf16_values;
      }
  }
  CHECK(router_einsums >= 2);       // tiny: one MoE layer in each stack; logits, then slot masks
  CHECK(upcasts_into_router >= 2);  // each router's input x arrives in bf16
  CHECK(bf16_values > 100);
  for (ValueId p : g.parameters()) CHECK(g.type(p).dtype == DType::f32);  // f32 master weights
  for (const GraphOutput& o : g.outputs)
    if (is_float(g.type(o.value).dtype)) CHECK(g.type(o.value).dtype == DType::f32);

  // The same weights (by name) give the f32 graph's loss to bf16 round-off: 8 mantissa bits, a
  // relative step of 2^-8 = 0.4 % per rounding, mostly averaging out over the tokens' mean.
  const auto leaves32 = leaves_for(m32, c.model.vocab, 3);
  std::map<ValueId, Tensor> leaves;
  for (const auto& [id, t] : leaves32) leaves[g.find_leaf(m32.graph.value(id).name).value()] = t;
  const double ce32 = interpret(m32.graph, leaves32)[static_cast<size_t>(m32.cross_entropy.v)].data.at(0);
  const double ce16 = interpret(g, leaves)[static_cast<size_t>(m.cross_entropy.v)].data.at(0);
  CHECK(ce16 == Approx(ce32).epsilon(0.01));
  CHECK(ce16 != ce32);  // it does compute in bf16
}

TEST_CASE("transformer: gradients of the tiny models reach every parameter", "[transformer]") {
  // Expert weights of an expert that no token reached would get a zero gradient; with 4 experts,
  // top-2 and 12+ tokens per group every expert is used at this seed.
  auto check_gradients = [](const RunConfig& c) {
    ModelGraph m = build(c);
    gradients(m.graph);
    verify(m.graph);
    const auto out = interpret(m.graph, leaves_for(m, c.model.vocab, 5));
    for (ValueId p : m.graph.parameters()) {
      const Tensor& grad = out[static_cast<size_t>(m.graph.find_output("grad/" + m.graph.value(p).name)->v)];
      double norm = 0;
      for (double x : grad.data) norm += x * x;
      INFO(c.model.name << ": " << m.graph.value(p).name);
      CHECK(std::isfinite(norm));
      CHECK(norm > 0);
    }
  };
  check_gradients(model("tiny", {"model.dropout=0.1"}));
  check_gradients(parse_run_config(
      "[model]\narchitecture = \"decoder_only\"\nvocab = 64\nd_model = 16\nd_ff = 32\nheads = 2\nlayers = 2\n"
      "position_buckets = 8\nposition_max_distance = 16\n[moe]\nevery = 2\nexperts = 4\nk = 2\nmin_capacity = 1\n"
      "[train]\nbatch = 2\nlength = 6\n",
      "tiny_lm.toml"));
}

TEST_CASE("transformer: every router, policy and loss convention is selectable from the TOML and runs",
          "[transformer]") {
  const std::vector<std::vector<std::string>> variants = {
      {"moe.router=top_k", "moe.k=1"},
      {"moe.policy_train=threshold", "moe.policy_eval=random"},
      {"moe.policy_train=none", "moe.renormalize_gates=false"},
      {"moe.router=expert_choice", "moe.balance=none"},
      {"moe.router=hash"},
      {"moe.router=hash", "moe.hash=random"},
      {"moe.router=noisy_top_k"},
      {"moe.encoder.batch_prioritized=true"},
      {"moe.capacity=flaxformer"},
      {"moe.capacity=ceil_k", "moe.min_capacity=2"},
      {"moe.dropless=true"},
      {"moe.group_size=4"},
      {"moe.router_dtype=bf16"},
      {"moe.jitter=0.01", "moe.expert_dropout=0.2", "moe.expert_bias=true", "model.dropout=0.1"},
      {"moe.balance=flaxformer_topk", "moe.z_rule=mesh_tf"},
      {"moe.balance=gshard"},
      {"moe.expert_ffn=relu", "moe.d_ff=24"},
  };
  for (const auto& v : variants) {
    std::string label;
    for (const std::string& s : v) label += s + " ";
    INFO(label);
    const RunConfig c = model("tiny", v);
    for (Mode mode : {Mode::train, Mode::eval}) {
      BuildOptions o;
      o.mode = mode;
      ModelGraph m = build(c, o);
      gradients(m.graph);
      verify(m.graph);
      const auto out = interpret(m.graph, leaves_for(m, c.model.vocab, 11));
      const double loss = out[static_cast<size_t>(m.graph.loss.v)].data.at(0);
      CHECK(std::isfinite(loss));
      CHECK(loss > 0);
    }
  }
}
