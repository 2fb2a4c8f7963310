// The executor's host buffers (the arena and the leaves): zeroed, 64-byte aligned, and from 2 MiB
// up placed on transparent huge pages. calibrate's network measurement allocates its buffers here
// too, so it measures collectives on the memory a step uses.
//
// Why huge pages. A training step touches each of its buffers about once, spread over an arena of
// hundreds of MiB: with 4 KiB pages a buffer's first touches miss the TLB, and in a virtual machine
// each miss walks two page tables (the guest's and the host's). The MPI collectives pay most:
// Open MPI's shared-memory transport copies from the peer's pages with process_vm_readv (CMA),
// which looks up and pins every 4 KiB page of the peer's buffer. Measured on the development VM:
//   - a scratch MPI program, all_reduce of buffers rotating over 166 places in a 512 MiB arena (a
//     step's 166 all_reduces): 12 KiB 61 µs, 512 KiB 600 µs, 2 MiB 1.9 ms on 4 KiB pages; 15 µs,
//     103 µs, 377 µs on huge pages, as fast as one reused buffer;
//   - experiments/bench_huge_pages (3 repetitions, small.toml on model:2, two local ranks): the
//     all_reduces' own time per step 28.0 ms on 4 KiB pages, 19.4 ms on huge pages (paired ratio
//     1.24 [1.13, 1.56]); the step itself did not change (1.004 [0.995, 1.025]); one process
//     (bench_moe, 2 threads) 1.023 [1.006, 1.047] faster.
//
// A huge buffer is a fresh anonymous mapping, never memory the process touched before: the kernel
// places huge pages when a page is first touched, and posix_memalign may return heap memory already
// faulted in as 4 KiB pages, which the advice does not change. It did: in a training step (small.toml,
// ep, two local ranks) the ragged all-to-all's 2 MiB send buffer came from such heap memory, 0 of
// its 2,048 KiB on huge pages (/proc/self/smaps) while its receive buffer, fresh, was all on one,
// and its MPI_Alltoallv took 322 µs (median of 48) against 180 µs in calibrate.
//
// The kernel honours the advice when transparent huge pages are "always" or "madvise"
// (/sys/kernel/mm/transparent_hugepage/enabled); under "never" this is plain aligned memory.
// SY_HUGE_PAGES=off turns the advice off (for comparison: experiments/bench_huge_pages); on, or
// unset, keeps it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace sy::exec {

// The size from which alloc_host_bytes places a buffer on huge pages.
inline constexpr int64_t kHugePageBytes = int64_t{2} << 20;
struct FreeHostBytes {
  int64_t mapped = 0;  // bytes mapped for a huge buffer (munmap); 0: from posix_memalign (free)
  void operator()(std::byte* p) const;
};
using HostBytes = std::unique_ptr<std::byte[], FreeHostBytes>;

// n bytes (at least 1), zeroed. Throws std::bad_alloc when the memory is not there.
HostBytes alloc_host_bytes(int64_t n);

// Whether alloc_host_bytes advises huge pages: SY_HUGE_PAGES unset or "on" (yes), "off" (no);
// any other value is an InputError naming it.
bool huge_pages_advised();

}  // namespace sy::exec
