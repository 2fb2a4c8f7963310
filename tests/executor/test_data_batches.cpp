// The objectives and the batch source: T5 span corruption (lengths, noise fraction, sentinels,
// reconstruction), next-token batches, determinism per seed, and exact resume by position/seek.
// Token splits are made by hand: no tokenizer, no files.
#include "executor/data/batches.hpp"
#include "graph/error.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

namespace sy::data {
namespace {

// 300 ids: sentinels 299 (<extra_id_0>) down to 200; word ids below.
constexpr SpecialTokens kSpecial{300, 100};

// Documents of the given lengths; token k of the split has id 3 + k % 190 and POS k % 7.
TokenSplit make_split(const std::vector<int64_t>& document_lengths) {
  TokenSplit s;
  for (size_t d = 0; d < document_lengths.size(); ++d) {
    const auto begin = static_cast<int64_t>(s.tokens.size());
    for (int64_t i = 0; i < document_lengths[d]; ++i) {
      const auto k = static_cast<int32_t>(s.tokens.size());
      s.tokens.push_back({3 + k % 190, k % 7});
    }
    s.documents.push_back({fmt::format("ca{:02d}", d + 1), 'a', begin, static_cast<int64_t>(s.tokens.size()), 1,
                           document_lengths[d]});
  }
  return s;
}

// Undoes span corruption: each sentinel in the inputs is replaced by what follows it in the
// targets, up to the next sentinel (or the final eos).
std::vector<TaggedToken> reconstruct(const std::vector<TaggedToken>& inputs, const std::vector<TaggedToken>& targets) {
  std::map<int32_t, std::vector<TaggedToken>> spans;
  int32_t current = -1;
  for (size_t i = 0; i + 1 < targets.size(); ++i) {  // the last target is eos
    if (kSpecial.is_sentinel(targets[i].id))
      current = targets[i].id;
    else
      spans[current].push_back(targets[i]);
  }
  std::vector<TaggedToken> out;
  for (size_t i = 0; i + 1 < inputs.size(); ++i) {  // the last input is eos
    if (kSpecial.is_sentinel(inputs[i].id))
      out.insert(out.end(), spans[inputs[i].id].begin(), spans[inputs[i].id].end());
    else
      out.push_back(inputs[i]);
  }
  return out;
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.objective == b.objective && a.batch == b.batch && a.inputs_length == b.inputs_length &&
         a.targets_length == b.targets_length && a.inputs == b.inputs && a.inputs_pos == b.inputs_pos &&
         a.decoder_inputs == b.decoder_inputs && a.targets == b.targets && a.targets_pos == b.targets_pos &&
         a.weights == b.weights;
}

TEST_CASE("data: span_corruption_lengths follows T5's random_spans_helper", "[data]") {
  const SpanCorruptionLengths l = span_corruption_lengths(512, 0.15, 3.0);
  CHECK(l.tokens_length == 568);  // T5 / ST-MoE: 512 encoder tokens, 114 decoder tokens
  CHECK(l.inputs_length == 512);
  CHECK(l.targets_length == 114);
  CHECK(l.noise_spans == 28);
  const SpanCorruptionLengths s = span_corruption_lengths(64, 0.15, 3.0);
  // 70 tokens: noise round(10.5) = 10 (half to even), spans round(10/3) = 3: inputs 60 + 3 + 1 = 64.
  // 71 tokens: noise round(10.65) = 11, spans 4: inputs 60 + 4 + 1 = 65 > 64.
  CHECK(s.tokens_length == 70);
  CHECK(s.inputs_length == 64);
  CHECK(s.targets_length == 14);
  CHECK_THROWS_WITH(span_corruption_lengths(2, 0.15, 3.0), Catch::Contains("must be >= 3"));
  CHECK_THROWS_WITH(span_corruption_lengths(64, 1.5, 3.0), Catch::Contains("noise density 1.5"));
}

TEST_CASE("data: random_spans_noise_mask has T5's noise count and span count, non-noise first", "[data]") {
  for (int64_t n : {2, 3, 10, 37, 100, 568}) {
    Rng rng(static_cast<uint64_t>(n));
    const std::vector<uint8_t> mask = random_spans_noise_mask(n, 0.15, 3.0, rng);
    REQUIRE(static_cast<int64_t>(mask.size()) == n);
    const auto noise = std::count(mask.begin(), mask.end(), uint8_t{1});
    const int64_t expected_noise = std::clamp<int64_t>(static_cast<int64_t>(std::nearbyint(n * 0.15)), 1, n - 1);
    CHECK(noise == expected_noise);
    int64_t spans = 0;
    for (size_t i = 0; i < mask.size(); ++i) spans += mask[i] && (i == 0 || !mask[i - 1]);
    CHECK(spans == std::max<int64_t>(static_cast<int64_t>(std::nearbyint(static_cast<double>(noise) / 3.0)), 1));
    CHECK(mask.front() == 0);
    CHECK(mask.back() == 1);  // the last span is noise
  }
  Rng rng(1);
  CHECK(random_spans_noise_mask(1, 0.15, 3.0, rng) == std::vector<uint8_t>{0});  // computed for 2, cut to 1
  CHECK(random_spans_noise_mask(0, 0.15, 3.0, rng).empty());
}

TEST_CASE("data: span corruption batches: 15% noise, sentinels in order, inputs and targets rebuild the text",
          "[data]") {
  const TokenSplit split = make_split({300, 1000, 45, 700, 2});
  BatchOptions o;
  o.objective = Objective::kSpanCorruption;
  o.batch = 3;
  o.length = 64;
  o.shuffle = false;
  o.repeat = false;
  BatchSource src(split, kSpecial, o);
  CHECK(src.inputs_length() == 64);
  CHECK(src.targets_length() == 14);
  REQUIRE(src.examples_per_epoch() == (2047 + 69) / 70);

  std::vector<TaggedToken> rebuilt;
  int64_t noise = 0, raw = 0, spans = 0;
  Batch b;
  while (src.next(b)) {
    REQUIRE(b.inputs.size() == static_cast<size_t>(3 * 64));
    REQUIRE(b.targets.size() == static_cast<size_t>(3 * 14));
    REQUIRE(b.decoder_inputs.size() == b.targets.size());
    for (int64_t row = 0; row < b.batch; ++row) {
      std::vector<TaggedToken> in, tg;
      for (int64_t t = 0; t < b.inputs_length; ++t) {
        const auto i = static_cast<size_t>(row * b.inputs_length + t);
        in.push_back({b.inputs[i], b.inputs_pos[i]});
      }
      for (int64_t t = 0; t < b.targets_length; ++t) {
        const auto i = static_cast<size_t>(row * b.targets_length + t);
        // Decoder inputs are the targets shifted right by one, starting with pad.
        CHECK(b.decoder_inputs[i] == (t == 0 ? kPadId : b.targets[i - 1]));
        if (b.weights[i] > 0) tg.push_back({b.targets[i], b.targets_pos[i]});
      }
      if (tg.empty()) continue;  // a padding row after the pass
      while (in.back().id == kPadId) in.pop_back();
      REQUIRE(in.back().id == kEosId);
      REQUIRE(tg.back().id == kEosId);

      // Sentinels: <extra_id_0>, <extra_id_1>, ... in the inputs, the same ones in the targets.
      std::vector<int32_t> in_sentinels, tg_sentinels;
      for (const TaggedToken& t : in)
        if (kSpecial.is_sentinel(t.id)) in_sentinels.push_back(t.id);
      for (const TaggedToken& t : tg)
        if (kSpecial.is_sentinel(t.id)) tg_sentinels.push_back(t.id);
      CHECK(in_sentinels == tg_sentinels);
      for (size_t k = 0; k < in_sentinels.size(); ++k)
        CHECK(in_sentinels[k] == kSpecial.sentinel(static_cast<int64_t>(k)));
      for (const TaggedToken& t : in)
        if (kSpecial.is_sentinel(t.id) || t.id == kEosId) CHECK(t.pos == kNoPos);

      const std::vector<TaggedToken> original = reconstruct(in, tg);
      rebuilt.insert(rebuilt.end(), original.begin(), original.end());
      noise += static_cast<int64_t>(tg.size() - tg_sentinels.size() - 1);
      raw += static_cast<int64_t>(original.size());
      spans += static_cast<int64_t>(tg_sentinels.size());
    }
  }
  // Documents concatenated without separator, in order: the rebuilt stream is the split's tokens.
  REQUIRE(rebuilt.size() == split.tokens.size());
  for (size_t i = 0; i < rebuilt.size(); ++i) {
    REQUIRE(rebuilt[i].id == split.tokens[i].id);
    REQUIRE(rebuilt[i].pos == split.tokens[i].pos);
  }
  const double fraction = static_cast<double>(noise) / static_cast<double>(raw);
  CHECK(fraction == Approx(0.15).margin(0.01));
  // T5's mean span length is noise / round(noise / 3): 10 noise tokens in 3 spans per full example here.
  CHECK(static_cast<double>(noise) / static_cast<double>(spans) == Approx(10.0 / 3.0).margin(0.1));
}

TEST_CASE("data: next-token batches: targets are the inputs shifted, documents end with eos, one pass covers all",
          "[data]") {
  const TokenSplit split = make_split({10, 25, 7});  // stream: 45 tokens with the three eos
  BatchOptions o;
  o.batch = 2;
  o.length = 8;
  o.shuffle = false;
  o.repeat = false;
  BatchSource src(split, kSpecial, o);
  REQUIRE(src.examples_per_epoch() == 6);  // ceil(44 / 8)

  std::vector<int32_t> stream;  // first input, then every target
  Batch b;
  int batches = 0;
  while (src.next(b)) {
    ++batches;
    CHECK(b.decoder_inputs.empty());
    for (int64_t row = 0; row < b.batch; ++row)
      for (int64_t t = 0; t < b.inputs_length; ++t) {
        const auto i = static_cast<size_t>(row * b.inputs_length + t);
        if (t + 1 < b.inputs_length && b.weights[i + 1] > 0) CHECK(b.targets[i] == b.inputs[i + 1]);
        if (stream.empty()) stream.push_back(b.inputs[i]);
        if (b.weights[i] > 0) stream.push_back(b.targets[i]);
        else CHECK(b.targets[i] == kPadId);
      }
  }
  CHECK(batches == 3);
  std::vector<int32_t> expected;
  for (const DocumentTokens& d : split.documents) {
    for (int64_t i = d.begin; i < d.end; ++i) expected.push_back(split.tokens[static_cast<size_t>(i)].id);
    expected.push_back(kEosId);
  }
  CHECK(stream == expected);
}

TEST_CASE("data: batches are a function of the seed, and shuffling changes with the epoch", "[data]") {
  const TokenSplit split = make_split({100, 40, 300, 90, 120, 60});
  for (Objective objective : {Objective::kNextToken, Objective::kSpanCorruption}) {
    BatchOptions o;
    o.objective = objective;
    o.batch = 4;
    o.length = 16;
    o.seed = 11;
    BatchSource a(split, kSpecial, o), b(split, kSpecial, o);
    o.seed = 12;
    BatchSource c(split, kSpecial, o);
    Batch ba, bb, bc;
    bool all_same_as_c = true;
    for (int i = 0; i < 10; ++i) {
      a.next(ba);
      b.next(bb);
      c.next(bc);
      CHECK(same_batch(ba, bb));
      all_same_as_c = all_same_as_c && same_batch(ba, bc);
    }
    CHECK_FALSE(all_same_as_c);

    // Epoch 0 and epoch 1 visit the examples in different orders.
    BatchSource e0(split, kSpecial, o), e1(split, kSpecial, o);
    e1.seek({1, 0});
    Batch b0, b1;
    e0.next(b0);
    e1.next(b1);
    CHECK_FALSE(same_batch(b0, b1));
  }
}

TEST_CASE("data: seek(position()) on a fresh source continues bit-identically, across epochs", "[data]") {
  const TokenSplit split = make_split({100, 40, 300, 90, 120, 60});
  for (Objective objective : {Objective::kNextToken, Objective::kSpanCorruption}) {
    BatchOptions o;
    o.objective = objective;
    o.batch = 3;
    o.length = 16;
    o.seed = 5;
    BatchSource uninterrupted(split, kSpecial, o);
    const int64_t per_epoch = uninterrupted.examples_per_epoch();
    const int total_batches = static_cast<int>(2 * per_epoch / o.batch + 3);  // crosses two epoch boundaries
    std::vector<Batch> reference(static_cast<size_t>(total_batches));
    std::vector<BatchPosition> positions;
    for (Batch& b : reference) {
      positions.push_back(uninterrupted.position());
      uninterrupted.next(b);
    }
    CHECK(uninterrupted.position().epoch == 2);

    for (int stop : {1, 7, total_batches - 2}) {
      BatchSource resumed(split, kSpecial, o);
      resumed.seek(positions[static_cast<size_t>(stop)]);
      Batch b;
      for (int i = stop; i < total_batches; ++i) {
        resumed.next(b);
        INFO(objective_name(objective) << " resumed at batch " << stop << ", batch " << i);
        REQUIRE(same_batch(b, reference[static_cast<size_t>(i)]));
      }
    }
  }
}

TEST_CASE("data: bad batch options and positions are InputErrors", "[data]") {
  const TokenSplit split = make_split({50});
  BatchOptions o;
  BatchSource src(split, kSpecial, o);
  CHECK_THROWS_WITH(src.seek({0, src.examples_per_epoch()}), Catch::Contains("data position (epoch 0, example"));
  CHECK_THROWS_AS(src.seek({-1, 0}), InputError);

  o.batch = 0;
  CHECK_THROWS_WITH(BatchSource(split, kSpecial, o), Catch::Contains("batch size 0"));
  o.batch = 2;
  o.objective = Objective::kSpanCorruption;
  o.length = 2048;  // ~114 noise spans per example
  CHECK_THROWS_WITH(BatchSource(split, kSpecial, o), Catch::Contains("100 sentinels"));
  CHECK_THROWS_WITH(BatchSource(make_split({}), kSpecial, BatchOptions{}), Catch::Contains("0 tokens"));
  CHECK(parse_objective("span_corruption") == Objective::kSpanCorruption);
  CHECK_THROWS_WITH(parse_objective("mlm"), Catch::Contains("next_token"));
}

}  // namespace
}  // namespace sy::data
