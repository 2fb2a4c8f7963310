// The event-driven schedule, memory per device, the analytical layout evaluation and the MoE
// properties the simulator must show (ST-MoE: capacity factor and expert count vs all-to-all).
#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"
#include "graph/parallel/collective_blocks.hpp"
#include "graph/parallel/lower.hpp"
#include "graph/models/model_config.hpp"
#include "simulator/hardware.hpp"
#include "simulator/model_step.hpp"
#include "simulator/simulate.hpp"
#include "simulator/sweep.hpp"
#include "tests/source_root.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace sy;
using Catch::Matchers::Contains;

namespace {

// A chip with round numbers: 1 GFLOP/s everywhere, memory so fast that every op is
// compute-bound, 1 GB/s links with no latency, 4 chips in a ring.
HardwareSpec simple_chip() {
  HardwareSpec h;
  h.name = "simple";
  h.matmul_flops_bf16 = h.matmul_flops_f32 = h.vector_flops = 1e9;
  h.hbm_bytes = 1e9;
  h.hbm_bandwidth = 1e18;
  h.link_bandwidth = 1e9;
  h.hop_latency = 0;
  h.torus = {4};
  h.wraparound = Wraparound::always;
  return h;
}

const SimOp& op_of(const SimResult& r, const Graph& g, ValueId out) {
  const auto it = std::find_if(r.ops.begin(), r.ops.end(), [&](const SimOp& o) { return o.node == g.value(out).producer.v; });
  REQUIRE(it != r.ops.end());
  return *it;
}

// A small decoder-only MoE model: 2048 tokens per step in 8 groups of 256, 8 experts, top-2.
std::string small_moe(int64_t experts, int64_t batch = 32) {
  return fmt::format(R"(
[model]
architecture = "decoder_only"
vocab = 512
d_model = 64
d_ff = 128
heads = 4
d_kv = 16
layers = 2
position_bias = false
[moe]
every = 2
experts = {}
k = 2
policy_train = "all"
cf_train = 1.25
group_size = 256
min_capacity = 1
[train]
batch = {}
length = 64
)",
                     experts, batch);
}

SimResult simulate_model(const RunConfig& c, const std::string& mesh_text, const std::string& layout_text,
                         const std::string& chip = "tpu_v4") {
  const Mesh mesh = parse_mesh(mesh_text);
  const HardwareSpec hw = load_hardware(chip, default_hardware_dir());
  place_mesh(hw, mesh);  // as the tool: a mesh larger than the pod fails first
  const Layout layout = parse_layout(layout_text, mesh);
  const TrainingStep step = build_training_step(c.model, c.train, {.mesh = mesh, .layout = layout});
  SimOptions o;
  o.tokens_per_step = step.tokens;
  o.model_flops_per_step = step.model_flops;
  return simulate(lower(step.graph(), mesh, layout), hw, o);
}

}  // namespace

TEST_CASE("schedule: a collective on the data path that nothing can overlap is all exposed", "[simulator][schedule]") {
  // a = x·2 -> r = all_reduce(a) over data:4 -> d = relu(r): the compute stream has nothing to do
  // while r runs, so its whole time is exposed and adds to the step.
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 1000}});
  Expr a = scale(x, 2.0);
  Expr r = all_reduce(a, {{"data", 4}});
  Expr d = relu(r);
  b.output("d", d);
  Lowered L;
  L.graph = g;
  L.mesh = parse_mesh("data:4");
  const SimResult s = simulate(L, simple_chip());
  const SimOp &A = op_of(s, g, a.id), &R = op_of(s, g, r.id), &D = op_of(s, g, d.id);
  CHECK(R.duration == Approx(3e-6));
  CHECK(D.start == Approx(R.end));
  CHECK(s.step_time == Approx(A.duration + R.duration + D.duration));
  CHECK(s.exposed_comm == Approx(R.duration));
  CHECK(s.overlapped_comm == 0);
  CHECK(s.critical_comm == Approx(R.duration));
}

TEST_CASE("schedule: independent communication overlaps compute, dependent work waits for it", "[simulator][schedule]") {
  // a = x·2 -> r = all_reduce(a) over data:4 --+
  // b = relu(x) -> c = relu(b) -----------------+-> d = r + c
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 1000}});
  Expr a = scale(x, 2.0);
  Expr r = all_reduce(a, {{"data", 4}});
  Expr bb = relu(x);
  Expr c = relu(bb);
  Expr d = r + c;
  b.output("d", d);
  Lowered L;
  L.graph = g;
  L.mesh = parse_mesh("data:4");
  // Op by op (fusion would run b, c and d as one group: tests/simulator/test_fusion.cpp).
  const SimResult s = simulate(L, simple_chip(), SimOptions{.fusion = false});

  const SimOp &A = op_of(s, g, a.id), &R = op_of(s, g, r.id), &B = op_of(s, g, bb.id), &C = op_of(s, g, c.id),
              &D = op_of(s, g, d.id);
  // The all-reduce of 4000 bytes over 4 chips: 2·(3/4)·4000 B / (2·1e9 B/s) = 3 µs.
  CHECK(R.duration == Approx(3e-6));
  CHECK(R.stream == 1);
  CHECK(s.streams == std::vector<std::string>{"compute", "ici:data"});
  CHECK(A.start == 0);
  CHECK(R.start == Approx(A.end));  // waits for its input
  CHECK(B.start == Approx(A.end));  // runs meanwhile on the compute stream
  CHECK(C.start == Approx(B.end));
  CHECK(D.start == Approx(std::max(R.end, C.end)));  // needs both
  CHECK(s.step_time == Approx(D.end));
  // Overlap: the all-reduce runs while b and c compute; whatever sticks out is exposed.
  const double compute_meanwhile = B.duration + C.duration;
  CHECK(s.overlapped_comm == Approx(std::min(R.duration, compute_meanwhile)));
  CHECK(s.exposed_comm == Approx(std::max(0.0, R.duration - compute_meanwhile)));
  CHECK(s.comm_busy == Approx(R.duration));
  CHECK(s.all_reduce == Approx(R.duration));
  // The critical path runs through whichever branch finishes last.
  CHECK(R.critical == (R.end >= C.end));
  CHECK(D.critical);
  CHECK(s.critical_compute + s.critical_comm == Approx(s.step_time));
}

