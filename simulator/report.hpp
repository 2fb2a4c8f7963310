// Simulator reports: the four files `simulate --out DIR` writes.
//   report.md     summary (step time, tokens/s, MFU, memory per device, time split compute /
//                 memory-bound / all-to-all / all-reduce / other, exposed communication, critical
//                 path), communication by kind and axis, a per-layer table, and the per-op roofline
//                 table of the top ops by time (flops, bytes, intensity, bound)
//   ops.csv       one row per op of the step, in program order
//   summary.json  the summary numbers, machine-readable
//   trace.json    Chrome trace (chrome://tracing, Perfetto) in the schema the executor's
//                 `train --trace` writes too (graph/trace_schema.hpp, source "simulated"): the
//                 step as "step 1" on the "steps" track, one event per op on its stream ("compute",
//                 "ici:<axis>") named by op kind, cat = phase, args node, scope, step, flops, bytes,
//                 (collectives) axes and collective_bytes, and bound; scripts/trace_diff.py diffs
//                 it against a measured trace of the same program
// Output is deterministic: the same inputs give byte-identical files. Files are written to a
// temporary name in DIR and renamed into place, so a reader never sees half a file.
#pragma once

#include "simulator/simulate.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace sy {

struct ReportInfo {
  std::string model;                                       // "st_moe_32b"
  std::vector<std::pair<std::string, std::string>> facts;  // extra rows of the setup table
};

std::string report_markdown(const SimResult& r, const ReportInfo& info);
std::string ops_csv(const SimResult& r);
nlohmann::ordered_json summary_json(const SimResult& r, const ReportInfo& info);
std::string trace_json(const SimResult& r);

// Writes the four files into `dir` (created if missing). Throws InputError when it cannot.
void write_reports(const std::string& dir, const SimResult& r, const ReportInfo& info);

// "1.234 s", "12.35 ms", "4.56 µs", "789 ns"
std::string format_seconds(double s);
// "1.50 GiB", "12.0 MiB", "512 B"
std::string format_bytes(double b);

}  // namespace sy
