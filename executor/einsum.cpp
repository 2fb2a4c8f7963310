#include "executor/einsum.hpp"

#include "executor/kernels.hpp"
#include "graph/error.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace sy::exec {
namespace {

bool in_list(const std::vector<std::string>& names, const std::string& n) {
  return std::find(names.begin(), names.end(), n) != names.end();
}

// The dims of `from` named in `names`, in the order of `names`.
Shape pick(const Shape& from, const std::vector<std::string>& names) {
  Shape s;
  for (const std::string& n : names) s.push_back(from[*dim_index(from, n)]);
  return s;
}

Shape concat(const Shape& x, const Shape& y, const Shape& z = {}) {
  Shape s = x;
  s.insert(s.end(), y.begin(), y.end());
  s.insert(s.end(), z.begin(), z.end());
  return s;
}

dnnl::memory::data_type dnnl_type(DType t) {
  return t == DType::bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

// A matmul argument viewed as [g0, g1, g2] at dtype dt: read in place when x is stored as
// g0+g1+g2 or g0+g2+g1 at dt (oneDNN strides), otherwise permuted into packed g0+g1+g2.
template <typename Operand>
Operand make_operand(const TensorType& x, const Shape& g0, const Shape& g1, const Shape& g2, DType dt,
                     std::array<int64_t, 3>& strides_out) {
  const int64_t n0 = num_elements(g0), n1 = num_elements(g1), n2 = num_elements(g2);
  Operand op;
  op.graph = x;
  op.packed = TensorType{concat(g0, g1, g2), dt};
  dnnl::memory::dims strides = {n1 * n2, n2, 1};
  if (x.dtype != dt) op.permute = true;
  else if (x.shape == concat(g0, g1, g2)) op.permute = false;
  else if (x.shape == concat(g0, g2, g1)) strides = {n1 * n2, 1, n1};
  else op.permute = true;
  op.md = dnnl::memory::desc({n0, n1, n2}, dnnl_type(dt), strides);
  strides_out = {strides[0], strides[1], strides[2]};
  return op;
}

// Whether the element at p is zero (+0 or -0) at dtype dt (f32 or bf16 storage).
bool is_zero_at(const std::byte* p, DType dt) {
  if (dt == DType::bf16) {
    uint16_t bits;
    std::memcpy(&bits, p, sizeof bits);
    return (bits & 0x7fffu) == 0;
  }
  uint32_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return (bits & 0x7fffffffu) == 0;
}

// 1 + the last index i < n along stride `outer` whose `inner` elements (stride `step`) are not all
// zero, scanning from the end; 0 when all are zero. Strides in elements of `bytes` bytes.
int64_t nonzero_extent(const std::byte* base, int64_t n, int64_t outer, int64_t inner, int64_t step,
                       DType dt, int64_t bytes) {
  for (int64_t i = n - 1; i >= 0; --i) {
    const std::byte* row = base + i * outer * bytes;
    for (int64_t j = 0; j < inner; ++j)
      if (!is_zero_at(row + j * step * bytes, dt)) return i + 1;
  }
  return 0;
}

int64_t round_up(int64_t x, int64_t m, int64_t cap) { return std::min(cap, (x + m - 1) / m * m); }

}  // namespace

// Whether bf16 x bf16 einsums run as oneDNN bf16 matmuls: on CPUs with bf16 dot products
// (AVX-512 BF16, which AMX implies). Measured here (AMD EPYC, AVX-512 BF16, no AMX; oneDNN 2.6
// brg:avx512_core_bf16, 2 threads): 390-415 GFLOP/s against f32's 200 for 1024-2048 cubes. On older
// CPUs the bf16 operands are widened to f32 (exactly) while they are packed and the matmul runs in
// f32: products of bf16 values are exact in f32 and both accumulate in f32; only the order of the
// additions may differ. The result is rounded to the output dtype.
bool bf16_matmul_native() {
  const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  static const bool native = (static_cast<unsigned>(dnnl::get_effective_cpu_isa()) & bf16) == bf16;
  return native;
}

std::optional<EinsumKernel> EinsumKernel::make(const TensorType& a, const TensorType& b, const TensorType& out,
                                               const EinsumAttrs& attrs, const dnnl::engine& engine, Bf16Path path) {
  if (!is_float(a.dtype) || !is_float(b.dtype) || !is_float(out.dtype)) return std::nullopt;
  const std::vector<std::string>& o = attrs.out;
  std::vector<std::string> batch, x, y;  // dim names per class, in out's order
  for (const std::string& d : o) {
    const bool in_a = has_dim(a.shape, d), in_b = has_dim(b.shape, d);
    if (in_a && in_b) batch.push_back(d);
    else if (in_a) x.push_back(d);
    else if (in_b) y.push_back(d);
    else return std::nullopt;  // infer rejects this; leave it to the reference
  }
  for (const Dim& d : a.shape)
    if (!in_list(o, d.name) && !has_dim(b.shape, d.name)) return std::nullopt;  // summed within a alone
  for (const Dim& d : b.shape)
    if (!in_list(o, d.name) && !has_dim(a.shape, d.name)) return std::nullopt;  // summed within b alone

  EinsumKernel e;
  e.engine_ = engine;
  const Shape sb = pick(a.shape, batch), sx = pick(a.shape, x), sy = pick(b.shape, y);
  e.swap_ = out.shape != concat(sb, sx, sy) && out.shape == concat(sb, sy, sx);
  const TensorType& s = e.swap_ ? b : a;
  const TensorType& w = e.swap_ ? a : b;
  const Shape& sr = e.swap_ ? sy : sx;
  const Shape& sc = e.swap_ ? sx : sy;
  Shape sk;  // summed dims in S's order
  for (const Dim& d : s.shape)
    if (!in_list(o, d.name)) sk.push_back(d);

  // Matmul dtypes: bf16 only when both inputs are bf16 (then the output dtype as asked) and the
  // CPU has bf16 dot products; else f32 (see bf16_matmul_native).
  const DType in_dt = a.dtype == DType::bf16 && b.dtype == DType::bf16 && bf16_matmul_native() && path == Bf16Path::native
                          ? DType::bf16
                          : DType::f32;
  const DType c_dt = in_dt == DType::bf16 ? out.dtype : DType::f32;
  e.s_ = make_operand<Operand>(s, sb, sr, sk, in_dt, e.s_strides_);
  e.w_ = make_operand<Operand>(w, sb, sk, sc, in_dt, e.w_strides_);
  e.in_dt_ = in_dt;
  e.c_dt_ = c_dt;
  e.c_.graph = out;
  e.c_.packed = TensorType{concat(sb, sr, sc), c_dt};
  e.c_.permute = e.c_.packed != out;
  e.batch_ = num_elements(sb);
  e.rows_ = num_elements(sr);
  e.cols_ = num_elements(sc);
  e.summed_ = num_elements(sk);
  e.c_.md = dnnl::memory::desc({e.batch_, e.rows_, e.cols_}, dnnl_type(c_dt), dnnl::memory::format_tag::abc);
  e.ws_bytes_ = {e.s_.permute ? num_bytes(e.s_.packed) : 0, e.w_.permute ? num_bytes(e.w_.packed) : 0,
                 e.c_.permute ? num_bytes(e.c_.packed) : 0};
  try {
    dnnl::matmul::desc desc(e.s_.md, e.w_.md, e.c_.md);
    dnnl::matmul::primitive_desc pd(desc, engine);
    e.matmul_ = dnnl::matmul(pd);
  } catch (const dnnl::error&) {
    return std::nullopt;  // not implemented for these dtypes on this CPU: the reference runs instead
  }
  return e;
}

void EinsumKernel::run(const void* a, const void* b, void* out, const std::array<std::byte*, 3>& ws,
                       dnnl::stream& stream) const {
  const void* ps = swap_ ? b : a;
  const void* pw = swap_ ? a : b;
  void* pc = c_.permute ? static_cast<void*>(ws[2]) : out;
  if (s_.permute) {
    permute_copy(ConstView{ps, s_.graph}, View{ws[0], s_.packed});
    ps = ws[0];
  }
  if (w_.permute) {
    permute_copy(ConstView{pw, w_.graph}, View{ws[1], w_.packed});
    pw = ws[1];
  }
  if (!run_trimmed(ps, pw, pc, stream)) {
    // oneDNN takes non-const handles; it only reads src and weights.
    dnnl::memory ms(s_.md, engine_, const_cast<void*>(ps));
    dnnl::memory mw(w_.md, engine_, const_cast<void*>(pw));
    dnnl::memory mc(c_.md, engine_, pc);
    matmul_.execute(stream, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mc}});
    stream.wait();
  }
  if (c_.permute) permute_copy(ConstView{ws[2], c_.packed}, View{out, c_.graph});
}

