// Model config files: the shipped configs load, values and defaults land in ModelConfig and
// TrainConfig, --set overrides apply, and every bad config in tests/data/bad_configs/ is refused
// with an InputError naming the file, the key (with its line) and what is allowed. Each bad config
// lists the fragments its message must contain in its first line: "# expect: a | b | c".
#include "graph/models/model_config.hpp"

#include "graph/error.hpp"
#include "graph/json.hpp"
#include "tests/graph/mlp_graph.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace sy;
namespace fs = std::filesystem;

namespace {

fs::path models_dir() { return test::source_root() / "experiments" / "configs" / "models"; }
std::string model_path(const std::string& name) { return (models_dir() / (name + ".toml")).string(); }

// The InputError message of loading `path` (fails the test if it loads).
std::string load_error(const std::string& path, const std::vector<std::string>& overrides = {}) {
  try {
    load_run_config(path, overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  FAIL("loading " << path << " did not throw InputError");
  return "";
}

std::string parse_error(std::string_view text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_run_config(text, "inline.toml", overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  FAIL("parsing did not throw InputError:\n" << text);
  return "";
}

std::vector<std::string> split_fragments(std::string line) {
  std::vector<std::string> out;
  for (size_t start = 0;;) {
    const size_t bar = line.find(" | ", start);
    std::string f = line.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    while (!f.empty() && f.back() == ' ') f.pop_back();
    out.push_back(f);
    if (bar == std::string::npos) return out;
    start = bar + 3;
  }
}

}  // namespace

TEST_CASE("model config: every shipped config loads and validates", "[model_config]") {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(models_dir())) {
    if (entry.path().extension() != ".toml") continue;
    INFO(entry.path().string());
    const ModelConfig c = load_run_config(entry.path().string()).model;
    CHECK(c.name == entry.path().stem().string());
    CHECK(c.source == entry.path().string());
    ++n;
  }
  CHECK(n >= 9);  // st_moe_32b, st_moe_l, dense_l, t5_xxl, switch_base, switch_c, tiny, small, bench_moe
}

TEST_CASE("model config: ST-MoE-32B values land in ModelConfig", "[model_config]") {
  const RunConfig run = load_run_config(model_path("st_moe_32b"));
  const ModelConfig& c = run.model;
  CHECK(c.architecture == Architecture::encoder_decoder);
  CHECK(c.vocab == 32128);
  CHECK(c.d_model == 5120);
  CHECK(c.d_ff == 20480);
  CHECK(c.heads == 64);
  CHECK(c.d_kv == 128);
  CHECK(c.encoder_layers == 24);
  CHECK(c.decoder_layers == 24);
  CHECK(c.ffn == FfnKind::geglu);
  CHECK(c.moe_every == 4);
  CHECK(c.moe_extra_dense_ffn);
  for (const MoeConfig* m : {&c.moe_encoder, &c.moe_decoder}) {
    CHECK(m->experts == 64);
    CHECK(m->k == 2);
    CHECK(m->cf_train == 1.25);
    CHECK(m->cf_eval == 2.0);
    CHECK(m->group_size == 4096);
    CHECK(m->expert_ffn == FfnKind::geglu);  // from model.ffn
    CHECK(m->d_ff == 20480);                 // from model.d_ff
  }
  CHECK(c.is_sparse_layer(3));
  CHECK_FALSE(c.is_sparse_layer(0));
  CHECK(c.is_sparse_layer(23));
  CHECK(run.train.batch == 2048);
  CHECK(run.train.input_length == 512);
  CHECK(run.train.target_length == 114);
}

TEST_CASE("model config: the moe.encoder and moe.decoder tables override moe per stack", "[model_config]") {
  const ModelConfig c = load_run_config(model_path("st_moe_l")).model;
  CHECK(c.moe_encoder.group_size == 2048);
  CHECK(c.moe_decoder.group_size == 456);
  CHECK(c.moe_encoder.experts == 32);
  CHECK(c.moe_decoder.experts == 32);

  const ModelConfig bpr = parse_run_config("[moe]\nk = 1\n[moe.encoder]\nbatch_prioritized = true\n[model]\n", "x.toml").model;
  CHECK(bpr.moe_encoder.batch_prioritized);
  CHECK_FALSE(bpr.moe_decoder.batch_prioritized);
  CHECK(bpr.moe_encoder.k == 1);
  CHECK(bpr.moe_decoder.k == 1);
}

TEST_CASE("model config: bench_moe is the decoder-only benchmark model", "[model_config]") {
  const RunConfig run = load_run_config(model_path("bench_moe"));
  const ModelConfig& c = run.model;
  CHECK(c.architecture == Architecture::decoder_only);
  CHECK(c.encoder_layers == 0);
  CHECK(c.decoder_layers == 4);
  CHECK(c.vocab == 8192);
  CHECK(c.d_model == 512);
  CHECK(c.heads == 8);
  CHECK(c.d_kv == 64);
  CHECK(c.d_ff == 1024);
  CHECK(c.ffn == FfnKind::geglu);
  CHECK_FALSE(c.position_bias);
  CHECK(c.tied_embeddings);
  // MoE in layers 2 and 4 (1-based)
  CHECK_FALSE(c.is_sparse_layer(0));
  CHECK(c.is_sparse_layer(1));
  CHECK_FALSE(c.is_sparse_layer(2));
  CHECK(c.is_sparse_layer(3));
  CHECK(c.moe_decoder.experts == 8);
  CHECK(c.moe_decoder.k == 2);
  CHECK(c.moe_decoder.cf_train == 1.25);
  CHECK(c.moe_decoder.group_size == 0);
  CHECK(c.moe_decoder.capacity == CapacityRule::ceil_k);
  CHECK(run.train.batch == 16);
  CHECK(run.train.input_length == 0);
  CHECK(run.train.target_length == 256);
}

TEST_CASE("model config: defaults, d_kv from heads, dense without a moe table", "[model_config]") {
  const RunConfig run = parse_run_config("[model]\nd_model = 96\nheads = 3\n", "configs/plain.toml");
  const ModelConfig& c = run.model;
  CHECK(c.name == "plain");
  CHECK(c.d_kv == 32);
  CHECK_FALSE(c.is_moe());
  CHECK_FALSE(c.is_sparse_layer(0));
  CHECK(c.init_scale == 0.1);
  CHECK(c.position_buckets == 32);
  CHECK(c.position_max_distance == 128);
  CHECK(c.norm_scale);
  CHECK(run.train == TrainConfig{});  // no [train]: every default
}

TEST_CASE("model config: ReLU with matched FLOPs has 1.5x the hidden units", "[model_config]") {
  const ModelConfig c = parse_run_config(
      "[model]\nd_ff = 64\nffn = \"relu\"\nrelu_matches_geglu_flops = true\n[moe]\nexpert_ffn = \"relu\"\n", "x.toml").model;
  CHECK(c.d_ff == 96);
  CHECK(c.moe_encoder.d_ff == 96);
  CHECK(c.moe_decoder.expert_ffn == FfnKind::relu);
}

TEST_CASE("model config: --set overrides keys, with bare words as strings", "[model_config]") {
  const RunConfig run = load_run_config(
      model_path("tiny"), {"moe.cf_train=2.5", "moe.router=hash", "model.dropout=0.1", "moe.decoder.group_size=6",
                           "train.batch=3", "moe.policy_eval=\"threshold\""});
  const ModelConfig& c = run.model;
  CHECK(c.moe_encoder.cf_train == 2.5);
  CHECK(c.moe_decoder.router == RouterKind::hash);
  CHECK(c.dropout == 0.1);
  CHECK(c.moe_decoder.group_size == 6);
  CHECK(c.moe_encoder.group_size == 0);
  CHECK(run.train.batch == 3);
  CHECK(c.moe_decoder.policy_eval == SecondPolicy::threshold);

  // An override can add a section: MoE on a dense model.
  const ModelConfig d = load_run_config(model_path("dense_l"), {"moe.experts=4"}).model;
  CHECK(d.is_moe());
  CHECK(d.moe_every == 1);
}

TEST_CASE("model config: errors from --set name the override", "[model_config]") {
  const std::string e = load_error(model_path("tiny"), {"moe.k=9"});
  CHECK_THAT(e, Catch::Contains(model_path("tiny")));
  CHECK_THAT(e, Catch::Contains("(--set moe.k=9)"));
  CHECK_THAT(e, Catch::Contains("moe.k = 9"));
  CHECK_THAT(e, Catch::Contains("allowed: 1..4"));

  CHECK_THAT(load_error(model_path("tiny"), {"moe.router=fast"}),
             Catch::Contains("moe.router = \"fast\": allowed: top_k, expert_choice, hash, noisy_top_k"));
  CHECK_THAT(load_error(model_path("tiny"), {"dropout"}), Catch::Contains("expected section.key=value"));
  CHECK_THAT(load_error(model_path("tiny"), {"dropout=0.1"}), Catch::Contains("must name its section"));
  CHECK_THAT(load_error(model_path("tiny"), {"model.d_model.x=1"}), Catch::Contains("'d_model' is a value"));
  CHECK_THAT(load_error(model_path("tiny"), {"model.d_modle=1"}), Catch::Contains("unknown key model.d_modle"));
  // Found by tests/fuzz/fuzz_set_override: a bare-word value that is not UTF-8 was accepted as the
  // model name, and to_json(...).dump() then threw nlohmann's type_error (not an InputError).
  CHECK_THAT(load_error(model_path("tiny"), {"model.name=_\xcd"}),
             Catch::Contains("(--set model.name=_\\xcd): byte 13 (0xcd) is not valid UTF-8"));
  CHECK_NOTHROW(to_json(load_run_config(model_path("tiny"), {"model.name=caf\xc3\xa9"})).dump());
}

TEST_CASE("model config: a file without a model table is refused naming the file (empty, comments, only a train table)",
          "[model_config]") {
  CHECK_THAT(parse_error(""), Catch::StartsWith("inline.toml: missing table [model]") &&
                                  Catch::Contains("the file holds no key at all"));
  CHECK_THAT(parse_error("# nothing here\n\n"), Catch::StartsWith("inline.toml: missing table [model]"));
  CHECK_THAT(parse_error("[train]\nbatch = 2\n"), Catch::Contains("the file has no [model]"));
  // --set cannot stand in for the table: the file itself must describe a model.
  CHECK_THAT(parse_error("", {"model.vocab=100"}), Catch::StartsWith("inline.toml: missing table [model]"));
  // The table alone is a model: every key in it has a default.
  CHECK(parse_run_config("[model]\n", "defaults.toml").model.d_model == 512);
}

TEST_CASE("model config: a missing file is an InputError naming it", "[model_config]") {
  CHECK_THAT(load_error("/nonexistent/model.toml"), Catch::Contains("/nonexistent/model.toml"));
}

TEST_CASE("model config: every bad config is refused naming file, key and what is allowed", "[model_config]") {
  const fs::path dir = test::source_root() / "tests" / "data" / "bad_configs";
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".toml") continue;
    const std::string path = entry.path().string();
    INFO(path);
    std::ifstream in(path);
    std::string first;
    std::getline(in, first);
    const std::string prefix = "# expect: ";
    REQUIRE(first.rfind(prefix, 0) == 0);
    const std::string msg = load_error(path);
    INFO(msg);
    CHECK_THAT(msg, Catch::StartsWith(path));
    for (const std::string& f : split_fragments(first.substr(prefix.size()))) CHECK_THAT(msg, Catch::Contains(f));
    ++n;
  }
  CHECK(n >= 20);
}

