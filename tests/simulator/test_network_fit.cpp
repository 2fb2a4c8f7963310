// calibrate's network fit (experiments/calibrate/network.hpp) on samples measured by calibrate on
// two local ranks of the development machine (bench_sim_mpi, 2026-12-06): times in µs, all_reduce
// with its copy.
#include "experiments/calibrate/network.hpp"
#include "graph/parallel/mesh.hpp"
#include "simulator/roofline.hpp"
#include "simulator/topology.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <vector>

namespace {

// Samples of `kind` at `sizes` (bytes), times and copies in µs.
void add_samples(sy::NetworkFit& fit, const char* kind, const std::vector<double>& sizes, const std::vector<double>& us,
                 const std::vector<double>& copy_us = {}) {
  for (size_t i = 0; i < sizes.size(); ++i)
    fit.samples.push_back({kind, sizes[i], us[i] * 1e-6, copy_us.empty() ? 0.0 : copy_us[i] * 1e-6});
}

sy::NetworkFit measured_fit() {
  const double mib = 1 << 20, kib = 1 << 10;
  const std::vector<double> sizes = {256, kib, 4 * kib, 16 * kib, 64 * kib, 256 * kib, mib, 4 * mib, 16 * mib, 64 * mib};
  sy::NetworkFit fit;
  add_samples(fit, "all_gather", sizes, {1.8, 2.5, 3.1, 13.2, 18.6, 32.6, 93.2, 355.4, 2110.7, 7133.2});
  add_samples(fit, "all_to_all", sizes, {2.0, 2.9, 4.0, 12.9, 15.2, 26.8, 67.8, 272.0, 1770.9, 5780.5});
  add_samples(fit, "reduce_scatter", sizes, {1.3, 2.0, 2.7, 9.5, 14.4, 55.0, 186.0, 977.4, 4854.0, 288955.6});
  add_samples(fit, "all_reduce", sizes, {0.9, 1.1, 1.9, 11.3, 15.1, 33.1, 120.5, 591.9, 4622.1, 162160.0},
              {0.0, 0.0, 0.1, 0.2, 0.7, 3.3, 26.9, 159.4, 1672.0, 7545.6});
  sy::fit_network(fit);
  return fit;
}

}  // namespace

TEST_CASE("network fit: one slow all_reduce size does not set the reduction bandwidth") {
  // The 64 MiB all_reduce took 35x the 16 MiB one; at 1, 4 and 16 MiB the link term alone covers
  // the time (the reduction overlaps the transfer). Dropping those sizes fitted r = 0.3 GB/s from
  // the 64 MiB one alone and priced the 1 MiB all_reduce at 1.8 ms against 120 µs measured.
  const sy::NetworkFit fit = measured_fit();
  CHECK(fit.reduction_bandwidth == 0);  // overlapped
  for (const sy::CollectiveSample& s : fit.samples) {
    if (s.kind != "all_reduce" || s.bytes < (1 << 20) || s.bytes > (16 << 20)) continue;
    INFO(s.bytes << " B: measured " << s.seconds << " s, fitted " << fit.predict(s) << " s");
    // Within 2x: the shared curve e(V) is fitted to all_gather and all_to_all, not to all_reduce.
    CHECK(fit.predict(s) < 2 * s.seconds);
    CHECK(fit.predict(s) > 0.5 * s.seconds);
  }
}

