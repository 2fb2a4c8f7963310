// HardwareSpec files (simulator/hardware): the shipped chips load with their REFERENCE.md figures,
// a spec survives to_toml, and bad files name the file, the key and what is allowed.
#include "graph/error.hpp"
#include "simulator/hardware.hpp"
#include "simulator/roofline.hpp"

#include <catch2/catch.hpp>

using namespace sy;
using Catch::Matchers::Contains;

TEST_CASE("the shipped TPU specs load with REFERENCE.md's figures", "[simulator][hardware]") {
  const std::string dir = default_hardware_dir();
  struct Row {
    const char* name;
    double bf16_per_chip, hbm_per_chip, bw_per_chip, link;
    int64_t pod_chips;
  };
  const Row rows[] = {
      {"tpu_v2", 45e12, 16.0 * (1ull << 30), 700e9, 6.2e10, 256},
      {"tpu_v3", 123e12, 32.0 * (1ull << 30), 900e9, 1e11, 1024},
      {"tpu_v4", 275e12, 32.0 * (1ull << 30), 1.2e12, 4.5e10, 4096},
      {"tpu_v5e", 197e12, 16e9, 819e9, 4.5e10, 256},
      {"tpu_v5p", 459e12, 95.0 * (1ull << 30), 2.77e12, 9e10, 16 * 20 * 28},
  };
  for (const Row& r : rows) {
    INFO(r.name);
    const HardwareSpec h = load_hardware(r.name, dir);
    CHECK(h.name == r.name);
    const double d = static_cast<double>(h.devices_per_chip);
    CHECK(h.matmul_flops_bf16 * d == Approx(r.bf16_per_chip));
    CHECK(h.hbm_bytes * d == Approx(r.hbm_per_chip));
    CHECK(h.hbm_bandwidth * d == Approx(r.bw_per_chip));
    CHECK(h.link_bandwidth == Approx(r.link));
    CHECK(h.pod_chips() == r.pod_chips);
    CHECK(parse_hardware(to_toml(h), "<round trip>").matmul_flops_bf16 == h.matmul_flops_bf16);
    CHECK(parse_hardware(to_toml(h), "<round trip>").efficiency_of(OpClass::matmul).compute.points ==
          h.efficiency_of(OpClass::matmul).compute.points);
  }
}

TEST_CASE("a calibrated MPI backing's collective keys round-trip (staged copies, latency after streaming)",
          "[simulator][hardware]") {
  HardwareSpec h = load_hardware("tpu_v4", default_hardware_dir());
  CHECK_FALSE(h.staged_collectives);  // TPU: the ICI DMA moves strided blocks in place
  CHECK(h.latency_after_streaming.points.empty());
  h.staged_collectives = true;
  h.latency_after_streaming.points = {{8e6, 0.0}, {2e9, 6.2e-5}};  // to_toml writes 6 significant digits
  const HardwareSpec back = parse_hardware(to_toml(h), "<round trip>");
  CHECK(back.staged_collectives);
  CHECK(back.latency_after_streaming.points == h.latency_after_streaming.points);
  CHECK(back.latency_after_streaming.at(1e3) == 0);  // clamped: below the first point
  CHECK(back.latency_after_streaming.at(4e9) == Approx(6.2e-5));
  CHECK(back.eager_limit == 0);  // one path unless the file says
  CHECK(back.eager_latency_after_streaming.points.empty());
  CHECK(back.eager_path_share == 1);
  CHECK(back.copy_path_share == 1);
  CHECK(back.copy_warm_share == 0);
  h.eager_limit = 2048;
  h.eager_latency_after_streaming.points = {{2.62144e5, 0.0}, {1.34218e8, 5.23e-5}};
  h.eager_path_share = 0.69;
  h.copy_path_share = 0.45;
  h.copy_warm_share = 0.5;
  const HardwareSpec two = parse_hardware(to_toml(h), "<round trip>");
  CHECK(two.eager_limit == 2048);
  CHECK(two.eager_latency_after_streaming.points == h.eager_latency_after_streaming.points);
  CHECK(two.eager_path_share == 0.69);
  CHECK(two.copy_path_share == 0.45);
  CHECK(two.copy_warm_share == 0.5);
  CHECK(two.ragged_all_to_all_seconds.points.empty());
  h.ragged_all_to_all_seconds.points = {{81920, 6.59e-5}, {327680, 0.000121}, {1.31072e6, 0.000279}};
  const HardwareSpec ragged = parse_hardware(to_toml(h), "<round trip>");
  CHECK(ragged.ragged_all_to_all_seconds.points == h.ragged_all_to_all_seconds.points);
}

