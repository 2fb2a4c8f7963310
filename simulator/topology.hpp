// Mesh axes on a torus, and what collectives cost there (α-β model, REFERENCE.md).
//
// Placement. The devices of a HardwareSpec form a torus whose axes are, innermost first, the
// devices of one chip ("core", when devices_per_chip > 1) and the chip torus axes x, y, z. Mesh
// axes are laid on it from the last (fastest-varying, usually "model") to the first: each takes
// factors of the torus axes in that order, so an axis may span several torus axes (data:64 on a
// 16x16x16 v4 pod takes y:16 and z:4) and two mesh axes may share a torus axis (the outer one then
// hops over the inner one: stride > 1).
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
//   all_to_all       α·Σ_i s_i·h_i + max_j (N·S/4) / (L_j · b_j)   S = bytes per device; the cut
//                    halving segment j is crossed by L_j = C/n_j rings of chips (× 2 with
//                    wraparound) of b_j = w_j·c/d each, or for a core segment by C on-chip links of
//                    w_core (the bisection bound; a ring with wraparound gives V/(4W))
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
  std::vector<MeshAxisPlacement> axes;  // one per mesh axis, in mesh order
  int64_t chips = 0;
  // "data:64 = y16 · z4 (wrap) | model:16 = x16 (wrap)"
  std::string describe() const;
};

// Places `mesh` on the chip's pod. Throws InputError when the mesh has more devices than the pod,
// or an axis size cannot be factored onto the torus axes.
Topology place_mesh(const HardwareSpec& hw, const Mesh& mesh);

struct CollectiveTime {
  double total = 0;
  double latency = 0;    // α terms and the fixed overhead
  double bandwidth = 0;  // bytes / bandwidth terms
  bool latency_bound() const { return latency > bandwidth; }
};

// Time of one collective of `kind` over the mesh axes in `axes` (bit a = mesh axis a), with the
// local input and output bytes of one device.
CollectiveTime collective_time(const HardwareSpec& hw, const Topology& topo, OpKind kind, uint32_t axes,
                               double local_in_bytes, double local_out_bytes);

}  // namespace sy