TEST_CASE("network fit: all_reduce is priced from its own samples") {
  // calibrate over TCP between two network-namespace hosts (bench_sim_mpi, 2026-12-06), µs. The
  // shared curve (all_gather and all_to_all) priced these all_reduces from 0.75x (256 KiB) to 2x
  // (256 B, where Open MPI's recursive doubling makes one exchange, not the formula's two) of
  // their measured times; their own α and e(V) give each back (less the copy, which the simulator
  // prices on the roofline).
  const double mib = 1 << 20, kib = 1 << 10;
  const std::vector<double> sizes = {256, kib, 4 * kib, 16 * kib, 64 * kib, 256 * kib, mib, 4 * mib, 16 * mib, 64 * mib};
  sy::NetworkFit fit;
  add_samples(fit, "all_gather", sizes, {15.8, 17.3, 17.9, 18.0, 29.1, 85.5, 330.9, 1222.5, 5544.5, 23756.0});
  add_samples(fit, "all_to_all", sizes, {15.9, 15.9, 21.3, 20.8, 28.6, 107.0, 186.9, 1245.5, 5321.8, 20911.1});
  add_samples(fit, "all_reduce", sizes, {16.2, 16.7, 39.7, 42.2, 57.9, 233.9, 356.8, 2704.7, 11498.4, 46234.9},
              {0.0, 0.0, 0.1, 0.1, 0.7, 3.7, 21.0, 109.6, 832.3, 4077.2});
  sy::fit_network(fit);
  const auto& own = fit.kinds.at(sy::OpKind::all_reduce);
  CHECK(own.hop_latency == Approx(16.2e-6 / 2));  // its smallest sample is 2α (no copy at 256 B)
  for (const sy::CollectiveSample& s : fit.samples) {
    if (s.kind != "all_reduce") continue;
    INFO(s.bytes << " B: measured " << s.seconds << " s, fitted " << fit.predict(s) << " s");
    // The smallest keeps its bandwidth term on top of 2α (0.07 µs at 256 B).
    CHECK(fit.predict(s) == Approx(s.seconds).epsilon(s.bytes == 256 ? 0.01 : 1e-6));
  }
}

TEST_CASE("network fit: the model's own collective sizes are sampled between the grid's") {
  const double mib = 1 << 20;
  const std::vector<sy::CollectiveSize> model = {
      {"all_reduce", 2 * mib},      // between 1 and 4 MiB: sampled
      {"all_reduce", 2.1 * mib},    // within 10 % of the one before: not again
      {"all_reduce", 4},            // below the grid's 256 B: latency, the first point covers it
      {"all_reduce", 1.05 * mib},   // within 10 % of the grid's 1 MiB
      {"all_to_all", 1.31 * mib},   // small.toml's ragged dispatch
      {"all_gather", 128 * mib}};   // above max_bytes
  const std::vector<sy::CollectiveSize> sizes = sy::network_sample_sizes(4 * mib, model);
  std::vector<double> all_reduce, all_to_all, all_gather;
  for (const sy::CollectiveSize& s : sizes)
    (s.kind == "all_reduce" ? all_reduce : s.kind == "all_to_all" ? all_to_all : all_gather).push_back(s.bytes);
  const std::vector<double> grid = {256, 1024, 4096, 16384, 65536, 262144, mib, 4 * mib};
  std::vector<double> with_2mib = grid;
  with_2mib.insert(with_2mib.end() - 1, 2 * mib);
  CHECK(all_reduce == with_2mib);
  std::vector<double> with_a2a = grid;
  with_a2a.insert(with_a2a.end() - 1, 1.31 * mib);
  CHECK(all_to_all == with_a2a);
  CHECK(all_gather.size() == grid.size() * 2);  // all_gather's and reduce_scatter's: the grid alone
  CHECK(sizes.front().kind == "all_gather");
  CHECK(sizes.back().kind == "all_reduce");
  CHECK(sizes.back().bytes == 4 * mib);
}

TEST_CASE("network fit: α is the smallest transfers' time and w the best rate") {
  const sy::NetworkFit fit = measured_fit();
  CHECK(fit.hop_latency == Approx(2.0e-6));                   // the larger of the two 256 B medians
  CHECK(fit.link_bandwidth == Approx((1 << 19) / 65.8e-6).epsilon(1e-3));  // 1 MiB all_to_all: (V/2)/(t − α)
}

