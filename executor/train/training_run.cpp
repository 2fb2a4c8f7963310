#include "executor/train/training_run.hpp"

#include "executor/train/metrics.hpp"
#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/json.hpp"
#include "graph/trace_schema.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>

namespace sy {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_signal{0};  // the last SIGINT or SIGTERM received; 0: none
extern "C" void on_signal(int sig) {
  g_signal = sig;
  Watchdog::signal_received(sig);  // a rank waiting in MPI when the job is being ended records it
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

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

// The first-choice fraction of dropped tokens, averaged over the MoE layers (0 without any).
double mean_fraction_dropped(const std::vector<MoeLayerMetrics>& moe) {
  double d = 0;
  for (const MoeLayerMetrics& l : moe) d += l.fraction_dropped.empty() ? 0.0 : l.fraction_dropped[0];
  return moe.empty() ? 0.0 : d / static_cast<double>(moe.size());
}

}  // namespace

void TrainingRun::TrainSource::next(data::Batch& b) { corpus ? (void)corpus->next(b) : (void)task->next(b); }
data::BatchPosition TrainingRun::TrainSource::position() const { return corpus ? corpus->position() : task->position(); }
void TrainingRun::TrainSource::seek(const data::BatchPosition& p) { corpus ? corpus->seek(p) : task->seek(p); }

TrainingRun::TrainingRun(const TrainingOptions& options) : options_(options) {
  resolve_config();
  start_mesh();
  prepare_data();
  build_trainer();    // the last input checks (checkpoint tensors, --init-from, train.trainable)
  // So DIR is created only once all input is valid. On a mesh only the writer checks --out; every
  // rank then ends alike on its refusal (exit 2, one message, no MPI_Abort).
  std::string refused;
  try {
    open_output_dir();
  } catch (const InputError& e) {
    if (mpi_->ranks() == 1) throw;
    refused = e.what();
  }
  refused = mpi_->from_writer(refused);
  if (!refused.empty()) throw AgreedInputError(refused, mpi_->writer());
  if (mpi_->ranks() > 1 && mpi_->writer())
    fmt::print(stderr, "train: {} MPI ranks, mesh {}, layout {}\n", mpi_->ranks(), options_.mesh,
               options_.layout.empty() ? "(none)" : options_.layout);
}

TrainingRun::~TrainingRun() = default;

// ---- 1. the config, and the checkpoint to resume ----
void TrainingRun::resolve_config() {
  const TrainingOptions& a = options_;
  if (!a.resume.empty()) {
    resume_file_ = fs::path(a.resume) / kCheckpointFile;
    resume_ = read_checkpoint(resume_file_);
  }
  model_path_ = a.model;
  overrides_ = a.sets;
  if (!a.model.empty()) {
    model_toml_ = read_file(a.model);
  } else if (resume_) {
    if (!a.sets.empty()) throw InputError("--set needs --model (a resumed run keeps its checkpoint's config)");
    model_path_ = resume_->run.model_path;
    model_toml_ = resume_->run.model_toml;
    overrides_ = resume_->run.overrides;
  } else {
    throw InputError("--model is required (or --resume DIR to continue a run)");
  }
  config_ = parse_run_config(model_toml_, model_path_, overrides_);
  TrainConfig& train = config_.train;
  // Settings derived in code, not given by the user: set on the config (and so recorded in its JSON
  // in the checkpoint), never added to the --set list. A run resumed without --model takes them
  // from its checkpoint's config. (Checkpoints written before this carry them as overrides too;
  // the values agree.)
  if (resume_ && a.model.empty()) {
    const nlohmann::json saved = nlohmann::json::parse(resume_->run.config_json).value("train", nlohmann::json::object());
    train.step_offset = saved.value("step_offset", train.step_offset);
    train.reset_optimizer = saved.value("reset_optimizer", train.reset_optimizer);
    if (train.optimizer.schedule == LrSchedule::cosine)
      train.optimizer.decay_steps = saved.value("decay_steps", train.optimizer.decay_steps);
  }
  // --init-from: the global step continues from the checkpoint's (unless train.step_offset is
  // set); --reset-optimizer is train.reset_optimizer's shortcut.
  if (!a.init_from.empty()) {
    if (!resume_ && a.model.empty()) throw InputError("--init-from needs --model (the config to fine-tune)");
    init_file_ = fs::is_directory(a.init_from) ? fs::path(a.init_from) / kCheckpointFile : fs::path(a.init_from);
    if (!a.model.empty()) {  // (resuming without --model: the checkpoint's config holds these)
      const bool has_offset = std::any_of(overrides_.begin(), overrides_.end(),
                                          [](const std::string& o) { return o.starts_with("train.step_offset="); });
      if (!has_offset) train.step_offset = read_checkpoint(init_file_).run.step;
      if (a.reset_optimizer) train.reset_optimizer = true;
    }
  } else if (a.upcycle) {
    throw InputError("--upcycle applies with --init-from only (the dense checkpoint to upcycle)");
  } else if (a.reset_optimizer) {
    throw InputError("--reset-optimizer applies with --init-from only");
  }
  if (train.optimizer.schedule == LrSchedule::cosine && train.optimizer.decay_steps == 0)
    train.optimizer.decay_steps = train.step_offset + a.steps;  // the decay ends at the last step
  config_json_ = to_json(config_).dump();
  if (resume_ && config_json_ != resume_->run.config_json)
    throw InputError(fmt::format("--resume {}: {} was trained with another config: {}", a.resume, resume_file_.string(),
                                 config_differences(nlohmann::json::parse(resume_->run.config_json),
                                                    nlohmann::json::parse(config_json_))));
}

// ---- 2. the mesh: the layout is checked before any work, then MPI starts (executor/mpi/mpi_run.hpp) ----
void TrainingRun::start_mesh() {
  const TrainingOptions& a = options_;
  if (a.mesh.empty() && !a.layout.empty()) throw InputError("--layout needs --mesh (the mesh its axes belong to)");
  if (a.mesh.empty()) {
    if (const int n = MpiSession::launched_ranks(); n > 1)
      throw InputError(fmt::format("started on {} MPI ranks without --mesh: give the mesh, e.g. --mesh data:{} "
                                   "--layout batch:data",
                                   n, n));
    mpi_.emplace();
  } else {
    const Mesh mesh = parse_mesh(a.mesh);
    const Layout layout = parse_layout(a.layout, mesh);
    check_training_layout(config_.model, config_.train, mesh, layout);
    mpi_.emplace(mesh, layout);
  }
  if (Watchdog* w = mpi_->watchdog()) {
    w->set_timeout(config_.train.collective_timeout);
    // Runs on the watchdog's thread while this rank waits in MPI: record how the run ended, then
    // the watchdog ends the process (mpiexec ends the other ranks).
    w->on_expire([this, who = rank_description(mpi_->rank(), mpi_->ranks())](const std::string& message) {
      const std::string reason = who + ": " + message;
      if (mpi_->writer() && !out_.empty()) {
        try {
          write_status(out_, "failed", steps_done_.load(), reason);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "train: could not write status.json: %s\n", e.what());
        }
      }
      std::fprintf(stderr, "train: %s\n", reason.c_str());
    });
    w->on_signal_while_waiting([this, who = rank_description(mpi_->rank(), mpi_->ranks())](const std::string& message) {
      if (!mpi_->writer() || out_.empty()) return;
      try {
        write_status(out_, "failed", steps_done_.load(), who + ": " + message);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "train: could not write status.json: %s\n", e.what());
      }
    });
  }
}

