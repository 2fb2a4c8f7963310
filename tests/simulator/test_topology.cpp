// Placement of mesh axes on a torus and the α-β collective costs (simulator/topology.hpp),
// against the scaling book's worked TPU numbers (REFERENCE.md) and hand-computed rings.
#include "graph/error.hpp"
#include "simulator/hardware.hpp"
#include "simulator/topology.hpp"

#include <catch2/catch.hpp>

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
  // model:16 takes x (16, whole cube multiples: wraparound); data:64 takes y:16 and z:4.
  REQUIRE(t.axes[1].segments.size() == 1);
  CHECK(t.axes[1].segments[0].size == 16);
  CHECK(t.axes[1].segments[0].wraparound);
  REQUIRE(t.axes[0].segments.size() == 2);
  CHECK(t.axes[0].segments[0].size == 16);
  CHECK(t.axes[0].segments[1].size == 4);
  CHECK(t.axes[0].segments[1].wraparound);  // z slice of 4: one whole cube
  CHECK(t.chips == 1024);
  CHECK(t.describe() == "data:64 = y16 (wrap) · z4 (wrap) | model:16 = x16 (wrap)");

  // TPU v3: a device is a core; model:16 takes the chip's two cores and 8 of x; data:64 the whole
  // y axis (32: the pod's, so it wraps) and 2 more of x (stride 8; x's slice of 16 is a line).
  const Topology t3 = place_mesh(chip("tpu_v3"), parse_mesh("data:64,model:16"));
  CHECK(t3.chips == 512);
  CHECK(t3.describe() == "data:64 = y32 (wrap) · x2 (stride 8) | model:16 = core2 · x8");
}

TEST_CASE("a mesh larger than the pod, or one that does not factor onto it, is bad input", "[simulator][topology]") {
  CHECK_THROWS_WITH(place_mesh(chip("tpu_v5e"), parse_mesh("data:64,model:16")),
                    Contains("mesh 'data:64,model:16' has 1024 devices, more than the pod: a tpu_v5e pod has 256 devices "
                             "(16x16 chips)"));
  CHECK_THROWS_WITH(place_mesh(chip("tpu_v4"), parse_mesh("data:3")),
                    Contains("axis 'data' of size 3 does not fit the torus axes left"));
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
  CHECK(cube.describe() == "x:4 = z4 (wrap) | y:4 = y4 (wrap) | z:4 = x4 (wrap)");
}

TEST_CASE("two cores per chip share the chip's ICI links, and the core link is a phase, not ring bandwidth",
          "[simulator][topology]") {
  // TPU v3: 2 TensorCores per chip, 4 ICI links per chip (w one-way each), a core link w_core.
  const HardwareSpec v3 = chip("tpu_v3");
  const double w = v3.link_bandwidth * v3.ici_efficiency, w_core = v3.core_link_bandwidth * v3.ici_efficiency;
  const double V = 64e6;
  // data:4,model:2: model = the chip's two cores, data = 4 chips along x (a line: 4 < the pod's 32).
  const Topology t = place_mesh(v3, parse_mesh("data:4,model:2"));
  REQUIRE(t.describe() == "data:4 = x4 | model:2 = core2");
  // Over the cores alone: one on-chip exchange of half the array.
  CHECK(collective_time(v3, t, OpKind::all_gather, 2, V / 2, V).bandwidth == Approx(0.5 * V / w_core));
  // Over data: both cores' groups cross the same chip links at once, each at w/2 (was w).
  CHECK(collective_time(v3, t, OpKind::all_gather, 1, V / 4, V).bandwidth == Approx(0.75 * V / (w / 2)));
  // data:8 = core2 · x4: a chip phase over 4 chips at the full w (both cores in one group), then the
  // on-chip phase; before, the core link was counted as extra ring bandwidth: (7/8)·V / (w + w_core).
  const Topology u = place_mesh(v3, parse_mesh("data:8"));
  REQUIRE(u.describe() == "data:8 = core2 · x4");
  const CollectiveTime ag = collective_time(v3, u, OpKind::all_gather, 1, V / 8, V);
  CHECK(ag.bandwidth == Approx(0.75 * V / w + 0.5 * V / w_core));
  CHECK(ag.bandwidth > 3.0 * (7.0 / 8.0) * V / (w + w_core));
  // all_to_all: the bisection in chips. Cutting x4 in half crosses 1 link (a line of 4 chips):
  // N·S/4 = 8·S/4 bytes over w; before it counted 2 rings (one per core).
  const double S = V / 8;
  CHECK(collective_time(v3, u, OpKind::all_to_all, 1, S, S).bandwidth == Approx(8 * S / 4 / w));
  // With one device per chip the plain torus formulas hold: v4, data:4 along one axis is w per ring.
  const HardwareSpec v4 = chip("tpu_v4");
  const Topology f = place_mesh(v4, parse_mesh("data:4"));
  CHECK(collective_time(v4, f, OpKind::all_gather, 1, V / 4, V).bandwidth ==
        Approx(0.75 * V / ((f.axes[0].segments[0].wraparound ? 2.0 : 1.0) * v4.link_bandwidth * v4.ici_efficiency)));
}
