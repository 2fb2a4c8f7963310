// The simulator on a CPU MPI backing (the executor's collectives, as calibrate measures them):
// staging copies, and a collective's cold cost after the step's streaming, by path, by pair of
// kinds and by each kind's own curve (docs/formulas.md, "Latency after streaming").
#include "graph/builder.hpp"
#include "simulator/hardware.hpp"
#include "simulator/simulate.hpp"
#include "tests/simulator/sim_fixtures.hpp"

#include <catch2/catch.hpp>

using namespace sy;
using sy::test::op_of;
using sy::test::simple_chip;

TEST_CASE("MPI backing: a collective pays its staging copies and the latency of what was streamed since the last one",
          "[simulator][collective]") {
  // a = x·2 (reads and writes 4 MB) -> r1 = all_reduce(a) -> r2 = all_reduce(r1) over data:4.
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 1'000'000}});
  Expr a = scale(x, 2.0);
  Expr r1 = all_reduce(a, {{"data", 4}});
  Expr r2 = all_reduce(r1, {{"data", 4}});
  b.output("r2", r2);
  Lowered L;
  L.graph = g;
  L.mesh = parse_mesh("data:4");
  HardwareSpec hw = simple_chip();
  hw.hbm_bandwidth = 1e10;  // a memcpy of 4 MB: 8 MB of traffic, 0.8 ms
  const SimResult plain = simulate(L, hw, SimOptions{.fusion = false});
  const double r1_plain = op_of(plain, g, r1.id).duration;
  CHECK(op_of(plain, g, r1.id).comm.staging == 0);

  // The copy into the buffer MPI reduces in place: an element-wise pass over 4 MB.
  hw.staged_collectives = true;
  const SimResult staged = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(op_of(staged, g, r1.id).comm.staging == Approx(8e6 / 1e10));
  CHECK(op_of(staged, g, r1.id).duration == Approx(r1_plain + 8e-4));

  // Streaming: `a` moved 8 MB before r1 (10 µs by the curve, log-linear between 4 MB at 0 s and
  // 16 MB at 20 µs); r2 follows r1 with nothing streamed in between (the curve's first point: 0).
  hw.staged_collectives = false;
  hw.latency_after_streaming.points = {{4e6, 0.0}, {16e6, 20e-6}};
  const SimResult cold = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(op_of(cold, g, r1.id).duration - r1_plain == Approx(10e-6));
  CHECK(op_of(cold, g, r1.id).comm.latency - op_of(plain, g, r1.id).comm.latency == Approx(10e-6));
  CHECK(op_of(cold, g, r2.id).duration == Approx(op_of(plain, g, r2.id).duration));
}

namespace {

// A graph on data:4 (its collectives' axis), as lower() would hand it to simulate.
Lowered on_data4(const Graph& g) {
  Lowered L;
  L.graph = g;
  L.mesh = parse_mesh("data:4");
  return L;
}

// simple_chip with a CPU MPI backing's two paths: eager messages up to 4 KiB per peer. Single
// copies' cold cost log-linear from 4 MB (0 s) to 16 MB (20 µs), a quarter shared with every
// collective; eager messages' from 4 MB (0 s) to 16 MB (40 µs), half shared.
HardwareSpec two_paths_chip() {
  HardwareSpec hw = simple_chip();
  hw.latency_after_streaming.points = {{4e6, 0.0}, {16e6, 20e-6}};
  hw.eager_limit = 4096;
  hw.eager_latency_after_streaming.points = {{4e6, 0.0}, {16e6, 40e-6}};
  hw.copy_path_share = 0.25;
  hw.eager_path_share = 0.5;
  return hw;
}

// The start of the cold-cost tests' programs: x [n 1e6] and y [m 16] over data:4, a = x·2 (8 MB
// streamed) -> r1 = all_reduce(a) (a 4 MB message: a single copy) -> b = r1·2 (8 MB).
struct ColdChain {
  Expr y, r1, b;
};
ColdChain cold_chain(Builder& bl) {
  Expr x = bl.input("x", {{"n", 1'000'000}});
  Expr y = bl.input("y", {{"m", 16}});
  Expr a = scale(x, 2.0);
  Expr r1 = all_reduce(a, {{"data", 4}});
  return {y, r1, scale(r1, 2.0)};
}

// simple_chip at 5 µs per hop, one path, all shared; `dipping`: with its cold-cost curve -3 µs at
// 1 MB (warmer than the samples, which had more streaming before them), 0 at 4 MB, 20 µs at 16 MB.
HardwareSpec one_path_chip(bool dipping) {
  HardwareSpec hw = simple_chip();
  hw.hop_latency = 5e-6;
  if (dipping) hw.latency_after_streaming.points = {{1e6, -3e-6}, {4e6, 0.0}, {16e6, 20e-6}};
  return hw;
}

// A collective's α terms in a run above the plain run's (its cold cost), for one program.
struct ColdCost {
  const Graph& g;
  const SimResult& plain;
  double operator()(const SimResult& r, Expr v) const {
    return op_of(r, g, v.id).comm.latency - op_of(plain, g, v.id).comm.latency;
  }
};

}  // namespace

