// Reductions and normalizations over named dims. The output of a reduction keeps x's other dims
// in their order (reducing every dim gives the scalar shape []). softmax, logsumexp and
// cross_entropy subtract the row max before exponentiating (numerically stable); every reference
// forward computes in double and rounds on store. reduce_sum and reduce_max also take i32 (exact;
// no gradient); every other kind takes f32 or bf16.
//
// Flop counts (N = elements of x, R = rows = elements of the output of a one-dim op):
//   reduce_sum   N            one add per input element
//   reduce_max   N            one compare per input element
//   reduce_mean  N + out      the adds, then one divide per output element
//   softmax      5 N          max compare, subtract, exp, sum add, divide per element
//   logsumexp    4 N + 2 R    max compare, subtract, exp, sum add per element; log and add per row
//   rms_norm     4 N + 3 R    square and add per element (mean of squares), then x * r * g;
//                             divide by n, add eps, rsqrt per row
//   cross_entropy 4 N + 3 R   logsumexp of the logits, then one subtract of logit[label] per row
// Bytes: every input read once and every output written once at its storage dtype.
#include "ops/common.hpp"
#include "ops/defs.hpp"

#include <algorithm>
#include <limits>

namespace sy::ops {
namespace {

// ---- shape rules ----

// x without the reduced dims; each dim must be in x, once.
std::vector<TensorType> infer_reduce(const std::vector<TensorType>& in, const Attrs& a) {
  expect_inputs(in, 1);
  const auto& dims = std::get<DimsAttrs>(a).dims;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (!has_dim(in[0].shape, dims[i]))
      fail("reduced dim '{}' is not a dim of x {}", dims[i], to_string(in[0]));
    for (size_t j = 0; j < i; ++j)
      if (dims[j] == dims[i]) fail("reduced dim '{}' is listed twice", dims[i]);
  }
  return {TensorType{drop_dims(in[0].shape, dims), in[0].dtype}};
}

std::vector<TensorType> infer_reduce_float(const std::vector<TensorType>& in, const Attrs& a) {
  auto out = infer_reduce(in, a);
  expect_float(in[0], "x");
  return out;
}

// The position of `d` in x; x must have the dim with the size the attributes give.
size_t expect_dim(const TensorType& x, const Dim& d, const char* what) {
  auto i = dim_index(x.shape, d.name);
  if (!i) fail("{} '{}' is not a dim of {}", what, d.name, to_string(x));
  if (x.shape[*i].size != d.size)
    fail("{} '{}' has size {} in the attributes but {} in {}", what, d.name, d.size, x.shape[*i].size, to_string(x));
  return *i;
}

// ---- reference helpers ----

// x's elements grouped into rows along one dim: row r (an index into x's shape without the
// dim, row-major) holds the `n` elements at offsets base(r) + j * inner, j in [0, n).
struct Rows {
  int64_t outer = 1;  // product of the sizes before the dim
  int64_t n = 1;      // size of the dim
  int64_t inner = 1;  // product of the sizes after the dim
  int64_t count() const { return outer * inner; }
  size_t at(int64_t r, int64_t j) const { return static_cast<size_t>((r / inner) * n * inner + j * inner + r % inner); }
};

Rows rows_along(const Shape& s, const std::string& dim) {
  const size_t k = dim_index(s, dim).value();
  Rows rows;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i < k) rows.outer *= s[i].size;
    if (i > k) rows.inner *= s[i].size;
  }
  rows.n = s[k].size;
  return rows;
}

double row_max(const Tensor& x, const Rows& rows, int64_t r) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < rows.n; ++j) m = std::max(m, x.data[rows.at(r, j)]);
  return m;
}

// log sum_j exp(x_j) of row r, computed as m + log sum_j exp(x_j - m).
double row_logsumexp(const Tensor& x, const Rows& rows, int64_t r) {
  const double m = row_max(x, rows, r);
  double s = 0.0;
  for (int64_t j = 0; j < rows.n; ++j) s += std::exp(x.data[rows.at(r, j)] - m);
  return m + std::log(s);
}

