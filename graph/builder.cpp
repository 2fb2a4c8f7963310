#include "graph/builder.hpp"

#include "graph/error.hpp"
#include "graph/op_def.hpp"

#include <fmt/format.h>

namespace sy {

const TensorType& Expr::type() const { return b->graph().type(id); }

int64_t Expr::dim_size(const std::string& name) const {
  auto i = dim_index(shape(), name);
  if (!i) throw InputError(fmt::format("value {} has no dim '{}' (shape {})", id.v, name, to_string(shape())));
  return shape()[*i].size;
}

Expr Builder::leaf(std::string name, Shape shape, DType dtype, ValueRole role) {
  if (g_.find_leaf(name)) throw InputError(fmt::format("leaf name '{}' is already used", name));
  Value v;
  v.id = ValueId{static_cast<int32_t>(g_.values.size())};
  v.name = std::move(name);
  v.type = TensorType{std::move(shape), dtype};
  v.role = role;
  g_.values.push_back(std::move(v));
  return Expr{this, g_.values.back().id};
}

Expr Builder::input(std::string name, Shape shape, DType dtype) {
  return leaf(std::move(name), std::move(shape), dtype, ValueRole::input);
}

Expr Builder::parameter(std::string name, Shape shape, DType dtype) {
  return leaf(std::move(name), std::move(shape), dtype, ValueRole::parameter);
}

std::vector<Expr> Builder::op(OpKind kind, Attrs attrs, std::vector<ValueId> inputs) {
  NodeId nid{static_cast<int32_t>(g_.nodes.size())};
  auto where = [&] { return scope_.empty() ? std::string() : fmt::format(" @ {}", scope_); };
  if (!attrs_match(kind, attrs))
    throw InternalError(fmt::format("new {} node{}: attributes of the wrong type", op_name(kind), where()));
  std::vector<TensorType> in_types;
  for (ValueId v : inputs) {
    SY_CHECK(v.valid() && static_cast<size_t>(v.v) < g_.values.size(), "new {} node: bad input id {}",
             op_name(kind), v.v);
    in_types.push_back(g_.type(v));
  }
  std::vector<TensorType> out_types;
  try {
    out_types = op_def(kind).infer(in_types, attrs);
  } catch (const InputError& e) {
    std::string ins;
    for (const TensorType& t : in_types) ins += (ins.empty() ? "" : ", ") + to_string(t);
    throw InputError(fmt::format("new {} node{} with inputs ({}): {}", op_name(kind), where(), ins, e.what()));
  }
  Node n;
  n.id = nid;
  n.kind = kind;
  n.attrs = std::move(attrs);
  n.inputs = std::move(inputs);
  n.scope = scope_;
  n.backward = backward_;
  std::vector<Expr> outs;
  for (size_t i = 0; i < out_types.size(); ++i) {
    Value v;
    v.id = ValueId{static_cast<int32_t>(g_.values.size())};
    v.type = std::move(out_types[i]);
    v.role = ValueRole::computed;
    v.producer = nid;
    v.output_index = static_cast<int32_t>(i);
    n.outputs.push_back(v.id);
    g_.values.push_back(std::move(v));
    outs.push_back(Expr{this, n.outputs.back()});
  }
  g_.nodes.push_back(std::move(n));
  return outs;
}

void Builder::output(std::string name, Expr e) {
  if (g_.find_output(name)) throw InputError(fmt::format("graph output name '{}' is already used", name));
  g_.outputs.push_back(GraphOutput{std::move(name), e.id});
}

void Builder::set_loss(Expr e) {
  if (!e.shape().empty() || !is_float(e.dtype()))
    throw InputError(fmt::format("the loss must be a float scalar, got {}", to_string(e.type())));
  g_.loss = e.id;
  if (!g_.find_output("loss")) output("loss", e);
}

void Builder::push_scope(const std::string& s) {
  scope_marks_.push_back(scope_.size());
  scope_ += scope_.empty() ? s : "/" + s;
}

void Builder::pop_scope() {
  SY_CHECK(!scope_marks_.empty(), "pop_scope without push_scope");
  scope_.resize(scope_marks_.back());
  scope_marks_.pop_back();
}

// ---- free functions: one line each, the OpDef does the checking ----
namespace {
Expr op1(OpKind k, Attrs a, std::initializer_list<Expr> in) {
  Builder* b = in.begin()->b;
  std::vector<ValueId> ids;
  for (const Expr& e : in) {
    SY_CHECK(e.b == b, "{}: inputs from different builders", op_name(k));
    ids.push_back(e.id);
  }
  return b->op1(k, std::move(a), std::move(ids));
}
}  // namespace

Expr operator+(Expr a, Expr b) { return op1(OpKind::add, NoAttrs{}, {a, b}); }
Expr operator-(Expr a, Expr b) { return op1(OpKind::sub, NoAttrs{}, {a, b}); }
Expr operator*(Expr a, Expr b) { return op1(OpKind::mul, NoAttrs{}, {a, b}); }
Expr operator/(Expr a, Expr b) { return op1(OpKind::div, NoAttrs{}, {a, b}); }
Expr greater(Expr a, Expr b) { return op1(OpKind::greater, NoAttrs{}, {a, b}); }
Expr where(Expr c, Expr a, Expr b) { return op1(OpKind::where, NoAttrs{}, {c, a, b}); }
Expr scale(Expr x, double factor, double offset) { return op1(OpKind::scale, ScaleAttrs{factor, offset}, {x}); }
Expr relu(Expr x) { return op1(OpKind::relu, NoAttrs{}, {x}); }
Expr relu_grad(Expr x, Expr dy) { return op1(OpKind::relu_grad, NoAttrs{}, {x, dy}); }
Expr gelu(Expr x) { return op1(OpKind::gelu, NoAttrs{}, {x}); }
Expr gelu_grad(Expr x, Expr dy) { return op1(OpKind::gelu_grad, NoAttrs{}, {x, dy}); }
Expr exp(Expr x) { return op1(OpKind::exp, NoAttrs{}, {x}); }
Expr log(Expr x) { return op1(OpKind::log, NoAttrs{}, {x}); }
Expr rsqrt(Expr x) { return op1(OpKind::rsqrt, NoAttrs{}, {x}); }
Expr cast(Expr x, DType to) { return op1(OpKind::cast, CastAttrs{to}, {x}); }
Expr dropout(Expr x, Expr step, double rate, uint64_t seed) { return op1(OpKind::dropout, DropoutAttrs{rate, seed}, {x, step}); }

Expr fill(Builder& b, Shape shape, double value, DType dtype) {
  return b.op1(OpKind::fill, FillAttrs{std::move(shape), dtype, value}, {});
}
Expr random_uniform(Expr step, Shape shape, double lo, double hi, uint64_t seed, DType dtype) {
  return op1(OpKind::random, RandomAttrs{std::move(shape), dtype, Distribution::uniform, lo, hi, seed}, {step});
}
Expr random_normal(Expr step, Shape shape, double mean, double stddev, uint64_t seed, DType dtype) {
  return op1(OpKind::random, RandomAttrs{std::move(shape), dtype, Distribution::normal, mean, stddev, seed}, {step});
}
Expr broadcast(Expr x, Shape shape) { return op1(OpKind::broadcast, ShapeAttrs{std::move(shape)}, {x}); }
Expr transpose(Expr x, std::vector<std::string> order) { return op1(OpKind::transpose, DimsAttrs{std::move(order)}, {x}); }
Expr reshape(Expr x, Shape shape) { return op1(OpKind::reshape, ShapeAttrs{std::move(shape)}, {x}); }
Expr after(Expr x, Expr control) { return op1(OpKind::after, NoAttrs{}, {x, control}); }

Expr sum(Expr x, std::vector<std::string> dims) { return op1(OpKind::reduce_sum, DimsAttrs{std::move(dims)}, {x}); }
Expr mean(Expr x, std::vector<std::string> dims) { return op1(OpKind::reduce_mean, DimsAttrs{std::move(dims)}, {x}); }
Expr max(Expr x, std::vector<std::string> dims) { return op1(OpKind::reduce_max, DimsAttrs{std::move(dims)}, {x}); }
Expr softmax(Expr x, const std::string& dim) { return op1(OpKind::softmax, DimAttrs{Dim{dim, x.dim_size(dim)}}, {x}); }
Expr logsumexp(Expr x, const std::string& dim) { return op1(OpKind::logsumexp, DimAttrs{Dim{dim, x.dim_size(dim)}}, {x}); }
Expr rms_norm(Expr x, Expr g, const std::string& dim, double eps) { return op1(OpKind::rms_norm, RmsNormAttrs{dim, eps}, {x, g}); }
Expr cross_entropy(Expr logits, Expr labels, const std::string& class_dim) {
  return op1(OpKind::cross_entropy, DimAttrs{Dim{class_dim, logits.dim_size(class_dim)}}, {logits, labels});
}

Expr einsum(Expr a, Expr b, std::vector<std::string> out) { return op1(OpKind::einsum, EinsumAttrs{std::move(out)}, {a, b}); }

Expr embedding(Expr table, Expr ids) { return op1(OpKind::embedding, NoAttrs{}, {table, ids}); }
Expr embedding_grad(Expr ids, Expr dy, Dim vocab) { return op1(OpKind::embedding_grad, DimAttrs{std::move(vocab)}, {ids, dy}); }
Expr one_hot(Expr ids, Dim dim, DType dtype) { return op1(OpKind::one_hot, OneHotAttrs{std::move(dim), dtype}, {ids}); }
std::pair<Expr, Expr> top_k(Expr x, const std::string& dim, Dim k) {
  auto outs = x.b->op(OpKind::top_k, TopKAttrs{dim, std::move(k)}, {x.id});
  return {outs.at(0), outs.at(1)};
}
Expr cumsum(Expr x, const std::string& dim, bool exclusive, bool reverse) {
  return op1(OpKind::cumsum, CumsumAttrs{dim, exclusive, reverse}, {x});
}
Expr gather(Expr x, Expr idx, const std::string& dim) { return op1(OpKind::gather, DimAttrs{Dim{dim, x.dim_size(dim)}}, {x, idx}); }
Expr scatter_add(Expr src, Expr idx, const std::string& index_dim, Dim out_dim) {
  return op1(OpKind::scatter_add, ScatterAttrs{index_dim, std::move(out_dim)}, {src, idx});
}

Expr all_reduce(Expr x, std::vector<Dim> axes, ReduceOp op) {
  return op1(OpKind::all_reduce, CollectiveAttrs{std::move(axes), "", "", op}, {x});
}
Expr all_gather(Expr x, std::vector<Dim> axes, const std::string& gather_dim) {
  return op1(OpKind::all_gather, CollectiveAttrs{std::move(axes), gather_dim, "", ReduceOp::sum}, {x});
}
Expr reduce_scatter(Expr x, std::vector<Dim> axes, const std::string& scatter_dim, ReduceOp op) {
  return op1(OpKind::reduce_scatter, CollectiveAttrs{std::move(axes), "", scatter_dim, op}, {x});
}
Expr all_to_all(Expr x, std::vector<Dim> axes, const std::string& gather_dim, const std::string& scatter_dim) {
  return op1(OpKind::all_to_all, CollectiveAttrs{std::move(axes), gather_dim, scatter_dim, ReduceOp::sum}, {x});
}
Expr shard_slice(Expr x, std::vector<Dim> axes, const std::string& scatter_dim) {
  return op1(OpKind::shard_slice, CollectiveAttrs{std::move(axes), "", scatter_dim, ReduceOp::sum}, {x});
}

namespace {
std::vector<ValueId> update_inputs(Expr param, Expr grad, const std::vector<Expr>& state, Expr lr, Expr step,
                                   Expr clip_scale) {
  std::vector<ValueId> in{param.id, grad.id};
  for (const Expr& s : state) in.push_back(s.id);
  for (const Expr& e : {lr, step, clip_scale}) in.push_back(e.id);
  return in;
}
}  // namespace

Expr mean_square(Expr x, std::vector<std::string> dims, Expr scale, const std::vector<Expr>& divisors) {
  std::vector<ValueId> in;
  in.reserve(2 + divisors.size());
  in.push_back(x.id);
  if (scale.b) in.push_back(scale.id);
  for (const Expr& d : divisors) in.push_back(d.id);
  return x.b->op1(OpKind::mean_square, DimsAttrs{std::move(dims)}, std::move(in));
}

Expr adafactor_moment(Expr v, Expr ms, Expr step, const AdafactorAttrs& attrs) {
  return op1(OpKind::adafactor_moment, attrs, {v, ms, step});
}

// Adafactor as nodes (ops/optimizer.cpp): the statistics are reductions of their own (mean_square,
// reduce_mean), so that lowering combines them over the mesh axes that split the tensor, and the
// update itself is per element.
std::vector<Expr> adafactor_update(Expr param, Expr grad, const std::vector<Expr>& state, Expr lr, Expr step,
                                   Expr clip_scale, const AdafactorAttrs& attrs) {
  const Shape& shape = param.shape();
  if (param.dtype() != DType::f32)
    throw InputError(fmt::format("adafactor_update: param must be f32 (master weights), got {}", to_string(param.type())));
  const bool factored = attrs.factored && shape.size() >= 2;
  std::vector<std::pair<const char*, TensorType>> want;
  std::vector<std::string> all;
  for (const Dim& d : shape) all.push_back(d.name);
  if (factored) {
    Shape row = shape, col = shape;
    row.pop_back();
    col.erase(col.end() - 2);
    want = {{"v_row", {row, DType::f32}}, {"v_col", {col, DType::f32}}};
  } else {
    want = {{"v", param.type()}};
  }
  if (state.size() != want.size())
    throw InputError(fmt::format("adafactor_update expects {} state tensors ({}) for param {}, got {}", want.size(),
                                 factored ? "v_row, v_col" : "v", to_string(param.type()), state.size()));
  for (size_t i = 0; i < want.size(); ++i)
    if (state[i].type() != want[i].second)
      throw InputError(fmt::format("adafactor_update: state {} is {} but must be {}", want[i].first,
                                   to_string(state[i].type()), to_string(want[i].second)));
  std::vector<Expr> new_state, divisors;
  std::vector<ValueId> in;
  in.reserve(9);
  in.push_back(param.id);
  in.push_back(grad.id);
  if (factored) {
    const std::string& R = shape[shape.size() - 2].name;
    const std::string& C = shape.back().name;
    Expr v_row = adafactor_moment(state[0], mean_square(grad, {C}, clip_scale), step, attrs);
    Expr v_col = adafactor_moment(state[1], mean_square(grad, {R}, clip_scale), step, attrs);
    Expr v_row_normalised = v_row / mean(v_row, {R});
    new_state = {v_row, v_col};
    divisors = {v_row_normalised, v_col};
    in.push_back(v_row_normalised.id);
    in.push_back(v_col.id);
  } else {
    Expr v = adafactor_moment(state[0], mean_square(grad, {}, clip_scale), step, attrs);
    new_state = {v};
    divisors = {v};
    in.push_back(v.id);
  }
  in.push_back(lr.id);
  in.push_back(clip_scale.id);
  if (attrs.clip_threshold > 0) in.push_back(mean_square(grad, all, clip_scale, divisors).id);  // RMS(u)²
  if (attrs.parameter_scale) in.push_back(mean_square(param, all).id);                         // RMS(param)²
  std::vector<Expr> out{param.b->op1(OpKind::adafactor_update, attrs, std::move(in))};
  out.insert(out.end(), new_state.begin(), new_state.end());
  return out;
}
std::vector<Expr> adamw_update(Expr param, Expr grad, const std::vector<Expr>& state, Expr lr, Expr step,
                               Expr clip_scale, const AdamWAttrs& attrs) {
  return param.b->op(OpKind::adamw_update, attrs, update_inputs(param, grad, state, lr, step, clip_scale));
}

}  // namespace sy
