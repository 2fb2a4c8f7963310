// calibrate's network part: the collectives of two MPI ranks measured the way the MPI executor
// runs a collective node (run_collective on f32 tensors: all_reduce's copy of its input included),
// and the [ici] values that make the simulator's collective formulas (simulator/topology.hpp)
// reproduce them.
//
// Conditions as in a training step: before each repetition each rank streams through a buffer
// larger than its core's private cache (the compute between two collectives does), then writes
// the collective's input (its producer just did: a small input is hot, a large one is not), then
// both ranks meet at a barrier, and the time is the collective's own as a step's trace times it
// (experiments/bench_sim_mpi): from the later of the two ranks' starts to this rank's end, so
// neither the barrier's exit skew nor a wait for the other rank is in it (256 B all_reduce on two
// local ranks: 2.9 µs from this rank's start, 1.5 µs own in a step).
//
// Two ranks joined by one connection are a torus of 2 devices without wraparound (one full-duplex
// link), where the formulas read, for V bytes (all_gather: the gathered array; all_to_all: one
// device's buffer; all_reduce: the array) and e(V) the [ici] efficiency_by_size curve:
//   all_gather, all_to_all   α + (V/2) / w / e(V)              (each rank sends half of V)
//   reduce_scatter           α + ((V/2) / w + (V/2) / r) / e(V)  (V: the input; half of it sent
//                                                              and reduced on the CPU)
//   all_reduce               2α + (V / w + (V/2) / r) / e(V)   (reduce-scatter + all-gather, and
//                                                              the reduction of V/2 bytes on the CPU),
//                                                              after its copy of V bytes (taken
//                                                              out at the simulator's price of it,
//                                                              which the simulator adds back)
// α (hop_latency): the median time of the smallest all_gather and all_to_all (256 B: no
// bandwidth term to speak of). w (link_bandwidth): the best rate (V/2)/(t − α) over all_gather and
// all_to_all, so e ≤ 1. e(V): at each size, the median over all_gather and all_to_all of
// ((V/2)/w) / (t − α): the rate falls where a message leaves the cache (4 MiB all_gather in cache
// 150 µs, 16 MiB from DRAM 1.2 ms on the development host). r (reduction_bandwidth): the median
// over the all-reduce sizes of 1 MiB and more of (V/2) / ((t − copy − 2α)·e(V) − V/w), a size where
// that is not positive counting as unbounded (0, "overlapped", when the median is).
#pragma once

#include "executor/mpi/communicator.hpp"
#include "experiments/calibrate/paths.hpp"
#include "graph/ir.hpp"
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
  // all_reduce: its copy of the input into the output buffer (run_collective reduces in place) at
  // the simulator's price: an element-wise pass over V bytes on the roofline, the staging copy the
  // simulator adds to every all_reduce (HardwareSpec::staged_collectives). Taken out before the
  // fit, so the simulator's sum (formula + that copy) gives the sample back. Measured alone
  // instead (47 µs for 2 MiB on two local ranks, its input just written) it was half the 92-94 µs
  // the step's copy took and the roofline priced: each 2 MiB all_reduce came out 47 µs over.
  double copy_seconds = 0;
};


struct NetworkFit {
  double hop_latency = 0;          // α, seconds (shared: all_gather and all_to_all)
  double link_bandwidth = 0;       // w, B/s one way
  double reduction_bandwidth = 0;  // r, B/s of reduced input; 0: not measurable (overlapped)
  EfficiencyCurve efficiency_by_size;  // e(V)
  // The paths (HardwareSpec::eager_limit): measured when max_streamed > evict_bytes, else empty.
  EfficiencyCurve latency_after_streaming;        // (bytes streamed, seconds above the sample)
  double eager_limit = 0;                         // bytes per peer; 0: one path
  EfficiencyCurve eager_latency_after_streaming;  // eager_limit > 0
  double eager_path_share = 1;                    // HardwareSpec's, from the probes (shares_of)
  double copy_path_share = 1;
  double copy_warm_share = 0;                     // HardwareSpec's: the single copies' `path` share
  std::vector<PathProbe> path_probes;             // what eager_limit was decided from
  std::map<OpKind, std::map<OpKind, double>> warmed_by;  // probe kind -> warming kind -> share (warmed_shares)
  std::vector<PairProbe> pair_probes;                     // what warmed_by was measured from
  std::map<OpKind, CurveScales> curve_scales;             // from the pair probes and the kinds' prices
  // Each kind's own α and e(V) (HardwareSpec::collective_kinds), fitted as above from its samples
  // alone: α_k its smallest sample's time (all_reduce: half of it, less its copy: its formula has
  // 2α, and Open MPI reduces a small array on 2 ranks by recursive doubling, one exchange: 1.4 µs
  // at 256 B against the all_gather's 1.3), e_k(V) its formula's bandwidth terms (w and r as
  // fitted above) over (t − copy − α_k terms). The simulator prices each kind with its own.
  std::map<OpKind, CollectiveKindNetwork> kinds;
  std::vector<CollectiveSample> samples;
  // The formula's time for a sample under this fit (its kind's own α and e(V)).
  double predict(const CollectiveSample& s) const;
};

// The [ici] values of `fit` in `h`: a torus of 2, the fitted α, w, r, e(V) and each kind's own,
// the paths, staged collectives (run_collective packs and unpacks MPI's contiguous blocks) and no
// per-collective overhead beyond α.
void write_ici(const NetworkFit& fit, HardwareSpec& h);

