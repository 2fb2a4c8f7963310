#include "executor/data/batches.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sy::data {

std::string_view objective_name(Objective o) {
  switch (o) {
    case Objective::kNextToken: return "next_token";
    case Objective::kSpanCorruption: return "span_corruption";
  }
  return "?";
}

Objective parse_objective(std::string_view name) {
  for (Objective o : {Objective::kNextToken, Objective::kSpanCorruption})
    if (objective_name(o) == name) return o;
  throw InputError(fmt::format("objective '{}': allowed are next_token (decoder-only) and span_corruption "
                               "(encoder-decoder)",
                               name));
}

namespace {

// Half-to-even, as TensorFlow's tf.round and Python's round().
int64_t round_even(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

struct SpanCounts {
  int64_t noise = 0;
  int64_t spans = 0;
};

// The counts random_spans_noise_mask uses for a sequence of `length` (>= 2) tokens.
SpanCounts span_counts(int64_t length, double noise_density, double mean_noise_span_length) {
  SpanCounts c;
  c.noise = std::clamp<int64_t>(round_even(static_cast<double>(length) * noise_density), 1, length - 1);
  c.spans = std::max<int64_t>(round_even(static_cast<double>(c.noise) / mean_noise_span_length), 1);
  // Only binds for noise densities above 1/2: every noise span needs a non-noise span before it.
  c.spans = std::min(c.spans, length - c.noise);
  return c;
}

void check_noise_options(double noise_density, double mean_noise_span_length) {
  if (!(noise_density > 0.0 && noise_density < 1.0))
    throw InputError(fmt::format("span corruption noise density {}: must be in (0, 1)", noise_density));
  if (!(mean_noise_span_length >= 1.0))
    throw InputError(fmt::format("span corruption mean noise span length {}: must be >= 1", mean_noise_span_length));
}

// `items` split into `segments` non-empty runs, every composition equally likely.
std::vector<int64_t> random_segmentation(int64_t items, int64_t segments, Rng& rng) {
  SY_CHECK(segments >= 1 && segments <= items, "random segmentation of {} items into {} segments", items, segments);
  std::vector<uint8_t> starts_segment(static_cast<size_t>(items - 1), 0);  // item i + 1 starts a segment
  std::fill_n(starts_segment.begin(), segments - 1, uint8_t{1});
  rng.shuffle(std::span<uint8_t>(starts_segment));
  std::vector<int64_t> lengths;
  int64_t run = 1;
  for (uint8_t s : starts_segment) {
    if (s) {
      lengths.push_back(run);
      run = 0;
    }
    ++run;
  }
  lengths.push_back(run);
  return lengths;
}

}  // namespace

SpanCorruptionLengths span_corruption_lengths(int64_t inputs_length, double noise_density,
                                              double mean_noise_span_length) {
  check_noise_options(noise_density, mean_noise_span_length);
  if (inputs_length < 3)
    throw InputError(fmt::format("span corruption inputs length {}: must be >= 3 (a non-noise token, a sentinel, "
                                 "eos)",
                                 inputs_length));
  auto lengths = [&](int64_t tokens) {
    const SpanCounts c = span_counts(std::max<int64_t>(tokens, 2), noise_density, mean_noise_span_length);
    return SpanCorruptionLengths{tokens, tokens - c.noise + c.spans + 1, c.noise + c.spans + 1, c.spans};
  };
  int64_t tokens = std::max<int64_t>(inputs_length - 1, 2);
  while (lengths(tokens + 1).inputs_length <= inputs_length) ++tokens;
  return lengths(tokens);
}

std::vector<uint8_t> random_spans_noise_mask(int64_t length, double noise_density, double mean_noise_span_length,
                                             Rng& rng) {
  check_noise_options(noise_density, mean_noise_span_length);
  if (length <= 0) return {};
  const int64_t n = std::max<int64_t>(length, 2);
  const SpanCounts c = span_counts(n, noise_density, mean_noise_span_length);
  const std::vector<int64_t> nonnoise = random_segmentation(n - c.noise, c.spans, rng);
  const std::vector<int64_t> noise = random_segmentation(c.noise, c.spans, rng);
  std::vector<uint8_t> mask;
  mask.reserve(static_cast<size_t>(n));
  for (size_t s = 0; s < noise.size(); ++s) {
    mask.insert(mask.end(), static_cast<size_t>(nonnoise[s]), uint8_t{0});
    mask.insert(mask.end(), static_cast<size_t>(noise[s]), uint8_t{1});
  }
  mask.resize(static_cast<size_t>(length));
  return mask;
}

SpanCorruption corrupt_spans(std::span<const TaggedToken> tokens, std::span<const uint8_t> noise_mask,
                             const SpecialTokens& special) {
  SY_CHECK(tokens.size() == noise_mask.size(), "span corruption: {} tokens, noise mask of {}", tokens.size(),
           noise_mask.size());
  SpanCorruption out;
  int64_t span = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!noise_mask[i]) {
      out.inputs.push_back(tokens[i]);
      continue;
    }
    if (i == 0 || !noise_mask[i - 1]) {
      SY_CHECK(span < special.extra_ids, "span corruption: noise span {} but only {} sentinels", span,
               special.extra_ids);
      const TaggedToken sentinel{special.sentinel(span++), kNoPos};
      out.inputs.push_back(sentinel);
      out.targets.push_back(sentinel);
    }
    out.targets.push_back(tokens[i]);
  }
  out.inputs.push_back({kEosId, kNoPos});
  out.targets.push_back({kEosId, kNoPos});
  return out;
}

