#include "executor/train/optimizer_kernels.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sy::exec {
namespace {

using Range = tbb::blocked_range<int64_t>;

int64_t row_grain(int64_t row) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, row)); }

const float* f32_in(const ConstView& v) { return static_cast<const float*>(v.data); }
float* f32_out(const View& v) { return static_cast<float*>(v.data); }

// Σ over rows of f(row), each row's value computed in parallel, added in row order.
template <typename F>
double sum_rows(int64_t rows, int64_t row_len, F&& f) {
  std::vector<double> part(static_cast<size_t>(rows));
  tbb::parallel_for(Range(0, rows, row_grain(row_len)), [&](const Range& r) {
    for (int64_t i = r.begin(); i < r.end(); ++i) part[static_cast<size_t>(i)] = f(i);
  });
  double s = 0;
  for (double x : part) s += x;
  return s;
}

bool all_f32(const std::vector<ConstView>& in, const std::vector<View>& out, size_t int_input) {
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].type.dtype != (i == int_input ? DType::i32 : DType::f32)) return false;
  for (const View& v : out)
    if (v.type.dtype != DType::f32) return false;
  return true;
}

}  // namespace

bool adafactor_update(const AdafactorAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out) {
  const Shape& shape = in[0].type.shape;
  const bool factored = a.factored && shape.size() >= 2;
  const size_t ns = factored ? 2 : 1;
  if (in.size() != 5 + ns || out.size() != 1 + ns || !all_f32(in, out, 3 + ns)) return false;
  const float* p = f32_in(in[0]);
  const float* g = f32_in(in[1]);
  const double lr = f32_in(in[2 + ns])[0];
  const double t = static_cast<const int32_t*>(in[3 + ns].data)[0];
  const double clip = f32_in(in[4 + ns])[0];
  const double decay = 1.0 - std::pow(t + 1.0, -a.decay_exponent);
  const double mix = 1.0 - decay;
  const int64_t n = num_elements(shape);
  const int64_t C = shape.empty() ? 1 : shape.back().size;  // row length: the last dim
  const int64_t rows = n / C;
  auto sq = [&](int64_t i) {
    const double gc = g[i] * clip;
    return gc * gc + a.epsilon1;
  };

  // Second moments, and per row / column / element the factor u = ĝ · factor (rsqrt of the
  // normalised moments), in double; the state outputs are the f32 roundings of the moments.
  std::vector<double> row_factor, col_factor;  // factored: [O, R], [O, C]
  std::vector<double> inv;                     // unfactored: [N] rsqrt(v')
  int64_t R = 1;
  if (factored) {
    R = shape[shape.size() - 2].size;
    const int64_t O = rows / R;
    const float* vr_old = f32_in(in[2]);
    const float* vc_old = f32_in(in[3]);
    float* vr_out = f32_out(out[1]);
    float* vc_out = f32_out(out[2]);
    std::vector<double> vr(static_cast<size_t>(rows)), vc(static_cast<size_t>(O * C));
    tbb::parallel_for(Range(0, rows, row_grain(C)), [&](const Range& r) {
      for (int64_t row = r.begin(); row < r.end(); ++row) {
        double s = 0;
        for (int64_t c = 0; c < C; ++c) s += sq(row * C + c);
        vr[static_cast<size_t>(row)] = decay * vr_old[row] + mix * s / static_cast<double>(C);
        vr_out[row] = static_cast<float>(vr[static_cast<size_t>(row)]);
      }
    });
    // Column sums over blocks of columns, rows in order (contiguous reads, deterministic sums).
    constexpr int64_t kBlock = 256;
    const int64_t blocks = (C + kBlock - 1) / kBlock;
    tbb::parallel_for(Range(0, O * blocks, row_grain(R * kBlock)), [&](const Range& r) {
      std::vector<double> acc(static_cast<size_t>(kBlock));
      for (int64_t ob = r.begin(); ob < r.end(); ++ob) {
        const int64_t o = ob / blocks, c0 = (ob % blocks) * kBlock, c1 = std::min(C, c0 + kBlock);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t row = 0; row < R; ++row)
          for (int64_t c = c0; c < c1; ++c) acc[static_cast<size_t>(c - c0)] += sq((o * R + row) * C + c);
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t oc = o * C + c;
          vc[static_cast<size_t>(oc)] = decay * vc_old[oc] + mix * acc[static_cast<size_t>(c - c0)] / static_cast<double>(R);
          vc_out[oc] = static_cast<float>(vc[static_cast<size_t>(oc)]);
        }
      }
    });
    row_factor.resize(static_cast<size_t>(rows));
    col_factor.resize(static_cast<size_t>(O * C));
    for (int64_t o = 0; o < O; ++o) {
      double s = 0;
      for (int64_t row = 0; row < R; ++row) s += vr[static_cast<size_t>(o * R + row)];
      const double row_mean = s / static_cast<double>(R);
      for (int64_t row = 0; row < R; ++row)
        row_factor[static_cast<size_t>(o * R + row)] = 1.0 / std::sqrt(vr[static_cast<size_t>(o * R + row)] / row_mean);
    }
    for (size_t i = 0; i < vc.size(); ++i) col_factor[i] = 1.0 / std::sqrt(vc[i]);
  } else {
    const float* v_old = f32_in(in[2]);
    float* v_out = f32_out(out[1]);
    inv.resize(static_cast<size_t>(n));
    tbb::parallel_for(Range(0, n, row_grain(1)), [&](const Range& r) {
      for (int64_t i = r.begin(); i < r.end(); ++i) {
        const double v = decay * v_old[i] + mix * sq(i);
        v_out[i] = static_cast<float>(v);
        inv[static_cast<size_t>(i)] = 1.0 / std::sqrt(v);
      }
    });
  }
  // The unclipped update u of element i (row `row`, column c).
  auto u = [&](int64_t row, int64_t c) {
    const int64_t i = row * C + c;
    const double gc = g[i] * clip;
    if (!factored) return gc * inv[static_cast<size_t>(i)];
    return gc * row_factor[static_cast<size_t>(row)] * col_factor[static_cast<size_t>((row / R) * C + c)];
  };
  double denom = 1.0;
  if (a.clip_threshold > 0) {
    const double ss = sum_rows(rows, C, [&](int64_t row) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) {
        const double x = u(row, c);
        s += x * x;
      }
      return s;
    });
    denom = std::max(1.0, std::sqrt(ss / static_cast<double>(n)) / a.clip_threshold);
  }
  double step_size = lr;
  if (a.parameter_scale) {
    const double ss = sum_rows(rows, C, [&](int64_t row) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += static_cast<double>(p[row * C + c]) * p[row * C + c];
      return s;
    });
    step_size = lr * std::max(std::sqrt(ss / static_cast<double>(n)), a.epsilon2);
  }
  float* p_out = f32_out(out[0]);
  tbb::parallel_for(Range(0, rows, row_grain(C)), [&](const Range& r) {
    for (int64_t row = r.begin(); row < r.end(); ++row)
      for (int64_t c = 0; c < C; ++c)
        p_out[row * C + c] = static_cast<float>(p[row * C + c] - step_size * (u(row, c) / denom));
  });
  return true;
}

