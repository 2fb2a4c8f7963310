#include "executor/train/optimizer_kernels.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

// A loop whose iterations touch disjoint elements even when an output is an input itself (an
// update written in place): GCC vectorises it without runtime overlap checks. Clang (the sanitizer
// and fuzz builds) keeps its checks: its assume_safety is an error wherever it cannot vectorise.
#if defined(__clang__)
#define SY_NO_LOOP_CARRIED_DEPENDENCE
#else
#define SY_NO_LOOP_CARRIED_DEPENDENCE _Pragma("GCC ivdep")
#endif

namespace sy::exec {
namespace {

using Range = tbb::blocked_range<int64_t>;

int64_t row_grain(int64_t row) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, row)); }

const float* f32_in(const ConstView& v) { return static_cast<const float*>(v.data); }
float* f32_out(const View& v) { return static_cast<float*>(v.data); }

bool all_f32(const std::vector<ConstView>& in, const std::vector<View>& out, size_t int_input) {
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].type.dtype != (i == int_input ? DType::i32 : DType::f32)) return false;
  for (const View& v : out)
    if (v.type.dtype != DType::f32) return false;
  return true;
}

}  // namespace

// The offset into `sub` (dims ⊆ x's dims, any order) of x's element at each index, as strides
// per dim of x (0 where sub lacks the dim).
std::vector<int64_t> strides_in(const Shape& x, const Shape& sub) {
  std::vector<int64_t> st(x.size(), 0);
  int64_t s = 1;
  for (size_t j = sub.size(); j-- > 0;) {
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i].name == sub[j].name) st[i] = s;
    s *= sub[j].size;
  }
  return st;
}

// Offset of row `row` (an index over all of x's dims but the last) under strides `st`.
int64_t row_offset(const Shape& x, const std::vector<int64_t>& st, int64_t row) {
  int64_t off = 0;
  for (size_t i = x.size() - 1; i-- > 0;) {
    const int64_t n = x[i].size;
    off += (row % n) * st[i];
    row /= n;
  }
  return off;
}

namespace {

// Σ_c x[c]² / d[c] (d null: Σ_c x[c]²) over one row, in double, in 8 lanes added in a fixed order:
// the sum does not depend on the thread count, and the lanes let the loop vectorise (a single
// running sum cannot: its additions are ordered). The scalar loop this replaces held a dependent
// add and one division per divisor per element: 1.5-6 GB/s, a quarter of the step's memory-bound
// time on bench_sim_mpi's dp layout.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
double row_sum_sq(const float* __restrict x, const float* __restrict d, int64_t C) {
  constexpr int kLanes = 8;
  double lane[kLanes] = {};
  int64_t c = 0;
  if (d) {
    for (; c + kLanes <= C; c += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const double v = x[c + j];
        lane[j] += v * v / d[c + j];
      }
    for (int j = 0; c < C; ++c, ++j) lane[j] += static_cast<double>(x[c]) * x[c] / d[c];
  } else {
    for (; c + kLanes <= C; c += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const double v = x[c + j];
        lane[j] += v * v;
      }
    for (int j = 0; c < C; ++c, ++j) lane[j] += static_cast<double>(x[c]) * x[c];
  }
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// acc[c] += f · x[c]² / d[c] (d null: f · x[c]²) for c in [0, n): one row into the column sums.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void add_row_sq(double* __restrict acc, const float* __restrict x, const float* __restrict d, double f, int64_t n) {
  if (d) {
    for (int64_t c = 0; c < n; ++c) {
      const double v = x[c];
      acc[c] += f * (v * v) / d[c];
    }
  } else {
    for (int64_t c = 0; c < n; ++c) {
      const double v = x[c];
      acc[c] += f * (v * v);
    }
  }
}

}  // namespace

