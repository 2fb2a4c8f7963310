// Einsum as one batched oneDNN matmul. Private to executor/.
//
// The dims of a, b and out are classified by where they occur:
//   batch: in a, b and out      M: in a and out      N: in b and out      K: in a and b (summed)
// The inputs are permuted (TBB copy, skipped when already in order) to
//   A [batch, M, K] x B [batch, K, N] -> C [batch, M, N]
// with batch, M and N dims in out's order and K dims in a's order; one batched matmul runs, and
// C is permuted to out's order when that differs. Dtypes: f32 x f32 -> f32, bf16 x bf16 -> bf16
// or f32 (oneDNN accumulates in f32 and uses AMX for bf16 where the CPU has it). Other dtype
// mixes are converted to f32 during the permutation.
#pragma once

#include "graph/attrs.hpp"
#include "graph/shape.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cstddef>
#include <optional>

namespace sy::exec {

class EinsumKernel {
 public:
  // nullopt when there is no fast path: a dim summed inside one input (in one input only and not
  // in out), an i32 operand, or a dtype combination oneDNN does not implement.
  static std::optional<EinsumKernel> make(const TensorType& a, const TensorType& b, const TensorType& out,
                                          const EinsumAttrs& attrs, const dnnl::engine& engine);

  // Bytes of the temporaries for permuted A, B and C (0: that operand is used in place).
  const std::array<int64_t, 3>& workspace_bytes() const { return ws_bytes_; }

  // out = einsum(a, b); ws[i] points at workspace_bytes()[i] bytes (unused when 0).
  void run(const void* a, const void* b, void* out, const std::array<std::byte*, 3>& ws, dnnl::stream& stream) const;

  // Matmul problem size, for reports and tests.
  int64_t batch() const { return batch_; }
  int64_t m() const { return m_; }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }

 private:
  EinsumKernel() = default;

  TensorType a_, b_, out_;               // as in the graph
  TensorType a_mm_, b_mm_, c_mm_;        // [batch, M, K], [batch, K, N], [batch, M, N] at matmul dtypes
  bool permute_a_ = false, permute_b_ = false, permute_c_ = false;
  std::array<int64_t, 3> ws_bytes_{};
  int64_t batch_ = 1, m_ = 1, n_ = 1, k_ = 1;
  dnnl::engine engine_;
  dnnl::memory::desc a_md_, b_md_, c_md_;
  dnnl::matmul matmul_;
};

}  // namespace sy::exec