TEST_CASE("a ragged all_to_all's time: linear between calibrate's points, in proportion above them", "[simulator][hardware]") {
  HardwareSpec h;
  h.ragged_all_to_all_seconds.points = {{1e5, 60e-6}, {3e5, 100e-6}, {1.3e6, 300e-6}};
  CHECK(h.ragged_all_to_all_time(2e5) == Approx(80e-6));   // halfway: linear, not log-linear
  CHECK(h.ragged_all_to_all_time(8e5) == Approx(200e-6));
  CHECK(h.ragged_all_to_all_time(5e4) == Approx(60e-6));   // below: the smallest (its fixed costs)
  CHECK(h.ragged_all_to_all_time(2.6e6) == Approx(600e-6));  // above: more rows, more time per row alike
}

TEST_CASE("a collective kind's own α and size curve (ici.<kind>) round-trip and replace the shared ones for it",
          "[simulator][hardware]") {
  HardwareSpec h = load_hardware("tpu_v4", default_hardware_dir());
  CHECK(h.collective_kinds.empty());  // TPU: every kind is the ring/torus formula
  h.ici_efficiency_by_size.points = {{256, 1.0}, {1e6, 0.5}};
  h.collective_kinds[OpKind::reduce_scatter] = {.hop_latency = 5e-6, .efficiency_by_size = {{{256, 0.25}, {1e6, 0.125}}}};
  h.collective_kinds[OpKind::all_gather] = {.hop_latency = 2e-6, .efficiency_by_size = {}};
  const HardwareSpec back = parse_hardware(to_toml(h), "<round trip>");
  REQUIRE(back.collective_kinds.size() == 2);
  CHECK(back.hop_latency_of(OpKind::reduce_scatter) == 5e-6);
  CHECK(back.ici_efficiency_of(OpKind::reduce_scatter).at(1e6) == 0.125);
  CHECK(back.hop_latency_of(OpKind::all_gather) == 2e-6);
  CHECK(back.ici_efficiency_of(OpKind::all_gather).at(1e6) == 0.5);  // no curve of its own: the shared one
  CHECK(back.hop_latency_of(OpKind::all_to_all) == h.hop_latency);  // no table: the shared values
  CHECK(back.ici_efficiency_of(OpKind::all_to_all).at(1e6) == 0.5);
  // A kind's table without hop_latency takes the shared one; bad values name the table's key.
  const std::string text = to_toml(load_hardware("tpu_v4", default_hardware_dir()));
  CHECK(parse_hardware(text + "\n[ici.all_to_all]\nefficiency_by_size = [[256, 0.5]]\n", "k.toml").hop_latency_of(OpKind::all_to_all) ==
        h.hop_latency);
  CHECK_THROWS_WITH(parse_hardware(text + "\n[ici.reduce_scatter]\nhop_latency = -1\n", "bad.toml"),
                    Contains("ici.reduce_scatter.hop_latency = -1: allowed: >= 0 (seconds)"));
  CHECK_THROWS_WITH(parse_hardware(text + "\n[ici.reduce_scatter]\nlatency = 1e-6\n", "bad.toml"),
                    Contains("unknown key ici.reduce_scatter.latency"));
}

