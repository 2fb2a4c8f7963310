// The executor's fast kernels against the reference forwards (ops/*.cpp): oneDNN einsum, TBB
// elementwise ops with broadcasting, reductions, softmax, transpose/reshape.
//
// Tolerances (error = max |fast - ref| / max(1, |ref|)):
//   f32 elementwise, reductions, softmax: 1e-6. The fast kernels compute in f32 (sums in double)
//     and the reference in double; both round to f32 on store, so they differ by a few f32 ulps
//     (2^-24 ~ 6e-8 relative) at most.
//   f32 einsum: 3e-5. oneDNN accumulates in f32: error <= K * 2^-24 * sum_k |a_k b_k|, about
//     2.4e-5 for K = 40 with |a|, |b| <= 1 (sum |a b| ~ K/4); the reference sums in double.
//   bf16 results: 2^-7 (+ the f32 accumulation term for einsum). bf16 keeps 8 significant bits,
//     so adjacent bf16 values are 2^-8..2^-7 apart relative to the value; when the exact result
//     lies near a rounding midpoint the two paths may round to neighbours, one ulp apart.
//     Products of bf16 inputs are exact in f32, so bf16 x bf16 -> f32 needs only the f32 term.
#include "exec_test_util.hpp"

#include "executor/einsum.hpp"
#include "executor/kernels.hpp"
#include "graph/builder.hpp"
#include "graph/op_def.hpp"

#include <cmath>

namespace sy {
namespace {

constexpr double kTolF32 = 1e-6;
constexpr double kTolEinsumF32 = 3e-5;
const double kTolBf16 = std::ldexp(1.0, -7);

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
    if (k) CHECK((k->workspace_bytes() == std::array<int64_t, 3>{0, 0, 0}) == s.in_place);
  }
  test::expect_outputs_match(g, kTolEinsumF32, kTolBf16 + kTolEinsumF32);
}

TEST_CASE("executor einsum: bf16 inputs with an f32 output", "[executor][einsum]") {
  // The graph's einsum takes its output dtype from its inputs, so this kernel mode is checked
  // directly: bf16 x bf16 accumulated and stored in f32.
  const TensorType a{{{"b", 2}, {"m", 17}, {"k", 40}}, DType::bf16};
  const TensorType w{{{"k", 40}, {"n", 23}, {"b", 2}}, DType::bf16};
  const TensorType out{{{"b", 2}, {"n", 23}, {"m", 17}}, DType::f32};
  const EinsumAttrs attrs{{"b", "n", "m"}};
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  auto k = exec::EinsumKernel::make(a, w, out, attrs, engine);
  REQUIRE(k.has_value());
  // out is [b, n, m], so w is the matmul source: [b, n, k] x [b, k, m].
  CHECK(k->swapped());
  CHECK((k->batch() == 2 && k->rows() == 23 && k->cols() == 17 && k->summed() == 40));

  std::mt19937_64 rng(3);
  const Tensor ta = test::random_tensor(a, rng), tw = test::random_tensor(w, rng);
  auto ra = test::to_storage(ta), rw = test::to_storage(tw);
  std::vector<std::byte> rout(static_cast<size_t>(num_bytes(out)));
  std::array<std::vector<std::byte>, 3> ws;
  std::array<std::byte*, 3> ws_ptr{};
  for (size_t i = 0; i < 3; ++i) {
    ws[i].resize(static_cast<size_t>(k->workspace_bytes()[i]));
    ws_ptr[i] = ws[i].data();
  }
  k->run(ra.data(), rw.data(), rout.data(), ws_ptr, stream);

  Tensor want(out);
  const std::vector<const Tensor*> in = {&ta, &tw};
  const std::vector<Tensor*> outs = {&want};
  op_def(OpKind::einsum).forward(attrs, in, outs, false);
  CHECK(test::max_rel_err(test::from_storage(rout, out), want) <= kTolEinsumF32);
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
  b.output("mul not a suffix [b] (reference)", x * y_b);
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
  return g;
}

TEST_CASE("executor elementwise: TBB kernels with broadcasting match the reference", "[executor][elementwise]") {
  const DType dt = GENERATE(DType::f32, DType::bf16);
  INFO("dtype " << dtype_name(dt));
  test::expect_outputs_match(elementwise_graph(dt), kTolF32, kTolBf16);
}

TEST_CASE("executor elementwise: fast path covers same shape and trailing-suffix broadcast", "[executor][elementwise]") {
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
  CHECK_FALSE(fast({{"b", 2}}));            // leading dim: reference
  CHECK_FALSE(fast({{"d", 4}, {"t", 3}}));  // dims reordered: reference
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

}  // namespace
}  // namespace sy