TEST_CASE("memory per device: parameters, gradients, optimizer state; does not fit is a result", "[simulator][memory]") {
  // Two parameters, their gradients and an optimizer update each, state leaves named as
  // graph/models/training_graph.hpp names them.
  auto build = [](bool adamw) {
    Graph g;
    Builder b(g);
    Expr x = b.input("x", {{"batch", 8}, {"d_model", 4}});
    Expr w1 = b.parameter("w1", {{"d_model", 4}, {"d_ff", 8}});
    Expr w2 = b.parameter("w2", {{"d_ff", 8}, {"d_model", 4}});
    Expr y = einsum(relu(einsum(x, w1, {"batch", "d_ff"})), w2, {"batch", "d_model"});
    Expr loss = mean(y * y, {"batch", "d_model"});
    b.set_loss(loss);
    const auto grads = gradients(g);
    Expr lr = b.input("optimizer/lr", {});
    Expr step = b.input("step", {}, DType::i32);
    Expr clip = fill(b, {}, 1.0);
    for (Expr w : {w1, w2}) {
      const std::string name = g.value(w.id).name;
      const Shape& s = g.type(w.id).shape;
      std::vector<Expr> state;
      if (adamw) {
        state = {b.input("optimizer/" + name + "/m", s), b.input("optimizer/" + name + "/v", s)};
        b.output("update/" + name, adamw_update(w, b.wrap(grads.at(w.id)), state, lr, step, clip, AdamWAttrs{})[0]);
      } else {
        state = {b.input("optimizer/" + name + "/v_row", {s[0]}), b.input("optimizer/" + name + "/v_col", {s[1]})};
        b.output("update/" + name, adafactor_update(w, b.wrap(grads.at(w.id)), state, lr, step, clip, AdafactorAttrs{})[0]);
      }
    }
    return g;
  };
  const Mesh mesh = parse_mesh("data:2,model:2");
  const Layout layout = parse_layout("batch:data,d_ff:model", mesh);
  HardwareSpec h = load_hardware("tpu_v4", default_hardware_dir());

  const SimResult ada = simulate(lower(build(false), mesh, layout), h);
  // w1 [4, 8/2], w2 [8/2, 4] in f32: 32 elements = 128 bytes; gradients (as much) are live at the
  // peak only if it falls after the backward pass (simulator/memory.hpp; tests/simulator/test_memory.cpp).
  CHECK(ada.memory.parameters == 128);
  CHECK(ada.memory.gradients <= 128);
  // Adafactor: rows + columns of each, split like their parameter: (4 + 8/2) + (8/2 + 4) floats.
  CHECK(ada.memory.optimizer == 16 * 4);
  CHECK(ada.optimizer == "adafactor");
  CHECK(ada.memory.activations > 0);
  CHECK(ada.memory.inputs == 4 * 4 * 4 + 4 + 4);  // x [8/2, 4], lr, step
  CHECK(ada.memory.fits());
  const SimResult adam = simulate(lower(build(true), mesh, layout), h);
  CHECK(adam.memory.optimizer == 2 * 32 * 4);  // m and v of each local block
  CHECK(adam.optimizer == "adamw");
  // The two update nodes are priced in the optimizer phase, from their OpDef costs.
  CHECK(std::count_if(ada.ops.begin(), ada.ops.end(), [](const SimOp& op) { return op.kind == OpKind::adafactor_update; }) == 2);
  h.hbm_bytes = 100;
  const SimResult small = simulate(lower(build(false), mesh, layout), h);
  CHECK_FALSE(small.memory.fits());
  CHECK(small.step_time == Approx(ada.step_time).epsilon(0.5));  // still a full result
}

TEST_CASE("memory: ST-MoE-32B on 1,024 v3 cores fits 16 GiB per core with bf16 activations and per-layer remat",
          "[simulator][memory]") {
  // The paper's run (arXiv 2202.08906): 1,024 TPU v3 cores of 16 GiB, bf16 activations (Mesh-TF
  // activation_dtype) with an f32 router, Adafactor, recompute per layer; Mesh-TF's default layout
  // rules. With f32 activations the residual stream kept for the backward pass is twice as large
  // and the step does not fit (the defect this checks: 20 GiB before activation_dtype existed).
  const Mesh mesh = parse_mesh("data:64,model:16");
  const Layout layout = parse_layout("batch:data,experts:data,d_ff:model,heads:model,vocab:model", mesh);
  const HardwareSpec v3 = load_hardware("tpu_v3", default_hardware_dir());
  const std::string path = (test::source_root() / "experiments/configs/models/st_moe_32b.toml").string();
  auto memory = [&](const std::vector<std::string>& set) {
    const RunConfig rc = load_run_config(path, set);
    const TrainingStep step = build_training_step(rc.model, rc.train, {.mesh = mesh, .layout = layout});
    return simulate(lower(step.graph(), mesh, layout), v3).memory;
  };
  const MemoryUse bf16 = memory({});
  const MemoryUse f32 = memory({"train.activation_dtype=\"f32\""});
  CHECK(bf16.fits());
  CHECK_FALSE(f32.fits());
  CHECK(bf16.parameters == f32.parameters);  // f32 master weights either way
  CHECK(bf16.optimizer == f32.optimizer);
  // Kept activations: the bf16 residual stream is half the f32 one; the router's f32 inputs
  // (upcast at the router) and i32 ids keep their size, so the ratio is a little above 1/2.
  CHECK(bf16.activations / f32.activations > 0.5);
  CHECK(bf16.activations / f32.activations < 0.6);
}

