#include "executor/mpi/mpi_run.hpp"

#include "graph/error.hpp"

#include <fmt/format.h>
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <system_error>

namespace sy {

MpiRun::MpiRun(const Mesh& mesh, const Layout& layout) : layout_(layout) {
  if (mesh.devices() == 1 && !MpiSession::launched()) return;  // one device: the program needs no MPI
  session_ = std::make_unique<MpiSession>(nullptr, nullptr);
  rank_ = session_->rank();
  ranks_ = session_->size();
  comm_ = std::make_shared<MpiCommunicator>(mesh);
  if (rank_ != 0) (void)std::freopen("/dev/null", "w", stdout);
}

// A session kept up while an error unwinds: reachable from here, so LeakSanitizer does not call it
// a leak, and never destroyed.
MpiSession* g_unwinding_session = nullptr;

MpiRun::~MpiRun() {
  comm_.reset();
  // Unwinding from an error: MPI stays up for abort_mpi_job or finalize_mpi_job (finalizing alone
  // would wait for the other ranks forever).
  if (std::uncaught_exceptions() > 0) g_unwinding_session = session_.release();
}

std::string MpiRun::from_writer(std::string text) const {
  if (!session_) return text;
  const auto guard = comm_->watchdog().watch("the writer's broadcast (over every rank)");
  auto size = static_cast<int>(text.size());
  MPI_Bcast(&size, 1, MPI_INT, 0, MPI_COMM_WORLD);
  text.resize(static_cast<size_t>(size));
  MPI_Bcast(text.data(), size, MPI_CHAR, 0, MPI_COMM_WORLD);
  return text;
}

int MpiRun::agree_max(int value) const {
  if (!session_) return value;
  const auto guard = comm_->watchdog().watch("the step agreement (all_reduce over every rank)");
  int r = value;
  MPI_Allreduce(MPI_IN_PLACE, &r, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return r;
}

double MpiRun::agree_max(double value) const {
  if (!session_) return value;
  const auto guard = comm_->watchdog().watch("an agreement (all_reduce over every rank)");
  double r = value;
  MPI_Allreduce(MPI_IN_PLACE, &r, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return r;
}

void MpiRun::barrier() const {
  if (!session_) return;
  const auto guard = comm_->watchdog().watch("a barrier over every rank");
  session_->barrier();
}

void abort_mpi_job(int code) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (!initialised || finalised) return;
  int size = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (size == 1) {
    MPI_Finalize();
    return;
  }
  std::fflush(stdout);
  std::fprintf(stderr, "rank %d of %d: ending the job (exit code %d)\n", rank, size, code);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void finalize_mpi_job() {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (initialised && !finalised) MPI_Finalize();
}

}  // namespace sy
