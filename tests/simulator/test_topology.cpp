// Placement of mesh axes on a torus and the α-β collective costs (simulator/topology.hpp),
// against the scaling book's worked TPU numbers (REFERENCE.md) and hand-computed rings.
#include "graph/error.hpp"
#include "simulator/hardware.hpp"
#include "simulator/topology.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <tuple>

using namespace sy;
using Catch::Matchers::Contains;

namespace {

HardwareSpec chip(const std::string& name) { return load_hardware(name, default_hardware_dir()); }

// A 1-D chip: one torus axis of `pod` chips, link w one-way, α per hop.
HardwareSpec ring_chip(int64_t pod, Wraparound wrap, double w = 1e10, double alpha = 1e-6) {
  HardwareSpec h;
  h.name = "ring";
  h.matmul_flops_bf16 = h.matmul_flops_f32 = h.vector_flops = 1e12;
  h.hbm_bytes = 1e9;
  h.hbm_bandwidth = 1e11;
  h.link_bandwidth = w;
  h.hop_latency = alpha;
  h.torus = {pod};
  h.wraparound = wrap;
  return h;
}

}  // namespace

TEST_CASE("mesh axes are placed innermost-last onto the torus axes", "[simulator][topology]") {
  const HardwareSpec v4 = chip("tpu_v4");
  const Topology t = place_mesh(v4, parse_mesh("data:64,model:16"));
  // 1,024 chips: the most square slice is 8x8x16 (2A=2B=C). model:16 takes x8 and 2 of y;
  // data:64 takes z16 and the rest of y (stride 2). Every side is a multiple of 4: wraparound.
  CHECK(t.slice == std::vector<int64_t>{8, 8, 16});
  REQUIRE(t.axes[1].segments.size() == 2);
  CHECK(t.axes[1].segments[0].size == 8);
  CHECK(t.axes[1].segments[0].wraparound);
  REQUIRE(t.axes[0].segments.size() == 2);
  CHECK(t.axes[0].segments[0].size == 16);
  CHECK(t.axes[0].segments[1].size == 4);
  CHECK(t.axes[0].segments[1].stride == 2);
  CHECK(t.axes[0].segments[1].wraparound);  // the outer segment on y (8 = 2 · 4) closes the ring
  CHECK(t.chips == 1024);
  CHECK(t.describe() == "slice 8x8x16 chips: data:64 = z16 (wrap) · y4 (stride 2) (wrap) | model:16 = x8 (wrap) · y2");

  // TPU v3: a device is a core; model:16 takes the chip's two cores and 8 of x; data:64 the whole
  // y axis (32: the pod's, so it wraps) and 2 more of x (stride 8; x's slice of 16 is a line).
  const Topology t3 = place_mesh(chip("tpu_v3"), parse_mesh("data:64,model:16"));
  CHECK(t3.chips == 512);
  CHECK(t3.describe() == "slice 16x32 chips: data:64 = y32 (wrap) · x2 (stride 8) | model:16 = core2 · x8");
}

TEST_CASE("a mesh larger than the pod, or one that does not factor onto it, is bad input", "[simulator][topology]") {
  CHECK_THROWS_WITH(place_mesh(chip("tpu_v5e"), parse_mesh("data:64,model:16")),
                    Contains("mesh 'data:64,model:16' has 1024 devices, more than the pod: a tpu_v5e pod has 256 devices "
                             "(16x16 chips)"));
  // 17 chips: no slice of a 16x16 pod has that many, and v5e offers none.
  CHECK_THROWS_WITH(place_mesh(chip("tpu_v5e"), parse_mesh("data:17")),
                    Contains("mesh 'data:17' needs 17 chips; tpu_v5e offers slices of 1 (1x1), 4 (2x2), 8 (2x4), 16 (4x4)"));
  // Without a slice table (a custom chip), the pod's shapes: still none of 17 chips.
  HardwareSpec any = chip("tpu_v5e");
  any.slices.clear();
  CHECK_THROWS_WITH(place_mesh(any, parse_mesh("data:17")),
                    Contains("mesh 'data:17': its device count does not fit the torus axes left of any slice of 17 chips"));
}

