// The executor's fast kernels against the reference forwards (ops/*.cpp): oneDNN einsum, TBB
// elementwise ops with broadcasting, reductions, softmax, transpose/reshape, losses and norms
// (the sparse einsums: test_sparse_einsum.cpp).
// Tolerances: tests/executor/exec_test_util.hpp.
#include "exec_test_util.hpp"

#include "executor/einsum.hpp"
#include "executor/kernels.hpp"
#include "graph/builder.hpp"
#include "graph/op_def.hpp"

#include <cmath>
#include <limits>
#include <map>

namespace sy {
namespace {

using test::kTolBf16;
using test::kTolEinsumF32;
using test::kTolF32;

struct EinsumShape {
  std::string name;
  Shape a, b;
  std::vector<std::string> out;
  bool fast;      // expected to run on oneDNN (else: a dim summed within one input -> reference)
  bool in_place;  // expected to read both inputs in place and write out directly (no workspace)
};

const std::vector<EinsumShape>& einsum_shapes() {
  static const std::vector<EinsumShape> s = {
      {"plain [m,k] x [k,n] -> [m,n]", {{"m", 33}, {"k", 40}}, {{"k", 40}, {"n", 24}}, {"m", "n"}, true, true},
      {"batched [b,m,k] x [b,k,n] -> [b,m,n]", {{"b", 3}, {"m", 20}, {"k", 16}}, {{"b", 3}, {"k", 16}, {"n", 12}},
       {"b", "m", "n"}, true, true},
      {"transposed [k,m] x [n,k] -> [n,m]", {{"k", 40}, {"m", 33}}, {{"n", 24}, {"k", 40}}, {"n", "m"}, true, true},
      {"weight gradient [b,t,d] x [b,t,f] -> [d,f]", {{"b", 2}, {"t", 9}, {"d", 16}}, {{"b", 2}, {"t", 9}, {"f", 12}},
       {"d", "f"}, true, true},
      {"two summed dims [t,h,d] x [h,d,e] -> [e,t]", {{"t", 6}, {"h", 4}, {"d", 8}}, {{"h", 4}, {"d", 8}, {"e", 10}},
       {"e", "t"}, true, true},
      {"summed dims in another order [m,h,d] x [d,h,n] -> [m,n]", {{"m", 6}, {"h", 4}, {"d", 8}},
       {{"d", 8}, {"h", 4}, {"n", 10}}, {"m", "n"}, true, false},
      {"batch dim inside [c,e,d] x [d,e,f] -> [e,c,f]", {{"c", 6}, {"e", 4}, {"d", 16}}, {{"d", 16}, {"e", 4}, {"f", 12}},
       {"e", "c", "f"}, true, false},
      {"output permuted [b,m,k] x [b,k,n] -> [m,b,n]", {{"b", 3}, {"m", 5}, {"k", 16}}, {{"b", 3}, {"k", 16}, {"n", 7}},
       {"m", "b", "n"}, true, false},
      {"outer product [m] x [n] -> [m,n]", {{"m", 7}}, {{"n", 5}}, {"m", "n"}, true, true},
      {"dot [k] x [k] -> []", {{"k", 40}}, {{"k", 40}}, {}, true, true},
      {"summed within a [m,k,r] x [k,n] -> [m,n]", {{"m", 9}, {"k", 8}, {"r", 3}}, {{"k", 8}, {"n", 5}}, {"m", "n"}, false,
       false},
  };
  return s;
}

TEST_CASE("executor einsum: oneDNN matmul matches the reference forward", "[executor][einsum]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  Graph g;
  Builder b(g);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  for (const EinsumShape& s : einsum_shapes()) {
    Expr x = b.input("a: " + s.name, s.a, dt);
    Expr y = b.input("b: " + s.name, s.b, dt);
    Expr z = einsum(x, y, s.out);
    b.output(s.name, z);
    INFO(s.name);
    const auto k = exec::EinsumKernel::make(x.type(), y.type(), z.type(), EinsumAttrs{s.out}, engine);
    CHECK(k.has_value() == s.fast);
    // bf16 without AMX: the operands are widened to f32 in a workspace (never in place).
    const bool in_place = s.in_place && (dt == DType::f32 || exec::bf16_matmul_native());
    if (k) CHECK((k->workspace_bytes() == std::array<int64_t, 3>{0, 0, 0}) == in_place);
  }
  test::expect_outputs_match(g, kTolEinsumF32, kTolBf16 + kTolEinsumF32);
}

// Runs kernel k (made on engine) on storage a, b into out (prefilled with NaN, so every element must be written).
std::vector<std::byte> run_kernel(const exec::EinsumKernel& k, const Tensor& a, const Tensor& b, const TensorType& out,
                                  const dnnl::engine& engine) {
  dnnl::stream stream(engine);
  auto ra = test::to_storage(a), rb = test::to_storage(b);
  Tensor nan(out);
  std::fill(nan.data.begin(), nan.data.end(), std::nan(""));
  auto rout = test::to_storage(nan);
  std::array<std::vector<std::byte>, 3> ws;
  std::array<std::byte*, 3> ws_ptr{};
  for (size_t i = 0; i < 3; ++i) {
    ws[i].resize(static_cast<size_t>(k.workspace_bytes()[i]));
    ws_ptr[i] = ws[i].data();
  }
  k.run(ra.data(), rb.data(), rout.data(), ws_ptr, stream);
  return rout;
}

TEST_CASE("executor einsum: bf16 inputs with an f32 output", "[executor][einsum]") {
  // The graph's einsum takes its output dtype from its inputs, so this kernel mode is checked
  // directly: bf16 x bf16 accumulated and stored in f32.
  const TensorType a{{{"b", 2}, {"m", 17}, {"k", 40}}, DType::bf16};
  const TensorType w{{{"k", 40}, {"n", 23}, {"b", 2}}, DType::bf16};
  const TensorType out{{{"b", 2}, {"n", 23}, {"m", 17}}, DType::f32};
  const EinsumAttrs attrs{{"b", "n", "m"}};
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  auto k = exec::EinsumKernel::make(a, w, out, attrs, engine);
  REQUIRE(k.has_value());
  // out is [b, n, m], so w is the matmul source: [b, n, k] x [b, k, m].
  CHECK(k->swapped());
  CHECK((k->batch() == 2 && k->rows() == 23 && k->cols() == 17 && k->summed() == 40));

  std::mt19937_64 rng(3);
  const Tensor ta = test::random_tensor(a, rng), tw = test::random_tensor(w, rng);
  const auto rout = run_kernel(*k, ta, tw, out, engine);

  Tensor want(out);
  const std::vector<const Tensor*> in = {&ta, &tw};
  const std::vector<Tensor*> outs = {&want};
  op_def(OpKind::einsum).forward(attrs, in, outs, false);
  CHECK(test::max_rel_err(test::from_storage(rout, out), want) <= kTolEinsumF32);
}

TEST_CASE("executor einsum: zero tails of expert buffers are skipped, the result unchanged", "[executor][einsum]") {
  // Expert buffers [e, c, d] whose slots past each expert's count are zero, as dispatch leaves
  // them: counts 300 (full), 130, 0 (an empty expert) and 7 of capacity 300. The forward
  // [e,c,d] x [e,d,f] -> [e,c,f] skips rows, the weight gradient [e,c,f] x [e,c,d] -> [e,f,d]
  // skips summed slots. A NaN in the other operand's row 0 shows which products were skipped:
  // the full matmul spreads it into every row of out (0 · NaN = NaN); past the (64-rounded)
  // extent out must be exactly zero. Elsewhere out matches the reference einsum within the f32
  // matmul tolerance (or bf16's).
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  const int64_t E = 4, C = 300, D = 70, F = 90;
  const std::vector<int64_t> count = {300, 130, 0, 7};
  const Dim e{"e", E}, c{"c", C}, d{"d", D}, f{"f", F};
  std::mt19937_64 rng(11);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  auto zero_tails = [&](Tensor& x) {  // x [e, c, ...]: slots >= count[e] set to zero
    const int64_t row = static_cast<int64_t>(x.data.size()) / (E * C);
    for (int64_t i = 0; i < E; ++i)
      for (int64_t j = count[static_cast<size_t>(i)]; j < C; ++j)
        std::fill_n(x.data.begin() + (i * C + j) * row, row, 0.0);
  };
  const double tol = dt == DType::f32 ? kTolEinsumF32 : kTolBf16 + kTolEinsumF32;
  auto check = [&](const Tensor& a, const Tensor& b, const TensorType& out_t, const std::vector<std::string>& out,
                   bool rows_skipped) {
    const auto k = exec::EinsumKernel::make(a.type, b.type, out_t, EinsumAttrs{out}, engine);
    REQUIRE(k.has_value());
    const Tensor got = test::from_storage(run_kernel(*k, a, b, out_t, engine), out_t);
    Tensor want(out_t);
    const std::vector<const Tensor*> in = {&a, &b};
    const std::vector<Tensor*> outs = {&want};
    op_def(OpKind::einsum).forward(EinsumAttrs{out}, in, outs, false);
    const int64_t row = num_elements(out_t.shape) / (E * (rows_skipped ? C : F));
    int64_t zeros = 0;
    for (int64_t i = 0; i < E; ++i) {
      const int64_t n = count[static_cast<size_t>(i)];
      const int64_t extent = n == 0 ? 0 : std::min<int64_t>(C, (n + 63) / 64 * 64);
      for (int64_t j = 0; j < (rows_skipped ? C : F); ++j)
        for (int64_t l = 0; l < row; ++l) {
          const size_t at = static_cast<size_t>((i * (rows_skipped ? C : F) + j) * row + l);
          if (rows_skipped && j >= extent) {
            zeros += got.data[at] == 0.0;
          } else if (!rows_skipped && n == 0) {
            zeros += got.data[at] == 0.0;  // an empty expert's gradient: nothing summed
          } else if (!std::isnan(want.data[at])) {
            CHECK(std::abs(got.data[at] - want.data[at]) <= tol * std::max(1.0, std::abs(want.data[at])));
          }
        }
    }
    return zeros;
  };
  SECTION("forward: rows past the count") {
    Tensor x = test::random_tensor({{e, c, d}, dt}, rng);
    zero_tails(x);
    Tensor w = test::random_tensor({{e, d, f}, dt}, rng);
    for (int64_t i = 0; i < E; ++i) w.data[static_cast<size_t>(i * D * F)] = std::nan("");  // w[i, 0, 0]
    // Skipped rows: expert 1 past 192, expert 2 all, expert 3 past 64; each row has F elements.
    CHECK(check(x, w, {{e, c, f}, dt}, {"e", "c", "f"}, true) == (C - 192 + C + C - 64) * F);
  }
  SECTION("weight gradient: summed slots past the count") {
    Tensor h = test::random_tensor({{e, c, f}, dt}, rng);
    zero_tails(h);
    Tensor x = test::random_tensor({{e, c, d}, dt}, rng);
    for (int64_t i = 0; i < E; ++i) x.data[static_cast<size_t>((i * C + C - 1) * D)] = std::nan("");  // x[i, C-1, 0]
    // Only expert 0 (full) sums slot C-1: the others' gradients hold no NaN, the empty one is zero.
    CHECK(check(h, x, {{e, f, d}, dt}, {"e", "f", "d"}, false) == F * D);
  }
}

// Graph over x [B, T, D] (24576 elements: several TBB tasks) with one output per op and
// broadcast shape, each computed from leaves so errors do not compound.
Graph elementwise_graph(DType dt) {
  Graph g;
  Builder b(g);
  const Dim B{"b", 4}, T{"t", 64}, D{"d", 96};
  Expr x = b.input("x", {B, T, D}, dt);
  Expr y = b.input("y", {B, T, D}, dt);
  Expr y_d = b.input("y_d", {D}, dt);
  Expr y_td = b.input("y_td", {T, D}, dt);
  Expr y_b = b.input("y_b", {B}, dt);
  Expr y_s = b.input("y_scalar", {}, dt);
  Expr pos = scale(y, 0.5, 1.5);  // [1, 2): a divisor and a log/rsqrt argument
  b.output("add same shape", x + y);
  b.output("sub suffix [d]", x - y_d);
  b.output("mul suffix [t,d]", x * y_td);
  b.output("mul leading [b]", x * y_b);
  b.output("sub leading [b,t]", x - b.input("y_bt", {B, T}, dt));
  b.output("mul reordered [d,t]", x * b.input("y_dt", {D, T}, dt));
  b.output("div not contiguous [b,d]", x / scale(b.input("y_bd", {B, D}, dt), 0.5, 1.5));
  b.output("add scalar", x + y_s);
  b.output("div", x / pos);
  b.output("div suffix [d]", x / scale(y_d, 0.5, 1.5));
  b.output("scale", scale(x, 1.0 / 3.0, 0.25));
  b.output("relu", relu(x));
  b.output("gelu", gelu(x));
  b.output("exp", exp(x));
  b.output("log", log(pos));
  b.output("rsqrt", rsqrt(pos));
  b.output("relu_grad", relu_grad(x, y));
  b.output("gelu_grad", gelu_grad(x, y));
  const DType other = dt == DType::f32 ? DType::bf16 : DType::f32;
  b.output("cast", cast(x, other));
  b.output("cast back", cast(cast(x, other), dt));
  // Vectorised blocks of 1024 with a partial last block: x2 has 10656 elements, its [t,d]
  // suffix 3552 (three blocks and a part) repeated over b.
  const Dim T2{"t", 37};
  Expr x2 = b.input("x2", {{"b", 3}, T2, D}, dt);
  b.output("add same shape, partial block", x2 + b.input("y2", {{"b", 3}, T2, D}, dt));
  b.output("mul suffix [t,d], partial block", x2 * b.input("y2_td", {T2, D}, dt));
  b.output("div suffix [t,d], partial block", x2 / scale(b.input("y2_td_div", {T2, D}, dt), 0.5, 1.5));
  b.output("sub suffix [t,d], partial block", x2 - b.input("y2_td_sub", {T2, D}, dt));
  b.output("cast, partial block", cast(x2, other));
  // Rows longer than a block (2500 = two blocks and a part) with b constant along them (a
  // per-row scale or max) or contiguous along them.
  Expr x3 = b.input("x3", {{"b", 2}, {"t", 3}, {"d", 2500}}, dt);
  b.output("sub leading [b,t], long rows", x3 - b.input("y3_bt", {{"b", 2}, {"t", 3}}, dt));
  b.output("mul not contiguous [b,d], long rows", x3 * b.input("y3_bd", {{"b", 2}, {"d", 2500}}, dt));
  return g;
}

TEST_CASE("executor elementwise: TBB kernels with broadcasting match the reference", "[executor][elementwise]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  test::expect_outputs_match(elementwise_graph(dt), kTolF32, kTolBf16);
}

TEST_CASE("executor elementwise: fast path covers every broadcast by name", "[executor][elementwise]") {
  const TensorType a{{{"b", 2}, {"t", 3}, {"d", 4}}, DType::f32};
  std::vector<std::byte> buf_a(static_cast<size_t>(num_bytes(a))), buf_y(buf_a.size()), buf_b(buf_a.size());
  auto fast = [&](Shape b_shape) {
    const TensorType b{std::move(b_shape), DType::f32};
    return exec::binary(exec::BinaryOp::add, {buf_a.data(), a}, {buf_b.data(), b}, {buf_y.data(), a});
  };
  CHECK(fast(a.shape));
  CHECK(fast({{"d", 4}}));
  CHECK(fast({{"t", 3}, {"d", 4}}));
  CHECK(fast({}));
  CHECK(fast({{"b", 2}}));                  // leading dim
  CHECK(fast({{"b", 2}, {"t", 3}}));        // leading dims (a row broadcast)
  CHECK(fast({{"b", 2}, {"d", 4}}));        // not contiguous
  CHECK(fast({{"d", 4}, {"t", 3}}));        // dims reordered
  CHECK_FALSE(fast({{"d", 5}}));            // size mismatch: the reference reports it
  CHECK_FALSE(fast({{"e", 4}}));            // not a dim of a
}

Graph reduce_graph(DType dt) {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"b", 4}, {"t", 12}, {"d", 600}}, dt);  // [B, T, D]
  b.output("sum [d]", sum(x, {"d"}));
  b.output("sum [d,t] (trailing, listed out of order)", sum(x, {"d", "t"}));
  b.output("sum [b] (leading)", sum(x, {"b"}));
  b.output("sum [t] (middle)", sum(x, {"t"}));
  b.output("sum all", sum(x, {"b", "t", "d"}));
  b.output("sum [b,d] (not contiguous: reference)", sum(x, {"b", "d"}));
  b.output("mean [d]", mean(x, {"d"}));
  b.output("mean [b,t]", mean(x, {"b", "t"}));
  b.output("max [d]", max(x, {"d"}));
  b.output("max [t]", max(x, {"t"}));
  b.output("softmax [d] (last dim)", softmax(x, "d"));
  b.output("softmax [t] (reference)", softmax(x, "t"));
  return g;
}

