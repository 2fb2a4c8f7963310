// calibrate's network part: the collectives of two MPI ranks measured through the sy
// Communicator (the code path the MPI executor's collective nodes take), and the [ici] values
// that make the simulator's collective formulas (simulator/topology.hpp) reproduce them.
//
// Two ranks joined by one connection are a torus of 2 devices without wraparound (one full-duplex
// link), where the formulas read, for V bytes (all_gather: the gathered array; all_to_all: one
// device's buffer; all_reduce: the array):
//   all_gather, all_to_all   α + (V/2) / w                 (each rank sends half of V)
//   all_reduce               2α + V / w + (V/2) / r        (reduce-scatter + all-gather, and the
//                                                          reduction of V/2 bytes on the CPU)
// α (hop_latency) and w (link_bandwidth) are fitted to all_gather and all_to_all together by least
// squares on the relative error; r (reduction_bandwidth) is the median over the all-reduce sizes of
// 1 MiB and more of (V/2) / (t − 2α − V/w) (0, "overlapped", when that residue is not positive).
#pragma once

#include "executor/mpi/communicator.hpp"

#include <functional>
#include <string>
#include <vector>

namespace sy {

struct CollectiveSample {
  std::string kind;  // all_gather, all_to_all, all_reduce
  double bytes = 0;  // V above
  double seconds = 0;  // median of the repetitions
};

struct NetworkFit {
  double hop_latency = 0;          // α, seconds
  double link_bandwidth = 0;       // w, B/s one way
  double reduction_bandwidth = 0;  // r, B/s of reduced input; 0: not measurable (overlapped)
  std::vector<CollectiveSample> samples;
  // The formula's time for a sample under this fit.
  double predict(const CollectiveSample& s) const;
};

// Times every kind at sizes 256 B · 4^i up to max_bytes on the two ranks of `comm` (both call it),
// `budget` seconds per point at most (at least 5 repetitions), each repetition between barriers.
// `barrier` synchronises the ranks.
NetworkFit measure_network(Communicator& comm, const std::function<void()>& barrier, double max_bytes, double budget);

}  // namespace sy