TEST_CASE("a mesh runs on a slice the generation offers (Cloud TPU's slice tables), or on part of the smallest",
          "[simulator][topology]") {
  // v3 offers 2x2, 4x4, 4x8, 8x8 ...: 16 devices are 8 chips, which a 32x32 pod could hold as 2x4,
  // but there is no v3-16.
  CHECK_THROWS_WITH(place_mesh(chip("tpu_v3"), parse_mesh("data:16")),
                    Contains("mesh 'data:16' needs 8 chips; tpu_v3 offers slices of 4 (2x2), 16 (4x4), 32 (4x8), 64 (8x8)"));
  HardwareSpec any = chip("tpu_v3");
  any.slices.clear();
  CHECK(place_mesh(any, parse_mesh("data:16")).slice == std::vector<int64_t>{2, 4});
  // 64 devices = 32 chips: v3-64, 4x8.
  CHECK(place_mesh(chip("tpu_v3"), parse_mesh("data:64")).slice == std::vector<int64_t>{4, 8});
  // Fewer chips than the smallest slice: part of it (2 chips of a v4-8's 2x2x1).
  CHECK(place_mesh(chip("tpu_v4"), parse_mesh("data:2")).chips == 2);
  // v4 offers 8x8x12 (768 chips, v4-1536: Cloud names count TensorCores), not 4x4x12 (192 chips).
  CHECK(place_mesh(chip("tpu_v4"), parse_mesh("data:768")).slice == std::vector<int64_t>{8, 8, 12});
  CHECK_THROWS_WITH(place_mesh(chip("tpu_v4"), parse_mesh("data:192")), Contains("needs 192 chips; tpu_v4 offers slices of"));
  // The tables round-trip and a bad one is named.
  const HardwareSpec v4 = chip("tpu_v4");
  CHECK(parse_hardware(to_toml(v4), "<round trip>").slices == v4.slices);
  std::string text = to_toml(v4);
  text.replace(text.find("slices = [[2, 2, 1]"), 19, "slices = [[2, 2, 99]");
  CHECK_THROWS_WITH(parse_hardware(text, "bad.toml"),
                    Contains("ici.slices") && Contains("slice [2, 2, 99] is not allowed; allowed: an array of slice shapes, "
                                                       "each 3 chip counts >= 1 within the pod"));
}

TEST_CASE("scaling book: all-gathers on a TPU v4 4x4x4 slice (23 µs and 46 µs)", "[simulator][topology]") {
  // bf16 [B=1024 over X, D=4096 over Y] on a 4x4x4 slice with wraparound on every axis:
  // W = 2 · 4.5e10 = 9e10 B/s per axis.
  const HardwareSpec v4 = chip("tpu_v4");
  const Topology t = place_mesh(v4, parse_mesh("x:4,y:4,z:4"));
  for (const MeshAxisPlacement& a : t.axes) CHECK(a.segments.at(0).wraparound);
  const double B = 1024, D = 4096, W = 9e10;
  const double local = 2 * B * D / 16;  // each device's block
  const uint32_t X = 1u << 0, Y = 1u << 1;

  // Over X alone: V = 2·B·D/|Y| = 2 MiB. The book's figure drops the (N−1)/N = 3/4 of a ring and
  // the hop latency; ours keeps both.
  const CollectiveTime x = collective_time(v4, t, OpKind::all_gather, X, local, 4 * local);
  CHECK(2 * B * D / (W * 4) == Approx(23.3e-6).epsilon(0.01));
  CHECK(x.bandwidth == Approx(0.75 * 2 * B * D / (W * 4)));
  CHECK(x.latency == Approx(2e-6));  // 4/2 hops of 1 µs
  CHECK(x.total == Approx(23.3e-6).epsilon(0.20));

  // Over X and Y at once: the full 8 MiB array with twice the bandwidth.
  const CollectiveTime xy = collective_time(v4, t, OpKind::all_gather, X | Y, local, 16 * local);
  CHECK(2 * B * D / (2 * W) == Approx(46.6e-6).epsilon(0.01));
  CHECK(xy.bandwidth == Approx(15.0 / 16 * 2 * B * D / (2 * W)));
  CHECK(xy.total == Approx(46.6e-6).epsilon(0.05));
}