TEST_CASE("MPI backing: a collective's cold cost counts its shared part from any collective, the rest from its kind",
          "[simulator][collective]") {
  // cold_chain, then k = reduce_scatter(y) (16 B to each peer: eager) -> e = all_gather(y) (64 B:
  // eager) -> c = b·2 (8 MB) -> r2 = all_reduce(c) (single copy). two_paths_chip.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr k = reduce_scatter(y, {{"data", 4}}, "m");
  Expr e = all_gather(y, {{"data", 4}}, "m");
  Expr c = scale(b, 2.0);
  Expr r2 = all_reduce(c, {{"data", 4}});
  bl.output("r2", r2);
  bl.output("k", k);
  bl.output("e", e);
  const Lowered L = on_data4(g);
  const SimResult plain = simulate(L, simple_chip(), SimOptions{.fusion = false});
  HardwareSpec hw = two_paths_chip();
  const SimResult cold = simulate(L, hw, SimOptions{.fusion = false});
  const ColdCost extra{g, plain};
  CHECK(op_of(cold, g, r1.id).message_bytes == 4e6);
  CHECK(op_of(cold, g, k.id).message_bytes == 16);
  CHECK(op_of(cold, g, e.id).message_bytes == 64);
  // r2: shared part 8 MB since e (10 µs), its own 16 MB since the all_reduce r1 (20 µs).
  CHECK(extra(cold, r2) == Approx(0.25 * 10e-6 + 0.75 * 20e-6));
  // k, on the eager curve: shared 8 MB since r1 (20 µs), its own since the step before's k, the
  // whole 24 MB step (40 µs, the curve's last point).
  CHECK(extra(cold, k) == Approx(0.5 * 20e-6 + 0.5 * 40e-6));
  // e right after k: the shared part warm; its own the whole step.
  CHECK(extra(cold, e) == Approx(0.5 * 40e-6));
  // r1 counts from the step before, where r2 was the last collective of any kind and of its own:
  // 8 MB (a) for both parts.
  CHECK(extra(cold, r1) == Approx(10e-6));
  // k's own part counts from the step before's k (24 MB), not from the all_reduces (8 MB).
  CHECK(extra(cold, k) > extra(cold, r1));

  // eager_limit 0: one path, every message on latency_after_streaming with eager_path_share.
  hw.eager_limit = 0;
  const SimResult one = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(one, r2) == Approx(0.5 * 10e-6 + 0.5 * 20e-6));
  CHECK(extra(one, e) == Approx(0.5 * 20e-6));
}

