// Child processes and progress display for run_ablation.
//
// Each run is one `train` process. A child dies with run_ablation (PR_SET_PDEATHSIG = SIGKILL),
// so a killed sweep leaves no orphan writing into its run directories; the runs in flight are
// continued from their last checkpoint (or restarted) the next time the sweep runs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sy::ablation {

// Starts argv[0] (a path) with argv, stdin from /dev/null, stdout and stderr appended to `log`.
// Throws InputError when the log cannot be opened or fork fails.
pid_t spawn_process(const std::vector<std::string>& argv, const std::filesystem::path& log);

// A child that ended: its pid and wait status. Empty when none has ended (never blocks).
struct Exited {
  pid_t pid;
  int status;
};
std::optional<Exited> reap_child();

// Waits for one child (blocking) and returns its wait status.
int wait_for(pid_t pid);

// "exit code 3", "killed by signal 9 (Killed)".
std::string wait_status_text(int status);
bool exited_normally(int status);  // exit code 0

// The last non-empty line of a text file ("" when none).
std::string last_line(const std::filesystem::path& file);

// "45s", "3m07s", "1h02m".
std::string duration_text(double seconds);

// Counts the lines of a growing file (a run's metrics.jsonl) by reading only what is new.
class LineCounter {
 public:
  explicit LineCounter(std::filesystem::path file) : file_(std::move(file)) {}
  int64_t lines();  // complete lines so far (starts over when the file shrinks)

 private:
  std::filesystem::path file_;
  std::uintmax_t offset_ = 0;
  int64_t lines_ = 0;
};

// The whole sweep's progress: one self-overwriting line on a terminal (stderr), and a line per
// finished run everywhere.
class Progress {
 public:
  Progress(int64_t total_runs, int64_t finished_before, bool terminal);

  struct Running {
    std::string label;  // "baseline s3"
    int64_t step = 0, steps = 0;
  };
  // Redraws the status line (terminal only): counts, the runs in flight, the ETA from the steps
  // done this session and the steps left.
  void show(int64_t ok, int64_t diverged, int64_t crashed, const std::vector<Running>& running, int64_t steps_done,
            int64_t steps_left);
  void run_finished(const std::string& text);  // "[3/24] baseline seed 2: ok ..."
  void clear();                                // removes the status line before other output
  int64_t finished() const { return finished_; }

 private:
  int64_t total_, finished_;
  bool terminal_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace sy::ablation