EinsumKernel::PathTimes EinsumKernel::time_bf16_paths(const TensorType& a, const TensorType& b, const TensorType& out,
                                                       const EinsumAttrs& attrs, const dnnl::engine& engine, int reps) {
  const std::optional<EinsumKernel> native = make(a, b, out, attrs, engine, Bf16Path::native);
  const std::optional<EinsumKernel> widened = make(a, b, out, attrs, engine, Bf16Path::widened);
  if (!native || !widened) return {};
  // Operands: bf16 bits of 0.5 + k/1024 for k cycling over 0..255 (nonzero, no zero tails).
  auto filled = [](const TensorType& t) {
    std::vector<uint16_t> v(static_cast<size_t>(num_elements(t.shape)));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint16_t>(0x3f00u + (i % 256));
    return v;
  };
  const std::vector<uint16_t> va = filled(a), vb = filled(b);
  std::vector<std::byte> vout(static_cast<size_t>(num_bytes(out)));
  dnnl::stream stream(engine);
  auto timed = [&](const EinsumKernel& k) {
    std::array<std::vector<std::byte>, 3> ws;
    std::array<std::byte*, 3> wp{};
    for (size_t i = 0; i < 3; ++i) {
      ws[i].resize(static_cast<size_t>(k.workspace_bytes()[i]));
      wp[i] = ws[i].data();
    }
    const auto t0 = std::chrono::steady_clock::now();
    k.run(va.data(), vb.data(), vout.data(), wp, stream);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  timed(*native);
  timed(*widened);
  std::vector<double> tn, tw;
  for (int r = 0; r < reps; ++r) {
    tn.push_back(timed(*native));
    tw.push_back(timed(*widened));
    // A first pair apart by more than 1.5x decides alone (noise on this machine is ±10-20 %).
    if (r == 0 && (tn[0] > 1.5 * tw[0] || tw[0] > 1.5 * tn[0])) break;
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  return {median(tn), median(tw)};
}

bool EinsumKernel::run_trimmed(const void* ps, const void* pw, void* pc, dnnl::stream& stream) const {
  constexpr int64_t kRound = kTailRound;
  if (rows_ < 2 * kRound && summed_ < 2 * kRound) return false;
  const int64_t sb = dtype_bytes(in_dt_), cb = dtype_bytes(c_dt_);  // bytes per element
  const auto* s = static_cast<const std::byte*>(ps);
  // S[b] is [R, K] with strides (s_strides_[1], s_strides_[2]).
  std::vector<std::array<int64_t, 2>> ext(static_cast<size_t>(batch_));  // per b: {m_b, k_b}
  int64_t kept = 0;
  for (int64_t b = 0; b < batch_; ++b) {
    const std::byte* sb0 = s + b * s_strides_[0] * sb;
    int64_t m = nonzero_extent(sb0, rows_, s_strides_[1], summed_, s_strides_[2], in_dt_, sb);
    int64_t k = m == 0 ? 0 : nonzero_extent(sb0, summed_, s_strides_[2], m, s_strides_[1], in_dt_, sb);
    m = m == 0 ? 0 : round_up(m, kRound, rows_);
    k = k == 0 ? 0 : round_up(k, kRound, summed_);
    ext[static_cast<size_t>(b)] = {m, k};
    kept += m * k;
  }
  if (10 * kept > 9 * rows_ * summed_ * batch_) return false;  // saves less than a tenth

  auto* c = static_cast<std::byte*>(pc);
  const auto* w = static_cast<const std::byte*>(pw);
  for (int64_t b = 0; b < batch_; ++b) {
    const auto [m, k] = ext[static_cast<size_t>(b)];
    std::byte* cb0 = c + b * rows_ * cols_ * cb;
    if (m < rows_) std::memset(cb0 + m * cols_ * cb, 0, static_cast<size_t>((rows_ - m) * cols_ * cb));
    if (m == 0) continue;  // S[b] is all zero (then k == 0 too)
    const dnnl::memory::desc smd({1, m, k}, dnnl_type(in_dt_), {s_strides_[0], s_strides_[1], s_strides_[2]});
    const dnnl::memory::desc wmd({1, k, cols_}, dnnl_type(in_dt_), {w_strides_[0], w_strides_[1], w_strides_[2]});
    const dnnl::memory::desc cmd({1, m, cols_}, dnnl_type(c_dt_), {m * cols_, cols_, 1});
    // Served from oneDNN's primitive cache after the first step with these extents.
    const dnnl::matmul mm(dnnl::matmul::primitive_desc(dnnl::matmul::desc(smd, wmd, cmd), engine_));
    dnnl::memory ms(smd, engine_, const_cast<std::byte*>(s + b * s_strides_[0] * sb));
    dnnl::memory mw(wmd, engine_, const_cast<std::byte*>(w + b * w_strides_[0] * sb));
    dnnl::memory mc(cmd, engine_, cb0);
    mm.execute(stream, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mc}});
  }
  stream.wait();
  return true;
}

