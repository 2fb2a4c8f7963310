// executor/host_memory.hpp: the executor's buffers.
#include "executor/host_memory.hpp"

#include <catch2/catch.hpp>

#include <malloc.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

TEST_CASE("host memory: buffers are zeroed, 64-byte aligned, and 2 MiB aligned from 2 MiB up") {
  for (const int64_t n : {int64_t{1}, int64_t{100}, int64_t{1} << 20, int64_t{2} << 20, (int64_t{5} << 20) + 3}) {
    const sy::exec::HostBytes b = sy::exec::alloc_host_bytes(n);
    const auto address = reinterpret_cast<std::uintptr_t>(b.get());
    INFO(n << " bytes at " << address);
    CHECK(address % 64 == 0);
    // The huge-page advice covers whole 2 MiB pages only from a 2 MiB boundary (under
    // SY_HUGE_PAGES=off the executor asks for cache-line alignment only).
    if (n >= (int64_t{2} << 20) && sy::exec::huge_pages_advised()) CHECK(address % (int64_t{2} << 20) == 0);
    bool zero = true;
    for (int64_t i = 0; i < n; ++i) zero = zero && b[static_cast<size_t>(i)] == std::byte{0};
    CHECK(zero);
  }
}

TEST_CASE("host memory: SY_HUGE_PAGES is on or off; anything else is refused naming it", "[executor]") {
  ::setenv("SY_HUGE_PAGES", "of", 1);
  CHECK_THROWS_WITH(sy::exec::alloc_host_bytes(int64_t{4} << 20),
                    Catch::Contains("SY_HUGE_PAGES=of") && Catch::Contains("on (the default) or off"));
  ::setenv("SY_HUGE_PAGES", "off", 1);
  CHECK_FALSE(sy::exec::huge_pages_advised());
  ::setenv("SY_HUGE_PAGES", "on", 1);
  CHECK(sy::exec::huge_pages_advised());
  ::unsetenv("SY_HUGE_PAGES");
  CHECK(sy::exec::huge_pages_advised());
}

namespace {

// The kB of `address`'s mapping on transparent huge pages (/proc/self/smaps), -1 when not found.
long huge_kib_at(const void* address) {
  std::ifstream f("/proc/self/smaps");
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  std::string line;
  bool in = false;
  while (std::getline(f, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (std::isxdigit(static_cast<unsigned char>(line[0])) && (head >> std::hex >> lo >> dash >> hi) && dash == '-') {
      in = a >= lo && a < hi;
      continue;
    }
    if (in && line.rfind("AnonHugePages:", 0) == 0) return std::stol(line.substr(14));
  }
  return -1;
}

}  // namespace

TEST_CASE("host memory: a huge buffer is on huge pages even where the heap was used before", "[executor]") {
  // Only where the kernel places them on advice ("madvise" or "always").
  std::ifstream mode_file("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(mode_file, mode);
  if (mode.find("[never]") != std::string::npos || mode.empty() || !sy::exec::huge_pages_advised()) return;
  // Heap memory faulted in as 4 KiB pages and freed, as a training step leaves it: the ragged
  // all-to-all's send buffer came from such memory, 0 kB of it on huge pages. (glibc serves large
  // requests from the heap once frees have raised its mmap threshold; fixed here so the heap keeps
  // the freed block: a block below the threshold, freed under a small one, no trimming.)
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  void* used = std::malloc(size_t{8} << 20);
  std::memset(used, 1, size_t{8} << 20);
  asm volatile("" : : "g"(used) : "memory");  // the compiler may not drop the unread block
  void* fence = std::malloc(64);
  std::free(used);
  const sy::exec::HostBytes b = sy::exec::alloc_host_bytes(int64_t{2} << 20);
  INFO("fence " << fence << " buffer " << static_cast<void*>(b.get()));
  CHECK(huge_kib_at(b.get()) == 2048);
  std::free(fence);
  ::mallopt(M_MMAP_THRESHOLD, 128 << 10);  // glibc's default (its dynamic threshold stays off)
  ::mallopt(M_TRIM_THRESHOLD, 128 << 10);
}
