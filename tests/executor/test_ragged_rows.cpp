// The executor's ragged rows (executor/ragged_rows.hpp): expert buffers computed over their routed
// rows only, against the reference (every op through its reference forward, padding and all).
// Tolerances: tests/executor/exec_test_util.hpp.
#include "exec_test_util.hpp"
#include "tests/common/moe_test_graph.hpp"

#include "graph/autodiff.hpp"
#include "graph/builder.hpp"
#include "graph/models/moe.hpp"

namespace sy {
namespace {

using test::kTolBf16;
using test::kTolEinsumF32;

// One group of S = 64 tokens to E = 4 experts with C = 64 slots: token s goes to expert s % 4 at
// slot s / 4, so every expert holds 16 rows and 48 zero rows. dispatch [G, S, E, C] is built from
// its one-hot factors (kept as nonzeros: above kMinSparse), x moves into the expert buffers,
// through relu(x W1) W2 and back; dW = einsum(expert_in, h) sums over the slots.
struct HandRouting {
  static constexpr int64_t S = 64, E = 4, C = 64, D = 8, F = 16;
  Graph g;
  HandRouting() {
    Builder b(g);
    Expr ids_e = b.input("expert_of_token", {{"group", 1}, {"group_size", S}}, DType::i32);
    Expr ids_c = b.input("slot_of_token", {{"group", 1}, {"group_size", S}}, DType::i32);
    Expr x = b.input("x", {{"group", 1}, {"group_size", S}, {"d_model", D}});
    Expr dispatch = einsum(one_hot(ids_e, Dim{"experts", E}), one_hot(ids_c, Dim{"capacity", C}),
                           {"group", "group_size", "experts", "capacity"});
    Expr expert_in = einsum(dispatch, x, {"experts", "group", "capacity", "d_model"});
    Expr w1 = b.parameter("w1", {{"experts", E}, {"d_model", D}, {"d_ff", F}});
    Expr w2 = b.parameter("w2", {{"experts", E}, {"d_ff", F}, {"d_model", D}});
    Expr h = relu(einsum(expert_in, w1, {"experts", "group", "capacity", "d_ff"}));
    Expr y = einsum(h, w2, {"experts", "group", "capacity", "d_model"});
    b.output("out", einsum(dispatch, y, {"group", "group_size", "d_model"}));
    b.output("dw", einsum(expert_in, h, {"experts", "d_model", "d_ff"}));
  }
  std::map<ValueId, Tensor> leaves() const {
    std::map<ValueId, Tensor> l = test::random_leaves(g, 3, -1.0, 1.0);
    for (auto& [id, t] : l) {
      const std::string& name = g.value(id).name;
      for (int64_t s = 0; s < S; ++s) {
        if (name == "expert_of_token") t.data[static_cast<size_t>(s)] = static_cast<double>(s % E);
        if (name == "slot_of_token") t.data[static_cast<size_t>(s)] = static_cast<double>(s / E);
      }
    }
    return l;
  }
};

TEST_CASE("ragged rows: hand routing, each expert's zero rows skipped and the results the reference's",
          "[executor][ragged]") {
  const HandRouting r;
  const auto leaves = r.leaves();
  for (const test::OutputPair& o : test::run_both(r.g, leaves)) {
    INFO(o.name);
    CHECK(test::max_rel_err(o.got, o.want) <= kTolEinsumF32);
  }
  Executor ex(r.g);
  for (const auto& [id, t] : leaves) ex.set(id, t);
  ex.run();
  // Over the tails: x W1 (rows), relu, and dW (summed slots): 3 ops, each over 4 blocks of 64 rows
  // of which 48 are zero. (h W2 is read only by the combine einsum, so it is computed at the
  // dispatched slots alone: a masked sparse path.)
  const Executor::RaggedStats st = ex.ragged_stats();
  CHECK(st.ops == 3);
  CHECK(st.rows == 3 * HandRouting::E * HandRouting::C);
  CHECK(st.rows_skipped == 3 * HandRouting::E * 48);
}

// One training step of the MoE test graph (8 experts, 64 tokens, CF 1.25 unless dropless, `o`'s
// other settings): its outputs against the reference interpreter's, then the executor's ragged
// counters of a run.
Executor::RaggedStats ragged_step(test::MoeTestGraph o) {
  o.experts = 8;
  o.length = 64;
  o.cf = 1.25;
  const Graph g = test::moe_training_graph(o);
  test::expect_outputs_match(g, 1e-4, kTolBf16);
  Executor ex(g);
  for (const auto& [id, t] : test::random_leaves(g, 5, -1.0, 1.0)) ex.set(id, t);
  ex.run();
  return ex.ragged_stats();
}

TEST_CASE("ragged rows: a dropless MoE training step matches the reference and skips most rows", "[executor][ragged]") {
  // Dropless: C = S = 64 slots per expert, 8 experts, top-2: 16 rows each on average, so about three
  // quarters of every expert buffer is zero. GEGLU and ReLU experts; also capacity 1.25 (C = 20).
  const bool dropless = GENERATE(true, false);
  const FfnKind ffn = GENERATE(FfnKind::geglu, FfnKind::relu);
  INFO("dropless " << dropless << " ffn " << (ffn == FfnKind::geglu ? "geglu" : "relu"));
  const Executor::RaggedStats st = ragged_step({.dropless = dropless, .ffn = ffn});
  // ReLU: x Wi and relu forward (h Wo is masked by combine: a sparse path); backward d h = d y_e Wo^T,
  // relu_grad, d x_e = d h Wi^T, and the two weight gradients. GEGLU has more.
  CHECK(st.ops >= 7);
  if (dropless) CHECK(st.rows_skipped >= st.rows / 2);
  else CHECK(st.rows_skipped > 0);
}

TEST_CASE("ragged rows: a group-dispatch MoE training step matches the reference and stays ragged", "[executor][ragged]") {
  // Device-limited routing, 8 experts in 4 groups, M = 2, with group dispatch: the tokens go to
  // group buffers [EG, G, Cg, D] (rows in order: tailed) and from there to the expert buffers
  // [EG, E/EG, G, C, D], reshaped to [E, G, C, D] with their tails.
  const bool dropless = GENERATE(true, false);
  INFO("dropless " << dropless);
  const Executor::RaggedStats st =
      ragged_step({.dropless = dropless, .expert_groups = 4, .route_groups = 2, .group_dispatch = true});
  CHECK(st.ops >= 14);  // 10 when the reshapes between the group and expert buffers dropped the tails
  if (dropless) CHECK(st.rows_skipped >= st.rows / 2);
}

}  // namespace
}  // namespace sy
