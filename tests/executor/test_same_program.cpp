// "Same program": the ops the simulator prices for a training step are the ops the executor runs,
// node for node (graph/models/training_graph.hpp is the only builder of the step).
//
// For each config and mesh: the executor side is the Trainer (one process, or one rank of an MPI
// mesh) running one step, with every op it executes recorded by the op observer; the simulator
// side is what `simulate` prices: build_training_step (simulator/model_step) for the same mesh
// and layout, lowered, priced by simulate(). Each side is listed as (node id, op kind, input and
// output types with their dtypes, collective kind, axes and payload bytes) and the lists must be
// equal. The optimizer's simulated FLOPs must equal the sum of OpDef::cost over the update nodes
// the executor ran.
//
// Mesh "1" runs here; the 2-device meshes run under `mpiexec -n 2` ([.mpi2]) and data:2,model:2
// under `mpiexec -n 4` ([.mpi4]) from tests/mpi/same_program.sh; every rank checks its own program
// (SPMD: the simulator prices one device's program, the same on every device).
#include "executor/mpi/mpi_communicator.hpp"
#include "executor/train/trainer.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/op_def.hpp"
#include "simulator/hardware.hpp"
#include "simulator/model_step.hpp"
#include "simulator/simulate.hpp"
#include "tests/source_root.hpp"

#include "tests/executor/random_batch.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <map>
#include <memory>
#include <random>

using namespace sy;

namespace {

// One op as both sides see it.
struct ProgramOp {
  int32_t node = -1;
  std::string kind;
  std::string types;       // "in1 in2 -> out1" with dtypes
  std::string collective;  // "all_to_all over data: 12345 B", or empty
  bool operator==(const ProgramOp&) const = default;
};
std::ostream& operator<<(std::ostream& os, const ProgramOp& o) {
  return os << o.node << " " << o.kind << " [" << o.types << "] " << o.collective;
}

std::string types_of(const Graph& g, const Node& n) {
  std::string s;
  for (ValueId v : n.inputs) s += to_string(g.type(v)) + " ";
  s += "->";
  for (ValueId v : n.outputs) {
    s += ' ';
    s += to_string(g.type(v));
  }
  return s;
}

std::string axes_of(const Node& n) {
  std::string s;
  for (const Dim& a : std::get<CollectiveAttrs>(n.attrs).axes) {
    if (!s.empty()) s += '+';
    s += a.name;
  }
  return s;
}

bool is_update(OpKind k) { return k == OpKind::adafactor_update || k == OpKind::adamw_update; }

RunConfig config_named(const std::string& name, std::vector<std::string> sets = {}) {
  // small at batch 4 (the step's structure is the config's; a smaller batch keeps the test short).
  if (name == "small") sets.push_back("train.batch=4");
  return load_run_config((test::source_root() / "experiments/configs/models" / (name + ".toml")).string(), sets);
}


// Runs one step of `config` and checks the executed ops against the simulator's priced ops.
void check_same_program(const RunConfig& config, const std::string& mesh_text, const std::string& layout_text,
                        std::shared_ptr<Communicator> comm) {
  INFO(config.model.name << " on " << mesh_text << " [" << layout_text << "]");
  const Mesh mesh = parse_mesh(mesh_text);
  const Layout layout = parse_layout(layout_text, mesh);

  // Executor: the ops one step runs, by node id of the program.
  ExecutorOptions eo;
  eo.threads = 1;
  eo.communicator = comm;
  Trainer trainer(config, 10, eo, layout);
  std::map<int32_t, int> runs;
  trainer.set_op_observer([&](NodeId n, double, double) { ++runs[n.v]; });
  trainer.train_step(test::random_batch(trainer, 7));
  const Graph& program = trainer.program();
  std::vector<ProgramOp> executed;
  double executed_optimizer_flops = 0;
  for (const auto& [id, count] : runs) {
    CHECK(count == 1);
    const Node& n = program.node(NodeId{id});
    ProgramOp op{id, std::string(op_name(n.kind)), types_of(program, n), {}};
    if (is_collective(n.kind) && n.kind != OpKind::shard_slice)
      op.collective = fmt::format("{} over {}: {} B", op_name(n.kind), axes_of(n), num_bytes(program.type(n.inputs.at(0))));
    if (is_update(n.kind)) {
      std::vector<TensorType> in, out;
      for (ValueId v : n.inputs) in.push_back(program.type(v));
      for (ValueId v : n.outputs) out.push_back(program.type(v));
      executed_optimizer_flops += op_def(n.kind).cost(in, out, n.attrs).flops;
    }
    executed.push_back(std::move(op));
  }

  // Simulator: what `simulate` prices for the same config, mesh and layout.
  const TrainingStep step = build_training_step(config.model, config.train, {.mesh = mesh, .layout = layout});
  const Lowered lowered = lower(step.graph(), mesh, layout);
  const SimResult r = simulate(lowered, load_hardware("tpu_v4", default_hardware_dir()));
  std::vector<ProgramOp> priced;
  double priced_optimizer_flops = 0;
  for (const SimOp& s : r.ops) {
    const Node& n = lowered.graph.node(NodeId{s.node});
    ProgramOp op{s.node, std::string(op_name(s.kind)), types_of(lowered.graph, n), {}};
    if (s.collective) op.collective = fmt::format("{} over {}: {} B", op_name(s.kind), axes_of(n), s.cost.bytes_read);
    if (is_update(s.kind)) priced_optimizer_flops += s.cost.flops;
    priced.push_back(std::move(op));
  }
  std::sort(priced.begin(), priced.end(), [](const ProgramOp& a, const ProgramOp& b) { return a.node < b.node; });

  REQUIRE(executed.size() == priced.size());
  for (size_t i = 0; i < executed.size(); ++i) {
    INFO("op " << i);
    CHECK(executed[i] == priced[i]);
  }
  CHECK(priced_optimizer_flops > 0);
  CHECK(priced_optimizer_flops == executed_optimizer_flops);
  const int64_t updates = std::count_if(executed.begin(), executed.end(), [](const ProgramOp& o) {
    return o.kind == "adafactor_update" || o.kind == "adamw_update";
  });
  CHECK(updates == static_cast<int64_t>(trainer.graph().parameters().size()));
}

std::shared_ptr<Communicator> communicator(const std::string& mesh) {
  static MpiSession session(nullptr, nullptr);
  return std::make_shared<MpiCommunicator>(parse_mesh(mesh));
}

// Device-limited routing with group dispatch (moe.group_dispatch), one expert group per device of a 2-way axis.
const std::vector<std::string> kGroupDispatch{"moe.expert_groups=2", "moe.route_groups=1", "moe.group_dispatch=true"};

}  // namespace

