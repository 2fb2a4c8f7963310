// einsum over named dims: (a, b) -> out, every product a[..] * b[..] over the union of a's and
// b's dims accumulated into out[projection onto out's dims]; dims absent from out are summed. A
// plain matmul is einsum(a [B, K], b [K, N], {B, N}); batch dims are dims of a, b and out.
//
// Flops: 2 * product of the sizes of the union of a's and b's dims (one multiply-add per term),
// whatever the output. Bytes: a and b read once, out written once.
#include "ops/common.hpp"
#include "ops/defs.hpp"

#include <algorithm>

namespace sy::ops {
namespace {

// a's dims in order, then b's dims that a does not have.
Shape union_dims(const Shape& a, const Shape& b) {
  Shape u = a;
  for (const Dim& d : b)
    if (!has_dim(a, d.name)) u.push_back(d);
  return u;
}

// Dims of `x` that occur in `other` or `out`, in x's order: what the gradient einsum of x can
// produce (a dim only in x was summed away, so its gradient is a broadcast along it).
std::vector<std::string> grad_dims(const Shape& x, const Shape& other, const std::vector<std::string>& out) {
  std::vector<std::string> keep;
  for (const Dim& d : x)
    if (has_dim(other, d.name) || std::find(out.begin(), out.end(), d.name) != out.end()) keep.push_back(d.name);
  return keep;
}

// The gradient of operand x given dy and the other operand.
ValueId operand_grad(Expr dy, Expr other, Shape x, const std::vector<std::string>& out) {  // x by value: emitting nodes may move g.values
  const auto keep = grad_dims(x, other.shape(), out);
  Expr g = einsum(dy, other, keep);  // x's dims except those only x had, in x's order
  if (keep.size() != x.size()) g = broadcast(g, x);
  return g.id;
}

}  // namespace

const OpDef& def_einsum() {
  static const OpDef d{
      "einsum", OpClass::matmul,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        expect_inputs(in, 2);
        const TensorType& a = in[0];
        const TensorType& b = in[1];
        expect_float(a, "a");
        if (a.dtype != b.dtype) fail("a is {} but b is {} (dtypes must match)", to_string(a), to_string(b));
        for (const Dim& db : b.shape)
          if (auto i = dim_index(a.shape, db.name); i && a.shape[*i].size != db.size)
            fail("dim '{}' has size {} in a {} but {} in b {}", db.name, a.shape[*i].size, to_string(a), db.size, to_string(b));
        const auto& out = std::get<EinsumAttrs>(attrs).out;
        const Shape u = union_dims(a.shape, b.shape);
        Shape s;
        for (size_t k = 0; k < out.size(); ++k) {
          auto i = dim_index(u, out[k]);
          if (!i) fail("output dim '{}' is in neither a {} nor b {}", out[k], to_string(a), to_string(b));
          for (size_t j = 0; j < k; ++j)
            if (out[j] == out[k]) fail("output dim '{}' is listed twice", out[k]);
          s.push_back(u[*i]);
        }
        return {TensorType{s, a.dtype}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& a = *in[0];
        const Tensor& b = *in[1];
        Tensor& y = *out[0];
        // One loop per union dim, with the element stride of that dim in a, b and y (0 if absent).
        struct Loop {
          int64_t size, sa, sb, sy;
        };
        const Shape u = union_dims(a.shape(), b.shape());
        const auto st_a = strides_of(a.shape());
        const auto st_b = strides_of(b.shape());
        const auto st_y = strides_of(y.shape());
        auto stride = [](const Shape& s, const std::vector<int64_t>& st, const std::string& name) -> int64_t {
          auto i = dim_index(s, name);
          return i ? st[*i] : 0;
        };
        std::vector<Loop> loops;
        for (const Dim& dim : u)
          loops.push_back({dim.size, stride(a.shape(), st_a, dim.name), stride(b.shape(), st_b, dim.name),
                           stride(y.shape(), st_y, dim.name)});
        std::fill(y.data.begin(), y.data.end(), 0.0);
        std::vector<int64_t> idx(loops.size(), 0);
        int64_t oa = 0, ob = 0, oy = 0;
        const int64_t terms = num_elements(u);
        for (int64_t t = 0; t < terms; ++t) {
          y.data[static_cast<size_t>(oy)] += a.data[static_cast<size_t>(oa)] * b.data[static_cast<size_t>(ob)];
          for (size_t k = loops.size(); k-- > 0;) {  // next multi-index over the union
            const Loop& l = loops[k];
            if (++idx[k] < l.size) {
              oa += l.sa, ob += l.sb, oy += l.sy;
              break;
            }
            oa -= l.sa * (l.size - 1), ob -= l.sb * (l.size - 1), oy -= l.sy * (l.size - 1);
            idx[k] = 0;
          }
        }
        round_all(y, exact);
      },
      // da = einsum(dy, b) onto a's dims (broadcast along dims only a had), likewise db.
      [](Builder& bld, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const auto& out = std::get<EinsumAttrs>(n.attrs).out;
        Expr a = bld.wrap(n.inputs.at(0));
        Expr b = bld.wrap(n.inputs.at(1));
        Expr g = bld.wrap(dy[0]);
        return {operand_grad(g, b, a.shape(), out), operand_grad(g, a, b.shape(), out)};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost(in, out, 2.0 * static_cast<double>(num_elements(union_dims(in[0].shape, in[1].shape))));
      },
      [](const std::vector<TensorType>&, const Attrs&) {  // dims absent from `out` are contracted
        LoweringRoles r;
        r.sums_absent_dims = true;
        return r;
      }};
  return d;
}

}  // namespace sy::ops
