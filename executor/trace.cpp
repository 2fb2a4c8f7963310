#include "executor/trace.hpp"

#include "graph/error.hpp"
#include "graph/file_io.hpp"
#include "graph/trace_schema.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <charconv>
#include <map>

namespace sy {
namespace {

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::set<int64_t> parse_step_list(std::string_view text) {
  std::set<int64_t> steps;
  auto bad = [&](std::string_view why) {
    throw InputError(fmt::format("--trace '{}': {}; expected step numbers and ranges like 3,5-7 (steps from 1)", text, why));
  };
  auto number = [&](std::string_view s) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) bad(fmt::format("'{}' is not a number", s));
    if (v < 1) bad(fmt::format("step {} is before the first step, 1", v));
    return v;
  };
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    const size_t dash = item.find('-');
    auto add = [&](int64_t s) {
      if (!steps.insert(s).second) bad(fmt::format("step {} is given twice", s));
    };
    if (dash == std::string_view::npos) {
      add(number(item));
    } else {
      const int64_t a = number(item.substr(0, dash)), b = number(item.substr(dash + 1));
      if (b < a) bad(fmt::format("range {} is backwards", item));
      if (b - a > 100000) bad(fmt::format("range {} is too long", item));
      for (int64_t s = a; s <= b; ++s) add(s);
    }
    start = comma + 1;
  }
  return steps;
}

TraceRecorder::TraceRecorder(const Graph& g, int device, std::string process)
    : g_(g), device_(device), process_(std::move(process)) {
  for (const Node& n : g.nodes) costs_.push_back(node_cost(g, n));
}

void TraceRecorder::begin_step(int64_t step) {
  current_ = step;
  steps_.push_back(Step{step, now_us(), 0});
}

void TraceRecorder::record(NodeId node, double t_begin_us, double t_end_us) {
  if (current_ >= 0) events_.push_back(Event{node, current_, t_begin_us, t_end_us});
}

void TraceRecorder::end_step() {
  if (current_ < 0) return;
  steps_.back().end = now_us();
  current_ = -1;
}

void TraceRecorder::write(const std::filesystem::path& path) const {
  const double origin = steps_.empty() ? 0.0 : steps_.front().begin;
  TraceWriter w("measured", device_, process_, {std::string(kComputeStream)}, origin);
  for (const Step& s : steps_) w.step(s.step, s.begin - origin, s.end - s.begin);
  for (const Event& e : events_) {
    const Node& n = g_.node(e.node);
    const std::string axes = collective_axes(n);
    w.op(TraceOp{.node = e.node.v,
                 .name = op_name(n.kind),
                 .phase = trace_phase(n),
                 .scope = n.scope,
                 .stream = 0,
                 .step = e.step,
                 .start_us = e.begin - origin,
                 .dur_us = e.end - e.begin,
                 .cost = costs_[static_cast<size_t>(e.node.v)],
                 .axes = axes});
  }
  write_file_atomic(path, w.finish());
}

std::string TraceRecorder::summary() const {
  struct Row {
    double us = 0, flops = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Row> by_kind, by_phase;
  double total = 0, step_total = 0;
  for (const Event& e : events_) {
    const Node& n = g_.node(e.node);
    const double us = e.end - e.begin;
    const auto i = static_cast<size_t>(e.node.v);
    for (Row* r : {&by_kind[std::string(op_name(n.kind))], &by_phase[std::string(trace_phase(n))]}) {
      r->us += us;
      r->flops += costs_[i].flops;
      ++r->calls;
    }
    total += us;
  }
  for (const Step& s : steps_) step_total += s.end - s.begin;
  auto table = [&](const std::string& title, const std::map<std::string, Row>& rows) {
    std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.us > b.second.us; });
    std::string s = fmt::format("{:<20} {:>12} {:>7} {:>9} {:>10}\n", title, "ms/step", "share", "calls", "GFLOP/s");
    const double n = static_cast<double>(std::max<int64_t>(1, steps()));
    for (const auto& [name, r] : sorted)
      s += fmt::format("{:<20} {:>12.2f} {:>6.1f}% {:>9} {:>10.1f}\n", name, r.us / 1e3 / n, total > 0 ? 100 * r.us / total : 0.0,
                       r.calls / std::max<int64_t>(1, steps()), r.us > 0 ? r.flops / (r.us * 1e3) : 0.0);
    return s;
  };
  const double n = static_cast<double>(std::max<int64_t>(1, steps()));
  std::string s = fmt::format("traced {} step(s): {:.1f} ms/step wall, {:.1f} ms/step inside ops\n", steps(),
                              step_total / 1e3 / n, total / 1e3 / n);
  s += table("phase", by_phase);
  s += table("op kind", by_kind);
  return s;
}

}  // namespace sy
