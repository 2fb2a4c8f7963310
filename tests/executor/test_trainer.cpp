// The trainer (executor/train/trainer.hpp): the training graph learns, fast kernels agree with the
// reference, a restored state continues bit for bit, global-norm clipping, bf16 selective
// precision, learning-rate schedules, evaluation. Token splits are made by hand (no tokenizer).
#include "executor/train/checkpoint.hpp"
#include "executor/train/metrics.hpp"
#include "executor/train/schedule.hpp"
#include "executor/trace.hpp"
#include "executor/train/trainer.hpp"
#include "graph/error.hpp"
#include "tests/source_root.hpp"

#include "tests/executor/tiny_configs.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

using namespace sy;
using sy::test::tiny_decoder;
namespace fs = std::filesystem;

namespace {

using sy::test::source_root;

// tiny.toml: encoder-decoder, vocab 64, MoE every 2nd layer, batch 2, 8 input / 6 target tokens.
RunConfig tiny(std::vector<std::string> sets = {}) {
  sets.insert(sets.begin(), "train.target_length=8");  // span corruption of 8 inputs needs up to 8 targets
  return load_run_config((source_root() / "experiments/configs/models/tiny.toml").string(), sets);
}


// 64 ids: sentinels 63 (<extra_id_0>) down to 56; words 3..55.
constexpr data::SpecialTokens kSpecial{64, 8};

// `docs` documents of `length` tokens with a repeating pattern (learnable), POS k % 5.
data::TokenSplit make_split(int docs, int length, int offset = 0) {
  data::TokenSplit s;
  for (int d = 0; d < docs; ++d) {
    const auto begin = static_cast<int64_t>(s.tokens.size());
    for (int i = 0; i < length; ++i) s.tokens.push_back({3 + (i * 7 + d + offset) % 13, i % 5});
    s.documents.push_back({fmt::format("ca{:02d}", d + 1), 'a', begin, static_cast<int64_t>(s.tokens.size()), 1, length});
  }
  return s;
}

data::BatchOptions batch_options(const RunConfig& c, bool train) {
  data::BatchOptions o;
  o.objective = c.model.has_encoder() ? data::Objective::kSpanCorruption : data::Objective::kNextToken;
  o.batch = c.train.batch;
  o.length = c.model.has_encoder() ? c.train.input_length : c.train.target_length;
  o.seed = c.train.seed;
  o.shuffle = train;
  o.repeat = train;
  return o;
}

std::string line(const StepMetrics& m) { return metrics_line(m, 0, nullptr, StepTiming{}); }

std::vector<std::string> state_bytes(Trainer& t) {
  std::vector<std::string> out;
  for (const StateTensor& s : t.state())
    out.emplace_back(reinterpret_cast<const char*>(s.data), static_cast<size_t>(num_bytes(s.type)));
  return out;
}

// The first training batch of a 4-row, 40-token split (the precision tests' batch).
data::Batch first_training_batch(const RunConfig& cfg) {
  const data::TokenSplit split = make_split(4, 40);
  data::BatchSource source(split, kSpecial, batch_options(cfg, true));
  data::Batch batch;
  source.next(batch);
  return batch;
}

}  // namespace

TEST_CASE("trainer: repeated steps on one batch drive the loss down with Adafactor and with AdamW", "[trainer]") {
  const data::TokenSplit split = make_split(6, 40);
  for (const auto& [name, cfg] :
       {std::pair{"adafactor enc-dec", tiny()}, std::pair{"adamw enc-dec", tiny({"train.optimizer=adamw", "train.learning_rate=0.01"})},
        std::pair{"adafactor decoder-only", tiny_decoder()}}) {
    INFO(name);
    data::BatchSource source(split, kSpecial, batch_options(cfg, true));
    data::Batch batch;
    source.next(batch);
    Trainer t(cfg, 40);
    // Every parameter and optimizer state takes its update in place: no copy after the step.
    CHECK(t.memory().updates_in_place > 0);
    CHECK(t.memory().updates_copied == 0);
    const StepMetrics first = t.train_step(batch);
    StepMetrics last = first;
    for (int i = 0; i < 39; ++i) last = t.train_step(batch);
    CHECK(t.step() == 40);
    CHECK(last.step == 40);
    CHECK(std::isfinite(last.loss));
    CHECK(last.cross_entropy < 0.6 * first.cross_entropy);
    CHECK(first.loss == Approx(first.cross_entropy + first.aux_loss + first.z_loss).epsilon(1e-5));
    CHECK(first.target_tokens == batch.target_tokens());
    CHECK(first.moe.size() == (cfg.model.has_encoder() ? 2u : 1u));  // layer 2 of each stack is sparse
  }
}