// out[projection of e] = combine(out[...], x[e]) over every element e of x, from `init`.
template <typename F>
void reduce_forward(const Tensor& x, Tensor& y, double init, F combine) {
  std::fill(y.data.begin(), y.data.end(), init);
  const auto p = project_index(x.shape(), y.shape());
  for (size_t e = 0; e < x.data.size(); ++e) {
    double& acc = y.data[static_cast<size_t>(p[e])];
    acc = combine(acc, x.data[e]);
  }
}

// ---- backward helpers ----
Expr in_expr(Builder& b, const Node& n, size_t i) { return b.wrap(n.inputs.at(i)); }
Expr out_expr(Builder& b, const Node& n) { return b.wrap(n.outputs.at(0)); }

// ---- lowering roles ----
// reduce_*: the dims a reduction drops are summed out, so splitting one leaves partial results,
// combined by `Op` across devices.
template <ReduceOp Op>
LoweringRoles reduction_roles(const std::vector<TensorType>&, const Attrs&) {
  LoweringRoles r;
  r.sums_absent_dims = true;
  r.reduce = Op;
  return r;
}
// softmax, logsumexp, cross_entropy: the dim of the DimAttrs is normalised over, so it stays whole.
LoweringRoles whole_dim_roles(const std::vector<TensorType>&, const Attrs& a) {
  LoweringRoles r;
  r.whole = {std::get<DimAttrs>(a).dim.name};
  return r;
}

}  // namespace