// ---- 3. the data: the corpus (tokenized once into DATA/cache), or a fine-tuning task ----
void TrainingRun::prepare_data() {
  const TrainingOptions& a = options_;
  const ModelConfig& cfg = config_.model;
  const TrainConfig& train = config_.train;
  terminal_ = ::isatty(STDERR_FILENO);
  data::PrepareOptions popts;
  popts.tokenizer.vocab_size = a.vocab;
  popts.defer_write = true;  // the writer saves the cache in open_output_dir, once all input is checked
  data::ProgressFn progress;
  if (terminal_)
    progress = [](std::string_view stage, int64_t, int64_t) {
      fmt::print(stderr, "\r\033[Kdata: {}", stage);
      std::fflush(stderr);
    };
  // Every rank loads the cache, or builds the same tokens itself (tokenizer training is
  // deterministic, executor/data/tokenizer.hpp); nothing is written here.
  data_.emplace(data::prepare_brown(a.data, popts, progress));
  if (terminal_) fmt::print(stderr, "\r\033[K");
  const data::SpecialTokens special = data_->tokenizer.special_tokens();
  if (cfg.vocab < special.vocab_size)
    throw InputError(fmt::format("{}: model.vocab = {} is smaller than the tokenizer's {} ids ({}); allowed: >= {} "
                                 "(or a smaller --vocab)",
                                 model_path_, cfg.vocab, special.vocab_size, data_->cache_dir.string(), special.vocab_size));
  // A fine-tuning task replaces the corpus batches.
  if (!a.task.empty()) {
    data::FoundTask found = data::find_task(a.task, a.data);
    task_dir_ = found.dir;
    unwritten_task_ = std::move(found.unwritten);  // written in open_output_dir, once all input is checked
    auto examples = [&](const std::string& name, const std::string* text) {
      const std::string file = (task_dir_ / name).string();
      return data::tokenize_task(text ? data::parse_tsv_task(*text, file) : data::read_tsv_task(file), data_->tokenizer, file);
    };
    task_train_ = examples("train.tsv", unwritten_task_ ? &unwritten_task_->train : nullptr);
    task_validation_ = examples("validation.tsv", unwritten_task_ ? &unwritten_task_->validation : nullptr);
    majority_ = data::majority_baseline(*task_train_, *task_validation_);
  }
  data::BatchOptions& bopts = batch_options_;
  bopts.objective = cfg.has_encoder() ? data::Objective::kSpanCorruption : data::Objective::kNextToken;
  bopts.batch = train.batch;
  bopts.length = cfg.has_encoder() ? train.input_length : train.target_length;
  bopts.seed = train.seed;
  if (cfg.has_encoder() && !task_train_) {
    const auto lengths = data::span_corruption_lengths(train.input_length, bopts.noise_density, bopts.mean_noise_span_length);
    if (lengths.targets_length > train.target_length)
      throw InputError(fmt::format("{}: train.target_length = {} is shorter than the span-corruption targets of "
                                   "input_length {} ({} tokens); allowed: >= {}",
                                   model_path_, train.target_length, train.input_length, lengths.targets_length,
                                   lengths.targets_length));
  }
  if (task_train_) {
    train_source_.task.emplace(*task_train_, task_batch_options(config_, true));
    data::TaskBatchSource check(*task_validation_, task_batch_options(config_, false));  // targets fit
  } else {
    train_source_.corpus.emplace(data_->train, special, bopts);
  }
}