TEST_CASE("a collective kind's warmed_by shares (ici.<kind>) round-trip and replace eager_path_share for their pairs",
          "[simulator][hardware]") {
  HardwareSpec h = load_hardware("tpu_v4", default_hardware_dir());
  h.eager_path_share = 0.5;
  h.collective_kinds[OpKind::reduce_scatter] = {.hop_latency = 5e-6, .efficiency_by_size = {},
                                                .warmed_by = {{OpKind::all_reduce, 1.0}, {OpKind::all_to_all, 0.25}}};
  const HardwareSpec back = parse_hardware(to_toml(h), "<round trip>");
  CHECK(back.eager_warmed_share(OpKind::reduce_scatter, OpKind::all_reduce) == 1.0);
  CHECK(back.eager_warmed_share(OpKind::reduce_scatter, OpKind::all_to_all) == 0.25);
  CHECK(back.eager_warmed_share(OpKind::reduce_scatter, OpKind::all_gather) == 0.5);  // not named: eager_path_share
  CHECK(back.eager_warmed_share(OpKind::all_gather, OpKind::all_reduce) == 0.5);      // no table: eager_path_share
  CHECK(back.eager_warmed_share(OpKind::reduce_scatter, OpKind::reduce_scatter) == 1.0);  // its own kind: all of it
  // Bad shares name the table's key and what is allowed; a kind cannot name itself.
  const std::string text = to_toml(load_hardware("tpu_v4", default_hardware_dir()));
  CHECK_THROWS_WITH(parse_hardware(text + "\n[ici.reduce_scatter]\nwarmed_by = { all_reduce = 1.5 }\n", "bad.toml"),
                    Contains("ici.reduce_scatter.warmed_by.all_reduce = 1.5: allowed: [0, 1]"));
  CHECK_THROWS_WITH(parse_hardware(text + "\n[ici.reduce_scatter]\nwarmed_by = { reduce_scatter = 1 }\n", "bad.toml"),
                    Contains("unknown key ici.reduce_scatter.warmed_by.reduce_scatter"));
  CHECK_THROWS_WITH(parse_hardware(text + "\n[ici.reduce_scatter]\nwarmed_by = { einsum = 1 }\n", "bad.toml"),
                    Contains("unknown key ici.reduce_scatter.warmed_by.einsum"));
}

TEST_CASE("a collective kind's curve scales (ici.<kind>) round-trip and scale its eager cold cost on each side of 0",
          "[simulator][hardware]") {
  HardwareSpec h = load_hardware("tpu_v4", default_hardware_dir());
  h.collective_kinds[OpKind::reduce_scatter] = {.hop_latency = 5e-6, .efficiency_by_size = {}, .warmed_by = {},
                                                .curve_scale_below = 1.6, .curve_scale_above = 0.9};
  const HardwareSpec back = parse_hardware(to_toml(h), "<round trip>");
  CHECK(back.eager_curve_of(OpKind::reduce_scatter, -10e-6) == Approx(-16e-6));
  CHECK(back.eager_curve_of(OpKind::reduce_scatter, 10e-6) == Approx(9e-6));
  CHECK(back.eager_curve_of(OpKind::all_gather, -10e-6) == -10e-6);  // no table: the curve's own
  // A table without them: 1, and not written.
  h.collective_kinds[OpKind::reduce_scatter] = {.hop_latency = 5e-6};
  const std::string plain = to_toml(h);
  CHECK(plain.find("curve_scale") == std::string::npos);
  CHECK(parse_hardware(plain, "<round trip>").eager_curve_of(OpKind::reduce_scatter, -10e-6) == -10e-6);
  CHECK_THROWS_WITH(parse_hardware(plain + "\n[ici.all_reduce]\ncurve_scale_below = -1\n", "bad.toml"),
                    Contains("ici.all_reduce.curve_scale_below = -1: allowed: >= 0"));
}