namespace {

// The AdamW update of elements [0, n): double arithmetic per element, compiled for AVX-512, AVX2
// and baseline x86-64 (same IEEE operations in every variant, no FMA contraction: same bits).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void adamw_elements(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out,
                    float* v_out, int64_t n, double beta1, double beta2, double epsilon, double weight_decay, double lr,
                    double clip, double c1, double c2) {
  for (int64_t i = 0; i < n; ++i) {
    const double gc = g[i] * clip;
    const double m_new = beta1 * m[i] + (1.0 - beta1) * gc;
    const double v_new = beta2 * v[i] + (1.0 - beta2) * gc * gc;
    m_out[i] = static_cast<float>(m_new);
    v_out[i] = static_cast<float>(v_new);
    p_out[i] = static_cast<float>(p[i] - lr * ((m_new / c1) / (std::sqrt(v_new / c2) + epsilon) + weight_decay * p[i]));
  }
}

}  // namespace

bool adamw_update(const AdamWAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out) {
  if (in.size() != 7 || out.size() != 3 || !all_f32(in, out, 5)) return false;
  const float* p = f32_in(in[0]);
  const float* g = f32_in(in[1]);
  const float* m = f32_in(in[2]);
  const float* v = f32_in(in[3]);
  const double lr = f32_in(in[4])[0];
  const double t = static_cast<const int32_t*>(in[5].data)[0];
  const double clip = f32_in(in[6])[0];
  const double c1 = 1.0 - std::pow(a.beta1, t + 1.0);
  const double c2 = 1.0 - std::pow(a.beta2, t + 1.0);
  float* p_out = f32_out(out[0]);
  float* m_out = f32_out(out[1]);
  float* v_out = f32_out(out[2]);
  const int64_t n = num_elements(in[0].type.shape);
  tbb::parallel_for(Range(0, n, row_grain(1)), [&](const Range& r) {
    const int64_t i = r.begin();
    adamw_elements(p + i, g + i, m + i, v + i, p_out + i, m_out + i, v_out + i, r.end() - i, a.beta1, a.beta2, a.epsilon,
                   a.weight_decay, lr, clip, c1, c2);
  });
  return true;
}

}  // namespace sy::exec
