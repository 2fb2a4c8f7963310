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
// Costs, for a collective over the segments i of its mesh axes (N = Π n_i devices; w_i one-way
// link bandwidth × ICI efficiency; W_i = 2·w_i with wraparound, w_i without; α per hop):
//   all_gather       α·Σ_i s_i·h_i + ((N−1)/N)·V / Σ_i W_i       V = bytes of the gathered array
//   reduce_scatter   the same with V = bytes of the input
//   all_reduce       2 × reduce_scatter
//   all_to_all       α·Σ_i s_i·h_i + max_j (N·S/4) / (c_j · w_j)  S = bytes per device, c_j = links
//                    crossing the cut that halves axis j: N/n_j rings, × 2 with wraparound
//                    (the bisection bound; a ring with wraparound gives V/(4W))
// where h_i = n_i/2 hops with wraparound, n_i − 1 without, and s_i the segment's stride. Every
// collective adds HardwareSpec::collective_overhead. A collective is latency-bound when its α
// part exceeds its bandwidth part.
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
