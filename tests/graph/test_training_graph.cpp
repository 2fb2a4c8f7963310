// graph/models/training_graph: the one builder of the training step (executor and simulator).
#include "graph/models/training_graph.hpp"
#include "tests/source_root.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace sy;

namespace {

RunConfig tiny(std::vector<std::string> sets = {}) {
  return load_run_config((test::source_root() / "experiments/configs/models/tiny.toml").string(), sets);
}

TrainingGraph build(const RunConfig& c, const TrainingGraphOptions& opts = {}) {
  return build_training_graph(c.model, c.train, opts);
}

// Routing groups of the first MoE layer (the encoder's: 2 x 8 tokens) of `c` on the mesh.
int64_t groups_of(const RunConfig& c, const std::string& mesh_text, const std::string& layout_text) {
  const Mesh mesh = parse_mesh(mesh_text);
  TrainingGraphOptions o;
  o.mesh = mesh;
  o.layout = parse_layout(layout_text, mesh);
  const TrainingGraph t = build(c, o);
  REQUIRE_FALSE(t.model.moe_layers.empty());
  return t.model.moe_layers.front().groups;  // the encoder's sparse layer
}

int64_t count_kind(const Graph& g, OpKind k) {
  return std::count_if(g.nodes.begin(), g.nodes.end(), [&](const Node& n) { return n.kind == k; });
}

}  // namespace

TEST_CASE("training graph: one routing group per data-parallel shard unless group_size is set", "[training_graph]") {
  // tiny: 16 encoder tokens per step, no group_size.
  CHECK(routing_batch_split(parse_mesh("data:2"), parse_layout("batch:data", parse_mesh("data:2"))) == 2);
  CHECK(routing_batch_split(parse_mesh("data:2"), parse_layout("experts:data", parse_mesh("data:2"))) == 1);
  CHECK(routing_batch_split(Mesh{}, Layout{}) == 1);
  CHECK(groups_of(tiny(), "data:1", "") == 1);
  CHECK(groups_of(tiny(), "data:2", "batch:data") == 2);
  CHECK(groups_of(tiny(), "data:2", "batch:data,experts:data") == 2);
  CHECK(groups_of(tiny(), "data:2", "experts:data") == 1);  // batch not split: one shard
  CHECK(groups_of(tiny(), "model:2", "d_ff:model,heads:model") == 1);
  CHECK(groups_of(tiny(), "data:2,model:2", "batch:data,d_ff:model") == 2);
  // group_size fixes G wherever it can (tokens / group_size, rounded up to a multiple of the split).
  CHECK(groups_of(tiny({"moe.group_size=4"}), "data:1", "") == 4);
  CHECK(groups_of(tiny({"moe.group_size=4"}), "data:2", "batch:data") == 4);
  CHECK(groups_of(tiny({"moe.group_size=16"}), "data:2", "batch:data") == 2);
}

TEST_CASE("training graph: one update per trainable parameter, frozen ones get none", "[training_graph]") {
  const TrainingGraph all = build(tiny());
  const Graph& g = all.model.graph;
  CHECK(static_cast<size_t>(count_kind(g, OpKind::adafactor_update)) == g.parameters().size());
  CHECK(all.slots.size() == g.parameters().size());
  CHECK(all.frozen.empty());
  CHECK(all.lr.valid());
  CHECK(g.find_output("optimizer/clip_scale").has_value());
  // Each update sits in its parameter's scope (a reduced build weighs it by its layer).
  for (const OptimizerSlot& s : all.slots) CHECK(g.node(g.value(s.new_param).producer).scope == "optimizer/" + g.value(s.param).name);
  // Factored Adafactor state of a matrix: v_row drops the last dim, v_col the one before.
  const auto slots = optimizer_state_slots(OptimizerConfig{}, {{"d_model", 16}, {"d_ff", 32}});
  REQUIRE(slots.size() == 2);
  CHECK(slots[0].first == "v_row");
  CHECK(slots[0].second == Shape{{"d_model", 16}});
  CHECK(slots[1].second == Shape{{"d_ff", 32}});
  CHECK(is_optimizer_state("optimizer/decoder/layer_00/ffn/wi/v_row"));
  CHECK_FALSE(is_optimizer_state("optimizer/lr"));
  CHECK_FALSE(is_optimizer_state("decoder/layer_00/ffn/wi"));

  const TrainingGraph adamw = build(tiny({"train.optimizer=adamw"}));
  CHECK(static_cast<size_t>(count_kind(adamw.model.graph, OpKind::adamw_update)) == adamw.model.graph.parameters().size());

  const TrainingGraph frozen = build(tiny({"train.trainable=moe"}));
  CHECK_FALSE(frozen.frozen.empty());
  CHECK(frozen.slots.size() + frozen.frozen.size() == frozen.model.graph.parameters().size());
  CHECK(static_cast<size_t>(count_kind(frozen.model.graph, OpKind::adafactor_update)) == frozen.slots.size());

  TrainingGraphOptions no_opt;
  no_opt.optimizer = false;
  const TrainingGraph bare = build(tiny(), no_opt);
  CHECK(count_kind(bare.model.graph, OpKind::adafactor_update) == 0);
  CHECK_FALSE(bare.lr.valid());
  TrainingGraphOptions eval;
  eval.mode = Mode::eval;
  const TrainingGraph e = build(tiny(), eval);
  CHECK(std::none_of(e.model.graph.nodes.begin(), e.model.graph.nodes.end(), [](const Node& n) { return n.backward; }));
  CHECK(e.model.graph.find_output("accuracy").has_value());
}

TEST_CASE("training graph: a rematerialised layer reads its forward values only through after", "[training_graph][remat]") {
  // Remat (graph/autodiff.hpp): with "layer", every backward node in a layer's scope reads values
  // computed there by recomputed copies, and anything else of the forward pass (the layer's input,
  // parameters, the step) through an `after` barrier on the gradient reaching the layer; so the
  // forward values a layer's backward reads are its inputs alone, and nothing can run early.
  for (const std::string remat : {"none", "layer", "dots"}) {
    INFO("remat=" << remat);
    const TrainingGraph t = build(tiny({"model.dropout=0.1", "train.remat=" + remat}));
    const Graph& g = t.model.graph;
    int64_t forward_reads = 0;  // forward values read directly by a layer's backward nodes (not `after`)
    for (const Node& n : g.nodes) {
      if (!n.backward || n.kind == OpKind::after || remat_segment(n.scope).empty()) continue;
      for (ValueId v : n.inputs) {
        const Value& val = g.value(v);
        if (val.role != ValueRole::computed || !g.node(val.producer).backward) ++forward_reads;
      }
    }
    if (remat == "none") {
      CHECK(forward_reads > 0);
      CHECK(count_kind(g, OpKind::after) == 0);
    } else {
      CHECK(forward_reads == 0);
      CHECK(count_kind(g, OpKind::after) > 0);
    }
    // The step returns updates, not gradients.
    for (const GraphOutput& o : g.outputs) CHECK_FALSE(o.name.starts_with("grad/"));
  }
  CHECK(remat_segment("decoder/layer_03/moe/router") == "decoder/layer_03");
  CHECK(remat_segment("encoder/final_norm").empty());
  CHECK(remat_segment("layer_1") == "layer_1");
}
