// Staging storage for the contiguous blocks a collective sends or receives (executor/mpi/
// communicator.cpp's packed blocks, executor/mpi/ragged_all_to_all.cpp's routed rows): kept
// between calls, grown when a call needs more, never zeroed after its allocation (a call writes
// what it reads). A fresh zero-filled vector per call cost a pass over the block and, above
// glibc's mmap threshold, a page fault per 4 KiB page: a 1.3 MiB all_to_all of bench_sim_mpi's ep
// layout spent more time there than in MPI_Alltoall. A std::vector resized per call zero-fills
// whatever it grows by: the ragged all_to_all's send buffer alternated between a layer's 655 KB
// and 2.6 MB and refilled 2 MB with zeros at every dispatch. The storage comes from the
// executor's allocator (executor/host_memory.hpp: huge pages from 2 MiB up), as the arena does.
// Private to executor/.
#pragma once

#include "executor/host_memory.hpp"

#include <cstddef>
#include <cstdint>

namespace sy::exec {

class Staging {
 public:
  // At least `bytes` bytes, valid until the next call.
  std::byte* get(int64_t bytes) {
    if (bytes > size_) {
      data_ = alloc_host_bytes(bytes);
      size_ = bytes;
    }
    return data_.get();
  }

 private:
  HostBytes data_;
  int64_t size_ = 0;
};

}  // namespace sy::exec
