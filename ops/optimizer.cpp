// Optimizer updates: one update node per parameter, so optimizer work is priced and executed like
// any op (DESIGN.md). Every input and output is f32 except step (i32 []); lr, step and clip_scale
// are scalars []. t = step (0-based), ĝ = grad · clip_scale (global-norm gradient clipping: the
// trainer computes clip_scale = min(1, max_norm / ‖grads‖) in the graph). No gradient.
//
// Adafactor (Mesh-TF optimize.py AdafactorOptimizer, β1 = 0; REFERENCE.md):
//   decay = 1 - (t+1)^-decay_exponent, s = ĝ² + epsilon1
//   factored (attrs.factored and rank >= 2; P viewed as [O, R, C], R and C its last two dims):
//     state {v_row [.., R] (P without its last dim), v_col [.., C] (P without its second-to-last)}
//     v_row' = decay·v_row + (1-decay)·mean_C s     v_col' = decay·v_col + (1-decay)·mean_R s
//     u = ĝ · rsqrt(v_row' / mean_R v_row') · rsqrt(v_col')
//   else: state {v [P's shape]}, v' = decay·v + (1-decay)·s, u = ĝ · rsqrt(v')
//   update clipping: u ← u / max(1, RMS(u) / clip_threshold)   (clip_threshold 0: none)
//   param' = param - lr · max(RMS(param), epsilon2) · u        (lr · u without parameter_scale)
// Every mean and RMS is over the global tensor. The builder (graph/builder.cpp adafactor_update)
// writes the update as nodes so that each one is a reduction lowering knows how to split, or
// per element:
//   mean_square        (x, [scale], divisors...) -> mean over attrs.dims of (x·scale)² / Π divisors:
//                      mean_C ĝ², mean_R ĝ² (unfactored: ĝ², no dims), RMS(u)² (u² = ĝ² /
//                      ((v_row'/mean_R v_row')·v_col'), or ĝ²/v'), RMS(param)²
//   adafactor_moment   (v, ms, step) -> decay·v + (1-decay)·(ms + epsilon1)
//   reduce_mean        mean_R v_row' (ops/reduce.cpp)
//   div                v_row' / mean_R v_row' (ops/elementwise.cpp)
//   adafactor_update   (param, grad, v_row'/mean_R v_row', v_col', lr, clip_scale, [RMS(u)²],
//                      [RMS(param)²]) or (param, grad, v', lr, clip_scale, [RMS(u)²], [RMS(param)²])
//                      -> param'; RMS(u)² present iff clip_threshold > 0, RMS(param)² iff
//                      parameter_scale
// mean_square sums out the dims its output lacks, so when a mesh axis splits one of them, each
// device's mean is partial and lowering all-reduces (mean) over that axis (graph/parallel/lower.hpp):
// the statistics are those of the global tensor on any layout, the rest is per element.
//
// adamw_update (Loshchilov & Hutter, bias-corrected Adam with decoupled weight decay):
//   inputs (param, grad, m, v, lr, step, clip_scale), outputs (param', m', v')
//   m' = β1·m + (1-β1)·ĝ        v' = β2·v + (1-β2)·ĝ²
//   param' = param - lr · ((m' / (1-β1^(t+1))) / (sqrt(v' / (1-β2^(t+1))) + epsilon) + weight_decay·param)
//
// Reference forwards compute in double and round on store (f32).
// Flops (N = elements of x or param, k = divisors, S = elements of the v inputs):
//   mean_square        (2 + k) N, plus N with a scale: per element the scale multiply, square,
//                      one divide per divisor and the accumulation
//   adafactor_moment   4 per element: decay·v, + epsilon1, the mix, the add
//   adafactor_update   6 N + 2 S: per element the scaled gradient, the two factors applied (one
//                      rsqrt factor unfactored, counted as two), the clipping divide, the step
//                      multiply and subtract; per state element the normalisation and the rsqrt
//   adamw_update       17 N: per element the scaled gradient, m (3), v (4, the square included), the
//                      bias corrections (2), sqrt, + epsilon and divide (3), weight decay (2), the
//                      lr multiply and subtract (2)
// Bytes: every input read once and every output written once.
//
// Lowering: mean_square sums out the dims its output lacks (partial means combine by mean); the
// others are per element (OpDef::roles defaults): their inputs follow the parameter's dims by name.
#include "ops/common.hpp"
#include "ops/defs.hpp"

#include <algorithm>
#include <cmath>

