// Layout search: enumerate the legal layouts of a graph on a mesh and rank them.
//
// Every assignment of the candidate dims to "unsplit" or one mesh axis is a layout; illegal ones
// (LoweringPlanner::legality) are counted and skipped. Each legal layout is evaluated
// analytically from the lowering planner's decisions (the same decisions and costs lower() makes,
// without building the program):
//   compute    Σ roofline time of every op on its local block; with fusion (the default), each
//              fusion group of the global graph (simulator/fusion.hpp) that no planned collective
//              cuts is priced as one op, as simulate prices the lowered program's groups, and CSE
//              duplicates are free. A group a collective serves is priced op by op: the lowered
//              program fuses the pieces on either side of the collective, which this bound
//              prices at no more than their sum.
//   comm       Σ torus time of every collective
//   step       compute + comm − overlap, where only gradient synchronisation (the reductions of
//              parameter gradients) overlaps, with the backward compute:
//              overlap = min(gradient comm, backward compute)
//   memory     per device, the one memory model (simulator/memory.hpp) in program order, every
//              value at its local size under the layout
// The optimizer is priced from its update nodes like every other op.
// Layouts that fit rank first, by estimated step time; then those that do not fit, by step time.
// Per-node weights let a caller evaluate a reduced graph (one layer of each kind) standing for the
// full model (graph nodes of a layer weighted by the number of layers it stands for).
#pragma once

#include "graph/parallel/lower.hpp"
#include "graph/models/model_config.hpp"
#include "simulator/hardware.hpp"
#include "simulator/simulate.hpp"
#include "simulator/topology.hpp"

#include <memory>
#include <string>
#include <vector>

namespace sy {

struct LayoutScore {
  std::string mesh;  // the mesh it was evaluated on ("data:16,model:16")
  std::string settings;  // the swept config settings it was evaluated under ("moe.cf_train=2.0 ..."; "": none)
  Layout layout;
  double step = 0;  // estimated step time, s
  double compute = 0, comm = 0, all_to_all = 0, all_reduce = 0, other_comm = 0;
  double gradient_comm = 0, backward_compute = 0;
  double all_to_all_bytes = 0;  // per device
  MemoryUse memory;
  double simulated_step = -1;  // event-driven step time when refined, else -1
};

// Every assignment of `dims` to none or one axis of `mesh` (including the empty layout), in a
// fixed order.
std::vector<Layout> enumerate_layouts(const std::vector<std::string>& dims, const Mesh& mesh);

// The dims of g among the usual candidates (batch, experts, heads, d_ff, d_model, vocab, d_kv).
std::vector<std::string> default_sweep_dims(const Graph& g);

// Refuses (InputError naming --sweep-dims, the value and the allowed names) a dim that no tensor of
// g has, a name given twice and an empty name: a sweep over a dim of nothing would rank layouts
// that split nothing.
void check_sweep_dims(const std::vector<std::string>& dims, const Graph& g);

class LayoutEvaluator {
 public:
  // `weights`: per node of g (empty: all 1); leaves take the weight of the first node reading them.
  // `fusion`: price fused groups (simulate's default); false: every op alone (simulate --no-fusion).
  LayoutEvaluator(const Graph& g, const Mesh& mesh, const HardwareSpec& hw, std::vector<double> weights = {},
                  bool fusion = true);
  ~LayoutEvaluator();
  LayoutEvaluator(const LayoutEvaluator&) = delete;
  LayoutEvaluator& operator=(const LayoutEvaluator&) = delete;

  // Empty when legal, else why not.
  std::string legality(const Layout& layout) const;
  // The same as a yes/no, without building a message.
  bool legal(const Layout& layout) const;
  // Throws InputError for an illegal layout.
  LayoutScore evaluate(const Layout& layout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The meshes with the axis names of `mesh` and the same number of devices (every factorization
// over its axes, in a fixed order; one axis: the mesh itself).
std::vector<Mesh> meshes_like(const Mesh& mesh);

// A whole sweep: every layout of `dims` on every mesh of `meshes`, each evaluated on the reduced
// training step of `config` trained as `train` says (simulator/model_step.hpp) built for its mesh
// and layout, so the routing groups follow the one rule (graph/models/training_graph.hpp): one
// build per mesh and data-parallel split.
struct SweepOptions {
  std::vector<std::string> dims;  // --sweep-dims (check_sweep_dims); empty: default_sweep_dims of the model
  bool optimizer = true;          // price train.optimizer (false: forward and backward only)
  int threads = 1;                // workers, one mesh at a time each; results do not depend on it
  bool fusion = true;             // LayoutEvaluator's fusion (simulate --no-fusion: false)
};
struct SweepResult {
  std::vector<std::string> dims;
  std::vector<LayoutScore> scores;  // every legal layout, ranked (rank_layouts)
  size_t tried = 0, illegal = 0;
};
SweepResult sweep(const ModelConfig& config, const TrainConfig& train, const HardwareSpec& hw,
                  const std::vector<Mesh>& meshes, const SweepOptions& opts = {});

// Fitting layouts first, fastest step first; then the layouts that do not fit, smallest memory
// per device first (the nearest to fitting; a step time means nothing for a layout that cannot run).
// Stable.
void rank_layouts(std::vector<LayoutScore>& scores);

// sweep.csv: rank,mesh,layout,fits,step_s,simulated_step_s,compute_s,comm_s,all_to_all_s,all_reduce_s,
// other_comm_s,gradient_comm_s,all_to_all_bytes,memory_bytes,capacity_bytes,settings
std::string sweep_csv(const std::vector<LayoutScore>& ranked);

}  // namespace sy
