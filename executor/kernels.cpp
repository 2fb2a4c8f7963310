#include "executor/kernels.hpp"

#include "executor/float_storage.hpp"
#include "executor/vec_math.hpp"
#include "graph/error.hpp"
#include "ops/common.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <bit>
#include <type_traits>

namespace sy::exec {
namespace {

// Elements per TBB task: large enough that scheduling costs little next to the loop body.
constexpr int64_t kGrain = int64_t{1} << 14;

using Range = tbb::blocked_range<int64_t>;

// Rows per task when each row holds `row` elements.
int64_t row_grain(int64_t row) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, row)); }


bool all_float(std::initializer_list<DType> ts) {
  return std::all_of(ts.begin(), ts.end(), [](DType t) { return is_float(t); });
}

float gelu_grad_f(float x) {
  const float c = static_cast<float>(ops::kGeluC), a = static_cast<float>(ops::kGeluA);
  const float t = std::tanh(c * (x + a * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * a * x * x);
}


// Loads n elements of x from i0 as f32: a pointer into x itself for f32 storage, else converted
// into `buf` (n <= kBlock).
constexpr int64_t kBlock = 1024;
inline const float* as_f32(const float* x, int64_t i0, int64_t, float*) { return x + i0; }
inline const float* as_f32(const uint16_t* x, int64_t i0, int64_t n, float* buf) {
  vec_bf16_to_f32(x + i0, buf, n);
  return buf;
}
// Where to write n f32 results for y from i0, and the store after writing them there.
inline float* out_f32(float* y, int64_t i0, float*) { return y + i0; }
inline float* out_f32(uint16_t*, int64_t, float* buf) { return buf; }
inline void flush_f32(float*, int64_t, int64_t, const float*) {}
inline void flush_f32(uint16_t* y, int64_t i0, int64_t n, const float* buf) { vec_f32_to_bf16(buf, y + i0, n); }

// A row of n elements of x from i0 as f32 (buf holds n floats for bf16 storage).
inline const float* as_f32_row(const float* x, int64_t i0, int64_t, float*) { return x + i0; }
inline const float* as_f32_row(const uint16_t* x, int64_t i0, int64_t n, float* buf) { return as_f32(x, i0, n, buf); }

// y[i] = f(x[i]) by blocks of f32: f(const float* x, float* y, n).
template <typename X, typename Y, typename F>
void map1_blocks(const X* x, Y* y, int64_t n, F f) {
  tbb::parallel_for(Range(0, (n + kBlock - 1) / kBlock, std::max<int64_t>(1, kGrain / kBlock)), [&](const Range& r) {
    float bx[kBlock], by[kBlock];
    for (int64_t b = r.begin(); b < r.end(); ++b) {
      const int64_t i0 = b * kBlock, len = std::min(kBlock, n - i0);
      float* yo = out_f32(y, i0, by);
      f(as_f32(x, i0, len, bx), yo, len);
      flush_f32(y, i0, len, yo);
    }
  });
}
// y[i] = f(a[i], b[i]) by blocks of f32.
template <typename A, typename B, typename Y, typename F>
void map2_blocks(const A* a, const B* b, Y* y, int64_t n, F f) {
  tbb::parallel_for(Range(0, (n + kBlock - 1) / kBlock, std::max<int64_t>(1, kGrain / kBlock)), [&](const Range& r) {
    float ba[kBlock], bb[kBlock], by[kBlock];
    for (int64_t k = r.begin(); k < r.end(); ++k) {
      const int64_t i0 = k * kBlock, len = std::min(kBlock, n - i0);
      float* yo = out_f32(y, i0, by);
      f(as_f32(a, i0, len, ba), as_f32(b, i0, len, bb), yo, len);
      flush_f32(y, i0, len, yo);
    }
  });
}

// y[i] = f(a[i], b[i % nb]) by blocks of f32, nb dividing n: a task takes blocks of one
// repetition of b, so b's block is contiguous too.
template <typename A, typename B, typename Y, typename F>
void map2_repeat_blocks(const A* a, const B* b, Y* y, int64_t n, int64_t nb, F f) {
  const int64_t per = (nb + kBlock - 1) / kBlock;  // blocks per repetition of b
  tbb::parallel_for(Range(0, (n / nb) * per, std::max<int64_t>(1, kGrain / kBlock)), [&](const Range& r) {
    float ba[kBlock], bb[kBlock], by[kBlock];
    for (int64_t k = r.begin(); k < r.end(); ++k) {
      const int64_t j0 = (k % per) * kBlock, i0 = (k / per) * nb + j0, len = std::min(kBlock, nb - j0);
      float* yo = out_f32(y, i0, by);
      f(as_f32(a, i0, len, ba), as_f32(b, j0, len, bb), yo, len);
      flush_f32(y, i0, len, yo);
    }
  });
}

// y[i] = f(a[i], b[i % nb]) on the storage itself (f reads and writes it), by blocks as above.
template <typename A, typename B, typename Y, typename F>
void map2_repeat_storage(const A* a, const B* b, Y* y, int64_t n, int64_t nb, F f) {
  const int64_t per = (nb + kBlock - 1) / kBlock;
  tbb::parallel_for(Range(0, (n / nb) * per, std::max<int64_t>(1, kGrain / kBlock)), [&](const Range& r) {
    for (int64_t k = r.begin(); k < r.end(); ++k) {
      const int64_t j0 = (k % per) * kBlock, i0 = (k / per) * nb + j0, len = std::min(kBlock, nb - j0);
      f(a + i0, b + j0, y + i0, len);
    }
  });
}

template <typename X, typename Y, typename F>
void map1(const X* x, Y* y, int64_t n, F f) {
  tbb::parallel_for(Range(0, n, kGrain), [&](const Range& r) {
    for (int64_t i = r.begin(); i < r.end(); ++i) st(y, i, f(ld(x, i)));
  });
}

// y[i] = f(a[i], b[i % nb]); nb divides n.
template <typename A, typename B, typename Y, typename F>
void map2(const A* a, const B* b, Y* y, int64_t n, int64_t nb, F f) {
  tbb::parallel_for(Range(0, n, kGrain), [&](const Range& r) {
    if (nb == n) {
      for (int64_t i = r.begin(); i < r.end(); ++i) st(y, i, f(ld(a, i), ld(b, i)));
      return;
    }
    int64_t j = r.begin() % nb;
    for (int64_t i = r.begin(); i < r.end(); ++i) {
      st(y, i, f(ld(a, i), ld(b, j)));
      if (++j == nb) j = 0;
    }
  });
}

// b's offset at the start of row `row` of a's shape `as` (rows along its last dim), b moving by
// bstride[k] along a's dim k.
inline int64_t row_offset(int64_t row, const Shape& as, const std::vector<int64_t>& bstride) {
  int64_t rem = row, off = 0;
  for (size_t k = as.size() - 1; k-- > 0;) {
    off += (rem % as[k].size) * bstride[k];
    rem /= as[k].size;
  }
  return off;
}

// y[i] = f(a[i], b[offset of i]) where b's offset moves by bstride[k] along dim k of a's shape
// `as`. Rows of a's last dim are the unit of work: one offset computation per row.
template <typename A, typename B, typename Y, typename F>
void map2_strided(const A* a, const B* b, Y* y, const Shape& as, const std::vector<int64_t>& bstride, F f) {
  const size_t nd = as.size();
  const int64_t inner = as[nd - 1].size, inner_step = bstride[nd - 1];
  const int64_t rows = num_elements(as) / inner;
  tbb::parallel_for(Range(0, rows, row_grain(inner)), [&](const Range& r) {
    for (int64_t row = r.begin(); row < r.end(); ++row) {
      const int64_t off = row_offset(row, as, bstride);
      const int64_t base = row * inner;
      if (inner_step == 0) {
        const float bv = ld(b, off);
        for (int64_t j = 0; j < inner; ++j) st(y, base + j, f(ld(a, base + j), bv));
      } else if (inner_step == 1) {
        for (int64_t j = 0; j < inner; ++j) st(y, base + j, f(ld(a, base + j), ld(b, off + j)));
      } else {
        for (int64_t j = 0; j < inner; ++j) st(y, base + j, f(ld(a, base + j), ld(b, off + j * inner_step)));
      }
    }
  });
}

// map2_strided for add, sub, mul, div when b is contiguous along a's last dim (inner_step 1) or
// constant along it (0): each row in vectorised blocks, `fv` (y = a op b) or `fs` (y = a op s).
template <typename A, typename B, typename Y, typename FV, typename FS>
void map2_rows(const A* a, const B* b, Y* y, const Shape& as, const std::vector<int64_t>& bstride, FV fv, FS fs) {
  const size_t nd = as.size();
  const int64_t inner = as[nd - 1].size, inner_step = bstride[nd - 1];
  const int64_t rows = num_elements(as) / inner;
  tbb::parallel_for(Range(0, rows, row_grain(inner)), [&](const Range& r) {
    float ba[kBlock], bb[kBlock], by[kBlock];
    for (int64_t row = r.begin(); row < r.end(); ++row) {
      const int64_t off = row_offset(row, as, bstride);
      const int64_t base = row * inner;
      for (int64_t j0 = 0; j0 < inner; j0 += kBlock) {
        const int64_t len = std::min(kBlock, inner - j0);
        float* yo = out_f32(y, base + j0, by);
        if (inner_step == 0) fs(as_f32(a, base + j0, len, ba), ld(b, off), yo, len);
        else fv(as_f32(a, base + j0, len, ba), as_f32(b, off + j0, len, bb), yo, len);
        flush_f32(y, base + j0, len, yo);
      }
    }
  });
}

// Sum of x[0], x[step], ... (n terms) in double, with 8 independent partial sums.
template <typename X>
double sum_strided(const X* x, int64_t n, int64_t step) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += ld(x, (i + k) * step);
  double s = 0;
  for (; i < n; ++i) s += ld(x, i * step);
  for (double a : acc) s += a;
  return s;
}

