// Sweeps on a CPU cluster (cluster.hpp): the runs' mesh, their mpiexec launch, and their price.
#include "experiments/ablation/cluster.hpp"

#include "executor/train/trainer.hpp"
#include "experiments/ablation/runner.hpp"
#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/models/model_config.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/parallel/mesh.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <queue>
#include <thread>

namespace fs = std::filesystem;

namespace sy::ablation {

namespace {

// The first executable `name` on PATH ("" when none).
std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = dirs.substr(start, end - start);
    if (!dir.empty()) {
      const fs::path p = fs::path(dir) / name;
      if (::access(p.c_str(), X_OK) == 0 && !fs::is_directory(p)) return p.string();
    }
    start = end + 1;
  }
  return "";
}

}  // namespace

Cluster resolve_cluster(Spec& spec, int64_t mpi, const std::string& hostfile) {
  Settings& s = spec.settings;
  if (mpi > 0) {
    const bool fits = !s.mesh.empty() && parse_mesh(s.mesh).devices() == mpi;
    if (!fits) s.mesh = mpi == 1 ? "" : fmt::format("data:{}", mpi);
  }
  if (s.mesh.empty()) {
    s.layout.clear();
    if (!hostfile.empty())
      throw InputError(fmt::format("--hostfile {}: the runs of {} use one process each; give --mpi N (or a mesh in the "
                                   "spec's scale) to run them across ranks",
                                   hostfile, spec.path));
    return {};
  }
  if (s.layout.empty()) s.layout = "batch:data";
  Cluster c;
  const Mesh mesh = parse_mesh(s.mesh);
  const Layout layout = parse_layout(s.layout, mesh);
  c.ranks = mesh.devices();
  if (c.ranks == 1) {  // data:1: one process, as without a mesh
    s.mesh.clear();
    s.layout.clear();
    return {};
  }
  for (const Arm& arm : spec.arms) {
    std::vector<std::string> sets;
    for (const Override& o : s.common) sets.push_back(o.set_arg());
    for (const Override& o : arm.overrides) sets.push_back(o.set_arg());
    const RunConfig cfg = parse_run_config(arm.model_text, arm.model, sets);
    try {
      check_training_layout(cfg.model, cfg.train, mesh, layout);
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: arm \"{}\" on mesh {} with layout {}: {}", spec.path, arm.name, s.mesh, s.layout,
                                   e.what()));
    }
  }
  if (!hostfile.empty() && !fs::is_regular_file(hostfile))
    throw InputError(fmt::format("--hostfile {}: not a file; allowed: an Open MPI hostfile (one \"HOST slots=N\" per line)",
                                 hostfile));
  c.hostfile = hostfile;
  c.mpiexec = find_on_path("mpiexec");
  if (c.mpiexec.empty())
    throw InputError(fmt::format("the runs of {} use {} MPI ranks (mesh {}), but mpiexec is not on PATH (install Open MPI: "
                                 "apt-get install openmpi-bin)",
                                 spec.path, c.ranks, s.mesh));
  return c;
}

std::vector<std::string> launch_prefix(const Cluster& c) {
  if (c.ranks <= 1) return {};
  std::vector<std::string> argv = {c.mpiexec, "-n", std::to_string(c.ranks), "--bind-to", "none"};
  if (c.hostfile.empty())
    argv.push_back("--oversubscribe");  // more ranks than cores on this machine is allowed (slower)
  else
    argv.insert(argv.end(), {"--hostfile", fs::absolute(c.hostfile).string()});
  return argv;
}

int threads_per_rank(const Settings& s, const Cluster& c, int jobs) {
  if (s.threads > 0) return static_cast<int>(s.threads);
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  // On this machine every rank of every job shares its cores; on hosts from a hostfile a rank
  // is assumed to have a host like this one, shared by the jobs.
  const int64_t sharers = static_cast<int64_t>(jobs) * (c.hostfile.empty() ? c.ranks : 1);
  return static_cast<int>(std::max<int64_t>(1, cores / sharers));
}