int64_t Batch::target_tokens() const {
  return std::count_if(weights.begin(), weights.end(), [](float w) { return w > 0.0f; });
}

BatchSource::BatchSource(const TokenSplit& split, const SpecialTokens& special, const BatchOptions& opts)
    : split_(split), special_(special), opts_(opts) {
  if (opts.batch < 1) throw InputError(fmt::format("batch size {}: must be >= 1", opts.batch));
  if (opts.length < 1) throw InputError(fmt::format("sequence length {}: must be >= 1", opts.length));
  const auto tokens = static_cast<int64_t>(split.tokens.size());
  const auto documents = static_cast<int64_t>(split.documents.size());
  switch (opts.objective) {
    case Objective::kNextToken:
      inputs_length_ = targets_length_ = opts.length;
      chunk_stride_ = opts.length;
      chunk_length_ = opts.length + 1;
      stream_length_ = tokens + documents;  // an eos after every document
      examples_per_epoch_ = stream_length_ >= 2 ? (stream_length_ - 2) / chunk_stride_ + 1 : 0;
      break;
    case Objective::kSpanCorruption: {
      const SpanCorruptionLengths l =
          span_corruption_lengths(opts.length, opts.noise_density, opts.mean_noise_span_length);
      if (l.noise_spans > special.extra_ids)
        throw InputError(fmt::format("span corruption with inputs length {} makes {} noise spans per example, but "
                                     "the vocabulary has {} sentinels (extra ids): use a shorter length or more "
                                     "extra ids",
                                     opts.length, l.noise_spans, special.extra_ids));
      inputs_length_ = l.inputs_length;
      targets_length_ = l.targets_length;
      chunk_stride_ = chunk_length_ = l.tokens_length;
      stream_length_ = tokens;
      examples_per_epoch_ = (stream_length_ + chunk_stride_ - 1) / chunk_stride_;
      break;
    }
  }
  if (examples_per_epoch_ == 0)
    throw InputError(fmt::format("the data split has {} tokens in {} documents: too few for one {} example",
                                 tokens, documents, objective_name(opts.objective)));
}

void BatchSource::seek(const BatchPosition& p) {
  if (p.epoch < 0 || p.example < 0 || p.example >= examples_per_epoch_)
    throw InputError(fmt::format("data position (epoch {}, example {}): must have epoch >= 0 and example in [0, {}) "
                                 "for this split and batch options",
                                 p.epoch, p.example, examples_per_epoch_));
  position_ = p;
}

void BatchSource::load_epoch(int64_t epoch) {
  const bool separate = opts_.objective == Objective::kNextToken;
  std::vector<int64_t> docs(split_.documents.size());
  std::iota(docs.begin(), docs.end(), 0);
  if (opts_.shuffle) Rng(hash_values({opts_.seed, static_cast<uint64_t>(epoch), 0xd0c5ull})).shuffle(std::span(docs));
  stream_.clear();
  stream_.reserve(static_cast<size_t>(stream_length_));
  for (int64_t d : docs) {
    const DocumentTokens& doc = split_.documents[static_cast<size_t>(d)];
    stream_.insert(stream_.end(), split_.tokens.begin() + doc.begin, split_.tokens.begin() + doc.end);
    if (separate) stream_.push_back({kEosId, kNoPos});
  }
  SY_CHECK(static_cast<int64_t>(stream_.size()) == stream_length_, "epoch stream of {} tokens, expected {}",
           stream_.size(), stream_length_);
  order_.resize(static_cast<size_t>(examples_per_epoch_));
  std::iota(order_.begin(), order_.end(), 0);
  if (opts_.shuffle)
    Rng(hash_values({opts_.seed, static_cast<uint64_t>(epoch), 0xe4a3ull})).shuffle(std::span(order_));
  loaded_epoch_ = epoch;
}

