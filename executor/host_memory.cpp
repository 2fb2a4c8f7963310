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

void FreeHostBytes::operator()(std::byte* p) const { std::free(p); }

bool huge_pages_advised() {
  const char* v = std::getenv("SY_HUGE_PAGES");
  const std::string_view text = v ? v : "";
  if (text.empty() || text == "on") return true;
  if (text == "off") return false;
  throw InputError(fmt::format("SY_HUGE_PAGES={}: allowed: on (the default) or off", text));
}

HostBytes alloc_host_bytes(int64_t n) {
  const bool huge = n >= kHugePageBytes && huge_pages_advised();
  const int64_t size = round_up(std::max<int64_t>(1, n), kArenaAlignment);
  void* p = nullptr;
  // Huge: the start on a 2 MiB boundary, the size as asked (a tail short of 2 MiB stays on 4 KiB
  // pages; the alignment costs address space, not memory: pages never touched are never mapped).
  if (::posix_memalign(&p, static_cast<size_t>(huge ? kHugePageBytes : kArenaAlignment), static_cast<size_t>(size)) != 0)
    throw std::bad_alloc();
  // Advice before the first touch: the zeroing below then faults the region in as huge pages. A
  // kernel without transparent huge pages refuses the advice; the memory is then ordinary.
  if (huge) (void)::madvise(p, static_cast<size_t>(size), MADV_HUGEPAGE);
  std::memset(p, 0, static_cast<size_t>(size));
  return HostBytes(static_cast<std::byte*>(p));
}

}  // namespace sy::exec
