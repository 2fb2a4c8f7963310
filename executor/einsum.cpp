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

Shape concat(const Shape& x, const Shape& y, const Shape& z) {
  Shape s = x;
  s.insert(s.end(), y.begin(), y.end());
  s.insert(s.end(), z.begin(), z.end());
  return s;
}

dnnl::memory::data_type dnnl_type(DType t) {
  return t == DType::bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

}  // namespace

std::optional<EinsumKernel> EinsumKernel::make(const TensorType& a, const TensorType& b, const TensorType& out,
                                               const EinsumAttrs& attrs, const dnnl::engine& engine) {
  if (!is_float(a.dtype) || !is_float(b.dtype) || !is_float(out.dtype)) return std::nullopt;
  const std::vector<std::string>& o = attrs.out;
  std::vector<std::string> batch, m, n, k;  // dim names per class
  for (const std::string& d : o) {
    const bool in_a = has_dim(a.shape, d), in_b = has_dim(b.shape, d);
    if (in_a && in_b) batch.push_back(d);
    else if (in_a) m.push_back(d);
    else if (in_b) n.push_back(d);
    else return std::nullopt;  // infer rejects this; leave it to the reference
  }
  for (const Dim& d : a.shape) {
    if (in_list(o, d.name)) continue;
    if (!has_dim(b.shape, d.name)) return std::nullopt;  // summed within a alone
    k.push_back(d.name);
  }
  for (const Dim& d : b.shape)
    if (!in_list(o, d.name) && !has_dim(a.shape, d.name)) return std::nullopt;  // summed within b alone

  EinsumKernel e;
  e.a_ = a;
  e.b_ = b;
  e.out_ = out;
  e.engine_ = engine;
  const Shape sb = pick(a.shape, batch), sm = pick(a.shape, m), sn = pick(b.shape, n), sk = pick(a.shape, k);
  // Matmul dtypes: bf16 only when both inputs are bf16 (then the output dtype as asked); else f32.
  const DType in_dt = a.dtype == DType::bf16 && b.dtype == DType::bf16 ? DType::bf16 : DType::f32;
  const DType c_dt = in_dt == DType::bf16 ? out.dtype : DType::f32;
  e.a_mm_ = TensorType{concat(sb, sm, sk), in_dt};
  e.b_mm_ = TensorType{concat(sb, sk, sn), in_dt};
  e.c_mm_ = TensorType{concat(sb, sm, sn), c_dt};
  SY_CHECK(pick(b.shape, k) == sk, "einsum: summed dims of a {} and b {} differ in size", to_string(a), to_string(b));
  e.permute_a_ = e.a_mm_ != a;
  e.permute_b_ = e.b_mm_ != b;
  e.permute_c_ = e.c_mm_ != out;
  e.ws_bytes_ = {e.permute_a_ ? num_bytes(e.a_mm_) : 0, e.permute_b_ ? num_bytes(e.b_mm_) : 0,
                 e.permute_c_ ? num_bytes(e.c_mm_) : 0};
  e.batch_ = num_elements(sb);
  e.m_ = num_elements(sm);
  e.n_ = num_elements(sn);
  e.k_ = num_elements(sk);

  using tag = dnnl::memory::format_tag;
  e.a_md_ = dnnl::memory::desc({e.batch_, e.m_, e.k_}, dnnl_type(in_dt), tag::abc);
  e.b_md_ = dnnl::memory::desc({e.batch_, e.k_, e.n_}, dnnl_type(in_dt), tag::abc);
  e.c_md_ = dnnl::memory::desc({e.batch_, e.m_, e.n_}, dnnl_type(c_dt), tag::abc);
  try {
    dnnl::matmul::desc desc(e.a_md_, e.b_md_, e.c_md_);
    dnnl::matmul::primitive_desc pd(desc, engine);
    e.matmul_ = dnnl::matmul(pd);
  } catch (const dnnl::error&) {
    return std::nullopt;  // not implemented for these dtypes on this CPU: the reference runs instead
  }
  return e;
}

void EinsumKernel::run(const void* a, const void* b, void* out, const std::array<std::byte*, 3>& ws,
                       dnnl::stream& stream) const {
  const void* pa = a;
  const void* pb = b;
  void* pc = permute_c_ ? static_cast<void*>(ws[2]) : out;
  if (permute_a_) {
    permute_copy(ConstView{a, a_}, View{ws[0], a_mm_});
    pa = ws[0];
  }
  if (permute_b_) {
    permute_copy(ConstView{b, b_}, View{ws[1], b_mm_});
    pb = ws[1];
  }
  // oneDNN takes non-const handles; it only reads src and weights.
  dnnl::memory ma(a_md_, engine_, const_cast<void*>(pa));
  dnnl::memory mb(b_md_, engine_, const_cast<void*>(pb));
  dnnl::memory mc(c_md_, engine_, pc);
  matmul_.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
  stream.wait();
  if (permute_c_) permute_copy(ConstView{ws[2], c_mm_}, View{out, out_});
}

}  // namespace sy::exec