namespace {

// calibrate's path probes on two local ranks (2026-12-06, µs): payload per peer; cold, after an
// 8 B all_reduce, after an all_to_all, after another all_gather, each 8 MiB before the probe.
std::vector<sy::PathProbe> measured_probes() {
  const double rows[][5] = {{128, 43.5, 22.3, 15.9, 12.9},       {256, 50.4, 17.9, 14.4, 14.2},
                            {512, 51.1, 28.5, 8.9, 8.4},         {1024, 58.1, 24.9, 13.6, 19.4},
                            {2048, 57.8, 23.8, 16.8, 8.6},       {4096, 127.0, 91.9, 36.3, 32.3},
                            {8192, 114.0, 73.6, 33.6, 29.4},     {16384, 112.5, 79.8, 36.2, 49.5},
                            {32768, 123.4, 94.3, 50.1, 34.0},    {65536, 121.7, 92.7, 44.9, 50.8},
                            {131072, 152.2, 100.7, 53.0, 56.3}};
  std::vector<sy::PathProbe> probes;
  for (const auto& r : rows) probes.push_back({r[0], r[1] * 1e-6, r[2] * 1e-6, r[3] * 1e-6, r[4] * 1e-6});
  return probes;
}

// protocol_switch_of over measured_probes()'s payloads with these hot times (µs), up to max_payload.
double switch_at(const std::vector<double>& hot_us, double max_payload = 8192) {
  std::vector<sy::PathProbe> probes = measured_probes();
  for (size_t i = 0; i < probes.size(); ++i) probes[i].hot = hot_us.at(i) * 1e-6;
  return sy::protocol_switch_of(probes, max_payload);
}

}  // namespace

TEST_CASE("network fit: the eager path ends at the protocol switch the hot times show") {
  // measured_probes(): hot 8.6 µs at 2 KiB, 32.3 µs at 4 KiB (x3.8; the x2.3 at 512 B -> 1 KiB does
  // not last: 8.6 µs at 2 KiB).
  CHECK(sy::protocol_switch_of(measured_probes(), 8192) == 2048);
  // A calibration whose warming test said 256 B (two local ranks, the all_reduce leaving the
  // 512 B-2 KiB probes half cold by noise): hot 7.5, 9.0, 9.1, 9.8, 26.7 µs from 256 B to 4 KiB.
  CHECK(switch_at({8.3, 7.5, 9.0, 9.1, 9.8, 26.7, 26.6, 28.9, 34.5, 35.5, 58.4}) == 2048);
  // Over TCP (two namespace hosts): the switch is at 32 -> 64 KiB (47.1 -> 110 µs), past the
  // probes the eager path is looked for in; below it no step reaches x1.5.
  const std::vector<double> tcp = {27.4, 27.4, 28.0, 29.0, 34.1, 33.1, 35.9, 38.4, 47.1, 110.0, 150.5};
  CHECK(switch_at(tcp) == 0);
  CHECK(switch_at(tcp, 131072) == 32768);
}

TEST_CASE("network fit: the protocol switch decides the two paths; a step that does not last is noise") {
  // Calibrations of 2026-12-06 on two local ranks whose cold costs of the smallest probes were
  // 0.3-0.5 µs (cold 4.4 and 7.7 µs, after the 8 B all_reduce 4.1 and 7.5, hot 3.6 and 7.2): the
  // warming test that decided then found no eager path and priced every eager collective on the
  // single copy's curve. Their hot times step x2.0, x2.5 and x1.78 from 2 KiB to 4 KiB per peer,
  // and stay up.
  CHECK(switch_at({3.6, 3.3, 3.8, 4.2, 3.9, 7.8, 8.7, 10.1, 12.6, 20.0, 30.0}) == 2048);
  CHECK(switch_at({7.2, 7.7, 8.6, 8.8, 9.0, 22.4, 25.0, 23.7, 27.9, 40.0, 50.0}) == 2048);
  CHECK(switch_at({4.3, 4.1, 4.7, 5.0, 5.4, 9.6, 10.2, 13.3, 17.0, 20.0, 32.6}) == 2048);
  // A step that does not last is noise (TCP, two namespace hosts: 10.8 µs at 512 B per peer, then
  // 20.2 and 23.2, against 17.6 and 17.2 below): one path.
  CHECK(switch_at({17.6, 17.2, 10.8, 20.2, 23.2, 23.9, 25.1, 21.0, 27.3, 60.0, 90.0}) == 0);
  // The same step with the sizes after it 1.5 times the median before it: a switch.
  CHECK(switch_at({17.6, 17.2, 10.8, 40.0, 41.0, 43.0, 45.0, 47.0, 50.0, 60.0, 90.0}) == 512);
}

