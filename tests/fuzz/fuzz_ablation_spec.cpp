// Sweep specs (experiments/ablation/spec.hpp load_spec): the input is the spec file, placed as
// experiments/ablations/ holds it, so its model paths ("../configs/models/small.toml") name the
// repository's model configs. A spec that loads is expanded into its runs and their record, as
// run_ablation does before it runs anything (with the spec's own scale: every [scale.X] is read
// and checked either way). The record (spec_json, a writer with no checks) gets one run per arm:
// a spec of 10,000 runs (kMaxRuns, e.g. seeds = 2000 over 5 arms) took 14.7 s an input under
// ASan, 80 % of it building and dumping the same JSON entry 10,000 times, past libFuzzer's 10 s
// timeout; every arm's strings still reach the writer.
#include "experiments/ablation/spec.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path spec_path = [] {
    const std::filesystem::path root = sy::fuzz::scratch_dir() / "experiments";
    std::filesystem::create_directories(root / "ablations");
    std::filesystem::create_directory_symlink(SY_SOURCE_DIR "/experiments/configs", root / "configs");
    return root / "ablations" / "fuzz.toml";
  }();
  sy::fuzz::write_bytes(spec_path, sy::fuzz::as_text(data, size));
  sy::fuzz::expect_input_error_only([&] {
    const sy::ablation::Spec spec = sy::ablation::load_spec(spec_path.string(), "");
    const std::vector<sy::ablation::Run> runs = sy::ablation::plan_runs(spec);
    std::vector<sy::ablation::Run> record;  // the first run of each arm
    std::vector<bool> recorded(spec.arms.size(), false);
    for (const sy::ablation::Run& r : runs) {
      if (recorded.at(r.arm)) continue;
      recorded[r.arm] = true;
      record.push_back(r);
    }
    (void)sy::ablation::spec_json(spec, record).dump();
  });
  return 0;
}
