#include "experiments/tool/tool_main.hpp"

#include "executor/mpi/mpi_run.hpp"
#include "graph/error.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

namespace sy {

namespace {

// How long a rank other than 0 waits before printing an input error (see tool_main): Open MPI's
// mpiexec ends the other ranks within a few hundred ms of one exiting non-zero.
constexpr std::chrono::seconds kPeerGrace{3};

// --help asks the tool to end successfully after printing; carried out of run() to tool_main.
struct HelpShown {
  int code;
};

// One line on stderr; on a terminal it first clears a progress line left by \r updates.
void print_error_line(std::string_view name, std::string_view what) {
  std::fflush(stdout);
  fmt::print(stderr, "{}{}: {}\n", ::isatty(STDERR_FILENO) ? "\r\033[K" : "", name, what);
}

// The executor runs oneDNN's matmuls on OpenMP threads and its other kernels on TBB, op after op
// on the same cores. libgomp's default wait policy spins after each parallel region, so an
// OpenMP worker keeps burning a core while the next TBB op wants it (bench_moe bf16, 2 threads:
// elementwise ops 25-35 % slower, a step 1.26 s against 1.16 s with passive waiting; the whole
// process 0.97x, range 0.82-1.00, over 5 alternated runs). libgomp reads OMP_WAIT_POLICY once,
// when it loads: a tool whose user has not set it sets it to passive and re-executes itself once
// (same pid and arguments; on failure it carries on with the default).
void prefer_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::execv("/proc/self/exe", argv);
}

}  // namespace

void parse_command_line(CLI::App& app, int argc, char** argv) {
  prefer_passive_openmp(argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) throw HelpShown{app.exit(e)};  // --help: prints it, returns 0
    throw InputError(e.what());
  }
}

int tool_main(std::string_view name, const std::function<int()>& run) {
  try {
    return run();
  } catch (const HelpShown& h) {
    return h.code;
  } catch (const AgreedInputError& e) {  // every rank of an MPI job refuses it: no abort
    if (e.print) print_error_line(name, e.what());
    finalize_mpi_job();
    return kExitBadInput;
  } catch (const InputError& e) {
    // Under mpiexec, input every rank reads alike (the command line, the configs) is refused by
    // every rank at once. Rank 0 prints it and exits 2, and mpiexec then ends the job; the other
    // ranks wait kPeerGrace to be ended with it and print only if they outlive it: an error
    // of their own (a file missing on their host), then named by rank.
    if (const int rank = MpiSession::launched_rank(); rank > 0) {
      std::this_thread::sleep_for(kPeerGrace);
      print_error_line(name, fmt::format("rank {} of {}: {}", rank, MpiSession::launched_ranks(), e.what()));
    } else {
      print_error_line(name, e.what());
    }
    abort_mpi_job(kExitBadInput);
    return kExitBadInput;
  } catch (const std::exception& e) {
    print_error_line(name, fmt::format("internal error: {}", e.what()));
    abort_mpi_job(1);
    return 1;
  }
}

}  // namespace sy
