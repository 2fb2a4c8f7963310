// graph/trace_schema: the phase and collective rules both traces use, and the exact text of the
// writer's metadata, step and op events (the schema the executor and the simulator share).
#include "graph/trace_schema.hpp"

#include "graph/attrs.hpp"

#include <catch2/catch.hpp>

using namespace sy;

namespace {

Node node(OpKind kind, std::string scope, bool backward = false, Attrs attrs = {}) {
  Node n;
  n.kind = kind;
  n.scope = std::move(scope);
  n.backward = backward;
  n.attrs = std::move(attrs);
  return n;
}

}  // namespace

TEST_CASE("trace schema: phase by scope, then the backward flag", "[trace_schema]") {
  CHECK(trace_phase(node(OpKind::einsum, "decoder/layer_00/ffn")) == "forward");
  CHECK(trace_phase(node(OpKind::einsum, "decoder/layer_00/ffn", true)) == "backward");
  CHECK(trace_phase(node(OpKind::adamw_update, "optimizer/decoder/layer_00/ffn/wi", true)) == "optimizer");
  CHECK(trace_phase(node(OpKind::mul, "optimizer", true)) == "optimizer");  // clipping
  CHECK(trace_phase(node(OpKind::mul, "optimizers/x")) == "forward");       // not the optimizer's scope
}

TEST_CASE("trace schema: collectives that communicate carry their axes", "[trace_schema]") {
  CollectiveAttrs a;
  a.axes = {{"data", 4}, {"model", 2}};
  CHECK(communicates(node(OpKind::all_to_all, "moe", false, a)));
  CHECK(collective_axes(node(OpKind::all_to_all, "moe", false, a)) == "data+model");
  CHECK_FALSE(communicates(node(OpKind::shard_slice, "moe", false, a)));  // no communication
  CHECK(collective_axes(node(OpKind::shard_slice, "moe", false, a)).empty());
  CHECK_FALSE(communicates(node(OpKind::add, "moe")));
  CHECK(comm_stream_name("data") == "ici:data");
}

TEST_CASE("trace schema: the writer's text", "[trace_schema]") {
  TraceWriter w("simulated", 0, trace_process_name(0, "data:2", "simulated on \"chip\""), {"compute", "ici:data"});
  w.step(1, 0.0, 12.5);
  OpCost c;
  c.flops = 2e12;
  c.bytes_read = 1024;
  c.bytes_written = 512;
  c.collective_bytes = 256;
  w.op(TraceOp{.node = 7, .name = "all_to_all", .phase = "forward", .scope = "moe/dispatch", .stream = 1, .step = 1,
               .start_us = 1.25, .dur_us = 0.5, .cost = c, .axes = "data", .bound = "network"});
  w.op(TraceOp{.node = 8, .name = "einsum", .phase = "backward", .scope = "ffn", .stream = 0, .step = 1, .start_us = 2,
               .dur_us = 3, .cost = {}});
  CHECK(w.finish() ==
        "{\"otherData\":{\"schema\":\"switchyard.trace v1\",\"source\":\"simulated\"},\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"
        "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":0,\"args\":{\"name\":\"device 0 of data:2 (simulated on \\\"chip\\\")\"}},\n"
        "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":0,\"args\":{\"name\":\"steps\"}},\n"
        "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":1,\"args\":{\"name\":\"compute\"}},\n"
        "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":2,\"args\":{\"name\":\"ici:data\"}},\n"
        "{\"name\":\"step 1\",\"cat\":\"step\",\"ph\":\"X\",\"pid\":0,\"tid\":0,\"ts\":0.0000,\"dur\":12.5000,\"args\":{\"step\":1}},\n"
        "{\"name\":\"all_to_all\",\"cat\":\"forward\",\"ph\":\"X\",\"pid\":0,\"tid\":2,\"ts\":1.2500,\"dur\":0.5000,\"args\":{"
        "\"node\":7,\"scope\":\"moe/dispatch\",\"step\":1,\"flops\":2000000000000,\"bytes\":1536,\"axes\":\"data\","
        "\"collective_bytes\":256,\"bound\":\"network\"}},\n"
        "{\"name\":\"einsum\",\"cat\":\"backward\",\"ph\":\"X\",\"pid\":0,\"tid\":1,\"ts\":2.0000,\"dur\":3.0000,\"args\":{"
        "\"node\":8,\"scope\":\"ffn\",\"step\":1,\"flops\":0,\"bytes\":0}}\n"
        "]}\n");
}