namespace sy::ops {
namespace {

const TensorType kScalarF32{{}, DType::f32};
const TensorType kScalarI32{{}, DType::i32};

// Checks (param, grad, state..., lr, step, clip_scale) and returns the output types.
std::vector<TensorType> infer_update(const char* op, const std::vector<TensorType>& in,
                                     const std::vector<TensorType>& state, const std::vector<const char*>& state_names) {
  const size_t n_state = state.size();
  if (in.size() != 5 + n_state)
    fail("{} expects {} inputs (param, grad, {} state, lr, step, clip_scale), got {}", op, 5 + n_state, n_state,
         in.size());
  const TensorType& param = in[0];
  if (param.dtype != DType::f32) fail("{}: param must be f32 (master weights), got {}", op, to_string(param));
  if (in[1] != param) fail("{}: grad is {} but must be the param's type {}", op, to_string(in[1]), to_string(param));
  for (size_t i = 0; i < n_state; ++i)
    if (in[2 + i] != state[i])
      fail("{}: state {} is {} but must be {}", op, state_names[i], to_string(in[2 + i]), to_string(state[i]));
  if (in[2 + n_state] != kScalarF32) fail("{}: lr must be f32 [], got {}", op, to_string(in[2 + n_state]));
  if (in[3 + n_state] != kScalarI32) fail("{}: step must be i32 [], got {}", op, to_string(in[3 + n_state]));
  if (in[4 + n_state] != kScalarF32) fail("{}: clip_scale must be f32 [], got {}", op, to_string(in[4 + n_state]));
  std::vector<TensorType> out{param};
  out.insert(out.end(), state.begin(), state.end());
  return out;
}

// The shape of the Adafactor update's inputs beyond param and grad: (v_row / row mean, v_col) or
// (v), then lr and clip_scale, then RMS(u)² and RMS(param)² as the attributes ask.
struct AdafactorInputs {
  bool factored = false;
  size_t state = 1;      // v inputs
  size_t lr = 0;         // index of lr
  size_t clip = 0;       // index of clip_scale
  size_t ms_u = 0;       // index of RMS(u)², 0: absent
  size_t ms_p = 0;       // index of RMS(param)², 0: absent
  size_t count = 0;
};
AdafactorInputs adafactor_inputs(const AdafactorAttrs& a, const Shape& param) {
  AdafactorInputs r;
  r.factored = a.factored && param.size() >= 2;
  r.state = r.factored ? 2 : 1;
  r.lr = 2 + r.state;
  r.clip = r.lr + 1;
  size_t next = r.clip + 1;
  if (a.clip_threshold > 0) r.ms_u = next++;
  if (a.parameter_scale) r.ms_p = next++;
  r.count = next;
  return r;
}

void check_adafactor_attrs(const char* op, const AdafactorAttrs& a) {
  if (!(a.decay_exponent > 0)) fail("{}: decay_exponent {} must be > 0", op, a.decay_exponent);
  if (!(a.clip_threshold >= 0)) fail("{}: clip_threshold {} must be >= 0 (0: no clipping)", op, a.clip_threshold);
  if (!(a.epsilon1 >= 0) || !(a.epsilon2 >= 0))
    fail("{}: epsilon1 {} and epsilon2 {} must be >= 0", op, a.epsilon1, a.epsilon2);
}

}  // namespace

const OpDef& def_mean_square() {
  static const OpDef d{
      "mean_square", OpClass::reduction,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        const auto& dims = std::get<DimsAttrs>(attrs).dims;
        if (in.empty()) fail("mean_square expects inputs (x, [scale f32 []], divisors...), got none");
        const TensorType& x = in[0];
        if (x.dtype != DType::f32) fail("mean_square: x must be f32, got {}", to_string(x));
        for (size_t i = 0; i < dims.size(); ++i) {
          if (!dim_index(x.shape, dims[i])) fail("mean_square: '{}' is not a dim of x {}", dims[i], to_string(x));
          for (size_t j = 0; j < i; ++j)
            if (dims[j] == dims[i]) fail("mean_square: dim '{}' is listed twice", dims[i]);
        }
        for (size_t i = 1; i < in.size(); ++i) {
          if (in[i].dtype != DType::f32) fail("mean_square: input {} must be f32, got {}", i, to_string(in[i]));
          if (in[i].shape.empty() && i != 1) fail("mean_square: only the second input may be a scalar (the scale)");
          expect_sub_shape(x.shape, in[i].shape, "mean_square");
        }
        return {{drop_dims(x.shape, dims), DType::f32}};
      },
      [](const Attrs&, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const Tensor& x = *in[0];
        Tensor& y = *out[0];
        const bool scaled = in.size() > 1 && in[1]->shape().empty();
        const double sc = scaled ? in[1]->data[0] : 1.0;
        const auto py = project_index(x.shape(), y.shape());
        std::vector<std::vector<int64_t>> pd;
        for (size_t i = scaled ? 2 : 1; i < in.size(); ++i) pd.push_back(project_index(x.shape(), in[i]->shape()));
        std::fill(y.data.begin(), y.data.end(), 0.0);
        for (size_t e = 0; e < x.data.size(); ++e) {
          const double v = x.data[e] * sc;
          double q = v * v;
          for (size_t k = 0; k < pd.size(); ++k) q /= in[(scaled ? 2 : 1) + k]->data[static_cast<size_t>(pd[k][e])];
          y.data[static_cast<size_t>(py[e])] += q;
        }
        const double count = static_cast<double>(x.size()) / static_cast<double>(std::max<int64_t>(1, y.size()));
        for (double& v : y.data) v /= count;
        round_all(y, exact);
      },
      nullptr,  // no gradient through an optimizer statistic
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        const bool scaled = in.size() > 1 && in[1].shape.empty();
        const double k = static_cast<double>(in.size() - 1 - (scaled ? 1 : 0));
        return streaming_cost(in, out, (2 + k + (scaled ? 1 : 0)) * elems(in[0]));
      },
      [](const std::vector<TensorType>&, const Attrs&) {
        LoweringRoles r;
        r.sums_absent_dims = true;
        r.reduce = ReduceOp::mean;  // each device's mean over its block; equal blocks: the mean of means
        return r;
      }};
  return d;
}

