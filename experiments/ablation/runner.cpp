#include "experiments/ablation/runner.hpp"

#include "graph/error.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>

namespace fs = std::filesystem;

namespace sy::ablation {

pid_t spawn_process(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) throw InputError(fmt::format("cannot open {}: {}", log.string(), std::strerror(errno)));
  const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: die with the sweep (the check covers a parent that died before prctl).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (in >= 0) ::dup2(in, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execv(args[0], args.data());
    const std::string msg = fmt::format("run_ablation: cannot run {}: {}\n", argv[0], std::strerror(errno));
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg.data(), msg.size());
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(out);
  if (in >= 0) ::close(in);
  if (pid < 0) throw InputError(fmt::format("cannot start {}: fork: {}", argv[0], std::strerror(fork_errno)));
  return pid;
}

std::optional<Exited> reap_child() {
  int status = 0;
  const pid_t pid = ::waitpid(-1, &status, WNOHANG);
  if (pid <= 0) return std::nullopt;
  return Exited{pid, status};
}

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

std::string wait_status_text(int status) {
  if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  return fmt::format("wait status {}", status);
}

bool exited_normally(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

std::string last_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::deque<std::string> recent;  // the last non-empty lines
  while (std::getline(in, line)) {
    const size_t cr = line.rfind('\r');  // a progress line: keep what was drawn last
    if (cr != std::string::npos) line = line.substr(cr + 1);
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    recent.push_back(line);
    if (recent.size() > 64) recent.pop_front();
  }
  if (recent.empty()) return "";
  // mpiexec ends with a message boxed between rules of dashes: its first line says what happened.
  auto rule = [](const std::string& l) { return l.find_first_not_of("-") == std::string::npos; };
  if (!rule(recent.back())) return recent.back();
  size_t open = recent.size() - 1;
  while (open > 0 && !rule(recent[open - 1])) --open;
  return open > 0 && open < recent.size() - 1 ? recent[open] : recent.back();
}

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

int64_t LineCounter::lines() {
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(file_, ec);
  if (ec) return lines_;
  if (size < offset_) offset_ = 0, lines_ = 0;  // truncated (train resuming from a checkpoint)
  if (size == offset_) return lines_;
  std::ifstream in(file_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset_));
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    const std::streamsize n = in.gcount();
    for (std::streamsize i = 0; i < n; ++i) lines_ += buf[i] == '\n';
    offset_ += static_cast<std::uintmax_t>(n);
  }
  return lines_;
}

Progress::Progress(int64_t total_runs, int64_t finished_before, bool terminal)
    : total_(total_runs), finished_(finished_before), terminal_(terminal) {}

void Progress::show(int64_t ok, int64_t diverged, int64_t crashed, const std::vector<Running>& running, int64_t steps_done,
                    int64_t steps_left) {
  if (!terminal_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string eta = "ETA --";
  if (steps_done > 0 && elapsed > 1) eta = "ETA " + duration_text(elapsed / static_cast<double>(steps_done) * static_cast<double>(steps_left));
  std::string line = fmt::format("sweep {}/{} done: {} ok, {} diverged, {} failed | {} |", finished_, total_, ok, diverged,
                                 crashed, eta);
  for (const Running& r : running) line += fmt::format(" {} {}/{}", r.label, r.step, r.steps);
  struct winsize ws {};
  size_t width = 120;
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10) width = ws.ws_col;
  if (line.size() >= width) line = line.substr(0, width - 1);
  fmt::print(stderr, "\r\033[K{}", line);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::run_finished(const std::string& text) {
  ++finished_;
  clear();
  fmt::print(stderr, "[{}/{}] {}\n", finished_, total_, text);
  std::fflush(stderr);
}

void Progress::clear() {
  if (!drawn_) return;
  fmt::print(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace sy::ablation
