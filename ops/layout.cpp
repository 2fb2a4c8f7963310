// Layout ops: data movement without arithmetic (flops 0; bytes read and written once).
#include "ops/common.hpp"
#include "ops/defs.hpp"

namespace sy::ops {
namespace {

OpCost cost_move(const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
  return streaming_cost(in, out, 0.0);
}

// Lowering: broadcast and reshape run on a block with the block's shape as their target.
Attrs local_shape_attrs(const Attrs&, const Shape& local_out) { return ShapeAttrs{local_out}; }

}  // namespace

const OpDef& def_fill() {
  static const OpDef d{
      "fill", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 0);
        const auto& f = std::get<FillAttrs>(a);
        expect_valid_shape(f.shape, "fill shape");
        return {TensorType{f.shape, f.dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const>, std::span<Tensor* const> out, bool exact) {
        const auto& f = std::get<FillAttrs>(a);
        std::fill(out[0]->data.begin(), out[0]->data.end(), f.dtype == DType::i32 ? std::trunc(f.value) : f.value);
        round_all(*out[0], exact);
      },
      [](Builder&, const Node&, std::span<const ValueId>) -> std::vector<ValueId> { return {}; },
      cost_move, per_element_roles,
      [](const Attrs& a, const Shape& local_out) -> Attrs {  // each device fills its block
        FillAttrs f = std::get<FillAttrs>(a);
        f.shape = local_out;
        return f;
      }};
  return d;
}

// Counter-based random numbers (ops/common.hpp): uniform [a, b) or normal(mean a, std b).
// Cost: flops 0 (generation is not floating-point work in the roofline sense); the step scalar is
// not counted as read.
const OpDef& def_random() {
  static const OpDef d{
      "random", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        expect_int(in[0], "step");
        if (!in[0].shape.empty()) fail("step must be a scalar, got {}", to_string(in[0]));
        const auto& r = std::get<RandomAttrs>(a);
        expect_valid_shape(r.shape, "random shape");
        if (!is_float(r.dtype)) fail("random dtype must be f32 or bf16, got {}", dtype_name(r.dtype));
        if (r.dist == Distribution::uniform && !(r.a < r.b)) fail("uniform range [{}, {}) is empty", r.a, r.b);
        if (r.dist == Distribution::normal && !(r.b > 0)) fail("normal standard deviation {} must be positive", r.b);
        return {TensorType{r.shape, r.dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const auto& r = std::get<RandomAttrs>(a);
        const auto step = static_cast<int64_t>(in[0]->data.at(0));
        auto& y = out[0]->data;
        for (size_t i = 0; i < y.size(); ++i)
          y[i] = r.dist == Distribution::uniform ? r.a + (r.b - r.a) * counter_uniform(r.seed, step, i)
                                                 : r.a + r.b * counter_normal(r.seed, step, i);
        round_all(*out[0], exact);
      },
      [](Builder&, const Node&, std::span<const ValueId>) -> std::vector<ValueId> { return {ValueId{}}; },
      [](const std::vector<TensorType>&, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost({}, out, 0.0);
      },
      per_element_roles,
      [](const Attrs& a, const Shape& local_out) -> Attrs {  // each device draws its block (lower.hpp: limits)
        RandomAttrs r = std::get<RandomAttrs>(a);
        r.shape = local_out;
        return r;
      }};
  return d;
}

// y[..] = x[projection of .. onto x's dims]; x's dims ⊆ shape's dims.
const OpDef& def_broadcast() {
  static const OpDef d{
      "broadcast", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        const Shape& s = std::get<ShapeAttrs>(a).shape;
        expect_valid_shape(s, "broadcast target");
        expect_sub_shape(s, in[0].shape, "x must broadcast into the target shape");
        return {TensorType{s, in[0].dtype}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) {
        const auto p = project_index(out[0]->shape(), in[0]->shape());
        for (size_t i = 0; i < out[0]->data.size(); ++i) out[0]->data[i] = in[0]->data[static_cast<size_t>(p[i])];
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {sum_to(b, dy[0], b.graph().type(n.inputs[0]).shape)};
      },
      cost_move, per_element_roles, local_shape_attrs};
  return d;
}

// Permutes dims; `dims` lists every dim of x once in the new order.
const OpDef& def_transpose() {
  static const OpDef d{
      "transpose", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        const auto& order = std::get<DimsAttrs>(a).dims;
        if (order.size() != in[0].shape.size())
          fail("order lists {} dims but x {} has {}", order.size(), to_string(in[0]), in[0].shape.size());
        Shape s;
        for (const std::string& name : order) {
          auto i = dim_index(in[0].shape, name);
          if (!i) fail("order names dim '{}' which x {} does not have", name, to_string(in[0]));
          s.push_back(in[0].shape[*i]);
        }
        expect_valid_shape(s, "transposed shape");
        return {TensorType{s, in[0].dtype}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) {
        const auto p = project_index(out[0]->shape(), in[0]->shape());  // a permutation
        for (size_t i = 0; i < out[0]->data.size(); ++i) out[0]->data[i] = in[0]->data[static_cast<size_t>(p[i])];
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        std::vector<std::string> back;
        for (const Dim& dim : b.graph().type(n.inputs[0]).shape) back.push_back(dim.name);
        return {transpose(b.wrap(dy[0]), back).id};
      },
      cost_move, linear_roles};
  return d;
}

// Same elements in row-major order under new dims (split/merge dims, rename).
const OpDef& def_reshape() {
  static const OpDef d{
      "reshape", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_inputs(in, 1);
        const Shape& s = std::get<ShapeAttrs>(a).shape;
        expect_valid_shape(s, "reshape target");
        if (num_elements(s) != num_elements(in[0].shape))
          fail("target {} has {} elements but x {} has {}", to_string(s), num_elements(s), to_string(in[0]),
               num_elements(in[0].shape));
        return {TensorType{s, in[0].dtype}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) { out[0]->data = in[0]->data; },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        return {reshape(b.wrap(dy[0]), b.graph().type(n.inputs[0]).shape).id};
      },
      cost_move,
      [](const std::vector<TensorType>&, const Attrs&) {
        LoweringRoles r;
        r.reshape = true;
        r.carries_gradient = true;
        return r;
      },
      local_shape_attrs};
  return d;
}


// An optimization barrier (XLA's opt-barrier, which jax.checkpoint puts on the inputs of a
// rematerialised computation): x unchanged, available only once every later input (the control
// inputs) is. Rematerialisation (graph/autodiff.hpp) passes the inputs of recomputed forward
// nodes through it with the gradient that reaches their layer, so no schedule can run the
// recompute before the backward pass gets there. No work: the output aliases x (flops and bytes
// 0). Lowering takes the control inputs in whatever sharding they have (LoweringRoles::control).
const OpDef& def_after() {
  static const OpDef d{
      "after", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs&) -> std::vector<TensorType> {
        if (in.size() < 2) fail("takes x and at least one control input, got {} inputs", in.size());
        return {in[0]};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) { out[0]->data = in[0]->data; },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        std::vector<ValueId> dx(n.inputs.size());
        dx[0] = dy[0];
        (void)b;
        return dx;
      },
      [](const std::vector<TensorType>&, const std::vector<TensorType>&, const Attrs&) { return OpCost{}; },
      [](const std::vector<TensorType>&, const Attrs&) {
        LoweringRoles r;
        r.control = true;
        return r;
      }};
  return d;
}

}  // namespace sy::ops
