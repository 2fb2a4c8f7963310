#include "graph/file_io.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sy {

namespace fs = std::filesystem;

void write_file_atomic(const fs::path& path, const std::function<bool(std::FILE*)>& write,
                       const std::function<void(const fs::path& tmp)>& check) {
  static std::atomic<uint64_t> calls{0};
  const fs::path tmp = fmt::format("{}.tmp.{}.{}", path.string(), ::getpid(), calls++);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw InputError(fmt::format("cannot write '{}': {}", path.string(), std::strerror(errno)));
  bool ok = write(f);
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  const int err = errno;
  ok = std::fclose(f) == 0 && ok;
  std::error_code ignored;
  if (!ok) {
    fs::remove(tmp, ignored);
    throw InputError(fmt::format("cannot write '{}': {} ('{}' is unchanged)", path.string(),
                                 std::strerror(err != 0 ? err : EIO), path.string()));
  }
  if (check) {
    try {
      check(tmp);
    } catch (...) {
      fs::remove(tmp, ignored);
      throw;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ignored);
    throw InputError(fmt::format("cannot write '{}': renaming the new file into place failed: {}", path.string(),
                                 ec.message()));
  }
}

void write_file_atomic(const fs::path& path, std::string_view text) {
  write_file_atomic(path, [&](std::FILE* f) { return text.empty() || std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
}

std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("cannot open '{}': {}", path.string(), std::strerror(errno)));
  std::ostringstream s;
  s << f.rdbuf();
  if (f.bad() || s.bad()) throw InputError(fmt::format("cannot read '{}': {}", path.string(), std::strerror(errno)));
  return s.str();
}

}  // namespace sy
