// The one way a driver starts and ends. Every tool in experiments/ is
//
//   int main(int argc, char** argv) {
//     return sy::tool_main("simulate", [&] {
//       CLI::App app{"..."};
//       ... add options ...
//       sy::parse_command_line(app, argc, argv);
//       ... work ...
//       return 0;
//     });
//   }
//
// and so shares one exit policy:
//   --help                                         help on stdout, exit 0
//   bad command line (unknown flag, missing        one line "NAME: <CLI11's message, which names
//   required flag, value out of range)             the flag>" on stderr, exit 2
//   InputError (bad config, layout, data, ...)     one line "NAME: <message>", exit 2
//   any other exception (a broken invariant)       one line "NAME: internal error: <message>", exit 1
// After MPI has started (train --mesh, bench_distributed's workers) an error ends every rank through
// abort_mpi_job(), the one MPI abort path; without MPI that call does nothing. Input every rank
// refuses together (AgreedInputError, executor/mpi/mpi_run.hpp: the writer's --out) ends each rank
// with MPI_Finalize and exit 2, the line printed by rank 0 only.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string_view>

namespace sy {

// Parses argv into `app`. First, when OMP_WAIT_POLICY is unset, sets it to passive and re-executes
// the tool (tool_main.cpp says why). --help (and --help-all) print the help and end the tool with exit 0; a
// bad command line throws InputError carrying CLI11's message (it names the flag).
void parse_command_line(CLI::App& app, int argc, char** argv);

// Runs `run` and returns its exit code, or prints the error as one line and returns 2 (bad input)
// or 1 (internal error). `name` prefixes every error line.
int tool_main(std::string_view name, const std::function<int()>& run);

}  // namespace sy
