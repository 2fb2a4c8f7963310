// How calibrate times a collective as a step's trace times it: the buffers (huge pages, a slot
// per repetition), the compute between two collectives (a stream through a buffer), the own time
// from the later of the two ranks' starts. Shared by the samples (network.cpp) and the path and
// pair probes (paths.cpp).
#pragma once

#include "executor/host_memory.hpp"
#include "executor/mpi/communicator.hpp"
#include "graph/ir.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <string>
#include <vector>

namespace sy::timing {

double now();  // seconds, steady clock
double median(std::vector<double> v);  // the upper median; 0 when empty

// The compute between two collectives, as calibrate stands it in: one pass that reads and writes
// every element of `buffer` through the caches. Not a fill: std::fill of a large buffer compiles to
// streaming stores that bypass the caches (a 12 KiB reduce_scatter after a 64 MiB fill took
// 21.5 µs, after a 64 MiB read-and-write pass 34.9 µs; repeated at once 7-9 µs).
void stream_through(std::vector<float>& buffer, float stamp);

// f32 buffers allocated as the executor allocates its arena and staging buffers (executor/
// host_memory.hpp: at least 2 MiB, so on transparent huge pages; before, the first all_gather
// samples ran on 4 KiB pages and every later kind's on the largest one's huge pages), so a
// collective here reads and writes memory as a step's do:
// Open MPI's single copy from the peer (CMA) pins every page of the peer's buffer, and on 4 KiB
// pages a step's all_reduces took 1.24x as long as on huge pages (experiments/bench_huge_pages).
class HostFloats {
 public:
  // n elements, zeroed; the storage is kept for later calls of at most its size.
  void assign(size_t n) {
    if (n > capacity_) {
      capacity_ = std::max(n, static_cast<size_t>(exec::kHugePageBytes) / sizeof(float));
      bytes_ = exec::alloc_host_bytes(static_cast<int64_t>(capacity_ * sizeof(float)));
    }
    size_ = n;
    std::fill(begin(), end(), 0.0f);
  }
  float* data() { return reinterpret_cast<float*>(bytes_.get()); }
  float* begin() { return data(); }
  float* end() { return data() + size_; }

 private:
  exec::HostBytes bytes_;
  size_t capacity_ = 0, size_ = 0;
};

// The collective node of `kind` over the mesh's axis 0 (2 devices) on V bytes of f32 whose blocks
// are contiguous (no block copies: all_gather along the leading dim; all_to_all scattering x [2]
// and gathering y, whose outer extent in a block is 1), so every kind measures the same transfer.
struct CollectiveNode {
  OpKind kind;
  CollectiveAttrs attrs;
  TensorType in, out;
};
// The collective node of `kind` (all_gather, all_to_all, reduce_scatter, else all_reduce) on V =
// `bytes`, over `comm`'s mesh axis 0.
CollectiveNode node_for(const Communicator& comm, const std::string& kind, int64_t bytes);
OpKind kind_of(const std::string& kind);

// A collective timed as a step's trace times it (experiments/bench_sim_mpi): from the later of the
// two ranks' starts to this rank's end, the ranks' clocks aligned, with no barrier just before it
// (a barrier is itself a collective on the eager path: it would warm what is being measured).
class OwnTimer {
 public:
  OwnTimer(Communicator& comm, const std::function<void()>& barrier) : comm_(comm) {
    // Each rank's clock minus rank 0's: the median over rounds of the times both read right after
    // a barrier (0 within a few µs on one host, where CLOCK_MONOTONIC is shared, and between
    // network namespaces of one kernel).
    std::vector<double> d;
    for (int r = 0; r < 15; ++r) {
      barrier();
      const double t = now();
      double ts[2];
      comm_.all_gather(&t, ts, sizeof t, axes_);
      d.push_back(ts[1] - ts[0]);
    }
    offset_ = {0.0, median(d)};
    me_ = static_cast<size_t>(mesh_group_index(comm_, axes_));
  }
  double time(const CollectiveNode& n, const float* in, float* out) {
    return time([&] { run_collective(comm_, n.kind, n.attrs, n.in, in, n.out, out); });
  }
  // `call`: a collective both ranks make.
  double time(const std::function<void()>& call) {
    const double t0 = now();
    call();
    const double t1 = now();
    double starts[2];
    comm_.all_gather(&t0, starts, sizeof t0, axes_);
    const double later = std::max(starts[0] - offset_[0], starts[1] - offset_[1]);
    return std::max(0.0, t1 - offset_[me_] - later);
  }

 private:
  Communicator& comm_;
  std::vector<size_t> axes_{0};
  std::array<double, 2> offset_{};
  size_t me_ = 0;
};

// Each repetition's collective reads and writes its own place in a 64 MiB arena (32 slots of
// 2 MiB, in turn), as a step's collective nodes each have their own buffers: a 6 KiB-per-peer
// all_gather took 5 µs on one buffer repeated and 15 µs on a new buffer each time.
class Slots {
 public:
  static constexpr size_t kSlots = 32, kSlotFloats = (2 << 20) / 4;
  Slots() { arena_.assign(kSlots * kSlotFloats); }
  float* in(size_t r) { return arena_.data() + (r % kSlots) * kSlotFloats; }
  float* out(size_t r) { return in(r) + kSlotFloats / 2; }

 private:
  HostFloats arena_;
};

}  // namespace sy::timing