TEST_CASE("MPI backing: on the eager path the share a call warms is its pair's, the parts nested by recency",
          "[simulator][collective]") {
  // cold_chain, then ar = all_reduce(y) (64 B: eager) -> c = b·2 (8 MB) -> k = reduce_scatter(y)
  // and e = all_gather(y) (eager) right after it. two_paths_chip: the eager curve 0 at 4 MB, 20 µs
  // at 8 MB, 40 µs from 16 MB; half of it shared when no pair says otherwise. The step streams
  // 24 MB (a, b, c), so a kind's last call of the step before is 24 MB back.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr ar = all_reduce(y, {{"data", 4}});
  Expr c = scale(b, 2.0);
  Expr k = reduce_scatter(y, {{"data", 4}}, "m");
  Expr e = all_gather(y, {{"data", 4}}, "m");
  bl.output("c", c);
  bl.output("ar", ar);
  bl.output("k", k);
  bl.output("e", e);
  const Lowered L = on_data4(g);
  const SimResult plain = simulate(L, simple_chip(), SimOptions{.fusion = false});
  HardwareSpec hw = two_paths_chip();
  const ColdCost extra{g, plain};
  // Without pairs: half since any collective, half since its own kind's last call.
  const SimResult shared = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(shared, k) == Approx(0.5 * 20e-6 + 0.5 * 40e-6));  // ar 8 MB back; its own 24 MB
  CHECK(extra(shared, e) == Approx(0.5 * 0 + 0.5 * 40e-6));      // k just before; its own 24 MB
  // The reduce_scatter shares all of its state with the all_reduce (Open MPI, two local ranks:
  // 3.9 µs after one, 3.8 µs after itself, 10.8 µs cold); the all_gather 0.2 with the all_reduce
  // and 0.3 with the reduce_scatter.
  for (OpKind kind : {OpKind::reduce_scatter, OpKind::all_gather}) hw.collective_kinds[kind].hop_latency = hw.hop_latency;
  hw.collective_kinds[OpKind::reduce_scatter].warmed_by = {{OpKind::all_reduce, 1.0}};
  hw.collective_kinds[OpKind::all_gather].warmed_by = {{OpKind::all_reduce, 0.2}, {OpKind::reduce_scatter, 0.3}};
  const SimResult pairs = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(pairs, k) == Approx(20e-6));            // all of it since ar, 8 MB back
  CHECK(extra(pairs, e) == Approx(0.3 * 0 + 0.7 * 40e-6));  // k's 0.3 warm; ar's 0.2 is inside it
  CHECK(extra(pairs, ar) == Approx(extra(shared, ar)));     // its own kind (r1) was the last call
  // Nested by recency: with the all_reduce warming 0.8, the 0.3 k warms is priced since k (0), the
  // next 0.5 since ar (8 MB back: 20 µs), the last 0.2 since the step before's all_gather (40 µs).
  hw.collective_kinds[OpKind::all_gather].warmed_by = {{OpKind::all_reduce, 0.8}, {OpKind::reduce_scatter, 0.3}};
  CHECK(extra(simulate(L, hw, SimOptions{.fusion = false}), e) == Approx(0.3 * 0 + 0.5 * 20e-6 + 0.2 * 40e-6));
}

TEST_CASE("MPI backing: a single copy's warm share counts from any single copy, not from an eager message",
          "[simulator][collective]") {
  // cold_chain, then e = all_gather(y) (64 B: eager) -> s = reduce_scatter(b) (1 MB to each peer:
  // a single copy). two_paths_chip, half of a single copy's cold cost warmed by any single copy.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr e = all_gather(y, {{"data", 4}}, "m");
  Expr s = reduce_scatter(b, {{"data", 4}}, "n");
  bl.output("s", s);
  bl.output("e", e);
  const Lowered L = on_data4(g);
  const SimResult plain = simulate(L, simple_chip(), SimOptions{.fusion = false});
  HardwareSpec hw = two_paths_chip();
  hw.copy_warm_share = 0.5;
  const SimResult cold = simulate(L, hw, SimOptions{.fusion = false});
  const ColdCost extra{g, plain};
  CHECK(op_of(cold, g, s.id).message_bytes == 1e6);
  // s: any collective (e) just before: 0; the last single copy (r1) 8 MB before: 10 µs; its own
  // kind the whole 16 MB step before: 20 µs.
  CHECK(extra(cold, s) == Approx(0.25 * 0 + 0.5 * 10e-6 + 0.25 * 20e-6));
  // r1: s (the step before's last collective and single copy) 8 MB before; its own 16 MB.
  CHECK(extra(cold, r1) == Approx(0.25 * 10e-6 + 0.5 * 10e-6 + 0.25 * 20e-6));
  // Without the warm share, the half warmed by r1 is s's own again.
  hw.copy_warm_share = 0;
  const SimResult own = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(own, s) == Approx(0.25 * 0 + 0.75 * 20e-6));
}

