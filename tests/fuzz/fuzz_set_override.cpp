// `--set section.key=value` strings (graph/models/model_config.hpp parse_run_config overrides):
// each input line is one --set argument, applied to a fixed model (experiments/configs/models/
// small.toml, an MoE model, so [moe] and [moe.decoder] keys exist).
#include "graph/file_io.hpp"
#include "graph/models/model_config.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string base = sy::read_file(SY_SOURCE_DIR "/experiments/configs/models/small.toml");
  std::vector<std::string> overrides;
  std::string_view rest = sy::fuzz::as_text(data, size);
  while (!rest.empty()) {
    auto [line, after] = sy::fuzz::split_once(rest, '\n');
    overrides.emplace_back(line);
    rest = after;
  }
  sy::fuzz::expect_input_error_only([&] {
    const sy::RunConfig cfg = sy::parse_run_config(base, "small.toml", overrides);
    (void)sy::to_json(cfg).dump();
  });
  return 0;
}
