// Einsum as one batched oneDNN matmul. Private to executor/.
//
// The dims of a, b and out are classified by where they occur:
//   batch: in a, b and out      X: in a and out      Y: in b and out      K: in a and b (summed)
// One operand becomes the matmul source S [batch, R, K] and the other the weights W [batch, K, C],
// giving [batch, R, C]: (S, W) = (a, b) with R = X, C = Y, or (b, a) with R = Y, C = X when out
// is ordered [batch, Y, X] (so the result needs no permutation). batch, R and C dims keep out's
// order, K dims S's order. An operand whose storage already is [batch, R, K] or [batch, K, R]
// (for W: [batch, K, C] or [batch, C, K]) is read in place through oneDNN strides; otherwise a
// TBB copy permutes it into a workspace. The result is permuted into out's order when that
// differs. Dtypes: f32 x f32 -> f32, bf16 x bf16 -> bf16 or f32 (oneDNN accumulates in f32; bf16
// matmuls run natively where the CPU has bf16 dot products (AVX-512 BF16, AMX), elsewhere the bf16 operands are widened to f32 while
// packing, which is exact, and the f32 matmul's result is rounded to the output dtype); other
// mixes are converted to f32 while permuting.
//
// Zero tails. MoE expert buffers [E, G, C, D] fill their capacity slots in order, so each expert's
// rows past its token count are zero. Before the matmul, run() finds per batch index b the extent
// of S that is not all zero: m_b = 1 + the last row r of S[b, r, :] with a nonzero, and k_b = 1 + the
// last summed index k of S[b, :, k] with a nonzero (a scan from the end that stops at the first
// nonzero, so dense data costs one row and one column). When that removes at least a tenth of the
// multiply-adds, each b runs as its own matmul [m_b, k_b] x [k_b, C] (m_b, k_b rounded up to a
// multiple of 64 so oneDNN's primitive cache serves later steps) and out rows past m_b are zeroed.
// The skipped products are 0 · W: the result equals the full matmul's for finite W (an Inf or NaN
// in W stays out of the zero rows, as in the sparse einsums).
#pragma once

#include "executor/row_tails.hpp"
#include "graph/attrs.hpp"
#include "graph/shape.hpp"

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cstddef>
#include <optional>

namespace sy::exec {

// Whether bf16 x bf16 einsums run as oneDNN bf16 matmuls (CPUs with AVX-512 BF16 or AMX) rather than widened to
// f32 (see einsum.cpp).
bool bf16_matmul_native();

// How a bf16 x bf16 einsum runs on a CPU with bf16 dot products: native (oneDNN's bf16 matmul) or
// widened to f32 while packing (exact) and run as an f32 matmul. Which is faster is a per-machine,
// per-shape fact (executor/kernel_choice.hpp picks it).
enum class Bf16Path { native, widened };

class EinsumKernel {
 public:
  // nullopt when there is no fast path: a dim summed inside one input (in one input only and not
  // in out), an i32 operand, or a dtype combination oneDNN does not implement. `path` matters only
  // for bf16 x bf16 on a CPU with bf16 dot products (elsewhere bf16 is always widened).
  static std::optional<EinsumKernel> make(const TensorType& a, const TensorType& b, const TensorType& out,
                                          const EinsumAttrs& attrs, const dnnl::engine& engine,
                                          Bf16Path path = Bf16Path::native);

  // Seconds per run of the einsum by each path (bf16 x bf16 on a CPU with bf16 dot products): on
  // operands of its shapes filled with a fixed nonzero pattern (no zero tails), one warm-up run
  // each, then up to `reps` runs of each, alternating (a first pair apart by more than 1.5x ends
  // it); the medians. On the calling thread's OpenMP and TBB settings.
  struct PathTimes {
    double native_s = 0, widened_s = 0;
  };
  static PathTimes time_bf16_paths(const TensorType& a, const TensorType& b, const TensorType& out,
                                   const EinsumAttrs& attrs, const dnnl::engine& engine, int reps = 3);

  // Bytes of the temporaries for permuted S, W and result (0: used in place).
  const std::array<int64_t, 3>& workspace_bytes() const { return ws_bytes_; }

  // out = einsum(a, b); ws[i] points at workspace_bytes()[i] bytes (unused when 0).
  void run(const void* a, const void* b, void* out, const std::array<std::byte*, 3>& ws, dnnl::stream& stream) const;

  // out = einsum(a, b) over the rows before the operands' zero tails (executor/row_tails.hpp; null:
  // no tails), without the scan of run(): when a's or b's tails are rows of the matmul source
  // ([batch, R, K] stored row-major, blocks of R), each block runs as its own matmul over its
  // extent (rounded up to a multiple of 64 within the block, so oneDNN's primitive cache serves
  // later steps) and out gets the same blocks as tails (rows past the extent unspecified); when
  // they are rows of the summed dims (S stored [batch, K, R] or W [batch, K, C]), the products
  // over each block's extent are accumulated and out has no tails. False (nothing run) when the
  // tails line up with neither, an operand or out must be permuted, or W's tails are not zeros in
  // storage in the row case.
  bool run_ragged(const void* a, const void* b, void* out, const RowTails* ta, const RowTails* tb,
                  dnnl::stream& stream, RowTails& out_tails) const;

  // Matmul problem size [batch, R, K] x [batch, K, C], for reports and tests.
  int64_t batch() const { return batch_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t summed() const { return summed_; }
  bool swapped() const { return swap_; }  // b is the matmul source

 private:
  // One matmul argument: its type in the graph, and the packed row-major type it is permuted to
  // when it cannot be read in place.
  struct Operand {
    TensorType graph;
    TensorType packed;
    bool permute = false;
    dnnl::memory::desc md;
  };

  EinsumKernel() = default;

  // Runs the matmul per batch index over the nonzero extent of S when that saves enough (see
  // "Zero tails"); false: nothing was run.
  bool run_trimmed(const void* ps, const void* pw, void* pc, dnnl::stream& stream) const;

  Operand s_, w_, c_;
  bool swap_ = false;
  std::array<int64_t, 3> ws_bytes_{};
  int64_t batch_ = 1, rows_ = 1, cols_ = 1, summed_ = 1;
  std::array<int64_t, 3> s_strides_{}, w_strides_{};  // elements, of the [batch, R, K] / [batch, K, C] views
  DType in_dt_ = DType::f32, c_dt_ = DType::f32;
  dnnl::engine engine_;
  dnnl::matmul matmul_;
};

}  // namespace sy::exec
