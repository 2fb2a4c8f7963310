#include "executor/memory_limit.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace sy {

namespace {

// "1.50 GiB"
std::string bytes_text(int64_t bytes) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  auto v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) v /= 1024, ++u;
  return fmt::format("{:.2f} {}", v, unit[u]);
}

}  // namespace

int64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream in(line);
    std::string key, unit;
    int64_t kib = 0;
    if (in >> key >> kib >> unit && key == "MemAvailable:" && unit == "kB") return kib * 1024;
  }
  const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
}

void check_memory_fits(int64_t bytes, std::string_view what, std::string_view detail) {
  const int64_t limit = available_memory_bytes();
  if (limit <= 0 || bytes <= limit) return;
  throw InputError(fmt::format("{} needs {} ({}) but this machine has {} available (MemAvailable, /proc/meminfo); "
                               "allowed: a smaller model, batch or sequence length, or a mesh that splits it over "
                               "more ranks",
                               what, bytes_text(bytes), detail, bytes_text(limit)));
}

}  // namespace sy
