// Expert load imbalance (simulator/load_skew.hpp): skew models, metrics.jsonl loads, dropped
// choices against capacity, and the ragged backing priced at the busiest device's rows, all
// against hand-computed values.
#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/models/model_config.hpp"
#include "graph/parallel/lower.hpp"
#include "simulator/hardware.hpp"
#include "simulator/load_skew.hpp"
#include "simulator/model_step.hpp"
#include "simulator/simulate.hpp"
#include "tests/simulator/sim_fixtures.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <optional>

using namespace sy;
using Catch::Matchers::Contains;

namespace {

// Decoder-only, one MoE layer (decoder/layer_01/moe): 32 × 64 = 2048 tokens in 8 groups of
// S = 256, E = 8 experts, top-2 with every choice kept, CF 2.5 -> C = floor(256·2.5/8) = 80.
// Uniform: 256·2/8 = 64 choices per expert and group, below C: nothing dropped.
const char* kModel = R"(
[model]
architecture = "decoder_only"
vocab = 512
d_model = 64
d_ff = 128
heads = 4
d_kv = 16
layers = 2
position_bias = false
[moe]
every = 2
experts = 8
k = 2
policy_train = "all"
cf_train = 2.5
group_size = 256
min_capacity = 1
[train]
batch = 32
length = 64
)";

struct Run {
  SimResult r;
  Lowered L;
};

// test::simple_chip (an op's time is its flops / 1e9) with room for the model: 1 TB of HBM.
HardwareSpec simple_chip() {
  HardwareSpec h = test::simple_chip();
  h.hbm_bytes = 1e12;
  return h;
}

// The model's program on data:4 with experts:data: 2 experts per device (0-1, 2-3, 4-5, 6-7).
Lowered ep_program() {
  const RunConfig c = parse_run_config(kModel, "skew.toml");
  const Mesh mesh = parse_mesh("data:4");
  const Layout layout = parse_layout("batch:data,experts:data", mesh);
  const TrainingStep step = build_training_step(c.model, c.train, {.mesh = mesh, .layout = layout});
  return lower(step.graph(), mesh, layout);
}

Run run(const std::optional<ExpertLoads>& loads, bool ragged) {
  const HardwareSpec hw = simple_chip();
  Run out{.r = {}, .L = ep_program()};
  SimOptions o;
  std::optional<LoadSkew> skew;
  if (loads) o.load_skew = &skew.emplace(out.L, *loads, ragged);
  out.r = simulate(out.L, hw, o);
  return out;
}

// The forward expert matmul x·wi ([E, G, C, D] · [E, D, F]) and the all-to-alls of the layer.
const SimOp& expert_matmul(const Run& x) {
  const auto it = std::find_if(x.r.ops.begin(), x.r.ops.end(), [](const SimOp& o) {
    return o.kind == OpKind::einsum && o.phase == Phase::forward && o.scope.starts_with("decoder/layer_01/moe/experts");
  });
  REQUIRE(it != x.r.ops.end());
  return *it;
}
double all_to_all_bytes(const Run& x) {
  double b = 0;
  for (const SimOp& o : x.r.ops)
    if (o.kind == OpKind::all_to_all) b += o.cost.collective_bytes;
  return b;
}

}  // namespace

TEST_CASE("skew models: uniform, zipf, hot as documented; bad values name the flag", "[simulator][load_skew]") {
  CHECK(skew_model_loads("uniform", 4, 2) == std::vector<double>{0.5, 0.5, 0.5, 0.5});
  // zipf:1 over 3 experts, k 1: 1, 1/2, 1/3 over 11/6.
  const auto z = skew_model_loads("zipf:1", 3, 1);
  CHECK(z[0] == Approx(6.0 / 11));
  CHECK(z[1] == Approx(3.0 / 11));
  CHECK(z[2] == Approx(2.0 / 11));
  // hot:0.25 over 8 experts, k 2: expert 0 takes 0.25 of the 2 choices per token, the 7 others 1.5/7.
  const auto h = skew_model_loads("hot:0.25", 8, 2);
  CHECK(h[0] == Approx(0.5));
  CHECK(h[7] == Approx(1.5 / 7));
  CHECK_THROWS_WITH(skew_model("zipf"), Contains("--skew 'zipf'") && Contains("allowed: uniform, zipf:S"));
  CHECK_THROWS_WITH(skew_model("zipf:-1"), Contains("--skew 'zipf:-1'"));
  CHECK_THROWS_WITH(skew_model("hot:1.5"), Contains("--skew 'hot:1.5'"));
  CHECK_THROWS_WITH(skew_model("pareto:2"), Contains("unknown skew model"));
  // hot:0.75 with k = 2: 1.5 choices per token on one expert is impossible (top-k picks distinct experts).
  CHECK_THROWS_WITH(skew_model_loads("hot:0.75", 8, 2), Contains("at most 1"));
}

