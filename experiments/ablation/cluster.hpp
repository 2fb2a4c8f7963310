// Sweeps on a CPU cluster: every run of a sweep across MPI ranks, priced by the simulator before
// anything trains.
//
//   mpiexec -n 8 --hostfile HOSTS build/bin/calibrate --out host.toml     (once per cluster)
//   experiments/run_ablation SPEC --scale cluster --hostfile HOSTS --hardware host.toml
//   experiments/run_ablation SPEC --mpi 2 --hardware host.toml            (2 ranks on this machine)
//
// The mesh of every run is the spec's `mesh` (with its `layout`, default batch:data), or with
// --mpi N the spec's mesh when it has N devices, else data:N. Each run is then
//   mpiexec -n N --bind-to none (--hostfile F | --oversubscribe) train ... --mesh M --layout L
// and every arm's model is checked against that mesh and layout before anything is written.
//
// Pricing (--hardware FILE, the calibrated hardware file of the hosts the runs use: `calibrate`
// under mpiexec measures their compute and the network between the ranks): each arm's run is
// priced as it will train, with `simulate` of the arm's model, the sweep's and the arm's settings,
// the mesh, the layout and FILE. Before the first run starts, run_ablation prints per arm the
// simulated step and the training time of one run (steps × step), and the sweep's expected wall
// time: the queue of runs list-scheduled on --jobs slots. Evaluation, start-up and pre-training
// stages are not priced. A sweep on more than one rank must be priced: a week-long sweep is not
// started blind.
#pragma once

#include "experiments/ablation/results.hpp"
#include "experiments/ablation/spec.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace sy::ablation {

struct Cluster {
  int64_t ranks = 1;       // MPI ranks per run; 1: a plain train process
  std::string hostfile;    // mpiexec --hostfile ("" : the ranks on this machine)
  std::string mpiexec;     // its path (ranks > 1)
};

// Resolves the runs' mesh (spec.settings.mesh and layout are rewritten to what the runs use),
// checks every arm's model against it, and finds mpiexec on PATH. `mpi` is --mpi (0: not given).
// Throws InputError naming the flag or the arm.
Cluster resolve_cluster(Spec& spec, int64_t mpi, const std::string& hostfile);

// The argv prefix that starts one run: empty for one rank, else mpiexec and its options.
std::vector<std::string> launch_prefix(const Cluster& cluster);

// Kernel threads per rank: the spec's, else this machine's cores shared by the ranks it runs.
int threads_per_rank(const Settings& settings, const Cluster& cluster, int jobs);

// Each arm's simulated step on `hardware` (arm order).
struct Pricing {
  std::string hardware;
  std::vector<double> step_seconds;
};

// Runs `simulate` for every arm (into out/price/<arm slug>/). Throws InputError when one fails.
Pricing price_arms(const Spec& spec, const std::vector<Run>& runs, const std::string& hardware,
                   const std::filesystem::path& simulate, const std::filesystem::path& out);

// The wall time of the runs runs[queue[0]], runs[queue[1]], ... started in order on `jobs` slots,
// each lasting its arm's step × the sweep's steps.
double expected_wall_seconds(const Spec& spec, const std::vector<Run>& runs, const std::vector<size_t>& queue,
                             const Pricing& pricing, int jobs);

// The table printed before the sweep starts.
std::string pricing_text(const Spec& spec, const Pricing& pricing, const std::vector<Run>& runs,
                         const std::vector<size_t>& queue, int jobs);

// results.csv / summary.md columns: the priced step of each arm.
ArmColumns pricing_columns(const Pricing& pricing);

// `a` with `b`'s columns after its own (either may be empty).
ArmColumns joined(ArmColumns a, const ArmColumns& b);

}  // namespace sy::ablation