// Per row of x (all dims but the last), the divisors split in two: those without x's last dim are
// one number per row (folded with the scale into the row factor f = sc² / Π d), and at most one may
// run along the last dim contiguously (Adafactor's v_col, or the unfactored v). Any other divisor
// layout takes the general loop below it.
bool mean_square(const DimsAttrs&, const std::vector<ConstView>& in, const std::vector<View>& out) {
  if (in.empty() || out.size() != 1 || !all_f32(in, out, in.size())) return false;
  const Shape& xs = in[0].type.shape;
  const float* x = f32_in(in[0]);
  const bool scaled = in.size() > 1 && in[1].type.shape.empty();
  const double sc = scaled ? f32_in(in[1])[0] : 1.0;
  const size_t first_div = scaled ? 2 : 1;
  const int64_t n = num_elements(xs);
  const int64_t ny = num_elements(out[0].type.shape);
  const int64_t C = xs.empty() ? 1 : xs.back().size;
  const int64_t rows = n / C;
  std::vector<const float*> div;
  std::vector<std::vector<int64_t>> div_st;
  for (size_t k = first_div; k < in.size(); ++k) {
    div.push_back(f32_in(in[k]));
    div_st.push_back(strides_in(xs, in[k].type.shape));
  }
  const std::vector<int64_t> y_st = strides_in(xs, out[0].type.shape);
  const int64_t y_c = xs.empty() ? 1 : y_st.back();  // 0: the last dim is averaged over
  // The divisor along the last dim (stride 1), if any; the rest must be constant along it.
  int col_div = -1;
  bool fast = !xs.empty();
  for (size_t k = 0; fast && k < div.size(); ++k) {
    const int64_t dc = div_st[k].back();
    if (dc == 1 && col_div < 0) col_div = static_cast<int>(k);
    else if (dc != 0) fast = false;
  }
  auto div_offsets = [&](int64_t row) {
    std::vector<int64_t> off(div.size());
    if (!xs.empty())
      for (size_t k = 0; k < div.size(); ++k) off[k] = row_offset(xs, div_st[k], row);
    return off;
  };
  // Row `row`'s factor sc² / Π (row divisors) and its column divisor (null: none).
  auto row_terms = [&](int64_t row, double& f, const float*& d) {
    const auto off = div_offsets(row);
    f = sc * sc;
    d = nullptr;
    for (size_t k = 0; k < div.size(); ++k) {
      if (static_cast<int>(k) == col_div) d = div[k] + off[k];
      else f /= div[k][off[k]];
    }
  };
  auto q = [&](int64_t row, int64_t c, const std::vector<int64_t>& d_off) {
    const double v = x[row * C + c] * sc;
    double r = v * v;
    for (size_t k = 0; k < div.size(); ++k) {
      const int64_t dc = xs.empty() ? 0 : div_st[k].back();
      r /= div[k][d_off[k] + c * dc];
    }
    return r;
  };
  std::vector<double> acc(static_cast<size_t>(ny), 0.0);
  if (y_c == 0) {  // each row adds to one output element: row sums in parallel, added in row order
    std::vector<double> part(static_cast<size_t>(rows));
    tbb::parallel_for(Range(0, rows, row_grain(C)), [&](const Range& r) {
      for (int64_t row = r.begin(); row < r.end(); ++row) {
        double s = 0;
        if (fast) {
          double f;
          const float* d;
          row_terms(row, f, d);
          s = f * row_sum_sq(x + row * C, d, C);
        } else {
          const auto d_off = div_offsets(row);
          for (int64_t c = 0; c < C; ++c) s += q(row, c, d_off);
        }
        part[static_cast<size_t>(row)] = s;
      }
    });
    for (int64_t row = 0; row < rows; ++row)
      acc[static_cast<size_t>(row_offset(xs, y_st, row))] += part[static_cast<size_t>(row)];
  } else {  // the output keeps the last dim: blocks of columns in parallel, rows in order
    std::vector<int64_t> y_off(static_cast<size_t>(rows));
    std::vector<std::vector<int64_t>> d_off(static_cast<size_t>(rows));
    std::vector<double> f(static_cast<size_t>(fast ? rows : 0));
    std::vector<const float*> d(static_cast<size_t>(fast ? rows : 0));
    for (int64_t row = 0; row < rows; ++row) {
      y_off[static_cast<size_t>(row)] = xs.empty() ? 0 : row_offset(xs, y_st, row);
      if (fast) row_terms(row, f[static_cast<size_t>(row)], d[static_cast<size_t>(row)]);
      else d_off[static_cast<size_t>(row)] = div_offsets(row);
    }
    constexpr int64_t kBlock = 256;
    const int64_t blocks = (C + kBlock - 1) / kBlock;
    tbb::parallel_for(Range(0, blocks, 1), [&](const Range& r) {
      for (int64_t bl = r.begin(); bl < r.end(); ++bl) {
        const int64_t c0 = bl * kBlock, c1 = std::min(C, c0 + kBlock);
        for (int64_t row = 0; row < rows; ++row) {
          const auto ri = static_cast<size_t>(row);
          if (fast) {
            add_row_sq(acc.data() + y_off[ri] + c0, x + row * C + c0, d[ri] ? d[ri] + c0 : nullptr, f[ri], c1 - c0);
          } else {
            for (int64_t c = c0; c < c1; ++c) acc[static_cast<size_t>(y_off[ri] + c)] += q(row, c, d_off[ri]);
          }
        }
      }
    });
  }
  const double count = static_cast<double>(n) / static_cast<double>(std::max<int64_t>(1, ny));
  float* y = f32_out(out[0]);
  for (int64_t i = 0; i < ny; ++i) y[i] = static_cast<float>(acc[static_cast<size_t>(i)] / count);
  return true;
}

