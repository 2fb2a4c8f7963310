#include "simulator/report.hpp"

#include "graph/file_io.hpp"
#include "graph/output_dir.hpp"

#include "graph/error.hpp"
#include "graph/trace_schema.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

namespace sy {

std::string format_seconds(double s) {
  const double a = std::abs(s);
  if (a >= 1.0) return fmt::format("{:.3f} s", s);
  if (a >= 1e-3) return fmt::format("{:.2f} ms", s * 1e3);
  if (a >= 1e-6) return fmt::format("{:.2f} µs", s * 1e6);
  return fmt::format("{:.0f} ns", s * 1e9);
}

std::string format_bytes(double b) {
  const double a = std::abs(b);
  if (a >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (a >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  if (a >= 1024.0) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{:.0f} B", b);
}

namespace {

std::string percent(double part, double whole) { return whole > 0 ? fmt::format("{:.1f} %", 100.0 * part / whole) : "–"; }

std::string count(double v) {
  const double a = std::abs(v);
  if (a >= 1e15) return fmt::format("{:.2f}P", v / 1e15);
  if (a >= 1e12) return fmt::format("{:.2f}T", v / 1e12);
  if (a >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (a >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (a >= 1e3) return fmt::format("{:.2f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string axes_text(const SimResult& r, uint32_t axes) {
  std::string s;
  for (size_t a = 0; a < r.mesh.axes.size(); ++a)
    if (axes & (1u << a)) s += fmt::format("{}{}", s.empty() ? "" : "+", r.mesh.axes[a].name);
  return s;
}

// "encoder/layer_03/moe/experts" -> "encoder/layer_03"; "logits" -> "logits"; "" -> "(root)".
std::string layer_of(std::string scope) {
  if (scope.empty()) return "(root)";
  // A parameter's update (scope "optimizer/<parameter>") counts in its parameter's layer.
  if (scope.starts_with("optimizer/")) scope = scope.substr(10);
  size_t pos = 0;
  while (true) {
    const size_t slash = scope.find('/', pos);
    const std::string part = scope.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (part.rfind("layer_", 0) == 0) return scope.substr(0, slash);
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  const size_t first = scope.find('/');
  return scope.substr(0, first);
}

std::string op_title(const SimResult& r, const SimOp& op) {
  if (op.collective) return fmt::format("{} ({})", op.label, axes_text(r, op.axes));
  if (op.fused >= 0) return fmt::format("fusion.{} ({} ops, root {})", op.fused, r.fused[static_cast<size_t>(op.fused)].ops.size(), op.label);
  return op.label;
}

// ops.csv's fusion column: "fusion.<k>" for a member of a fused group, "cse:<node>" for a
// duplicate merged into an earlier node, empty otherwise.
std::string fusion_text(const SimOp& op) {
  if (op.fused >= 0) return fmt::format("fusion.{}", op.fused);
  if (op.duplicate_of >= 0) return fmt::format("cse:{}", op.duplicate_of);
  return "";
}

}  // namespace

std::string report_markdown(const SimResult& r, const ReportInfo& info) {
  std::string s;
  s += fmt::format("# Simulated training step: {} on {}\n\n", info.model, r.hardware);
  s += "| setup | |\n|---|---|\n";
  s += fmt::format("| mesh | {} ({} devices, {} chips) |\n", to_string(r.mesh), r.mesh.devices(), r.topology.chips);
  s += fmt::format("| placement on the torus | {} |\n", r.topology.describe());
  s += fmt::format("| layout | {} |\n", r.layout.rules.empty() ? "(everything replicated)" : to_string(r.layout));
  s += fmt::format("| optimizer | {} |\n", r.optimizer);
  for (const auto& [k, v] : info.facts) s += fmt::format("| {} | {} |\n", k, v);

  const double step = r.step_time;
  s += "\n## Summary\n\n| metric | value |\n|---|---|\n";
  s += fmt::format("| step time | {} |\n", format_seconds(step));
  if (r.tokens_per_step > 0) {
    s += fmt::format("| tokens per step | {} |\n", count(r.tokens_per_step));
    s += fmt::format("| tokens per second | {} |\n", count(r.tokens_per_second));
  }
  s += fmt::format("| MFU (model FLOPs / bf16 peak) | {} |\n", percent(r.mfu, 1.0));
  s += fmt::format("| HFU (executed FLOPs / bf16 peak) | {} |\n", percent(r.hfu, 1.0));
  s += fmt::format("| memory per device | {} of {} ({}) |\n", format_bytes(r.memory.total()), format_bytes(r.memory.capacity),
                   r.memory.fits() ? "fits" : "**does not fit**");
  s += fmt::format("| compute stream busy | {} ({}) |\n", format_seconds(r.compute_busy), percent(r.compute_busy, step));
  s += fmt::format("| communication busy | {} ({}) |\n", format_seconds(r.comm_busy), percent(r.comm_busy, step));
  s += fmt::format("| exposed communication | {} ({} of the step) |\n", format_seconds(r.exposed_comm),
                   percent(r.exposed_comm, step));
  s += fmt::format("| overlapped communication | {} |\n", format_seconds(r.overlapped_comm));
  s += fmt::format("| critical path | {} ops: {} compute, {} communication |\n", r.critical_ops,
                   format_seconds(r.critical_compute), format_seconds(r.critical_comm));
  if (r.fusion) {
    const double op_time = r.compute_bound + r.memory_bound;
    s += fmt::format("| fusion (XLA-style, simulator/fusion.hpp) | {} fused groups, {} duplicate ops merged (CSE); compute-op "
                     "time {} instead of {} priced op by op ({} saved) |\n",
                     r.fused.size(), r.cse_duplicates, format_seconds(op_time), format_seconds(r.unfused_op_time),
                     format_seconds(r.unfused_op_time - op_time));
  } else {
    s += "| fusion | off (--no-fusion, or a backing that runs every op alone: [chip] fuses = false) |\n";
  }

  const double total = r.compute_bound + r.memory_bound + r.all_to_all + r.all_reduce + r.other_comm;
  s += "\n## Time split (op time per device)\n\n| kind | time | share |\n|---|---:|---:|\n";
  s += fmt::format("| compute-bound ops | {} | {} |\n", format_seconds(r.compute_bound), percent(r.compute_bound, total));
  s += fmt::format("| memory-bound ops | {} | {} |\n", format_seconds(r.memory_bound), percent(r.memory_bound, total));
  s += fmt::format("| all-to-all | {} | {} |\n", format_seconds(r.all_to_all), percent(r.all_to_all, total));
  s += fmt::format("| all-reduce | {} | {} |\n", format_seconds(r.all_reduce), percent(r.all_reduce, total));
  s += fmt::format("| other communication (all-gather, reduce-scatter) | {} | {} |\n", format_seconds(r.other_comm),
                   percent(r.other_comm, total));
  s += fmt::format("\nOptimizer updates: {} of the memory-bound time.\n", format_seconds(r.optimizer_time));

  s += "\n## Memory per device\n\nBy liveness in the schedule's order: leaves for the whole step, computed values from "
       "their op to their last reader; the last three rows are what is live at the peak.\n\n| part | bytes |\n|---|---:|\n";
  s += fmt::format("| parameters | {} |\n| optimizer state | {} |\n| inputs | {} |\n", format_bytes(r.memory.parameters),
                   format_bytes(r.memory.optimizer), format_bytes(r.memory.inputs));
  s += fmt::format("| activations kept for backward | {} |\n| gradients | {} |\n| other live values | {} |\n",
                   format_bytes(r.memory.activations), format_bytes(r.memory.gradients), format_bytes(r.memory.transient));
  s += fmt::format("| **total** | **{}** |\n| HBM available | {} |\n", format_bytes(r.memory.total()),
                   format_bytes(r.memory.capacity));
  for (const SimOp& op : r.ops)
    if (op.node == r.memory.peak_node) s += fmt::format("\nThe peak is reached while {} @ {} runs ({} phase).\n", op.label, op.scope, phase_name(op.phase));
  if (!r.memory.fits())
    s += fmt::format("\n**Does not fit**: {} needed, {} available per device.\n", format_bytes(r.memory.total()),
                     format_bytes(r.memory.capacity));

  s += expert_load_markdown(r.expert_load);

  // Communication by kind and axes.
  struct Comm {
    int count = 0;
    double bytes = 0, time = 0;
    int latency_bound = 0;
  };
  std::map<std::pair<std::string, std::string>, Comm> comm;
  for (const SimOp& op : r.ops) {
    if (!op.collective) continue;
    Comm& c = comm[{op.label, axes_text(r, op.axes)}];
    ++c.count;
    c.bytes += op.cost.collective_bytes;
    c.time += op.duration;
    c.latency_bound += op.bound == Bound::latency ? 1 : 0;
  }
  s += "\n## Communication per device\n\n| collective | axes | count | bytes sent | time | latency-bound |\n"
       "|---|---|---:|---:|---:|---:|\n";
  for (const auto& [key, c] : comm)
    s += fmt::format("| {} | {} | {} | {} | {} | {} |\n", key.first, key.second, c.count, format_bytes(c.bytes),
                     format_seconds(c.time), c.latency_bound);
  for (size_t a = 0; a < r.mesh.axes.size(); ++a)
    s += fmt::format("\nBytes sent over axis {}: {}.", r.mesh.axes[a].name, format_bytes(r.comm_bytes_by_axis[a]));
  s += "\n";

  // Per layer.
  struct Layer {
    double forward = 0, backward = 0, optimizer = 0, comm = 0, flops = 0;
  };
  std::vector<std::string> order;
  std::map<std::string, Layer> layers;
  for (const SimOp& op : r.ops) {
    const std::string key = layer_of(op.scope);
    if (!layers.count(key)) order.push_back(key);
    Layer& l = layers[key];
    if (op.collective) {
      l.comm += op.duration;
    } else {
      (op.phase == Phase::forward ? l.forward : op.phase == Phase::backward ? l.backward : l.optimizer) += op.duration;
      l.flops += op.cost.flops;
    }
  }
  s += "\n## Per layer (op time per device)\n\n| layer | forward | backward | optimizer | communication | flops |\n"
       "|---|---:|---:|---:|---:|---:|\n";
  for (const std::string& k : order) {
    const Layer& l = layers[k];
    s += fmt::format("| {} | {} | {} | {} | {} | {} |\n", k, format_seconds(l.forward), format_seconds(l.backward),
                     format_seconds(l.optimizer), format_seconds(l.comm), count(l.flops));
  }

  // The largest fused groups.
  if (!r.fused.empty()) {
    std::vector<size_t> fi(r.fused.size());
    for (size_t i = 0; i < fi.size(); ++i) fi[i] = i;
    std::stable_sort(fi.begin(), fi.end(), [&](size_t a, size_t b) { return r.fused[a].duration > r.fused[b].duration; });
    const size_t nf = std::min<size_t>(15, fi.size());
    s += fmt::format("\n## Fusion: the {} longest fused groups\n\nEach runs as one op; bytes are its HBM traffic "
                     "(values entering it and values it writes out), saved = the members' bytes priced alone minus that.\n\n",
                     nf);
    s += "| # | group | ops | scope | time | alone | bytes | saved bytes |\n|---:|---|---|---|---:|---:|---:|---:|\n";
    for (size_t k = 0; k < nf; ++k) {
      const FusedGroup& fg = r.fused[fi[k]];
      const SimOp& root = r.ops[static_cast<size_t>(fg.root())];
      const double bytes = fg.cost.bytes_read + fg.cost.bytes_written;
      std::string kinds = fg.kinds;
      if (kinds.size() > 80) kinds = kinds.substr(0, 77) + "...";
      s += fmt::format("| {} | fusion.{} | {} | {} | {} | {} | {} | {} |\n", k + 1, fi[k], kinds,
                       root.scope.empty() ? "(root)" : root.scope, format_seconds(fg.duration), format_seconds(fg.own_duration),
                       format_bytes(bytes), format_bytes(fg.own_bytes - bytes));
    }
  }

  // The roofline table: top ops by time.
  std::vector<size_t> idx(r.ops.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return r.ops[a].duration > r.ops[b].duration; });
  const size_t top = std::min<size_t>(30, idx.size());
  s += fmt::format("\n## Roofline: the {} longest ops\n\n", top);
  s += "| # | op | scope | phase | time | flops | bytes | intensity (flop/B) | bound |\n"
       "|---:|---|---|---|---:|---:|---:|---:|---|\n";
  for (size_t k = 0; k < top; ++k) {
    const SimOp& op = r.ops[idx[k]];
    const double bytes = op.collective ? op.cost.collective_bytes : op.cost.bytes_read + op.cost.bytes_written;
    s += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", k + 1, op_title(r, op),
                     op.scope.empty() ? "(root)" : op.scope, phase_name(op.phase), format_seconds(op.duration),
                     count(op.cost.flops), format_bytes(bytes), op.collective ? "–" : fmt::format("{:.1f}", op.roof.intensity),
                     bound_name(op.bound));
  }
  return s;
}

std::string ops_csv(const SimResult& r) {
  std::string s =
      "index,node,op,scope,phase,stream,start_us,end_us,duration_us,flops,bytes_read,bytes_written,collective_bytes,"
      "intensity,bound,axes,critical,fusion\n";
  for (size_t i = 0; i < r.ops.size(); ++i) {
    const SimOp& op = r.ops[i];
    s += fmt::format("{},{},\"{}\",{},{},{},{:.6f},{:.6f},{:.6f},{:.9g},{:.9g},{:.9g},{:.9g},{:.6g},{},{},{},{}\n", i, op.node,
                     op.label, op.scope, phase_name(op.phase), r.streams[static_cast<size_t>(op.stream)], op.start * 1e6,
                     op.end * 1e6, op.duration * 1e6, op.cost.flops, op.cost.bytes_read, op.cost.bytes_written,
                     op.cost.collective_bytes, op.collective ? 0.0 : op.roof.intensity, bound_name(op.bound),
                     axes_text(r, op.axes), op.critical ? 1 : 0, fusion_text(op));
  }
  return s;
}

nlohmann::ordered_json summary_json(const SimResult& r, const ReportInfo& info) {
  using J = nlohmann::ordered_json;
  J facts = J::object();
  for (const auto& [k, v] : info.facts) facts[k] = v;
  J axes = J::object();
  for (size_t a = 0; a < r.mesh.axes.size(); ++a) axes[r.mesh.axes[a].name] = r.comm_bytes_by_axis[a];
  J j{{"model", info.model},
           {"hardware", r.hardware},
           {"mesh", to_string(r.mesh)},
           {"devices", r.mesh.devices()},
           {"chips", r.topology.chips},
           {"placement", r.topology.describe()},
           {"layout", to_string(r.layout)},
           {"optimizer", r.optimizer},
           {"facts", facts},
           {"step_time_s", r.step_time},
           {"tokens_per_step", r.tokens_per_step},
           {"tokens_per_second", r.tokens_per_second},
           {"mfu", r.mfu},
           {"hfu", r.hfu},
           {"model_flops_per_step", r.model_flops},
           {"flops_per_device", r.flops},
           {"time_split_s",
            J{{"compute_bound", r.compute_bound},
              {"memory_bound", r.memory_bound},
              {"optimizer", r.optimizer_time},
              {"all_to_all", r.all_to_all},
              {"all_reduce", r.all_reduce},
              {"other_communication", r.other_comm}}},
           {"compute_busy_s", r.compute_busy},
           {"communication_busy_s", r.comm_busy},
           {"exposed_communication_s", r.exposed_comm},
           {"overlapped_communication_s", r.overlapped_comm},
           {"critical_path", J{{"ops", r.critical_ops}, {"compute_s", r.critical_compute}, {"communication_s", r.critical_comm}}},
           {"collective_bytes_per_device",
            J{{"all_to_all", r.all_to_all_bytes}, {"all_reduce", r.all_reduce_bytes}, {"other", r.other_comm_bytes}, {"by_axis", axes}}},
           {"memory_per_device_bytes",
            J{{"parameters", r.memory.parameters},
              {"gradients", r.memory.gradients},
              {"optimizer", r.memory.optimizer},
              {"activations", r.memory.activations},
              {"inputs", r.memory.inputs},
              {"transient", r.memory.transient},
              {"total", r.memory.total()},
              {"capacity", r.memory.capacity}}},
           {"fusion",
            J{{"enabled", r.fusion},
              {"fused_groups", r.fused.size()},
              {"cse_duplicates", r.cse_duplicates},
              {"compute_op_time_s", r.compute_bound + r.memory_bound},
              {"unfused_compute_op_time_s", r.unfused_op_time}}},
           {"fits", r.memory.fits()},
           {"ops", r.ops.size()}};
  if (r.expert_load.enabled) j["expert_load"] = expert_load_json(r.expert_load);  // simulator/load_skew.hpp
  return j;
}

std::string trace_json(const SimResult& r) {
  // The schema of graph/trace_schema.hpp, as the executor's measured trace: one step, numbered 1,
  // on device 0 (SPMD: every device runs the same program), its ops on their streams.
  TraceWriter w("simulated", 0, trace_process_name(0, to_string(r.mesh), "simulated on " + r.hardware), r.streams);
  w.step(1, 0.0, r.step_time * 1e6);
  for (const SimOp& op : r.ops) {
    const std::string axes = op.collective ? axes_text(r, op.axes) : "";
    const std::string fusion =
        op.fused >= 0 ? fmt::format("fusion.{} {}", op.fused, r.fused[static_cast<size_t>(op.fused)].kinds) : fusion_text(op);
    w.op(TraceOp{.node = op.node,
                 .name = op_name(op.kind),
                 .phase = phase_name(op.phase),
                 .scope = op.scope,
                 .stream = op.stream,
                 .step = 1,
                 .start_us = op.start * 1e6,
                 .dur_us = op.duration * 1e6,
                 .cost = op.cost,
                 .axes = axes,
                 .bound = bound_name(op.bound),
                 .fusion = fusion});
  }
  return w.finish();
}

void write_reports(const std::string& dir, const SimResult& r, const ReportInfo& info) {
  create_output_dir(dir, "--out");
  const OutputDirLock lock(dir, "--out", "simulate");  // two writers of one report directory: exit 2
  write_file_atomic(dir + "/report.md", report_markdown(r, info));
  write_file_atomic(dir + "/ops.csv", ops_csv(r));
  write_file_atomic(dir + "/summary.json", summary_json(r, info).dump(2) + "\n");
  write_file_atomic(dir + "/trace.json", trace_json(r));
}

}  // namespace sy