TEST_CASE("same program: the simulator prices the ops the executor runs (one device)", "[same_program]") {
  for (const char* name : {"tiny", "small"}) check_same_program(config_named(name), "data:1", "", nullptr);
  // bf16 activations (train.activation_dtype): the casts and bf16 values are the same nodes on both sides.
  check_same_program(config_named("tiny", {"train.precision=\"bf16\"", "train.activation_dtype=\"bf16\""}), "data:1", "",
                     nullptr);
  // Group dispatch: the i32 cast, the group buffers and the reshapes into the expert buffers.
  check_same_program(config_named("tiny", kGroupDispatch), "data:1", "", nullptr);
}

TEST_CASE("same program: 2-device meshes (mpiexec -n 2)", "[.mpi2]") {
  for (const char* name : {"tiny", "small"})
    for (const auto& [mesh, layout] : std::vector<std::pair<std::string, std::string>>{
             {"data:2", "batch:data"}, {"data:2", "batch:data,experts:data"}, {"model:2", "d_ff:model,heads:model"}})
      check_same_program(config_named(name), mesh, layout, communicator(mesh));
  check_same_program(config_named("tiny", kGroupDispatch), "data:2", "batch:data,experts:data", communicator("data:2"));
}

TEST_CASE("same program: data:2,model:2 (mpiexec -n 4)", "[.mpi4]") {
  for (const char* name : {"tiny", "small"})
    check_same_program(config_named(name), "data:2,model:2", "batch:data,experts:data,d_ff:model,heads:model",
                       communicator("data:2,model:2"));
}