TEST_CASE("trainer: a step on the fast kernels matches the reference forwards", "[trainer]") {
  const RunConfig cfg = tiny();
  const data::TokenSplit split = make_split(4, 40);
  data::BatchSource source(split, kSpecial, batch_options(cfg, true));
  data::Batch batch;
  source.next(batch);
  Trainer fast(cfg, 10);
  ExecutorOptions ref_opts;
  ref_opts.fast_kernels = false;
  Trainer ref(cfg, 10, ref_opts);
  for (int i = 0; i < 2; ++i) {
    const StepMetrics a = fast.train_step(batch), b = ref.train_step(batch);
    CHECK(a.loss == Approx(b.loss).epsilon(1e-4));
    CHECK(a.grad_norm == Approx(b.grad_norm).epsilon(1e-3));
  }
  const auto sa = fast.state(), sb = ref.state();
  REQUIRE(sa.size() == sb.size());
  double worst = 0;
  for (size_t i = 0; i < sa.size(); ++i)
    for (int64_t j = 0; j < num_elements(sa[i].type.shape); ++j)
      worst = std::max(worst, double{std::abs(sa[i].data[j] - sb[i].data[j]) / std::max(1.0f, std::abs(sb[i].data[j]))});
  CHECK(worst < 1e-3);
}

TEST_CASE("trainer: a checkpoint restored into a new trainer continues bit for bit", "[trainer][checkpoint]") {
  for (const RunConfig& cfg : {tiny({"model.dropout=0.1", "moe.jitter=0.01"}), tiny_decoder({"train.optimizer=adamw"})}) {
    INFO(cfg.model.name);
    const data::TokenSplit split = make_split(5, 37);
    data::Batch batch;
    std::vector<std::string> uninterrupted;
    Trainer a(cfg, 6);
    {
      data::BatchSource source(split, kSpecial, batch_options(cfg, true));
      for (int i = 0; i < 6; ++i) {
        source.next(batch);
        uninterrupted.push_back(line(a.train_step(batch)));
      }
    }
    const fs::path file = fs::temp_directory_path() / fmt::format("sy_test_trainer_{}.safetensors", cfg.model.name);
    {
      Trainer b(cfg, 6);
      data::BatchSource source(split, kSpecial, batch_options(cfg, true));
      for (int i = 0; i < 3; ++i) {
        source.next(batch);
        CHECK(line(b.train_step(batch)) == uninterrupted[static_cast<size_t>(i)]);
      }
      save_checkpoint(file, b.state(), RunState{b.step(), source.position(), 1.5, "{}", "m.toml", "", {}});
    }
    Trainer c(cfg, 6);
    const Checkpoint ck = read_checkpoint(file);
    restore_state(ck, c.state(), file);
    c.set_step(ck.run.step);
    data::BatchSource source(split, kSpecial, batch_options(cfg, true));
    source.seek(ck.run.data);
    for (int i = 3; i < 6; ++i) {
      source.next(batch);
      CHECK(line(c.train_step(batch)) == uninterrupted[static_cast<size_t>(i)]);
    }
    CHECK(state_bytes(c) == state_bytes(a));
    fs::remove(file);
  }
}

