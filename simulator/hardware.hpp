// HardwareSpec: one chip type and its interconnect, read from a TOML file
// (simulator/hardware/*.toml; a user adds a chip by adding a file). All rates are per mesh device:
// a TPU v2/v3 chip holds two TensorCores, each a device (devices_per_chip = 2).
//
// Schema (every key required unless a default is given):
//
//   [chip]
//   name = "tpu_v4"
//   description = "..."                 default ""
//   devices_per_chip = 1                mesh devices per chip (TensorCores for v2/v3)
//   matmul_flops_bf16 = 275e12          peak matmul FLOP/s per device, bf16 operands
//   matmul_flops_f32 = 68.75e12         peak matmul FLOP/s per device, f32 operands (a chip with
//                                       native f32 multipliers, e.g. a CPU measured by calibrate)
//   f32_matmul_passes = 1               instead of matmul_flops_f32, for a matrix unit of bf16
//                                       multipliers (TPU MXU): an f32 dot runs as this many bf16
//                                       passes with f32 accumulation, at matmul_flops_bf16 / passes.
//                                       XLA:TPU's DEFAULT precision, what TF/Mesh-TF and JAX use
//                                       unless a dot asks for more, is 1 pass (operands rounded to
//                                       bf16); HIGH is 3 (bf16_3x), HIGHEST 6 (bf16_6x). Sources:
//                                       docs.jax.dev "Matmul precision"; google/jax#1856, #7859.
//                                       Operand bytes stay f32 (read from HBM as stored).
//   vector_flops = 17.2e12              peak FLOP/s of non-matmul ops (vector unit) per device
//   hbm_bytes = 34359738368             memory per device
//   hbm_bandwidth = 1.2e12              B/s per device
//   op_overhead = 0.0                   seconds added to every op (dispatch; default 0)
//   memory_reserve = 0.0                fraction of HBM not available to the program (default 0)
//   fuses = true                        the backing's compiler fuses element-wise chains, reductions
//                                       and operand casts into single kernels (XLA: simulator/
//                                       fusion.hpp); false: every op runs as its own kernel, only
//                                       identical nodes are merged (the sy executor, which CSEs)
//   sparse_einsums = false              true: einsums over one-hot-derived operands run over their
//                                       nonzeros, and such values are kept as lists of nonzeros
//                                       (the sy executor: executor/sparse_einsum.hpp; priced by
//                                       simulator/sparse_cost.hpp). false (TPU: the default): XLA
//                                       runs the dense dot_general of the one-hot tensors
//
//   [ici]
//   link_bandwidth = 4.5e10             one-way bandwidth of one link, B/s
//   hop_latency = 1e-6                  seconds per hop
//   collective_overhead = 0.0           seconds added to every collective (default 0)
//   efficiency = 1.0                    achieved fraction of link bandwidth (default 1)
//   torus = [16, 16, 16]                chips per torus axis of the largest slice (the pod)
//   wraparound = "multiple_of"          always | full_axis | multiple_of: when a slice's axis has
//                                       wraparound links (full_axis: it spans the pod's axis;
//                                       multiple_of: every side of the slice is a multiple
//                                       of wraparound_multiple: whole 4×4×4 cubes on v4/v5p)
//   wraparound_multiple = 4             multiple_of only
//   slices = [[2, 2], [4, 4], [4, 8]]   the slice shapes the generation offers (chips per torus axis,
//                                       in any orientation; Cloud TPU's tables): a mesh of C chips
//                                       must be placed on a listed slice of exactly C chips, or on
//                                       part of the smallest one when C is below it. Default: any
//                                       shape of the pod (a calibrated host, a chip without a table)
//   core_link_bandwidth = 4.5e11        devices_per_chip > 1: one-way B/s between a chip's devices
//   reduction_bandwidth = 0             bytes of input per second at which a device reduces what a
//                                       reduce-scatter or all-reduce receives, when that work does
//                                       not overlap the transfer (Open MPI reduces a received block
//                                       on the CPU after copying it: ompi_op_reduce); 0: reduction
//                                       overlaps the transfer (TPU: the default)
//   efficiency_by_size = [[4096, 1.0], [1.6e7, 0.3]]
//                                       [bytes, fraction] points: achieved fraction of the
//                                       bandwidth terms (link and reduction) for a collective of
//                                       that many bytes per device (the larger of its input and
//                                       output), interpolated in log size; multiplies `efficiency`.
//                                       CPU MPI backings: a message in the cache moves faster than
//                                       one from DRAM (experiments/calibrate/network.hpp fits it);
//                                       none (TPU: the default): 1 at every size
//   latency_after_streaming = [[6.7e7, 2e-5], [1.07e9, 5e-5]]
//                                       [bytes, seconds] points: time a collective adds to its α
//                                       terms when its device streamed that many bytes through memory
//                                       (the bytes its ops read and wrote, in program order) since the
//                                       library state it needs was last touched (the shares below);
//                                       log-linear between points, clamped outside; the curve of
//                                       single copies (with eager_limit 0: of every collective). A CPU
//                                       MPI backing: the library's state (queues, request objects, its
//                                       code, the page-table entries a single copy walks) leaves the
//                                       caches while a step streams its working set, and the next
//                                       collective refetches it: a 4 KiB-per-peer all_gather of two
//                                       local ranks took 32 µs after another all_gather and 127 µs
//                                       cold, 136 MiB later (experiments/calibrate/paths.hpp measures
//                                       the curves, relative to the samples α was fitted to, after the
//                                       segments of the model's own step: a stream's curve has
//                                       another shape). Below 0 where the gap is shorter than the
//                                       streaming before each sample (a warmer path than theirs: two
//                                       local ranks, a 4 B all_reduce 0.1 MB after another took
//                                       1.2-2.4 µs, its sample 8 µs); it takes back at most the α
//                                       terms. None (TPU: the default): 0
//   eager_limit = 2048                  bytes: a collective whose message to one peer is at most this
//                                       goes through the queues only (Open MPI's eager protocol) and
//                                       pays eager_latency_after_streaming; a larger one is a
//                                       rendezvous (its header through the queues, its data by a single
//                                       copy from the peer's pages: vader's CMA) and pays
//                                       latency_after_streaming. 0 (the default): one path and one
//                                       curve for every collective (TCP: every message through one
//                                       socket)
//   eager_latency_after_streaming = [[2.6e5, 0], [1.3e8, 7e-6]]
//                                       [bytes, seconds]: the curve of the eager path (eager_limit > 0)
//   eager_path_share = 0.7              of an eager message's curve (with eager_limit 0: of every
//                                       message's), the share of the state every collective touches
//                                       (the queues), priced at the bytes streamed since the previous
//                                       collective of any kind; the rest is its kind's own (its
//                                       algorithm's code and data), priced since the previous
//                                       collective of its kind. 1 (the default): all shared
//   copy_path_share = 0.45              the same for a single copy's curve (eager_limit > 0): the
//                                       share warmed by any collective (its rendezvous header goes
//                                       through the queues); the rest by its kind only. Two local
//                                       ranks, 128 MiB streamed, a 4 KiB-per-peer all_gather 8 MiB
//                                       later: 127 µs alone, 92 µs when an 8 B all_reduce came before
//                                       the 8 MiB (experiments/calibrate/paths.hpp measures the
//                                       shares)
//   copy_warm_share = 0.5               of a single copy's curve (eager_limit > 0), the share warmed
//                                       by any single copy (a rendezvous of any kind: the same
//                                       rendezvous code and page walk of the peer), priced at the
//                                       bytes since the last one; copy_path_share + this <= 1, the
//                                       rest its kind's own. Two local ranks, a 4 KiB-per-peer
//                                       all_gather 8 MiB after a warming call: 27.5 µs cold, 22.7 µs
//                                       after an all_to_all, 20.8 µs after another all_gather. 0 (the
//                                       default): none
//   staged_collectives = false          true: the collective library moves one contiguous block per
//                                       member (MPI), so a split or concatenation along an inner dim
//                                       is packed before the call or unpacked after it by the device:
//                                       a memcpy of the packed bytes (read once, written once),
//                                       priced as an element-wise pass (that class's memory curve;
//                                       all_reduce's copy of its input into the buffer reduced in
//                                       place too; graph/parallel/collective_blocks.hpp, the MPI
//                                       executor's copies). false
//                                       (TPU: the default): the ICI DMA reads and writes strided
//                                       blocks in place
//   [ici.<kind>]                        all_gather, reduce_scatter, all_reduce, all_to_all: that
//   hop_latency = 5e-6                  kind's own α and efficiency_by_size (each optional),
//   efficiency_by_size = [[256, 1.0]]   replacing the shared ones for it, and warmed_by (optional):
//   warmed_by = { all_reduce = 1.0 }    of its cold cost on the eager path (with eager_limit 0: the
//                                       one path), the share a call of each other kind named warms,
//                                       each in [0, 1], replacing eager_path_share for that pair.
//                                       Open MPI's algorithms share more state in some pairs than in
//                                       others: two local ranks, 128 KiB after the warming call, an
//                                       all_gather 0.97-1.00 warm after any kind, a reduce_scatter
//                                       0.83-0.87 after an all_gather, 0.89-0.92 after an all_reduce
//                                       (calibrate measures every pair). An MPI library runs each
//                                       kind by its own algorithm (Open MPI's tuned component picks
//                                       one per kind and message size: a reduce_scatter_block of 16
//                                       bytes took 6 µs where an all_gather took 1.3 µs on the
//                                       development host), so calibrate measures each kind. None
//                                       (TPU: the default): every kind is the ring/torus formula
//   curve_scale_below = 1.45            of its cold cost on the eager path (with eager_limit 0: the
//   curve_scale_above = 1.05            one path): the curve, measured on the all_gather, times
//                                       these, below 0 (what a call warmer than the samples saves
//                                       against its own sample) and above 0 (what a longer gap adds).
//                                       Streaming evicts any state alike; how much a kind refetches
//                                       is its own: two local ranks, 128 KiB after a call of its own
//                                       kind, a reduce_scatter took 4.1 µs against its 16.7 µs
//                                       price, an all_gather 4.9 µs against 12.6 µs, the curve there
//                                       -8.7 µs (calibrate measures each, from the pair probes). 1
//                                       (the default): the curve as measured
//   async_collectives = true            collectives run alongside compute (XLA:TPU's async
//                                       all-reduce-start/-done on the ICI DMA engines); false: on
//                                       the thread that runs compute, in program order (the sy MPI
//                                       executor's blocking MPI calls)
//
//   [efficiency.<op class>]             matmul, elementwise, reduction, index, layout
//   compute = [[1e6, 0.2], [1e9, 0.6]]  [flops of one op, achieved fraction of peak] points,
//   memory = [[1e4, 0.1], [1e8, 0.9]]   [bytes of one op, achieved fraction of HBM bandwidth];
//                                       log-linear between points, clamped outside; a missing
//                                       curve is 1 everywhere
//   [efficiency.op.<op kind>]           the same for one op kind (e.g. efficiency.op.gather),
//                                       replacing its class's curves
//   [efficiency.broadcast.<op kind>]    the same for a binary element-wise kind whose second
//                                       operand broadcasts (fewer elements than the first: a
//                                       different kernel on most hardware). Calibration
//                                       (experiments/calibrate) writes measured tables.
//
// Errors are InputError naming the file, the key (with its line), the value and what is allowed,
// in the wording of graph/toml_schema.hpp.
#pragma once

