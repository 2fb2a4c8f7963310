#include "executor/data/corpus.hpp"

#include "executor/data/random.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/output_dir.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

namespace sy::data {

int64_t Document::word_count() const {
  int64_t n = 0;
  for (const Sentence& s : sentences) n += static_cast<int64_t>(s.words.size());
  return n;
}

int64_t Corpus::word_count() const {
  int64_t n = 0;
  for (const Document& d : documents) n += d.word_count();
  return n;
}

int64_t Corpus::sentence_count() const {
  int64_t n = 0;
  for (const Document& d : documents) n += static_cast<int64_t>(d.sentences.size());
  return n;
}

namespace {

struct Genre {
  char letter;
  std::string_view name;
};
constexpr std::array<Genre, 15> kGenres = {{
    {'a', "press: reportage"},
    {'b', "press: editorial"},
    {'c', "press: reviews"},
    {'d', "religion"},
    {'e', "skill and hobbies"},
    {'f', "popular lore"},
    {'g', "belles-lettres"},
    {'h', "miscellaneous: government and house organs"},
    {'j', "learned"},
    {'k', "fiction: general"},
    {'l', "fiction: mystery and detective"},
    {'m', "fiction: science"},
    {'n', "fiction: adventure and western"},
    {'p', "fiction: romance and love story"},
    {'r', "humor"},
}};

bool is_genre(char g) {
  return std::any_of(kGenres.begin(), kGenres.end(), [g](const Genre& x) { return x.letter == g; });
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

std::string_view genre_name(char genre) {
  for (const Genre& g : kGenres)
    if (g.letter == genre) return g.name;
  throw InputError(fmt::format("genre '{}' is not a Brown genre (allowed: a-h, j-n, p, r)", genre));
}

bool is_document_id(std::string_view id) {
  return id.size() == 4 && id[0] == 'c' && is_genre(id[1]) && std::isdigit(static_cast<unsigned char>(id[2])) &&
         std::isdigit(static_cast<unsigned char>(id[3]));
}

Corpus parse_corpus(const std::vector<DocumentText>& texts, std::string_view source_dir) {
  Corpus corpus;
  std::unordered_map<std::string, int32_t> provisional;  // tag -> id in order of appearance
  std::vector<std::string> tags_seen;
  std::set<std::string> ids;

  for (const DocumentText& t : texts) {
    const std::string source = fmt::format("{}/{}", source_dir, t.id);
    if (!is_document_id(t.id))
      throw InputError(fmt::format("{}: '{}' is not a Brown document id (allowed: 'c', a genre letter a-h, j-n, p "
                                   "or r, two digits, like ca01)",
                                   source, t.id));
    if (!ids.insert(t.id).second) throw InputError(fmt::format("{}: document id '{}' appears twice", source, t.id));
    Document doc;
    doc.id = t.id;
    doc.genre = t.id[1];
    int64_t line_no = 0;
    size_t line_begin = 0;
    while (line_begin < t.text.size()) {
      size_t line_end = t.text.find('\n', line_begin);
      if (line_end == std::string::npos) line_end = t.text.size();
      const std::string_view line(t.text.data() + line_begin, line_end - line_begin);
      ++line_no;
      line_begin = line_end + 1;
      Sentence sentence;
      size_t i = 0;
      while (i < line.size()) {
        while (i < line.size() && is_blank(line[i])) ++i;
        size_t j = i;
        while (j < line.size() && !is_blank(line[j])) ++j;
        if (j == i) break;
        const std::string_view token = line.substr(i, j - i);
        i = j;
        const size_t slash = token.rfind('/');
        if (slash == std::string_view::npos || slash == 0 || slash + 1 == token.size())
          throw InputError(fmt::format("{} line {}: token '{}' is not word/tag (a word, '/', a POS tag)", source,
                                       line_no, token));
        const std::string tag(token.substr(slash + 1));
        auto [it, inserted] = provisional.try_emplace(tag, static_cast<int32_t>(tags_seen.size()));
        if (inserted) tags_seen.push_back(tag);
        sentence.words.push_back({std::string(token.substr(0, slash)), it->second});
      }
      if (!sentence.words.empty()) doc.sentences.push_back(std::move(sentence));
    }
    corpus.documents.push_back(std::move(doc));
  }

  // Number the tags in sorted order so the ids do not depend on the order the files were read.
  corpus.pos_tags = tags_seen;
  std::sort(corpus.pos_tags.begin(), corpus.pos_tags.end());
  std::vector<int32_t> remap(tags_seen.size());
  for (size_t p = 0; p < tags_seen.size(); ++p)
    remap[p] = static_cast<int32_t>(std::lower_bound(corpus.pos_tags.begin(), corpus.pos_tags.end(), tags_seen[p]) -
                                    corpus.pos_tags.begin());
  for (Document& d : corpus.documents)
    for (Sentence& s : d.sentences)
      for (TaggedWord& w : s.words) w.pos = remap[static_cast<size_t>(w.pos)];
  std::sort(corpus.documents.begin(), corpus.documents.end(),
            [](const Document& a, const Document& b) { return a.id < b.id; });
  return corpus;
}

Corpus read_corpus(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw InputError(fmt::format("corpus directory '{}' does not exist (fetch the Brown corpus with "
                                 "scripts/fetch_data.sh, or set SWITCHYARD_DATA / --data to where it is)",
                                 dir.string()));
  std::vector<DocumentText> texts;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || !is_document_id(name)) continue;
    texts.push_back({name, read_file(entry.path().string())});
  }
  if (texts.empty())
    throw InputError(fmt::format("corpus directory '{}' holds no document (files named like ca01, c + genre "
                                 "letter + two digits); fetch the Brown corpus with scripts/fetch_data.sh",
                                 dir.string()));
  std::sort(texts.begin(), texts.end(), [](const DocumentText& a, const DocumentText& b) { return a.id < b.id; });
  return parse_corpus(texts, dir.string());
}

std::string format_document(const Document& doc, const std::vector<std::string>& pos_tags) {
  std::string out;
  for (const Sentence& s : doc.sentences) {
    out += "\n\n\t";
    for (size_t i = 0; i < s.words.size(); ++i) {
      if (i > 0) out += ' ';
      out += s.words[i].text;
      out += '/';
      out += pos_tags.at(static_cast<size_t>(s.words[i].pos));
    }
    out += '\n';
  }
  return out;
}

void write_corpus(const Corpus& corpus, const std::filesystem::path& dir) {
  create_output_dir(dir, "corpus directory");
  for (const Document& d : corpus.documents)
    write_file_atomic((dir / d.id).string(), format_document(d, corpus.pos_tags));
}

uint64_t corpus_fingerprint(const Corpus& corpus) {
  uint64_t h = fnv1a64("switchyard tagged corpus");
  for (const Document& d : corpus.documents) {
    h = fnv1a64(d.id, h);
    for (const Sentence& s : d.sentences) {
      for (const TaggedWord& w : s.words) {
        h = fnv1a64(" ", h);
        h = fnv1a64(w.text, h);
        h = fnv1a64("/", h);
        h = fnv1a64(corpus.pos_tags.at(static_cast<size_t>(w.pos)), h);
      }
      h = fnv1a64("\n", h);
    }
  }
  return h;
}

UniversalPos universal_pos(std::string_view tag) {
  static const std::map<std::string_view, UniversalPos> kBase = {
      {".", UniversalPos::kPunct},    {",", UniversalPos::kPunct},    {":", UniversalPos::kPunct},
      {"(", UniversalPos::kPunct},    {")", UniversalPos::kPunct},    {"--", UniversalPos::kPunct},
      {"``", UniversalPos::kPunct},   {"''", UniversalPos::kPunct},   {"'", UniversalPos::kPunct},
      {"nn", UniversalPos::kNoun},    {"nns", UniversalPos::kNoun},   {"np", UniversalPos::kNoun},
      {"nps", UniversalPos::kNoun},   {"nr", UniversalPos::kNoun},    {"nrs", UniversalPos::kNoun},
      {"vb", UniversalPos::kVerb},    {"vbd", UniversalPos::kVerb},   {"vbg", UniversalPos::kVerb},
      {"vbn", UniversalPos::kVerb},   {"vbz", UniversalPos::kVerb},   {"be", UniversalPos::kVerb},
      {"bed", UniversalPos::kVerb},   {"bedz", UniversalPos::kVerb},  {"beg", UniversalPos::kVerb},
      {"bem", UniversalPos::kVerb},   {"ben", UniversalPos::kVerb},   {"ber", UniversalPos::kVerb},
      {"bez", UniversalPos::kVerb},   {"do", UniversalPos::kVerb},    {"dod", UniversalPos::kVerb},
      {"doz", UniversalPos::kVerb},   {"hv", UniversalPos::kVerb},    {"hvd", UniversalPos::kVerb},
      {"hvg", UniversalPos::kVerb},   {"hvn", UniversalPos::kVerb},   {"hvz", UniversalPos::kVerb},
      {"md", UniversalPos::kVerb},    {"jj", UniversalPos::kAdj},     {"jjr", UniversalPos::kAdj},
      {"jjs", UniversalPos::kAdj},    {"jjt", UniversalPos::kAdj},    {"ap", UniversalPos::kAdj},
      {"rb", UniversalPos::kAdv},     {"rbr", UniversalPos::kAdv},    {"rbt", UniversalPos::kAdv},
      {"rn", UniversalPos::kAdv},     {"ql", UniversalPos::kAdv},     {"qlp", UniversalPos::kAdv},
      {"wrb", UniversalPos::kAdv},    {"pn", UniversalPos::kPron},    {"pp", UniversalPos::kPron},
      {"ppl", UniversalPos::kPron},   {"ppls", UniversalPos::kPron},  {"ppo", UniversalPos::kPron},
      {"pps", UniversalPos::kPron},   {"ppss", UniversalPos::kPron},  {"wp", UniversalPos::kPron},
      {"wpo", UniversalPos::kPron},   {"wps", UniversalPos::kPron},   {"at", UniversalPos::kDet},
      {"abl", UniversalPos::kDet},    {"abn", UniversalPos::kDet},    {"abx", UniversalPos::kDet},
      {"dt", UniversalPos::kDet},     {"dti", UniversalPos::kDet},    {"dts", UniversalPos::kDet},
      {"dtx", UniversalPos::kDet},    {"wdt", UniversalPos::kDet},    {"ex", UniversalPos::kDet},
      {"in", UniversalPos::kAdp},     {"cd", UniversalPos::kNum},     {"od", UniversalPos::kNum},
      {"cc", UniversalPos::kConj},    {"cs", UniversalPos::kConj},    {"to", UniversalPos::kPrt},
      {"rp", UniversalPos::kPrt},
  };
  std::string_view base = tag;
  if (base.starts_with("fw-")) base.remove_prefix(3);
  if (const size_t plus = base.find('+'); plus != std::string_view::npos) base = base.substr(0, plus);
  if (base != "--")
    if (const size_t dash = base.find('-'); dash != std::string_view::npos && dash > 0) base = base.substr(0, dash);
  if (base == "*") return UniversalPos::kAdv;  // "not", "n't"
  while (base.size() > 1 && (base.back() == '*' || base.back() == '$')) base.remove_suffix(1);
  const auto it = kBase.find(base);
  return it == kBase.end() ? UniversalPos::kOther : it->second;
}

std::string_view universal_pos_name(UniversalPos p) {
  switch (p) {
    case UniversalPos::kNoun: return "NOUN";
    case UniversalPos::kVerb: return "VERB";
    case UniversalPos::kAdj: return "ADJ";
    case UniversalPos::kAdv: return "ADV";
    case UniversalPos::kPron: return "PRON";
    case UniversalPos::kDet: return "DET";
    case UniversalPos::kAdp: return "ADP";
    case UniversalPos::kNum: return "NUM";
    case UniversalPos::kConj: return "CONJ";
    case UniversalPos::kPrt: return "PRT";
    case UniversalPos::kPunct: return ".";
    case UniversalPos::kOther: return "X";
  }
  return "X";
}

DocumentSplit split_documents(const Corpus& corpus, const SplitOptions& opts) {
  if (!(opts.validation_fraction >= 0.0 && opts.validation_fraction < 1.0))
    throw InputError(fmt::format("validation fraction {}: must be in [0, 1)", opts.validation_fraction));
  std::map<char, std::vector<int64_t>> by_genre;
  for (size_t i = 0; i < corpus.documents.size(); ++i)
    by_genre[corpus.documents[i].genre].push_back(static_cast<int64_t>(i));

  // Validation documents per genre: round(N * fraction) in all, each genre its share rounded down,
  // the rest to the genres with the largest remainders (ties in a seeded order of the genres).
  struct Quota {
    char genre;
    int64_t count;
    double remainder;
    uint64_t tie;
  };
  std::vector<Quota> quotas;
  int64_t assigned = 0;
  for (const auto& [genre, docs] : by_genre) {
    const double share = static_cast<double>(docs.size()) * opts.validation_fraction;
    const auto count = static_cast<int64_t>(std::floor(share));
    const uint64_t tie = hash_values({opts.seed, static_cast<uint64_t>(genre)});
    quotas.push_back({genre, count, share - static_cast<double>(count), tie});
    assigned += count;
  }
  const auto total =
      static_cast<int64_t>(std::floor(static_cast<double>(corpus.documents.size()) * opts.validation_fraction + 0.5));
  std::sort(quotas.begin(), quotas.end(), [](const Quota& a, const Quota& b) {
    return a.remainder != b.remainder ? a.remainder > b.remainder : a.tie < b.tie;
  });
  for (size_t q = 0; assigned < total && q < quotas.size(); ++q, ++assigned) ++quotas[q].count;

  std::vector<bool> is_validation(corpus.documents.size(), false);
  for (const Quota& q : quotas) {
    std::vector<std::pair<uint64_t, int64_t>> ranked;  // (hash of id, document)
    for (int64_t d : by_genre[q.genre])
      ranked.push_back({hash_values({opts.seed, fnv1a64(corpus.documents[static_cast<size_t>(d)].id)}), d});
    std::sort(ranked.begin(), ranked.end());
    for (size_t k = 0; k < static_cast<size_t>(q.count); ++k)
      is_validation[static_cast<size_t>(ranked[k].second)] = true;
  }
  DocumentSplit split;
  for (size_t i = 0; i < corpus.documents.size(); ++i)
    (is_validation[i] ? split.validation : split.train).push_back(static_cast<int64_t>(i));
  return split;
}

namespace {

struct WordClass {
  std::string_view tag;
  std::vector<std::string_view> words;
};

// A small English-like grammar with Brown tags.
struct Grammar {
  WordClass det{"at", {"the", "a", "every", "no"}};
  WordClass adj{"jj", {"big", "small", "green", "quiet", "old", "bright", "heavy", "early"}};
  WordClass noun{"nn", {"cat", "river", "city", "idea", "teacher", "window", "garden", "letter", "engine", "storm"}};
  WordClass nouns{"nns", {"cats", "rivers", "cities", "ideas", "teachers", "windows", "gardens", "letters"}};
  WordClass name{"np", {"Alice", "Boston", "Fulton", "Mary", "Georgia", "Smith"}};
  WordClass verb{"vbd", {"saw", "liked", "painted", "crossed", "opened", "wrote", "found", "carried"}};
  WordClass prep{"in", {"in", "near", "with", "under", "after", "of"}};
  WordClass num{"cd", {"two", "three", "12", "1-1/2", "seven"}};
  WordClass conj{"cc", {"and", "but"}};
  WordClass adv{"rb", {"quickly", "often", "never", "slowly"}};
};

}  // namespace

Corpus make_synthetic_corpus(const SyntheticCorpusOptions& opts) {
  SY_CHECK(opts.documents >= 0 && opts.min_sentences >= 1 && opts.max_sentences >= opts.min_sentences,
           "synthetic corpus options: documents {}, sentences {}..{}", opts.documents, opts.min_sentences,
           opts.max_sentences);
  const Grammar g;
  const std::string_view kGenreLetters = "abcdefghjklmnpr";
  Rng rng(hash_values({opts.seed, 0x5f17ull}));
  std::vector<DocumentText> texts;

  for (int d = 0; d < opts.documents; ++d) {
    const char genre = kGenreLetters[static_cast<size_t>(d) % kGenreLetters.size()];
    const int number = d / static_cast<int>(kGenreLetters.size()) + 1;
    SY_CHECK(number <= 99, "synthetic corpus: at most {} documents", 99 * kGenreLetters.size());
    std::string text;
    const auto extra = rng.below(static_cast<uint64_t>(opts.max_sentences - opts.min_sentences + 1));
    const int sentences = opts.min_sentences + static_cast<int>(extra);
    for (int s = 0; s < sentences; ++s) {
      std::vector<std::pair<std::string, std::string_view>> words;  // (word, tag)
      auto pick = [&](const WordClass& c) {
        words.push_back({std::string(c.words[rng.below(c.words.size())]), c.tag});
      };
      auto noun_phrase = [&] {
        switch (rng.below(4)) {
          case 0: pick(g.name); break;
          case 1: pick(g.num); pick(g.nouns); break;
          default:
            pick(g.det);
            if (rng.below(2) == 0) pick(g.adj);
            pick(g.noun);
        }
      };
      auto clause = [&] {
        noun_phrase();
        if (rng.below(4) == 0) pick(g.adv);
        pick(g.verb);
        noun_phrase();
        if (rng.below(3) == 0) {
          pick(g.prep);
          noun_phrase();
        }
      };
      clause();
      if (rng.below(3) == 0) {
        words.push_back({",", ","});
        pick(g.conj);
        clause();
      }
      words.push_back({".", "."});
      words[0].first[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(words[0].first[0])));
      text += "\n\n\t";
      for (size_t i = 0; i < words.size(); ++i)
        text += fmt::format("{}{}/{}", i > 0 ? " " : "", words[i].first, words[i].second);
      text += '\n';
    }
    texts.push_back({fmt::format("c{}{:02d}", genre, number), std::move(text)});
  }
  return parse_corpus(texts, "<synthetic>");
}

}  // namespace sy::data