TEST_CASE("the analytical evaluation prices what the event simulation runs", "[simulator][sweep]") {
  const RunConfig c = parse_run_config(small_moe(8), "small_moe.toml");
  const Mesh mesh = parse_mesh("data:4,model:2");
  const HardwareSpec h = load_hardware("tpu_v4", default_hardware_dir());
  for (const char* text : {"batch:data,experts:data,d_ff:model,heads:model", "batch:data", "d_ff:model,vocab:model", ""}) {
    INFO(text);
    const Layout layout = parse_layout(text, mesh);
    const TrainingStep full = build_training_step(c.model, c.train, {.mesh = mesh, .layout = layout});
    LayoutEvaluator eval(full.graph(), mesh, h, {}, /*fusion=*/false);
    const LayoutScore a = eval.evaluate(layout);
    // Without fusion the analytic estimate prices op by op: the event simulation with --no-fusion.
    const SimResult s = simulate(lower(full.graph(), mesh, layout), h, SimOptions{.fusion = false});
    CHECK(a.compute == Approx(s.compute_bound + s.memory_bound).epsilon(1e-9));
    CHECK(a.comm == Approx(s.all_to_all + s.all_reduce + s.other_comm).epsilon(1e-9));
    CHECK(a.all_to_all_bytes == Approx(s.all_to_all_bytes).epsilon(1e-9));
    CHECK(a.memory.parameters == Approx(s.memory.parameters));
    CHECK(a.memory.optimizer == Approx(s.memory.optimizer));
    // The estimate lies between the busiest stream and everything in series.
    CHECK(a.step <= a.compute + a.comm + 1e-12);
    CHECK(s.step_time <= a.compute + a.comm + 1e-9);

    // With fusion (the default) it prices the fusion groups simulate prices: exactly where no
    // collective cuts a group (the replicated layout has none), else between the event
    // simulation's fused compute (which also fuses the pieces around a collective) and op by op.
    LayoutEvaluator fused_eval(full.graph(), mesh, h);
    const LayoutScore af = fused_eval.evaluate(layout);
    const SimResult sf = simulate(lower(full.graph(), mesh, layout), h, SimOptions{.fusion = true});
    const double sim_fused = sf.compute_bound + sf.memory_bound;
    if (std::string(text).empty()) CHECK(af.compute == Approx(sim_fused).epsilon(1e-9));
    CHECK(af.compute >= sim_fused * (1 - 1e-9));
    CHECK(af.compute < a.compute);  // fusion saves HBM passes (and CSE the duplicate casts)
    CHECK(af.comm == Approx(a.comm).epsilon(1e-12));
  }
  // A reduced build (one layer of each kind, weighted) stands for the full model.
  RunConfig four = parse_run_config(small_moe(8), "small_moe.toml", {"model.layers=4"});
  const Layout layout = parse_layout("batch:data,experts:data,d_ff:model", mesh);
  const TrainingStep big = build_training_step(four.model, four.train, {.mesh = mesh, .layout = layout});
  const TrainingStep reduced = build_training_step(four.model, four.train, {.mesh = mesh, .layout = layout}, /*reduced=*/true);
  CHECK(reduced.graph().nodes.size() < big.graph().nodes.size());
  LayoutEvaluator e_big(big.graph(), mesh, h, {}, /*fusion=*/false);
  LayoutEvaluator e_red(reduced.graph(), mesh, h, reduced.weights, /*fusion=*/false);
  const LayoutScore sb = e_big.evaluate(layout), sr = e_red.evaluate(layout);
  // Every node of a kept layer, its parameters' optimizer updates included, weighs its layers:
  // only the global gradient norm's sum over the per-parameter terms (one add per parameter) is
  // not weighted, hence the tolerance.
  CHECK(sr.compute == Approx(sb.compute).epsilon(1e-3));
  CHECK(sr.comm == Approx(sb.comm).epsilon(1e-6));
  CHECK(sr.memory.parameters == Approx(sb.memory.parameters).epsilon(1e-6));
  CHECK(sr.memory.optimizer == Approx(sb.memory.optimizer).epsilon(1e-6));
  // With fusion a group is weighted as its root: the few groups that span a layer boundary (a
  // layer's last residual add fused into the next layer's norm) or CSE across layers make the
  // reduced build differ a little more (measured 0.21 %).
  LayoutEvaluator f_big(big.graph(), mesh, h), f_red(reduced.graph(), mesh, h, reduced.weights);
  CHECK(f_red.evaluate(layout).compute == Approx(f_big.evaluate(layout).compute).epsilon(5e-3));
  CHECK(big.model_flops > 0);
  CHECK(reduced.model_flops == 0);  // not computed for layout search (it builds the full model)
}

