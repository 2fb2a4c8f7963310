// GShard's expert scaling (arXiv 2006.16668 §5): at fixed tokens per core, 128 -> 512 -> 2048
// experts on as many TPU v3 cores (slices 8x8, 16x16, 32x32 chips), the all-to-all's time and
// its share of the step grow. Before slices and link contention, every size ran on one 32-chip
// ring and the all-to-all grew ×1.04.
#include "graph/parallel/lower.hpp"
#include "graph/models/model_config.hpp"
#include "simulator/hardware.hpp"
#include "simulator/model_step.hpp"
#include "simulator/simulate.hpp"
#include "simulator/topology.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

using namespace sy;

TEST_CASE("GShard-like models: all-to-all time and share grow with the expert count on v3 slices",
          "[simulator][topology]") {
  const HardwareSpec v3 = load_hardware("tpu_v3", default_hardware_dir());
  std::vector<double> a2a, share;
  for (int experts : {128, 512, 2048}) {
    // 2 + 2 layers (one dense, one MoE each) keep the test fast; the full 36 layers are in
    // experiments/bench_sim_fidelity.
    const RunConfig rc = load_run_config(fmt::format("{}/experiments/configs/models/gshard_{}e.toml", SY_SOURCE_DIR, experts),
                                         {"model.encoder_layers=2", "model.decoder_layers=2"});
    REQUIRE(rc.model.moe_encoder.experts == experts);
    const Mesh mesh = parse_mesh(fmt::format("data:{}", experts));
    TrainingGraphOptions built;
    built.mesh = mesh;
    built.layout = parse_layout("batch:data,experts:data", mesh);
    const TrainingStep step = build_training_step(rc.model, rc.train, built);
    const SimResult r = simulate(lower(step.graph(), mesh, built.layout), v3);
    a2a.push_back(r.all_to_all);
    share.push_back(r.all_to_all / r.step_time);
  }
  CHECK(a2a[1] > 1.5 * a2a[0]);  // 8x8 -> 16x16 lines: twice the busiest link's bytes
  CHECK(a2a[2] > a2a[1]);
  CHECK(share[1] > share[0]);
  CHECK(share[2] > share[1]);
}
