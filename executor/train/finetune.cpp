#include "executor/train/finetune.hpp"

#include "executor/train/checkpoint.hpp"
#include "graph/error.hpp"
#include "graph/models/training_graph.hpp"
#include "graph/models/transformer.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <set>

namespace fs = std::filesystem;

namespace sy {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) { return nlohmann::json(shape).dump(); }

std::vector<int64_t> sizes_of(const Shape& s) {
  std::vector<int64_t> out;
  for (const Dim& d : s) out.push_back(d.size);
  return out;
}

[[noreturn]] void fail_init(const fs::path& file, const std::string& what) {
  throw InputError(fmt::format("--init-from {}: {}", file.string(), what));
}

}  // namespace

InitFrom init_from_checkpoint(Trainer& trainer, const fs::path& path, bool reset_optimizer) {
  InitFrom r;
  r.file = fs::is_directory(path) ? path / kCheckpointFile : path;
  const Checkpoint ckpt = read_checkpoint(r.file);
  r.step = ckpt.run.step;
  auto fail = [&](const std::string& what) { fail_init(r.file, what); };
  const std::vector<StateTensor> state = trainer.state();
  std::set<std::string> params;
  for (const StateTensor& s : state) {
    const bool slot = is_optimizer_state(s.name);
    if (!slot) params.insert(s.name);
    if (slot && reset_optimizer) {
      std::memset(s.data, 0, static_cast<size_t>(num_bytes(s.type)));
      continue;
    }
    const SafetensorsTensor* t = ckpt.file.find(s.name);
    if (!t) {
      if (slot)
        fail_init(r.file, fmt::format("has no optimizer state '{}' {} to keep (the checkpoint was trained with another optimizer, "
                         "factoring or set of trainable parameters); set train.reset_optimizer = true (--reset-optimizer) "
                         "to start it at zero",
                         s.name, to_string(s.type)));
      fail_init(r.file, fmt::format("has no parameter '{}' {} of this model (a checkpoint of another model?)", s.name,
                                    to_string(s.type)));
    }
    if (t->dtype != DType::f32 || t->shape != sizes_of(s.type.shape))
      fail(fmt::format("tensor '{}' is {} {} in the checkpoint but {} in this model", s.name, dtype_name(t->dtype),
                       shape_text(t->shape), to_string(s.type)));
    std::memcpy(s.data, t->bytes.data(), t->bytes.size());
    ++(slot ? r.optimizer_state : r.parameters);
  }
  for (const SafetensorsTensor& t : ckpt.file.tensors)
    if (!is_optimizer_state(t.name) && !params.count(t.name))
      fail(fmt::format("parameter '{}' {} of the checkpoint is not part of this model (a checkpoint of another model?)",
                       t.name, shape_text(t.shape)));
  return r;
}