Pricing price_arms(const Spec& spec, const std::vector<Run>& runs, const std::string& hardware, const fs::path& simulate,
                   const fs::path& out) {
  const Settings& s = spec.settings;
  Pricing p;
  p.hardware = hardware;
  for (size_t a = 0; a < spec.arms.size(); ++a) {
    const Arm& arm = spec.arms[a];
    const auto run = std::find_if(runs.begin(), runs.end(), [&](const Run& r) { return r.arm == a; });
    const fs::path dir = out / "price" / arm.slug;
    fs::create_directories(dir);
    std::vector<std::string> argv = {simulate.string(), "--model", fs::absolute(arm.model).string()};
    for (const std::string& x : run->sets) argv.insert(argv.end(), {"--set", x});
    argv.insert(argv.end(), {"--hardware", hardware, "--mesh", s.mesh.empty() ? "data:1" : s.mesh, "--out", dir.string()});
    if (!s.layout.empty()) argv.insert(argv.end(), {"--layout", s.layout});
    const fs::path log = dir / "simulate.log";
    fs::remove(log);
    const int status = wait_for(spawn_process(argv, log));
    nlohmann::json summary;
    try {
      summary = nlohmann::json::parse(read_file((dir / "summary.json").string()), nullptr, false);
    } catch (const InputError&) {
    }
    if (!exited_normally(status) || !summary.is_object() || !summary.contains("step_time_s") ||
        !summary["step_time_s"].is_number())
      throw InputError(fmt::format("--hardware {}: pricing arm \"{}\" failed ({}): {}", hardware, arm.name,
                                   wait_status_text(status), last_line(log)));
    p.step_seconds.push_back(summary["step_time_s"].get<double>());
  }
  return p;
}

double expected_wall_seconds(const Spec& spec, const std::vector<Run>& runs, const std::vector<size_t>& queue,
                             const Pricing& pricing, int jobs) {
  // Slots free at these times; each run starts on the earliest free one, in queue order.
  std::priority_queue<double, std::vector<double>, std::greater<>> free_at;
  for (int j = 0; j < std::max(1, jobs); ++j) free_at.push(0.0);
  double end = 0;
  for (size_t i : queue) {
    const double start = free_at.top();
    free_at.pop();
    const double done = start + pricing.step_seconds[runs[i].arm] * static_cast<double>(spec.settings.steps);
    free_at.push(done);
    end = std::max(end, done);
  }
  return end;
}

std::string pricing_text(const Spec& spec, const Pricing& pricing, const std::vector<Run>& runs,
                         const std::vector<size_t>& queue, int jobs) {
  const Settings& s = spec.settings;
  std::string text = fmt::format("priced on {} ({}{}):\n", pricing.hardware,
                                 s.mesh.empty() ? "one process per run" : "mesh " + s.mesh, s.layout.empty() ? "" : ", layout " + s.layout);
  text += fmt::format("  {:<36} {:>12} {:>16}\n", "arm", "step", fmt::format("run ({} steps)", s.steps));
  for (size_t a = 0; a < spec.arms.size(); ++a)
    text += fmt::format("  {:<36} {:>10.3g} s {:>16}\n", spec.arms[a].name, pricing.step_seconds[a],
                        duration_text(pricing.step_seconds[a] * static_cast<double>(s.steps)));
  text += fmt::format("expected wall time: {} for the {} runs to go, {} at a time (training steps only: evaluation, "
                      "start-up and pre-training stages are not priced)\n",
                      duration_text(expected_wall_seconds(spec, runs, queue, pricing, jobs)), queue.size(), jobs);
  return text;
}

ArmColumns pricing_columns(const Pricing& pricing) {
  ArmColumns c;
  c.csv_names = {"priced_step_seconds"};
  c.table_names = {"Priced step"};
  for (double step : pricing.step_seconds) {
    c.csv_values.push_back({fmt::format("{:.6g}", step)});
    c.table_values.push_back({fmt::format("{:.3g} s", step)});
  }
  return c;
}

ArmColumns joined(ArmColumns a, const ArmColumns& b) {
  if (b.csv_names.empty()) return a;
  if (a.csv_names.empty()) return b;
  a.csv_names.insert(a.csv_names.end(), b.csv_names.begin(), b.csv_names.end());
  a.table_names.insert(a.table_names.end(), b.table_names.begin(), b.table_names.end());
  for (size_t i = 0; i < a.csv_values.size(); ++i) {
    a.csv_values[i].insert(a.csv_values[i].end(), b.csv_values[i].begin(), b.csv_values[i].end());
    a.table_values[i].insert(a.table_values[i].end(), b.table_values[i].begin(), b.table_values[i].end());
  }
  return a;
}

}  // namespace sy::ablation