TEST_CASE("to_toml quotes the chip's name and description (backslashes, quotes, newlines round-trip)",
          "[simulator][hardware]") {
  // Found by fuzz_hardware_toml: a description holding backslashes was written unescaped, so each
  // write-and-read halved them (and a quote would have broken the file calibrate writes).
  HardwareSpec h = load_hardware("tpu_v4", default_hardware_dir());
  h.name = "my \"chip\" \\ v1";
  h.description = "16x20\\\\x28 \\n \"q\"\nsecond line\ttab";
  const std::string once = to_toml(h);
  const HardwareSpec back = parse_hardware(once, "<round trip>");
  CHECK(back.name == h.name);
  CHECK(back.description == h.description);
  CHECK(to_toml(back) == once);
  // Found the same way: hop_latency = -0.0 (allowed: >= 0) was written as "-0", which reads back
  // as the integer 0 and is written as "0" the second time.
  h.hop_latency = -0.0;
  const std::string zero = to_toml(h);
  CHECK(to_toml(parse_hardware(zero, "<round trip>")) == zero);
}

TEST_CASE("TPU f32 dots run as bf16 passes of the MXU: one at XLA's DEFAULT precision", "[simulator][hardware]") {
  // Every shipped TPU prices an f32 matmul at the bf16 rate (XLA:TPU DEFAULT precision rounds f32
  // operands to bf16 for one MXU pass, f32 accumulation); before, it was an assumed bf16 / 4.
  for (const char* name : {"tpu_v2", "tpu_v3", "tpu_v4", "tpu_v5e", "tpu_v5p"}) {
    INFO(name);
    const HardwareSpec h = load_hardware(name, default_hardware_dir());
    CHECK(h.f32_matmul_passes == 1);
    CHECK(h.peak_flops(OpClass::matmul, DType::f32) == h.peak_flops(OpClass::matmul, DType::bf16));
    CHECK(parse_hardware(to_toml(h), "<round trip>").f32_matmul_passes == 1);
  }
  // HIGHEST precision (bf16_6x): six passes, a sixth of the rate.
  std::string text = to_toml(load_hardware("tpu_v3", default_hardware_dir()));
  text.replace(text.find("f32_matmul_passes = 1"), 21, "f32_matmul_passes = 6");
  const HardwareSpec highest = parse_hardware(text, "highest.toml");
  CHECK(highest.matmul_flops_f32 == Approx(highest.matmul_flops_bf16 / 6));
  // A native rate and a pass count together are refused, naming both.
  text.replace(text.find("f32_matmul_passes = 6"), 21, "f32_matmul_passes = 6\nmatmul_flops_f32 = 1e12");
  CHECK_THROWS_WITH(parse_hardware(text, "both.toml"),
                    Contains("both.toml") && Contains("matmul_flops_f32") && Contains("f32_matmul_passes"));
  // A CPU keeps its measured native f32 rate.
  std::string cpu = to_toml(load_hardware("tpu_v3", default_hardware_dir()));
  cpu.replace(cpu.find("f32_matmul_passes = 1"), 21, "matmul_flops_f32 = 3e11");
  CHECK(parse_hardware(cpu, "cpu.toml").matmul_flops_f32 == 3e11);
  CHECK(parse_hardware(cpu, "cpu.toml").f32_matmul_passes == 0);
}

TEST_CASE("efficiency curves interpolate log-linearly and clamp", "[simulator][hardware]") {
  EfficiencyCurve c{{{1e3, 0.2}, {1e5, 0.6}}};
  CHECK(c.at(1) == 0.2);
  CHECK(c.at(1e4) == Approx(0.4));
  CHECK(c.at(1e9) == 0.6);
  CHECK(EfficiencyCurve{}.at(5) == 1.0);
}