TEST_CASE("executor reductions and softmax match the reference", "[executor][reduce]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  test::expect_outputs_match(reduce_graph(dt), kTolF32, kTolBf16);
}

TEST_CASE("executor reductions: fast path covers contiguous dims, softmax the last dim", "[executor][reduce]") {
  const TensorType x{{{"b", 2}, {"t", 3}, {"d", 4}}, DType::f32};
  std::vector<std::byte> buf_x(static_cast<size_t>(num_bytes(x))), buf_y(buf_x.size());
  auto fast = [&](std::vector<std::string> dims, Shape out) {
    const TensorType y{std::move(out), DType::f32};
    return exec::reduce(exec::ReduceOp::sum, dims, {buf_x.data(), x}, {buf_y.data(), y});
  };
  CHECK(fast({"d"}, {{"b", 2}, {"t", 3}}));
  CHECK(fast({"b", "t"}, {{"d", 4}}));
  CHECK(fast({"t"}, {{"b", 2}, {"d", 4}}));
  CHECK_FALSE(fast({"b", "d"}, {{"t", 3}}));
  CHECK(exec::softmax("d", {buf_x.data(), x}, {buf_y.data(), x}));
  CHECK_FALSE(exec::softmax("t", {buf_x.data(), x}, {buf_y.data(), x}));
}