TEST_CASE("trainer: global-norm clipping scales the gradients by grad_clip / norm when the norm exceeds it", "[trainer]") {
  const data::TokenSplit split = make_split(4, 40);
  data::Batch batch;
  for (double clip : {0.0, 1e-3, 1e6}) {
    const RunConfig cfg = tiny({fmt::format("train.grad_clip={}", clip)});
    data::BatchSource source(split, kSpecial, batch_options(cfg, true));
    source.next(batch);
    Trainer t(cfg, 10);
    const StepMetrics m = t.train_step(batch);
    INFO("grad_clip " << clip << " norm " << m.grad_norm);
    REQUIRE(m.grad_norm > 1e-3);
    REQUIRE(m.grad_norm < 1e6);
    CHECK(m.clip_scale == Approx(clip == 1e-3 ? 1e-3 / m.grad_norm : 1.0).epsilon(1e-5));
  }
}

TEST_CASE("trainer: bf16 selective precision keeps routers, master weights and losses f32", "[trainer]") {
  const RunConfig f32 = tiny(), bf16 = tiny({"train.precision=\"bf16\""});
  Trainer a(f32, 10), b(bf16, 10);
  int bf16_einsums = 0, router_einsums = 0;
  for (const Node& n : b.graph().nodes) {
    if (n.kind != OpKind::einsum || n.backward) continue;
    const DType t = b.graph().type(n.inputs[0]).dtype;
    if (n.scope.find("/router") != std::string::npos) {
      ++router_einsums;
      CHECK(t == DType::f32);
    } else {
      bf16_einsums += t == DType::bf16;
      CHECK(t == DType::bf16);
    }
  }
  CHECK(router_einsums >= 2);  // each MoE layer's router logits, at least
  CHECK(bf16_einsums > 10);
  for (ValueId p : b.graph().parameters()) CHECK(b.graph().type(p).dtype == DType::f32);
  CHECK(state_bytes(a) == state_bytes(b));  // same initial weights for one seed

  const data::Batch batch = first_training_batch(f32);
  const StepMetrics ma = a.train_step(batch), mb = b.train_step(batch);
  CHECK(std::isfinite(mb.loss));
  CHECK(mb.cross_entropy == Approx(ma.cross_entropy).epsilon(0.02));  // bf16 matmuls: ~3 significant digits
}

TEST_CASE("trainer: bf16 activations train from the same weights as f32, gradients reaching the f32 masters",
          "[trainer][precision]") {
  const RunConfig f32 = tiny(), bf16 = tiny({"train.precision=\"bf16\"", "train.activation_dtype=\"bf16\""});
  Trainer a(f32, 10), b(bf16, 10);
  int bf16_norms = 0;
  for (const Node& n : b.graph().nodes) bf16_norms += n.kind == OpKind::rms_norm && b.graph().type(n.outputs[0]).dtype == DType::bf16;
  CHECK(bf16_norms > 4);  // the norms (and everything else outside routers and losses) run in bf16
  for (ValueId p : b.graph().parameters()) CHECK(b.graph().type(p).dtype == DType::f32);
  CHECK(state_bytes(a) == state_bytes(b));  // same initial weights for one seed

  const data::Batch batch = first_training_batch(f32);
  std::vector<double> la, lb;
  for (int step = 0; step < 8; ++step) {  // one batch, learnt by heart
    la.push_back(a.train_step(batch).cross_entropy);
    lb.push_back(b.train_step(batch).cross_entropy);
  }
  INFO("f32 " << la.front() << " -> " << la.back() << ", bf16 activations " << lb.front() << " -> " << lb.back());
  // Step 1 from equal weights: bf16 round-off only (8 mantissa bits, 0.4 % per rounding, averaged
  // over the tokens); the run then learns as the f32 one does.
  CHECK(lb.front() == Approx(la.front()).epsilon(0.02));
  CHECK(lb.front() != la.front());
  CHECK(la.back() < la.front());
  CHECK(lb.back() < lb.front());
  CHECK(lb.back() == Approx(la.back()).epsilon(0.05));
}