#include "graph/dtype.hpp"
#include "graph/ir.hpp"
#include "graph/op_def.hpp"

#include <array>
#include <map>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sy {

// Achieved fraction of a peak as a function of an op's size (flops or bytes).
struct EfficiencyCurve {
  std::vector<std::pair<double, double>> points;  // (size, fraction), sizes increasing
  double at(double size) const;
};

enum class Wraparound : uint8_t { always, full_axis, multiple_of };
std::string_view wraparound_name(Wraparound w);

inline constexpr size_t kOpClassCount = 5;  // matmul, elementwise, reduction, index, layout

struct ClassEfficiency {
  EfficiencyCurve compute;
  EfficiencyCurve memory;
};

// One collective kind's network values on a backing whose library runs each kind by its own
// algorithm (Open MPI's tuned component picks one per kind and size: ompi/mca/coll/tuned), so its
// fixed cost and size curve differ from the others' (calibrate measures each kind).
struct CollectiveKindNetwork {
  double hop_latency = 0;              // α of this kind, seconds per hop
  EfficiencyCurve efficiency_by_size;  // empty: the shared efficiency_by_size
  // Of this kind's cold cost on the eager path (with eager_limit 0: on the one path), the share a
  // call of another kind warms (the library's state both touch); a kind absent: eager_path_share.
  std::map<OpKind, double> warmed_by;
  // This kind's cold-cost curve on the eager path (with eager_limit 0: on the one path) against the
  // all_gather's, which calibrate measures the curve on: the curve below 0 (a gap shorter than the
  // samples' streaming: what a warmer call saves against its sample) times curve_scale_below, the
  // curve above 0 (what a longer gap adds) times curve_scale_above.
  double curve_scale_below = 1, curve_scale_above = 1;
};

