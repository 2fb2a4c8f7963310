// Mesh axes on a torus, and what collectives cost there (α-β model, REFERENCE.md).
//
// Slice. A mesh of N devices runs on a slice of the pod: its devices fill the d cores of each chip
// (c = gcd(N, d)), on C = N / c chips shaped as the most square slice of the pod (smallest longest
// side, then smallest perimeter, sides ascending) among those the generation offers
// (HardwareSpec::slices, Cloud TPU's tables in simulator/hardware/*.toml: v2/v3 2x2, 4x4, 4x8,
// 8x8 ... 32x32 chips; v4/v5p 2x2x1 ... 16x16x16, v5p up to the 16x20x28 pod; v5e 1x1 ... 16x16;
// cloud.google.com/tpu/docs v2, v3, v4, v5e, v5p). A mesh of fewer chips than the smallest slice
// runs on part of it; any other chip count must be a slice's (an input error lists them). Without
// a table (a calibrated host, a custom chip) every shape of the pod is allowed. Before, a mesh was
// laid on the whole pod's axes: data:128 on v3 took one 32-chip ring, so its all-to-all could not
// grow with the device count.
//
// Placement. The devices of the slice form a torus whose axes are, innermost first, the
// devices of one chip ("core", when devices_per_chip > 1) and the chip torus axes x, y, z. Mesh
// axes are laid on it from the last (fastest-varying, usually "model") to the first: each takes
// factors of the torus axes in that order, so an axis may span several torus axes (data:16 on
// v4's 2x2x4 slice takes x2, y2 and z4) and two mesh axes may share a torus axis (the outer one then
// hops over the inner one: stride > 1). When the axis sizes do not factor onto the most square
// slice, the next most square one is used.
//
// Wraparound. A torus axis of the slice has wraparound links when the chip's rule allows it for
// the slice's length on that axis (HardwareSpec::wraparound). Only the outermost mesh segment on a
// torus axis closes its ring with them; an inner segment is a line.
//
// Costs, for a collective over the segments i of its mesh axes: N = Π n_i devices, of which
// c = Π of its "core" segments share each chip, on C = N / c chips; d = devices_per_chip; w_i one-way
// link bandwidth × ICI efficiency; α per hop.
//
// Chips with several devices (TPU v2/v3: two TensorCores per chip). The ICI links belong to the
// chip (four per v2/v3 chip, Jouppi et al., CACM 63(7), 2020), not to a core. Every device runs a
// collective at the same time (SPMD), so the d/c groups that have devices on one chip share its
// links: each gets w_i·c/d. A group spanning a chip's cores moves data among chips over ICI, then
// between the cores over the on-chip link (w_core): the on-chip link is a second phase, not extra
// ring bandwidth, and bisection is counted in chips.
//
//   ring(V)          (C−1)/C · V / (Σ_chip axes W_i · c/d) + (c−1)/c · V / w_core
//                    W_i = 2·w_i with wraparound, w_i without
//   all_gather       α·Σ_i s_i·h_i + ring(V)        V = bytes of the gathered array
//   reduce_scatter   the same with V = bytes of the input
//   all_reduce       2 × reduce_scatter
//   all_to_all       α·Σ_i s_i·h_i + max_t M_t · (S/N) / b_t      S = bytes per device
//                    Link contention under dimension-order routing (torus axes in order: core, x,
//                    y, z; on each the minimal direction, a tie half each way), all groups of the
//                    collective at once (SPMD). M_t = messages over the busiest directed link of
//                    torus axis t = (N / |P_t|) · max_link Σ_{groups on a line} Σ_{u≠v ∈ P_t} [route
//                    u→v uses the link] × (c_used on chip axes: every core's line crosses the
//                    chip's links, its own group's or another's), where P_t is
//                    the group's positions on t; b_t = w_t (or w_core). Counted exactly per axis
//                    (all_to_all_link_messages; a test routes every pair on small 2D tori and finds
//                    the same busiest link). Closed forms, one segment of n on a ring: n²/8
//                    messages per link with wraparound, n²/4 (the middle link) without, so the
//                    bytes per link are S·n/8 and S·n/4; on a square 2D slice of N chips the
//                    time grows as √N (GShard §5, arXiv 2006.16668: all-to-all cost O(√D) on a
//                    2D torus; JAX scaling book, "All-to-all" in the collectives chapter: a
//                    quarter of an all-gather on a ring with wraparound, V/(4W)). A segment with
//                    stride s carries s times the messages of a contiguous one (they all cross
//                    the middle links), which a bisection bound misses.
// where h_i = n_i/2 hops with wraparound, n_i − 1 without, and s_i the segment's stride. Every
// collective adds HardwareSpec::collective_overhead. A collective is latency-bound when its α
// part exceeds its bandwidth part. With one device per chip (d = c = 1) the formulas are the
// plain torus ones.
#pragma once

