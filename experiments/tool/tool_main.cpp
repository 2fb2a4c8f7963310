#include "experiments/tool/tool_main.hpp"

#include "executor/mpi/mpi_run.hpp"
#include "graph/error.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <exception>

namespace sy {

namespace {

// --help asks the tool to end successfully after printing; carried out of run() to tool_main.
struct HelpShown {
  int code;
};

// One line on stderr; on a terminal it first clears a progress line left by \r updates.
void print_error_line(std::string_view name, std::string_view what) {
  std::fflush(stdout);
  fmt::print(stderr, "{}{}: {}\n", ::isatty(STDERR_FILENO) ? "\r\033[K" : "", name, what);
}

}  // namespace

void parse_command_line(CLI::App& app, int argc, char** argv) {
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
    print_error_line(name, e.what());
    abort_mpi_job(kExitBadInput);
    return kExitBadInput;
  } catch (const std::exception& e) {
    print_error_line(name, fmt::format("internal error: {}", e.what()));
    abort_mpi_job(1);
    return 1;
  }
}

}  // namespace sy