// ---- 4. the output directory: rank 0's records are the run's; the other ranks write nothing ----
void TrainingRun::open_output_dir() {
  const TrainingOptions& a = options_;
  if (!mpi_->writer()) return;
  out_ = a.out;
  checkpoint_file_ = out_ / kCheckpointFile;
  // Checked before anything is created or locked, so refusing DIR leaves it exactly as it was.
  std::error_code ec;
  // (build_trainer has moved --resume's checkpoint into the trainer: resume_ is empty by now.)
  const bool same_dir = !a.resume.empty() && fs::exists(out_, ec) && fs::equivalent(fs::path(a.resume), out_, ec);
  if (!same_dir && fs::exists(checkpoint_file_, ec))
    throw InputError(fmt::format("--out {} already holds a run ({}); continue it with --resume {} or choose another "
                                 "--out",
                                 a.out, checkpoint_file_.string(), a.out));
  create_output_dir(out_, "--out");
  out_lock_ = OutputDirLock(out_, "--out", "train");
  // All input is valid: what was prepared in memory goes to DATA now (the token cache, the task).
  data::save_token_cache(*data_);
  if (unwritten_task_) {
    data::write_genre_task(*unwritten_task_, task_dir_);
    unwritten_task_.reset();
  }
  metrics_file_ = out_ / "metrics.jsonl";
  if (same_dir) {
    truncate_metrics(metrics_file_, trainer_->step());  // the checkpoint's step
  } else {
    write_file_atomic(metrics_file_, "");
  }
}