InitFrom upcycle_from_checkpoint(Trainer& trainer, const fs::path& path) {
  InitFrom r;
  r.file = fs::is_directory(path) ? path / kCheckpointFile : path;
  const Checkpoint ckpt = read_checkpoint(r.file);
  r.step = ckpt.run.step;
  auto fail = [&](const std::string& what) { fail_init(r.file, "upcycling: " + what); };
  for (const SafetensorsTensor& t : ckpt.file.tensors)
    if (t.name.find("/moe/") != std::string::npos)
      fail(fmt::format("'{}' is an MoE tensor: upcycling starts from a dense model's checkpoint", t.name));
  // The dense tensor each MoE parameter starts from: the same name, or a layer's FFN for its experts.
  auto source_of = [](const std::string& name) -> std::string {
    const size_t moe = name.find("/moe/experts/");
    if (moe != std::string::npos) return name.substr(0, moe) + "/ffn/" + name.substr(moe + 13);
    const size_t norm = name.find("/moe_norm/");
    if (norm != std::string::npos) return name.substr(0, norm) + "/ffn_norm/" + name.substr(norm + 10);
    return name;
  };
  std::set<std::string> used;
  for (const StateTensor& s : trainer.state()) {
    if (is_optimizer_state(s.name)) {
      std::memset(s.data, 0, static_cast<size_t>(num_bytes(s.type)));
      continue;
    }
    const std::string src = source_of(s.name);
    const SafetensorsTensor* t = ckpt.file.find(src);
    if (!t) continue;  // router, shared experts, balance bias, extra FFN: fresh
    const std::vector<int64_t> want = sizes_of(s.type.shape);
    const bool experts = src != s.name && s.name.find("/moe/experts/") != std::string::npos;
    const std::vector<int64_t> per = experts ? std::vector<int64_t>(want.begin() + 1, want.end()) : want;
    if (t->dtype != DType::f32 || t->shape != per)
      fail(fmt::format("dense tensor '{}' is {} {}, but '{}' needs {}{}", src, dtype_name(t->dtype), shape_text(t->shape),
                       s.name, shape_text(per), experts ? " per expert (is moe.d_ff the dense d_ff?)" : ""));
    const size_t bytes = t->bytes.size();
    const int64_t copies = experts ? want.front() : 1;
    for (int64_t e = 0; e < copies; ++e) std::memcpy(reinterpret_cast<char*>(s.data) + static_cast<size_t>(e) * bytes, t->bytes.data(), bytes);
    used.insert(src);
    ++r.parameters;
  }
  for (const SafetensorsTensor& t : ckpt.file.tensors)
    if (!is_optimizer_state(t.name) && !used.count(t.name))
      fail(fmt::format("dense parameter '{}' {} has no place in this model (another architecture or more layers?)",
                       t.name, shape_text(t.shape)));
  return r;
}

TrainableCount count_trainable(const Graph& g, const std::string& trainable) {
  TrainableCount c;
  for (ValueId p : g.parameters()) {
    const int64_t n = num_elements(g.type(p).shape);
    if (parameter_is_trainable(trainable, g.value(p).name)) {
      ++c.trainable_tensors;
      c.trainable_elements += n;
    } else {
      ++c.frozen_tensors;
      c.frozen_elements += n;
    }
  }
  return c;
}

data::TaskBatchOptions task_batch_options(const RunConfig& c, bool train) {
  const TrainConfig& t = c.train;
  data::TaskBatchOptions o;
  o.encoder_decoder = c.model.has_encoder();
  o.batch = t.batch;
  o.inputs_length = c.model.has_encoder() ? t.input_length : t.target_length;
  o.targets_length = t.target_length;
  o.seed = t.seed;
  o.shuffle = train;
  o.repeat = train;
  return o;
}

// ---- greedy decoding ----

struct TaskDecoder::Impl {
  RunConfig config;
  ModelGraph model;
  std::unique_ptr<Executor> ex;
  ValueId predictions;

  Impl(const RunConfig& c, ExecutorOptions exec) : config(c) {
    BuildOptions o;
    o.mode = Mode::eval;
    o.batch = c.train.batch;
    o.moe_metrics = false;
    o.accuracy = false;
    o.predictions = true;
    model = build_model(config.model, config.train, o);
    auto p = model.graph.find_output("predictions");
    SY_CHECK(p.has_value(), "decoding graph has no predictions output");
    predictions = *p;
    ex = std::make_unique<Executor>(model.graph, std::move(exec));
  }

  void load_parameters(Trainer& trainer) {
    for (const StateTensor& s : trainer.state()) {
      if (is_optimizer_state(s.name)) continue;
      auto leaf = model.graph.find_leaf(s.name);
      SY_CHECK(leaf.has_value(), "decoding graph has no parameter '{}'", s.name);
      std::memcpy(ex->data(*leaf), s.data, static_cast<size_t>(num_bytes(s.type)));
    }
    *static_cast<int32_t*>(ex->data(model.step)) = 0;
  }
};

TaskDecoder::TaskDecoder(const RunConfig& config, ExecutorOptions exec)
    : impl_(std::make_unique<Impl>(config, std::move(exec))) {}
TaskDecoder::~TaskDecoder() = default;

