// Fine-tuning: starting from a pre-trained checkpoint, and evaluating a text-to-text task by
// greedy decoding (ST-MoE §4; the tool is experiments/train.cpp --init-from / --task).
//
// init_from_checkpoint loads the parameters of a Switchyard checkpoint into a trainer by name,
// whatever the checkpoint's other settings were (capacity factors, dropout, optimizer, steps):
// every parameter of the model must be in the checkpoint with the same shape, and every
// parameter of the checkpoint must be in the model (a missing, extra or reshaped tensor is an
// InputError naming the file and the tensor). With reset_optimizer the optimizer state starts at
// zero (ST-MoE Table 20); otherwise the checkpoint's state of every trainable parameter is kept
// (it must be there with the same shape: the same optimizer kind and factoring). Frozen
// parameters (train.trainable) have no state; the checkpoint's state of them is ignored.
//
// Greedy decoding (TaskDecoder): an eval-mode graph of the model (eval CF and policy, no dropout)
// with a "predictions" output (argmax per position) and the trainer's current parameters. For a
// batch, the decoder input starts empty (encoder-decoder: a pad; decoder-only: the prompt
// input + eos) and the graph is re-run on the growing prefix, appending each row's argmax at its
// next position, until every row has produced eos or the longest target of the split plus two
// tokens. Exact match: the generated tokens before eos equal the target's tokens, and eos was
// generated. Re-running the whole model per token is fine for short targets (genre labels are 1 to
// 4 tokens); there is no key/value cache.
#pragma once

#include "executor/data/tsv.hpp"
#include "executor/executor.hpp"
#include "executor/train/trainer.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace sy {

struct InitFrom {
  std::filesystem::path file;  // the checkpoint read
  int64_t step = 0;            // its updates done
  int64_t parameters = 0;      // tensors loaded
  int64_t optimizer_state = 0; // state tensors loaded (0 with reset)
};

// `path`: a checkpoint file or a run directory holding checkpoint.safetensors. Writes into
// trainer.state(). Throws InputError as described above.
InitFrom init_from_checkpoint(Trainer& trainer, const std::filesystem::path& path, bool reset_optimizer);

// Sparse upcycling (Komatsuzaki et al. 2022, arXiv 2212.05055): an MoE model from a dense model's
// checkpoint. Every parameter the two share by name and shape is copied; on each sparse layer
// every expert of "<layer>/moe/experts/<w>" [experts, ...] is a copy of the dense layer's
// "<layer>/ffn/<w>" [...], and "<layer>/moe_norm/scale" is the dense "<layer>/ffn_norm/scale". The
// router, the shared experts, the balance bias and the MoE-only layers (extra_ffn) keep their
// fresh initialisation; the optimizer state starts at zero. Throws InputError naming the file,
// the tensor and both shapes for a dense tensor that does not fit (another d_model, d_ff, expert
// d_ff or vocabulary), a dense parameter this model cannot take (more layers, another
// architecture) or a checkpoint that already has experts.
InitFrom upcycle_from_checkpoint(Trainer& trainer, const std::filesystem::path& path);

// Parameters the config trains and freezes (by train.trainable), counted in tensors and elements.
struct TrainableCount {
  int64_t trainable_tensors = 0, frozen_tensors = 0;
  int64_t trainable_elements = 0, frozen_elements = 0;
};
TrainableCount count_trainable(const Graph& g, const std::string& trainable);

struct TaskEval {
  int64_t examples = 0;
  double exact_match = 0;           // fraction of examples whose greedy output is the target
  double target_nll = 0;            // nats per target token (eos included), teacher forced
  EvalMetrics teacher_forced;       // the teacher-forced pass (token accuracy, MoE metrics)
  std::vector<std::string> outputs; // the decoded text per example, in file order
  std::vector<bool> correct;
};

class TaskDecoder {
 public:
  TaskDecoder(const RunConfig& config, ExecutorOptions exec = {});
  ~TaskDecoder();
  TaskDecoder(const TaskDecoder&) = delete;
  TaskDecoder& operator=(const TaskDecoder&) = delete;

  // Greedy outputs of the split's examples (up to `max_batches` batches of train.batch rows in
  // file order; 0: all) with the trainer's current parameters.
  std::vector<std::vector<int32_t>> decode(Trainer& trainer, const data::TaskSplit& split, int64_t max_batches);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The task batch options for a model config: its architecture, and the [train] batch, lengths and
// seed.
data::TaskBatchOptions task_batch_options(const RunConfig& c, bool train);

// Teacher-forced NLL (Trainer::evaluate on the task's batches) and greedy exact match, over the
// first `max_batches` batches of the split in file order (0: all).
TaskEval evaluate_task(Trainer& trainer, TaskDecoder& decoder, const data::TaskSplit& split, const data::Tokenizer& tokenizer,
                       int64_t max_batches);

}  // namespace sy