// ---- 5. the trainer: restored (--resume) or initialised (--init-from); the trace ----
void TrainingRun::build_trainer() {
  const TrainConfig& train = config_.train;
  ExecutorOptions eopts;
  eopts.threads = options_.threads;
  eopts.communicator = mpi_->communicator();
  trainer_.emplace(config_, options_.steps, eopts, mpi_->layout());
  spikes_.factor = train.divergence_factor;
  if (resume_) {
    restore_state(*resume_, trainer_->state(), resume_file_);
    trainer_->set_step(resume_->run.step);
    train_source_.seek(resume_->run.data);
    spikes_.mean = resume_->run.loss_ema;
    spikes_.best_mean = resume_->run.loss_ema_best;
  } else if (!init_file_.empty() && options_.upcycle) {
    const InitFrom init = upcycle_from_checkpoint(*trainer_, init_file_);
    fmt::print(stderr, "train: upcycled from the dense {} (step {}): {} parameters copied (experts from their layer's FFN), "
               "router and optimizer state fresh\n", init.file.string(), init.step, init.parameters);
  } else if (!init_file_.empty()) {
    const InitFrom init = init_from_checkpoint(*trainer_, init_file_, train.reset_optimizer);
    fmt::print(stderr, "train: initialised from {} (step {}): {} parameters, optimizer state {}\n", init.file.string(),
               init.step, init.parameters, train.reset_optimizer ? "reset to zero" : fmt::format("kept ({} tensors)", init.optimizer_state));
  }
  trainable_ = count_trainable(trainer_->graph(), train.trainable);
  if (task_train_) decoder_.emplace(config_, eopts);
  run_state_ = RunState{0, {}, 0, config_json_, model_path_, model_toml_, overrides_};
  trace_steps_ = options_.trace.empty() ? std::set<int64_t>{} : parse_step_list(options_.trace);
  // A step this run will not run would be traced silently never.
  for (const int64_t s : trace_steps_)
    if (s <= trainer_->step() || s > options_.steps)
      throw InputError(fmt::format("--trace '{}': step {} is not run by this run (it runs steps {}..{}); allowed: steps "
                                   "in that range",
                                   options_.trace, s, trainer_->step() + 1, options_.steps));
  // The trace's process: this rank's device of the mesh (as the simulator names its device 0).
  const std::string mesh = options_.mesh.empty() ? "1" : to_string(parse_mesh(options_.mesh));
  recorder_.emplace(trainer_->program(), mpi_->rank(),
                    trace_process_name(mpi_->rank(), mesh, "measured on the CPU executor"));
  resume_.reset();  // its tensors are in the trainer now
}

// Saves a checkpoint unless the parameters or optimizer state hold a NaN/Inf (an update can
// overflow after a finite loss): then the last good checkpoint stays and the run has diverged.
bool TrainingRun::save() {
  // On a mesh, state() gathers the split tensors over every rank: called once, on every rank.
  const std::vector<StateTensor> state = trainer_->state();
  for (const StateTensor& s : state)
    for (int64_t i = 0; i < num_elements(s.type.shape); ++i)
      if (!std::isfinite(s.data[i])) return false;
  run_state_.step = trainer_->step();
  run_state_.data = train_source_.position();
  run_state_.loss_ema = spikes_.mean;
  run_state_.loss_ema_best = spikes_.best_mean;
  if (mpi_->writer()) save_checkpoint(checkpoint_file_, state, run_state_);
  return true;
}

// The corpus's validation split from its start; a task's validation examples (teacher forced and
// decoded, one line appended to DIR/task_eval.jsonl).
EvalMetrics TrainingRun::evaluate() {
  if (task_train_) {
    last_task_eval_ = evaluate_task(*trainer_, *decoder_, *task_validation_, data_->tokenizer, config_.train.eval_batches);
    nlohmann::ordered_json line = {{"step", trainer_->step()},
                                   {"exact_match", last_task_eval_->exact_match},
                                   {"target_nll", last_task_eval_->target_nll},
                                   {"examples", last_task_eval_->examples}};
    if (mpi_->writer()) append_file_checked(out_ / "task_eval.jsonl", line.dump() + "\n");
    return last_task_eval_->teacher_forced;
  }
  data::BatchOptions eval_opts = batch_options_;
  eval_opts.shuffle = false;
  eval_opts.repeat = false;
  data::BatchSource eval_source(data_->validation, data_->tokenizer.special_tokens(), eval_opts);
  return trainer_->evaluate(eval_source, config_.train.eval_batches);
}