TEST_CASE("network fit: a probe's shares of its cold cost") {
  const sy::PathShares s = sy::shares_of(measured_probes()[5]);  // 4 KiB per peer
  CHECK(s.any == Approx((127.0 - 91.9) / (127.0 - 32.3)));
  CHECK(s.path == Approx((91.9 - 36.3) / (127.0 - 32.3)));
  // Out-of-order medians (noise) are clamped: shares in [0, 1], summing to at most 1.
  const sy::PathShares odd = sy::shares_of({4096, 100e-6, 120e-6, 10e-6, 50e-6});
  CHECK(odd.any == 0);
  CHECK(odd.path == 1);
  const sy::PathShares flat = sy::shares_of({4096, 30e-6, 20e-6, 20e-6, 30e-6});  // streaming added nothing
  CHECK(flat.any == 1);
  CHECK(flat.path == 0);
}

TEST_CASE("network fit: a path's shares are its probes' medians, summing to at most 1") {
  // measured_probes()'s single copies (4-32 KiB per peer): any 0.371, 0.478, 0.519, 0.326; path
  // 0.587, 0.473, 0.692 (clamped to 1 - 0.519 by shares_of), 0.494. The medians (the upper of two
  // middles, as every median of the fit): 0.478 and 0.494.
  const sy::PathShares copy = sy::path_shares(measured_probes(), 2048, 32768);
  CHECK(copy.any == Approx((114.0 - 73.6) / (114.0 - 29.4)));
  CHECK(copy.path == Approx((94.3 - 50.1) / (123.4 - 34.0)));
  // Two medians of pairs that each sum to at most 1 can sum past it: the path share gives way.
  const std::vector<sy::PathProbe> crossed = {{4096, 100e-6, 10e-6, 0, 0}, {8192, 100e-6, 90e-6, 0, 0}};
  const sy::PathShares c = sy::path_shares(crossed, 2048, 32768);
  CHECK(c.any == Approx(0.9));
  CHECK(c.path == Approx(0.1));
  CHECK(sy::path_shares(crossed, 4096, 32768).path == Approx(0.9));  // the 8 KiB probe alone: its own
}