bool EinsumKernel::run_ragged(const void* a, const void* b, void* out, const RowTails* ta, const RowTails* tb,
                              dnnl::stream& stream, RowTails& out_tails) const {
  out_tails = RowTails{};
  if (s_.permute || w_.permute || c_.permute) return false;
  const RowTails* ts = swap_ ? tb : ta;
  const RowTails* tw = swap_ ? ta : tb;
  if (ts && !ts->valid()) ts = nullptr;
  if (tw && !tw->valid()) tw = nullptr;
  if (!ts && !tw) return false;
  // Blocks of `n` rows per batch index: tails of [batch, n, inner] storage.
  auto blocks_of = [&](const RowTails* t, int64_t n, int64_t inner) {
    return t && t->inner == inner && t->outer % batch_ == 0 && (t->outer / batch_) * t->rows == n;
  };
  const bool s_row_major = s_strides_[2] == 1 && s_strides_[1] == summed_;
  const bool s_k_major = s_strides_[1] == 1 && s_strides_[2] == rows_ && rows_ > 1;
  const bool w_row_major = w_strides_[2] == 1 && w_strides_[1] == cols_;
  const bool row_case = s_row_major && blocks_of(ts, rows_, summed_) && (!tw || tw->fully_zeroed());
  const RowTails* ks = s_k_major && blocks_of(ts, summed_, rows_) ? ts : nullptr;
  const RowTails* kw = w_row_major && blocks_of(tw, summed_, cols_) ? tw : nullptr;
  if (!row_case && !ks && !kw) return false;
  if (!row_case && ks && kw && (ks->outer != kw->outer || ks->rows != kw->rows)) kw = nullptr;
  // Tails the case does not use must be zeros in storage (they are read as they are; the row case
  // required that of W's already).
  if (!row_case && ts && !ks && !ts->fully_zeroed()) return false;
  if (!row_case && tw && !kw && !tw->fully_zeroed()) return false;

  const int64_t sb = dtype_bytes(in_dt_), cb = dtype_bytes(c_dt_);
  const auto* s = static_cast<const std::byte*>(swap_ ? b : a);
  const auto* w = static_cast<const std::byte*>(swap_ ? a : b);
  auto* c = static_cast<std::byte*>(out);
  auto matmul = [&](const dnnl::memory::desc& smd, const std::byte* ps, const dnnl::memory::desc& wmd, const std::byte* pw,
                    const dnnl::memory::desc& cmd, std::byte* pc, bool accumulate) {
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    // Served from oneDNN's primitive cache after the first step with these extents.
    const dnnl::matmul mm(dnnl::matmul::primitive_desc(dnnl::matmul::desc(smd, wmd, cmd), attr, engine_));
    dnnl::memory ms(smd, engine_, const_cast<std::byte*>(ps));
    dnnl::memory mw(wmd, engine_, const_cast<std::byte*>(pw));
    dnnl::memory mc(cmd, engine_, pc);
    mm.execute(stream, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mc}});
  };
  const auto st = dnnl_type(in_dt_), ct = dnnl_type(c_dt_);

  if (row_case) {  // each block's rows of S: out rows of the same block
    const int64_t per = ts->outer / batch_, L = ts->rows;
    for (int64_t bi = 0; bi < batch_; ++bi)
      for (int64_t j = 0; j < per; ++j) {
        const int64_t ext = ts->extent[static_cast<size_t>(bi * per + j)];
        if (ext == 0) continue;
        const int64_t m = round_up(ext, kTailRound, L);
        const dnnl::memory::desc smd({1, m, summed_}, st, {m * summed_, s_strides_[1], s_strides_[2]});
        const dnnl::memory::desc wmd({1, summed_, cols_}, st, {summed_ * cols_, w_strides_[1], w_strides_[2]});
        const dnnl::memory::desc cmd({1, m, cols_}, ct, {m * cols_, cols_, 1});
        matmul(smd, s + (bi * s_strides_[0] + j * L * s_strides_[1]) * sb, wmd, w + bi * w_strides_[0] * sb, cmd,
               c + (bi * rows_ + j * L) * cols_ * cb, false);
      }
    stream.wait();
    out_tails = RowTails{ts->outer, ts->rows, cols_, ts->extent, ts->extent};
    return true;
  }

  // Summed dims in blocks: out[b] = Σ_j S[b][:, block j] W[b][block j, :], each block over the
  // smaller of the operands' extents (exactly: a product with a zero row is zero).
  const RowTails& t = ks ? *ks : *kw;
  const int64_t per = t.outer / batch_, L = t.rows;
  for (int64_t bi = 0; bi < batch_; ++bi) {
    bool first = true;
    for (int64_t j = 0; j < per; ++j) {
      const auto o = static_cast<size_t>(bi * per + j);
      int64_t ext = t.extent[o];
      if (ks && kw) ext = std::min(ks->extent[o], kw->extent[o]);
      if (ext == 0) continue;
      // A batch of one: its stride spans the block.
      const dnnl::memory::desc smd({1, rows_, ext}, st, {rows_ * summed_, s_strides_[1], s_strides_[2]});
      const dnnl::memory::desc wmd({1, ext, cols_}, st, {summed_ * cols_, w_strides_[1], w_strides_[2]});
      const dnnl::memory::desc cmd({1, rows_, cols_}, ct, {rows_ * cols_, cols_, 1});
      matmul(smd, s + (bi * s_strides_[0] + j * L * s_strides_[2]) * sb, wmd, w + (bi * w_strides_[0] + j * L * w_strides_[1]) * sb,
             cmd, c + bi * rows_ * cols_ * cb, !first);
      first = false;
    }
    if (first) std::memset(c + bi * rows_ * cols_ * cb, 0, static_cast<size_t>(rows_ * cols_ * cb));
  }
  stream.wait();
  return true;
}

}  // namespace sy::exec
