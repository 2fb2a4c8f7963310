// calibrate's paths: which collectives Open MPI sends eagerly and which by a single copy
// (HardwareSpec::eager_limit), how much of a collective's cold cost a call of another kind warms
// (the path shares and the pairs' warmed_by), and the cold-cost curves after the model's step
// (latency_after_streaming, eager_latency_after_streaming). The probes are timed as the samples
// are (experiments/calibrate/timing.hpp); docs/formulas.md ("Latency after streaming") says how
// the simulator prices them.
#pragma once

#include "graph/ir.hpp"
#include "simulator/hardware.hpp"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace sy {

class Communicator;
struct NetworkFit;

// One message size's own times (a 2-rank all_gather of `payload` bytes per peer, seconds) after
// streaming enough to make it cold: alone; right after an 8 B all_reduce (the eager queues warmed);
// right after an all_to_all of the same bytes per peer (its path warmed, not the all_gather's own
// code); right after the same all_gather on other buffers (everything warmed).
struct PathProbe {
  double payload = 0, cold = 0, warmed = 0, after_copy = 0, hot = 0;
};

// Of what streaming adds to a probe (cold - hot), the share an 8 B all_reduce removes (`any`: the
// state every collective touches) and the further share the all_to_all removes (`path`: the
// probe's path, e.g. the single copy), each in [0, 1] with any + path <= 1; the rest is the
// all_gather's own. HardwareSpec takes `any` (eager_path_share, copy_path_share) and, for the
// single copies, `path` (copy_warm_share): a single copy warms the next one of any kind, as a
// single copy's state (Open MPI's rendezvous code, the kernel's page walk of the peer) is the same
// whatever the collective. Two local ranks, 4 KiB per peer, after 128 MiB streamed and 8 MiB
// before the all_gather: 27.5 µs cold, 29.1 after an 8 B all_reduce, 22.7 after an all_to_all,
// 20.8 after the same all_gather (path 0.87 of the 6.7 µs). An earlier stop priced it from the
// kind only, because in a step the router's reduce_scatters 2 MB after a ragged all_to_all took as
// long as a cold all_gather; with the curve measured after a stream, whose shape is not the
// step's (measure_network's `segment`), the path share had made them far too cheap
// (docs/formulas.md, "Latency after streaming").
struct PathShares {
  double any = 1, path = 0;
};
PathShares shares_of(const PathProbe& p);
// A path's shares: the medians of shares_of over the probes of lo < payload <= hi, `path` at most
// 1 - `any` (two medians of pairs that each sum to at most 1 can sum past it).
PathShares path_shares(const std::vector<PathProbe>& probes, double lo, double hi);

// The library's protocol switch, from the hot times (the same all_gather just before): the largest
// payload before the step to the next probe of the largest ratio, when that ratio is at least 1.5,
// the next probe is at most `max_payload`, and every hot time from the step up to `max_payload` is
// at least 1.5 times the median of those before it (a rendezvous costs that much more at every
// size; one slow median does not). 0 when there is none: one path. An eager message is one trip
// through the shared queues; the first rendezvous adds its header's trip and the completion's, and
// Open MPI's single copy pins the peer's pages, even when everything is warm: two local ranks,
// 2 KiB -> 4 KiB per peer, x1.78-2.62 (3.9-14.1 µs -> 7.8-29.5 µs) in all 20 calibrations of
// 2026-12-06 and about x3 in 6 before, where neighbouring eager sizes differ by at most x1.47 (and
// the largest lasting step wins, so noise must also beat the switch). The warming test that decided
// whether there were two paths before (did an 8 B all_reduce halve the cold cost of the smallest
// probe?) found none in 2 of 5 calibrations on 2026-12-06 (a 0.5 µs cold cost to halve), which
// priced every eager collective on the single copy's curve: a 16 B reduce_scatter at 27-41 µs
// against 3-4 µs measured.
double protocol_switch_of(const std::vector<PathProbe>& probes, double max_payload);

