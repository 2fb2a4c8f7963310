// Helpers for the executor tests: random leaves, running a graph on the executor and on the
// reference interpreter, and comparing.
#pragma once

#include "executor/executor.hpp"
#include "graph/verify.hpp"
#include "ops/interpret.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>
#include <map>
#include <random>
#include <string>

namespace sy::test {

// Tolerances of the fast kernels against the reference (error = max |fast - ref| / max(1, |ref|)):
//   f32 elementwise, reductions, softmax: 1e-6. The fast kernels compute in f32 (sums in double)
//     and the reference in double; both round to f32 on store, so they differ by a few f32 ulps
//     (2^-24 ~ 6e-8 relative) at most.
//   f32 einsum: 3e-5. oneDNN accumulates in f32: error <= K * 2^-24 * sum_k |a_k b_k|, about
//     2.4e-5 for K = 40 with |a|, |b| <= 1 (sum |a b| ~ K/4); the reference sums in double.
//   bf16 results: 2^-7 (+ the f32 accumulation term for einsum). bf16 keeps 8 significant bits,
//     so adjacent bf16 values are 2^-8..2^-7 apart relative to the value; when the exact result
//     lies near a rounding midpoint the two paths may round to neighbours, one ulp apart.
//     Products of bf16 inputs are exact in f32, so bf16 x bf16 -> f32 needs only the f32 term.
inline constexpr double kTolF32 = 1e-6;
inline constexpr double kTolEinsumF32 = 3e-5;
inline const double kTolBf16 = std::ldexp(1.0, -7);

// Uniform in [lo, hi), rounded to the tensor's dtype.
inline Tensor random_tensor(const TensorType& t, std::mt19937_64& rng, double lo = -1.0, double hi = 1.0) {
  Tensor r(t);
  std::uniform_real_distribution<double> u(lo, hi);
  for (double& x : r.data) x = round_to(t.dtype, u(rng));
  return r;
}

inline std::map<ValueId, Tensor> random_leaves(const Graph& g, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::map<ValueId, Tensor> leaves;
  for (const Value& v : g.values)
    if (v.role != ValueRole::computed) leaves[v.id] = random_tensor(v.type, rng, lo, hi);
  return leaves;
}

// max_i |x_i - ref_i| / max(1, |ref_i|): the error measure of every tolerance in these tests.
inline double max_rel_err(const Tensor& x, const Tensor& ref) {
  REQUIRE(x.type == ref.type);
  double e = 0;
  for (size_t i = 0; i < x.data.size(); ++i)
    e = std::max(e, std::abs(x.data[i] - ref.data[i]) / std::max(1.0, std::abs(ref.data[i])));
  return e;
}

// A tensor in executor storage (f32: float, bf16: uint16_t, i32: int32_t) and back.
inline std::vector<std::byte> to_storage(const Tensor& t) {
  std::vector<std::byte> r(static_cast<size_t>(num_bytes(t.type)));
  for (size_t i = 0; i < t.data.size(); ++i) {
    switch (t.dtype()) {
      case DType::f32: reinterpret_cast<float*>(r.data())[i] = static_cast<float>(t.data[i]); break;
      case DType::bf16: reinterpret_cast<uint16_t*>(r.data())[i] = f32_to_bf16(static_cast<float>(t.data[i])); break;
      case DType::i32: reinterpret_cast<int32_t*>(r.data())[i] = static_cast<int32_t>(t.data[i]); break;
    }
  }
  return r;
}

inline Tensor from_storage(const std::vector<std::byte>& b, const TensorType& type) {
  Tensor r(type);
  for (size_t i = 0; i < r.data.size(); ++i) {
    switch (type.dtype) {
      case DType::f32: r.data[i] = reinterpret_cast<const float*>(b.data())[i]; break;
      case DType::bf16: r.data[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(b.data())[i]); break;
      case DType::i32: r.data[i] = reinterpret_cast<const int32_t*>(b.data())[i]; break;
    }
  }
  return r;
}

// One graph output computed both ways.
struct OutputPair {
  std::string name;
  Tensor got;   // the executor's
  Tensor want;  // the reference interpreter's
};

// Runs g on an executor and on the reference interpreter with the same leaves: every graph output,
// in order.
inline std::vector<OutputPair> run_both(const Graph& g, const std::map<ValueId, Tensor>& leaves,
                                        ExecutorOptions opts = {}) {
  Executor ex(g, opts);
  for (const auto& [id, t] : leaves) ex.set(id, t);
  ex.run();
  const auto ref = interpret(g, leaves);
  std::vector<OutputPair> out;
  for (const GraphOutput& o : g.outputs) out.push_back({o.name, ex.get(o.value), ref[static_cast<size_t>(o.value.v)]});
  return out;
}

// Runs g both ways with the same random leaves and checks every graph output: f32 outputs within
// tol_f32, bf16 outputs within tol_bf16.
inline void expect_outputs_match(const Graph& g, double tol_f32, double tol_bf16, ExecutorOptions opts = {},
                                 double lo = -1.0, double hi = 1.0, uint64_t seed = 7) {
  verify(g);
  for (const OutputPair& o : run_both(g, random_leaves(g, seed, lo, hi), opts)) {
    const double tol = o.got.dtype() == DType::bf16 ? tol_bf16 : tol_f32;
    INFO("output '" << o.name << "' " << to_string(o.want.type) << " tolerance " << tol);
    CHECK(max_rel_err(o.got, o.want) <= tol);
  }
}

}  // namespace sy::test
