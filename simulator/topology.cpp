#include "simulator/topology.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

namespace sy {

std::string Topology::describe() const {
  std::string r;
  for (const MeshAxisPlacement& a : axes) {
    std::string segs;
    for (const AxisSegment& s : a.segments)
      segs += fmt::format("{}{}{}{}{}", segs.empty() ? "" : " · ", torus_axes[static_cast<size_t>(s.torus_axis)].name,
                          s.size, s.stride > 1 ? fmt::format(" (stride {})", s.stride) : "", s.wraparound ? " (wrap)" : "");
    r += fmt::format("{}{}:{} = {}", r.empty() ? "" : " | ", a.name, a.size, segs.empty() ? "one device" : segs);
  }
  return r;
}

Topology place_mesh(const HardwareSpec& hw, const Mesh& mesh) {
  Topology t;
  if (hw.devices_per_chip > 1)
    t.torus_axes.push_back(TorusAxis{"core", hw.devices_per_chip, 1, false, hw.core_link_bandwidth * hw.ici_efficiency});
  const char* names[] = {"x", "y", "z"};
  for (size_t i = 0; i < hw.torus.size(); ++i)
    t.torus_axes.push_back(TorusAxis{names[i], hw.torus[i], 1, false, hw.link_bandwidth * hw.ici_efficiency});

  std::string pod;
  for (int64_t s : hw.torus) pod += fmt::format("{}{}", pod.empty() ? "" : "x", s);
  const std::string pod_text = fmt::format("a {} pod has {} devices ({} chips{})", hw.name, hw.pod_devices(), pod,
                                           hw.devices_per_chip > 1 ? fmt::format(" × {} devices per chip", hw.devices_per_chip)
                                                                   : std::string());
  if (mesh.devices() > hw.pod_devices())
    throw InputError(fmt::format("mesh '{}' has {} devices, more than the pod: {}", to_string(mesh), mesh.devices(), pod_text));

  // Each mesh axis takes factors of fresh torus axes first (so axes that fit side by side get
  // their own rings), then of the capacity left on torus axes used already.
  std::vector<int64_t> cap(t.torus_axes.size());
  for (size_t i = 0; i < cap.size(); ++i) cap[i] = t.torus_axes[i].pod_size;
  t.axes.resize(mesh.axes.size());
  for (size_t m = mesh.axes.size(); m-- > 0;) {
    MeshAxisPlacement& p = t.axes[m];
    p.name = mesh.axes[m].name;
    p.size = mesh.axes[m].size;
    int64_t rest = p.size;
    for (int pass = 0; pass < 2 && rest > 1; ++pass)
      for (size_t i = 0; i < t.torus_axes.size() && rest > 1; ++i) {
        TorusAxis& ta = t.torus_axes[i];
        const bool fresh = ta.slice_size == 1;
        if (fresh != (pass == 0)) continue;
        const int64_t f = std::gcd(rest, cap[i]);
        if (f == 1) continue;
        p.segments.push_back(AxisSegment{static_cast<int>(i), f, ta.slice_size, false, ta.link_bandwidth});
        ta.slice_size *= f;
        cap[i] /= f;
        rest /= f;
      }
    if (rest > 1)
      throw InputError(fmt::format("mesh '{}': axis '{}' of size {} does not fit the torus axes left ({}); mesh axis "
                                   "sizes must factor into the pod's axis sizes",
                                   to_string(mesh), p.name, p.size, pod_text));
  }
  // Wraparound per torus axis of the slice; the outermost segment on it closes its ring.
  for (size_t i = 0; i < t.torus_axes.size(); ++i) {
    TorusAxis& ta = t.torus_axes[i];
    const bool chip_axis = ta.name != "core";
    if (!chip_axis || ta.slice_size < 3) continue;  // a ring of 2 is one link pair either way
    switch (hw.wraparound) {
      case Wraparound::always: ta.wraparound = true; break;
      case Wraparound::full_axis: ta.wraparound = ta.slice_size == ta.pod_size; break;
      case Wraparound::multiple_of: ta.wraparound = ta.slice_size % hw.wraparound_multiple == 0; break;
    }
  }
  for (MeshAxisPlacement& p : t.axes)
    for (AxisSegment& s : p.segments) {
      const TorusAxis& ta = t.torus_axes[static_cast<size_t>(s.torus_axis)];
      s.wraparound = ta.wraparound && s.stride * s.size == ta.slice_size && s.size >= 3;
    }
  t.chips = 1;
  for (const TorusAxis& ta : t.torus_axes)
    if (ta.name != "core") t.chips *= ta.slice_size;
  return t;
}

CollectiveTime collective_time(const HardwareSpec& hw, const Topology& topo, OpKind kind, uint32_t axes,
                               double local_in_bytes, double local_out_bytes) {
  // The torus segments of the collective's mesh axes (no allocation: a sweep calls this often).
  auto for_each_segment = [&](auto&& f) {
    for (size_t a = 0; a < topo.axes.size(); ++a)
      if (axes & (1u << a))
        for (const AxisSegment& s : topo.axes[a].segments) f(&s);
  };
  CollectiveTime t;
  t.latency = hw.collective_overhead;
  if (kind == OpKind::shard_slice) return t;
  // n devices in a group: n_core of each chip (its "core" segments) on chips = n / n_core chips.
  double n = 1, n_core = 1, chip_ring_bw = 0, core_bw = 0, hops = 0;
  size_t segments = 0;
  for_each_segment([&](const AxisSegment* s) {
    ++segments;
    n *= static_cast<double>(s->size);
    if (topo.torus_axes[static_cast<size_t>(s->torus_axis)].name == "core") {
      n_core *= static_cast<double>(s->size);
      core_bw = s->link_bandwidth;
    } else {
      chip_ring_bw += (s->wraparound ? 2.0 : 1.0) * s->link_bandwidth;
    }
    hops += static_cast<double>(s->stride) *
            (s->wraparound ? static_cast<double>(s->size) / 2.0 : static_cast<double>(s->size - 1));
  });
  if (segments == 0 || n <= 1) {
    t.total = t.latency;
    return t;
  }
  const double chips = n / n_core;
  // Every device runs the collective at once, so a chip's links carry the traffic of
  // devices_per_chip / n_core groups side by side: each group gets that share of them.
  const double sharing = static_cast<double>(hw.devices_per_chip) / n_core;
  chip_ring_bw /= sharing;
  // Ring phases of V bytes (the gathered array, or the array reduced): among the chips over ICI,
  // then among the group's cores of each chip over the core link.
  auto ring_phases = [&](double V) {
    return (chips > 1 ? (chips - 1.0) / chips * V / chip_ring_bw : 0.0) +
           (n_core > 1 ? (n_core - 1.0) / n_core * V / core_bw : 0.0);
  };
  const double alpha = hw.hop_latency * hops;
  // A ring reduce-scatter has each device reduce (n−1)/n of the array into its block; on hardware
  // where that work does not overlap the transfer it adds at reduction_bandwidth.
  auto reduction = [&](double V) { return hw.reduction_bandwidth > 0 ? (n - 1.0) / n * V / hw.reduction_bandwidth : 0.0; };
  if (kind == OpKind::all_gather) {
    t.latency += alpha;
    t.bandwidth = ring_phases(local_out_bytes);
  } else if (kind == OpKind::reduce_scatter) {
    t.latency += alpha;
    t.bandwidth = ring_phases(local_in_bytes) + reduction(local_in_bytes);
  } else if (kind == OpKind::all_reduce) {
    t.latency += 2.0 * alpha;
    t.bandwidth = 2.0 * ring_phases(local_in_bytes) + reduction(local_in_bytes);
  } else if (kind == OpKind::all_to_all) {
    t.latency += alpha;
    const double crossing = n * local_in_bytes / 4.0;
    for_each_segment([&](const AxisSegment* s) {
      if (s->size < 2) return;
      const bool core = topo.torus_axes[static_cast<size_t>(s->torus_axis)].name == "core";
      // Links crossing the cut that halves this segment: one core link per chip, or one link per
      // ring of chips along it (two with wraparound), shared as above.
      const double links = core ? chips : (chips / static_cast<double>(s->size)) * (s->wraparound ? 2.0 : 1.0);
      const double bw = core ? s->link_bandwidth : s->link_bandwidth / sharing;
      t.bandwidth = std::max(t.bandwidth, crossing / (links * bw));
    });
  } else {
    SY_CHECK(false, "collective_time: {} is not a collective", op_name(kind));
  }
  // A CPU MPI backing moves a message from the cache faster than one from DRAM
  // (HardwareSpec::ici_efficiency_by_size; none on TPU).
  t.bandwidth /= hw.ici_efficiency_by_size.at(std::max(local_in_bytes, local_out_bytes));
  t.total = t.latency + t.bandwidth;
  return t;
}

}  // namespace sy