TEST_CASE("executor transpose and reshape are exact copies", "[executor][layout]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"b", 3}, {"t", 50}, {"d", 130}});
  Expr h = b.input("h", {{"b", 3}, {"t", 50}, {"d", 130}}, DType::bf16);
  b.output("transpose [d,b,t]", transpose(x, {"d", "b", "t"}));
  b.output("transpose bf16 [t,d,b]", transpose(h, {"t", "d", "b"}));
  b.output("reshape", reshape(x, {{"bt", 150}, {"d", 130}}));
  test::expect_outputs_match(g, 0.0, 0.0);
}

// ---- loss, normalisation and vectorised transcendental kernels ----

TEST_CASE("executor loss and norm kernels: cross_entropy, one_hot, rms_norm, softmax match the reference",
          "[executor][loss]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  Graph g;
  Builder b(g);
  const Dim B{"b", 6}, T{"t", 7}, V{"v", 1000}, D{"d", 96};
  Expr logits = b.input("logits", {B, T, V}, dt);
  Expr labels = b.input("labels", {B, T}, DType::i32);
  Expr ids = b.input("ids", {B, T}, DType::i32);  // some outside [0, V): zero rows
  Expr x = b.input("x", {B, T, D}, dt);
  Expr gain = b.input("gain", {D}, dt);
  b.output("cross_entropy (last dim)", cross_entropy(logits, labels, "v"));
  b.output("cross_entropy (class dim not last: reference)", cross_entropy(transpose(logits, {"v", "b", "t"}), labels, "v"));
  b.output("one_hot f32", one_hot(ids, V));
  b.output("one_hot bf16", one_hot(ids, V, DType::bf16));
  b.output("rms_norm (last dim)", rms_norm(x, gain, "d"));
  b.output("rms_norm (middle dim: reference)", rms_norm(x, b.input("gain_t", {T}, dt), "t"));
  b.output("softmax over a long row", softmax(scale(logits, 30.0), "v"));  // wide range: exp far below 1
  verify(g);

  std::mt19937_64 rng(11);
  std::map<ValueId, Tensor> leaves;
  for (const Value& v : g.values) {
    if (v.role == ValueRole::computed) continue;
    if (v.type.dtype != DType::i32) {
      leaves[v.id] = test::random_tensor(v.type, rng, -3.0, 3.0);
      continue;
    }
    Tensor t(v.type);
    std::uniform_int_distribution<int> id(0, static_cast<int>(V.size) - 1);
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = v.name == "ids" && i % 5 == 0 ? (i % 10 == 0 ? -1 : V.size + 3) : id(rng);
    leaves[v.id] = t;
  }
  for (const test::OutputPair& o : test::run_both(g, leaves)) {
    INFO("output '" << o.name << "'");
    CHECK(test::max_rel_err(o.got, o.want) <= (o.got.dtype() == DType::bf16 ? kTolBf16 : kTolF32));
  }
}