TEST_CASE("ring collectives by hand, with and without wraparound", "[simulator][topology]") {
  const double w = 1e10, alpha = 1e-6;
  const double V = 8e6;  // bytes of the full array
  // A pod of 8 chips in a ring (wraparound: W = 2w, 4 hops) and a line of 8 of a 16-chip pod
  // under the full-axis rule (no wraparound: w, 7 hops).
  const HardwareSpec ring8 = ring_chip(8, Wraparound::full_axis, w, alpha);
  const Topology r = place_mesh(ring8, parse_mesh("data:8"));
  REQUIRE(r.axes[0].segments[0].wraparound);
  const HardwareSpec pod16 = ring_chip(16, Wraparound::full_axis, w, alpha);
  const Topology l = place_mesh(pod16, parse_mesh("data:8"));
  REQUIRE_FALSE(l.axes[0].segments[0].wraparound);

  // all_gather: α·N/2 + (N−1)/N·V/W with wraparound; α·(N−1) + (N−1)/N·V/w without.
  const CollectiveTime ag = collective_time(ring8, r, OpKind::all_gather, 1, V / 8, V);
  CHECK(ag.latency == Approx(4 * alpha));
  CHECK(ag.bandwidth == Approx(7.0 / 8 * V / (2 * w)));
  const CollectiveTime ag_line = collective_time(pod16, l, OpKind::all_gather, 1, V / 8, V);
  CHECK(ag_line.latency == Approx(7 * alpha));
  CHECK(ag_line.bandwidth == Approx(7.0 / 8 * V / w));  // twice the ring's

  // reduce_scatter of the same array costs the all-gather; all_reduce twice that.
  const CollectiveTime rs = collective_time(ring8, r, OpKind::reduce_scatter, 1, V, V / 8);
  CHECK(rs.total == Approx(ag.total));
  const CollectiveTime ar = collective_time(ring8, r, OpKind::all_reduce, 1, V, V);
  CHECK(ar.total == Approx(2 * ag.total));

  // all_to_all: a quarter of an all-gather of the same V on a ring with wraparound (V/(4W)), the
  // bisection bound: N·S/4 bytes cross 2 links each way.
  const CollectiveTime a2a = collective_time(ring8, r, OpKind::all_to_all, 1, V / 8, V / 8);
  CHECK(a2a.bandwidth == Approx(V / (4 * 2 * w)));
  // Without wraparound only one link crosses the cut: twice as long.
  const CollectiveTime a2a_line = collective_time(pod16, l, OpKind::all_to_all, 1, V / 8, V / 8);
  CHECK(a2a_line.bandwidth == Approx(V / (4 * w)));

  // Small messages are latency-bound.
  const CollectiveTime tiny = collective_time(ring8, r, OpKind::all_reduce, 1, 64, 64);
  CHECK(tiny.latency_bound());
  CHECK_FALSE(ar.latency_bound());
}

TEST_CASE("a collective kind with its own α and size curve (ici.<kind>) is priced with them", "[simulator][topology]") {
  const double w = 1e10, alpha = 1e-6, V = 8e6;
  HardwareSpec hw = ring_chip(8, Wraparound::full_axis, w, alpha);
  const Topology r = place_mesh(hw, parse_mesh("data:8"));
  const CollectiveTime shared = collective_time(hw, r, OpKind::reduce_scatter, 1, V, V / 8);
  hw.collective_kinds[OpKind::reduce_scatter] = {.hop_latency = 5e-6, .efficiency_by_size = {{{1e3, 1.0}, {1e9, 0.5}}}};
  const CollectiveTime own = collective_time(hw, r, OpKind::reduce_scatter, 1, V, V / 8);
  CHECK(own.latency == Approx(4 * 5e-6));          // 4 hops (ring of 8 with wraparound) at the kind's α
  const double e = hw.ici_efficiency_of(OpKind::reduce_scatter).at(V);  // log-interpolated between 1 and 0.5
  CHECK(e < 1.0);
  CHECK(own.bandwidth == Approx(shared.bandwidth / e));
  // The other kinds keep the shared values.
  CHECK(collective_time(hw, r, OpKind::all_gather, 1, V / 8, V).latency == Approx(4 * alpha));
}