const OpDef& def_reduce_sum() {
  static const OpDef d{
      "reduce_sum", OpClass::reduction, infer_reduce,
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        reduce_forward(*in[0], *out[0], 0.0, [](double acc, double x) { return acc + x; });
        round_all(*out[0], exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        Expr x = in_expr(b, n, 0);
        if (!is_float(x.dtype())) return {ValueId{}};
        return {broadcast(b.wrap(dy[0]), x.shape()).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost(in, out, elems(in[0]));
      },
      reduction_roles<ReduceOp::sum>};
  return d;
}

const OpDef& def_reduce_mean() {
  static const OpDef d{
      "reduce_mean", OpClass::reduction, infer_reduce_float,
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        Tensor& y = *out[0];
        reduce_forward(*in[0], y, 0.0, [](double acc, double x) { return acc + x; });
        const double count = static_cast<double>(in[0]->size()) / static_cast<double>(y.size());
        for (double& v : y.data) v /= count;
        round_all(y, exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        Expr x = in_expr(b, n, 0);
        const double count = static_cast<double>(num_elements(x.shape())) /
                             static_cast<double>(num_elements(out_expr(b, n).shape()));
        return {scale(broadcast(b.wrap(dy[0]), x.shape()), 1.0 / count).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost(in, out, elems(in[0]) + elems(out[0]));
      },
      reduction_roles<ReduceOp::mean>};
  return d;
}

// Gradient flows to every element equal to the max (ties share it; inputs with distinct values
// have exactly one per output element).
const OpDef& def_reduce_max() {
  static const OpDef d{
      "reduce_max", OpClass::reduction, infer_reduce,
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        reduce_forward(*in[0], *out[0], -std::numeric_limits<double>::infinity(),
                       [](double acc, double x) { return std::max(acc, x); });
        round_all(*out[0], exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        Expr x = in_expr(b, n, 0);
        if (!is_float(x.dtype())) return {ValueId{}};
        Expr is_max = scale(greater(broadcast(out_expr(b, n), x.shape()), x), -1.0, 1.0);  // [x dims] 1 where x == max
        return {(is_max * b.wrap(dy[0])).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost(in, out, elems(in[0]));
      },
      reduction_roles<ReduceOp::max>};
  return d;
}

// y_j = exp(x_j - m) / sum_i exp(x_i - m) along the dim, m the row max.
const OpDef& def_softmax() {
  static const OpDef d{
      "softmax", OpClass::reduction,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        expect_float(in[0], "x");
        expect_dim(in[0], std::get<DimAttrs>(a).dim, "softmax dim");
        return {in[0]};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& x = *in[0];
        Tensor& y = *out[0];
        const Rows rows = rows_along(x.shape(), std::get<DimAttrs>(a).dim.name);
        for (int64_t r = 0; r < rows.count(); ++r) {
          const double m = row_max(x, rows, r);
          double s = 0.0;
          for (int64_t j = 0; j < rows.n; ++j) s += (y.data[rows.at(r, j)] = std::exp(x.data[rows.at(r, j)] - m));
          for (int64_t j = 0; j < rows.n; ++j) y.data[rows.at(r, j)] /= s;
        }
        round_all(y, exact);
      },
      // dx = y * (dy - sum_dim(dy * y))
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        Expr y = out_expr(b, n);
        Expr g = b.wrap(dy[0]);
        Expr dot = sum(g * y, {std::get<DimAttrs>(n.attrs).dim.name});  // [x dims - dim]
        return {(y * (g - dot)).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        OpCost c = streaming_cost(in, out, 5 * elems(in[0]));
        c.transcendentals = elems(in[0]);  // an exp per element
        return c;
      },
      whole_dim_roles};
  return d;
}

// y = log sum_dim exp(x), the dim dropped.
const OpDef& def_logsumexp() {
  static const OpDef d{
      "logsumexp", OpClass::reduction,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        expect_float(in[0], "x");
        const Dim& dim = std::get<DimAttrs>(a).dim;
        expect_dim(in[0], dim, "logsumexp dim");
        return {TensorType{drop_dims(in[0].shape, {dim.name}), in[0].dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Rows rows = rows_along(in[0]->shape(), std::get<DimAttrs>(a).dim.name);
        for (int64_t r = 0; r < rows.count(); ++r) out[0]->data[static_cast<size_t>(r)] = row_logsumexp(*in[0], rows, r);
        round_all(*out[0], exact);
      },
      // dx = softmax(x) * dy (dy broadcasts along the dim)
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {(softmax(in_expr(b, n, 0), std::get<DimAttrs>(n.attrs).dim.name) * b.wrap(dy[0])).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        OpCost c = streaming_cost(in, out, 4 * elems(in[0]) + 2 * elems(out[0]));
        c.transcendentals = elems(in[0]) + elems(out[0]);  // an exp per element, a log per row
        return c;
      },
      whole_dim_roles};
  return d;
}

// (x [..., D], g [D]) -> y = x * r * g with r = rsqrt(mean_D x^2 + eps), D the normalized dim
// (anywhere in x).
const OpDef& def_rms_norm() {
  static const OpDef d{
      "rms_norm", OpClass::reduction,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 2);
        expect_float(in[0], "x");
        const auto& p = std::get<RmsNormAttrs>(a);
        if (!(p.eps >= 0.0)) fail("rms_norm eps {} must be >= 0", p.eps);
        auto i = dim_index(in[0].shape, p.dim);
        if (!i) fail("normalized dim '{}' is not a dim of x {}", p.dim, to_string(in[0]));
        const TensorType want{{in[0].shape[*i]}, in[0].dtype};
        if (in[1] != want) fail("scale g is {} but must be {} (x's normalized dim, x's dtype)", to_string(in[1]), to_string(want));
        return {in[0]};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const auto& p = std::get<RmsNormAttrs>(a);
        const Tensor& x = *in[0];
        const Tensor& g = *in[1];
        Tensor& y = *out[0];
        const Rows rows = rows_along(x.shape(), p.dim);
        for (int64_t r = 0; r < rows.count(); ++r) {
          double ss = 0.0;
          for (int64_t j = 0; j < rows.n; ++j) ss += x.data[rows.at(r, j)] * x.data[rows.at(r, j)];
          const double inv_rms = 1.0 / std::sqrt(ss / static_cast<double>(rows.n) + p.eps);
          for (int64_t j = 0; j < rows.n; ++j)
            y.data[rows.at(r, j)] = x.data[rows.at(r, j)] * inv_rms * g.data[static_cast<size_t>(j)];
        }
        round_all(y, exact);
      },
      // With r = rsqrt(mean(x^2) + eps) and n = x * r:
      //   dx = r * (dy*g - n * mean_D(dy*g*n)),   dg = sum over the other dims of dy * n
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const auto& p = std::get<RmsNormAttrs>(n.attrs);
        Expr x = in_expr(b, n, 0);  // [..., D]
        Expr g = in_expr(b, n, 1);  // [D]
        Expr gy = b.wrap(dy[0]);    // [..., D]
        Expr r = rsqrt(scale(mean(x * x, {p.dim}), 1.0, p.eps));  // [...]
        Expr normed = x * r;                                       // [..., D]
        Expr gy_g = gy * g;                                        // [..., D]
        Expr dx = (gy_g - normed * mean(gy_g * normed, {p.dim})) * r;
        return {dx.id, sum_to(b, (gy * normed).id, g.shape())};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& a) {
        const int64_t d_size = in[0].shape[dim_index(in[0].shape, std::get<RmsNormAttrs>(a).dim).value()].size;
        const double rows = elems(in[0]) / static_cast<double>(d_size);
        OpCost c = streaming_cost(in, out, 4 * elems(in[0]) + 3 * rows);
        c.transcendentals = rows;  // an rsqrt per row
        return c;
      },
      [](const std::vector<TensorType>&, const Attrs& a) {  // normalises over its dim
        LoweringRoles r;
        r.whole = {std::get<RmsNormAttrs>(a).dim};
        return r;
      }};
  return d;
}