TEST_CASE("executor cross_entropy: an out-of-range label goes to the reference, which names it", "[executor][loss]") {
  const TensorType lt{{{"t", 2}, {"v", 4}}, DType::f32};
  const TensorType it{{{"t", 2}}, DType::i32};
  const TensorType ot{{{"t", 2}}, DType::f32};
  std::vector<float> logits(8, 0.5f), loss(2);
  std::vector<int32_t> labels = {1, 4};
  CHECK_FALSE(exec::cross_entropy("v", {logits.data(), lt}, {labels.data(), it}, {loss.data(), ot}));
  labels[1] = 3;
  REQUIRE(exec::cross_entropy("v", {logits.data(), lt}, {labels.data(), it}, {loss.data(), ot}));
  CHECK(loss[0] == Approx(std::log(4.0)).epsilon(1e-6));
}

TEST_CASE("executor exp and gelu: the vectorised f32 versions at the edges of the range", "[executor][loss]") {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"n", 4096}});
  b.output("exp", exp(x));
  b.output("gelu", gelu(x));
  b.output("gelu_grad", gelu_grad(x, b.input("dy", {{"n", 4096}})));
  std::map<ValueId, Tensor> leaves;
  Tensor xs(g.type(x.id));
  for (size_t i = 0; i < xs.data.size(); ++i)  // -110 .. 95: exp underflows to 0 and overflows to inf
    xs.data[i] = round_to(DType::f32, -110.0 + 205.0 * static_cast<double>(i) / static_cast<double>(xs.data.size()));
  xs.data[100] = 0.0;
  xs.data[101] = -1e-30;
  leaves[x.id] = xs;
  std::mt19937_64 rng(5);
  leaves[*g.find_leaf("dy")] = test::random_tensor(g.type(*g.find_leaf("dy")), rng);
  for (const test::OutputPair& o : test::run_both(g, leaves)) {
    INFO("output '" << o.name << "'");
    for (size_t i = 0; i < o.got.data.size(); ++i) {
      INFO("x = " << xs.data[i]);
      if (std::isinf(o.want.data[i])) CHECK(o.got.data[i] == o.want.data[i]);
      else CHECK(std::abs(o.got.data[i] - o.want.data[i]) <= 4e-7 * std::max(1.0, std::abs(o.want.data[i])));
    }
  }
}