TEST_CASE("model config: architecture-specific keys are refused in the other architecture", "[model_config]") {
  CHECK_THAT(parse_error("[model]\narchitecture = \"decoder_only\"\nencoder_layers = 2\n"),
             Catch::Contains("model.encoder_layers = 2: a decoder_only model has no encoder"));
  CHECK_THAT(parse_error("[model]\narchitecture = \"decoder_only\"\n[train]\ninput_length = 8\n"),
             Catch::Contains("train.input_length"));
  CHECK_THAT(parse_error("[model]\narchitecture = \"decoder_only\"\n[moe]\n[moe.encoder]\nk = 1\n"),
             Catch::Contains("[moe.encoder] in a decoder_only model"));
  CHECK_THAT(parse_error("model = 3\n"), Catch::Contains("inline.toml:1: model = 3: expected a table [model]"));
  CHECK_THAT(parse_error("[moe]\ndecoder = 3\n[model]\n"), Catch::Contains("expected a table [moe.decoder]"));
}

TEST_CASE("model config: to_json holds every resolved setting", "[model_config]") {
  const auto j = to_json(load_run_config(model_path("st_moe_l")));
  CHECK(j.at("model").at("d_ff") == 2816);
  CHECK(j.at("model").at("architecture") == "encoder_decoder");
  CHECK(j.at("moe").at("encoder").at("group_size") == 2048);
  CHECK(j.at("moe").at("decoder").at("group_size") == 456);
  CHECK(j.at("moe").at("decoder").at("router") == "top_k");
  CHECK(j.at("train").at("target_length") == 114);
  CHECK_FALSE(to_json(load_run_config(model_path("t5_xxl"))).contains("moe"));
  CHECK(to_json(load_run_config(model_path("bench_moe"))).at("model").at("layers") == 4);
}