TEST_CASE("trainer: learning-rate schedules", "[trainer]") {
  OptimizerConfig o;  // inverse_sqrt, 0.01, warm-up 10^4: the paper's 1/sqrt(max(t, 10^4))
  CHECK(learning_rate(o, 0, 100) == Approx(0.01));
  CHECK(learning_rate(o, 9999, 100) == Approx(0.01));
  CHECK(learning_rate(o, 40000, 100) == Approx(1 / std::sqrt(40000.0)));
  o.schedule = LrSchedule::constant;
  CHECK(learning_rate(o, 123456, 100) == 0.01);
  o.schedule = LrSchedule::cosine;
  o.learning_rate = 1.0;
  o.min_learning_rate = 0.1;
  o.warmup_steps = 10;
  o.decay_steps = 0;                                    // ends at total_steps = 110
  CHECK(learning_rate(o, 0, 110) == Approx(0.1));       // (t+1)/10
  CHECK(learning_rate(o, 9, 110) == Approx(1.0));
  CHECK(learning_rate(o, 10, 110) == Approx(1.0));      // decay starts
  CHECK(learning_rate(o, 60, 110) == Approx(0.55));     // half way: the mean of 1 and 0.1
  CHECK(learning_rate(o, 110, 110) == Approx(0.1));
  CHECK(learning_rate(o, 500, 110) == Approx(0.1));
}

TEST_CASE("trainer: evaluation reports the negative log perplexity over the real targets and changes nothing",
          "[trainer]") {
  const RunConfig cfg = tiny_decoder();
  Trainer t(cfg, 10);
  const data::TokenSplit validation = make_split(3, 21, 5);  // 3·22 stream tokens -> 65 targets, 9 rows
  data::BatchSource s1(validation, kSpecial, batch_options(cfg, false));
  const EvalMetrics e1 = t.evaluate(s1, 0);
  CHECK(e1.target_tokens == 3 * 22 - 1);
  CHECK(e1.batches == 5);                               // 9 rows of 8 targets in batches of 2
  CHECK(e1.neg_log_perplexity == Approx(-std::log(64.0)).margin(0.3));  // near-uniform logits at init
  REQUIRE(e1.moe.size() == 1);
  CHECK(e1.moe[0].expert_load.size() == 4);
  data::BatchSource s2(validation, kSpecial, batch_options(cfg, false));
  const EvalMetrics e2 = t.evaluate(s2, 2);
  CHECK(e2.batches == 2);
  data::BatchSource s3(validation, kSpecial, batch_options(cfg, false));
  CHECK(t.evaluate(s3, 0).neg_log_perplexity == e1.neg_log_perplexity);
  CHECK(t.step() == 0);
}

TEST_CASE("trainer: the op observer sees every node of a step once, in order, and the trace records it", "[trainer]") {
  const RunConfig cfg = tiny_decoder();
  const data::TokenSplit split = make_split(4, 40);
  data::BatchSource source(split, kSpecial, batch_options(cfg, true));
  data::Batch batch;
  source.next(batch);
  Trainer t(cfg, 10);
  std::vector<int32_t> seen;
  double last_end = 0;
  bool ordered = true;
  t.set_op_observer([&](NodeId n, double begin, double end) {
    seen.push_back(n.v);
    ordered = ordered && begin <= end && begin >= last_end;
    last_end = end;
  });
  t.train_step(batch);
  CHECK(seen.size() == t.graph().nodes.size());
  CHECK(std::is_sorted(seen.begin(), seen.end()));
  CHECK(ordered);

  TraceRecorder rec(t.graph(), 0, "device 0 of 1 (test)");
  t.set_op_observer([&](NodeId n, double b, double e) { rec.record(n, b, e); });
  rec.begin_step(2);
  t.train_step(batch);
  rec.end_step();
  t.set_op_observer({});
  t.train_step(batch);  // not recorded
  CHECK(rec.steps() == 1);
  const std::string summary = rec.summary();
  CHECK_THAT(summary, Catch::Contains("einsum") && Catch::Contains("adafactor_update") && Catch::Contains("optimizer"));

  CHECK(parse_step_list("3,5-7") == std::set<int64_t>{3, 5, 6, 7});
  CHECK_THROWS_WITH(parse_step_list("0"), Catch::Contains("--trace '0'"));
  CHECK_THROWS_WITH(parse_step_list("4-2"), Catch::Contains("backwards"));
  CHECK_THROWS_WITH(parse_step_list("a"), Catch::Contains("'a' is not a number"));
  // A step given twice (alone or inside a range) is refused like any other malformed list.
  CHECK_THROWS_WITH(parse_step_list("2,2"), Catch::Contains("step 2 is given twice"));
  CHECK_THROWS_WITH(parse_step_list("1-3,3"), Catch::Contains("step 3 is given twice"));
}

