// Safetensors checkpoints (executor/train/checkpoint.hpp read_safetensors, read_checkpoint): the
// input is the file. A checkpoint that reads is resumed as train --resume does: its stored model
// TOML is parsed with its stored --set overrides.
#include "executor/train/checkpoint.hpp"
#include "graph/models/model_config.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = sy::fuzz::scratch_dir() / "checkpoint.safetensors";
  sy::fuzz::write_bytes(path, sy::fuzz::as_text(data, size));
  sy::fuzz::expect_input_error_only([&] {
    const sy::Checkpoint c = sy::read_checkpoint(path);
    (void)sy::parse_run_config(c.run.model_toml, c.run.model_path, c.run.overrides);
  });
  return 0;
}