#include "graph/ir.hpp"
#include "graph/parallel/mesh.hpp"
#include "simulator/hardware.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace sy {

struct TorusAxis {
  std::string name;       // "core", "x", "y", "z"
  int64_t pod_size = 1;   // devices along it in the pod
  int64_t slice_size = 1; // devices along it in the slice the mesh uses
  bool wraparound = false;
  double link_bandwidth = 0;  // one-way B/s per link, × ICI efficiency
};

// One piece of a mesh axis: n devices along one torus axis.
struct AxisSegment {
  int torus_axis = 0;
  int64_t size = 1;
  int64_t stride = 1;       // hops between neighbours
  bool wraparound = false;  // the ring is closed
  double link_bandwidth = 0;
};

struct MeshAxisPlacement {
  std::string name;
  int64_t size = 1;
  std::vector<AxisSegment> segments;
};

struct Topology {
  std::vector<TorusAxis> torus_axes;
  std::vector<int64_t> slice;           // chips per chip torus axis of the slice, e.g. {8, 8}
  std::vector<MeshAxisPlacement> axes;  // one per mesh axis, in mesh order
  int64_t chips = 0;
  // all_to_all_link_messages for every set of mesh axes (bit mask m) and torus axis t, at
  // [m · torus_axes.size() + t], counted once by place_mesh (a sweep prices many collectives).
  std::vector<double> all_to_all_messages;
  // "slice 8x8x16 chips: data:64 = z16 (wrap) · y4 (stride 2) (wrap) | model:16 = x8 (wrap) · y2"
  std::string describe() const;
};

// Slice shapes of `chips` chips that fit the pod (chips per axis), most square first.
std::vector<std::vector<int64_t>> slice_shapes(const std::vector<int64_t>& pod, int64_t chips);

// Places `mesh` on the most square slice of the chip's pod that holds it. Throws InputError when the mesh has more devices than the pod,
// or an axis size cannot be factored onto the torus axes.
Topology place_mesh(const HardwareSpec& hw, const Mesh& mesh);

// Messages of one device pair (S/N bytes each) over the busiest directed link of torus axis
// `torus_axis` in an all-to-all over the mesh axes `axes`, all groups at once, dimension-order
// routing (see all_to_all above); 0 when the group does not span the axis. On a chip axis the
// lines of all the chip's cores share its links (× the cores in use).
double all_to_all_link_messages(const Topology& topo, int torus_axis, uint32_t axes);

struct CollectiveTime {
  double total = 0;
  double latency = 0;    // α terms and the fixed overhead
  double bandwidth = 0;  // bytes / bandwidth terms
  double staging = 0;    // pack and unpack copies on the device (HardwareSpec::staged_collectives)
  bool latency_bound() const { return latency > bandwidth; }
};

// Time of one collective of `kind` over the mesh axes in `axes` (bit a = mesh axis a), with the
// local input and output bytes of one device.
CollectiveTime collective_time(const HardwareSpec& hw, const Topology& topo, OpKind kind, uint32_t axes,
                               double local_in_bytes, double local_out_bytes);

}  // namespace sy