struct HardwareSpec {
  std::string name;
  std::string description;
  std::string source;  // the file it came from

  // [chip], per device
  int64_t devices_per_chip = 1;
  double matmul_flops_bf16 = 0;
  double matmul_flops_f32 = 0;   // f32_matmul_passes > 0: matmul_flops_bf16 / passes
  int64_t f32_matmul_passes = 0;  // 0: matmul_flops_f32 is the chip's own f32 rate
  double vector_flops = 0;
  double hbm_bytes = 0;
  double hbm_bandwidth = 0;
  double op_overhead = 0;
  double memory_reserve = 0;
  bool fuses = true;
  bool sparse_einsums = false;

  // [ici]
  double link_bandwidth = 0;
  double hop_latency = 0;
  double collective_overhead = 0;
  double ici_efficiency = 1;
  std::vector<int64_t> torus;  // chips per axis of the pod
  Wraparound wraparound = Wraparound::full_axis;
  int64_t wraparound_multiple = 1;
  std::vector<std::vector<int64_t>> slices;  // offered slice shapes; empty: any shape of the pod
  double core_link_bandwidth = 0;
  double reduction_bandwidth = 0;  // 0: reduction overlaps the transfer
  EfficiencyCurve ici_efficiency_by_size;  // empty: 1
  EfficiencyCurve latency_after_streaming; // (bytes streamed, seconds added); empty: 0
  double eager_limit = 0;                   // bytes per peer; 0: one path
  double eager_path_share = 1;              // of an eager message's cold cost: warmed by any collective
  double copy_path_share = 1;               // of a single copy's
  double copy_warm_share = 0;               // of a single copy's: warmed by any single copy
  EfficiencyCurve eager_latency_after_streaming;  // the eager path's curve (eager_limit > 0)
  bool staged_collectives = false;
  bool async_collectives = true;
  // The MPI executor's ragged all_to_all (executor/mpi/ragged_all_to_all.hpp) as calibrate timed
  // it, whole: (bytes one device sends, its own included; seconds), bytes increasing. Empty: priced
  // from its parts (agreement, row counts, pack, transfer, unpack). See ragged_all_to_all_time.
  EfficiencyCurve ragged_all_to_all_seconds;
  // [ici.<collective kind>]: a kind's own α and size curve, replacing hop_latency and
  // efficiency_by_size for that kind (absent: the shared ones).
  std::map<OpKind, CollectiveKindNetwork> collective_kinds;