void BatchSource::pad_row(Batch& out, int64_t row) {
  const auto in = static_cast<size_t>(row * inputs_length_);
  const auto tg = static_cast<size_t>(row * targets_length_);
  std::fill_n(out.inputs.begin() + in, inputs_length_, kPadId);
  std::fill_n(out.inputs_pos.begin() + in, inputs_length_, kNoPos);
  if (!out.decoder_inputs.empty()) std::fill_n(out.decoder_inputs.begin() + tg, targets_length_, kPadId);
  std::fill_n(out.targets.begin() + tg, targets_length_, kPadId);
  std::fill_n(out.targets_pos.begin() + tg, targets_length_, kNoPos);
  std::fill_n(out.weights.begin() + tg, targets_length_, 0.0f);
}

void BatchSource::fill_row(Batch& out, int64_t row, int64_t example) {
  pad_row(out, row);
  const auto in = static_cast<size_t>(row * inputs_length_);
  const auto tg = static_cast<size_t>(row * targets_length_);
  const int64_t chunk = order_[static_cast<size_t>(example)];
  const int64_t begin = chunk * chunk_stride_;
  const int64_t end = std::min(begin + chunk_length_, stream_length_);
  const std::span<const TaggedToken> tokens(stream_.data() + begin, static_cast<size_t>(end - begin));

  switch (opts_.objective) {
    case Objective::kNextToken:
      for (size_t t = 0; t < tokens.size(); ++t) {
        if (t < static_cast<size_t>(inputs_length_)) {
          out.inputs[in + t] = tokens[t].id;
          out.inputs_pos[in + t] = tokens[t].pos;
        }
        if (t >= 1) {
          out.targets[tg + t - 1] = tokens[t].id;
          out.targets_pos[tg + t - 1] = tokens[t].pos;
          out.weights[tg + t - 1] = 1.0f;
        }
      }
      break;
    case Objective::kSpanCorruption: {
      Rng rng(hash_values({opts_.seed, static_cast<uint64_t>(loaded_epoch_), static_cast<uint64_t>(chunk), 0x5a4ull}));
      const std::vector<uint8_t> mask = random_spans_noise_mask(static_cast<int64_t>(tokens.size()),
                                                                opts_.noise_density, opts_.mean_noise_span_length, rng);
      const SpanCorruption c = corrupt_spans(tokens, mask, special_);
      SY_CHECK(static_cast<int64_t>(c.inputs.size()) <= inputs_length_ &&
                   static_cast<int64_t>(c.targets.size()) <= targets_length_,
               "span corruption of {} tokens: {} inputs, {} targets; lengths {} / {}", tokens.size(), c.inputs.size(),
               c.targets.size(), inputs_length_, targets_length_);
      for (size_t t = 0; t < c.inputs.size(); ++t) {
        out.inputs[in + t] = c.inputs[t].id;
        out.inputs_pos[in + t] = c.inputs[t].pos;
      }
      for (size_t t = 0; t < c.targets.size(); ++t) {
        out.targets[tg + t] = c.targets[t].id;
        out.targets_pos[tg + t] = c.targets[t].pos;
        out.weights[tg + t] = 1.0f;
        if (t + 1 < static_cast<size_t>(targets_length_)) out.decoder_inputs[tg + t + 1] = c.targets[t].id;
      }
      break;
    }
  }
}

bool BatchSource::next(Batch& out) {
  if (!opts_.repeat && position_.epoch >= 1) return false;
  const bool encoder_decoder = opts_.objective == Objective::kSpanCorruption;
  out.objective = opts_.objective;
  out.batch = opts_.batch;
  out.inputs_length = inputs_length_;
  out.targets_length = targets_length_;
  const auto in = static_cast<size_t>(opts_.batch * inputs_length_);
  const auto tg = static_cast<size_t>(opts_.batch * targets_length_);
  out.inputs.resize(in);
  out.inputs_pos.resize(in);
  out.decoder_inputs.resize(encoder_decoder ? tg : 0);
  out.targets.resize(tg);
  out.targets_pos.resize(tg);
  out.weights.resize(tg);
  for (int64_t row = 0; row < opts_.batch; ++row) {
    if (!opts_.repeat && position_.epoch >= 1) {
      pad_row(out, row);
      continue;
    }
    if (loaded_epoch_ != position_.epoch) load_epoch(position_.epoch);
    fill_row(out, row, position_.example);
    if (++position_.example == examples_per_epoch_) {
      ++position_.epoch;
      position_.example = 0;
    }
  }
  return true;
}

}  // namespace sy::data