// DIR/trace.json and trace_summary.txt, and the summary on stdout, when a step was traced. On a
// mesh every other rank r writes its trace too, DIR/trace.rank<r>.json (not into its scratch
// directory): the traces align by their clock_origin_us, which separates a collective's own time
// from the wait for the slower rank (experiments/bench_sim_mpi).
void TrainingRun::finish_trace() {
  if (recorder_->steps() == 0) return;
  if (!mpi_->writer()) {
    fs::create_directories(options_.out);
    recorder_->write(fs::path(options_.out) / fmt::format("trace.rank{}.json", mpi_->rank()));
    return;
  }
  recorder_->write(out_ / "trace.json");
  const std::string summary = recorder_->summary();
  write_file_atomic(out_ / "trace_summary.txt", summary);
  fmt::print("trace: {} ({} steps)\n{}", (out_ / "trace.json").string(), recorder_->steps(), summary);
}

// The live line on a terminal: step, losses, throughput, time left, the last evaluation.
void TrainingRun::print_progress(int64_t step, int64_t first, double elapsed, const StepMetrics& last,
                                 double tokens_per_s) const {
  const double rate = static_cast<double>(step - first) / elapsed;
  fmt::print(stderr, "\r\033[Kstep {}/{}  loss {:.4f}  ce {:.4f}  {:.0f} tok/s  ETA {}{}", step, options_.steps, last.loss,
             last.cross_entropy, tokens_per_s, duration_text(static_cast<double>(options_.steps - step) / rate),
             last_eval_ ? fmt::format("  eval nlp {:.4f}", last_eval_->neg_log_perplexity) : "");
  std::fflush(stderr);
}

TrainingSummary TrainingRun::run() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (mpi_->writer()) write_status(out_, "running", trainer_->step());
  const int64_t first = trainer_->step();
  const auto start = std::chrono::steady_clock::now();
  TrainingSummary summary;
  StepMetrics& last = summary.last;
  data::Batch batch;
  auto diverged = [&](const std::string& why) {  // status.json says why; the last good checkpoint stays
    summary.status = "diverged";
    summary.reason = why;
    summary.step = trainer_->step();
    if (mpi_->writer()) write_status(out_, summary.status, summary.step, summary.reason);
  };

  while (trainer_->step() < options_.steps) {
    if (mpi_->agree_max(g_signal.load())) break;  // every rank stops at the same step
    const int64_t step = trainer_->step() + 1;    // 1-based number of the step about to run
    const bool traced = trace_steps_.count(step) > 0;
    if (traced) {
      recorder_->begin_step(step);
      trainer_->set_op_observer([&](NodeId n, double t0, double t1) { recorder_->record(n, t0, t1); });
    }
    const auto t0 = std::chrono::steady_clock::now();
    train_source_.next(batch);
    last = trainer_->train_step(batch);
    if (!last.moe.empty()) {
      dropped_sum_ += mean_fraction_dropped(last.moe);
      ++dropped_steps_;
    }
    const double seconds = seconds_since(t0);
    steps_done_ = step;
    if (Watchdog* w = mpi_->watchdog()) w->step_done(seconds);
    if (traced) {
      trainer_->set_op_observer({});
      recorder_->end_step();
    }

    // Divergence: non-finite numbers, or a spike above the factor times the lowest running mean
    // of the loss so far.
    std::string why;
    if (!std::isfinite(last.loss) || !std::isfinite(last.grad_norm)) {
      why = fmt::format("loss {} and gradient norm {} at step {}", last.loss, last.grad_norm, step);
    } else {
      why = spikes_.check(step, last.loss);
    }

    // Scheduled evaluations go into the step's metrics line (the same steps in a resumed run).
    const bool evaluate_now = why.empty() && options_.eval_every > 0 && step % options_.eval_every == 0;
    if (evaluate_now) {
      last_eval_ = evaluate();
      eval_step_ = step;
    }
    const double elapsed = seconds_since(start);
    const StepTiming timing{seconds, static_cast<double>(last.tokens) / seconds, elapsed};
    if (mpi_->writer())
      append_file_checked(metrics_file_, metrics_line(last, train_source_.position().epoch,
                                                      evaluate_now ? &*last_eval_ : nullptr, timing) + "\n");

    if (why.empty() && options_.checkpoint_every > 0 && step % options_.checkpoint_every == 0 && step < options_.steps &&
        !save())
      why = fmt::format("the parameters hold NaN/Inf after step {}", step);
    if (!why.empty()) {
      if (terminal_) fmt::print(stderr, "\n");
      diverged(why);
      finish_trace();
      return summary;
    }
    if (terminal_) print_progress(step, first, elapsed, last, timing.tokens_per_s);
  }
  if (terminal_) fmt::print(stderr, "\n");
  finish_trace();
  // The writer's DIR may hold the checkpoint of this step already (a resume with nothing left to
  // do); every rank takes the writer's answer, since save() gathers the state on every rank.
  const bool checkpointed = mpi_->agree_max(mpi_->writer() && fs::exists(checkpoint_file_) ? 1 : 0) > 0;
  if ((trainer_->step() > first || !checkpointed) && !save()) {
    diverged(fmt::format("the parameters hold NaN/Inf after step {}", trainer_->step()));
    return summary;
  }

  summary.step = trainer_->step();
  if (const int sig = g_signal.load()) {
    summary.status = "interrupted";
    summary.reason = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (mpi_->writer()) write_status(out_, summary.status, summary.step, summary.reason);
    return summary;
  }
  if (eval_step_ != trainer_->step()) last_eval_ = evaluate();  // the final parameters' quality, in status.json
  summary.status = "completed";
  summary.eval = last_eval_;
  if (mpi_->writer()) write_status(out_, summary.status, summary.step, {}, &*last_eval_);
  if (!task_train_) {
    summary.unigram = data::unigram_baseline(data_->train, data_->validation, data_->tokenizer.special_tokens().vocab_size);
    if (mpi_->writer()) write_routing_by_pos(out_ / "routing_pos.json", *last_eval_, data_->pos_tags);
  }
  if (last_task_eval_) summary.task = finish_task();
  return summary;
}