TEST_CASE("model config: the train JSON in the schema's order, fine-tuning keys only when set", "[model_config]") {
  // Checkpoints hold this JSON and a resume compares it byte for byte: its text must not change.
  const std::string rest = R"("seed":1,"precision":"f32","optimizer":"adafactor","schedule":"inverse_sqrt",)"
                           R"("learning_rate":0.01,"warmup_steps":10000,"grad_clip":0.0,"clip_threshold":1.0,)"
                           R"("decay_exponent":0.8,"parameter_scale":true,"factored":true,"epsilon1":1e-30,)"
                           R"("epsilon2":0.001,"divergence_factor":4.0,"eval_batches":0)";
  std::string plain = R"({"batch":2,"input_length":8,"target_length":6,)";
  plain += rest;
  std::string finetune = plain;
  plain += "}";
  finetune += R"(,"trainable":"moe","reset_optimizer":true,"step_offset":5})";
  CHECK(to_json(load_run_config(model_path("tiny"))).at("train").dump() == plain);
  const std::vector<std::string> sets = {"train.trainable=moe", "train.reset_optimizer=true", "train.step_offset=5"};
  CHECK(to_json(load_run_config(model_path("tiny"), sets)).at("train").dump() == finetune);
  const nlohmann::ordered_json lm = to_json(load_run_config(model_path("bench_moe"))).at("train");
  CHECK(lm.at("length") == 256);
  CHECK_FALSE(lm.contains("input_length"));
  CHECK_FALSE(lm.contains("target_length"));
}

TEST_CASE("model config: train.trainable is checked where it is read, before the keys after it", "[model_config]") {
  const std::string e = parse_error("[train]\ntrainable = \"(x\"\nreset_optimizer = 3\nstep_offset = -1\n[model]\n");
  CHECK_THAT(e, Catch::Contains("inline.toml:2: train.trainable = \"(x\": not a preset and not a valid regular "
                                "expression"));
}
