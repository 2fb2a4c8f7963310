#include "simulator/topology.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <numeric>

namespace sy {

std::string Topology::describe() const {
  std::string r = "slice ";
  for (size_t i = 0; i < slice.size(); ++i) r += fmt::format("{}{}", i ? "x" : "", slice[i]);
  r += " chips:";
  for (const MeshAxisPlacement& a : axes) {
    std::string segs;
    for (const AxisSegment& s : a.segments)
      segs += fmt::format("{}{}{}{}{}", segs.empty() ? "" : " · ", torus_axes[static_cast<size_t>(s.torus_axis)].name,
                          s.size, s.stride > 1 ? fmt::format(" (stride {})", s.stride) : "", s.wraparound ? " (wrap)" : "");
    r += fmt::format("{}{}:{} = {}", r.back() == ':' ? " " : " | ", a.name, a.size, segs.empty() ? "one device" : segs);
  }
  return r;
}

std::vector<std::vector<int64_t>> slice_shapes(const std::vector<int64_t>& pod, int64_t chips) {
  std::vector<std::vector<int64_t>> shapes;
  std::vector<int64_t> cur;
  auto rec = [&](auto&& self, size_t i, int64_t rest) -> void {
    if (i + 1 == pod.size()) {
      if (rest <= pod[i]) {
        cur.push_back(rest);
        shapes.push_back(cur);
        cur.pop_back();
      }
      return;
    }
    for (int64_t f = 1; f <= std::min(rest, pod[i]); ++f)
      if (rest % f == 0) {
        cur.push_back(f);
        self(self, i + 1, rest / f);
        cur.pop_back();
      }
  };
  if (!pod.empty()) rec(rec, 0, chips);
  // Most square first: the smallest longest side, then the smallest perimeter, then sides ascending.
  auto key = [](const std::vector<int64_t>& s) {
    return std::make_pair(*std::max_element(s.begin(), s.end()), std::accumulate(s.begin(), s.end(), int64_t{0}));
  };
  std::stable_sort(shapes.begin(), shapes.end(), [&](const auto& a, const auto& b) {
    const auto ka = key(a), kb = key(b);
    return ka != kb ? ka < kb : a < b;
  });
  return shapes;
}

namespace {

// Lays the mesh axes on the torus axes of `t` whose slice capacities are `cap` (devices per axis);
// false when an axis does not factor onto what is left.
bool lay_axes(Topology& t, const Mesh& mesh, std::vector<int64_t> cap, std::string* failed_axis) {
  for (TorusAxis& ta : t.torus_axes) ta.slice_size = 1;
  t.axes.assign(mesh.axes.size(), MeshAxisPlacement{});
  // Each mesh axis takes factors of fresh torus axes first (so axes that fit side by side get
  // their own rings), then of the capacity left on torus axes used already.
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
    if (rest > 1) {
      *failed_axis = fmt::format("axis '{}' of size {}", p.name, p.size);
      return false;
    }
  }
  return true;
}

}  // namespace

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

  // The slice: the mesh's devices fill the cores of each chip, on as few chips as that takes, in
  // the most square slice of the pod that holds them among those the generation offers
  // (topology.hpp). When the mesh's axis sizes do not factor onto the most square slice, the next
  // most square is tried.
  const int64_t cores = hw.devices_per_chip > 1 ? std::gcd(mesh.devices(), hw.devices_per_chip) : 1;
  const int64_t chips = mesh.devices() / cores;
  std::string failed = "its device count";
  bool placed = false;
  // The generation's offered slices (HardwareSpec::slices): a shape must be one of them up to
  // orientation, unless the mesh needs fewer chips than the smallest (it runs on part of that).
  auto sorted = [](std::vector<int64_t> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  int64_t smallest = 0;
  std::string offered;
  for (const std::vector<int64_t>& sl : hw.slices) {
    const int64_t n = std::accumulate(sl.begin(), sl.end(), int64_t{1}, std::multiplies<>());
    smallest = smallest == 0 ? n : std::min(smallest, n);
    offered += fmt::format("{}{} ({})", offered.empty() ? "" : ", ", n, fmt::join(sl, "x"));
  }
  auto offered_shape = [&](const std::vector<int64_t>& shape) {
    if (hw.slices.empty() || chips < smallest) return true;
    return std::any_of(hw.slices.begin(), hw.slices.end(), [&](const auto& sl) { return sorted(sl) == sorted(shape); });
  };
  for (const std::vector<int64_t>& shape : slice_shapes(hw.torus, chips)) {
    if (!offered_shape(shape)) continue;
    std::vector<int64_t> cap;
    if (hw.devices_per_chip > 1) cap.push_back(cores);
    cap.insert(cap.end(), shape.begin(), shape.end());
    if (lay_axes(t, mesh, cap, &failed)) {
      t.slice = shape;
      placed = true;
      break;
    }
  }
  if (!placed && !hw.slices.empty() && chips >= smallest &&
      std::none_of(hw.slices.begin(), hw.slices.end(), [&](const auto& sl) {
        return std::accumulate(sl.begin(), sl.end(), int64_t{1}, std::multiplies<>()) == chips;
      }))
    throw InputError(fmt::format("mesh '{}' needs {} chips; {} offers slices of {} chips (hardware [ici] slices)",
                                 to_string(mesh), chips, hw.name, offered));
  if (!placed)
    throw InputError(fmt::format("mesh '{}': {} does not fit the torus axes left of any slice of {} chips ({}); mesh axis "
                                 "sizes must factor into the slice's axis sizes",
                                 to_string(mesh), failed, chips, pod_text));
  // Wraparound per torus axis of the slice; the outermost segment on it closes its ring. On v4/v5p
  // (multiple_of) the wraparound links are optical-switch links between the faces of whole 4x4x4
  // cubes (Jouppi et al., ISCA 2023): a slice has them only when it is made of whole cubes, i.e.
  // every side is a multiple of the cube's; a 2x4x4 slice inside one cube has none.
  bool whole_cubes = true;
  for (const TorusAxis& ta : t.torus_axes)
    if (ta.name != "core") whole_cubes = whole_cubes && ta.slice_size % hw.wraparound_multiple == 0;
  for (size_t i = 0; i < t.torus_axes.size(); ++i) {
    TorusAxis& ta = t.torus_axes[i];
    const bool chip_axis = ta.name != "core";
    if (!chip_axis || ta.slice_size < 3) continue;  // a ring of 2 is one link pair either way
    switch (hw.wraparound) {
      case Wraparound::always: ta.wraparound = true; break;
      case Wraparound::full_axis: ta.wraparound = ta.slice_size == ta.pod_size; break;
      case Wraparound::multiple_of: ta.wraparound = whole_cubes; break;
    }
  }
  for (MeshAxisPlacement& p : t.axes)
    for (AxisSegment& s : p.segments) {
      const TorusAxis& ta = t.torus_axes[static_cast<size_t>(s.torus_axis)];
      s.wraparound = ta.wraparound && s.stride * s.size == ta.slice_size && s.size >= 3;
    }
  t.chips = chips;
  if (t.axes.size() <= 8) {
    const size_t T = t.torus_axes.size();
    t.all_to_all_messages.assign((size_t{1} << t.axes.size()) * T, 0.0);
    for (uint32_t m = 1; m < (1u << t.axes.size()); ++m)
      for (size_t i = 0; i < T; ++i) t.all_to_all_messages[m * T + i] = all_to_all_link_messages(t, static_cast<int>(i), m);
  }
  return t;
}