// True iff `suffix` equals the last dims of `s`.
bool is_suffix(const Shape& s, const Shape& suffix) {
  if (suffix.size() > s.size()) return false;
  return std::equal(suffix.begin(), suffix.end(), s.end() - static_cast<ptrdiff_t>(suffix.size()));
}

}  // namespace

bool unary(UnaryOp op, const ScaleAttrs& s, ConstView x, View y) {
  if (!all_float({x.type.dtype, y.type.dtype}) || x.type.shape != y.type.shape) return false;
  const int64_t n = num_elements(x.type.shape);
  visit_float(x.type.dtype, [&](auto* xt) {
    visit_float(y.type.dtype, [&](auto* yt) {
      const auto* xp = static_cast<const Storage<decltype(xt)>*>(x.data);
      auto* yp = static_cast<Storage<decltype(yt)>*>(y.data);
      switch (op) {
        case UnaryOp::scale:  // in double: factor and offset keep their full precision, as in the reference
          map1_blocks(xp, yp, n, [f = s.factor, o = s.offset](const float* bx, float* by, int64_t len) {
            vec_scale_offset(bx, f, o, by, len);
          });
          return;
        case UnaryOp::relu: map1(xp, yp, n, [](float v) { return v > 0.0f ? v : 0.0f; }); return;
        case UnaryOp::gelu: map1_blocks(xp, yp, n, vec_gelu); return;
        case UnaryOp::exp:
          map1_blocks(xp, yp, n, [](const float* a, float* b, int64_t len) { vec_exp_shifted(a, 0.0f, b, len); });
          return;
        case UnaryOp::log: map1(xp, yp, n, [](float v) { return std::log(v); }); return;
        case UnaryOp::rsqrt: map1(xp, yp, n, [](float v) { return 1.0f / std::sqrt(v); }); return;
        case UnaryOp::cast: map1_blocks(xp, yp, n, vec_copy); return;
      }
    });
  });
  return true;
}