std::vector<std::vector<int32_t>> TaskDecoder::decode(Trainer& trainer, const data::TaskSplit& split, int64_t max_batches) {
  Impl& m = *impl_;
  m.load_parameters(trainer);
  const ModelConfig& c = m.config.model;
  const data::TaskBatchOptions opts = task_batch_options(m.config, false);
  data::TaskBatchSource source(split, opts);
  const int64_t B = opts.batch, T_in = opts.inputs_length, T_out = opts.targets_length;
  size_t longest = 0;
  for (const data::TaskExample& e : split.examples) longest = std::max(longest, e.target.size());
  std::vector<std::vector<int32_t>> out(split.examples.size());
  auto* dec_in = static_cast<int32_t*>(m.ex->data(m.model.decoder_input_tokens));
  auto* targets = static_cast<int32_t*>(m.ex->data(m.model.decoder_target_tokens));
  std::fill_n(targets, B * T_out, data::kPadId);  // unused by the predictions; any valid id

  data::Batch batch;
  std::vector<int64_t> rows;
  for (int64_t nb = 0; (max_batches == 0 || nb < max_batches) && source.next(batch, &rows); ++nb) {
    std::vector<int64_t> start(static_cast<size_t>(B), 0);  // position whose prediction is the first new token
    std::vector<bool> done(static_cast<size_t>(B), false);
    std::fill_n(dec_in, B * T_out, data::kPadId);
    for (int64_t r = 0; r < B; ++r) {
      const int64_t i = rows[static_cast<size_t>(r)];
      if (i < 0) {
        done[static_cast<size_t>(r)] = true;
        continue;
      }
      if (!c.has_encoder()) {
        const std::vector<int32_t> p = source.prompt(i);
        std::copy(p.begin(), p.end(), dec_in + r * T_out);
        start[static_cast<size_t>(r)] = static_cast<int64_t>(p.size()) - 1;
      }
    }
    if (c.has_encoder())
      std::memcpy(m.ex->data(m.model.encoder_input_tokens), batch.inputs.data(), static_cast<size_t>(B * T_in) * sizeof(int32_t));
    for (int64_t k = 0; k < static_cast<int64_t>(longest) + 2; ++k) {
      if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
      m.ex->run();
      const auto* pred = static_cast<const int32_t*>(m.ex->data(m.predictions));
      for (int64_t r = 0; r < B; ++r) {
        if (done[static_cast<size_t>(r)]) continue;
        const int64_t at = start[static_cast<size_t>(r)] + k;  // the position predicting new token k
        const int32_t token = pred[r * T_out + at];
        std::vector<int32_t>& gen = out[static_cast<size_t>(rows[static_cast<size_t>(r)])];
        if (token == data::kEosId) {
          done[static_cast<size_t>(r)] = true;
          gen.push_back(token);
          continue;
        }
        gen.push_back(token);
        if (at + 1 >= T_out) {
          done[static_cast<size_t>(r)] = true;  // no room for another token
          continue;
        }
        dec_in[r * T_out + at + 1] = token;
      }
    }
  }
  return out;
}

TaskEval evaluate_task(Trainer& trainer, TaskDecoder& decoder, const data::TaskSplit& split, const data::Tokenizer& tokenizer,
                       int64_t max_batches) {
  TaskEval r;
  {
    data::TaskBatchSource source(split, task_batch_options(trainer.config(), false));
    r.teacher_forced = trainer.evaluate([&](data::Batch& b) { return source.next(b); }, max_batches);
  }
  r.target_nll = -r.teacher_forced.neg_log_perplexity;
  const std::vector<std::vector<int32_t>> gen = decoder.decode(trainer, split, max_batches);
  const int64_t B = trainer.config().train.batch;
  const auto n = static_cast<size_t>(max_batches == 0 ? static_cast<int64_t>(split.examples.size())
                                                      : std::min<int64_t>(static_cast<int64_t>(split.examples.size()),
                                                                          max_batches * B));
  int64_t right = 0;
  for (size_t i = 0; i < n; ++i) {
    std::vector<int32_t> want = split.examples[i].target;
    want.push_back(data::kEosId);
    const bool ok = gen[i] == want;
    right += ok;
    r.correct.push_back(ok);
    r.outputs.push_back(tokenizer.decode(gen[i]));
  }
  r.examples = static_cast<int64_t>(n);
  r.exact_match = n > 0 ? static_cast<double>(right) / static_cast<double>(n) : 0.0;
  return r;
}

}  // namespace sy