// DIR/finetune.json (the final task evaluation beside the majority baseline) and
// DIR/predictions.tsv (input line, target, decoded output, 1/0 exact match).
TaskSummary TrainingRun::finish_task() {
  TaskSummary s;
  s.eval = *last_task_eval_;
  const TaskEval& t = s.eval;
  // The majority baseline over the evaluated examples (all of them unless train.eval_batches cuts the file).
  s.majority = *majority_;
  const auto evaluated = task_validation_->targets.begin() + t.examples;
  s.majority.accuracy = t.examples > 0 ? static_cast<double>(std::count(task_validation_->targets.begin(), evaluated,
                                                                         s.majority.target)) /
                                             static_cast<double>(t.examples)
                                       : 0.0;
  s.fraction_dropped_train = dropped_steps_ > 0 ? dropped_sum_ / static_cast<double>(dropped_steps_) : 0.0;
  s.fraction_dropped_eval = mean_fraction_dropped(t.teacher_forced.moe);
  s.trainable = trainable_;
  nlohmann::ordered_json j = {
      {"task", options_.task},
      {"train_file", (task_dir_ / "train.tsv").string()},
      {"validation_file", (task_dir_ / "validation.tsv").string()},
      {"step", trainer_->step()},
      {"exact_match", t.exact_match},
      {"target_nll", t.target_nll},
      {"token_accuracy", t.teacher_forced.accuracy},
      {"examples", t.examples},
      {"majority_baseline", {{"target", s.majority.target}, {"accuracy", s.majority.accuracy}}},
      {"fraction_dropped_train", s.fraction_dropped_train},
      {"fraction_dropped_eval", s.fraction_dropped_eval},
      {"init_from", init_file_.string()},
      {"trainable", config_.train.trainable},
      {"trainable_parameters", trainable_.trainable_elements},
      {"frozen_parameters", trainable_.frozen_elements}};
  if (!mpi_->writer()) return s;
  write_file_atomic((out_ / "finetune.json").string(), j.dump(2) + "\n");
  std::string predictions;
  for (size_t i = 0; i < t.outputs.size(); ++i)
    predictions += fmt::format("{}\t{}\t{}\t{}\n", task_validation_->examples[i].line, task_validation_->targets[i],
                               t.outputs[i], t.correct[i] ? 1 : 0);
  write_file_atomic((out_ / "predictions.tsv").string(), predictions);
  return s;
}

}  // namespace sy
