// calibrate's network part: the collectives of two MPI ranks measured the way the MPI executor
// runs a collective node (run_collective on f32 tensors: all_reduce's copy of its input included),
// and the [ici] values that make the simulator's collective formulas (simulator/topology.hpp)
// reproduce them.
//
// Conditions as in a training step: before each repetition each rank streams through a buffer
// larger than its core's private cache (the compute between two collectives does), then writes
// the collective's input (its producer just did: a small input is hot, a large one is not), then
// both ranks meet at a barrier, so the time is the collective's own, not a wait for the other rank.
//
// Two ranks joined by one connection are a torus of 2 devices without wraparound (one full-duplex
// link), where the formulas read, for V bytes (all_gather: the gathered array; all_to_all: one
// device's buffer; all_reduce: the array) and e(V) the [ici] efficiency_by_size curve:
//   all_gather, all_to_all   α + (V/2) / w / e(V)              (each rank sends half of V)
//   reduce_scatter           α + ((V/2) / w + (V/2) / r) / e(V)  (V: the input; half of it sent
//                                                              and reduced on the CPU)
//   all_reduce               2α + (V / w + (V/2) / r) / e(V)   (reduce-scatter + all-gather, and
//                                                              the reduction of V/2 bytes on the CPU),
//                                                              after its copy of V bytes (measured
//                                                              alone and taken out: the simulator
//                                                              prices that copy as a layout op)
// α (hop_latency): the median time of the smallest all_gather and all_to_all (256 B: no
// bandwidth term to speak of). w (link_bandwidth): the best rate (V/2)/(t − α) over all_gather and
// all_to_all, so e ≤ 1. e(V): at each size, the median over all_gather and all_to_all of
// ((V/2)/w) / (t − α): the rate falls where a message leaves the cache (4 MiB all_gather in cache
// 150 µs, 16 MiB from DRAM 1.2 ms on the development host). r (reduction_bandwidth): the median
// over the all-reduce sizes of 1 MiB and more of (V/2) / ((t − copy − 2α)·e(V) − V/w), a size where
// that is not positive counting as unbounded (0, "overlapped", when the median is).
#pragma once

#include "executor/mpi/communicator.hpp"
#include "simulator/hardware.hpp"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace sy {

struct CollectiveSample {
  std::string kind;    // all_gather, all_to_all, reduce_scatter, all_reduce
  double bytes = 0;    // V above
  double seconds = 0;  // median of the repetitions
  // all_reduce: the median time of its copy of the input into the output buffer (run_collective
  // reduces in place), measured alone in the same conditions. In a step that copy is priced on the
  // roofline (HardwareSpec::staged_collectives); here it is taken out before the fit.
  double copy_seconds = 0;
};

struct NetworkFit {
  double hop_latency = 0;          // α, seconds (shared: all_gather and all_to_all)
  double link_bandwidth = 0;       // w, B/s one way
  double reduction_bandwidth = 0;  // r, B/s of reduced input; 0: not measurable (overlapped)
  EfficiencyCurve efficiency_by_size;  // e(V)
  EfficiencyCurve latency_after_streaming;  // (bytes streamed, seconds above α); empty: not measured
  // Each kind's own α and e(V) (HardwareSpec::collective_kinds), fitted as above from its samples
  // alone: α_k its smallest sample's time (all_reduce: half of it, less its copy: it has 2α),
  // e_k(V) its formula's bandwidth terms (w and r as fitted above) over (t − α_k terms).
  std::map<OpKind, CollectiveKindNetwork> kinds;
  std::vector<CollectiveSample> samples;
  // The formula's time for a sample under this fit (its kind's own α and e(V)).
  double predict(const CollectiveSample& s) const;
};

// The compute between two collectives, as calibrate stands it in: one pass that reads and writes
// every element of `buffer` through the caches. Not a fill: std::fill of a large buffer compiles to
// streaming stores that bypass the caches (a 12 KiB reduce_scatter after a 64 MiB fill took
// 21.5 µs, after a 64 MiB read-and-write pass 34.9 µs; repeated at once 7-9 µs).
void stream_through(std::vector<float>& buffer, float stamp);

// Fits fit.samples (at least one all_gather or all_to_all; the smallest first) as described above:
// sets every other member but latency_after_streaming.
void fit_network(NetworkFit& fit);

// Times every kind at sizes 256 B · 4^i up to max_bytes on the two ranks of `comm` (both call it),
// `budget` seconds per point at most (at least 5 repetitions), each repetition prepared as above
// (evict_bytes: the buffer streamed through first). `barrier` synchronises the ranks. Then, when
// max_streamed > evict_bytes, latency_after_streaming: a 16 KiB all_gather after streaming 4×, 16×
// ... evict_bytes up to max_streamed bytes, its time above the same one's after evict_bytes.
NetworkFit measure_network(Communicator& comm, const std::function<void()>& barrier, double max_bytes, double budget,
                           int64_t evict_bytes, int64_t max_streamed);

}  // namespace sy