TEST_CASE("sweep: every legal layout; those that fit first by step time, the rest by memory", "[simulator][sweep]") {
  const Mesh mesh = parse_mesh("data:4,model:2");
  const auto all = enumerate_layouts({"batch", "d_ff"}, mesh);
  CHECK(all.size() == 9);
  CHECK(to_string(all[0]).empty());
  CHECK(to_string(all[8]) == "batch:model,d_ff:model");
  const RunConfig c = parse_run_config(small_moe(8), "small_moe.toml");
  const TrainingStep step = build_training_step(c.model, c.train, {.mesh = mesh, .layout = parse_layout("batch:data", mesh)});
  HardwareSpec h = load_hardware("tpu_v4", default_hardware_dir());
  LayoutEvaluator eval(step.graph(), mesh, h);
  CHECK_THAT(eval.legality(parse_layout("d_model:data,d_ff:data", mesh)), Contains("both map to mesh axis 'data'"));
  std::vector<LayoutScore> scores;
  for (const Layout& l : enumerate_layouts(default_sweep_dims(step.graph()), mesh))
    if (routing_batch_split(mesh, l) == 4 && eval.legality(l).empty()) scores.push_back(eval.evaluate(l));
  REQUIRE(scores.size() > 10);
  // With HBM for only half the layouts, the others are marked and rank last.
  std::vector<double> totals;
  for (const LayoutScore& s : scores) totals.push_back(s.memory.total());
  std::sort(totals.begin(), totals.end());
  const double cap = totals[totals.size() / 2];
  for (LayoutScore& s : scores) s.memory.capacity = cap;
  rank_layouts(scores);
  bool seen_misfit = false;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!scores[i].memory.fits()) seen_misfit = true;
    if (seen_misfit) CHECK_FALSE(scores[i].memory.fits());
    if (i > 0 && scores[i].memory.fits() && scores[i - 1].memory.fits()) CHECK(scores[i - 1].step <= scores[i].step);
    if (i > 0 && !scores[i].memory.fits() && !scores[i - 1].memory.fits())
      CHECK(scores[i - 1].memory.total() <= scores[i].memory.total());
  }
  CHECK(seen_misfit);
  {  // Nothing fits: no step time makes a layout "best"; the first is the one needing least memory.
    std::vector<LayoutScore> none = scores;
    for (LayoutScore& s : none) s.memory.capacity = totals.front() / 2;
    rank_layouts(none);
    CHECK(none.front().memory.total() == totals.front());
  }
  const std::string csv = sweep_csv(scores);
  CHECK_THAT(csv, Contains("rank,mesh,layout,fits,step_s"));
  CHECK_THAT(csv, Contains(",\"data:4,model:2\",\""));
  std::vector<std::string> meshes;
  for (const Mesh& m : meshes_like(mesh)) meshes.push_back(to_string(m));
  CHECK(meshes == std::vector<std::string>{"data:1,model:8", "data:2,model:4", "data:4,model:2", "data:8,model:1"});
  CHECK_THAT(csv, Contains(",yes,"));
  CHECK_THAT(csv, Contains(",no,"));
}

TEST_CASE("MoE: raising the train capacity factor raises step time and all-to-all bytes", "[simulator][moe]") {
  const RunConfig lo = parse_run_config(small_moe(8), "small_moe.toml", {"moe.cf_train=1.25"});
  const RunConfig hi = parse_run_config(small_moe(8), "small_moe.toml", {"moe.cf_train=2.0"});
  const char* layout = "batch:data,experts:data";
  const SimResult a = simulate_model(lo, "data:8", layout);
  const SimResult b = simulate_model(hi, "data:8", layout);
  REQUIRE(a.all_to_all_bytes > 0);
  // Capacity floor(256·CF/8): 40 -> 64 slots per expert and group: the buffers grow by 64/40.
  CHECK(b.all_to_all_bytes == Approx(a.all_to_all_bytes * 64.0 / 40.0));
  CHECK(b.all_to_all > a.all_to_all);
  CHECK(b.step_time > a.step_time);
}

TEST_CASE("MoE: more experts at fixed tokens per chip leave per-chip all-to-all bytes unchanged", "[simulator][moe]") {
  // ST-MoE footnote 10: the all-to-all moves tokens·k·CF·d_model per chip, whatever E is.
  const char* layout = "batch:data,experts:data";
  const SimResult e8 = simulate_model(parse_run_config(small_moe(8), "m.toml"), "data:8", layout);
  const SimResult e16 = simulate_model(parse_run_config(small_moe(16), "m.toml"), "data:8", layout);
  const SimResult e32 = simulate_model(parse_run_config(small_moe(32), "m.toml"), "data:8", layout);
  REQUIRE(e8.all_to_all_bytes > 0);
  CHECK(e16.all_to_all_bytes == Approx(e8.all_to_all_bytes));
  CHECK(e32.all_to_all_bytes == Approx(e8.all_to_all_bytes));
  // With experts and chips doubled together (twice the batch: tokens per chip fixed) the payload
  // per chip is the same; the bytes sent grow from 7/8 to 15/16 of it (what stays on the chip).
  const SimResult wide = simulate_model(parse_run_config(small_moe(16, 64), "m.toml"), "data:16", layout);
  auto payload = [](const SimResult& r) {
    double b = 0;
    for (const SimOp& op : r.ops)
      if (op.kind == OpKind::all_to_all) b += op.cost.bytes_read;
    return b;
  };
  CHECK(payload(wide) == Approx(payload(e8)));
  CHECK(wide.all_to_all_bytes == Approx(e8.all_to_all_bytes * (15.0 / 16) / (7.0 / 8)));
}

