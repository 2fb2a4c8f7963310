// Times training steps of a model config in Switchyard (the Trainer: forward, backward, optimizer
// in one graph on the CPU executor) on seeded random tokens (or the Brown corpus with --data DIR),
// and prints tokens/s and FLOP/s.
// experiments/bench_train runs it beside the PyTorch model of experiments/bench_train_torch.py.
//
//   build/bin/bench_train_step                               # bench_moe, f32, AdamW, 2 threads
//   build/bin/bench_train_step --precision bf16 --steps 5 --warmup 2
//   build/bin/bench_train_step --precision bf16 --activations bf16  # ST-MoE's recipe: bf16 activations
//   build/bin/bench_train_step --profile 30                  # plus the 30 slowest ops and time per op kind
//
// FLOPs per step come from the ops' analytic costs (OpDef::cost) over the training graph, in two
// counts: "graph" counts every op as the graph states it, including the Mesh-TF-style dense
// dispatch/combine einsums over one-hot [G, S, E, C] tensors (what the simulator prices); "model"
// leaves out the einsums of the MoE dispatch scopes (the routing bookkeeping: PyTorch-style
// implementations gather and scatter instead), i.e. it counts the transformer's matmuls, the
// expert FFNs at capacity and the elementwise work. Both are reported; "model" is the one to
// compare with a peak.
//
// --profile times every op of the timed steps and prints, per op kind and for the slowest ops, its
// median time over the timed steps (one step slowed by another process does not set the figure)
// against the op's own bound: max(FLOPs / matmul peak at the op's dtype, bytes / stream
// bandwidth, transcendentals / exp rate), FLOPs, bytes read + written and transcendentals (exp,
// log, rsqrt, tanh evaluations) from OpDef::cost, the limits measured on this machine
// at the same thread count first (experiments/bench/machine_limits.hpp). The einsums of the MoE
// dispatch scopes are listed as their own kind, "einsum (dispatch)", bounded by their bytes alone:
// their dense FLOPs count one-hot products the executor skips (executor/sparse_einsum.hpp). "of
// bound" is bound / time: 100% runs at the machine's limit.
//
// Output: a human-readable block, then one line `RESULT {json}` for scripts (with --profile, also
// the per-kind rows).
#include "executor/data/batches.hpp"
#include "executor/data/cache.hpp"
#include "executor/kernel_choice.hpp"
#include "executor/train/checkpoint.hpp"
#include "executor/train/trainer.hpp"
#include "experiments/bench/machine_limits.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/models/model_config.hpp"
#include "graph/op_def.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <string>
#include <vector>

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Args {
  std::string model = "experiments/configs/models/bench_moe.toml";
  std::vector<std::string> sets;
  std::string precision = "f32";
  std::string activations = "f32";
  std::string optimizer = "adamw";
  int steps = 3;
  int warmup = 1;
  int threads = 2;
  int profile = 0;
  uint64_t seed = 1;
  std::string kernel_probe;  // "" : SY_KERNEL_PROBE's mode
  bool padded = false;       // expert buffers over every capacity slot (ExecutorOptions::ragged_rows off)
  std::string data;          // "": random tokens; else a data directory (the Brown corpus, tokenized at the model's vocab)
  std::string init_from;     // "": fresh parameters; else a `train` run directory whose checkpoint is loaded first
};