bool binary(BinaryOp op, ConstView a, ConstView b, View y) {
  if (!all_float({a.type.dtype, b.type.dtype, y.type.dtype})) return false;
  const Shape& as = a.type.shape;
  const Shape& bs = b.type.shape;
  if (y.type.shape != as) return false;
  const int64_t n = num_elements(as);
  const int64_t nb = num_elements(bs);
  const bool suffix = is_suffix(as, bs);
  // General broadcast: b's stride along each dim of a (0 where b lacks the dim).
  std::vector<int64_t> bstride(as.size(), 0);
  if (!suffix) {
    const auto bst = strides_of(bs);
    for (size_t k = 0; k < bs.size(); ++k) {
      auto i = dim_index(as, bs[k].name);
      if (!i || as[*i].size != bs[k].size) return false;
      bstride[*i] = bst[k];
    }
  }
  visit_float(a.type.dtype, [&](auto* at) {
    visit_float(b.type.dtype, [&](auto* bt) {
      visit_float(y.type.dtype, [&](auto* yt) {
        const auto* ap = static_cast<const Storage<decltype(at)>*>(a.data);
        const auto* bp = static_cast<const Storage<decltype(bt)>*>(b.data);
        auto* yp = static_cast<Storage<decltype(yt)>*>(y.data);
        if (op == BinaryOp::gelu_grad && nb == n) return map2_blocks(ap, bp, yp, n, vec_gelu_grad);
        // add, sub, mul, div with b the same shape as a, or a suffix of it of at least 64 elements
        // (a bias or a norm's scale repeated over the leading dims): vectorised blocks.
        const bool arith = op == BinaryOp::add || op == BinaryOp::sub || op == BinaryOp::mul || op == BinaryOp::div;
        // b broadcast along a's last dim (a norm's per-row scale, an attention row's max) or
        // contiguous along it: rows in vectorised blocks.
        if (arith && !suffix && !as.empty() && (bstride.back() == 0 || bstride.back() == 1) && as.back().size >= 16) {
          const auto fv = op == BinaryOp::add ? vec_add : op == BinaryOp::sub ? vec_sub : op == BinaryOp::mul ? vec_mul : vec_div;
          const auto fs = op == BinaryOp::add   ? vec_add_s
                          : op == BinaryOp::sub ? vec_sub_s
                          : op == BinaryOp::mul ? vec_mul_s
                                                : vec_div_s;
          return map2_rows(ap, bp, yp, as, bstride, fv, fs);
        }
        if (suffix && nb > 0 && (nb == n || nb >= 64) && arith) {
          if constexpr (std::is_same_v<decltype(ap), const uint16_t*> && std::is_same_v<decltype(bp), const uint16_t*> &&
                        std::is_same_v<decltype(yp), uint16_t*>) {
            const auto f = op == BinaryOp::add   ? vec_add_bf16
                           : op == BinaryOp::sub ? vec_sub_bf16
                           : op == BinaryOp::mul ? vec_mul_bf16
                                                 : vec_div_bf16;
            return map2_repeat_storage(ap, bp, yp, n, nb, f);
          } else {
            const auto f = op == BinaryOp::add ? vec_add : op == BinaryOp::sub ? vec_sub : op == BinaryOp::mul ? vec_mul : vec_div;
            return map2_repeat_blocks(ap, bp, yp, n, nb, f);
          }
        }
        auto run = [&](auto f) {
          if (suffix) map2(ap, bp, yp, n, nb, f);
          else map2_strided(ap, bp, yp, as, bstride, f);
        };
        switch (op) {
          case BinaryOp::add: run([](float u, float v) { return u + v; }); return;
          case BinaryOp::sub: run([](float u, float v) { return u - v; }); return;
          case BinaryOp::mul: run([](float u, float v) { return u * v; }); return;
          case BinaryOp::div: run([](float u, float v) { return u / v; }); return;
          case BinaryOp::relu_grad: run([](float x, float dy) { return x > 0.0f ? dy : 0.0f; }); return;
          case BinaryOp::gelu_grad: run([](float x, float dy) { return dy * gelu_grad_f(x); }); return;
        }
      });
    });
  });
  return true;
}

