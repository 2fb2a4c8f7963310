// A SentencePiece unigram tokenizer with T5's special ids, trained by the project.
//
// Ids, as in T5: 0 pad, 1 eos, 2 unk (no bos), then the SentencePiece pieces, then `extra_ids`
// sentinels at the top of the vocabulary: <extra_id_0> is vocab_size - 1, <extra_id_1> is
// vocab_size - 2, ... (T5's span corruption replaces the i-th masked span with <extra_id_i>).
// The sentinels are not pieces of the SentencePiece model; they are appended after it, as T5's
// vocabulary does.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace sy::data {

inline constexpr int32_t kPadId = 0;
inline constexpr int32_t kEosId = 1;
inline constexpr int32_t kUnkId = 2;

// What the objectives need to know of a vocabulary.
struct SpecialTokens {
  int32_t vocab_size = 0;  // every id, sentinels included
  int32_t extra_ids = 0;   // sentinels

  int32_t sentinel(int64_t i) const;  // vocab_size - 1 - i, for 0 <= i < extra_ids
  bool is_sentinel(int32_t id) const { return id >= vocab_size - extra_ids && id < vocab_size; }
};

// Training is deterministic: the same sentences and options give the same model, byte for byte.
// SentencePiece's EM sums per thread, so the thread count is an option (not the machine's cores).
struct TokenizerOptions {
  int32_t vocab_size = 8000;  // total ids: 3 special + SentencePiece pieces + extra_ids
  int32_t extra_ids = 100;
  int32_t threads = 2;
  uint32_t seed = 0;                  // SentencePiece's random generator
  double character_coverage = 1.0;    // fraction of characters the pieces must cover
};

class Tokenizer {
 public:
  // Trains a unigram model on `sentences` (each one line of plain text). Throws InputError when
  // SentencePiece refuses (a vocabulary too large for the text says which size is allowed).
  static Tokenizer train(const std::vector<std::string>& sentences, const TokenizerOptions& opts);
  // A model written by save(); `extra_ids` as it was trained with. Errors name `path`.
  static Tokenizer load(const std::filesystem::path& path, int32_t extra_ids);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Writes the SentencePiece model proto atomically.
  void save(const std::filesystem::path& path) const;
  const std::string& model_proto() const { return model_proto_; }

  int32_t vocab_size() const;   // pieces + extra_ids
  int32_t piece_count() const;  // SentencePiece's pieces, pad/eos/unk included
  SpecialTokens special_tokens() const { return {vocab_size(), extra_ids_}; }

  std::vector<int32_t> encode(std::string_view text) const;
  // Pieces joined back into text; sentinels read "<extra_id_N>", pad and eos vanish.
  std::string decode(std::span<const int32_t> ids) const;
  // "▁the", "<extra_id_3>", "</s>", ...
  std::string piece(int32_t id) const;

 private:
  Tokenizer(std::string model_proto, int32_t extra_ids, std::string_view source_name);

  std::string model_proto_;
  int32_t extra_ids_ = 0;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace sy::data