TEST_CASE("trainer: rematerialised layers train bit for bit like kept activations", "[trainer][remat]") {
  // The recompute runs the same kernels on the same inputs (dropout and the random routing policy
  // hash (seed, step, index)), so parameters, state and metrics must be identical, f32 and bf16.
  for (const std::string precision : {"f32", "bf16"}) {
    const std::vector<std::string> base = {"model.dropout=0.1", "moe.jitter=0.01", "train.precision=" + precision};
    const data::TokenSplit split = make_split(5, 37);
    auto run = [&](const std::string& remat) {
      std::vector<std::string> sets = base;
      sets.push_back("train.remat=" + remat);
      const RunConfig cfg = tiny(sets);
      Trainer t(cfg, 4);
      data::BatchSource source(split, kSpecial, batch_options(cfg, true));
      data::Batch batch;
      std::vector<std::string> lines;
      for (int i = 0; i < 3; ++i) {
        source.next(batch);
        lines.push_back(line(t.train_step(batch)));
      }
      return std::make_pair(lines, state_bytes(t));
    };
    const auto kept = run("none");
    for (const std::string remat : {"layer", "dots"}) {
      INFO(precision << " remat=" << remat);
      const auto recomputed = run(remat);
      CHECK(recomputed.first == kept.first);
      CHECK(recomputed.second == kept.second);
    }
  }
}

TEST_CASE("trainer: a DeepSeek-style router trains; its balance bias moves by ±γ each step and is saved as state",
          "[trainer][router]") {
  // Sigmoid scores, device-limited routing (2 groups of 2 experts, 1 per token: k = 2 inside it),
  // a shared expert, the sequence-wise loss and auxiliary-loss-free balancing with γ = 0.01.
  const RunConfig cfg = tiny({"moe.score=sigmoid", "moe.expert_groups=2", "moe.route_groups=1", "moe.shared_experts=1",
                              "moe.balance=sequence", "moe.balance_coef=1e-4", "moe.bias_balance_rate=0.01"});
  const data::Batch batch = first_training_batch(cfg);
  Trainer t(cfg, 10);
  CHECK(t.memory().updates_copied == 2);  // the two layers' balance biases (an add, not an optimizer kind)
  auto bias_of = [&](const std::string& scope) {
    for (const StateTensor& s : t.state())
      if (s.name == scope + "/router/balance_bias") return std::vector<float>(s.data, s.data + num_elements(s.type.shape));
    return std::vector<float>{};
  };
  StepMetrics first;
  for (int step = 1; step <= 3; ++step) {
    const StepMetrics m = t.train_step(batch);
    if (step == 1) first = m;
    REQUIRE(m.moe.size() == 2);
    for (const MoeLayerMetrics& l : m.moe) {
      INFO(l.scope << " step " << step);
      const std::vector<float> saved = bias_of(l.scope);
      REQUIRE(saved.size() == 4);
      REQUIRE(l.balance_bias.size() == 4);
      // The bias is a multiple of γ that moved by one γ per expert and step (or stayed: exactly at the mean).
      double mean_load = 0;
      for (double x : l.expert_load) mean_load += x / 4;
      for (size_t e = 0; e < 4; ++e) {
        CHECK(saved[e] == static_cast<float>(l.balance_bias[e]));  // the metric is the state after the step
        CHECK(std::abs(l.balance_bias[e]) <= 0.01 * step + 1e-6);
        if (step == 1) {
          const double want = l.expert_load[e] > mean_load + 1e-9 ? -0.01 : l.expert_load[e] < mean_load - 1e-9 ? 0.01 : 0.0;
          CHECK(l.balance_bias[e] == Approx(want).margin(1e-7));
        }
      }
    }
  }
  CHECK(std::isfinite(first.loss));
  const std::string json = line(first);
  CHECK_THAT(json, Catch::Contains("\"balance_bias\":[") && Catch::Contains("\"overload\":"));
}

