#include "graph/output_dir.hpp"

#include "graph/error.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
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
