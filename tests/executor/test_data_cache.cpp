// The SentencePiece tokenizer, POS alignment of its pieces, and the token cache (built once,
// loaded after, keyed by settings, every damaged file an InputError naming it). Everything runs on
// a tiny synthetic corpus: no network, a tokenizer trains in a few milliseconds.
#include "executor/data/cache.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sy::data {
namespace {

// Small enough for the synthetic corpus (SentencePiece refuses more pieces than the text allows).
TokenizerOptions tiny_tokenizer() {
  TokenizerOptions o;
  o.vocab_size = 100;
  o.extra_ids = 10;
  return o;
}

struct TempDir {
  std::filesystem::path path;
  // Unique per process: several build trees may run these tests at once.
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

std::vector<int64_t> all_documents(const Corpus& c) {
  std::vector<int64_t> d(c.documents.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<int64_t>(i);
  return d;
}

TEST_CASE("data: the tokenizer has T5's special ids, sentinels at the top, and trains deterministically", "[data]") {
  const Corpus c = make_synthetic_corpus({});
  const std::vector<std::string> text = sentence_texts(c, all_documents(c));
  const Tokenizer t = Tokenizer::train(text, tiny_tokenizer());
  CHECK(t.vocab_size() == 100);
  CHECK(t.piece_count() == 90);
  CHECK(t.piece(kPadId) == "<pad>");
  CHECK(t.piece(kEosId) == "</s>");
  CHECK(t.piece(kUnkId) == "<unk>");
  const SpecialTokens special = t.special_tokens();
  CHECK(special.sentinel(0) == 99);
  CHECK(special.sentinel(9) == 90);
  CHECK(t.piece(99) == "<extra_id_0>");
  CHECK(t.piece(90) == "<extra_id_9>");
  CHECK(special.is_sentinel(90));
  CHECK_FALSE(special.is_sentinel(89));

  const std::string sentence = "The quiet teacher wrote 1-1/2 letters .";
  std::vector<int32_t> ids = t.encode(sentence);
  CHECK(t.decode(ids) == sentence);
  ids.insert(ids.begin() + 2, special.sentinel(0));
  ids.push_back(kEosId);
  CHECK(t.decode(ids).find("<extra_id_0>") != std::string::npos);

  CHECK(Tokenizer::train(text, tiny_tokenizer()).model_proto() == t.model_proto());

  TokenizerOptions too_big = tiny_tokenizer();
  too_big.vocab_size = 5000;
  CHECK_THROWS_WITH(Tokenizer::train(text, too_big), Catch::Contains("Vocabulary size too high"));
  TokenizerOptions too_small = tiny_tokenizer();
  too_small.vocab_size = 12;
  CHECK_THROWS_WITH(Tokenizer::train(text, too_small), Catch::Contains("must exceed 13"));
}

TEST_CASE("data: every piece carries the POS tag of the word it came from", "[data]") {
  const Corpus c = make_synthetic_corpus({.documents = 15, .seed = 1});
  const std::vector<int64_t> docs = all_documents(c);
  const Tokenizer t = Tokenizer::train(sentence_texts(c, docs), tiny_tokenizer());
  const TokenSplit split = tokenize_documents(c, docs, t);
  REQUIRE(split.documents.size() == c.documents.size());

  // Rebuild the words from the pieces alone: a piece starting with "▁" starts a word. Each rebuilt
  // word must be the corpus word, and all its pieces must carry that word's tag.
  const std::string kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's word boundary
  for (size_t d = 0; d < c.documents.size(); ++d) {
    const DocumentTokens& dt = split.documents[d];
    CHECK(dt.id == c.documents[d].id);
    std::vector<TaggedWord> words;  // (rebuilt text, POS of its first piece)
    for (int64_t i = dt.begin; i < dt.end; ++i) {
      const TaggedToken tok = split.tokens[static_cast<size_t>(i)];
      std::string piece = t.piece(tok.id);
      if (piece.starts_with(kSpace)) {
        words.push_back({"", tok.pos});
        piece = piece.substr(kSpace.size());
      }
      REQUIRE_FALSE(words.empty());
      CHECK(tok.pos == words.back().pos);  // every piece of the word has the word's tag
      words.back().text += piece;
    }
    std::vector<TaggedWord> expected;
    for (const Sentence& s : c.documents[d].sentences) expected.insert(expected.end(), s.words.begin(), s.words.end());
    REQUIRE(words.size() == expected.size());
    for (size_t w = 0; w < words.size(); ++w) {
      CHECK(words[w].text == expected[w].text);
      CHECK(words[w].pos == expected[w].pos);
    }
    CHECK(dt.words == static_cast<int64_t>(expected.size()));
  }
}

TEST_CASE("data: prepare_corpus builds the cache once, then loads the same tokens", "[data]") {
  TempDir tmp("sy_data_cache_build");
  const Corpus c = make_synthetic_corpus({});
  write_corpus(c, tmp.path / "corpus");
  PrepareOptions opts;
  opts.tokenizer = tiny_tokenizer();

  const PreparedData built = prepare_corpus(tmp.path / "corpus", tmp.path / "cache", opts);
  CHECK(built.built);
  CHECK(built.train.documents.size() + built.validation.documents.size() == c.documents.size());
  CHECK(built.validation.documents.size() == 3);  // round(30 * 0.1)
  CHECK(std::filesystem::exists(built.cache_dir / "index.json"));

  const PreparedData loaded = prepare_corpus(tmp.path / "corpus", tmp.path / "cache", opts);
  CHECK_FALSE(loaded.built);
  CHECK(loaded.cache_dir == built.cache_dir);
  CHECK(loaded.tokenizer.model_proto() == built.tokenizer.model_proto());
  CHECK(loaded.pos_tags == built.pos_tags);
  for (auto [a, b] : {std::pair{&built.train, &loaded.train}, std::pair{&built.validation, &loaded.validation}}) {
    REQUIRE(a->tokens.size() == b->tokens.size());
    for (size_t i = 0; i < a->tokens.size(); ++i) {
      REQUIRE(a->tokens[i].id == b->tokens[i].id);
      REQUIRE(a->tokens[i].pos == b->tokens[i].pos);
    }
    REQUIRE(a->documents.size() == b->documents.size());
    for (size_t d = 0; d < a->documents.size(); ++d) {
      CHECK(a->documents[d].id == b->documents[d].id);
      CHECK(a->documents[d].genre == b->documents[d].genre);
      CHECK(a->documents[d].begin == b->documents[d].begin);
      CHECK(a->documents[d].end == b->documents[d].end);
      CHECK(a->documents[d].words == b->documents[d].words);
      CHECK(a->documents[d].sentences == b->documents[d].sentences);
    }
  }

  // Another setting, another cache beside the first; nothing temporary left behind.
  PrepareOptions other = opts;
  other.split.seed = 1;
  const PreparedData reseeded = prepare_corpus(tmp.path / "corpus", tmp.path / "cache", other);
  CHECK(reseeded.built);
  CHECK(reseeded.cache_dir != built.cache_dir);
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path / "cache")) {
    CHECK(e.path().filename().string().front() != '.');
    ++entries;
  }
  CHECK(entries == 2);