TEST_CASE("expert loads from a metrics.jsonl: the mean of the last N steps or one step", "[simulator][load_skew]") {
  const auto dir = std::filesystem::temp_directory_path() / "sy_test_load_skew";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "metrics.jsonl").string();
  write_file_atomic(path,
                    R"({"step":1,"loss":1,"moe":{"decoder/layer_01/moe":{"expert_load":[1.0,1.0]}}})"
                    "\n"
                    R"({"step":2,"loss":1,"moe":{"decoder/layer_01/moe":{"expert_load":[1.5,0.5]}}})"
                    "\n"
                    R"({"step":3,"loss":1,"moe":{"decoder/layer_01/moe":{"expert_load":[0.5,1.5]}}})"
                    "\n");
  const ExpertLoads last2 = read_expert_loads(path, "last:2");
  CHECK(last2.by_scope.at("decoder/layer_01/moe") == std::vector<double>{1.0, 1.0});
  CHECK_THAT(last2.source, Contains("mean of steps 2..3"));
  CHECK(read_expert_loads(path, "step:2").by_scope.at("decoder/layer_01/moe") == std::vector<double>{1.5, 0.5});
  CHECK_THROWS_WITH(read_expert_loads(path, "step:9"), Contains("steps 1..3 only"));
  CHECK_THROWS_WITH(read_expert_loads(path, "first:2"), Contains("--expert-load-steps 'first:2'"));
  CHECK_THROWS_WITH(read_expert_loads((dir / "missing.jsonl").string(), "last:1"), Contains("no such file"));
  write_file_atomic(path, "not json\n");
  CHECK_THROWS_WITH(read_expert_loads(path, "last:1"), Contains("line 1 is not a metrics line"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("load skew, capacity backing: uniform changes nothing; a hot expert drops what exceeds C", "[simulator][load_skew]") {
  const Run plain = run(std::nullopt, false);
  const Run uniform = run(skew_model("uniform"), false);
  REQUIRE(uniform.r.expert_load.layers.size() == 1);
  const MoeLayerLoad& u = uniform.r.expert_load.layers[0];
  CHECK(u.scope == "decoder/layer_01/moe");
  CHECK(u.experts == 8);
  CHECK(u.expert_shards == 4);
  CHECK(u.groups == 8);
  CHECK(u.group_size == 256);
  CHECK(u.capacity == 80);
  CHECK(u.k == 2);
  CHECK(u.dropped_fraction == 0);
  CHECK(u.device_overload == Approx(1.0));
  // Static shapes: the same step, op for op.
  CHECK(uniform.r.step_time == plain.r.step_time);
  CHECK(all_to_all_bytes(uniform) == all_to_all_bytes(plain));

  // hot:0.25: expert 0 gets 0.5 choices per token = 128 per group, 48 over C = 80; the others
  // 256·1.5/7 = 54.9 < 80. Dropped 48 / 512 choices per group.
  const Run hot = run(skew_model("hot:0.25"), false);
  const MoeLayerLoad& h = hot.r.expert_load.layers[0];
  CHECK(h.dropped_fraction == Approx(48.0 / 512.0));
  CHECK(h.busiest_expert == 0);
  CHECK(h.expert_overload == Approx(0.5 / 0.25));
  CHECK(h.busiest_device == 0);
  CHECK(h.device_overload == Approx((0.5 + 1.5 / 7) / 0.5));  // device 0 holds experts 0 and 1
  CHECK(hot.r.step_time == plain.r.step_time);  // capacity-padded: skew costs drops, not time
  CHECK(h.extra_time == 0);
}

TEST_CASE("load skew, ragged backing: expert ops and all-to-alls priced at the busiest device's rows", "[simulator][load_skew]") {
  const Run plain = run(std::nullopt, false);
  const Run uniform = run(skew_model("uniform"), true);
  const Run hot = run(skew_model("hot:0.25"), true);
  // Uniform: 64 of 80 slots per expert -> rho = 0.8. hot:0.25, device 0: min(128, 80) + 256·1.5/7 rows of 160.
  const double rho_u = 0.8, rho_h = (80 + 256 * 1.5 / 7) / 160;
  CHECK(uniform.r.expert_load.layers[0].rows_busiest == Approx(rho_u));
  CHECK(hot.r.expert_load.layers[0].rows_busiest == Approx(rho_h));
  CHECK(hot.r.expert_load.layers[0].rows_mean == Approx((80 + 7 * 256 * 1.5 / 7) / 640));
  // The expert matmul's flops are linear in the capacity rows (0 at C = 0).
  const SimOp &p = expert_matmul(plain), &u = expert_matmul(uniform), &h = expert_matmul(hot);
  CHECK(u.cost.flops == Approx(p.cost.flops * rho_u));
  CHECK(h.cost.flops == Approx(p.cost.flops * rho_h));
  // Compute-bound on the simple chip, so its time follows the busiest device's rows.
  REQUIRE(p.bound == Bound::compute);
  REQUIRE(h.bound == Bound::compute);
  CHECK(h.duration / u.duration == Approx(rho_h / rho_u));
  CHECK(h.duration / p.duration == Approx(rho_h));
  // The all-to-alls move [E, G, C, D] payloads: bytes scale by rho too.
  REQUIRE(all_to_all_bytes(plain) > 0);
  CHECK(all_to_all_bytes(hot) == Approx(all_to_all_bytes(plain) * rho_h));
  CHECK(hot.r.step_time > uniform.r.step_time);
  CHECK(hot.r.expert_load.layers[0].extra_time > 0);
}

TEST_CASE("load skew, ragged backing over MPI: the all-to-all is priced as the executor's ragged path", "[simulator][load_skew]") {
  // executor/mpi/ragged_all_to_all.cpp: an all_gather of 32 bytes per member (the path agreed),
  // an all_to_all of 8 bytes per (expert, group) block (the row counts), a pack and an unpack of
  // the routed rows, and MPI_Alltoallv of them.
  const Lowered L = ep_program();
  HardwareSpec hw = simple_chip();
  hw.hbm_bandwidth = 1e9;  // the copies take time: (read + write) / 1e9
  hw.hop_latency = 1e-6;
  const LoadSkew skew(L, skew_model("uniform"), true);
  SimOptions o;
  o.load_skew = &skew;
  const SimResult direct = simulate(L, hw, o);
  hw.staged_collectives = true;
  const SimResult staged = simulate(L, hw, o);
  int checked = 0;
  for (size_t i = 0; i < staged.ops.size(); ++i) {
    const SimOp &s = staged.ops[i], &d = direct.ops[i];
    if (s.kind != OpKind::all_to_all) continue;
    // Local input [experts 8, group 8/4, capacity 80, d_model 64] at rho 0.8: 16 blocks.
    const double routed = s.cost.bytes_read;
    CHECK(routed == Approx(0.8 * 8 * 2 * 80 * 64 * 4));
    const Topology& t = staged.topology;
    const double calls = collective_time(hw, t, OpKind::all_gather, s.axes, 32, 32 * 4).total +
                         collective_time(hw, t, OpKind::all_to_all, s.axes, 8 * 16, 8 * 16).total;
    CHECK(s.comm.latency == Approx(d.comm.latency + calls));
    CHECK(s.comm.bandwidth == Approx(d.comm.bandwidth));  // the routed bytes, as without staging
    CHECK(s.comm.staging == Approx(2 * (2 * routed) / 1e9));  // pack and unpack: each reads and writes them
    CHECK(s.duration == Approx(d.duration + calls + s.comm.staging));
    ++checked;
  }
  CHECK(checked == 4);  // dispatch and combine, forward and backward
}

TEST_CASE("load skew, ragged backing over MPI: a calibrated ragged all-to-all is priced whole at its routed bytes", "[simulator][load_skew]") {
  // HardwareSpec::ragged_all_to_all_seconds: calibrate timed the executor's path whole, cold, so
  // neither its parts (agreement, row counts, pack, unpack) nor a cold cost are added to it.
  const Lowered L = ep_program();
  HardwareSpec hw = simple_chip();
  hw.hbm_bandwidth = 1e9;
  hw.hop_latency = 1e-6;
  hw.staged_collectives = true;
  hw.latency_after_streaming.points = {{1e3, 50e-6}, {1e9, 50e-6}};  // every other collective: +50 µs cold
  hw.ragged_all_to_all_seconds.points = {{1e5, 100e-6}, {4e5, 400e-6}};  // 1 µs per KB: V/1e9 s
  const LoadSkew skew(L, skew_model("uniform"), true);
  SimOptions o;
  o.load_skew = &skew;
  const SimResult r = simulate(L, hw, o);
  int checked = 0, cold = 0;
  for (const SimOp& s : r.ops) {
    if (!s.collective || s.kind == OpKind::shard_slice) continue;
    if (s.kind != OpKind::all_to_all) {
      cold += s.comm.latency >= 50e-6;  // the others still pay their cold cost
      continue;
    }
    const double routed = 0.8 * 8 * 2 * 80 * 64 * 4;  // as above: 262,144 bytes
    REQUIRE(s.cost.bytes_read == Approx(routed));
    CHECK(s.duration == Approx(routed / 1e9));  // linear between the points: 262.1 µs
    CHECK(s.comm.staging == 0);
    ++checked;
  }
  CHECK(checked == 4);
  CHECK(cold > 0);
}

TEST_CASE("load skew: measured loads must cover the model's MoE layers", "[simulator][load_skew]") {
  ExpertLoads other{.source = "x.jsonl", .model = "", .by_scope = {{"encoder/layer_01/moe", std::vector<double>(8, 0.25)}}};
  CHECK_THROWS_WITH(run(other, false), Contains("no loads for the model's MoE layer decoder/layer_01/moe"));
  ExpertLoads wrong{.source = "x.jsonl", .model = "", .by_scope = {{"decoder/layer_01/moe", std::vector<double>(4, 0.5)}}};
  CHECK_THROWS_WITH(run(wrong, false), Contains("loads for 4 experts, the model 8"));
}

namespace {

// Forward all-to-all payloads of the MoE layer of a decoder-only model on data:4 (experts:data):
// 2,048 tokens in 8 groups of S = 256, E = 8 experts, top-4, in EG = 4 expert groups of which a
// token may use M = 2; capacity ceil_k at CF 1: C = ceil(4·256/8) = 128, Cg = ceil(256·2/4) = 128.
std::vector<double> forward_all_to_all_bytes(bool group_dispatch) {
  std::string text = kModel;  // kModel with top-4, ceil_k at CF 1 and 4 expert groups of which 2 per token
  auto edit = [&](const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
  };
  edit("k = 2\n", "k = 4\n");
  edit("cf_train = 2.5\n", fmt::format("cf_train = 1.0\ncapacity = \"ceil_k\"\nexpert_groups = 4\nroute_groups = 2\n"
                                       "group_dispatch = {}\n", group_dispatch));
  const RunConfig c = parse_run_config(text, "group.toml");
  const Mesh mesh = parse_mesh("data:4");
  const Layout layout = parse_layout("batch:data,experts:data", mesh);
  const TrainingStep step = build_training_step(c.model, c.train, {.mesh = mesh, .layout = layout});
  const Lowered L = lower(step.graph(), mesh, layout);
  const SimResult r = simulate(L, simple_chip());
  std::vector<double> bytes;
  for (const SimOp& o : r.ops)
    if (o.kind == OpKind::all_to_all && o.phase == Phase::forward) bytes.push_back(o.cost.collective_bytes);
  std::sort(bytes.begin(), bytes.end());
  return bytes;
}

}  // namespace

TEST_CASE("group dispatch: a token's row crosses to M expert groups, not k experts (DeepSeek-V3's dispatch)",
          "[simulator][load_skew]") {
  // One stage: the expert buffers [E, G, C, D] go and come back, X bytes each way. Two stages: the
  // group buffers [EG, G, Cg, D] go and come back (Cg·EG = 512 rows per token group against
  // C·E = 1,024: M/k), the outbound ones with their rows' expert slots and gates [EG, G, Cg, E/EG]
  // (E/EG = 2 floats per row of D = 64).
  const std::vector<double> one = forward_all_to_all_bytes(false), two = forward_all_to_all_bytes(true);
  REQUIRE(one.size() == 2);
  REQUIRE(one[0] == one[1]);
  const double X = one[0];
  REQUIRE(two.size() == 4);
  CHECK(two[0] == Approx(X / 2 * 2.0 / 64));  // slots
  CHECK(two[1] == Approx(X / 2 * 2.0 / 64));  // gates
  CHECK(two[2] == Approx(X / 2));             // dispatch: M/k = 2/4 of the rows
  CHECK(two[3] == Approx(X / 2));             // combine: the same rows back, summed per group
}
