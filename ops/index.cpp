// Integer-indexed ops: embeddings, one-hot, top-k, cumulative sums, gather and scatter-add (the
// routing and dispatch primitives of the MoE layer). Indices are i32 values held as doubles in
// the reference tensors. An index outside its range is bad input (InputError naming the index,
// where it is and the allowed range), except in one_hot, where it gives an all-zero row.
//
// Cost convention (OpCost: multiply-add = 2 flops; bytes at storage dtype):
//   flops   one per add: cumsum 1 per element of x; scatter_add and embedding_grad 1 per element
//           of the source (src, dy). Integer adds (an i32 cumsum of routing positions) count like
//           float adds. Selection and copying are 0 flops: the comparisons of top_k, and
//           embedding, one_hot, gather.
//   read    a gather reads its indices and the elements it fetches, not the whole source:
//           embedding reads ids + one table row per id (= out's bytes), gather reads idx + one
//           element of x per output element (= out's bytes). Every other kind reads each input
//           once.
//   written each output once. scatter_add and embedding_grad write their whole output (zero fill
//           then accumulate in place; the read-modify-write of the accumulator is not counted
//           again).
#include "ops/common.hpp"
#include "ops/defs.hpp"

#include <algorithm>
#include <numeric>

namespace sy::ops {
namespace {

// A shape seen as [outer, mid, inner] around the dim at position p (row-major): element
// (o, j, i) sits at offset (o * mid + j) * inner + i.
struct AxisSplit {
  int64_t outer = 1;
  int64_t mid = 1;
  int64_t inner = 1;
};

AxisSplit split_at(const Shape& s, size_t p) {
  AxisSplit a;
  for (size_t d = 0; d < s.size(); ++d) {
    if (d < p) a.outer *= s[d].size;
    if (d == p) a.mid = s[d].size;
    if (d > p) a.inner *= s[d].size;
  }
  return a;
}

size_t at(int64_t offset) { return static_cast<size_t>(offset); }

// True iff index value v (a double holding an i32) lies in [0, n); NaN is out of range.
bool in_range(double v, int64_t n) { return v >= 0.0 && v < static_cast<double>(n); }

size_t position_of(const Shape& s, const std::string& name, const char* what, const TensorType& t) {
  auto p = dim_index(s, name);
  if (!p) fail("{} dim '{}' is not a dim of {}", what, name, to_string(t));
  return *p;
}

// Reads each input once, writes each output once.
OpCost cost_stream(const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
  return streaming_cost(in, out, 0.0);
}

// A gather (embedding, gather): reads the indices (input 1) and the fetched elements, which are
// exactly as many as the output holds, at the output's (= the source's) dtype.
OpCost cost_gather(const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
  return OpCost{0.0, bytes(in[1]) + bytes(out[0]), bytes(out[0])};
}

// ---- lowering roles: an index along a dim needs that dim whole on every device ----
LoweringRoles whole_dims(std::vector<std::string> dims) {
  LoweringRoles r;
  r.whole = std::move(dims);
  return r;
}

}  // namespace

// embedding(table [V, D], ids i32 [...]) -> [..., D]: out[.., :] = table[ids[..], :].
const OpDef& def_embedding() {
  static const OpDef d{
      "embedding", OpClass::index,
      [](const std::vector<TensorType>& in, const Attrs&) -> std::vector<TensorType> {
        expect_inputs(in, 2);
        const TensorType& table = in[0];
        if (table.shape.size() != 2) fail("table must be 2-D [vocab, d_model], got {}", to_string(table));
        expect_int(in[1], "ids");
        Shape s = in[1].shape;  // [..., D]
        s.push_back(table.shape[1]);
        expect_valid_shape(s, "embedding output (ids' dims then the table's second dim)");
        return {TensorType{s, table.dtype}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& table = *in[0];  // [V, D]
        const Tensor& ids = *in[1];    // [N...]
        Tensor& y = *out[0];           // [N..., D]
        const int64_t v = table.shape()[0].size;
        const int64_t dm = table.shape()[1].size;
        for (int64_t i = 0; i < ids.size(); ++i) {
          const double id = ids.data[at(i)];
          if (!in_range(id, v))
            fail("embedding: id {} at element {} of ids {} is outside [0, {}) (the table's dim '{}' has size {})", id, i,
                 to_string(ids.type), v, table.shape()[0].name, v);
          const int64_t row = static_cast<int64_t>(id);
          for (int64_t k = 0; k < dm; ++k) y.data[at(i * dm + k)] = table.data[at(row * dm + k)];
        }
        round_all(y, exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const TensorType& table = b.graph().type(n.inputs[0]);
        if (!is_float(table.dtype)) return {ValueId{}, ValueId{}};
        // d(table) [V, D] = rows of dy scatter-added at ids; ids: none.
        return {embedding_grad(b.wrap(n.inputs[1]), b.wrap(dy[0]), table.shape[0]).id, ValueId{}};
      },
      cost_gather,
      [](const std::vector<TensorType>& in, const Attrs&) {  // the table's vocab: an id may read any row
        return whole_dims({in.at(0).shape.at(0).name});
      }};
  return d;
}

// embedding_grad(ids i32 [...], dy [..., D]) -> [V, D]: zeros, then out[ids[..], :] += dy[.., :].
const OpDef& def_embedding_grad() {
  static const OpDef d{
      "embedding_grad", OpClass::index,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 2);
        expect_int(in[0], "ids");
        expect_float(in[1], "dy");
        const Shape& ids = in[0].shape;
        const Shape& dy = in[1].shape;
        if (dy.size() != ids.size() + 1 || !std::equal(ids.begin(), ids.end(), dy.begin()))
          fail("dy {} must be ids' shape {} followed by one more dim (d_model)", to_string(in[1]), to_string(ids));
        const Shape s{std::get<DimAttrs>(a).dim, dy.back()};  // [V, D]
        expect_valid_shape(s, "embedding_grad output [vocab, d_model]");
        return {TensorType{s, in[1].dtype}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& ids = *in[0];  // [N...]
        const Tensor& dy = *in[1];   // [N..., D]
        Tensor& y = *out[0];         // [V, D]
        const int64_t v = y.shape()[0].size;
        const int64_t dm = y.shape()[1].size;
        std::fill(y.data.begin(), y.data.end(), 0.0);
        for (int64_t i = 0; i < ids.size(); ++i) {
          const double id = ids.data[at(i)];
          if (!in_range(id, v))
            fail("embedding_grad: id {} at element {} of ids {} is outside [0, {}) (vocab dim '{}')", id, i,
                 to_string(ids.type), v, y.shape()[0].name);
          const int64_t row = static_cast<int64_t>(id);
          for (int64_t k = 0; k < dm; ++k) y.data[at(row * dm + k)] += dy.data[at(i * dm + k)];
        }
        round_all(y, exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        // Linear in dy: its adjoint gathers the rows back. ids: none.
        return {ValueId{}, embedding(b.wrap(dy[0]), b.wrap(n.inputs[0])).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return OpCost{elems(in[1]), bytes(in[0]) + bytes(in[1]), bytes(out[0])};
      },
      [](const std::vector<TensorType>&, const Attrs& a) {  // the vocab whole; the ids' dims summed out
        LoweringRoles r = whole_dims({std::get<DimAttrs>(a).dim.name});
        r.sums_absent_dims = true;
        return r;
      }};
  return d;
}

// one_hot(ids i32 [...]) -> [..., n]: 1 where the class equals the id, 0 elsewhere. An id outside
// [0, n) gives an all-zero row; Mesh-TF relies on this for dropped tokens (one_hot of a position
// >= capacity dispatches the token nowhere).
const OpDef& def_one_hot() {
  static const OpDef d{
      "one_hot", OpClass::index,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        expect_int(in[0], "ids");
        const auto& oh = std::get<OneHotAttrs>(a);
        Shape s = in[0].shape;
        s.push_back(oh.dim);
        expect_valid_shape(s, "one_hot output (ids' dims then the class dim)");
        return {TensorType{s, oh.dtype}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) {
        const Tensor& ids = *in[0];  // [N...]
        Tensor& y = *out[0];         // [N..., n]
        const int64_t n = y.shape().back().size;
        std::fill(y.data.begin(), y.data.end(), 0.0);
        for (int64_t i = 0; i < ids.size(); ++i) {
          const double id = ids.data[at(i)];
          if (in_range(id, n)) y.data[at(i * n + static_cast<int64_t>(id))] = 1.0;
        }
      },
      // Piecewise constant in nothing differentiable: ids are integers.
      [](Builder&, const Node&, std::span<const ValueId>) -> std::vector<ValueId> { return {ValueId{}}; },
      cost_stream,
      [](const std::vector<TensorType>&, const Attrs& a) { return whole_dims({std::get<OneHotAttrs>(a).dim.name}); }};
  return d;
}

// top_k(x [..., n]) -> values [..., k] (x's dtype), indices i32 [..., k]: the k largest along the
// last dim, largest first; equal values in order of lower index (a stable, deterministic order).
// NaN ranks above every number (as in torch.topk).
const OpDef& def_top_k() {
  static const OpDef d{
      "top_k", OpClass::index,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        const auto& tk = std::get<TopKAttrs>(a);
        const Shape& x = in[0].shape;
        if (x.empty() || x.back().name != tk.dim)
          fail("top_k dim '{}' must be the last dim of x {}", tk.dim, to_string(in[0]));
        if (tk.k.size < 1 || tk.k.size > x.back().size)
          fail("k dim '{}' has size {}; allowed 1..{} (the size of dim '{}')", tk.k.name, tk.k.size, x.back().size, tk.dim);
        Shape s = x;
        s.back() = tk.k;
        expect_valid_shape(s, "top_k output (x's dims with the last replaced by k)");
        return {TensorType{s, in[0].dtype}, TensorType{s, DType::i32}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& x = *in[0];     // [R..., n]
        Tensor& values = *out[0];     // [R..., k]
        Tensor& indices = *out[1];    // [R..., k]
        const int64_t n = x.shape().back().size;
        const int64_t k = values.shape().back().size;
        const int64_t rows = x.size() / n;
        std::vector<int64_t> order(static_cast<size_t>(n));
        for (int64_t r = 0; r < rows; ++r) {
          const double* row = &x.data[at(r * n)];
          auto above = [&](int64_t a, int64_t b) {  // strict weak order: NaN first, then descending
            const double va = row[a], vb = row[b];
            if (std::isnan(va)) return !std::isnan(vb);
            if (std::isnan(vb)) return false;
            return va > vb;
          };
          std::iota(order.begin(), order.end(), int64_t{0});
          std::stable_sort(order.begin(), order.end(), above);  // ties keep index order
          for (int64_t j = 0; j < k; ++j) {
            values.data[at(r * k + j)] = row[order[at(j)]];
            indices.data[at(r * k + j)] = static_cast<double>(order[at(j)]);
          }
        }
        round_all(values, exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dout) -> std::vector<ValueId> {
        const TensorType& x = b.graph().type(n.inputs[0]);
        if (!dout[0].valid() || !is_float(x.dtype)) return {ValueId{}};
        // Each selected value's gradient goes back to the position it came from.
        const auto& tk = std::get<TopKAttrs>(n.attrs);
        return {scatter_add(b.wrap(dout[0]), b.wrap(n.outputs[1]), tk.k.name, x.shape.back()).id};
      },
      cost_stream,
      [](const std::vector<TensorType>&, const Attrs& a) {
        const auto& tk = std::get<TopKAttrs>(a);
        return whole_dims({tk.dim, tk.k.name});
      }};
  return d;
}

// cumsum(x) along dim: inclusive y_j = Σ_{i<=j} x_i, exclusive Σ_{i<j} x_i; reverse sums from the
// end instead (Σ_{i>=j}, Σ_{i>j}). Any dtype: i32 cumsums give routing positions.
const OpDef& def_cumsum() {
  static const OpDef d{
      "cumsum", OpClass::index,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        position_of(in[0].shape, std::get<CumsumAttrs>(a).dim, "cumsum", in[0]);
        return {in[0]};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const auto& c = std::get<CumsumAttrs>(a);
        const Tensor& x = *in[0];
        Tensor& y = *out[0];
        const AxisSplit s = split_at(x.shape(), *dim_index(x.shape(), c.dim));
        for (int64_t o = 0; o < s.outer; ++o)
          for (int64_t i = 0; i < s.inner; ++i) {
            double running = 0.0;
            for (int64_t step = 0; step < s.mid; ++step) {
              const int64_t j = c.reverse ? s.mid - 1 - step : step;
              const int64_t off = (o * s.mid + j) * s.inner + i;
              if (c.exclusive) {
                y.data[at(off)] = running;
                running += x.data[at(off)];
              } else {
                running += x.data[at(off)];
                y.data[at(off)] = running;
              }
            }
          }
        round_all(y, exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        if (!is_float(b.graph().type(n.inputs[0]).dtype)) return {ValueId{}};
        // x_i feeds every y_j at or after it (before it when reversed): the adjoint runs the
        // other way with the same exclusivity.
        const auto& c = std::get<CumsumAttrs>(n.attrs);
        return {cumsum(b.wrap(dy[0]), c.dim, c.exclusive, !c.reverse).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost(in, out, elems(in[0]));
      },
      [](const std::vector<TensorType>&, const Attrs& a) { return whole_dims({std::get<CumsumAttrs>(a).dim}); }};
  return d;
}

// gather(x, idx i32) along dim at position p of x: idx has x's dims except at p, where it has any
// dim (m). out has idx's shape and x's dtype; out[.., j, ..] = x[.., idx[.., j, ..], ..].
const OpDef& def_gather() {
  static const OpDef d{
      "gather", OpClass::index,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 2);
        const TensorType& x = in[0];
        const TensorType& idx = in[1];
        expect_int(idx, "idx");
        const Dim& dim = std::get<DimAttrs>(a).dim;
        const size_t p = position_of(x.shape, dim.name, "gather", x);
        if (x.shape[p].size != dim.size)
          fail("gather dim '{}' has size {} in the attributes but {} in x {}", dim.name, dim.size, x.shape[p].size,
               to_string(x));
        expect_valid_shape(idx.shape, "idx");
        bool same = idx.shape.size() == x.shape.size();
        for (size_t i = 0; same && i < x.shape.size(); ++i) same = i == p || idx.shape[i] == x.shape[i];
        if (!same)
          fail("idx {} must have the dims of x {} in the same positions, except any dim at position {} (where x has '{}')",
               to_string(idx), to_string(x), p, dim.name);
        return {TensorType{idx.shape, x.dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& x = *in[0];
        const Tensor& idx = *in[1];
        Tensor& y = *out[0];
        const std::string& name = std::get<DimAttrs>(a).dim.name;
        const size_t p = *dim_index(x.shape(), name);
        const int64_t n = x.shape()[p].size;
        const AxisSplit s = split_at(idx.shape(), p);  // mid = m
        for (int64_t o = 0; o < s.outer; ++o)
          for (int64_t j = 0; j < s.mid; ++j)
            for (int64_t i = 0; i < s.inner; ++i) {
              const int64_t e = (o * s.mid + j) * s.inner + i;
              const double v = idx.data[at(e)];
              if (!in_range(v, n))
                fail("gather: index {} at element {} of idx {} is outside [0, {}) (dim '{}' of x {})", v, e,
                     to_string(idx.type), n, name, to_string(x.type));
              y.data[at(e)] = x.data[at((o * n + static_cast<int64_t>(v)) * s.inner + i)];
            }
        round_all(y, exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const TensorType& x = b.graph().type(n.inputs[0]);
        if (!is_float(x.dtype)) return {ValueId{}, ValueId{}};
        // Adjoint of a gather: add each output's gradient back where it was fetched from.
        const size_t p = *dim_index(x.shape, std::get<DimAttrs>(n.attrs).dim.name);
        const std::string& idx_dim = b.graph().type(n.inputs[1]).shape[p].name;
        return {scatter_add(b.wrap(dy[0]), b.wrap(n.inputs[1]), idx_dim, x.shape[p]).id, ValueId{}};
      },
      cost_gather,
      [](const std::vector<TensorType>& in, const Attrs& a) {  // x's dim, and idx's dim in its place
        const std::string& d = std::get<DimAttrs>(a).dim.name;
        LoweringRoles r = whole_dims({d});
        const auto p = dim_index(in.at(0).shape, d);
        if (p && *p < in.at(1).shape.size()) r.whole.push_back(in.at(1).shape[*p].name);
        return r;
      }};
  return d;
}

// scatter_add(src, idx i32, same shape) with index_dim at position p of src: out = src's shape with
// index_dim replaced by out_dim (same position); zeros, then out[.., idx[.., j, ..], ..] +=
// src[.., j, ..]. Duplicate indices accumulate. The adjoint of gather.
const OpDef& def_scatter_add() {
  static const OpDef d{
      "scatter_add", OpClass::index,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 2);
        const TensorType& src = in[0];
        const TensorType& idx = in[1];
        expect_int(idx, "idx");
        if (idx.shape != src.shape) fail("idx {} must have the shape of src {}", to_string(idx), to_string(src));
        const auto& sa = std::get<ScatterAttrs>(a);
        const size_t p = position_of(src.shape, sa.index_dim, "scatter_add index", src);
        Shape s = src.shape;
        s[p] = sa.out_dim;
        expect_valid_shape(s, "scatter_add output (src's dims with index_dim replaced by out_dim)");
        return {TensorType{s, src.dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& src = *in[0];
        const Tensor& idx = *in[1];
        Tensor& y = *out[0];
        const auto& sa = std::get<ScatterAttrs>(a);
        const size_t p = *dim_index(src.shape(), sa.index_dim);
        const int64_t n = sa.out_dim.size;
        const AxisSplit s = split_at(src.shape(), p);  // mid = m
        std::fill(y.data.begin(), y.data.end(), 0.0);
        for (int64_t o = 0; o < s.outer; ++o)
          for (int64_t j = 0; j < s.mid; ++j)
            for (int64_t i = 0; i < s.inner; ++i) {
              const int64_t e = (o * s.mid + j) * s.inner + i;
              const double v = idx.data[at(e)];
              if (!in_range(v, n))
                fail("scatter_add: index {} at element {} of idx {} is outside [0, {}) (out dim '{}')", v, e,
                     to_string(idx.type), n, sa.out_dim.name);
              y.data[at((o * n + static_cast<int64_t>(v)) * s.inner + i)] += src.data[at(e)];
            }
        round_all(y, exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        if (!is_float(b.graph().type(n.inputs[0]).dtype)) return {ValueId{}, ValueId{}};
        // Adjoint of a scatter-add: each source element reads back the gradient where it landed.
        const auto& sa = std::get<ScatterAttrs>(n.attrs);
        return {gather(b.wrap(dy[0]), b.wrap(n.inputs[1]), sa.out_dim.name).id, ValueId{}};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost(in, out, elems(in[0]));
      },
      [](const std::vector<TensorType>&, const Attrs& a) {
        const auto& sa = std::get<ScatterAttrs>(a);
        return whole_dims({sa.index_dim, sa.out_dim.name});
      }};
  return d;
}

}  // namespace sy::ops
