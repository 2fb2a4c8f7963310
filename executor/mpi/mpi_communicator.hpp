// Communicator over MPI (Open MPI): one rank per mesh device. A Cartesian communicator over the
// mesh (MPI_Cart_create, no reordering, so rank = device number, row-major); one
// sub-communicator per set of axes a collective runs over (MPI_Cart_sub; MPI_Comm_split when the
// axes are listed out of mesh order, so group ranks follow the listed order), made on first use.
//
// Failure: MPI's default error handler (errors are fatal). When a rank dies, Open MPI's mpiexec
// ends the job and names the rank that exited. A peer that is alive but unreachable (a cut link)
// is caught by the communicator's watchdog (executor/mpi/watchdog.hpp): every collective runs
// under it, so no rank waits forever.
#pragma once

#include "executor/mpi/communicator.hpp"
#include "executor/mpi/watchdog.hpp"

#include <memory>
#include <string>

namespace sy {

// MPI's lifetime in a tool: MPI_Init_thread (funneled: only the main thread calls MPI) on
// construction, MPI_Finalize on destruction.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const;  // in MPI_COMM_WORLD
  int size() const;
  void barrier() const;
  // Ends every rank of the job with `code` (MPI_Abort), after printing `message` on stderr.
  [[noreturn]] void abort(int code, const std::string& message) const;

  // True when this process was started by mpiexec/mpirun (Open MPI or a PMI launcher sets the
  // environment it reads).
  static bool launched();
  // The job's rank count as the launcher announces it (before MPI starts); 1 when not launched.
  static int launched_ranks();
  // This process's rank as the launcher announces it (before MPI starts); 0 when not launched.
  static int launched_rank();
};

class MpiCommunicator final : public Communicator {
 public:
  // Needs an MpiSession. Throws InputError when the world size differs from mesh.devices().
  explicit MpiCommunicator(const Mesh& mesh);
  ~MpiCommunicator() override;

  const Mesh& mesh() const override;
  int64_t device() const override;
  void all_reduce(void* data, int64_t count, DType dtype, ReduceOp op, const std::vector<size_t>& axes) override;
  void all_gather(const void* in, void* out, int64_t bytes, const std::vector<size_t>& axes) override;
  void reduce_scatter(const void* in, void* out, int64_t count, DType dtype, ReduceOp op,
                      const std::vector<size_t>& axes) override;
  void all_to_all(const void* in, void* out, int64_t bytes, const std::vector<size_t>& axes) override;
  void all_to_all_v(const void* in, const std::vector<int64_t>& send_bytes, void* out,
                    const std::vector<int64_t>& recv_bytes, const std::vector<size_t>& axes) override;

  Watchdog& watchdog();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sy