TEST_CASE("collectives over a mesh axis spanning two torus axes", "[simulator][topology]") {
  // A 4x4 pod (wraparound everywhere); data:16 spans both axes: N = 16, Σ W = 2·(2w).
  HardwareSpec h = ring_chip(4, Wraparound::always);
  h.torus = {4, 4};
  const Topology t = place_mesh(h, parse_mesh("data:16"));
  REQUIRE(t.axes[0].segments.size() == 2);
  const double V = 16e6;
  const CollectiveTime ag = collective_time(h, t, OpKind::all_gather, 1, V / 16, V);
  CHECK(ag.bandwidth == Approx(15.0 / 16 * V / (4 * h.link_bandwidth)));
  CHECK(ag.latency == Approx((2 + 2) * h.hop_latency));
  // all_to_all on the 4x4 torus: N·S/4 over the cut of one axis: 4 rings × 2 links.
  const CollectiveTime a2a = collective_time(h, t, OpKind::all_to_all, 1, V / 16, V / 16);
  CHECK(a2a.bandwidth == Approx((V / 4) / (8 * h.link_bandwidth)));
  // Two mesh axes sharing one torus axis: the outer one hops over the inner (stride 4) and closes
  // its ring through the wraparound.
  HardwareSpec line16 = ring_chip(16, Wraparound::always);
  const Topology s = place_mesh(line16, parse_mesh("data:4,model:4"));
  CHECK(s.axes[1].segments[0].stride == 1);
  CHECK_FALSE(s.axes[1].segments[0].wraparound);
  CHECK(s.axes[0].segments[0].stride == 4);
  CHECK(s.axes[0].segments[0].wraparound);
  CHECK(collective_time(line16, s, OpKind::all_gather, 1, 1, 4).latency == Approx(4 * 2 * line16.hop_latency));
  // Fresh torus axes first: on a 4x4x4 v4 slice each mesh axis gets its own ring.
  const Topology cube = place_mesh(load_hardware("tpu_v4", default_hardware_dir()), parse_mesh("x:4,y:4,z:4"));
  CHECK(cube.describe() == "slice 4x4x4 chips: x:4 = z4 (wrap) | y:4 = y4 (wrap) | z:4 = x4 (wrap)");
}

TEST_CASE("two cores per chip share the chip's ICI links, and the core link is a phase, not ring bandwidth",
          "[simulator][topology]") {
  // TPU v3: 2 TensorCores per chip, 4 ICI links per chip (w one-way each), a core link w_core.
  // A one-axis pod of 32 v3 chips, so that 4 chips form a line (the 2D pod's most square slice of
  // 4 chips is 2x2).
  HardwareSpec v3 = chip("tpu_v3");
  v3.torus = {32};
  v3.slices.clear();  // a pod of our own: any line of chips
  const double w = v3.link_bandwidth * v3.ici_efficiency, w_core = v3.core_link_bandwidth * v3.ici_efficiency;
  const double V = 64e6;
  // data:4,model:2: model = the chip's two cores, data = 4 chips along x (a line: 4 < the pod's 32).
  const Topology t = place_mesh(v3, parse_mesh("data:4,model:2"));
  REQUIRE(t.describe() == "slice 4 chips: data:4 = x4 | model:2 = core2");
  // Over the cores alone: one on-chip exchange of half the array.
  CHECK(collective_time(v3, t, OpKind::all_gather, 2, V / 2, V).bandwidth == Approx(0.5 * V / w_core));
  // Over data: both cores' groups cross the same chip links at once, each at w/2 (was w).
  CHECK(collective_time(v3, t, OpKind::all_gather, 1, V / 4, V).bandwidth == Approx(0.75 * V / (w / 2)));
  // data:8 = core2 · x4: a chip phase over 4 chips at the full w (both cores in one group), then the
  // on-chip phase; before, the core link was counted as extra ring bandwidth: (7/8)·V / (w + w_core).
  const Topology u = place_mesh(v3, parse_mesh("data:8"));
  REQUIRE(u.describe() == "slice 4 chips: data:8 = core2 · x4");
  const CollectiveTime ag = collective_time(v3, u, OpKind::all_gather, 1, V / 8, V);
  CHECK(ag.bandwidth == Approx(0.75 * V / w + 0.5 * V / w_core));
  CHECK(ag.bandwidth > 3.0 * (7.0 / 8.0) * V / (w + w_core));
  // all_to_all: the middle link of the line of 4 chips carries the 4 · 4 messages of S/8 from the
  // 4 devices of chips 0-1 to the 4 of chips 2-3: N·S/4 = 8·S/4 bytes over w (before the two-core
  // fix it counted 2 rings, one per core).
  const double S = V / 8;
  CHECK(collective_time(v3, u, OpKind::all_to_all, 1, S, S).bandwidth == Approx(8 * S / 4 / w));
  // With one device per chip the plain torus formulas hold: v4, data:4 on a 1x2x2 slice is two
  // lines of 2 (no wraparound), w each.
  const HardwareSpec v4 = chip("tpu_v4");
  const Topology f = place_mesh(v4, parse_mesh("data:4"));
  REQUIRE(f.describe() == "slice 1x2x2 chips: data:4 = y2 · z2");
  CHECK(collective_time(v4, f, OpKind::all_gather, 1, V / 4, V).bandwidth ==
        Approx(0.75 * V / (2 * v4.link_bandwidth * v4.ici_efficiency)));
}

