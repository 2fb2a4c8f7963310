// Sweep specs (experiments/ablation/spec.hpp load_spec): the input is the spec file, placed as
// experiments/ablations/ holds it, so its model paths ("../configs/models/small.toml") name the
// repository's model configs. A spec that loads is expanded into its runs and their record, as
// run_ablation does before it runs anything (with the spec's own scale: every [scale.X] is read
// and checked either way).
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
    (void)sy::ablation::spec_json(spec, runs).dump();
  });
  return 0;
}