TEST_CASE("simulate refuses a mesh larger than the pod", "[simulator]") {
  const RunConfig c = parse_run_config(small_moe(8), "m.toml");
  CHECK_THROWS_WITH(simulate_model(c, "data:512", "batch:data", "tpu_v5e"),
                    Contains("mesh 'data:512' has 512 devices, more than the pod: a tpu_v5e pod has 256 devices"));
}

TEST_CASE("collective blocks: MPI packs a split or concatenation along an inner dim, and all_reduce copies its input",
          "[simulator][collective]") {
  // x [a 4, b 6] f32 = 96 bytes over 2 members.
  const TensorType x{{{"a", 4}, {"b", 6}}, DType::f32};
  const std::string dim_a = "a", dim_b = "b";  // named, not literals (GCC 12's -Werror=restrict false positive)
  CollectiveAttrs outer;  // along the outermost dim: blocks are contiguous, nothing to copy
  outer.gather_dim = outer.scatter_dim = dim_a;
  CHECK(staging_bytes(OpKind::all_gather, outer, x, 2).unpack == 0);
  CHECK(staging_bytes(OpKind::reduce_scatter, outer, x, 2).pack == 0);
  CollectiveAttrs inner;  // along b: [4][n][...] must be brought to [n][4][...]
  inner.gather_dim = inner.scatter_dim = dim_b;
  CHECK(staging_bytes(OpKind::all_gather, inner, x, 2).unpack == 2 * 96);  // the gathered array
  CHECK(staging_bytes(OpKind::reduce_scatter, inner, x, 2).pack == 96);
  CollectiveAttrs a2a;  // scatter a (outermost: no pack), gather b (a block's outer extent 2: unpack)
  a2a.scatter_dim = dim_a;
  a2a.gather_dim = dim_b;
  const StagingBytes t = staging_bytes(OpKind::all_to_all, a2a, x, 2);
  CHECK(t.pack == 0);
  CHECK(t.unpack == 96);
  a2a.scatter_dim = dim_b;  // scatter b: pack; gather a: a block's outer extent is 1, no unpack
  a2a.gather_dim = dim_a;
  CHECK(staging_bytes(OpKind::all_to_all, a2a, x, 2).pack == 96);
  CHECK(staging_bytes(OpKind::all_to_all, a2a, x, 2).unpack == 0);
  CHECK(staging_bytes(OpKind::all_reduce, {}, x, 2).pack == 96);  // copied into the buffer reduced in place
  CHECK(staging_bytes(OpKind::all_reduce, {}, x, 1).pack == 0);   // no group, no collective
}

TEST_CASE("MPI backing: a collective pays its staging copies and the latency of what was streamed since the last one",
          "[simulator][collective]") {
  // a = x·2 (reads and writes 4 MB) -> r1 = all_reduce(a) -> r2 = all_reduce(r1) over data:4.
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 1'000'000}});
  Expr a = scale(x, 2.0);
  Expr r1 = all_reduce(a, {{"data", 4}});
  Expr r2 = all_reduce(r1, {{"data", 4}});
  b.output("r2", r2);
  Lowered L;
  L.graph = g;
  L.mesh = parse_mesh("data:4");
  HardwareSpec hw = simple_chip();
  hw.hbm_bandwidth = 1e10;  // a memcpy of 4 MB: 8 MB of traffic, 0.8 ms
  const SimResult plain = simulate(L, hw, SimOptions{.fusion = false});
  const double r1_plain = op_of(plain, g, r1.id).duration;
  CHECK(op_of(plain, g, r1.id).comm.staging == 0);

  // The copy into the buffer MPI reduces in place: an element-wise pass over 4 MB.
  hw.staged_collectives = true;
  const SimResult staged = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(op_of(staged, g, r1.id).comm.staging == Approx(8e6 / 1e10));
  CHECK(op_of(staged, g, r1.id).duration == Approx(r1_plain + 8e-4));

  // Streaming: `a` moved 8 MB before r1 (10 µs by the curve, log-linear between 4 MB at 0 s and
  // 16 MB at 20 µs); r2 follows r1 with nothing streamed in between (the curve's first point: 0).
  hw.staged_collectives = false;
  hw.latency_after_streaming.points = {{4e6, 0.0}, {16e6, 20e-6}};
  const SimResult cold = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(op_of(cold, g, r1.id).duration - r1_plain == Approx(10e-6));
  CHECK(op_of(cold, g, r1.id).comm.latency - op_of(plain, g, r1.id).comm.latency == Approx(10e-6));
  CHECK(op_of(cold, g, r2.id).duration == Approx(op_of(plain, g, r2.id).duration));
}