TEST_CASE("trainer: expert-load summary (min, max, mean, std, nearest-rank percentiles, overload) by hand", "[trainer]") {
  // Loads [.1 .4 .2 .3]: mean .25, std sqrt((.0225 + .0225 + .0025 + .0025)/4) = sqrt(.0125),
  // sorted [.1 .2 .3 .4]: p50 = 2nd = .2, p90 = 4th (⌈3.6⌉) = .4, p99 = .4; overload .4/.25 = 1.6.
  const LoadSummary s = load_summary({0.1, 0.4, 0.2, 0.3});
  CHECK(s.min == 0.1);
  CHECK(s.max == 0.4);
  CHECK(s.mean == Approx(0.25));
  CHECK(s.std == Approx(std::sqrt(0.0125)));
  CHECK(s.p50 == 0.2);
  CHECK(s.p90 == 0.4);
  CHECK(s.p99 == 0.4);
  CHECK(s.overload == Approx(1.6));
  CHECK(load_summary({0.0, 0.0}).overload == 0.0);
  CHECK(load_summary({}).mean == 0.0);
}

TEST_CASE("trainer: each MoE layer reports its router gradient norm, a part of the global norm", "[trainer][router]") {
  const RunConfig cfg = tiny();
  const data::Batch batch = first_training_batch(cfg);
  Trainer t(cfg, 10);
  const StepMetrics m = t.train_step(batch);
  REQUIRE(m.moe.size() == 2);
  double routers_squared = 0;
  for (const MoeLayerMetrics& l : m.moe) {
    INFO(l.scope);
    CHECK(l.router_grad_norm > 0);
    CHECK(l.rms_logit > 0);
    CHECK(l.rms_logit >= 0);
    CHECK(l.softmax_roundoff >= 0);
    routers_squared += l.router_grad_norm * l.router_grad_norm;
  }
  CHECK(std::sqrt(routers_squared) < m.grad_norm);  // the routers are a strict part of the network
  // Frozen routers (train.trainable = non_moe) have no gradient: 0.
  Trainer frozen(tiny({"train.trainable=non_moe"}), 10);
  for (const MoeLayerMetrics& l : frozen.train_step(batch).moe) CHECK(l.router_grad_norm == 0);
}

TEST_CASE("trainer: router levers: router_lr_scale 0 freezes the routers, router_init_scale scales their σ", "[trainer][router]") {
  const RunConfig base = tiny();
  const RunConfig frozen = tiny({"moe.router_lr_scale=0"});
  const data::Batch batch = first_training_batch(base);
  auto weights = [](Trainer& t) {
    std::map<std::string, std::vector<float>> w;
    for (const StateTensor& s : t.state()) w[s.name] = std::vector<float>(s.data, s.data + num_elements(s.type.shape));
    return w;
  };
  Trainer a(base, 10), b(frozen, 10);
  const auto a0 = weights(a), b0 = weights(b);
  a.train_step(batch);
  b.train_step(batch);
  const auto a1 = weights(a), b1 = weights(b);
  for (const char* p : {"encoder/layer_01/moe/router/w", "decoder/layer_01/moe/router/w"}) {
    INFO(p);
    CHECK(a1.at(p) != a0.at(p));
    CHECK(b1.at(p) == b0.at(p));
  }
  CHECK(b1.at("encoder/layer_01/moe/experts/wo") != b0.at("encoder/layer_01/moe/experts/wo"));  // the rest trains

  // σ of the router weights ×4: the initial values are 4× those of the default (same seed, same draws).
  Trainer big(tiny({"moe.router_init_scale=4"}), 10);
  const auto c0 = weights(big);
  const auto& w1 = a0.at("encoder/layer_01/moe/router/w");
  const auto& w4 = c0.at("encoder/layer_01/moe/router/w");
  REQUIRE(w1.size() == w4.size());
  for (size_t i = 0; i < w1.size(); ++i) CHECK(w4[i] == Approx(4.0 * w1[i]).epsilon(1e-6));
  CHECK(c0.at("encoder/layer_01/moe/experts/wo") == a0.at("encoder/layer_01/moe/experts/wo"));
}
