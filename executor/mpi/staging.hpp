// Staging storage for the contiguous blocks a collective sends or receives (executor/mpi/
// communicator.cpp's packed blocks, executor/mpi/ragged_all_to_all.cpp's routed rows): kept
// between calls, grown when a call needs more, never zeroed after its allocation (a call writes
// what it reads). A fresh zero-filled vector per call cost a pass over the block and, above
// glibc's mmap threshold, a page fault per 4 KiB page: a 1.3 MiB all_to_all of bench_sim_mpi's ep
// layout spent more time there than in MPI_Alltoall. A std::vector resized per call zero-fills
// whatever it grows by: the ragged all_to_all's send buffer alternated between a layer's 655 KB
// and 2.6 MB and refilled 2 MB with zeros at every dispatch. The storage comes from the
// executor's allocator, at least one huge page's worth (executor/host_memory.hpp: huge pages from
// 2 MiB up), so a staging buffer is on huge pages as the arena is: Open MPI's single copy pins the
// peer's buffer page by page. The ragged all_to_all's 1.3 MB buffers were on 4 KiB pages: its
// MPI_Alltoallv took 120-160 µs in a step, against 68 µs for the same bytes on huge pages in
// calibrate. A scratch MPI program, 1.31 MB MPI_Alltoallv on two local ranks, 4 KiB and huge pages
// alternated 199 times: medians 132 and 76 µs (x1.75), 104 and 65 µs (x1.59) in two runs.
// Private to executor/.
#pragma once

#include "executor/host_memory.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace sy::exec {

class Staging {
 public:
  // At least `bytes` bytes, valid until the next call.
  std::byte* get(int64_t bytes) {
    if (bytes > size_) {
      size_ = std::max(bytes, kHugePageBytes);
      data_ = alloc_host_bytes(size_);
    }
    return data_.get();
  }

 private:
  HostBytes data_;
  int64_t size_ = 0;
};

}  // namespace sy::exec
