#include "executor/einsum.hpp"

#include "executor/kernels.hpp"
#include "graph/error.hpp"

#include <algorithm>

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
Operand make_operand(const TensorType& x, const Shape& g0, const Shape& g1, const Shape& g2, DType dt) {
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
  return op;
}

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
                                               const EinsumAttrs& attrs, const dnnl::engine& engine) {
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
  const DType in_dt = a.dtype == DType::bf16 && b.dtype == DType::bf16 && bf16_matmul_native() ? DType::bf16 : DType::f32;
  const DType c_dt = in_dt == DType::bf16 ? out.dtype : DType::f32;
  e.s_ = make_operand<Operand>(s, sb, sr, sk, in_dt);
  e.w_ = make_operand<Operand>(w, sb, sk, sc, in_dt);
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
  // oneDNN takes non-const handles; it only reads src and weights.
  dnnl::memory ms(s_.md, engine_, const_cast<void*>(ps));
  dnnl::memory mw(w_.md, engine_, const_cast<void*>(pw));
  dnnl::memory mc(c_.md, engine_, pc);
  matmul_.execute(stream, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mc}});
  stream.wait();
  if (c_.permute) permute_copy(ConstView{ws[2], c_.packed}, View{out, c_.graph});
}

}  // namespace sy::exec