  std::array<ClassEfficiency, kOpClassCount> efficiency;  // by OpClass
  std::map<OpKind, ClassEfficiency> kind_efficiency;      // per op kind, replacing its class's
  std::map<OpKind, ClassEfficiency> broadcast_efficiency; // per binary kind when its operand broadcasts

  int64_t pod_chips() const;
  int64_t pod_devices() const { return pod_chips() * devices_per_chip; }
  // Peak FLOP/s for an op of class c whose operands are dtype t.
  double peak_flops(OpClass c, DType t) const;
  const ClassEfficiency& efficiency_of(OpClass c) const { return efficiency[static_cast<size_t>(c)]; }
  // The kind's own curves if the spec has them (its broadcast curves for a broadcasting binary
  // op, when present), else its class's.
  const ClassEfficiency& efficiency_of(OpKind k, bool broadcast = false) const;
  // α and the size curve of collective `k`: its [ici.<kind>] values when present, else the shared.
  double hop_latency_of(OpKind k) const;
  const EfficiencyCurve& ici_efficiency_of(OpKind k) const;
  // Of collective `k`'s cold cost on the eager path, the share a call of kind `by` warms: 1 for
  // k itself, else its [ici.<k>] warmed_by value when present, else eager_path_share.
  double eager_warmed_share(OpKind k, OpKind by) const;
  // Collective `k`'s eager cold cost where the all_gather's curve says `c` seconds: c times its
  // [ici.<k>] curve_scale_below (c < 0) or curve_scale_above (c > 0), 1 when absent.
  double eager_curve_of(OpKind k, double c) const;
  // The time of a ragged all_to_all sending `bytes` from ragged_all_to_all_seconds (not empty):
  // linear between its points (the path's parts each take a fixed cost plus a time per byte), the
  // smallest point's time below it, and in proportion to the bytes above the largest.
  double ragged_all_to_all_time(double bytes) const;
};

// Reads a hardware file. `name_or_path`: a path to a .toml file, or a chip name looked up as
// <hardware_dir>/<name>.toml.
HardwareSpec load_hardware(const std::string& name_or_path, const std::string& hardware_dir);
HardwareSpec parse_hardware(std::string_view text, std::string_view source_name);

// The directory of the shipped hardware files (the source tree's simulator/hardware).
std::string default_hardware_dir();

// TOML text of a spec (what calibrate writes); parse_hardware(to_toml(s)) == s.
std::string to_toml(const HardwareSpec& s);

}  // namespace sy