TEST_CASE("a mesh runs on the most square slice of its size, as Cloud TPU's slice table", "[simulator][topology]") {
  // v3 (2 cores per chip): v3-32 = 4x4 chips, v3-64 = 4x8, v3-128 = 8x8, v3-512 = 16x16, v3-2048 = 32x32.
  const HardwareSpec v3 = chip("tpu_v3");
  CHECK(place_mesh(v3, parse_mesh("data:32")).slice == std::vector<int64_t>{4, 4});
  CHECK(place_mesh(v3, parse_mesh("data:64")).slice == std::vector<int64_t>{4, 8});
  CHECK(place_mesh(v3, parse_mesh("data:512")).slice == std::vector<int64_t>{16, 16});
  // data:128 was one 32-chip ring (core2 · x32 · y2); now the 8x8 slice, lines (not the pod's 32).
  const Topology t = place_mesh(v3, parse_mesh("data:128"));
  CHECK(t.describe() == "slice 8x8 chips: data:128 = core2 · x8 · y8");
  CHECK(t.chips == 64);
  const Topology pod = place_mesh(v3, parse_mesh("data:2048"));
  CHECK(pod.describe() == "slice 32x32 chips: data:2048 = core2 · x32 (wrap) · y32 (wrap)");
  // v4: wraparound only on slices of whole 4x4x4 cubes (the optical links join cube faces; Jouppi et
  // al. 2023); 2A=B=C or 2A=2B=C.
  const HardwareSpec v4 = chip("tpu_v4");
  CHECK(place_mesh(v4, parse_mesh("data:64")).slice == std::vector<int64_t>{4, 4, 4});
  CHECK(place_mesh(v4, parse_mesh("data:128")).slice == std::vector<int64_t>{4, 4, 8});
  CHECK(place_mesh(v4, parse_mesh("data:256")).slice == std::vector<int64_t>{4, 8, 8});
  // 2x2x4 lies inside one cube: its side of 4 has no wraparound link (it had, by a per-side rule).
  CHECK(place_mesh(v4, parse_mesh("data:16")).describe() == "slice 2x2x4 chips: data:16 = x2 · y2 · z4");
  CHECK(place_mesh(v4, parse_mesh("data:128")).describe() == "slice 4x4x8 chips: data:128 = x4 (wrap) · y4 (wrap) · z8 (wrap)");
  // v5e: the documented 2D shapes 2x4, 4x4, 4x8, 8x16.
  const HardwareSpec v5e = chip("tpu_v5e");
  CHECK(place_mesh(v5e, parse_mesh("data:8")).slice == std::vector<int64_t>{2, 4});
  CHECK(place_mesh(v5e, parse_mesh("data:128")).slice == std::vector<int64_t>{8, 16});
}

