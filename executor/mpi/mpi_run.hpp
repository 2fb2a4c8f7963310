// One process of a tool run on a mesh: `mpiexec -n N train --mesh data:2,model:2 --layout ...`.
//
// Every rank runs the same code on the same global inputs; the mesh decides which block of each
// tensor it holds. Rank 0 is the writer: its records (metrics, status, checkpoints, stdout) are the
// run's. The other ranks write theirs into a private scratch directory (removed at exit) and
// their stdout is discarded, so the tool has one code path.
//
// Errors: the layout is checked before MPI starts, so an illegal one exits 2 on every rank before
// any work. After MPI started, a rank that fails calls abort_mpi_job(): Open MPI ends every rank
// of the job (a rank stopping alone would leave the others waiting in a collective). A rank that
// dies (SIGKILL) is detected by mpiexec, which ends the job naming the rank.
#pragma once

#include "executor/mpi/mpi_communicator.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/parallel/mesh.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

namespace sy {

class MpiRun {
 public:
  // No mesh: one process, no MPI.
  MpiRun() = default;
  // Starts MPI when the mesh has more than one device or the process was started by mpiexec;
  // then the world size must equal mesh.devices() (InputError otherwise).
  MpiRun(const Mesh& mesh, const Layout& layout);
  ~MpiRun();
  MpiRun(const MpiRun&) = delete;
  MpiRun& operator=(const MpiRun&) = delete;

  const Layout& layout() const { return layout_; }
  std::shared_ptr<Communicator> communicator() const { return comm_; }  // null without MPI
  int rank() const { return rank_; }
  int ranks() const { return ranks_; }
  bool writer() const { return rank_ == 0; }

  // The directory this rank writes its records to: `out` on the writer, else a scratch directory.
  std::filesystem::path output_dir(const std::filesystem::path& out);

  // The largest of every rank's `value` (e.g. a signal flag, so all ranks stop at the same step).
  int agree_max(int value) const;
  double agree_max(double value) const;
  void barrier() const;

  // The watchdog over this rank's MPI calls (executor/mpi/watchdog.hpp); null without MPI.
  Watchdog* watchdog() const { return comm_ ? &comm_->watchdog() : nullptr; }

  // Runs f on rank 0, then on the other ranks (e.g. preparing a shared cache once).
  template <class F>
  auto rank_zero_first(F&& f) const {
    if (rank_ != 0) barrier();
    auto r = f();
    if (rank_ == 0) barrier();
    return r;
  }

 private:
  Layout layout_;
  std::unique_ptr<MpiSession> session_;
  std::shared_ptr<MpiCommunicator> comm_;
  int rank_ = 0;
  int ranks_ = 1;
  std::filesystem::path scratch_;
};

// After an error on this rank: with MPI running over several ranks, ends the whole job with
// `code` (MPI_Abort; does not return); with one rank, finalizes MPI and returns; without MPI,
// returns.
void abort_mpi_job(int code);

}  // namespace sy
