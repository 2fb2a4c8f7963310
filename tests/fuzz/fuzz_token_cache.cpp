// Token caches (executor/data/cache.hpp read_token_cache): a cache directory holds index.json,
// tokenizer.model, train.tokens and validation.tokens. The input is index.json, then a NUL byte,
// then the token bytes: train.tokens takes as many bytes as the index's splits.train.tokens
// says (8 per token, as far as there are), validation.tokens the rest. tokenizer.model is fixed: a
// 50-id model (10 sentinels) trained once at start-up. Checksums are 64-bit, so the fuzzer would
// never get past them: a checksum written "auto" in the input is replaced by the token file's
// real one, and any other value is checked as given.
#include "executor/data/cache.hpp"
#include "executor/data/random.hpp"
#include "executor/data/tokenizer.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// A tokenizer trained on fixed sentences (deterministic: the same model every run).
void write_tokenizer(const fs::path& path) {
  const std::vector<std::string> words = {"the", "model", "routes", "tokens", "to", "experts", "and", "each",
                                          "expert", "has", "a", "capacity", "of", "slots", "per", "group",
                                          "dropped", "overflow", "router", "gates", "softmax", "over", "layers"};
  std::vector<std::string> sentences;
  sy::data::Rng rng(1);
  for (int s = 0; s < 400; ++s) {
    std::string line;
    for (int w = 0; w < 12; ++w) {
      if (!line.empty()) line += ' ';
      line += words[rng.next() % words.size()];
    }
    sentences.push_back(std::move(line));
  }
  sy::data::TokenizerOptions opts;
  opts.vocab_size = 50;  // 40 pieces: all these words allow (at most 49)
  opts.extra_ids = 10;
  sy::data::Tokenizer::train(sentences, opts).save(path);
}

// Replaces "auto" checksums of splits.<name>.fnv1a64 with the real one of `bytes`.
void fill_checksum(nlohmann::json& j, const char* name, std::string_view bytes) {
  if (!j.is_object() || !j.contains("splits") || !j["splits"].is_object()) return;
  nlohmann::json& splits = j["splits"];
  if (!splits.contains(name) || !splits[name].is_object()) return;
  nlohmann::json& s = splits[name];
  if (s.contains("fnv1a64") && s["fnv1a64"] == "auto") s["fnv1a64"] = fmt::format("{:016x}", sy::data::fnv1a64(bytes));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path dir = [] {
    const fs::path d = sy::fuzz::scratch_dir() / "cache";
    fs::create_directories(d);
    write_tokenizer(d / "tokenizer.model");
    return d;
  }();
  auto [index_text, tokens] = sy::fuzz::split_once(sy::fuzz::as_text(data, size), '\0');
  std::string index(index_text);
  size_t train_bytes = tokens.size();
  nlohmann::json j = nlohmann::json::parse(index, nullptr, false);
  if (j.is_object()) {
    try {
      train_bytes = std::min(tokens.size(), static_cast<size_t>(j.at("splits").at("train").at("tokens").get<uint32_t>()) * 8);
    } catch (const nlohmann::json::exception&) {
    }
  }
  const std::string_view train = tokens.substr(0, train_bytes), validation = tokens.substr(train_bytes);
  if (j.is_object()) {
    fill_checksum(j, "train", train);
    fill_checksum(j, "validation", validation);
    index = j.dump(1);
  }
  sy::fuzz::write_bytes(dir / "index.json", index);
  sy::fuzz::write_bytes(dir / "train.tokens", train);
  sy::fuzz::write_bytes(dir / "validation.tokens", validation);
  sy::fuzz::expect_input_error_only([&] { (void)sy::data::read_token_cache(dir); });
  return 0;
}