bool reduce(ReduceOp op, const std::vector<std::string>& dims, ConstView x, View y) {
  if (!all_float({x.type.dtype, y.type.dtype})) return false;
  const Shape& xs = x.type.shape;
  // x viewed as [outer, reduced, inner]: the reduced dims must be contiguous in x.
  std::vector<size_t> pos;
  for (const std::string& d : dims) {
    auto i = dim_index(xs, d);
    if (!i || std::find(pos.begin(), pos.end(), *i) != pos.end()) return false;
    pos.push_back(*i);
  }
  std::sort(pos.begin(), pos.end());
  if (!pos.empty() && pos.back() - pos.front() + 1 != pos.size()) return false;
  const size_t lo = pos.empty() ? xs.size() : pos.front();
  const size_t hi = pos.empty() ? xs.size() : pos.back() + 1;
  Shape kept(xs.begin(), xs.begin() + static_cast<ptrdiff_t>(lo));
  kept.insert(kept.end(), xs.begin() + static_cast<ptrdiff_t>(hi), xs.end());
  if (y.type.shape != kept) return false;
  int64_t outer = 1, red = 1, inner = 1;
  for (size_t i = 0; i < xs.size(); ++i) (i < lo ? outer : i < hi ? red : inner) *= xs[i].size;

  visit_float(x.type.dtype, [&](auto* xt) {
    visit_float(y.type.dtype, [&](auto* yt) {
      const auto* xp = static_cast<const Storage<decltype(xt)>*>(x.data);
      auto* yp = static_cast<Storage<decltype(yt)>*>(y.data);
      // Reduces the `red` elements x[base + r * inner], r in [0, red).
      auto one = [&](int64_t base) -> float {
        switch (op) {
          case ReduceOp::sum: return static_cast<float>(sum_strided(xp + base, red, inner));
          case ReduceOp::mean: return static_cast<float>(sum_strided(xp + base, red, inner) / static_cast<double>(red));
          case ReduceOp::max: {
            float m = -std::numeric_limits<float>::infinity();  // as the reference: NaNs are skipped
            for (int64_t r = 0; r < red; ++r) m = std::max(m, ld(xp, base + r * inner));
            return m;
          }
        }
        return 0.0f;
      };
      if (inner == 1) {  // [outer, red]: one contiguous row per output
        tbb::parallel_for(Range(0, outer, row_grain(red)), [&](const Range& r) {
          for (int64_t o = r.begin(); o < r.end(); ++o) st(yp, o, one(o * red));
        });
        return;
      }
      // [outer, red, inner]: a task owns a block of kBlock consecutive inner positions of one
      // outer index and walks the reduced rows, so reads stay contiguous.
      constexpr int64_t kBlock = 256;
      const int64_t blocks = (inner + kBlock - 1) / kBlock;
      tbb::parallel_for(Range(0, outer * blocks, row_grain(red * kBlock)), [&](const Range& r) {
        double acc[kBlock];
        for (int64_t t = r.begin(); t < r.end(); ++t) {
          const int64_t o = t / blocks, i0 = (t % blocks) * kBlock, w = std::min(kBlock, inner - i0);
          const int64_t base = o * red * inner + i0;
          if (op == ReduceOp::max) {
            for (int64_t i = 0; i < w; ++i) st(yp, o * inner + i0 + i, one(base + i));
            continue;
          }
          std::fill(acc, acc + w, 0.0);
          for (int64_t rr = 0; rr < red; ++rr)
            for (int64_t i = 0; i < w; ++i) acc[i] += ld(xp, base + rr * inner + i);
          const double div = op == ReduceOp::mean ? static_cast<double>(red) : 1.0;
          for (int64_t i = 0; i < w; ++i) st(yp, o * inner + i0 + i, static_cast<float>(acc[i] / div));
        }
      });
    });
  });
  return true;
}

