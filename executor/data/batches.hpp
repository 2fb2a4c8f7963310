// Training objectives and seeded, resumable batching over a TokenSplit.
//
// Next-token LM (decoder-only): per epoch the documents are (optionally) shuffled and concatenated,
// each followed by eos; the stream is cut into examples of T + 1 tokens that overlap by one
// (example c: stream[c*T, c*T + T]), inputs = the first T, targets = the last T, so every token but
// the first is a target exactly once per epoch. The last example is padded (weight 0).
//
// T5 span corruption (encoder-decoder; Raffel et al. 2020, t5.data.preprocessors): per epoch the
// documents are (optionally) shuffled and concatenated without separator, as T5 does, and cut
// into examples of `tokens_length` raw tokens (span_corruption_lengths(): 568 for 512 encoder
// tokens). Each example gets random_spans_noise_mask() (15% noise, mean span 3); in the inputs
// each noise span becomes one sentinel (<extra_id_0>, <extra_id_1>, ...), the targets are each
// sentinel followed by the span it hides; both end with eos and are padded to T_in / T_out.
//
// Determinism and resume: every random choice is a pure function of (seed, epoch, example), see
// random.hpp, so example k of epoch e is the same whatever was read before. position() is
// the next example to read; seek(position()) on a fresh source continues bit-identically.
#pragma once

#include "executor/data/cache.hpp"
#include "executor/data/random.hpp"
#include "executor/data/tokenizer.hpp"

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace sy::data {

enum class Objective { kNextToken, kSpanCorruption };
std::string_view objective_name(Objective o);  // "next_token", "span_corruption"
// Throws InputError naming the allowed names.
Objective parse_objective(std::string_view name);

// T5's random_spans_helper: for an encoder input of `inputs_length` tokens (eos included), the
// longest raw example whose corrupted inputs fit, and the targets length it gives (eos included).
// 512 -> tokens_length 568, targets_length 114 (ST-MoE's 512 / 114). Counts are clamped as in
// random_spans_noise_mask (at least one noise token and one span), so short lengths stay
// consistent with the masks actually drawn.
struct SpanCorruptionLengths {
  int64_t tokens_length = 0;   // raw tokens per example
  int64_t inputs_length = 0;   // T_in: non-noise tokens + one sentinel per span + eos
  int64_t targets_length = 0;  // T_out: noise tokens + one sentinel per span + eos
  int64_t noise_spans = 0;     // in a full example
};
SpanCorruptionLengths span_corruption_lengths(int64_t inputs_length, double noise_density,
                                              double mean_noise_span_length);

// T5's random_spans_noise_mask: round(length * noise_density) noise tokens (at least 1, at most
// length - 1) in round(noise / mean_noise_span_length) spans (at least 1); span lengths are a
// uniformly random composition; the mask starts with a non-noise span and alternates. Lengths
// below 2 are computed as 2 and cut. Rounding is half-to-even, as T5's. 1 = noise.
std::vector<uint8_t> random_spans_noise_mask(int64_t length, double noise_density, double mean_noise_span_length,
                                             Rng& rng);

struct SpanCorruption {
  std::vector<TaggedToken> inputs;   // non-noise tokens, a sentinel per noise span, eos
  std::vector<TaggedToken> targets;  // per noise span: its sentinel then its tokens; eos
};
// Throws InternalError if there are more spans than sentinels (checked up front by BatchSource).
SpanCorruption corrupt_spans(std::span<const TaggedToken> tokens, std::span<const uint8_t> noise_mask,
                             const SpecialTokens& special);

struct BatchOptions {
  Objective objective = Objective::kNextToken;
  int64_t batch = 8;    // B: rows per batch
  int64_t length = 128; // next-token: T tokens per row; span corruption: T_in, the encoder length
  double noise_density = 0.15;           // span corruption only
  double mean_noise_span_length = 3.0;   // span corruption only
  uint64_t seed = 0;
  bool shuffle = true;  // false: documents and examples in corpus order (evaluation)
  bool repeat = true;   // false: one pass, then next() returns false (evaluation)
};

// One batch, row-major [B, T] arrays of token ids (int32, for the graph's inputs).
struct Batch {
  Objective objective = Objective::kNextToken;
  int64_t batch = 0;           // B
  int64_t inputs_length = 0;   // T_in
  int64_t targets_length = 0;  // T_out (= T_in for next-token)
  std::vector<int32_t> inputs;          // [B, T_in] decoder-only inputs, or encoder inputs
  std::vector<int32_t> inputs_pos;      // [B, T_in] POS id of each input token, kNoPos for special ones
  std::vector<int32_t> decoder_inputs;  // [B, T_out] span corruption: targets shifted right, pad first; else empty
  std::vector<int32_t> targets;         // [B, T_out]
  std::vector<int32_t> targets_pos;     // [B, T_out]
  std::vector<float> weights;           // [B, T_out] 1 for a real target, 0 for padding

  int64_t target_tokens() const;  // number of weights that are 1
};

struct BatchPosition {
  int64_t epoch = 0;
  int64_t example = 0;  // next example of the epoch to read, in [0, examples_per_epoch)
  bool operator==(const BatchPosition&) const = default;
};

class BatchSource {
 public:
  // `split` must outlive the source. Throws InputError for bad options (sizes, an objective the
  // vocabulary has too few sentinels for) and for a split without tokens.
  BatchSource(const TokenSplit& split, const SpecialTokens& special, const BatchOptions& opts);

  // Fills `out` with the next B examples (crossing into the next epoch when repeat). Without
  // repeat, rows past the end of the pass are padding with weight 0, and after the pass next()
  // returns false.
  bool next(Batch& out);

  BatchPosition position() const { return position_; }
  // Throws InputError if `p` is not a position of this source (example outside the epoch).
  void seek(const BatchPosition& p);

  int64_t examples_per_epoch() const { return examples_per_epoch_; }
  int64_t inputs_length() const { return inputs_length_; }
  int64_t targets_length() const { return targets_length_; }
  const BatchOptions& options() const { return opts_; }

 private:
  void load_epoch(int64_t epoch);
  void fill_row(Batch& out, int64_t row, int64_t example);
  void pad_row(Batch& out, int64_t row);

  const TokenSplit& split_;
  SpecialTokens special_;
  BatchOptions opts_;
  int64_t inputs_length_ = 0;
  int64_t targets_length_ = 0;
  int64_t chunk_stride_ = 0;   // stream tokens between consecutive examples
  int64_t chunk_length_ = 0;   // stream tokens an example reads
  int64_t stream_length_ = 0;  // tokens per epoch's stream (independent of the document order)
  int64_t examples_per_epoch_ = 0;
  BatchPosition position_;

  int64_t loaded_epoch_ = -1;
  std::vector<TaggedToken> stream_;  // this epoch's documents, concatenated
  std::vector<int64_t> order_;       // example index -> chunk of the stream
};

}  // namespace sy::data
