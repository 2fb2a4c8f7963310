#include "executor/mpi/watchdog.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <optional>
#include <cstdlib>

namespace sy {

namespace {
std::atomic<int> g_signal_pipe{-1};  // the write end of the live watchdog's pipe
}

Watchdog::Watchdog() {
  if (::pipe(pipe_) == 0) {
    ::fcntl(pipe_[0], F_SETFL, O_NONBLOCK);
    ::fcntl(pipe_[1], F_SETFL, O_NONBLOCK);
    g_signal_pipe = pipe_[1];
  }
  thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  if (pipe_[1] >= 0) (void)!::write(pipe_[1], "", 1);  // wake the thread now
  thread_.join();
  int expected = pipe_[1];
  g_signal_pipe.compare_exchange_strong(expected, -1);
  for (int fd : pipe_)
    if (fd >= 0) ::close(fd);
}

void Watchdog::signal_received(int signal) {
  const int fd = g_signal_pipe.load();
  const auto byte = static_cast<char>(signal);
  if (fd >= 0) (void)!::write(fd, &byte, 1);
}

void Watchdog::on_signal_while_waiting(std::function<void(const std::string&)> f) {
  std::lock_guard lock(mutex_);
  at_signal_ = std::move(f);
}

void Watchdog::on_expire(Expire f) {
  std::lock_guard lock(mutex_);
  expire_ = std::move(f);
}

void Watchdog::set_timeout(double seconds) {
  std::lock_guard lock(mutex_);
  fixed_ = seconds;
}

void Watchdog::step_done(double seconds) {
  std::lock_guard lock(mutex_);
  longest_step_ = std::max(longest_step_, seconds);
}

double Watchdog::timeout() const {
  std::lock_guard lock(mutex_);
  if (fixed_ > 0) return fixed_;
  return longest_step_ > 0 ? std::max(15.0, 20.0 * longest_step_) : 300.0;
}

Watchdog::Guard Watchdog::watch(std::string what) {
  std::lock_guard lock(mutex_);
  active_ = true;
  what_ = std::move(what);
  since_ = std::chrono::steady_clock::now();
  return Guard(this);
}

Watchdog::Guard::~Guard() {
  std::lock_guard lock(w_->mutex_);
  w_->active_ = false;
}

void Watchdog::loop() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock lock(mutex_);
  std::optional<Clock::time_point> signalled;  // a signal arrived and was not yet dealt with
  int signal = 0;
  while (!stop_) {
    // Sleep up to 0.5 s (0.1 s while a signal is pending), waking early for a signal.
    lock.unlock();
    pollfd p{pipe_[0], POLLIN, 0};
    if (pipe_[0] >= 0 && ::poll(&p, 1, signalled ? 100 : 500) > 0) {
      char byte = 0;
      while (::read(pipe_[0], &byte, 1) == 1) signal = byte;
      if (!signalled) signalled = Clock::now();
    } else if (pipe_[0] < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    lock.lock();
    if (stop_) break;
    if (signalled && active_ && Clock::now() - std::max(*signalled, since_) > std::chrono::milliseconds(300)) {
      const std::string message = fmt::format("signal {} ({}) arrived while waiting in {}: the job is being ended "
                                              "(mpiexec ends every rank when one exits)",
                                              signal, strsignal(signal), what_);
      auto f = at_signal_;
      signalled.reset();
      lock.unlock();
      if (f) f(message);
      lock.lock();
      continue;
    }
    if (!active_) continue;
    const double waited = std::chrono::duration<double>(Clock::now() - since_).count();
    lock.unlock();
    const double limit = timeout();
    lock.lock();
    if (!active_ || waited <= limit) continue;
    const std::string message =
        fmt::format("{} has not completed after {:.0f} s (watchdog: train.collective_timeout {}); a peer rank is "
                    "unreachable or stalled: ending the job",
                    what_, waited, fixed_ > 0 ? fmt::format("= {:g} s", fixed_) : fmt::format("automatic, {:.0f} s", limit));
    Expire f = expire_;
    lock.unlock();
    if (f) f(message);
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  }
}

std::string rank_description(int rank, int ranks) {
  // The node name mpiexec launched this rank on (--host), else the kernel's host name.
  char host[256] = "?";
  if (const char* h = std::getenv("PMIX_HOSTNAME")) fmt::format_to_n(host, sizeof host - 1, "{}", h);
  else (void)gethostname(host, sizeof host - 1);
  return fmt::format("rank {} of {} on host {} (pid {})", rank, ranks, host, static_cast<long>(getpid()));
}

}  // namespace sy