namespace {

// A graph on data:4 (its collectives' axis), as lower() would hand it to simulate.
Lowered on_data4(const Graph& g) {
  Lowered L;
  L.graph = g;
  L.mesh = parse_mesh("data:4");
  return L;
}

// simple_chip with a CPU MPI backing's two paths: eager messages up to 4 KiB per peer. Single
// copies' cold cost log-linear from 4 MB (0 s) to 16 MB (20 µs), a quarter shared with every
// collective; eager messages' from 4 MB (0 s) to 16 MB (40 µs), half shared.
HardwareSpec two_paths_chip() {
  HardwareSpec hw = simple_chip();
  hw.latency_after_streaming.points = {{4e6, 0.0}, {16e6, 20e-6}};
  hw.eager_limit = 4096;
  hw.eager_latency_after_streaming.points = {{4e6, 0.0}, {16e6, 40e-6}};
  hw.copy_path_share = 0.25;
  hw.eager_path_share = 0.5;
  return hw;
}

// The start of the cold-cost tests' programs: x [n 1e6] and y [m 16] over data:4, a = x·2 (8 MB
// streamed) -> r1 = all_reduce(a) (a 4 MB message: a single copy) -> b = r1·2 (8 MB).
struct ColdChain {
  Expr y, r1, b;
};
ColdChain cold_chain(Builder& bl) {
  Expr x = bl.input("x", {{"n", 1'000'000}});
  Expr y = bl.input("y", {{"m", 16}});
  Expr a = scale(x, 2.0);
  Expr r1 = all_reduce(a, {{"data", 4}});
  return {y, r1, scale(r1, 2.0)};
}

// A collective's α terms in a run above the plain run's (its cold cost), for one program.
struct ColdCost {
  const Graph& g;
  const SimResult& plain;
  double operator()(const SimResult& r, Expr v) const {
    return op_of(r, g, v.id).comm.latency - op_of(plain, g, v.id).comm.latency;
  }
};

}  // namespace

TEST_CASE("MPI backing: a collective's cold cost counts its shared part from any collective, the rest from its kind",
          "[simulator][collective]") {
  // cold_chain, then k = reduce_scatter(y) (16 B to each peer: eager) -> e = all_gather(y) (64 B:
  // eager) -> c = b·2 (8 MB) -> r2 = all_reduce(c) (single copy). two_paths_chip.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr k = reduce_scatter(y, {{"data", 4}}, "m");
  Expr e = all_gather(y, {{"data", 4}}, "m");
  Expr c = scale(b, 2.0);
  Expr r2 = all_reduce(c, {{"data", 4}});
  bl.output("r2", r2);
  bl.output("k", k);
  bl.output("e", e);
  const Lowered L = on_data4(g);
  const SimResult plain = simulate(L, simple_chip(), SimOptions{.fusion = false});
  HardwareSpec hw = two_paths_chip();
  const SimResult cold = simulate(L, hw, SimOptions{.fusion = false});
  const ColdCost extra{g, plain};
  CHECK(op_of(cold, g, r1.id).message_bytes == 4e6);
  CHECK(op_of(cold, g, k.id).message_bytes == 16);
  CHECK(op_of(cold, g, e.id).message_bytes == 64);
  // r2: shared part 8 MB since e (10 µs), its own 16 MB since the all_reduce r1 (20 µs).
  CHECK(extra(cold, r2) == Approx(0.25 * 10e-6 + 0.75 * 20e-6));
  // k, on the eager curve: shared 8 MB since r1 (20 µs), its own since the step before's k, the
  // whole 24 MB step (40 µs, the curve's last point).
  CHECK(extra(cold, k) == Approx(0.5 * 20e-6 + 0.5 * 40e-6));
  // e right after k: the shared part warm; its own the whole step.
  CHECK(extra(cold, e) == Approx(0.5 * 40e-6));
  // r1 counts from the step before, where r2 was the last collective of any kind and of its own:
  // 8 MB (a) for both parts.
  CHECK(extra(cold, r1) == Approx(10e-6));
  // k's own part counts from the step before's k (24 MB), not from the all_reduces (8 MB).
  CHECK(extra(cold, k) > extra(cold, r1));

  // eager_limit 0: one path, every message on latency_after_streaming with eager_path_share.
  hw.eager_limit = 0;
  const SimResult one = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(one, r2) == Approx(0.5 * 10e-6 + 0.5 * 20e-6));
  CHECK(extra(one, e) == Approx(0.5 * 20e-6));
}

TEST_CASE("MPI backing: on the eager path the share a call warms is its pair's, the parts nested by recency",
          "[simulator][collective]") {
  // cold_chain, then ar = all_reduce(y) (64 B: eager) -> c = b·2 (8 MB) -> k = reduce_scatter(y)
  // and e = all_gather(y) (eager) right after it. two_paths_chip: the eager curve 0 at 4 MB, 20 µs
  // at 8 MB, 40 µs from 16 MB; half of it shared when no pair says otherwise. The step streams
  // 24 MB (a, b, c), so a kind's last call of the step before is 24 MB back.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr ar = all_reduce(y, {{"data", 4}});
  Expr c = scale(b, 2.0);
  Expr k = reduce_scatter(y, {{"data", 4}}, "m");
  Expr e = all_gather(y, {{"data", 4}}, "m");
  bl.output("c", c);
  bl.output("ar", ar);
  bl.output("k", k);
  bl.output("e", e);
  const Lowered L = on_data4(g);
  const SimResult plain = simulate(L, simple_chip(), SimOptions{.fusion = false});
  HardwareSpec hw = two_paths_chip();
  const ColdCost extra{g, plain};
  // Without pairs: half since any collective, half since its own kind's last call.
  const SimResult shared = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(shared, k) == Approx(0.5 * 20e-6 + 0.5 * 40e-6));  // ar 8 MB back; its own 24 MB
  CHECK(extra(shared, e) == Approx(0.5 * 0 + 0.5 * 40e-6));      // k just before; its own 24 MB
  // The reduce_scatter shares all of its state with the all_reduce (Open MPI, two local ranks:
  // 3.9 µs after one, 3.8 µs after itself, 10.8 µs cold); the all_gather 0.2 with the all_reduce
  // and 0.3 with the reduce_scatter.
  for (OpKind kind : {OpKind::reduce_scatter, OpKind::all_gather}) hw.collective_kinds[kind].hop_latency = hw.hop_latency;
  hw.collective_kinds[OpKind::reduce_scatter].warmed_by = {{OpKind::all_reduce, 1.0}};
  hw.collective_kinds[OpKind::all_gather].warmed_by = {{OpKind::all_reduce, 0.2}, {OpKind::reduce_scatter, 0.3}};
  const SimResult pairs = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(pairs, k) == Approx(20e-6));            // all of it since ar, 8 MB back
  CHECK(extra(pairs, e) == Approx(0.3 * 0 + 0.7 * 40e-6));  // k's 0.3 warm; ar's 0.2 is inside it
  CHECK(extra(pairs, ar) == Approx(extra(shared, ar)));     // its own kind (r1) was the last call
  // Nested by recency: with the all_reduce warming 0.8, the 0.3 k warms is priced since k (0), the
  // next 0.5 since ar (8 MB back: 20 µs), the last 0.2 since the step before's all_gather (40 µs).
  hw.collective_kinds[OpKind::all_gather].warmed_by = {{OpKind::all_reduce, 0.8}, {OpKind::reduce_scatter, 0.3}};
  CHECK(extra(simulate(L, hw, SimOptions{.fusion = false}), e) == Approx(0.3 * 0 + 0.5 * 20e-6 + 0.2 * 40e-6));
}