TEST_CASE("network fit: a pair's warmed share is the part of the probe's cold cost the other kind's call removes") {
  using sy::OpKind;
  // Two local ranks, 16 B per peer (#15, run L): a reduce_scatter cold 10.8 µs, 3.9 µs after an
  // all_reduce and 3.8 µs after itself; an all_gather cold 30 µs, 16 µs after the all_reduce, 7 µs
  // after itself.
  const sy::PairProbe rs{OpKind::reduce_scatter, OpKind::all_reduce, 16, 10.8e-6, 3.9e-6, 3.8e-6};
  const sy::PairProbe ag{OpKind::all_gather, OpKind::all_reduce, 16, 30e-6, 16e-6, 7e-6};
  CHECK(sy::warmed_share(rs) == Approx(6.9 / 7.0));
  CHECK(sy::warmed_share(ag) == Approx(14.0 / 23.0));
  // Noise out of order is clamped to [0, 1]; nothing added by streaming: nothing to remove.
  CHECK(sy::warmed_share({OpKind::all_gather, OpKind::all_reduce, 16, 10e-6, 12e-6, 5e-6}) == 0);
  CHECK(sy::warmed_share({OpKind::all_gather, OpKind::all_reduce, 16, 10e-6, 4e-6, 5e-6}) == 1);
  CHECK(sy::warmed_share({OpKind::all_gather, OpKind::all_reduce, 16, 5e-6, 9e-6, 5e-6}) == 1);
  // Per pair, the median over the payloads (the upper of two middles).
  const auto w = sy::warmed_shares({rs, ag,
                                    {OpKind::all_gather, OpKind::all_reduce, 512, 30e-6, 20e-6, 10e-6},
                                    {OpKind::all_gather, OpKind::all_reduce, 2048, 30e-6, 25e-6, 10e-6},
                                    {OpKind::all_gather, OpKind::all_to_all, 16, 30e-6, 10e-6, 10e-6}});
  CHECK(w.at(OpKind::reduce_scatter).at(OpKind::all_reduce) == Approx(6.9 / 7.0));
  CHECK(w.at(OpKind::all_gather).at(OpKind::all_reduce) == Approx(0.5));  // of 14/23, 0.5, 0.25
  CHECK(w.at(OpKind::all_gather).at(OpKind::all_to_all) == Approx(1.0));
  CHECK(w.at(OpKind::all_gather).size() == 2);
}

TEST_CASE("network fit: a kind's curve scales price its hot call at its hot time and its cold cost by the all_gather's") {
  using sy::OpKind;
  // Two local ranks, 128 B per peer (#15, run N, rep 1): the curve -8.7 µs at 128 KiB; an
  // all_gather priced 12.6 µs, 4.9 µs after itself 128 KiB back and 55.1 µs cold; a
  // reduce_scatter priced 16.7 µs, 4.1 and 61.1 µs.
  std::map<OpKind, double> price{{OpKind::all_gather, 12.6e-6}, {OpKind::reduce_scatter, 16.7e-6},
                                 {OpKind::all_reduce, 12.5e-6}};
  const double p = 128, q = 2048;
  auto priced = [&](OpKind k, double payload) { return price.at(k) + (payload == q ? 1e-6 : 0.0); };
  std::vector<sy::PairProbe> probes{
      {OpKind::all_gather, OpKind::all_reduce, p, 55.1e-6, 6e-6, 4.9e-6},
      {OpKind::all_gather, OpKind::reduce_scatter, p, 55.1e-6, 6e-6, 4.9e-6},  // the same cold and hot
      {OpKind::reduce_scatter, OpKind::all_gather, p, 61.1e-6, 12e-6, 4.1e-6},
      // The all_reduce's hot above its price (saves nothing: 0) and cold below it (adds nothing).
      {OpKind::all_reduce, OpKind::all_gather, p, 10e-6, 14e-6, 14e-6}};
  auto s = sy::curve_scales(probes, priced, -8.7e-6);
  // Below: priced + below · (-8.7 µs) is the hot time.
  CHECK(s.at(OpKind::reduce_scatter).below == Approx((16.7 - 4.1) / 8.7));
  CHECK(16.7e-6 + s.at(OpKind::reduce_scatter).below * -8.7e-6 == Approx(4.1e-6));
  CHECK(s.at(OpKind::all_gather).below == Approx((12.6 - 4.9) / 8.7));
  CHECK(s.at(OpKind::all_reduce).below == 0);
  // Above: against the all_gather's cold cost after the same stream; the all_gather's own 1.
  CHECK(s.at(OpKind::reduce_scatter).above == Approx((61.1 - 16.7) / (55.1 - 12.6)));
  CHECK(s.at(OpKind::all_gather).above == 1);
  CHECK(s.at(OpKind::all_reduce).above == 0);
  // Per kind the median over the payloads (the upper of two middles).
  probes.push_back({OpKind::reduce_scatter, OpKind::all_gather, q, 61.1e-6, 12e-6, 2.1e-6});
  probes.push_back({OpKind::all_gather, OpKind::all_reduce, q, 70.1e-6, 6e-6, 4.9e-6});
  s = sy::curve_scales(probes, priced, -8.7e-6);
  CHECK(s.at(OpKind::reduce_scatter).below == Approx((17.7 - 2.1) / 8.7));  // of 12.6 and 15.6
  CHECK(s.at(OpKind::reduce_scatter).above == Approx((61.1 - 16.7) / (70.1 - 13.6)));  // of 44.4, 43.4; 42.5, 56.5
  // A curve above -1 µs at the gap has nothing below 0 to scale; no all_gather probed, nothing above.
  s = sy::curve_scales({probes[2]}, priced, -0.5e-6);
  CHECK(s.at(OpKind::reduce_scatter).below == 1);
  CHECK(s.at(OpKind::reduce_scatter).above == 1);
}

