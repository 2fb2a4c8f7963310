// One process of a tool run on a mesh: `mpiexec -n N train --mesh data:2,model:2 --layout ...`.
//
// Every rank runs the same code on the same global inputs; the mesh decides which block of each
// tensor it holds. Rank 0 is the writer: its records (metrics, status, checkpoints, stdout) are the
// run's. The other ranks write no files (a killed job leaves nothing behind in /tmp) and their
// stdout is discarded.
//
// Errors: the layout is checked before MPI starts, so an illegal one exits 2 on every rank before
// any work; rank 0 prints it and the others, ended by mpiexec meanwhile, stay silent
// (experiments/tool/tool_main.cpp). Input only the writer checks (its --out) is refused on every rank alike: the writer's
// message goes to every rank (from_writer) and each throws AgreedInputError, which tool_main
// turns into exit 2 after MPI_Finalize on every rank, the message printed by rank 0 alone. After
// MPI started, a rank that fails on its own calls abort_mpi_job(): Open MPI ends every rank of the
// job (a rank stopping alone would leave the others waiting in a collective). A rank that
// dies (SIGKILL) is detected by mpiexec, which ends the job naming the rank.
#pragma once

#include "executor/mpi/mpi_communicator.hpp"
#include "graph/error.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/parallel/mesh.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

namespace sy {

// Bad input that every rank of the job refuses together (see above): `print` on rank 0 only.
struct AgreedInputError : InputError {
  AgreedInputError(const std::string& what, bool print_it) : InputError(what), print(print_it) {}
  bool print;
};

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

  // Rank 0's `text` on every rank (e.g. the writer's refusal of --out, so that every rank ends alike).
  std::string from_writer(std::string text) const;

  // The largest of every rank's `value` (e.g. a signal flag, so all ranks stop at the same step).
  int agree_max(int value) const;
  double agree_max(double value) const;
  void barrier() const;

  // The watchdog over this rank's MPI calls (executor/mpi/watchdog.hpp); null without MPI.
  Watchdog* watchdog() const { return comm_ ? &comm_->watchdog() : nullptr; }

 private:
  Layout layout_;
  std::unique_ptr<MpiSession> session_;
  std::shared_ptr<MpiCommunicator> comm_;
  int rank_ = 0;
  int ranks_ = 1;
};

// After an error on this rank: with MPI running over several ranks, ends the whole job with
// `code` (MPI_Abort; does not return); with one rank, finalizes MPI and returns; without MPI,
// returns.
void abort_mpi_job(int code);

// After an AgreedInputError: every rank finalizes MPI (each reaches this), so the job ends
// without MPI_Abort. Without MPI, does nothing.
void finalize_mpi_job();

}  // namespace sy