bool adafactor_moment(const AdafactorAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out) {
  if (in.size() != 3 || out.size() != 1 || !all_f32(in, out, 2)) return false;
  const float* v = f32_in(in[0]);
  const float* ms = f32_in(in[1]);
  const double t = static_cast<const int32_t*>(in[2].data)[0];
  const double decay = 1.0 - std::pow(t + 1.0, -a.decay_exponent);
  const double mix = 1.0 - decay;
  float* y = f32_out(out[0]);
  const int64_t n = num_elements(in[0].type.shape);
  tbb::parallel_for(Range(0, n, row_grain(1)), [&](const Range& r) {
SY_NO_LOOP_CARRIED_DEPENDENCE  // y may be v itself (an update in place): each element is read, then written
    for (int64_t i = r.begin(); i < r.end(); ++i) y[i] = static_cast<float>(decay * v[i] + mix * (ms[i] + a.epsilon1));
  });
  return true;
}

bool adafactor_update(const AdafactorAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out) {
  const Shape& shape = in[0].type.shape;
  const bool factored = a.factored && shape.size() >= 2;
  const size_t ns = factored ? 2 : 1;
  const size_t lr_i = 2 + ns, clip_i = lr_i + 1;
  size_t next = clip_i + 1;
  const size_t ms_u = a.clip_threshold > 0 ? next++ : 0;
  const size_t ms_p = a.parameter_scale ? next++ : 0;
  if (in.size() != next || out.size() != 1 || !all_f32(in, out, in.size())) return false;
  const float* p = f32_in(in[0]);
  const float* g = f32_in(in[1]);
  const double lr = f32_in(in[lr_i])[0];
  const double clip = f32_in(in[clip_i])[0];
  const double denom = ms_u ? std::max(1.0, std::sqrt(static_cast<double>(f32_in(in[ms_u])[0])) / a.clip_threshold) : 1.0;
  const double step_size = ms_p ? lr * std::max(std::sqrt(static_cast<double>(f32_in(in[ms_p])[0])), a.epsilon2) : lr;
  const int64_t n = num_elements(shape);
  const int64_t C = shape.empty() ? 1 : shape.back().size;  // row length: the last dim
  const int64_t rows = n / C;
  float* p_out = f32_out(out[0]);
  if (factored) {
    const int64_t R = shape[shape.size() - 2].size;
    const int64_t O = rows / R;
    const float* vr = f32_in(in[2]);  // v_row' / mean_R v_row'
    const float* vc = f32_in(in[3]);
    std::vector<double> row_factor(static_cast<size_t>(rows)), col_factor(static_cast<size_t>(O * C));
    for (int64_t row = 0; row < rows; ++row)
      row_factor[static_cast<size_t>(row)] = 1.0 / std::sqrt(static_cast<double>(vr[row]));
    for (int64_t i = 0; i < O * C; ++i) col_factor[static_cast<size_t>(i)] = 1.0 / std::sqrt(static_cast<double>(vc[i]));
    tbb::parallel_for(Range(0, rows, row_grain(C)), [&](const Range& r) {
      for (int64_t row = r.begin(); row < r.end(); ++row) {
        const double rf = row_factor[static_cast<size_t>(row)];
        const double* cf = col_factor.data() + (row / R) * C;
SY_NO_LOOP_CARRIED_DEPENDENCE  // p_out may be p itself (an update in place): each element is read, then written
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i = row * C + c;
          const double u = g[i] * clip * rf * cf[c];
          p_out[i] = static_cast<float>(p[i] - step_size * (u / denom));
        }
      }
    });
  } else {
    const float* v = f32_in(in[2]);
    tbb::parallel_for(Range(0, n, row_grain(1)), [&](const Range& r) {
SY_NO_LOOP_CARRIED_DEPENDENCE  // p_out may be p itself (an update in place): each element is read, then written
      for (int64_t i = r.begin(); i < r.end(); ++i) {
        const double u = g[i] * clip / std::sqrt(static_cast<double>(v[i]));
        p_out[i] = static_cast<float>(p[i] - step_size * (u / denom));
      }
    });
  }
  return true;
}

