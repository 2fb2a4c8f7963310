#include "graph/file_io.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>
#include <fcntl.h>
#include <sys/stat.h>
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

void append_file_checked(const fs::path& path, std::string_view text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError(fmt::format("cannot append to '{}': {}", path.string(), std::strerror(errno)));
  struct stat st {};
  int err = ::fstat(fd, &st) == 0 ? 0 : errno;
  size_t done = 0;
  while (err == 0 && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) err = n < 0 ? errno : EIO;
    else done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (err != 0) {
    if (st.st_size >= 0) (void)!::ftruncate(fd, st.st_size);  // no partial line stays behind
    ::close(fd);
    throw InputError(fmt::format("cannot append to '{}': {} (its earlier lines are unchanged)", path.string(),
                                 std::strerror(err)));
  }
  if (::close(fd) != 0)
    throw InputError(fmt::format("cannot append to '{}': {}", path.string(), std::strerror(errno)));
}

std::string read_file(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw InputError(fmt::format("cannot read '{}': it is a directory, not a file", path.string()));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("cannot open '{}': {}", path.string(), std::strerror(errno)));
  std::ostringstream s;
  s << f.rdbuf();
  if (f.bad() || s.bad()) throw InputError(fmt::format("cannot read '{}': {}", path.string(), std::strerror(errno)));
  return s.str();
}

}  // namespace sy