TEST_CASE("roofline: time is the larger of the flops and bytes terms", "[simulator][roofline]") {
  HardwareSpec h;
  h.matmul_flops_bf16 = 100e12;
  h.matmul_flops_f32 = 25e12;
  h.vector_flops = 5e12;
  h.hbm_bandwidth = 1e12;
  // A matmul of 1e12 flops over 1e9 bytes: intensity 1000 > ridge 100: compute-bound.
  const OpTime mm = roofline(h, OpClass::matmul, DType::bf16, OpCost{1e12, 6e8, 4e8, 0});
  CHECK(mm.bound == Bound::compute);
  CHECK(mm.time == Approx(0.01));
  CHECK(mm.intensity == Approx(1000));
  // The same in f32 runs at the f32 peak.
  CHECK(roofline(h, OpClass::matmul, DType::f32, OpCost{1e12, 6e8, 4e8, 0}).time == Approx(0.04));
  // An add of 1e8 elements: 1e8 flops, 1.2e9 bytes: memory-bound at 1.2 ms.
  const OpTime add = roofline(h, OpClass::elementwise, DType::f32, OpCost{1e8, 8e8, 4e8, 0});
  CHECK(add.bound == Bound::memory);
  CHECK(add.time == Approx(1.2e-3));
  // Efficiency tables slow both terms down.
  h.efficiency[static_cast<size_t>(OpClass::elementwise)].memory = EfficiencyCurve{{{1.0, 0.5}}};
  CHECK(roofline(h, OpClass::elementwise, DType::f32, OpCost{1e8, 8e8, 4e8, 0}).time == Approx(2.4e-3));
}

