// The tagged corpus: Brown-format parsing (words and POS tags aligned), the synthetic corpus,
// the coarse POS map and the train/validation split by document.
#include "executor/data/corpus.hpp"
#include "graph/error.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace sy::data {
namespace {

std::string tag_of(const Corpus& c, const TaggedWord& w) { return c.pos_tags.at(static_cast<size_t>(w.pos)); }

TEST_CASE("data: parse_corpus keeps every word with its tag, split at the last slash", "[data]") {
  const std::vector<DocumentText> texts = {
      {"cb02", "\n\n\tIt/pps cost/vbd 1-1/2/cd dollars/nns ./.\n"},
      {"ca01",
       "\n\n\tThe/at Fulton/np-tl jury/nn didn't/dod* say/vb ./.\n\n\n"
       "Merger/nn-hl proposed/vbn-hl \r\n"},
  };
  const Corpus c = parse_corpus(texts, "<test>");
  REQUIRE(c.documents.size() == 2);
  CHECK(c.documents[0].id == "ca01");  // sorted by id
  CHECK(c.documents[0].genre == 'a');
  CHECK(c.documents[1].genre == 'b');
  REQUIRE(c.documents[0].sentences.size() == 2);  // blank lines are no sentences; a line without tab is one
  CHECK(c.sentence_count() == 3);
  CHECK(c.word_count() == 13);
  CHECK(std::is_sorted(c.pos_tags.begin(), c.pos_tags.end()));

  const Sentence& s = c.documents[0].sentences[0];
  REQUIRE(s.words.size() == 6);
  CHECK(s.words[1].text == "Fulton");
  CHECK(tag_of(c, s.words[1]) == "np-tl");
  CHECK(s.words[3].text == "didn't");
  CHECK(tag_of(c, s.words[3]) == "dod*");
  const Sentence& headline = c.documents[0].sentences[1];
  REQUIRE(headline.words.size() == 2);
  CHECK(tag_of(c, headline.words[1]) == "vbn-hl");  // the trailing "\r" is not part of the tag
  const Sentence& b = c.documents[1].sentences[0];
  CHECK(b.words[2].text == "1-1/2");
  CHECK(tag_of(c, b.words[2]) == "cd");
}

TEST_CASE("data: a malformed token or document id is an InputError naming the file and line", "[data]") {
  CHECK_THROWS_WITH(parse_corpus({{"ca01", "\tgood/jj\n\tbad token/nn\n"}}, "DIR"),
                    Catch::Contains("DIR/ca01 line 2") && Catch::Contains("'bad'") && Catch::Contains("word/tag"));
  CHECK_THROWS_WITH(parse_corpus({{"ca01", "\tword/\n"}}, "DIR"), Catch::Contains("'word/'"));
  CHECK_THROWS_WITH(parse_corpus({{"README", "x/y\n"}}, "DIR"), Catch::Contains("not a Brown document id"));
  CHECK_THROWS_WITH(parse_corpus({{"ci01", "x/y\n"}}, "DIR"), Catch::Contains("'ci01'"));  // no genre i
  CHECK_THROWS_AS(parse_corpus({{"ca01", "x/y\n"}, {"ca01", "x/y\n"}}, "DIR"), InputError);
}

TEST_CASE("data: read_corpus of a missing directory says how to fetch the corpus", "[data]") {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("sy_data_no_such_corpus.{}", ::getpid());
  std::filesystem::remove_all(dir);
  CHECK_THROWS_WITH(read_corpus(dir), Catch::Contains(dir.string()) && Catch::Contains("scripts/fetch_data.sh"));
  std::filesystem::create_directories(dir);
  CHECK_THROWS_WITH(read_corpus(dir), Catch::Contains("holds no document"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: the synthetic corpus is deterministic and survives writing and reading back", "[data]") {
  const Corpus a = make_synthetic_corpus({.documents = 20, .seed = 7});
  const Corpus b = make_synthetic_corpus({.documents = 20, .seed = 7});
  const Corpus other = make_synthetic_corpus({.documents = 20, .seed = 8});
  CHECK(corpus_fingerprint(a) == corpus_fingerprint(b));
  CHECK(corpus_fingerprint(a) != corpus_fingerprint(other));
  REQUIRE(a.documents.size() == 20);
  std::set<char> genres;
  for (const Document& d : a.documents) {
    CHECK(is_document_id(d.id));
    genres.insert(d.genre);
  }
  CHECK(genres.size() == 15);

  const auto dir = std::filesystem::temp_directory_path() / fmt::format("sy_data_synthetic_roundtrip.{}", ::getpid());
  std::filesystem::remove_all(dir);
  write_corpus(a, dir);
  const Corpus back = read_corpus(dir);
  CHECK(corpus_fingerprint(back) == corpus_fingerprint(a));
  CHECK(back.pos_tags == a.pos_tags);
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: universal_pos maps Brown tags by their base", "[data]") {
  CHECK(universal_pos("nn") == UniversalPos::kNoun);
  CHECK(universal_pos("np$-tl") == UniversalPos::kNoun);
  CHECK(universal_pos("nns-hl") == UniversalPos::kNoun);
  CHECK(universal_pos("dod*") == UniversalPos::kVerb);
  CHECK(universal_pos("ppss+md") == UniversalPos::kPron);
  CHECK(universal_pos("fw-in") == UniversalPos::kAdp);
  CHECK(universal_pos("at") == UniversalPos::kDet);
  CHECK(universal_pos("*") == UniversalPos::kAdv);
  CHECK(universal_pos("--") == UniversalPos::kPunct);
  CHECK(universal_pos("''") == UniversalPos::kPunct);
  CHECK(universal_pos("cd") == UniversalPos::kNum);
  CHECK(universal_pos("cc") == UniversalPos::kConj);
  CHECK(universal_pos("to") == UniversalPos::kPrt);
  CHECK(universal_pos("uh") == UniversalPos::kOther);
  CHECK(universal_pos_name(UniversalPos::kPunct) == ".");
}

TEST_CASE("data: the split by document is disjoint, complete, stratified by genre and seeded", "[data]") {
  const Corpus c = make_synthetic_corpus({.documents = 75, .min_sentences = 1, .max_sentences = 2});  // 5 per genre
  const DocumentSplit s = split_documents(c, {.validation_fraction = 0.2, .seed = 3});

  std::vector<int64_t> all = s.train;
  all.insert(all.end(), s.validation.begin(), s.validation.end());
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());  // disjoint
  REQUIRE(all.size() == c.documents.size());                        // complete
  CHECK(all.front() == 0);
  CHECK(all.back() == static_cast<int64_t>(c.documents.size()) - 1);

  std::map<char, int> validation_per_genre;
  for (int64_t d : s.validation) ++validation_per_genre[c.documents[static_cast<size_t>(d)].genre];
  CHECK(validation_per_genre.size() == 15);
  for (const auto& [genre, n] : validation_per_genre) CHECK(n == 1);  // round(5 * 0.2)

  const DocumentSplit again = split_documents(c, {.validation_fraction = 0.2, .seed = 3});
  CHECK(again.validation == s.validation);
  const DocumentSplit reseeded = split_documents(c, {.validation_fraction = 0.2, .seed = 4});
  CHECK(reseeded.validation != s.validation);
  CHECK(reseeded.validation.size() == s.validation.size());

  // Shares below one document: round(N * fraction) in all, at most one more than its share per genre.
  const Corpus small = make_synthetic_corpus({.documents = 30, .min_sentences = 1, .max_sentences = 1});  // 2 per genre
  const DocumentSplit s_small = split_documents(small, {.validation_fraction = 0.1});
  CHECK(s_small.validation.size() == 3);
  std::set<char> small_genres;
  for (int64_t d : s_small.validation) small_genres.insert(small.documents[static_cast<size_t>(d)].genre);
  CHECK(small_genres.size() == 3);

  CHECK(split_documents(c, {.validation_fraction = 0.0}).validation.empty());
  CHECK_THROWS_WITH(split_documents(c, {.validation_fraction = 1.0}), Catch::Contains("[0, 1)"));
}

}  // namespace
}  // namespace sy::data