const OpDef& def_adafactor_moment() {
  static const OpDef d{
      "adafactor_moment", OpClass::elementwise,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        check_adafactor_attrs("adafactor_moment", std::get<AdafactorAttrs>(attrs));
        if (in.size() != 3) fail("adafactor_moment expects inputs (v, ms, step), got {}", in.size());
        if (in[0].dtype != DType::f32) fail("adafactor_moment: v must be f32, got {}", to_string(in[0]));
        if (in[1] != in[0]) fail("adafactor_moment: ms is {} but must be v's type {}", to_string(in[1]), to_string(in[0]));
        if (in[2] != kScalarI32) fail("adafactor_moment: step must be i32 [], got {}", to_string(in[2]));
        return {in[0]};
      },
      [](const Attrs& attrs, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const auto& a = std::get<AdafactorAttrs>(attrs);
        const double decay = 1.0 - std::pow(in[2]->data[0] + 1.0, -a.decay_exponent);
        for (size_t i = 0; i < in[0]->data.size(); ++i)
          out[0]->data[i] = decay * in[0]->data[i] + (1.0 - decay) * (in[1]->data[i] + a.epsilon1);
        round_all(*out[0], exact);
      },
      nullptr,  // no gradient through an optimizer step
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost(in, out, 4 * elems(in[0]));
      }};
  return d;
}