TEST_CASE("bad hardware files name the file, the key and what is allowed", "[simulator][hardware]") {
  const std::string good = to_toml(load_hardware("tpu_v4", default_hardware_dir()));
  auto edited = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
  };
  CHECK_THROWS_WITH(parse_hardware(edited("hbm_bandwidth = 1.2e+12", "hbm_bandwidth = -1"), "bad.toml"),
                    Contains("bad.toml:9: chip.hbm_bandwidth = -1: allowed: > 0"));
  CHECK_THROWS_WITH(parse_hardware(edited("hbm_bandwidth = 1.2e+12\n", ""), "bad.toml"),
                    Contains("bad.toml:1: missing key chip.hbm_bandwidth (required in [chip])"));
  CHECK_THROWS_WITH(parse_hardware("[ici]\nlink_bandwidth = 1\n", "bad.toml"),
                    Contains("bad.toml:1: missing key chip (required at the top level)"));
  CHECK_THROWS_WITH(parse_hardware(edited("wraparound = \"multiple_of\"", "wraparound = \"sometimes\""), "bad.toml"),
                    Contains("ici.wraparound = \"sometimes\": allowed: always, full_axis, multiple_of"));
  CHECK_THROWS_WITH(parse_hardware(edited("op_overhead", "op_overheads"), "bad.toml"),
                    Contains("bad.toml:10: unknown key chip.op_overheads; allowed keys in [chip]: name, description,"));
  CHECK_THROWS_WITH(parse_hardware(edited("op_overhead = 0", "op_overhead = -1"), "bad.toml"),
                    Contains("chip.op_overhead = -1: allowed: >= 0 (seconds)"));
  CHECK_THROWS_WITH(parse_hardware(edited("torus = [16, 16, 16]", "torus = \"16x16\""), "bad.toml"),
                    Contains("ici.torus = \"16x16\": allowed: a non-empty array of integers >= 1"));
  CHECK_THROWS_WITH(parse_hardware(edited("[efficiency.matmul]\ncompute = [", "[efficiency.matmul]\ncompute = [[1e9, 2.0], "),
                                   "bad.toml"),
                    Contains("efficiency.matmul.compute = [[1000000000.0, 2.0], [1000000.0, 0.05],") &&
                        Contains(": point [1000000000.0, 2.0] is not allowed; allowed: an array of [size, fraction]"));
  CHECK_THROWS_WITH(parse_hardware(good + "\n[efficiency.op.einsum_x]\ncompute = [[1e6, 0.5]]\n", "bad.toml"),
                    Contains("unknown key efficiency.op.einsum_x; allowed keys in [efficiency.op]:") &&
                        Contains(", einsum, "));
  CHECK_THROWS_WITH(parse_hardware(edited("async_collectives", "latency_after_streaming = [[1e6, -1.5]]\nasync_collectives"),
                                   "bad.toml"),
                    Contains("ici.latency_after_streaming") &&
                        Contains("point [1000000.0, -1.5] is not allowed; allowed: an array of [bytes, seconds] pairs") &&
                        Contains("seconds > -1 (below 0: faster than the samples)"));
  // Below 0 is allowed: after less streaming than the samples had, a collective is faster.
  CHECK(parse_hardware(edited("async_collectives", "latency_after_streaming = [[1e6, -1e-6], [1e8, 3e-5]]\nasync_collectives"),
                       "good.toml")
            .latency_after_streaming.at(1e5) == Approx(-1e-6));
  CHECK_THROWS_WITH(parse_hardware(edited("async_collectives", "eager_limit = -4096\nasync_collectives"), "bad.toml"),
                    Contains("ici.eager_limit = -4096") && Contains("bytes per peer; 0: one path"));
  CHECK_THROWS_WITH(parse_hardware(edited("async_collectives", "copy_path_share = 1.5\nasync_collectives"), "bad.toml"),
                    Contains("ici.copy_path_share = 1.5"));
  // Keys of the second path without two paths would be read and ignored: refused instead.
  CHECK_THROWS_WITH(parse_hardware(edited("async_collectives", "copy_path_share = 0.5\nasync_collectives"), "bad.toml"),
                    Contains("ici.copy_path_share") && Contains("allowed only with eager_limit > 0"));
  CHECK_THROWS_WITH(parse_hardware(edited("async_collectives", "copy_warm_share = 0.5\nasync_collectives"), "bad.toml"),
                    Contains("ici.copy_warm_share") && Contains("allowed only with eager_limit > 0"));
  CHECK_THROWS_WITH(
      parse_hardware(edited("async_collectives",
                            "eager_limit = 2048\ncopy_path_share = 0.6\ncopy_warm_share = 0.5\nasync_collectives"),
                     "bad.toml"),
      Contains("ici.copy_warm_share = 0.5") && Contains("copy_path_share = 0.6") &&
          Contains("allowed: copy_path_share + copy_warm_share <= 1"));
  CHECK_THROWS_WITH(parse_hardware(edited("async_collectives", "eager_latency_after_streaming = [[1e6, 1e-6]]\nasync_collectives"),
                                   "bad.toml"),
                    Contains("ici.eager_latency_after_streaming") && Contains("allowed only with eager_limit > 0"));
  // The executor's ragged path on a TPU file would be read and ignored: refused instead.
  CHECK_THROWS_WITH(parse_hardware(edited("async_collectives", "ragged_all_to_all_seconds = [[1e5, 6e-5]]\nasync_collectives"),
                                   "bad.toml"),
                    Contains("ici.ragged_all_to_all_seconds") && Contains("allowed only with staged_collectives = true"));
  // A time of its own, not relative to a sample: below 0 is refused (the cold-cost curves may go there).
  CHECK_THROWS_WITH(parse_hardware(edited("async_collectives", "ragged_all_to_all_seconds = [[1e5, -6e-5]]\nasync_collectives"),
                                   "bad.toml"),
                    Contains("ici.ragged_all_to_all_seconds") && Contains("point [100000.0, -6e-05] is not allowed") &&
                        Contains("seconds >= 0"));
  CHECK_THROWS_WITH(parse_hardware(edited("staged_collectives = false", "staged_collectives = 1"), "bad.toml"),
                    Contains("ici.staged_collectives = 1: expected true or false"));
  CHECK_THROWS_WITH(parse_hardware("[chip\nname=1", "bad.toml"), Contains("bad.toml:1: TOML syntax error"));
  CHECK_THROWS_WITH(load_hardware("tpu_v9", default_hardware_dir()),
                    Contains("hardware 'tpu_v9': cannot read") && Contains("known chips in") && Contains("tpu_v4, tpu_v5e"));
}
