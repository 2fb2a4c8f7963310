#include "graph/output_dir.hpp"

#include "graph/error.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace sy {

namespace fs = std::filesystem;

void create_output_dir(const fs::path& dir, std::string_view flag) {
  std::error_code ec;
  // The nearest existing ancestor must be a directory (a file in the path gives ENOTDIR below,
  // but naming the file is clearer).
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    const fs::file_status st = fs::status(p, ec);
    if (fs::exists(st)) {
      if (!fs::is_directory(st))
        throw InputError(fmt::format("{} {}: {} exists and is not a directory", flag, dir.string(), p.string()));
      break;
    }
    if (p == p.parent_path()) break;
  }
  fs::create_directories(dir, ec);
  if (ec) throw InputError(fmt::format("{} {}: cannot create the directory: {}", flag, dir.string(), ec.message()));
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw InputError(fmt::format("{} {}: cannot write in the directory: {}", flag, dir.string(), std::strerror(errno)));
}

OutputDirLock::OutputDirLock(const fs::path& dir, std::string_view flag, std::string_view tool) {
  const fs::path lock = dir / ".lock";
  fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw InputError(fmt::format("{} {}: cannot create the lock file {}: {}", flag, dir.string(), lock.string(),
                                 std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[128] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("unknown");
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw InputError(fmt::format("{} {}: the directory is in use by another process (pid and tool: {}; it holds {}); "
                                   "wait for it or choose another {}",
                                   flag, dir.string(), holder, lock.string(), flag));
    throw InputError(fmt::format("{} {}: cannot lock {}: {}", flag, dir.string(), lock.string(), std::strerror(err)));
  }
  const std::string me = fmt::format("{} {}\n", ::getpid(), tool);
  // Best effort: the lock is the flock, the text only names the holder in the message above.
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, me.data(), me.size(), 0);
  remove_dead_temporaries(dir);
}

int remove_dead_temporaries(const fs::path& dir) {
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    // NAME.tmp.<pid>.<n> (graph/file_io.hpp write_file_atomic)
    const std::string name = it->path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || !it->is_regular_file(ec)) continue;
    const std::string rest = name.substr(at + 5);
    const size_t dot = rest.find('.');
    if (dot == 0 || dot == std::string::npos || rest.find_first_not_of("0123456789.") != std::string::npos) continue;
    const long pid = std::strtol(rest.substr(0, dot).c_str(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    if (fs::remove(it->path(), ignored)) ++removed;
  }
  return removed;
}

OutputDirLock& OutputDirLock::operator=(OutputDirLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

OutputDirLock::~OutputDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace sy