TEST_CASE("network fit: a cold-cost curve never falls as more is streamed") {
  // Two local ranks (calibrate, 2026-12-06): the eager path's curve, µs after 256 KiB .. 1 GiB.
  sy::EfficiencyCurve c;
  const double mib = 1 << 20;
  const double volume[] = {0.25 * mib, mib, 4 * mib, 16 * mib, 64 * mib, 256 * mib, 1024 * mib};
  const double added[] = {14.9, 0.0, 2.3, 7.3, 29.7, 60.6, 54.6};
  for (int i = 0; i < 7; ++i) c.points.emplace_back(volume[i], added[i] * 1e-6);
  const sy::EfficiencyCurve m = sy::non_decreasing(c);
  const double expected[] = {0.0, 0.0, 2.3, 7.3, 29.7, 54.6, 54.6};  // each point at most every later one
  for (int i = 0; i < 7; ++i) {
    CHECK(m.points[static_cast<size_t>(i)].first == volume[i]);
    CHECK(m.points[static_cast<size_t>(i)].second == Approx(expected[i] * 1e-6));
  }
}

TEST_CASE("network fit: the simulator gives an all_reduce sample back, its copy at the simulator's price") {
  // A host's chip as calibrate writes it, and its copy price: an element-wise pass over V bytes.
  sy::HardwareSpec hw;
  hw.name = "host";
  hw.matmul_flops_bf16 = hw.matmul_flops_f32 = 1e11;
  hw.vector_flops = 1e11;
  hw.hbm_bandwidth = 80e9;
  hw.op_overhead = 0.2e-6;
  hw.efficiency[static_cast<size_t>(sy::OpClass::elementwise)].memory.points = {{4096, 0.1}, {4e6, 0.56}, {1.3e8, 0.4}};
  auto copy_price = [&](double v) { return sy::staging_copy_time(hw, sy::DType::f32, v); };
  // Two local ranks (calibrate, 2026-12-06), µs: the samples, all_reduce with its copy.
  const double mib = 1 << 20, kib = 1 << 10;
  const std::vector<double> sizes = {256, kib, 4 * kib, 16 * kib, 64 * kib, 256 * kib, mib, 2 * mib, 4 * mib};
  sy::NetworkFit fit;
  add_samples(fit, "all_gather", sizes, {2.7, 3.4, 3.2, 9.9, 13.5, 30.3, 80.4, 141.0, 260.2});
  std::vector<double> copy_us;
  for (double v : sizes) copy_us.push_back(copy_price(v) * 1e6);
  add_samples(fit, "all_reduce", sizes, {2.4, 4.4, 6.1, 21.9, 27.8, 55.6, 260.8, 403.0, 741.6}, copy_us);
  sy::fit_network(fit);
  sy::write_ici(fit, hw);
  const sy::Topology topo = sy::place_mesh(hw, sy::parse_mesh("data:2"));
  for (const sy::CollectiveSample& s : fit.samples) {
    if (s.kind != "all_reduce" || s.bytes == 256) continue;  // 256 B: 2α plus a bandwidth term
    // simulate's price: the formula, plus the copy it stages (graph/parallel/collective_blocks.hpp).
    const double priced = sy::collective_time(hw, topo, sy::OpKind::all_reduce, 1u, s.bytes, s.bytes).total + copy_price(s.bytes);
    INFO(s.bytes << " B: measured " << s.seconds << " s, priced " << priced << " s");
    if (fit.kinds.at(sy::OpKind::all_reduce).efficiency_by_size.at(s.bytes) < 1) {
      CHECK(priced == Approx(s.seconds).epsilon(1e-6));
    } else {  // faster than the formula at e = 1 (4 MiB here: the reduction overlapped): e is capped
      CHECK(priced >= s.seconds);
      CHECK(priced < 1.05 * s.seconds);
    }
  }
}