// (logits [..., V], labels i32 [...]) -> loss [...] = logsumexp_V(logits) - logits[label], the
// per-token loss in the logits' dtype. The class dim V may be anywhere in logits; labels have
// logits' shape without it, in the same order.
const OpDef& def_cross_entropy() {
  static const OpDef d{
      "cross_entropy", OpClass::reduction,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 2);
        expect_float(in[0], "logits");
        expect_int(in[1], "labels");
        const Dim& cls = std::get<DimAttrs>(a).dim;
        expect_dim(in[0], cls, "class dim");
        const Shape per_token = drop_dims(in[0].shape, {cls.name});
        if (in[1].shape != per_token)
          fail("labels {} must have the logits' shape without the class dim '{}': {}", to_string(in[1]), cls.name,
               to_string(per_token));
        return {TensorType{per_token, in[0].dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& logits = *in[0];
        const Tensor& labels = *in[1];
        const Dim& cls = std::get<DimAttrs>(a).dim;
        const Rows rows = rows_along(logits.shape(), cls.name);
        for (int64_t r = 0; r < rows.count(); ++r) {
          const double label = labels.data[static_cast<size_t>(r)];
          if (!(label >= 0 && label < static_cast<double>(rows.n)))
            fail("cross_entropy: label {} at position {} is outside [0, {}) (class dim '{}')", label, r, rows.n, cls.name);
          const double lse = row_logsumexp(logits, rows, r);
          out[0]->data[static_cast<size_t>(r)] = lse - logits.data[rows.at(r, static_cast<int64_t>(label))];
        }
        round_all(*out[0], exact);
      },
      // dlogits = (softmax(logits) - one_hot(labels)) * dy; labels get no gradient.
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const Dim& cls = std::get<DimAttrs>(n.attrs).dim;
        Expr logits = in_expr(b, n, 0);
        Expr target = one_hot(in_expr(b, n, 1), cls, logits.dtype());  // [..., V]
        return {((softmax(logits, cls.name) - target) * b.wrap(dy[0])).id, ValueId{}};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        OpCost c = streaming_cost(in, out, 4 * elems(in[0]) + 3 * elems(out[0]));
        c.transcendentals = elems(in[0]) + elems(out[0]);  // an exp per logit, a log per token
        return c;
      },
      whole_dim_roles};
  return d;
}

}  // namespace sy::ops