namespace {

// Routes every (source, destination) pair of every group of an all-to-all over `axes`, one
// message each, by dimension order (core, x, y, z; minimal direction, a tie half each way), and
// returns the busiest directed link's message count per torus axis. Independent of
// all_to_all_link_messages: it walks devices, not positions on one line.
std::vector<double> route_all_pairs(const Topology& topo, uint32_t axes) {
  struct Seg { size_t axis; int t; int64_t size, stride; };
  std::vector<Seg> segs;
  for (size_t a = 0; a < topo.axes.size(); ++a)
    for (const AxisSegment& s : topo.axes[a].segments) segs.push_back({a, s.torus_axis, s.size, s.stride});
  const size_t T = topo.torus_axes.size();
  struct Dev { std::vector<int64_t> coord; std::vector<int64_t> key; };  // key: its group (other axes' digits)
  std::vector<Dev> devs;
  std::vector<int64_t> digit(segs.size(), 0);
  for (;;) {
    Dev d{std::vector<int64_t>(T, 0), {}};
    for (size_t i = 0; i < segs.size(); ++i) {
      d.coord[static_cast<size_t>(segs[i].t)] += digit[i] * segs[i].stride;
      d.key.push_back(((axes >> segs[i].axis) & 1u) ? -1 : digit[i]);
    }
    devs.push_back(d);
    size_t i = 0;
    while (i < segs.size() && ++digit[i] == segs[i].size) digit[i++] = 0;
    if (i == segs.size()) break;
  }
  // A link: (torus axis, position of the chip (or device for the core axis), direction).
  std::map<std::tuple<size_t, std::vector<int64_t>, int>, double> load;
  for (const Dev& s : devs)
    for (const Dev& d : devs) {
      if (&s == &d || s.key != d.key) continue;
      std::vector<int64_t> at = s.coord;
      for (size_t t = 0; t < T; ++t) {
        const int64_t L = topo.torus_axes[t].slice_size;
        const bool core = topo.torus_axes[t].name == "core";
        auto walk = [&](int dir, int64_t hops, double w) {
          std::vector<int64_t> p = at;
          for (int64_t h = 0; h < hops; ++h) {
            std::vector<int64_t> link = p;
            if (!core && topo.torus_axes[0].name == "core") link[0] = 0;  // both cores' traffic, one chip link
            load[{t, link, dir}] += w;
            p[t] = ((p[t] + dir) % L + L) % L;
          }
        };
        const int64_t fwd = ((d.coord[t] - at[t]) % L + L) % L, back = (L - fwd) % L;
        if (fwd == 0) continue;
        if (!topo.torus_axes[t].wraparound) walk(d.coord[t] > at[t] ? 1 : -1, std::abs(d.coord[t] - at[t]), 1.0);
        else if (fwd < back) walk(1, fwd, 1.0);
        else if (back < fwd) walk(-1, back, 1.0);
        else { walk(1, fwd, 0.5); walk(-1, back, 0.5); }
        at[t] = d.coord[t];
      }
    }
  std::vector<double> busiest(T, 0.0);
  for (const auto& [k, v] : load) busiest[std::get<0>(k)] = std::max(busiest[std::get<0>(k)], v);
  return busiest;
}

void check_against_routing(const HardwareSpec& hw, const std::string& mesh, uint32_t axes) {
  const Topology topo = place_mesh(hw, parse_mesh(mesh));
  INFO(topo.describe() << " axes " << axes);
  const std::vector<double> routed = route_all_pairs(topo, axes);
  for (size_t t = 0; t < routed.size(); ++t)
    CHECK(all_to_all_link_messages(topo, static_cast<int>(t), axes) == Approx(routed[t]));
}

}  // namespace

