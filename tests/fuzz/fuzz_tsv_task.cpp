// TSV task files (executor/data/tsv.hpp parse_tsv_task): the input is the file.
#include "executor/data/tsv.hpp"
#include "tests/fuzz/fuzz_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sy::fuzz::expect_input_error_only(
      [&] { (void)sy::data::parse_tsv_task(sy::fuzz::as_text(data, size), "fuzz/train.tsv"); });
  return 0;
}