TEST_CASE("MPI backing: a single copy's warm share counts from any single copy, not from an eager message",
          "[simulator][collective]") {
  // cold_chain, then e = all_gather(y) (64 B: eager) -> s = reduce_scatter(b) (1 MB to each peer:
  // a single copy). two_paths_chip, half of a single copy's cold cost warmed by any single copy.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr e = all_gather(y, {{"data", 4}}, "m");
  Expr s = reduce_scatter(b, {{"data", 4}}, "n");
  bl.output("s", s);
  bl.output("e", e);
  const Lowered L = on_data4(g);
  const SimResult plain = simulate(L, simple_chip(), SimOptions{.fusion = false});
  HardwareSpec hw = two_paths_chip();
  hw.copy_warm_share = 0.5;
  const SimResult cold = simulate(L, hw, SimOptions{.fusion = false});
  const ColdCost extra{g, plain};
  CHECK(op_of(cold, g, s.id).message_bytes == 1e6);
  // s: any collective (e) just before: 0; the last single copy (r1) 8 MB before: 10 µs; its own
  // kind the whole 16 MB step before: 20 µs.
  CHECK(extra(cold, s) == Approx(0.25 * 0 + 0.5 * 10e-6 + 0.25 * 20e-6));
  // r1: s (the step before's last collective and single copy) 8 MB before; its own 16 MB.
  CHECK(extra(cold, r1) == Approx(0.25 * 10e-6 + 0.5 * 10e-6 + 0.25 * 20e-6));
  // Without the warm share, the half warmed by r1 is s's own again.
  hw.copy_warm_share = 0;
  const SimResult own = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(own, s) == Approx(0.25 * 0 + 0.75 * 20e-6));
}

TEST_CASE("MPI backing: after less streaming than the samples had, a collective is cheaper, by at most its α terms",
          "[simulator][collective]") {
  // cold_chain, then k = reduce_scatter(y) (16 B to each peer; after b, 8 MB since r1) and r2 =
  // all_reduce(b) right after k. One path, all shared, 5 µs per hop; the curve -3 µs at 1 MB
  // (warmer than the samples, which had more streaming before them), 0 at 4 MB, 20 µs at 16 MB.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr k = reduce_scatter(y, {{"data", 4}}, "m");
  Expr r2 = all_reduce(b, {{"data", 4}});
  bl.output("r2", r2);
  bl.output("k", k);
  const Lowered L = on_data4(g);
  HardwareSpec hw = simple_chip();
  hw.hop_latency = 5e-6;
  const SimResult plain = simulate(L, hw, SimOptions{.fusion = false});
  hw.latency_after_streaming.points = {{1e6, -3e-6}, {4e6, 0.0}, {16e6, 20e-6}};
  const SimResult cold = simulate(L, hw, SimOptions{.fusion = false});
  const ColdCost extra{g, plain};
  // k: 8 MB since r1, 10 µs (log-linear between 4 MB and 16 MB).
  CHECK(extra(cold, k) == Approx(10e-6));
  // r2: nothing streamed since k (the curve's first point).
  CHECK(extra(cold, r2) == Approx(-3e-6));
  CHECK(op_of(cold, g, r2.id).duration == Approx(op_of(plain, g, r2.id).duration - 3e-6));
  // A curve below the α terms takes them back and no more: the transfer stays.
  hw.latency_after_streaming.points = {{1e6, -1.0}, {4e6, 0.0}};
  const SimResult floor = simulate(L, hw, SimOptions{.fusion = false});
  const CollectiveTime r2_plain = op_of(plain, g, r2.id).comm;
  REQUIRE(r2_plain.latency > 3e-6);
  REQUIRE(r2_plain.bandwidth > 0);
  CHECK(op_of(floor, g, r2.id).comm.latency == Approx(0).margin(1e-15));
  CHECK(op_of(floor, g, r2.id).comm.total == Approx(r2_plain.total - r2_plain.latency));
}