// One pair's probe (HardwareSpec's warmed_by): a 2-rank collective of kind `probe`, `payload`
// bytes per peer, timed after streaming enough to make it cold and then a short gap (128 KiB: a
// step's few small ops between two collectives): with nothing before the gap (cold), with a call
// of kind `by` (warmed), with a call of its own kind (hot).
struct PairProbe {
  OpKind probe = OpKind::all_gather, by = OpKind::all_gather;
  double payload = 0, cold = 0, warmed = 0, hot = 0;
};
// Of what streaming adds to the probe (cold - hot), the share the call of `by` removes, in [0, 1];
// 1 when streaming added nothing (nothing to remove: a warming call cannot make it dearer).
double warmed_share(const PairProbe& p);
// For each probe kind and warming kind, the median of warmed_share over the payloads probed.
std::map<OpKind, std::map<OpKind, double>> warmed_shares(const std::vector<PairProbe>& probes);

// The gap between the warming call and a pair probe (PairProbe): a step's few small ops between two
// collectives, inside the L2.
constexpr int64_t kPairGap = 128 << 10;

// A kind's cold-cost curve against the one measured (HardwareSpec's curve_scale_below and
// curve_scale_above; the curve is the all_gather's), from the pair probes and `price` (the fit's
// price of the kind at V = 2 · payload, which the simulator adds the curve to):
//   below: what its hot call (after itself, kPairGap back) saves against its price, over what the
//          curve says at kPairGap (`curve_at_gap`, seconds, the eager path's), so that a warm call
//          is priced at its own hot time;
//   above: what its cold call (after 128 MiB) adds to its price, over what the all_gather's adds
//          (the curve is measured after the model's step, whose shape is not a stream's: the ratio
//          of two probes after the same stream); the all_gather's 1;
// each figure the median over the payloads probed, the scale at least 0, and 1 where the
// denominator is under 1 µs (no curve there to scale: over TCP a hot all_gather takes about its
// sample's time). Streaming evicts every kind's state (its algorithm's code, tables and buffers)
// alike, so the curve's shape is the caches' and its height the kind's own: two local ranks,
// kPairGap after a call of its own kind, a reduce_scatter took 4.1 µs against its 16.7 µs price
// where the curve said -8.7 µs (below 1.45), and after 128 MiB 61.1 µs, an all_gather 55.1 µs
// against 12.6 µs (above 1.04).
struct CurveScales {
  double below = 1, above = 1;
};
std::map<OpKind, CurveScales> curve_scales(const std::vector<PairProbe>& probes,
                                           const std::function<double(OpKind, double)>& price, double curve_at_gap);

// A cold-cost curve (bytes streamed, seconds added) made non-decreasing: each point at most every
// later one. Streaming more evicts a superset of what streaming less does (the caches replace the
// least recently used lines), so the true cost cannot fall as the volume grows; a point above a
// later one is a noisy median. (Two local ranks: 14.9 µs after 256 KiB, 0.0 µs after 1 MiB and
// 2.3 µs after 4 MiB in one calibration; the step's 4 B all_reduces, priced 13.8 µs with it, took
// 1.5 µs.)
EfficiencyCurve non_decreasing(EfficiencyCurve c);

// calibrate's lines on the paths: each probe, each pair's share, each kind's curve scales, the
// limit and shares, the curves (`between`: what ran before the collective).
std::string paths_report(const NetworkFit& net, const std::string& between);

// The probes (PathProbe at payloads 128 B · 2^i up to 128 KiB, after streaming min(max_streamed,
// 128 MiB) and then evict_bytes), fit.eager_limit and the path shares from them, then the pairs
// (PairProbe) and fit.warmed_by. Both ranks call it.
void measure_paths(Communicator& comm, const std::function<void()>& barrier, int64_t evict_bytes, int64_t max_streamed,
                   NetworkFit& fit);
// Each path's curve (measure_network says how), relative to fit.samples' all_gather of the probe's
// size: call it after fit_network.
void measure_path_curves(Communicator& comm, const std::function<void()>& barrier, int64_t evict_bytes,
                         int64_t max_streamed, const std::function<double()>& segment, size_t segments,
                         NetworkFit& fit);

}  // namespace sy