TEST_CASE("MPI backing: after less streaming than the samples had, a collective is cheaper, by at most its α terms",
          "[simulator][collective]") {
  // cold_chain, then k = reduce_scatter(y) (16 B to each peer; after b, 8 MB since r1) and r2 =
  // all_reduce(b) right after k. one_path_chip.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr k = reduce_scatter(y, {{"data", 4}}, "m");
  Expr r2 = all_reduce(b, {{"data", 4}});
  bl.output("r2", r2);
  bl.output("k", k);
  const Lowered L = on_data4(g);
  const SimResult plain = simulate(L, one_path_chip(false), SimOptions{.fusion = false});
  HardwareSpec hw = one_path_chip(true);
  const SimResult cold = simulate(L, hw, SimOptions{.fusion = false});
  const ColdCost extra{g, plain};
  // k: 8 MB since r1, 10 µs (log-linear between 4 MB and 16 MB).
  CHECK(extra(cold, k) == Approx(10e-6));
  // r2: nothing streamed since k (the curve's first point).
  CHECK(extra(cold, r2) == Approx(-3e-6));
  CHECK(op_of(cold, g, r2.id).duration == Approx(op_of(plain, g, r2.id).duration - 3e-6));
  // A curve below the α terms takes them back and no more: the transfer stays.
  hw.latency_after_streaming.points = {{1e6, -1.0}, {4e6, 0.0}};
  const SimResult floor = simulate(L, hw, SimOptions{.fusion = false});
  const CollectiveTime r2_plain = op_of(plain, g, r2.id).comm;
  REQUIRE(r2_plain.latency > 3e-6);
  REQUIRE(r2_plain.bandwidth > 0);
  CHECK(op_of(floor, g, r2.id).comm.latency == Approx(0).margin(1e-15));
  CHECK(op_of(floor, g, r2.id).comm.total == Approx(r2_plain.total - r2_plain.latency));
}

TEST_CASE("MPI backing: a kind's cold cost is the curve times its own scale, below and above the samples'",
          "[simulator][collective]") {
  // cold_chain, then k = reduce_scatter(y) (16 B to each peer; 8 MB since r1) -> ar =
  // all_reduce(y) right after k. one_path_chip (its curve: the all_gather's).
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr k = reduce_scatter(y, {{"data", 4}}, "m");
  Expr ar = all_reduce(y, {{"data", 4}});
  bl.output("b", b);
  bl.output("k", k);
  bl.output("ar", ar);
  const Lowered L = on_data4(g);
  const SimResult plain = simulate(L, one_path_chip(false), SimOptions{.fusion = false});
  HardwareSpec hw = one_path_chip(true);
  const ColdCost extra{g, plain};
  const SimResult curve = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(curve, k) == Approx(10e-6));   // 8 MB since r1
  CHECK(extra(curve, ar) == Approx(-3e-6));  // right after k
  CHECK(extra(curve, r1) == Approx(10e-6));  // 8 MB (b) since the step before's ar
  // The reduce_scatter's state past the samples' streaming half the all_gather's; the all_reduce's
  // inside it twice the all_gather's, past it 1.5 times (two local ranks: a reduce_scatter 4.1 µs
  // hot against its 16.7 µs price, an all_gather 4.9 µs against 12.6 µs).
  hw.collective_kinds[OpKind::reduce_scatter] = {.hop_latency = hw.hop_latency, .efficiency_by_size = {},
                                                 .warmed_by = {}, .curve_scale_below = 3, .curve_scale_above = 0.5};
  hw.collective_kinds[OpKind::all_reduce] = {.hop_latency = hw.hop_latency, .efficiency_by_size = {},
                                             .warmed_by = {}, .curve_scale_below = 2, .curve_scale_above = 1.5};
  const SimResult scaled = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(scaled, k) == Approx(0.5 * 10e-6));
  CHECK(extra(scaled, ar) == Approx(2 * -3e-6));
  CHECK(extra(scaled, r1) == Approx(1.5 * 10e-6));
}