TEST_CASE("MPI backing: a kind's cold cost is the curve times its own scale, below and above the samples'",
          "[simulator][collective]") {
  // cold_chain, then k = reduce_scatter(y) (16 B to each peer; 8 MB since r1) -> ar =
  // all_reduce(y) right after k. One path, all shared, 5 µs per hop; the curve (the all_gather's)
  // -3 µs at 1 MB (warmer than the samples), 0 at 4 MB, 20 µs at 16 MB.
  Graph g;
  Builder bl(g);
  const auto [y, r1, b] = cold_chain(bl);
  Expr k = reduce_scatter(y, {{"data", 4}}, "m");
  Expr ar = all_reduce(y, {{"data", 4}});
  bl.output("b", b);
  bl.output("k", k);
  bl.output("ar", ar);
  const Lowered L = on_data4(g);
  HardwareSpec hw = simple_chip();
  hw.hop_latency = 5e-6;
  const SimResult plain = simulate(L, hw, SimOptions{.fusion = false});
  hw.latency_after_streaming.points = {{1e6, -3e-6}, {4e6, 0.0}, {16e6, 20e-6}};
  const ColdCost extra{g, plain};
  const SimResult curve = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(curve, k) == Approx(10e-6));   // 8 MB since r1
  CHECK(extra(curve, ar) == Approx(-3e-6));  // right after k
  CHECK(extra(curve, r1) == Approx(10e-6));  // 8 MB (b) since the step before's ar
  // The reduce_scatter's state past the samples' streaming half the all_gather's; the all_reduce's
  // inside it twice the all_gather's, past it 1.5 times (two local ranks: a reduce_scatter 4.1 µs
  // hot against its 16.7 µs price, an all_gather 4.9 µs against 12.6 µs).
  hw.collective_kinds[OpKind::reduce_scatter] = {.hop_latency = hw.hop_latency, .efficiency_by_size = {},
                                                 .warmed_by = {}, .curve_scale_below = 3, .curve_scale_above = 0.5};
  hw.collective_kinds[OpKind::all_reduce] = {.hop_latency = hw.hop_latency, .efficiency_by_size = {},
                                             .warmed_by = {}, .curve_scale_below = 2, .curve_scale_above = 1.5};
  const SimResult scaled = simulate(L, hw, SimOptions{.fusion = false});
  CHECK(extra(scaled, k) == Approx(0.5 * 10e-6));
  CHECK(extra(scaled, ar) == Approx(2 * -3e-6));
  CHECK(extra(scaled, r1) == Approx(1.5 * 10e-6));
}

TEST_CASE("sy executor backing: one-hot einsums priced over their nonzeros, every op its own kernel",
          "[simulator][sparse]") {
  // p = one_hot(ids [n 2048], e 8) [n, e]: 2,048 nonzeros of 16,384 (kept as a list: its only
  // reader is an einsum). y = einsum(p, x [n, d 64]) -> [e, d].
  Graph g;
  Builder b(g);
  Expr ids = b.input("ids", {{"n", 2048}}, DType::i32);
  Expr x = b.input("x", {{"n", 2048}, {"d", 64}});
  Expr p = one_hot(ids, {"e", 8});
  Expr y = einsum(p, x, {"e", "d"});
  Expr z = relu(y);
  Expr w = relu(z);
  b.output("w", w);
  Lowered L;
  L.graph = g;
  L.mesh = parse_mesh("data:1");
  HardwareSpec hw = simple_chip();
  const SimResult tpu = simulate(L, hw);  // XLA: the dense dot_general, relu·relu fused
  CHECK(op_of(tpu, g, y.id).own_cost.flops == 2.0 * 8 * 64 * 2048);
  CHECK(op_of(tpu, g, p.id).own_cost.bytes_written == 2048.0 * 8 * 4);
  CHECK(op_of(tpu, g, z.id).fused >= 0);

  hw.sparse_einsums = true;
  hw.fuses = false;
  const SimResult cpu = simulate(L, hw);
  // Sparse × dense: each of the 2,048 nonzeros adds a 64-wide row of x.
  const OpCost& e = op_of(cpu, g, y.id).own_cost;
  CHECK(e.flops == 2.0 * 2048 * 64);
  CHECK(e.bytes_read == 12.0 * 2048 + 2048.0 * 64 * 4);  // p's list (int64 index + f32 value) and x
  CHECK(e.bytes_written == 8.0 * 64 * 4);
  CHECK(op_of(cpu, g, p.id).own_cost.bytes_written == 12.0 * 2048);  // the list, never the dense [n, e]
  CHECK(op_of(cpu, g, z.id).fused < 0);  // no fusion on this backing
  CHECK(op_of(cpu, g, w.id).fused < 0);
  CHECK(cpu.fused.empty());

  // The plan's bound and the executor's decision rule: too dense a one-hot (depth 2: half of the
  // elements nonzero) takes the dense path.
  Graph g2;
  Builder b2(g2);
  Expr ids2 = b2.input("ids", {{"n", 2048}}, DType::i32);
  Expr x2 = b2.input("x", {{"n", 2048}, {"d", 64}});
  Expr y2 = einsum(one_hot(ids2, {"e", 2}), x2, {"e", "d"});
  b2.output("y", y2);
  Lowered L2;
  L2.graph = g2;
  L2.mesh = parse_mesh("data:1");
  CHECK(op_of(simulate(L2, hw), g2, y2.id).own_cost.flops == 2.0 * 2 * 64 * 2048);
}