// A next-token batch of uniformly random token ids in [4, vocab) (ids below 4 are special).
sy::data::Batch random_batch(int64_t B, int64_t T, int64_t vocab, std::mt19937_64& rng) {
  sy::data::Batch b;
  b.objective = sy::data::Objective::kNextToken;
  b.batch = B;
  b.inputs_length = b.targets_length = T;
  std::uniform_int_distribution<int32_t> tok(4, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> seq(static_cast<size_t>(B * (T + 1)));
  for (int32_t& x : seq) x = tok(rng);
  for (int64_t r = 0; r < B; ++r)
    for (int64_t t = 0; t < T; ++t) {
      b.inputs.push_back(seq[static_cast<size_t>(r * (T + 1) + t)]);
      b.targets.push_back(seq[static_cast<size_t>(r * (T + 1) + t + 1)]);
    }
  b.inputs_pos.assign(b.inputs.size(), 0);
  b.targets_pos.assign(b.targets.size(), 0);
  b.weights.assign(b.targets.size(), 1.0f);
  return b;
}

bool in_dispatch_scope(const std::string& scope) {
  const std::string tail = "/dispatch";
  return scope.size() >= tail.size() && scope.compare(scope.size() - tail.size(), tail.size(), tail) == 0;
}

std::string node_signature(const sy::Graph& g, const sy::Node& n) {
  std::string s;
  for (sy::ValueId v : n.inputs) s += (s.empty() ? "" : ", ") + sy::to_string(g.type(v));
  s += " -> ";
  for (size_t i = 0; i < n.outputs.size(); ++i) s += (i ? ", " : "") + sy::to_string(g.type(n.outputs[i]));
  return s;
}

// The bf16 einsum paths chosen for this machine (executor/kernel_choice.hpp).
void print_kernel_choices(const std::vector<sy::exec::KernelChoice>& choices, int threads) {
  if (choices.empty()) return;
  int widened = 0, probed = 0;
  for (const auto& c : choices) {
    widened += c.path == sy::exec::Bf16Path::widened;
    probed += c.source == "probed";
  }
  const std::string file = sy::exec::kernel_cache_file(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
  fmt::print("kernel choice for bf16 einsums ({}; cache {}): {} shapes, {} native, {} widened to f32; {} probed now\n",
             choices.front().source == "off" ? "probing off" : "probed per shape", file.empty() ? "none" : file,
             choices.size(), static_cast<int>(choices.size()) - widened, widened, probed);
  for (const auto& c : choices)
    if (c.source != "off")
      fmt::print("  {:<8} native {:8.3f} ms  widened {:8.3f} ms  ({})  {}\n",
                 c.path == sy::exec::Bf16Path::native ? "native" : "widened", c.native_s * 1e3, c.widened_s * 1e3, c.source,
                 c.shape);
}

int run(const Args& a) {
  if (a.activations == "bf16" && a.precision != "bf16")
    throw sy::InputError("--activations bf16 needs --precision bf16 (activations in bf16 are part of the bf16 recipe)");
  sy::RunConfig run_config = sy::parse_run_config(sy::read_file(a.model), a.model, a.sets);
  // --precision and --optimizer (checked by the command line) replace the config's.
  run_config.train.precision = a.precision == "bf16" ? sy::DType::bf16 : sy::DType::f32;
  run_config.train.activation_dtype = a.activations == "bf16" ? sy::DType::bf16 : sy::DType::f32;
  run_config.train.optimizer.kind = *sy::enum_from_name<sy::OptimizerKind>(a.optimizer);
  const sy::ModelConfig& cfg = run_config.model;
  if (cfg.has_encoder())
    throw sy::InputError(fmt::format("{}: bench_train_step times decoder-only models (next-token batches); this one has an encoder",
                                     a.model));
  sy::ExecutorOptions eopts;
  eopts.threads = a.threads;
  eopts.ragged_rows = !a.padded;
  if (!a.kernel_probe.empty())
    sy::exec::set_probe_mode(a.kernel_probe == "off"       ? sy::exec::ProbeMode::off
                             : a.kernel_probe == "reprobe" ? sy::exec::ProbeMode::reprobe
                                                           : sy::exec::ProbeMode::auto_);
  sy::Trainer trainer(run_config, a.warmup + a.steps, eopts);
  const sy::Graph& g = trainer.graph();
  const std::vector<sy::exec::KernelChoice> choices = sy::exec::kernel_choices();
  print_kernel_choices(choices, a.threads);

  // FLOPs per step from the ops' costs.
  double graph_flops = 0, dispatch_flops = 0;
  std::vector<double> node_flops(g.nodes.size());
  for (const sy::Node& n : g.nodes) {
    std::vector<sy::TensorType> in, out;
    for (sy::ValueId v : n.inputs) in.push_back(g.type(v));
    for (sy::ValueId v : n.outputs) out.push_back(g.type(v));
    const double f = sy::op_def(n.kind).cost(in, out, n.attrs).flops;
    node_flops[static_cast<size_t>(n.id.v)] = f;
    graph_flops += f;
    if (n.kind == sy::OpKind::einsum && in_dispatch_scope(n.scope)) dispatch_flops += f;
  }
  const double model_flops = graph_flops - dispatch_flops;

  // Per node: the kind it is profiled under, its bytes and its bound (filled with --profile).
  std::vector<std::string> node_kind(g.nodes.size());
  std::vector<double> node_bytes(g.nodes.size()), node_transcendentals(g.nodes.size()), node_bound_us(g.nodes.size());
  for (const sy::Node& n : g.nodes) {
    const auto i = static_cast<size_t>(n.id.v);
    const bool dispatch = n.kind == sy::OpKind::einsum && in_dispatch_scope(n.scope);
    node_kind[i] = std::string(sy::op_name(n.kind)) + (dispatch ? " (dispatch)" : "");
    std::vector<sy::TensorType> in, out;
    for (sy::ValueId v : n.inputs) in.push_back(g.type(v));
    for (sy::ValueId v : n.outputs) out.push_back(g.type(v));
    const sy::OpCost c = sy::op_def(n.kind).cost(in, out, n.attrs);
    node_bytes[i] = c.bytes_read + c.bytes_written;
    node_transcendentals[i] = c.transcendentals;
  }
  sy::bench::MachineLimits limits;
  if (a.profile > 0) {
    limits = sy::bench::measure_machine_limits(a.threads);
    fmt::print("machine ({} threads): matmul f32 {:.0f} GFLOP/s, bf16 {:.0f} GFLOP/s; stream bandwidth {:.1f} GB/s; "
               "exp {:.2f} G/s\n",
               a.threads, limits.matmul_f32 * 1e-9, limits.matmul_bf16 * 1e-9, limits.bandwidth * 1e-9,
               limits.exp_rate * 1e-9);
    for (const sy::Node& n : g.nodes) {
      const auto i = static_cast<size_t>(n.id.v);
      const bool dispatch = n.kind == sy::OpKind::einsum && in_dispatch_scope(n.scope);
      const sy::DType dt = n.inputs.empty() ? sy::DType::f32 : g.type(n.inputs[0]).dtype;
      const double flop_us = dispatch ? 0.0 : node_flops[i] / limits.matmul(dt) * 1e6;
      node_bound_us[i] = std::max({flop_us, node_bytes[i] / limits.bandwidth * 1e6,
                                   node_transcendentals[i] / limits.exp_rate * 1e6});
    }
  }

  // --init-from: the parameters and optimizer state of a trained run (routing as training left it).
  if (!a.init_from.empty()) {
    const std::filesystem::path path = std::filesystem::path(a.init_from) / "checkpoint.safetensors";
    const sy::Checkpoint ckpt = sy::read_checkpoint(path);
    sy::restore_state(ckpt, trainer.state(), path);
    trainer.set_step(ckpt.run.step);
  }

  std::mt19937_64 rng(a.seed);
  const int64_t B = run_config.train.batch, T = trainer.inputs_length();
  // --data: next-token batches of the Brown corpus (routing as text gives it), tokenized at the
  // model's vocabulary (cached under DATA/cache); else uniformly random tokens.
  std::optional<sy::data::PreparedData> prepared;
  std::optional<sy::data::BatchSource> source;
  if (!a.data.empty()) {
    sy::data::PrepareOptions popts;
    popts.tokenizer.vocab_size = cfg.vocab;
    prepared.emplace(sy::data::prepare_brown(a.data, popts));
    sy::data::BatchOptions bopts;
    bopts.batch = B;
    bopts.length = T;
    bopts.seed = a.seed;
    source.emplace(prepared->train, prepared->tokenizer.special_tokens(), bopts);
  }
  // Per node, its time in each measured step; the profile reports the median over the steps, so one
  // step disturbed by another process on the shared cores does not set an op's figure.
  std::vector<std::vector<double>> op_step_us(g.nodes.size(), std::vector<double>(static_cast<size_t>(a.steps), 0.0));
  std::vector<bool> ran(g.nodes.size(), false);  // reported by the executor at least once
  double timed = 0, last_loss = 0, dropped_sum = 0;
  int64_t dropped_n = 0;
  nlohmann::json profile_rows = nlohmann::json::array();
  for (int s = 0; s < a.warmup + a.steps; ++s) {
    sy::data::Batch batch;
    if (source) source->next(batch);
    else batch = random_batch(B, T, cfg.vocab, rng);
    const bool measured = s >= a.warmup;
    if (measured && a.profile > 0)
      trainer.set_op_observer([&](sy::NodeId n, double t0, double t1) {
        op_step_us[static_cast<size_t>(n.v)][static_cast<size_t>(s - a.warmup)] += t1 - t0;
        if (t1 > t0) ran[static_cast<size_t>(n.v)] = true;  // begin == end: the executor skipped it
      });
    const auto t0 = std::chrono::steady_clock::now();
    const sy::StepMetrics m = trainer.train_step(batch);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    trainer.set_op_observer({});
    last_loss = m.loss;
    if (measured)  // routed choices dropped by capacity, over the MoE layers: Σ_rank dropped / k
      for (const sy::MoeLayerMetrics& l : m.moe) {
        double d = 0;
        for (double x : l.fraction_dropped) d += x;
        dropped_sum += l.fraction_dropped.empty() ? 0.0 : d / static_cast<double>(l.fraction_dropped.size());
        ++dropped_n;
      }
    fmt::print("step {:>3} {:<7} {:>8.3f} s  {:>8.0f} tokens/s  loss {:.4f}\n", s + 1, measured ? "" : "(warm)", sec,
               static_cast<double>(trainer.tokens_per_step()) / sec, m.loss);
    std::fflush(stdout);
    if (measured) timed += sec;
  }
  const double sec_per_step = timed / a.steps;
  const double tokens_per_s = static_cast<double>(trainer.tokens_per_step()) / sec_per_step;
  fmt::print("switchyard {} {} ({} activations): {:.3f} s/step, {:.0f} tokens/s, graph {:.1f} GFLOP/step ({:.1f} GFLOP/s), "
             "model {:.1f} GFLOP/step ({:.1f} GFLOP/s)\n",
             cfg.name, a.precision, a.activations, sec_per_step, tokens_per_s, graph_flops * 1e-9, graph_flops / sec_per_step * 1e-9,
             model_flops * 1e-9, model_flops / sec_per_step * 1e-9);

  const double dropped = dropped_n > 0 ? dropped_sum / static_cast<double>(dropped_n) : 0.0;
  if (dropped_n > 0) fmt::print("routed choices dropped (mean over the timed steps and MoE layers): {:.2f}%\n", 100 * dropped);

  if (a.profile > 0) {
    std::vector<double> op_us(g.nodes.size());  // median µs per step
    for (size_t i = 0; i < op_us.size(); ++i) op_us[i] = median(op_step_us[i]);
    const double total_us = std::max(1e-9, [&] {
      double t = 0;
      for (double x : op_us) t += x;
      return t;
    }());
    struct KindRow {
      double us = 0, bound_us = 0, flops = 0, bytes = 0;
      int calls = 0;
    };
    std::map<std::string, KindRow> by_kind;
    int64_t not_run = 0;
    for (const sy::Node& n : g.nodes) {
      const auto i = static_cast<size_t>(n.id.v);
      if (!ran[i]) {  // the executor skips it: a CSE duplicate, or a bf16 -> f32 cast its readers read through
        ++not_run;
        continue;
      }
      KindRow& k = by_kind[node_kind[i]];
      k.us += op_us[i];
      k.bound_us += node_bound_us[i];
      k.flops += node_flops[i];
      k.bytes += node_bytes[i];
      ++k.calls;
    }
    std::vector<std::pair<std::string, KindRow>> kinds(by_kind.begin(), by_kind.end());
    std::sort(kinds.begin(), kinds.end(), [](const auto& x, const auto& y) { return x.second.us > y.second.us; });
    fmt::print("\nop kind              ms/step   share  calls   bound ms  of bound   GFLOP      MB\n");
    for (const auto& [k, v] : kinds) {
      if (v.us <= 0) continue;
      fmt::print("{:<18} {:>9.1f} {:>6.1f}% {:>6} {:>10.2f} {:>8.0f}% {:>7.1f} {:>7.0f}\n", k, v.us * 1e-3,
                 100 * v.us / total_us, v.calls, v.bound_us * 1e-3, 100 * v.bound_us / v.us, v.flops * 1e-9,
                 v.bytes * 1e-6);
      nlohmann::json row;
      row["kind"] = k;
      row["ms"] = v.us * 1e-3;
      row["share"] = v.us / total_us;
      row["calls"] = v.calls;
      row["bound_ms"] = v.bound_us * 1e-3;
      row["of_bound"] = v.bound_us / v.us;
      profile_rows.push_back(row);
    }
    double bound_total = 0;
    for (size_t i = 0; i < node_bound_us.size(); ++i)
      if (ran[i]) bound_total += node_bound_us[i];
    fmt::print("{:<18} {:>9.1f} {:>6.1f}% {:>6} {:>10.2f} {:>8.0f}%\n", "all ops", total_us * 1e-3, 100.0,
               static_cast<int64_t>(g.nodes.size()) - not_run, bound_total * 1e-3, 100 * bound_total / total_us);
    fmt::print("({} of {} nodes do not run: CSE duplicates, and bf16 -> f32 casts whose readers read the bf16 value)\n",
               not_run, g.nodes.size());
    std::vector<const sy::Node*> order;
    for (const sy::Node& n : g.nodes) order.push_back(&n);
    std::sort(order.begin(), order.end(), [&](const sy::Node* x, const sy::Node* y) {
      return op_us[static_cast<size_t>(x->id.v)] > op_us[static_cast<size_t>(y->id.v)];
    });
    fmt::print("\nslowest ops (ms/step, GFLOP/s, of bound, node, kind, scope, types)\n");
    for (int i = 0; i < a.profile && i < static_cast<int>(order.size()); ++i) {
      const sy::Node& n = *order[static_cast<size_t>(i)];
      const double us = op_us[static_cast<size_t>(n.id.v)];
      fmt::print("{:>9.2f} {:>8.1f} {:>5.0f}%  n{:<5} {:<14} {:<36} {}\n", us * 1e-3,
                 node_flops[static_cast<size_t>(n.id.v)] / std::max(us, 1e-9) * 1e-3,
                 100 * node_bound_us[static_cast<size_t>(n.id.v)] / std::max(us, 1e-9), n.id.v, sy::op_name(n.kind), n.scope,
                 node_signature(g, n));
    }
  }

  nlohmann::json r;
  r["impl"] = "switchyard";
  r["model"] = cfg.name;
  r["precision"] = a.precision;
  r["activations"] = a.activations;
  r["threads"] = a.threads;
  r["steps"] = a.steps;
  r["seconds_per_step"] = sec_per_step;
  r["tokens_per_s"] = tokens_per_s;
  r["graph_gflop_per_step"] = graph_flops * 1e-9;
  r["model_gflop_per_step"] = model_flops * 1e-9;
  r["graph_gflops"] = graph_flops / sec_per_step * 1e-9;
  r["model_gflops"] = model_flops / sec_per_step * 1e-9;
  r["loss"] = last_loss;
  r["fraction_dropped"] = dropped;
  r["padded"] = a.padded;
  r["data"] = a.data.empty() ? "random" : a.data;
  r["init_from"] = a.init_from;
  for (const auto& c : choices)
    r["kernel_choices"].push_back({{"shape", c.shape},
                                   {"path", c.path == sy::exec::Bf16Path::native ? "native" : "widened"},
                                   {"native_s", c.native_s},
                                   {"widened_s", c.widened_s},
                                   {"source", c.source}});
  if (a.profile > 0) {
    r["matmul_gflops_f32"] = limits.matmul_f32 * 1e-9;
    r["matmul_gflops_bf16"] = limits.matmul_bf16 * 1e-9;
    r["bandwidth_gbs"] = limits.bandwidth * 1e-9;
    r["profile"] = profile_rows;
  }
  fmt::print("RESULT {}\n", r.dump());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("bench_train_step", [&] {
    CLI::App app{"Times training steps of a decoder-only model config in Switchyard on random tokens (or the Brown corpus: --data); prints tokens/s "
                 "and FLOP/s (see experiments/bench_train for the side-by-side comparison with PyTorch)"};
    Args a;
    app.add_option("--model", a.model, "model config (TOML)")->capture_default_str();
    app.add_option("--set", a.sets, "override a config key: section.key=value (repeatable)");
    app.add_option("--precision", a.precision, "f32 or bf16 (ST-MoE selective precision)")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    app.add_option("--activations", a.activations,
                   "with --precision bf16: f32 (selective precision: the einsums in bf16, everything else in f32) or "
                   "bf16 (Mesh-TF's activation_dtype = bfloat16, as ST-MoE trained: the router and the loss stay f32)")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    app.add_option("--optimizer", a.optimizer, "adamw or adafactor")->check(CLI::IsMember({"adamw", "adafactor"}))->capture_default_str();
    app.add_option("--steps", a.steps, "timed steps")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--warmup", a.warmup, "untimed steps first")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--threads", a.threads, "threads for the kernels (0: all cores)")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--profile", a.profile, "also print time per op kind and the N slowest ops")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--seed", a.seed, "seed of the random tokens")->capture_default_str();
    app.add_option("--kernel-probe", a.kernel_probe,
                   "bf16 einsum path per shape (executor/kernel_choice.hpp): auto (cached, probing new shapes), reprobe "
                   "(probe again, overwrite the cache), off (native bf16 wherever the CPU has it); default: "
                   "$SY_KERNEL_PROBE, else auto")
        ->check(CLI::IsMember({"auto", "reprobe", "off"}));
    app.add_option("--data", a.data,
                   "a data directory holding the Brown corpus (scripts/fetch_data.sh): train on its text, tokenized "
                   "at the model's vocabulary, instead of random tokens");
    app.add_option("--init-from", a.init_from,
                   "a run directory of `train` with this model: start from its checkpoint (parameters, optimizer state, "
                   "step) instead of fresh parameters");
    app.add_flag("--padded", a.padded,
                 "compute the expert buffers over every capacity slot, zero rows included (the executor's ragged rows "
                 "off: executor/ragged_rows.hpp), for comparison");
    sy::parse_command_line(app, argc, argv);
    return run(a);
  });
}