namespace {

// The AdamW update of elements [0, n) in f32, compiled for AVX-512, AVX2 and baseline x86-64 (same
// IEEE operations in every variant, no FMA contraction: same bits). Each of m', v', the step and
// param' carries a few roundings of 2^-24 relative to its own size; for param' that is far below
// one rounding of the parameter (lr · step is ~1e-3 of it at most). In double (as the reference,
// ops/optimizer.cpp, computes) the conversions, divisions and square roots ran 8 lanes at a time
// and held the loop at 70 GB/s where f32 reaches 86-93 GB/s over the same seven 16 MiB streams
// (scratch benchmark, 2 threads, 64-byte aligned as the executor's buffers are). The outputs never
// overlap the inputs (the memory plan places a node's outputs apart from its inputs), or (an update
// written into its leaf, ExecutorOptions::updates) param', m' and v' are param, m and v themselves:
// __restrict holds in both variants and lets the loop vectorise (sqrt too, with -fno-math-errno).
struct AdamWScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, weight_decay, lr, clip, inv_c1, inv_c2;
};
// One element: (p', m', v') from (p, g, m, v), inlined into each loop variant below.
__attribute__((always_inline)) inline void adamw_element(float p, float g, float m, float v, const AdamWScalars& k,
                                                         float& p_out, float& m_out, float& v_out) {
  const float gc = g * k.clip;
  const float m_new = k.beta1 * m + k.one_minus_beta1 * gc;
  const float v_new = k.beta2 * v + k.one_minus_beta2 * (gc * gc);
  const float step = (m_new * k.inv_c1) / (std::sqrt(v_new * k.inv_c2) + k.epsilon);
  m_out = m_new;
  v_out = v_new;
  p_out = p - k.lr * (step + k.weight_decay * p);
}
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void adamw_elements(const float* __restrict p, const float* __restrict g, const float* __restrict m,
                    const float* __restrict v, float* __restrict p_out, float* __restrict m_out,
                    float* __restrict v_out, int64_t n, const AdamWScalars k) {
  for (int64_t i = 0; i < n; ++i) adamw_element(p[i], g[i], m[i], v[i], k, p_out[i], m_out[i], v_out[i]);
}
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void adamw_elements_in_place(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                             int64_t n, const AdamWScalars k) {
  for (int64_t i = 0; i < n; ++i) adamw_element(p[i], g[i], m[i], v[i], k, p[i], m[i], v[i]);
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
  const auto f = [](double x) { return static_cast<float>(x); };
  const AdamWScalars k{f(a.beta1),        f(1.0 - a.beta1), f(a.beta2), f(1.0 - a.beta2), f(a.epsilon),
                       f(a.weight_decay), f(lr),            f(clip),    f(1.0 / c1),      f(1.0 / c2)};
  const bool in_place = p_out == p && m_out == m && v_out == v;
  if (!in_place && (p_out == p || m_out == m || v_out == v)) return false;  // partly in place: the reference
  tbb::parallel_for(Range(0, n, row_grain(1)), [&](const Range& r) {
    const int64_t i = r.begin();
    if (in_place)
      adamw_elements_in_place(p_out + i, g + i, m_out + i, v_out + i, r.end() - i, k);
    else
      adamw_elements(p + i, g + i, m + i, v + i, p_out + i, m_out + i, v_out + i, r.end() - i, k);
  });
  return true;
}

}  // namespace sy::exec