bool softmax(const std::string& dim, ConstView x, View y) {
  const Shape& xs = x.type.shape;
  if (!all_float({x.type.dtype, y.type.dtype}) || xs.empty() || xs.back().name != dim || y.type.shape != xs)
    return false;
  const int64_t cols = xs.back().size;
  const int64_t rows = num_elements(xs) / cols;
  visit_float(x.type.dtype, [&](auto* xt) {
    visit_float(y.type.dtype, [&](auto* yt) {
      const auto* xp = static_cast<const Storage<decltype(xt)>*>(x.data);
      auto* yp = static_cast<Storage<decltype(yt)>*>(y.data);
      // Per row: the max, exp(x - max) into y's row (f32) or a buffer (bf16), their sum, the scale
      // (rounded to bf16 on store for bf16 y). bf16 x is widened as it is read.
      tbb::parallel_for(Range(0, rows, row_grain(cols)), [&](const Range& r) {
        std::vector<float> e(static_cast<size_t>(cols));  // exp(x - max) for bf16 y
        for (int64_t i = r.begin(); i < r.end(); ++i) {
          const int64_t base = i * cols;
          float* yo = out_f32(yp, base, e.data());
          if constexpr (std::is_same_v<decltype(xp), const uint16_t*>) {
            vec_exp_below_bf16(xp + base, vec_max_bf16(xp + base, cols), yo, cols);
          } else {
            vec_exp_below(xp + base, vec_max(xp + base, cols), yo, cols);
          }
          const auto inv = static_cast<float>(1.0 / vec_sum(yo, cols));
          if constexpr (std::is_same_v<decltype(yp), uint16_t*>) vec_scale_to_bf16(yo, inv, yp + base, cols);
          else vec_scale(yo, inv, yo, cols);
        }
      });
    });
  });
  return true;
}

