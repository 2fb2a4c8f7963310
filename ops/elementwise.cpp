// Elementwise ops. Binary ops broadcast by name: b's dims ⊆ a's dims, the output has a's type.
// Flops per output element: 1 for add/sub/mul/div/greater/where/relu/relu_grad/dropout and for
// each transcendental (exp, log, rsqrt); 2 for scale (multiply-add); gelu 9 and gelu_grad 16
// (count of the multiplies/adds/tanh in gelu_ref/gelu_grad_ref); cast 0.
#include "ops/common.hpp"
#include "ops/defs.hpp"

namespace sy::ops {
namespace {

// ---- shape rules ----
std::vector<TensorType> infer_binary(const std::vector<TensorType>& in, const Attrs&) {
  expect_inputs(in, 2);
  if (in[0].dtype != in[1].dtype) fail("a is {} but b is {} (dtypes must match)", to_string(in[0]), to_string(in[1]));
  expect_sub_shape(in[0].shape, in[1].shape, "b must broadcast into a");
  return {in[0]};
}

std::vector<TensorType> infer_binary_float(const std::vector<TensorType>& in, const Attrs& a) {
  auto out = infer_binary(in, a);
  expect_float(in[0], "a");
  return out;
}

std::vector<TensorType> infer_unary_float(const std::vector<TensorType>& in, const Attrs&) {
  expect_inputs(in, 1);
  expect_float(in[0], "x");
  return {in[0]};
}

std::vector<TensorType> infer_x_dy(const std::vector<TensorType>& in, const Attrs&) {  // (x, dy) -> dx
  expect_inputs(in, 2);
  expect_float(in[0], "x");
  expect_float(in[1], "dy");
  if (in[0].shape != in[1].shape) fail("x {} and dy {} must have the same shape", to_string(in[0]), to_string(in[1]));
  return {in[1]};
}

// ---- reference forwards ----
template <typename F>
void binary_forward(std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact, F f) {
  const Tensor& a = *in[0];
  const Tensor& b = *in[1];
  Tensor& y = *out[0];
  const auto pb = project_index(a.shape(), b.shape());
  for (size_t i = 0; i < a.data.size(); ++i) y.data[i] = f(a.data[i], b.data[static_cast<size_t>(pb[i])]);
  round_all(y, exact);
}

template <typename F>
void unary_forward(std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact, F f) {
  const Tensor& x = *in[0];
  Tensor& y = *out[0];
  for (size_t i = 0; i < x.data.size(); ++i) y.data[i] = f(x.data[i], i);
  round_all(y, exact);
}

// ---- costs ----
template <int FlopsPerElement>
OpCost cost_per_output(const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
  return streaming_cost(in, out, FlopsPerElement * elems(out[0]));
}
// The same, with one transcendental (exp, log, rsqrt, tanh) per output element.
template <int FlopsPerElement>
OpCost cost_per_output_transcendental(const std::vector<TensorType>& in, const std::vector<TensorType>& out,
                                      const Attrs& a) {
  OpCost c = cost_per_output<FlopsPerElement>(in, out, a);
  c.transcendentals = elems(out[0]);
  return c;
}

// ---- backward helpers ----
const Value& input_value(Builder& b, const Node& n, size_t i) { return b.graph().value(n.inputs.at(i)); }
Expr in_expr(Builder& b, const Node& n, size_t i) { return b.wrap(n.inputs.at(i)); }
Expr out_expr(Builder& b, const Node& n, size_t i = 0) { return b.wrap(n.outputs.at(i)); }

}  // namespace

const OpDef& def_add() {
  static const OpDef d{
      "add", OpClass::elementwise, infer_binary,
      [](const Attrs&, auto in, auto out, bool exact) { binary_forward(in, out, exact, [](double a, double b) { return a + b; }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {dy[0], sum_to(b, dy[0], input_value(b, n, 1).type.shape)};
      },
      cost_per_output<1>, linear_roles};
  return d;
}

const OpDef& def_sub() {
  static const OpDef d{
      "sub", OpClass::elementwise, infer_binary,
      [](const Attrs&, auto in, auto out, bool exact) { binary_forward(in, out, exact, [](double a, double b) { return a - b; }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {dy[0], sum_to(b, scale(b.wrap(dy[0]), -1.0).id, input_value(b, n, 1).type.shape)};
      },
      cost_per_output<1>};
  return d;
}

const OpDef& def_mul() {
  static const OpDef d{
      "mul", OpClass::elementwise, infer_binary,
      [](const Attrs&, auto in, auto out, bool exact) { binary_forward(in, out, exact, [](double a, double b) { return a * b; }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        Expr g = b.wrap(dy[0]);
        Expr da = g * in_expr(b, n, 1);  // [a dims]
        Expr db = g * in_expr(b, n, 0);  // [a dims], summed down to b's dims
        return {da.id, sum_to(b, db.id, input_value(b, n, 1).type.shape)};
      },
      cost_per_output<1>};
  return d;
}

const OpDef& def_div() {
  static const OpDef d{
      "div", OpClass::elementwise, infer_binary_float,
      [](const Attrs&, auto in, auto out, bool exact) { binary_forward(in, out, exact, [](double a, double b) { return a / b; }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        Expr g = b.wrap(dy[0]);
        Expr bb = in_expr(b, n, 1);
        Expr da = g / bb;                                   // dy / b
        Expr db = scale(da * out_expr(b, n), -1.0);         // -dy * (a / b) / b
        return {da.id, sum_to(b, db.id, input_value(b, n, 1).type.shape)};
      },
      cost_per_output<1>};
  return d;
}

const OpDef& def_greater() {
  static const OpDef d{
      "greater", OpClass::elementwise, infer_binary,
      [](const Attrs&, auto in, auto out, bool exact) {
        binary_forward(in, out, exact, [](double a, double b) { return a > b ? 1.0 : 0.0; });
      },
      // Piecewise constant: zero gradient almost everywhere.
      [](Builder&, const Node&, std::span<const ValueId>) -> std::vector<ValueId> { return {ValueId{}, ValueId{}}; },
      cost_per_output<1>};
  return d;
}

const OpDef& def_where() {
  static const OpDef d{
      "where", OpClass::elementwise,
      [](const std::vector<TensorType>& in, const Attrs&) -> std::vector<TensorType> {
        expect_inputs(in, 3);  // (cond, a, b)
        expect_sub_shape(in[1].shape, in[0].shape, "cond must broadcast into a");
        if (in[1] != in[2]) fail("a {} and b {} must have the same type", to_string(in[1]), to_string(in[2]));
        return {in[1]};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& c = *in[0];
        const auto pc = project_index(in[1]->shape(), c.shape());
        Tensor& y = *out[0];
        for (size_t i = 0; i < y.data.size(); ++i)
          y.data[i] = c.data[static_cast<size_t>(pc[i])] != 0.0 ? in[1]->data[i] : in[2]->data[i];
        round_all(y, exact);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        Expr g = b.wrap(dy[0]);
        Expr zero = fill(b, {}, 0.0, g.dtype());
        Expr da = where(in_expr(b, n, 0), g, broadcast(zero, g.shape()));
        Expr db = g - da;
        return {ValueId{}, da.id, db.id};
      },
      cost_per_output<1>};
  return d;
}

const OpDef& def_scale() {
  static const OpDef d{
      "scale", OpClass::elementwise, infer_unary_float,
      [](const Attrs& a, auto in, auto out, bool exact) {
        const auto& s = std::get<ScaleAttrs>(a);
        unary_forward(in, out, exact, [&](double x, size_t) { return x * s.factor + s.offset; });
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {scale(b.wrap(dy[0]), std::get<ScaleAttrs>(n.attrs).factor).id};
      },
      cost_per_output<2>, linear_roles};
  return d;
}

const OpDef& def_relu() {
  static const OpDef d{
      "relu", OpClass::elementwise, infer_unary_float,
      [](const Attrs&, auto in, auto out, bool exact) { unary_forward(in, out, exact, [](double x, size_t) { return x > 0 ? x : 0.0; }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {relu_grad(in_expr(b, n, 0), b.wrap(dy[0])).id};
      },
      cost_per_output<1>};
  return d;
}

const OpDef& def_relu_grad() {
  static const OpDef d{
      "relu_grad", OpClass::elementwise, infer_x_dy,
      [](const Attrs&, auto in, auto out, bool exact) {
        for (size_t i = 0; i < out[0]->data.size(); ++i) out[0]->data[i] = in[0]->data[i] > 0 ? in[1]->data[i] : 0.0;
        round_all(*out[0], exact);
      },
      // Linear in dy with a piecewise-constant mask in x: d/dx = 0 a.e., d/d(dy) = mask.
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {ValueId{}, relu_grad(in_expr(b, n, 0), b.wrap(dy[0])).id};
      },
      cost_per_output<1>};
  return d;
}

const OpDef& def_gelu() {
  static const OpDef d{
      "gelu", OpClass::elementwise, infer_unary_float,
      [](const Attrs&, auto in, auto out, bool exact) { unary_forward(in, out, exact, [](double x, size_t) { return gelu_ref(x); }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {gelu_grad(in_expr(b, n, 0), b.wrap(dy[0])).id};
      },
      cost_per_output_transcendental<9>};
  return d;
}

const OpDef& def_gelu_grad() {
  static const OpDef d{
      "gelu_grad", OpClass::elementwise, infer_x_dy,
      [](const Attrs&, auto in, auto out, bool exact) {
        for (size_t i = 0; i < out[0]->data.size(); ++i) out[0]->data[i] = in[1]->data[i] * gelu_grad_ref(in[0]->data[i]);
        round_all(*out[0], exact);
      },
      nullptr,  // second order through GELU is not implemented
      cost_per_output_transcendental<16>};
  return d;
}

const OpDef& def_exp() {
  static const OpDef d{
      "exp", OpClass::elementwise, infer_unary_float,
      [](const Attrs&, auto in, auto out, bool exact) { unary_forward(in, out, exact, [](double x, size_t) { return std::exp(x); }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {(b.wrap(dy[0]) * out_expr(b, n)).id};
      },
      cost_per_output_transcendental<1>};
  return d;
}

const OpDef& def_log() {
  static const OpDef d{
      "log", OpClass::elementwise, infer_unary_float,
      [](const Attrs&, auto in, auto out, bool exact) { unary_forward(in, out, exact, [](double x, size_t) { return std::log(x); }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {(b.wrap(dy[0]) / in_expr(b, n, 0)).id};
      },
      cost_per_output_transcendental<1>};
  return d;
}

const OpDef& def_rsqrt() {
  static const OpDef d{
      "rsqrt", OpClass::elementwise, infer_unary_float,
      [](const Attrs&, auto in, auto out, bool exact) { unary_forward(in, out, exact, [](double x, size_t) { return 1.0 / std::sqrt(x); }); },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        Expr y = out_expr(b, n);  // d/dx x^-1/2 = -1/2 y^3
        return {scale(y * y * y * b.wrap(dy[0]), -0.5).id};
      },
      cost_per_output_transcendental<1>};
  return d;
}

const OpDef& def_cast() {
  static const OpDef d{
      "cast", OpClass::elementwise,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        expect_float(in[0], "x");
        const DType to = std::get<CastAttrs>(a).to;
        if (!is_float(to) && to != DType::i32) fail("cast target must be f32, bf16 or i32, got {}", dtype_name(to));
        return {TensorType{in[0].shape, to}};
      },
      [](const Attrs& a, auto in, auto out, bool exact) {
        if (std::get<CastAttrs>(a).to == DType::i32)  // to the nearest integer (ties to even)
          return unary_forward(in, out, exact, [](double x, size_t) { return std::nearbyint(x); });
        unary_forward(in, out, exact, [](double x, size_t) { return x; });
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        if (std::get<CastAttrs>(n.attrs).to == DType::i32) return {ValueId{}};  // integers: nothing to differentiate
        return {cast(b.wrap(dy[0]), input_value(b, n, 0).type.dtype).id};
      },
      cost_per_output<0>, linear_roles};
  return d;
}

const OpDef& def_dropout() {
  static const OpDef d{
      "dropout", OpClass::elementwise,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        const double rate = std::get<DropoutAttrs>(a).rate;
        if (!(rate >= 0.0 && rate < 1.0)) fail("dropout rate {} is outside [0, 1)", rate);
        expect_inputs(in, 2);  // (x, step)
        expect_float(in[0], "x");
        expect_int(in[1], "step");
        if (!in[1].shape.empty()) fail("step must be a scalar, got {}", to_string(in[1]));
        return {in[0]};
      },
      [](const Attrs& a, auto in, auto out, bool exact) {
        const auto& p = std::get<DropoutAttrs>(a);
        const double keep_scale = 1.0 / (1.0 - p.rate);
        const auto step = static_cast<int64_t>(in[1]->data.at(0));
        unary_forward(in, out, exact,
                      [&](double x, size_t i) { return dropout_keep(p.seed, step, i, p.rate) ? x * keep_scale : 0.0; });
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const auto& p = std::get<DropoutAttrs>(n.attrs);  // the same (seed, step, index) mask
        return {dropout(b.wrap(dy[0]), in_expr(b, n, 1), p.rate, p.seed).id, ValueId{}};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost({in[0]}, out, elems(out[0]));  // the step scalar is not counted
      }};
  return d;
}

}  // namespace sy::ops