TEST_CASE("all-to-all link contention: the counted busiest link equals routing every pair", "[simulator][topology]") {
  // Rings: n²/8 messages per directed link with wraparound, n²/4 on the middle link of a line.
  const HardwareSpec ring8 = ring_chip(8, Wraparound::always);
  CHECK(all_to_all_link_messages(place_mesh(ring8, parse_mesh("data:8")), 0, 1) == Approx(64.0 / 8));
  const HardwareSpec line8 = ring_chip(8, Wraparound::full_axis);
  CHECK(all_to_all_link_messages(place_mesh(line8, parse_mesh("data:4")), 0, 1) == Approx(16.0 / 4));
  HardwareSpec torus44 = ring_chip(4, Wraparound::always);
  torus44.torus = {4, 4};
  HardwareSpec line66 = ring_chip(6, Wraparound::full_axis);
  line66.torus = {6, 6};
  HardwareSpec v3ish = chip("tpu_v3");
  v3ish.torus = {4, 4};
  HardwareSpec ring16 = ring_chip(16, Wraparound::always);
  for (const auto& [hw, mesh, axes] : std::vector<std::tuple<HardwareSpec, std::string, uint32_t>>{
           {ring8, "data:8", 1}, {line8, "data:4", 1}, {torus44, "data:16", 1}, {torus44, "data:4,model:4", 1},
           {torus44, "data:4,model:4", 2}, {torus44, "data:2,model:8", 1}, {torus44, "data:2,model:8", 3},
           {line66, "data:6,model:6", 1}, {line66, "data:36", 1}, {line66, "data:9", 1},
           {ring16, "data:4,model:4", 1}, {ring16, "data:4,model:4", 3},
           {v3ish, "data:32", 1}, {v3ish, "data:8,model:4", 1}, {v3ish, "data:8,model:4", 2},
           {v3ish, "data:16,model:2", 1}, {v3ish, "data:4,model:8", 3}})
    check_against_routing(hw, mesh, axes);
}

TEST_CASE("all-to-all over a strided axis carries stride times the messages (was the bisection bound)",
          "[simulator][topology]") {
  // A ring of 16 chips with wraparound; data:4,model:4: data hops over model (stride 4). Each data
  // group's pairs 4 apart (and 8 apart, half each way) cross the same links as the other 3 groups'.
  const double w = 1e10;
  const HardwareSpec ring16 = ring_chip(16, Wraparound::always, w, 0);
  const Topology t = place_mesh(ring16, parse_mesh("data:4,model:4"));
  const double S = 4e6;
  const CollectiveTime a2a = collective_time(ring16, t, OpKind::all_to_all, 1, S, S);
  // Counted: per group, each physical link carries one pair 4 apart and half of the pairs 8 apart
  // (a tie: half each way) that span it, 2 messages; the 4 interleaved groups share every link: 8.
  CHECK(all_to_all_link_messages(t, 0, 1) == Approx(8.0));
  CHECK(a2a.bandwidth == Approx(8.0 * (S / 4) / w));
  // The bisection bound counted 16/4 rings of data × 2 links across the cut: N·S/4 / (8w), 16
  // times less; the 4 "rings" are one physical ring.
  CHECK(a2a.bandwidth == Approx(16.0 * (4 * S / 4) / (8 * w)));
}

TEST_CASE("GShard scaling: the all-to-all over data grows with the v3 slice (fixed bytes per core)",
          "[simulator][topology]") {
  // GShard §5 (arXiv 2006.16668): at a fixed number of tokens per core, the all-to-all's cost grows
  // as O(√D) on the 2D torus. 128 cores: 8x8 (a line per axis), 512: 16x16, 2048: 32x32 (the pod,
  // wraparound). Before, every size used one 32-chip ring: the time was flat.
  const HardwareSpec v3 = chip("tpu_v3");
  const double S = 64e6, w = v3.link_bandwidth * v3.ici_efficiency;
  std::vector<double> times, bw;
  for (const char* mesh : {"data:128", "data:512", "data:2048"}) {
    const CollectiveTime c = collective_time(v3, place_mesh(v3, parse_mesh(mesh)), OpKind::all_to_all, 1, S, S);
    times.push_back(c.total);
    bw.push_back(c.bandwidth);
  }
  // Both cores' messages cross the chip's links: 2 · S·n/4 on a line, 2 · S·n/8 on a ring.
  CHECK(bw[0] == Approx(2 * S * 8 / 4 / w));   // line of 8
  CHECK(bw[1] == Approx(2 * S * 16 / 4 / w));  // line of 16
  CHECK(bw[2] == Approx(2 * S * 32 / 8 / w));  // ring of 32 (the pod's side: wraparound)
  CHECK(times[1] > 1.9 * times[0]);
  CHECK(times[2] > times[1]);  // the same link load with wraparound; more hops
}
