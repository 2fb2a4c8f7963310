#include "graph/trace_schema.hpp"

#include "graph/attrs.hpp"

#include <fmt/format.h>

#include <variant>

namespace sy {
namespace {

// A JSON string literal's contents: quotes, backslashes and control characters escaped.
std::string escaped(std::string_view s) {
  std::string o;
  o.reserve(s.size());
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      o += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      o += c;
    }
  }
  return o;
}

}  // namespace

std::string comm_stream_name(std::string_view axis) { return fmt::format("ici:{}", axis); }

bool is_optimizer_scope(std::string_view scope) { return scope == "optimizer" || scope.starts_with("optimizer/"); }

std::string_view trace_phase(const Node& n) {
  if (is_optimizer_scope(n.scope)) return "optimizer";
  return n.backward ? "backward" : "forward";
}

bool communicates(const Node& n) {
  return std::holds_alternative<CollectiveAttrs>(n.attrs) && n.kind != OpKind::shard_slice;
}

std::string collective_axes(const Node& n) {
  if (!communicates(n)) return {};
  std::string s;
  for (const Dim& a : std::get<CollectiveAttrs>(n.attrs).axes) {
    if (!s.empty()) s += '+';
    s += a.name;
  }
  return s;
}

OpCost node_cost(const Graph& g, const Node& n) {
  std::vector<TensorType> in, out;
  for (ValueId v : n.inputs) in.push_back(g.type(v));
  for (ValueId v : n.outputs) out.push_back(g.type(v));
  return op_def(n.kind).cost(in, out, n.attrs);
}

std::string trace_process_name(int device, std::string_view mesh, std::string_view how) {
  return fmt::format("device {} of {} ({})", device, mesh, how);
}

TraceWriter::TraceWriter(std::string_view source, int device, std::string_view process,
                         const std::vector<std::string>& streams, std::optional<double> clock_origin_us)
    : device_(device) {
  text_ = fmt::format("{{\"otherData\":{{\"schema\":\"{}\",\"source\":\"{}\"", kTraceSchema, escaped(source));
  if (clock_origin_us) text_ += fmt::format(",\"clock_origin_us\":{:.4f}", *clock_origin_us);
  text_ += "},\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  text_ += fmt::format("{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{},\"args\":{{\"name\":\"{}\"}}}}", device_,
                       escaped(process));
  text_ += fmt::format(",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{},\"tid\":0,\"args\":{{\"name\":\"steps\"}}}}", device_);
  for (size_t i = 0; i < streams.size(); ++i)
    text_ += fmt::format(",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{},\"tid\":{},\"args\":{{\"name\":\"{}\"}}}}", device_,
                         i + 1, escaped(streams[i]));
}

void TraceWriter::step(int64_t step, double start_us, double dur_us) {
  text_ += fmt::format(
      ",\n{{\"name\":\"step {}\",\"cat\":\"step\",\"ph\":\"X\",\"pid\":{},\"tid\":0,\"ts\":{:.4f},\"dur\":{:.4f},"
      "\"args\":{{\"step\":{}}}}}",
      step, device_, start_us, dur_us, step);
}

void TraceWriter::op(const TraceOp& op) {
  // Costs are whole numbers of flops and bytes: "{}" prints them exactly (shortest round trip).
  text_ += fmt::format(
      ",\n{{\"name\":\"{}\",\"cat\":\"{}\",\"ph\":\"X\",\"pid\":{},\"tid\":{},\"ts\":{:.4f},\"dur\":{:.4f},"
      "\"args\":{{\"node\":{},\"scope\":\"{}\",\"step\":{},\"flops\":{},\"bytes\":{}",
      op.name, op.phase, device_, op.stream + 1, op.start_us, op.dur_us, op.node, escaped(op.scope), op.step, op.cost.flops,
      op.cost.bytes_read + op.cost.bytes_written);
  if (!op.axes.empty())
    text_ += fmt::format(",\"axes\":\"{}\",\"collective_bytes\":{}", escaped(op.axes), op.cost.collective_bytes);
  if (!op.bound.empty()) text_ += fmt::format(",\"bound\":\"{}\"", op.bound);
  if (!op.fusion.empty()) text_ += fmt::format(",\"fusion\":\"{}\"", escaped(op.fusion));
  text_ += "}}";
}

std::string TraceWriter::finish() const { return text_ + "\n]}\n"; }

}  // namespace sy
