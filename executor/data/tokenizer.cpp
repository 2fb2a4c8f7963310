#include "executor/data/tokenizer.hpp"

#include "graph/error.hpp"
#include "graph/json.hpp"

#include <fmt/format.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <string>
#include <unordered_map>
#include <utility>

namespace sy::data {

int32_t SpecialTokens::sentinel(int64_t i) const {
  SY_CHECK(i >= 0 && i < extra_ids, "sentinel {} of {} extra ids", i, extra_ids);
  return vocab_size - 1 - static_cast<int32_t>(i);
}

namespace {

class VectorSentences : public sentencepiece::SentenceIterator {
 public:
  explicit VectorSentences(const std::vector<std::string>& s) : sentences_(s) {}
  bool done() const override { return next_ >= sentences_.size(); }
  void Next() override { ++next_; }
  const std::string& value() const override { return sentences_[next_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& sentences_;
  size_t next_ = 0;
};

}  // namespace

Tokenizer Tokenizer::train(const std::vector<std::string>& sentences, const TokenizerOptions& opts) {
  constexpr int32_t kSpecial = 3;  // pad, eos, unk
  if (opts.extra_ids < 0)
    throw InputError(fmt::format("tokenizer extra_ids {}: must be >= 0", opts.extra_ids));
  if (opts.vocab_size <= opts.extra_ids + kSpecial)
    throw InputError(fmt::format("tokenizer vocabulary size {}: must exceed {} ({} sentinels + pad, eos, unk)",
                                 opts.vocab_size, opts.extra_ids + kSpecial, opts.extra_ids));
  if (opts.threads < 1) throw InputError(fmt::format("tokenizer threads {}: must be >= 1", opts.threads));
  if (!(opts.character_coverage > 0.0 && opts.character_coverage <= 1.0))
    throw InputError(fmt::format("tokenizer character coverage {}: must be in (0, 1]", opts.character_coverage));
  if (sentences.empty()) throw InputError("tokenizer training: no sentences to train on");

  const std::unordered_map<std::string, std::string> args = {
      {"model_type", "unigram"},
      {"vocab_size", std::to_string(opts.vocab_size - opts.extra_ids)},
      {"pad_id", std::to_string(kPadId)},
      {"eos_id", std::to_string(kEosId)},
      {"unk_id", std::to_string(kUnkId)},
      {"bos_id", "-1"},
      {"num_threads", std::to_string(opts.threads)},
      {"character_coverage", fmt::format("{}", opts.character_coverage)},
      {"input_sentence_size", "0"},  // every sentence: no sampling
      {"shuffle_input_sentence", "false"},
      {"minloglevel", "2"},  // errors only
  };
  sentencepiece::SetRandomGeneratorSeed(opts.seed);
  VectorSentences it(sentences);
  std::string proto;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
  if (!status.ok())
    throw InputError(fmt::format("tokenizer training (SentencePiece unigram, vocabulary {} = {} pieces + {} "
                                 "sentinels) failed: {} (SentencePiece's sizes count pieces only, without the {} "
                                 "sentinels)",
                                 opts.vocab_size, opts.vocab_size - opts.extra_ids, opts.extra_ids, status.ToString(),
                                 opts.extra_ids));
  return Tokenizer(std::move(proto), opts.extra_ids, "<trained tokenizer>");
}

Tokenizer Tokenizer::load(const std::filesystem::path& path, int32_t extra_ids) {
  return Tokenizer(read_file(path.string()), extra_ids, path.string());
}

Tokenizer::Tokenizer(std::string model_proto, int32_t extra_ids, std::string_view source_name)
    : model_proto_(std::move(model_proto)),
      extra_ids_(extra_ids),
      processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = processor_->LoadFromSerializedProto(model_proto_);
  if (!status.ok())
    throw InputError(fmt::format("{}: not a SentencePiece model ({})", source_name, status.ToString()));
  if (processor_->pad_id() != kPadId || processor_->eos_id() != kEosId || processor_->unk_id() != kUnkId ||
      processor_->bos_id() != -1)
    throw InputError(fmt::format("{}: special ids pad {}, eos {}, unk {}, bos {}; expected T5's pad {}, eos {}, "
                                 "unk {}, no bos",
                                 source_name, processor_->pad_id(), processor_->eos_id(), processor_->unk_id(),
                                 processor_->bos_id(), kPadId, kEosId, kUnkId));
}

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

void Tokenizer::save(const std::filesystem::path& path) const { write_file_atomic(path.string(), model_proto_); }

int32_t Tokenizer::piece_count() const { return processor_->GetPieceSize(); }

int32_t Tokenizer::vocab_size() const { return piece_count() + extra_ids_; }

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  SY_CHECK(status.ok(), "SentencePiece encode of '{}': {}", text, status.ToString());
  return {ids.begin(), ids.end()};
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  std::vector<int> run;  // consecutive SentencePiece ids
  auto flush = [&] {
    if (run.empty()) return;
    std::string text;
    const auto status = processor_->Decode(run, &text);
    SY_CHECK(status.ok(), "SentencePiece decode: {}", status.ToString());
    out += text;
    run.clear();
  };
  for (int32_t id : ids) {
    SY_CHECK(id >= 0 && id < vocab_size(), "token id {} outside the vocabulary [0, {})", id, vocab_size());
    if (id >= piece_count()) {
      flush();
      out += piece(id);
    } else {
      run.push_back(id);
    }
  }
  flush();
  return out;
}

std::string Tokenizer::piece(int32_t id) const {
  SY_CHECK(id >= 0 && id < vocab_size(), "token id {} outside the vocabulary [0, {})", id, vocab_size());
  if (id >= piece_count()) return fmt::format("<extra_id_{}>", vocab_size() - 1 - id);
  return processor_->IdToPiece(id);
}

}  // namespace sy::data