// Softmax and cross-entropy rows exponentiate x - max through exp_nonpositive (executor/vec_math):
// rows of 64 (the vectorised loop, not only its tail) holding -inf (masked positions: 0), -1e9 and
// -1e30 (below the exp's range: 0), an all -inf row and rows with NaN or +inf (NaN wherever the
// reference, in double, gives NaN), in f32 and bf16.
TEST_CASE("executor softmax and cross_entropy: rows with -inf, huge negatives, +inf and NaN match the reference",
          "[executor][loss]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  Graph g;
  Builder b(g);
  const Dim R{"r", 6}, C{"c", 64};
  Expr x = b.input("x", {R, C}, dt);
  Expr labels = b.input("labels", {R}, DType::i32);
  b.output("softmax", softmax(x, "c"));
  b.output("cross_entropy", cross_entropy(x, labels, "c"));
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  Tensor xs(g.type(x.id));
  for (int64_t i = 0; i < 6 * 64; ++i) xs.data[static_cast<size_t>(i)] = round_to(dt, std::sin(0.37 * static_cast<double>(i)) * 5.0);
  auto at = [&](int64_t r, int64_t c) -> double& { return xs.data[static_cast<size_t>(r * 64 + c)]; };
  at(0, 3) = at(0, 40) = -inf;                          // masked positions
  for (int64_t c = 0; c < 64; ++c) at(1, c) = -inf;     // a fully masked row: NaN
  at(2, 5) = -1e9, at(2, 6) = round_to(dt, -1e30), at(2, 63) = 80.0;  // far below the max
  at(3, 10) = nan;                                      // NaN row
  at(4, 7) = inf;                                       // +inf: inf - inf
  at(5, 0) = round_to(dt, -87.0), at(5, 1) = round_to(dt, -88.0);  // near the exp's lower limit
  Tensor ls(g.type(labels.id));
  for (size_t i = 0; i < ls.data.size(); ++i) ls.data[i] = static_cast<double>(i * 7 % 64);
  ls.data[0] = 4;  // not a masked position
  std::map<ValueId, Tensor> leaves{{x.id, xs}, {labels.id, ls}};
  for (const test::OutputPair& o : test::run_both(g, leaves)) {
    const double tol = dt == DType::bf16 && o.name == "softmax" ? kTolBf16 : 4e-7;  // bf16: the output's rounding
    INFO("output '" << o.name << "'");
    for (size_t i = 0; i < o.got.data.size(); ++i) {
      INFO("element " << i);
      if (std::isnan(o.want.data[i])) CHECK(std::isnan(o.got.data[i]));
      else CHECK(std::abs(o.got.data[i] - o.want.data[i]) <= tol * std::max(1.0, std::abs(o.want.data[i])));
    }
  }
}

}  // namespace
}  // namespace sy