  // --rebuild replaces the cache with identical files.
  opts.rebuild = true;
  const PreparedData rebuilt = prepare_corpus(tmp.path / "corpus", tmp.path / "cache", opts);
  CHECK(rebuilt.built);
  CHECK(rebuilt.tokenizer.model_proto() == built.tokenizer.model_proto());
  CHECK(read_token_cache(built.cache_dir).train.tokens.size() == built.train.tokens.size());
}

TEST_CASE("data: a damaged or missing cache file is an InputError naming the file", "[data]") {
  TempDir tmp("sy_data_cache_corrupt");
  write_corpus(make_synthetic_corpus({}), tmp.path / "corpus");
  PrepareOptions opts;
  opts.tokenizer = tiny_tokenizer();
  const std::filesystem::path dir = prepare_corpus(tmp.path / "corpus", tmp.path / "cache", opts).cache_dir;
  const std::string pristine_train = read_file((dir / "train.tokens").string());
  const std::string pristine_index = read_file((dir / "index.json").string());
  auto restore = [&] {
    write_file_atomic((dir / "train.tokens").string(), pristine_train);
    write_file_atomic((dir / "index.json").string(), pristine_index);
    REQUIRE_NOTHROW(read_token_cache(dir));
  };

  SECTION("a flipped byte in a token file") {
    std::string bytes = pristine_train;
    bytes[bytes.size() / 2] ^= 0x40;
    write_file_atomic((dir / "train.tokens").string(), bytes);
    CHECK_THROWS_WITH(prepare_corpus(tmp.path / "corpus", tmp.path / "cache", opts),
                      Catch::Contains((dir / "train.tokens").string()) && Catch::Contains("checksum") &&
                          Catch::Contains("corrupt"));
  }
  SECTION("a truncated token file") {
    write_file_atomic((dir / "train.tokens").string(), pristine_train.substr(0, pristine_train.size() - 8));
    CHECK_THROWS_WITH(read_token_cache(dir), Catch::Contains((dir / "train.tokens").string()) &&
                                                 Catch::Contains(std::to_string(pristine_train.size())));
  }
  SECTION("a missing token file") {
    std::filesystem::remove(dir / "validation.tokens");
    CHECK_THROWS_WITH(read_token_cache(dir), Catch::Contains((dir / "validation.tokens").string()));
  }
  SECTION("a missing or damaged tokenizer model") {
    write_file_atomic((dir / "tokenizer.model").string(), "not a model");
    CHECK_THROWS_WITH(read_token_cache(dir), Catch::Contains((dir / "tokenizer.model").string()));
    std::filesystem::remove(dir / "tokenizer.model");
    CHECK_THROWS_WITH(read_token_cache(dir), Catch::Contains((dir / "tokenizer.model").string()));
  }
  SECTION("an index that is not JSON, or lacks a key") {
    write_file_atomic((dir / "index.json").string(), pristine_index.substr(0, 100));
    CHECK_THROWS_WITH(read_token_cache(dir), Catch::Contains((dir / "index.json").string()) &&
                                                 Catch::Contains("not valid JSON"));
    Json j = Json::parse(pristine_index);
    j["splits"]["validation"].erase("fnv1a64");
    write_file_atomic((dir / "index.json").string(), j.dump());
    CHECK_THROWS_WITH(read_token_cache(dir), Catch::Contains((dir / "index.json").string()) &&
                                                 Catch::Contains("fnv1a64"));
    restore();
  }
  SECTION("a missing index") {
    std::filesystem::remove(dir / "index.json");
    CHECK_THROWS_WITH(read_token_cache(dir), Catch::Contains((dir / "index.json").string()));
    restore();
  }
}

TEST_CASE("data: the unigram baseline is the entropy of the token frequencies", "[data]") {
  // train: one document [3, 3, 4] + eos -> p(3) = 1/2, p(4) = 1/4, p(eos) = 1/4.
  TokenSplit train;
  train.tokens = {{3, kNoPos}, {3, kNoPos}, {4, kNoPos}};
  train.documents = {{"ca01", 'a', 0, 3, 1, 3}};
  TokenSplit validation;
  validation.tokens = {{4, kNoPos}};
  validation.documents = {{"ca02", 'a', 0, 1, 1, 1}};
  const UnigramBaseline b = unigram_baseline(train, validation, 6);
  CHECK(b.train_entropy == Approx(1.5 * std::log(2.0)));
  // Add-one over 6 ids: counts + 1 = {1, 2 (eos), 1, 3, 2, 1} / 10; validation is 4 then eos.
  CHECK(b.validation_cross_entropy == Approx(-(std::log(0.2) + std::log(0.2)) / 2));
}

}  // namespace
}  // namespace sy::data
