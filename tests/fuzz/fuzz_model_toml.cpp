// Model config TOML (graph/models/model_config.hpp parse_run_config): the input is the file. A
// config that parses is also written out as its run record (to_json), as train does.
#include "graph/models/model_config.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sy::fuzz::expect_input_error_only([&] {
    const sy::RunConfig cfg = sy::parse_run_config(sy::fuzz::as_text(data, size), "fuzz.toml");
    (void)sy::to_json(cfg).dump();
  });
  return 0;
}