const OpDef& def_adafactor_update() {
  static const OpDef d{
      "adafactor_update", OpClass::elementwise,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        const auto& a = std::get<AdafactorAttrs>(attrs);
        check_adafactor_attrs("adafactor_update", a);
        if (in.empty()) fail("adafactor_update expects inputs (param, grad, v..., lr, clip_scale, [ms_u], [ms_param]), got none");
        const TensorType& param = in[0];
        const AdafactorInputs k = adafactor_inputs(a, param.shape);
        if (in.size() != k.count)
          fail("adafactor_update expects {} inputs (param, grad, {}, lr, clip_scale{}{}), got {}", k.count,
               k.factored ? "v_row_normalised, v_col" : "v", k.ms_u ? ", ms_u" : "", k.ms_p ? ", ms_param" : "",
               in.size());
        if (param.dtype != DType::f32) fail("adafactor_update: param must be f32 (master weights), got {}", to_string(param));
        if (in[1] != param) fail("adafactor_update: grad is {} but must be the param's type {}", to_string(in[1]), to_string(param));
        std::vector<std::pair<const char*, TensorType>> want;
        if (k.factored) {
          Shape row = param.shape, col = param.shape;
          row.pop_back();
          col.erase(col.end() - 2);
          want = {{"v_row_normalised", {row, DType::f32}}, {"v_col", {col, DType::f32}}};
        } else {
          want = {{"v", param}};
        }
        for (size_t i = 0; i < want.size(); ++i)
          if (in[2 + i] != want[i].second)
            fail("adafactor_update: state {} is {} but must be {}", want[i].first, to_string(in[2 + i]),
                 to_string(want[i].second));
        if (in[k.lr] != kScalarF32) fail("adafactor_update: lr must be f32 [], got {}", to_string(in[k.lr]));
        if (in[k.clip] != kScalarF32) fail("adafactor_update: clip_scale must be f32 [], got {}", to_string(in[k.clip]));
        if (k.ms_u && in[k.ms_u] != kScalarF32) fail("adafactor_update: ms_u must be f32 [], got {}", to_string(in[k.ms_u]));
        if (k.ms_p && in[k.ms_p] != kScalarF32)
          fail("adafactor_update: ms_param must be f32 [], got {}", to_string(in[k.ms_p]));
        return {param};
      },
      [](const Attrs& attrs, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const auto& a = std::get<AdafactorAttrs>(attrs);
        const Tensor& p = *in[0];
        const Tensor& g = *in[1];
        const AdafactorInputs k = adafactor_inputs(a, p.shape());
        const double lr = in[k.lr]->data[0];
        const double clip = in[k.clip]->data[0];
        const double denom = k.ms_u ? std::max(1.0, std::sqrt(in[k.ms_u]->data[0]) / a.clip_threshold) : 1.0;
        const double step_size = k.ms_p ? lr * std::max(std::sqrt(in[k.ms_p]->data[0]), a.epsilon2) : lr;
        const size_t n = p.data.size();
        if (k.factored) {
          const size_t rank = p.shape().size();
          const auto R = static_cast<size_t>(p.shape()[rank - 2].size);
          const auto C = static_cast<size_t>(p.shape()[rank - 1].size);
          const size_t O = n / (R * C);
          const Tensor& vr = *in[2];  // v_row' / mean_R v_row'
          const Tensor& vc = *in[3];
          for (size_t o = 0; o < O; ++o)
            for (size_t r = 0; r < R; ++r)
              for (size_t c = 0; c < C; ++c) {
                const size_t i = (o * R + r) * C + c;
                const double u = g.data[i] * clip / std::sqrt(vr.data[o * R + r]) / std::sqrt(vc.data[o * C + c]);
                out[0]->data[i] = p.data[i] - step_size * (u / denom);
              }
        } else {
          const Tensor& v = *in[2];
          for (size_t i = 0; i < n; ++i)
            out[0]->data[i] = p.data[i] - step_size * (g.data[i] * clip / std::sqrt(v.data[i]) / denom);
        }
        round_all(*out[0], exact);
      },
      nullptr,  // no gradient through an optimizer step
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& attrs) {
        const AdafactorInputs k = adafactor_inputs(std::get<AdafactorAttrs>(attrs), in[0].shape);
        double state = 0;
        for (size_t i = 2; i < 2 + k.state; ++i) state += elems(in[i]);
        return streaming_cost(in, out, 6 * elems(in[0]) + 2 * state);
      }};
  return d;
}

const OpDef& def_adamw_update() {
  static const OpDef d{
      "adamw_update", OpClass::elementwise,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        const auto& a = std::get<AdamWAttrs>(attrs);
        if (!(a.beta1 >= 0 && a.beta1 < 1) || !(a.beta2 >= 0 && a.beta2 < 1))
          fail("adamw_update: beta1 {} and beta2 {} must be in [0, 1)", a.beta1, a.beta2);
        if (!(a.epsilon > 0)) fail("adamw_update: epsilon {} must be > 0", a.epsilon);
        if (!(a.weight_decay >= 0)) fail("adamw_update: weight_decay {} must be >= 0", a.weight_decay);
        if (in.empty()) fail("adamw_update expects inputs (param, grad, m, v, lr, step, clip_scale), got none");
        const TensorType moment{in[0].shape, DType::f32};
        return infer_update("adamw_update", in, {moment, moment}, {"m", "v"});
      },
      [](const Attrs& attrs, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const auto& a = std::get<AdamWAttrs>(attrs);
        const Tensor& p = *in[0];
        const Tensor& g = *in[1];
        const Tensor& m = *in[2];
        const Tensor& v = *in[3];
        const double lr = in[4]->data[0];
        const double t = in[5]->data[0];
        const double clip = in[6]->data[0];
        const double c1 = 1.0 - std::pow(a.beta1, t + 1.0);
        const double c2 = 1.0 - std::pow(a.beta2, t + 1.0);
        for (size_t i = 0; i < p.data.size(); ++i) {
          const double gc = g.data[i] * clip;
          const double m_new = a.beta1 * m.data[i] + (1.0 - a.beta1) * gc;
          const double v_new = a.beta2 * v.data[i] + (1.0 - a.beta2) * gc * gc;
          out[1]->data[i] = m_new;
          out[2]->data[i] = v_new;
          out[0]->data[i] =
              p.data[i] - lr * ((m_new / c1) / (std::sqrt(v_new / c2) + a.epsilon) + a.weight_decay * p.data[i]);
        }
        for (Tensor* o : out) round_all(*o, exact);
      },
      nullptr,  // no gradient through an optimizer step
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs&) {
        return streaming_cost(in, out, 17 * elems(in[0]));
      }};
  return d;
}

}  // namespace sy::ops