bool cross_entropy(const std::string& dim, ConstView logits, ConstView labels, View loss) {
  const Shape& xs = logits.type.shape;
  if (!all_float({logits.type.dtype, loss.type.dtype}) || labels.type.dtype != DType::i32 || xs.empty() ||
      xs.back().name != dim)
    return false;
  const int64_t cols = xs.back().size;
  const int64_t rows = num_elements(xs) / cols;
  const auto* lab = static_cast<const int32_t*>(labels.data);
  for (int64_t i = 0; i < rows; ++i)
    if (lab[i] < 0 || lab[i] >= cols) return false;  // the reference names the bad label
  visit_float(logits.type.dtype, [&](auto* xt) {
    visit_float(loss.type.dtype, [&](auto* yt) {
      const auto* xp = static_cast<const Storage<decltype(xt)>*>(logits.data);
      auto* yp = static_cast<Storage<decltype(yt)>*>(loss.data);
      tbb::parallel_for(Range(0, rows, row_grain(cols)), [&](const Range& r) {
        std::vector<float> row(static_cast<size_t>(cols)), e(static_cast<size_t>(cols));
        for (int64_t i = r.begin(); i < r.end(); ++i) {
          const float* xr = as_f32_row(xp, i * cols, cols, row.data());
          const float m = vec_max(xr, cols);
          vec_exp_below(xr, m, e.data(), cols);
          const double lse = static_cast<double>(m) + std::log(vec_sum(e.data(), cols));
          st(yp, i, static_cast<float>(lse - static_cast<double>(xr[lab[i]])));
        }
      });
    });
  });
  return true;
}

