#include "executor/host_memory.hpp"

#include "executor/memory_plan.hpp"
#include "graph/error.hpp"

#include <fmt/format.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace sy::exec {
namespace {

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

}  // namespace

void FreeHostBytes::operator()(std::byte* p) const {
  if (mapped > 0) ::munmap(p, static_cast<size_t>(mapped));
  else std::free(p);
}

bool huge_pages_advised() {
  const char* v = std::getenv("SY_HUGE_PAGES");
  const std::string_view text = v ? v : "";
  if (text.empty() || text == "on") return true;
  if (text == "off") return false;
  throw InputError(fmt::format("SY_HUGE_PAGES={}: allowed: on (the default) or off", text));
}

HostBytes alloc_host_bytes(int64_t n) {
  if (n >= kHugePageBytes && huge_pages_advised()) {
    // A fresh mapping on a 2 MiB boundary, whole huge pages (the tail's page is one too), advised
    // before the first touch: the zeroing below faults it in as huge pages. A kernel without
    // transparent huge pages refuses the advice; the memory is then ordinary.
    const int64_t size = round_up(n, kHugePageBytes);
    const size_t span = static_cast<size_t>(size + kHugePageBytes);
    void* m = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const auto base = reinterpret_cast<uintptr_t>(m);
    const uintptr_t start = (base + static_cast<uintptr_t>(kHugePageBytes) - 1) & ~static_cast<uintptr_t>(kHugePageBytes - 1);
    if (start > base) ::munmap(m, start - base);  // the unaligned head and tail back to the kernel
    const uintptr_t end = start + static_cast<uintptr_t>(size);
    if (base + span > end) ::munmap(reinterpret_cast<void*>(end), base + span - end);
    auto* p = reinterpret_cast<std::byte*>(start);
    (void)::madvise(p, static_cast<size_t>(size), MADV_HUGEPAGE);
    std::memset(p, 0, static_cast<size_t>(size));
    return HostBytes(p, FreeHostBytes{size});
  }
  const int64_t size = round_up(std::max<int64_t>(1, n), kArenaAlignment);
  void* p = nullptr;
  if (::posix_memalign(&p, static_cast<size_t>(kArenaAlignment), static_cast<size_t>(size)) != 0) throw std::bad_alloc();
  std::memset(p, 0, static_cast<size_t>(size));
  return HostBytes(static_cast<std::byte*>(p));
}

}  // namespace sy::exec
