// executor/host_memory.hpp: the executor's buffers.
#include "executor/host_memory.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>

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