double all_to_all_link_messages(const Topology& topo, int torus_axis, uint32_t axes) {
  const TorusAxis& ta = topo.torus_axes[static_cast<size_t>(torus_axis)];
  // Positions of one group along this torus axis (P, offsets of its segments on it) and the
  // starting positions of the groups side by side on one line (B, offsets of the other segments).
  std::vector<int64_t> P{0}, B{0};
  double group = 1;  // N: devices of one group
  for (size_t a = 0; a < topo.axes.size(); ++a)
    for (const AxisSegment& s : topo.axes[a].segments) {
      const bool in = (axes >> a) & 1u;
      if (in) group *= static_cast<double>(s.size);
      if (s.torus_axis != torus_axis) continue;
      std::vector<int64_t>& set = in ? P : B;
      std::vector<int64_t> next;
      for (int64_t base : set)
        for (int64_t k = 0; k < s.size; ++k) next.push_back(base + k * s.stride);
      set = std::move(next);
    }
  if (P.size() < 2) return 0;
  const int64_t L = ta.slice_size;
  const bool wrap = ta.wraparound;
  // Messages over each directed link: up[i] from i to i+1, down[i] from i+1 to i (mod L).
  std::vector<double> up(static_cast<size_t>(L), 0.0), down(static_cast<size_t>(L), 0.0);
  auto go = [&](std::vector<double>& links, int64_t from, int64_t hops, int64_t dir, double weight) {
    for (int64_t h = 0; h < hops; ++h) {
      const int64_t at = ((from + dir * h) % L + L) % L;
      links[static_cast<size_t>(dir > 0 ? at : ((at - 1) % L + L) % L)] += weight;
    }
  };
  for (int64_t b : B)
    for (int64_t u : P)
      for (int64_t v : P) {
        if (u == v) continue;
        const int64_t src = b + u, dst = b + v;
        const int64_t fwd = ((dst - src) % L + L) % L, back = L - fwd;
        if (!wrap) {
          go(dst > src ? up : down, src, std::abs(dst - src), dst > src ? 1 : -1, 1.0);
        } else if (fwd < back) {
          go(up, src, fwd, 1, 1.0);
        } else if (back < fwd) {
          go(down, src, back, -1, 1.0);
        } else {  // half way round: half each way
          go(up, src, fwd, 1, 0.5);
          go(down, src, back, -1, 0.5);
        }
      }
  double busiest = 0;
  for (size_t i = 0; i < up.size(); ++i) busiest = std::max({busiest, up[i], down[i]});
  // Each (u, v) pair along this axis stands for N / |P| messages on one line of devices (the
  // group's coordinates on the other axes). A chip axis's links carry the lines of all the chip's
  // cores in use (their own groups, or the same group's other core): × cores.
  const bool core_axis = ta.name == "core";
  const double cores = !core_axis && topo.torus_axes.front().name == "core"
                           ? static_cast<double>(topo.torus_axes.front().slice_size) : 1.0;
  return busiest * group / static_cast<double>(P.size()) * cores;
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
  const double alpha = hw.hop_latency_of(kind) * hops;
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
    // Dimension-order routing, every group at once: the busiest link of each torus axis carries
    // all_to_all_link_messages messages of S/N bytes; the slowest axis sets the time.
    const double message = local_in_bytes / n;
    for (size_t i = 0; i < topo.torus_axes.size(); ++i) {
      const TorusAxis& ta = topo.torus_axes[i];
      const size_t at = axes * topo.torus_axes.size() + i;
      const double messages = at < topo.all_to_all_messages.size() ? topo.all_to_all_messages[at]
                                                                   : all_to_all_link_messages(topo, static_cast<int>(i), axes);
      t.bandwidth = std::max(t.bandwidth, messages * message / ta.link_bandwidth);
    }
  } else {
    SY_CHECK(false, "collective_time: {} is not a collective", op_name(kind));
  }
  // A CPU MPI backing moves a message from the cache faster than one from DRAM
  // (HardwareSpec::ici_efficiency_by_size; none on TPU).
  t.bandwidth /= hw.ici_efficiency_of(kind).at(std::max(local_in_bytes, local_out_bytes));
  t.total = t.latency + t.bandwidth;
  return t;
}

}  // namespace sy