bool one_hot(ConstView ids, View y) {
  if (ids.type.dtype != DType::i32 || !is_float(y.type.dtype) || y.type.shape.empty()) return false;
  const int64_t n = y.type.shape.back().size;
  const int64_t rows = num_elements(ids.type.shape);
  const auto* id = static_cast<const int32_t*>(ids.data);
  visit_float(y.type.dtype, [&](auto* yt) {
    auto* yp = static_cast<Storage<decltype(yt)>*>(y.data);
    tbb::parallel_for(Range(0, rows, row_grain(n)), [&](const Range& r) {
      std::fill(yp + r.begin() * n, yp + r.end() * n, Storage<decltype(yt)>{0});
      for (int64_t i = r.begin(); i < r.end(); ++i)
        if (id[i] >= 0 && id[i] < n) st(yp, i * n + id[i], 1.0f);  // out of range: an all-zero row
    });
  });
  return true;
}

bool rms_norm(const std::string& dim, double eps, ConstView x, ConstView g, View y) {
  const Shape& xs = x.type.shape;
  if (!all_float({x.type.dtype, g.type.dtype, y.type.dtype}) || xs.empty() || xs.back().name != dim ||
      y.type.shape != xs)
    return false;
  const int64_t cols = xs.back().size;
  const int64_t rows = num_elements(xs) / cols;
  visit_float(x.type.dtype, [&](auto* xt) {
    visit_float(g.type.dtype, [&](auto* gt) {
      visit_float(y.type.dtype, [&](auto* yt) {
        const auto* xp = static_cast<const Storage<decltype(xt)>*>(x.data);
        const auto* gp = static_cast<const Storage<decltype(gt)>*>(g.data);
        auto* yp = static_cast<Storage<decltype(yt)>*>(y.data);
        std::vector<float> gf(static_cast<size_t>(cols));
        for (int64_t j = 0; j < cols; ++j) gf[static_cast<size_t>(j)] = ld(gp, j);
        tbb::parallel_for(Range(0, rows, row_grain(cols)), [&](const Range& r) {
          std::vector<float> row(static_cast<size_t>(cols)), out(static_cast<size_t>(cols));
          for (int64_t i = r.begin(); i < r.end(); ++i) {
            const int64_t base = i * cols;
            const float* xr = as_f32_row(xp, base, cols, row.data());
            const double inv = 1.0 / std::sqrt(vec_sum_squares(xr, cols) / static_cast<double>(cols) + eps);
            float* yo = out_f32(yp, base, out.data());
            vec_rms_scale(xr, static_cast<float>(inv), gf.data(), yo, cols);
            flush_f32(yp, base, cols, yo);
          }
        });
      });
    });
  });
  return true;
}

