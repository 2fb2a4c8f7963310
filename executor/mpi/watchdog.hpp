// A watchdog over the MPI calls of a rank: a collective (or the step-agreement all-reduce) that
// has not completed after the timeout ends the job instead of waiting forever. A peer that died
// is detected by mpiexec; a peer that is alive but unreachable (a cut network link, a stalled
// host) is not: MPI keeps retrying, and every rank waits in its collective with no error.
//
// A background thread checks the MPI call in progress twice a second. When it has run longer than
// the timeout, the thread calls the expiry callback with one line naming the rank, its host, the
// call (kind, mesh axes, bytes) and how long it has waited; the callback records how the run ended
// (status.json) and the process exits (never calling MPI from the watchdog's thread: the session is
// MPI_THREAD_FUNNELED). mpiexec then ends the other ranks, as for any rank that exits.
//
// A signal (SIGTERM from mpiexec when another rank exited, or the user's Ctrl-C) reaches a rank
// that may be waiting in MPI. The signal handler calls signal_received() (async-signal-safe: one
// byte into a pipe the thread polls); when a call is waiting 0.3 s after the signal came (or after
// it began, if it began later: a rank in compute when the signal came runs into the dead peer at
// its next collective), the thread calls the waiting-at-signal callback once, which records how the run ended (mpiexec sends
// SIGKILL 1 s after SIGTERM: odls_base_sigkill_timeout) and lets the process go on: if the call
// completes after all (a clean interrupt), the run stops at its step boundary and records that.
//
// The timeout: `train.collective_timeout` seconds when set; else automatic, 20 × the longest step
// so far but at least 15 s, and 300 s before the first step completes (it holds one-time setup:
// kernel JIT, sub-communicators). A healthy collective waits at most for the slowest rank's
// step, so 20 steps of slack never trips on a run that is merely slow.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace sy {

class Watchdog {
 public:
  using Expire = std::function<void(const std::string& message)>;  // must end the process

  Watchdog();
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Called with the message when a watched call expires; default: print it on stderr and _Exit(1).
  void on_expire(Expire f);
  // Called with a message when a signal arrives while a watched call is waiting (above); the
  // process goes on.
  void on_signal_while_waiting(std::function<void(const std::string& message)> f);
  // Async-signal-safe: a signal handler's notice (the watchdog of this process, if any).
  static void signal_received(int signal);
  // A fixed timeout (seconds > 0), or 0: automatic (above).
  void set_timeout(double seconds);
  // A completed step's duration (for the automatic timeout).
  void step_done(double seconds);
  double timeout() const;

  // Marks an MPI call in progress for the guard's lifetime. `what`: "all_reduce over [data] of 8.0 MiB".
  class Guard {
   public:
    ~Guard();
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    friend class Watchdog;
    explicit Guard(Watchdog* w) : w_(w) {}
    Watchdog* w_;
  };
  [[nodiscard]] Guard watch(std::string what);

 private:
  void loop();
  mutable std::mutex mutex_;
  bool stop_ = false;
  bool active_ = false;
  std::string what_;
  std::chrono::steady_clock::time_point since_;
  double fixed_ = 0, longest_step_ = 0;
  Expire expire_;
  std::function<void(const std::string&)> at_signal_;
  int pipe_[2] = {-1, -1};  // signal_received → the thread
  std::thread thread_;
};

// "rank 1 of 2 on host h2 (pid 1234)"
std::string rank_description(int rank, int ranks);

}  // namespace sy
