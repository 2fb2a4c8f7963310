// The executor's row kernels for embedding and embedding_grad (executor/index_kernels.cpp) against
// the reference forwards (ops/index.cpp), f32 and bf16.
//
// Tolerance: 0 (bit for bit). The gather copies rows; the gradient sums each vocab row in double
// in token order and rounds once on store, exactly the reference's arithmetic and order. The
// sizes span many TBB tasks (vocab rows and tokens far beyond one task's grain) and the ids
// repeat heavily (a few hot rows, as real token frequencies do), so order matters.
#include "exec_test_util.hpp"

#include "executor/index_kernels.hpp"
#include "graph/builder.hpp"

namespace sy {
namespace {

// ids: i32 in [0, V) with every third id one of four hot rows; floats uniform in [-1, 1].
std::map<ValueId, Tensor> index_leaves(const Graph& g, int64_t V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::map<ValueId, Tensor> leaves;
  for (const Value& v : g.values) {
    if (v.role == ValueRole::computed) continue;
    if (v.type.dtype != DType::i32) {
      leaves[v.id] = test::random_tensor(v.type, rng);
      continue;
    }
    Tensor t(v.type);
    std::uniform_int_distribution<int64_t> any(0, V - 1), hot(0, 3);
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = static_cast<double>(i % 3 == 0 ? hot(rng) : any(rng));
    leaves[v.id] = t;
  }
  return leaves;
}

TEST_CASE("executor embedding and embedding_grad: row kernels equal the reference bit for bit", "[executor][index]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  const Dim B{"batch", 6}, T{"length", 333}, V{"vocab", 1500}, D{"d_model", 72};
  Graph g;
  Builder b(g);
  Expr table = b.parameter("table", {V, D}, dt);
  Expr ids = b.input("ids", {B, T}, DType::i32);
  Expr dy = b.input("dy", {B, T, D}, dt);
  b.output("embedding", embedding(table, ids));
  b.output("embedding_grad", embedding_grad(ids, dy, V));
  const auto leaves = index_leaves(g, V.size, 3);
  Executor ex(g);
  for (const auto& [id, t] : leaves) ex.set(id, t);
  ex.run();
  const auto ref = interpret(g, leaves);
  for (const GraphOutput& o : g.outputs) {
    INFO("output '" << o.name << "'");
    CHECK(test::max_rel_err(ex.get(o.value), ref[static_cast<size_t>(o.value.v)]) == 0.0);
  }
}

TEST_CASE("executor embedding kernels: an id outside the table is left to the reference, which names it",
          "[executor][index]") {
  const TensorType table_t{{{"vocab", 3}, {"d_model", 2}}, DType::f32};
  const TensorType ids_t{{{"length", 2}}, DType::i32};
  const TensorType rows_t{{{"length", 2}, {"d_model", 2}}, DType::f32};
  std::vector<float> table = {1, 2, 3, 4, 5, 6}, rows(4), grad(6);
  std::vector<int32_t> ids = {2, 3};
  CHECK_FALSE(exec::embedding({table.data(), table_t}, {ids.data(), ids_t}, {rows.data(), rows_t}));
  CHECK_FALSE(exec::embedding_grad({ids.data(), ids_t}, {rows.data(), rows_t}, {grad.data(), table_t}));
  ids = {2, 0};
  REQUIRE(exec::embedding({table.data(), table_t}, {ids.data(), ids_t}, {rows.data(), rows_t}));
  CHECK(rows == std::vector<float>{5, 6, 1, 2});
  ids = {2, 2};
  REQUIRE(exec::embedding_grad({ids.data(), ids_t}, {rows.data(), rows_t}, {grad.data(), table_t}));
  CHECK(grad == std::vector<float>{0, 0, 0, 0, 5 + 1, 6 + 2});
}

}  // namespace
}  // namespace sy