TEST_CASE("network fit: all_reduce's α is never negative, even when its copy's price exceeds its smallest sample") {
  // Two local ranks (calibrate, 2026-12-06): the 256 B all_reduce's own time 0.9 µs, its copy
  // priced 0.94 µs (the per-op overhead): α would have been -0.02 µs, which no hardware file takes.
  sy::NetworkFit fit;
  add_samples(fit, "all_gather", {256, 1024}, {1.5, 2.0});
  add_samples(fit, "all_reduce", {256, 1024}, {0.9, 1.1}, {0.94, 2.2});
  sy::fit_network(fit);
  CHECK(fit.kinds.at(sy::OpKind::all_reduce).hop_latency == 0);
  sy::HardwareSpec hw;
  sy::write_ici(fit, hw);
  hw.name = "host";
  hw.matmul_flops_bf16 = hw.matmul_flops_f32 = hw.vector_flops = 1e11;
  hw.hbm_bandwidth = 1e10;
  hw.hbm_bytes = 1e10;
  CHECK_NOTHROW(sy::parse_hardware(sy::to_toml(hw), "host.toml"));  // what calibrate writes reads back
}

TEST_CASE("network fit: the ragged all_to_all's curve is its samples by size, the same size's averaged") {
  // calibrate on two local ranks (small.toml, ep): each shape's dispatch and combine, filled to
  // 1/4 .. 1 of their rows; V the bytes a rank sends, times in µs.
  const double kib = 1 << 10;
  sy::NetworkFit fit;
  add_samples(fit, "ragged_all_to_all", {320 * kib, 640 * kib, 960 * kib, 1280 * kib, 320 * kib, 640 * kib, 960 * kib, 1280 * kib},
              {120.3, 176.9, 264.9, 309.2, 119.1, 179.7, 232.0, 249.3});
  add_samples(fit, "ragged_all_to_all", {80 * kib, 160 * kib, 240 * kib, 321 * kib}, {65.9, 86.2, 113.5, 121.9});
  const sy::EfficiencyCurve c = sy::ragged_all_to_all_curve(fit.samples);
  REQUIRE(c.points.size() == 7);
  for (size_t i = 1; i < c.points.size(); ++i) CHECK(c.points[i].first > c.points[i - 1].first);
  CHECK(c.points[0].first == 80 * kib);
  CHECK(c.points[0].second == Approx(65.9e-6));
  // 320 KiB twice and 321 KiB (within 2 %): one point, the means.
  CHECK(c.points[3].first == Approx((2 * 320 + 321) * kib / 3));
  CHECK(c.points[3].second == Approx((120.3 + 119.1 + 121.9) / 3 * 1e-6));
  CHECK(c.points[6].second == Approx((309.2 + 249.3) / 2 * 1e-6));
  CHECK(sy::ragged_all_to_all_curve({}).points.empty());
}