// Fits fit.samples (at least one all_gather or all_to_all; the smallest first) as described above:
// sets every other member but latency_after_streaming.
void fit_network(NetworkFit& fit);

// A size to sample: a kind and its V (CollectiveSample::bytes).
struct CollectiveSize {
  std::string kind;
  double bytes = 0;
};
// The sizes measure_network samples: every kind at 256 B · 4^i up to max_bytes, and each of
// `wanted` (the model's own collectives, calibrate --model) that falls in that range and is not
// within 10 % of a size its kind already has. Sorted by kind (all_gather, all_to_all,
// reduce_scatter, all_reduce), then by size. e(V) is interpolated between its points, and between
// two grid points x4 apart a rate can change by x2: over TCP between two network-namespace hosts
// an all_reduce took 357 µs at 1 MiB and 2,705 µs at 4 MiB; small.toml's 2 MiB ones took
// 1.7-2.0 ms, where the curve between the two said 1.1-1.4 ms.
std::vector<CollectiveSize> network_sample_sizes(double max_bytes, const std::vector<CollectiveSize>& wanted);
// Times every kind at network_sample_sizes(max_bytes, wanted) on the two ranks of `comm` (both call it),
// `budget` seconds per point at most (at least 5 repetitions), each repetition prepared as above
// (evict_bytes: the buffer streamed through first). `barrier` synchronises the ranks. Then, when
// max_streamed > evict_bytes, the paths: PathProbe at payloads 128 B · 2^i up to 128 KiB after
// streaming min(max_streamed, 128 MiB), eager_limit from them, and each path's curve: an all_gather
// (8 KiB per peer; the eager path's 512 B) timed after 256 KiB · 4^i up to max_streamed bytes of
// compute, its own time above its sample's. The compute is the model's step when `segment` is
// given (calibrate --model: each call runs the ops up to the step's next collective and returns
// the bytes they moved, as the simulator counts them; `segments` of them make the step): runs of
// 1, 4, 16, ... segments, each placed at the bytes it moved, in bins 4x wide. Else a stream
// through a buffer of each volume. Two local ranks, small.toml: after the step's segments the
// single copy's curve is 1.4-2.1 µs at 1.3 MiB, 4.4-11.8 at 32 MiB, 26.4-35.6 at 132 MiB (5
// calibrations); after a stream 12.0 µs at 16 MiB, 23.2 at 64 MiB, 31.6 at 256 MiB (one).
// With an eager limit, every data-movement kind also gets a sample at the first message past it
// (V = 4 · eager_limit: a rendezvous), so e(V) steps at the switch instead of ramping across it.
// `copy_price`: the simulator's price of all_reduce's copy of V bytes (CollectiveSample::copy_seconds).
NetworkFit measure_network(Communicator& comm, const std::function<void()>& barrier, double max_bytes,
                           const std::vector<CollectiveSize>& wanted, const std::function<double(double)>& copy_price,
                           double budget, int64_t evict_bytes, int64_t max_streamed,
                           const std::function<double()>& segment = {}, size_t segments = 0);

// One of the model's expert-parallel all_to_alls: its input has a capacity dim (graph/models/
// moe_routing.hpp), so the MPI executor runs it ragged (executor/mpi/ragged_all_to_all.hpp): an
// agreement on the path (an all_gather), the blocks' row counts (an all_to_all), a pack of the
// routed rows, MPI_Alltoallv, an unpack into place.
struct RaggedShape {
  CollectiveAttrs attrs;
  TensorType in, out;
};
// The ragged all_to_alls among `program`'s nodes, each distinct shape once (appended to `shapes`).
void add_ragged_shapes(const Graph& program, std::vector<RaggedShape>& shapes);

// The executor's ragged all_to_all timed whole, as a step runs it: each shape with every block
// filled to 1/4, 1/2, 3/4 and all of its rows, V the bytes one rank sends (its own block
// included), `budget` seconds per point (at least 6 repetitions). Before each repetition each rank
// streams `streamed` bytes (in a step, 12 to 390 MB of the ops' traffic pass between two of
// small.toml's, and the pack and receive buffers are shared by all of them: the step's
// are cold), then writes the input (the dispatch einsum just did), then both meet at a barrier;
// the time is the own time (from the later start). Timed in parts inside a step (small.toml, ep,
// 1.31 MB, two local ranks): pack 70-120 µs, MPI_Alltoallv 170-240 µs, unpack 42-111 µs, where
// the parts priced alone (an element-wise pass each way; the contiguous all_to_all sample of the
// same bytes, 77 µs, its buffers hot in a repeated loop) summed to 200 µs against 300-400 µs.
// Kind "ragged_all_to_all"; nothing when no shape takes the ragged path.
std::vector<CollectiveSample> measure_ragged_all_to_all(Communicator& comm, const std::function<void()>& barrier,
                                                        const std::vector<RaggedShape>& shapes, double budget,
                                                        int64_t streamed);
// HardwareSpec::ragged_all_to_all_seconds from those samples: (V, seconds) by V; the samples within
// 2 % above the smallest V not yet taken are one point, their mean V and time (a dispatch and its
// combine move the same bytes: small.toml's 1.2 MiB took 309 and 249 µs in one calibration).
EfficiencyCurve ragged_all_to_all_curve(std::vector<CollectiveSample> samples);

}  // namespace sy