namespace {

// Copies through `put(dst_index, src_index)` when src's contiguous dim is dst dim p, not dst's
// last dim q: the [p, q] planes are copied in square tiles, so both the strided reads and the
// contiguous writes of a tile stay in L1 (a row-by-row walk would touch one cache line per
// element read).
template <typename Put>
void permute_tiled(const Shape& ds, const std::vector<int64_t>& stride, size_t p, Put put) {
  constexpr int64_t kTile = 32;
  const size_t q = ds.size() - 1;
  const auto dstr = strides_of(ds);
  const int64_t np = ds[p].size, nq = ds[q].size;
  const int64_t tiles_p = (np + kTile - 1) / kTile, tiles_q = (nq + kTile - 1) / kTile;
  const int64_t planes = num_elements(ds) / (np * nq);
  tbb::parallel_for(Range(0, planes * tiles_p * tiles_q, row_grain(kTile * kTile)), [&](const Range& r) {
    for (int64_t t = r.begin(); t < r.end(); ++t) {
      // Plane index -> dst and src offsets over the dims other than p and q.
      int64_t plane = t / (tiles_p * tiles_q), d0 = 0, s0 = 0;
      for (size_t k = q; k-- > 0;) {
        if (k == p) continue;
        const int64_t i = plane % ds[k].size;
        plane /= ds[k].size;
        d0 += i * dstr[k];
        s0 += i * stride[k];
      }
      const int64_t tp = (t / tiles_q) % tiles_p, tq = t % tiles_q;
      const int64_t p0 = tp * kTile, p1 = std::min(np, p0 + kTile), q0 = tq * kTile, q1 = std::min(nq, q0 + kTile);
      for (int64_t ip = p0; ip < p1; ++ip)
        for (int64_t iq = q0; iq < q1; ++iq) put(d0 + ip * dstr[p] + iq, s0 + ip * stride[p] + iq * stride[q]);
    }
  });
}

// Walks dst in row-major order; `stride[k]` is the step in src for dst dim k. Copies element
// by element through `put(dst_index, src_index)`.
template <typename Put>
void permute_walk(const Shape& ds, const std::vector<int64_t>& stride, Put put) {
  const size_t nd = ds.size();
  if (nd == 0) {
    put(0, 0);
    return;
  }
  if (stride[nd - 1] != 1 && ds[nd - 1].size > 1) {
    for (size_t p = 0; p + 1 < nd; ++p)
      if (stride[p] == 1 && ds[p].size > 1) return permute_tiled(ds, stride, p, put);
  }
  const int64_t inner = ds[nd - 1].size, inner_stride = stride[nd - 1];
  const int64_t rows = num_elements(ds) / inner;
  tbb::parallel_for(Range(0, rows, row_grain(inner)), [&](const Range& r) {
    std::vector<int64_t> idx(nd - 1);  // multi-index of the row over dst dims [0, nd-1)
    int64_t rem = r.begin(), off = 0;
    for (size_t k = nd - 1; k-- > 0;) {
      idx[k] = rem % ds[k].size;
      rem /= ds[k].size;
      off += idx[k] * stride[k];
    }
    for (int64_t row = r.begin(); row < r.end(); ++row) {
      const int64_t d0 = row * inner;
      for (int64_t j = 0; j < inner; ++j) put(d0 + j, off + j * inner_stride);
      for (size_t k = nd - 1; k-- > 0;) {  // next row
        if (++idx[k] < ds[k].size) {
          off += stride[k];
          break;
        }
        off -= stride[k] * (ds[k].size - 1);
        idx[k] = 0;
      }
    }
  });
}

}  // namespace

void permute_copy(ConstView src, View dst) {
  const Shape& ss = src.type.shape;
  const Shape& ds = dst.type.shape;
  SY_CHECK(ss.size() == ds.size(), "permute_copy: {} is not a permutation of {}", to_string(ds), to_string(ss));
  const auto sstr = strides_of(ss);
  std::vector<int64_t> stride(ds.size());
  for (size_t k = 0; k < ds.size(); ++k) {
    auto i = dim_index(ss, ds[k].name);
    SY_CHECK(i && ss[*i].size == ds[k].size, "permute_copy: {} is not a permutation of {}", to_string(ds), to_string(ss));
    stride[k] = sstr[*i];
  }
  if (src.type.dtype == dst.type.dtype) {  // bit copy at the element width
    auto copy = [&](auto* tag) {
      using T = Storage<decltype(tag)>;
      const T* s = static_cast<const T*>(src.data);
      T* d = static_cast<T*>(dst.data);
      permute_walk(ds, stride, [&](int64_t di, int64_t si) { d[di] = s[si]; });
    };
    if (dtype_bytes(src.type.dtype) == 2) copy(static_cast<uint16_t*>(nullptr));
    else copy(static_cast<uint32_t*>(nullptr));
    return;
  }
  SY_CHECK(all_float({src.type.dtype, dst.type.dtype}), "permute_copy: cannot convert {} to {}",
           dtype_name(src.type.dtype), dtype_name(dst.type.dtype));
  visit_float(src.type.dtype, [&](auto* st_) {
    visit_float(dst.type.dtype, [&](auto* dt_) {
      const auto* s = static_cast<const Storage<decltype(st_)>*>(src.data);
      auto* d = static_cast<Storage<decltype(dt_)>*>(dst.data);
      permute_walk(ds, stride, [&](int64_t di, int64_t si) { st(d, di, ld(s, si)); });
    });
  });
}

}  // namespace sy::exec
