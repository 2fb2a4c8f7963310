#include "executor/ragged_rows.hpp"

#include "executor/kernels.hpp"
#include "graph/dtype.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

namespace sy::exec {
namespace {

bool is_float_type(const TensorType& t) { return t.dtype == DType::f32 || t.dtype == DType::bf16; }

// The storage of rows [0, n) of block o of a value with blocks `t`, as a flat view.
struct Rows {
  TensorType type;
  int64_t offset_bytes;
};
Rows rows_of(const RowTails& t, int64_t o, int64_t n, DType dt) {
  return Rows{TensorType{Shape{Dim{"n", n * t.inner}}, dt}, o * t.rows * t.inner * dtype_bytes(dt)};
}

}  // namespace

RaggedRows::RaggedRows(const Graph& g) : g_(g), tails_(g.values.size()) {}

void RaggedRows::begin_run() {
  for (RowTails& t : tails_) t = RowTails{};
  stats_ = {};
}

void RaggedRows::record(const RowTails& t) {
  ++stats_.ops;
  stats_.rows += t.outer * t.rows;
  for (int64_t e : t.extent) stats_.rows_skipped += t.rows - e;
}

void RaggedRows::set_tails(ValueId v, RowTails t) {
  record(t);
  ++stats_.all_to_alls;
  tails_[static_cast<size_t>(v.v)] = std::move(t);
}

void RaggedRows::zero_up_to(ValueId v, const std::vector<int64_t>* upto, const Ptr& ptr) {
  RowTails& t = tails_[static_cast<size_t>(v.v)];
  if (!t.valid()) return;
  const int64_t bytes = dtype_bytes(g_.type(v).dtype);
  std::byte* base = ptr(v);
  tbb::parallel_for(int64_t{0}, t.outer, [&](int64_t o) {
    const auto i = static_cast<size_t>(o);
    const int64_t to = upto ? std::min(t.rows, (*upto)[i]) : t.rows;
    const int64_t from = t.zeroed[i];
    if (to <= from) return;
    std::memset(base + ((o * t.rows + from) * t.inner) * bytes, 0, static_cast<size_t>((to - from) * t.inner * bytes));
    t.zeroed[i] = to;
  });
}

void RaggedRows::materialize(ValueId v, const Ptr& ptr) { zero_up_to(v, nullptr, ptr); }

void RaggedRows::materialize_inputs(const Node& n, const Ptr& ptr) {
  for (ValueId v : n.inputs) materialize(v, ptr);
}

bool RaggedRows::run_elementwise(const Node& n, const Ptr& ptr) {
  if (n.outputs.size() != 1) return false;
  const ValueId y = n.outputs[0];
  const TensorType& yt = g_.type(y);
  if (!is_float_type(yt)) return false;
  auto tails_of = [&](size_t i) -> const RowTails* {
    const RowTails& t = tails_[static_cast<size_t>(n.inputs.at(i).v)];
    return t.valid() ? &t : nullptr;
  };

  if (n.kind == OpKind::reshape) {  // the same blocks of rows under other dim names: copied up to the extents
    const RowTails* tx = tails_of(0);
    const TensorType& xt = g_.type(n.inputs[0]);
    if (!tx || xt.dtype != yt.dtype || !tail_axis(yt.shape, *tx)) return false;
    RowTails out{tx->outer, tx->rows, tx->inner, tx->extent, tx->extent};
    const int64_t row_bytes = tx->inner * dtype_bytes(yt.dtype);
    const std::byte* src = ptr(n.inputs[0]);
    std::byte* dst = ptr(y);
    tbb::parallel_for(int64_t{0}, out.outer, [&](int64_t o) {
      const size_t at = static_cast<size_t>(o * out.rows * row_bytes);
      std::memcpy(dst + at, src + at, static_cast<size_t>(out.extent[static_cast<size_t>(o)] * row_bytes));
    });
    record(out);
    tails_[static_cast<size_t>(y.v)] = std::move(out);
    return true;
  }

  std::optional<UnaryOp> unary_op;
  std::optional<BinaryOp> binary_op;
  ScaleAttrs scale{};
  switch (n.kind) {
    case OpKind::relu: unary_op = UnaryOp::relu; break;
    case OpKind::gelu: unary_op = UnaryOp::gelu; break;
    case OpKind::cast: unary_op = UnaryOp::cast; break;
    case OpKind::scale:
      scale = std::get<ScaleAttrs>(n.attrs);
      if (scale.offset != 0.0) return false;  // f(0) != 0
      unary_op = UnaryOp::scale;
      break;
    case OpKind::mul: binary_op = BinaryOp::mul; break;
    case OpKind::add: binary_op = BinaryOp::add; break;
    case OpKind::sub: binary_op = BinaryOp::sub; break;
    case OpKind::relu_grad: binary_op = BinaryOp::relu_grad; break;
    case OpKind::gelu_grad: binary_op = BinaryOp::gelu_grad; break;
    default: return false;
  }

  RowTails out;
  if (unary_op) {
    const RowTails* tx = tails_of(0);
    if (!tx || !is_float_type(g_.type(n.inputs[0]))) return false;
    out = RowTails{tx->outer, tx->rows, tx->inner, tx->extent, tx->extent};
    const DType xd = g_.type(n.inputs[0]).dtype;
    for (int64_t o = 0; o < out.outer; ++o) {
      const int64_t e = out.extent[static_cast<size_t>(o)];
      if (e == 0) continue;
      const Rows rx = rows_of(out, o, e, xd), ry = rows_of(out, o, e, yt.dtype);
      if (!unary(*unary_op, scale, ConstView{ptr(n.inputs[0]) + rx.offset_bytes, rx.type},
                 View{ptr(y) + ry.offset_bytes, ry.type}))
        return false;  // not reached for float views; the first block would fail
    }
  } else {
    const ValueId va = n.inputs.at(0), vb = n.inputs.at(1);
    const TensorType &at = g_.type(va), &bt = g_.type(vb);
    if (at.shape != bt.shape || !is_float_type(at) || !is_float_type(bt)) return false;
    const RowTails *ta = tails_of(0), *tb = tails_of(1);
    if (ta && tb && !ta->same_blocks(*tb)) return false;
    const RowTails* any = ta ? ta : tb;
    if (!any) return false;
    out = RowTails{any->outer, any->rows, any->inner, {}, {}};
    out.extent.resize(static_cast<size_t>(out.outer));
    for (size_t o = 0; o < out.extent.size(); ++o) {
      const int64_t ea = ta ? ta->extent[o] : out.rows, eb = tb ? tb->extent[o] : out.rows;
      switch (*binary_op) {
        case BinaryOp::mul: out.extent[o] = std::min(ea, eb); break;
        case BinaryOp::relu_grad:
        case BinaryOp::gelu_grad: out.extent[o] = eb; break;  // (x, dy): zero where dy is
        default: out.extent[o] = std::max(ea, eb); break;     // add, sub
      }
    }
    if (*binary_op == BinaryOp::add || *binary_op == BinaryOp::sub) {
      if (!ta || !tb) return false;  // the other operand has no zero rows: nothing to skip
    }
    if (out.extent == std::vector<int64_t>(out.extent.size(), out.rows)) return false;
    // Operands are read up to the output's extents: zero-filled there where their own tails start.
    if (*binary_op != BinaryOp::mul) {
      if (ta) zero_up_to(va, &out.extent, ptr);
      if (tb) zero_up_to(vb, &out.extent, ptr);
    }
    out.zeroed = out.extent;
    for (int64_t o = 0; o < out.outer; ++o) {
      const int64_t e = out.extent[static_cast<size_t>(o)];
      if (e == 0) continue;
      const Rows ra = rows_of(out, o, e, at.dtype), rb = rows_of(out, o, e, bt.dtype), ry = rows_of(out, o, e, yt.dtype);
      if (!binary(*binary_op, ConstView{ptr(va) + ra.offset_bytes, ra.type}, ConstView{ptr(vb) + rb.offset_bytes, rb.type},
                  View{ptr(y) + ry.offset_bytes, ry.type}))
        return false;
    }
  }
  record(out);
  tails_[static_cast<size_t>(y.v)] = std::move(out);
  return true;
}

bool RaggedRows::run_einsum(const Node& n, const EinsumKernel& k, dnnl::stream& stream, const Ptr& ptr) {
  const RowTails& ta = tails_[static_cast<size_t>(n.inputs.at(0).v)];
  const RowTails& tb = tails_[static_cast<size_t>(n.inputs.at(1).v)];
  if (!ta.valid() && !tb.valid()) return false;
  // The row case reads each block up to its extent rounded up to kTailRound rows: zeros there, not
  // stale data (a denormal or NaN there would cost time or leak into the rounding rows).
  for (size_t i = 0; i < 2; ++i) {
    const RowTails& t = tails_[static_cast<size_t>(n.inputs[i].v)];
    if (!t.valid()) continue;
    std::vector<int64_t> upto(t.extent.size());
    for (size_t o = 0; o < upto.size(); ++o) upto[o] = std::min(t.rows, (t.extent[o] + kTailRound - 1) / kTailRound * kTailRound);
    zero_up_to(n.inputs[i], &upto, ptr);
  }
  RowTails out;
  if (!k.run_ragged(ptr(n.inputs[0]), ptr(n.inputs[1]), ptr(n.outputs.at(0)), ta.valid() ? &ta : nullptr,
                    tb.valid() ? &tb : nullptr, stream, out))
    return false;
  record(ta.valid() ? ta : tb);
  if (out.valid()) tails_[static_cast<size_t>(n.outputs[0].v)] = std::move(out);
  return true;
}

bool RaggedRows::covers(const Node& n, ValueId p, const Nonzeros& nz) const {
  const Shape& ps = g_.type(p).shape;
  std::vector<int64_t> p_stride(ps.size(), 1);
  for (size_t i = ps.size(); i-- > 1;) p_stride[i - 1] = p_stride[i] * ps[i].size;
  for (ValueId q : n.inputs) {
    const RowTails& t = tails_[static_cast<size_t>(q.v)];
    if (q == p || !t.valid() || t.fully_zeroed()) continue;
    // q's dims as [outer..., the row dim, inner...]: the row dim and those before it must be p's.
    const Shape& qs = g_.type(q).shape;
    const std::optional<size_t> a = tail_axis(qs, t);
    if (!a) return false;
    const size_t axis = *a;
    std::vector<size_t> p_dim(axis + 1);
    for (size_t i = 0; i <= axis; ++i) {
      const auto d = dim_index(ps, qs[i].name);
      if (!d) return false;
      p_dim[i] = *d;
    }
    for (int64_t idx : nz.index) {
      int64_t o = 0;
      for (size_t i = 0; i < axis; ++i) o = o * qs[i].size + (idx / p_stride[p_dim[i]]) % ps[p_dim[i]].size;
      const int64_t r = (idx / p_stride[p_dim[axis]]) % ps[p_dim[axis]].size;
      if (r >= t.extent[static_cast<size_t>(o)]) return false;
    }
  }
  return true;
}

bool RaggedRows::zero_sparse_dense_output(const Node& n, int p_index, const Nonzeros& p, const Ptr& ptr) {
  if (n.kind != OpKind::einsum) return false;
  const Shape& ps = g_.type(n.inputs.at(static_cast<size_t>(p_index))).shape;
  const Shape& os = g_.type(n.outputs.at(0)).shape;
  // The slot axis: out's last dim that is in p; every dim before it must be in p as well.
  int axis = -1;
  for (size_t i = 0; i < os.size(); ++i)
    if (has_dim(ps, os[i].name)) axis = static_cast<int>(i);
  if (axis < 0) return false;
  std::vector<int> p_dim(static_cast<size_t>(axis) + 1);  // p's index of out's dims 0..axis
  for (int i = 0; i <= axis; ++i) {
    const auto d = dim_index(ps, os[static_cast<size_t>(i)].name);
    if (!d) return false;
    p_dim[static_cast<size_t>(i)] = static_cast<int>(*d);
  }
  RowTails t;
  t.outer = 1;
  for (int i = 0; i < axis; ++i) t.outer *= os[static_cast<size_t>(i)].size;
  t.rows = os[static_cast<size_t>(axis)].size;
  t.inner = 1;
  for (size_t i = static_cast<size_t>(axis) + 1; i < os.size(); ++i) t.inner *= os[i].size;
  if (t.outer == 0 || t.rows == 0 || t.inner == 0) return false;
  std::vector<int64_t> p_stride(ps.size(), 1);
  for (size_t i = ps.size(); i-- > 1;) p_stride[i - 1] = p_stride[i] * ps[i].size;
  t.extent.assign(static_cast<size_t>(t.outer), 0);
  for (int64_t idx : p.index) {
    auto coord = [&](int i) {
      const auto d = static_cast<size_t>(p_dim[static_cast<size_t>(i)]);
      return (idx / p_stride[d]) % ps[d].size;
    };
    int64_t o = 0;
    for (int i = 0; i < axis; ++i) o = o * os[static_cast<size_t>(i)].size + coord(i);
    int64_t& e = t.extent[static_cast<size_t>(o)];
    e = std::max(e, coord(axis) + 1);
  }
  // The rows before each extent are zeroed (the nonzeros add into them); the rest are the tails.
  const ValueId y = n.outputs[0];
  const int64_t row_bytes = t.inner * dtype_bytes(g_.type(y).dtype);
  std::byte* base = ptr(y);
  tbb::parallel_for(int64_t{0}, t.outer, [&](int64_t o) {
    std::memset(base + o * t.rows * row_bytes, 0, static_cast<size_t>(t.extent[static_cast<size_t>(o)] * row_bytes));
  });
  t.zeroed = t.extent;
  tails_[static_cast<size_t>(y.v)] = std::move(t);
  return true;
}

}  // namespace sy::exec
