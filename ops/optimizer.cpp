// Optimizer updates: one node per parameter, so optimizer work is priced and executed like any op
// (DESIGN.md). Inputs (param, grad, state..., lr, step, clip_scale), outputs (new param, new
// state...). Every input and output is f32 except step (i32 []); lr, step and clip_scale are
// scalars []. t = step (0-based), ĝ = grad · clip_scale (global-norm gradient clipping: the
// trainer computes clip_scale = min(1, max_norm / ‖grads‖) in the graph). No gradient.
//
// adafactor_update (Mesh-TF optimize.py AdafactorOptimizer, β1 = 0; REFERENCE.md):
//   decay = 1 - (t+1)^-decay_exponent, s = ĝ² + epsilon1
//   factored (attrs.factored and rank >= 2; P viewed as [O, R, C], R and C its last two dims):
//     state {v_row [.., R] (P without its last dim), v_col [.., C] (P without its second-to-last)}
//     v_row' = decay·v_row + (1-decay)·mean_C s     v_col' = decay·v_col + (1-decay)·mean_R s
//     u = ĝ · rsqrt(v_row' / mean_R v_row') · rsqrt(v_col')
//   else: state {v [P's shape]}, v' = decay·v + (1-decay)·s, u = ĝ · rsqrt(v')
//   update clipping: u ← u / max(1, RMS(u) / clip_threshold)   (clip_threshold 0: none)
//   param' = param - lr · max(RMS(param), epsilon2) · u        (lr · u without parameter_scale)
//
// adamw_update (Loshchilov & Hutter, bias-corrected Adam with decoupled weight decay):
//   state {m, v} [P's shape]
//   m' = β1·m + (1-β1)·ĝ        v' = β2·v + (1-β2)·ĝ²
//   param' = param - lr · ((m' / (1-β1^(t+1))) / (sqrt(v' / (1-β2^(t+1))) + epsilon) + weight_decay·param)
//
// Reference forwards compute in double and round on store (f32).
// Flops (N = elements of param, S = elements of the state tensors):
//   adafactor_update  12 N + 4 S, plus 2 N with parameter_scale: per element the scaled gradient,
//                     square, + epsilon1, the moment sums (2), the two rsqrt factors applied (2),
//                     RMS(u) square and add (2), the clipping divide, the step multiply and
//                     subtract (2); per state element decay, mix, add and the normalisation;
//                     RMS(param) square and add per element
//   adamw_update      17 N: per element the scaled gradient, m (3), v (4, the square included), the
//                     bias corrections (2), sqrt, + epsilon and divide (3), weight decay (2), the
//                     lr multiply and subtract (2)
// Bytes: every input read once and every output written once.
//
// Lowering: the default roles (OpDef::roles). An update runs per element on the parameter's
// block: Adafactor's factored moments follow the parameter's dims by name, and its RMS terms are
// then per block.
#include "ops/common.hpp"
#include "ops/defs.hpp"

#include <algorithm>
#include <cmath>

namespace sy::ops {
namespace {

const TensorType kScalarF32{{}, DType::f32};
const TensorType kScalarI32{{}, DType::i32};

// Adafactor keeps factored moments for this parameter shape.
bool adafactor_factored(const AdafactorAttrs& a, const Shape& param) { return a.factored && param.size() >= 2; }

// The state shapes of Adafactor for `param`.
std::vector<TensorType> adafactor_state(const AdafactorAttrs& a, const TensorType& param) {
  if (!adafactor_factored(a, param.shape)) return {param};
  const size_t rank = param.shape.size();
  Shape row = param.shape, col = param.shape;
  row.erase(row.begin() + static_cast<std::ptrdiff_t>(rank - 1));  // without C
  col.erase(col.begin() + static_cast<std::ptrdiff_t>(rank - 2));  // without R
  return {{row, DType::f32}, {col, DType::f32}};
}

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

double sum_squares(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return s;
}

double rms(const std::vector<double>& x) {
  return x.empty() ? 0.0 : std::sqrt(sum_squares(x) / static_cast<double>(x.size()));
}

}  // namespace

const OpDef& def_adafactor_update() {
  static const OpDef d{
      "adafactor_update", OpClass::elementwise,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        const auto& a = std::get<AdafactorAttrs>(attrs);
        if (!(a.decay_exponent > 0)) fail("adafactor_update: decay_exponent {} must be > 0", a.decay_exponent);
        if (!(a.clip_threshold >= 0)) fail("adafactor_update: clip_threshold {} must be >= 0 (0: no clipping)", a.clip_threshold);
        if (!(a.epsilon1 >= 0) || !(a.epsilon2 >= 0))
          fail("adafactor_update: epsilon1 {} and epsilon2 {} must be >= 0", a.epsilon1, a.epsilon2);
        if (in.empty()) fail("adafactor_update expects inputs (param, grad, state..., lr, step, clip_scale), got none");
        const auto state = adafactor_state(a, in[0]);
        if (state.size() == 2) return infer_update("adafactor_update", in, state, {"v_row", "v_col"});
        return infer_update("adafactor_update", in, state, {"v"});
      },
      [](const Attrs& attrs, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool exact) {
        const auto& a = std::get<AdafactorAttrs>(attrs);
        const Tensor& p = *in[0];
        const Tensor& g = *in[1];
        const bool factored = adafactor_factored(a, p.shape());
        const size_t ns = factored ? 2 : 1;
        const double lr = in[2 + ns]->data[0];
        const double t = in[3 + ns]->data[0];
        const double clip = in[4 + ns]->data[0];
        const double decay = 1.0 - std::pow(t + 1.0, -a.decay_exponent);
        const double mix = 1.0 - decay;
        const size_t n = p.data.size();

        std::vector<double> gc(n), s(n), u(n);
        for (size_t i = 0; i < n; ++i) {
          gc[i] = g.data[i] * clip;
          s[i] = gc[i] * gc[i] + a.epsilon1;
        }
        if (factored) {
          const size_t rank = p.shape().size();
          const auto R = static_cast<size_t>(p.shape()[rank - 2].size);
          const auto C = static_cast<size_t>(p.shape()[rank - 1].size);
          const size_t O = n / (R * C);
          const Tensor& vr = *in[2];
          const Tensor& vc = *in[3];
          Tensor& vr_new = *out[1];
          Tensor& vc_new = *out[2];
          for (size_t o = 0; o < O; ++o) {
            for (size_t r = 0; r < R; ++r) {  // v_row: mean over C
              double sum = 0;
              for (size_t c = 0; c < C; ++c) sum += s[(o * R + r) * C + c];
              vr_new.data[o * R + r] = decay * vr.data[o * R + r] + mix * sum / static_cast<double>(C);
            }
            for (size_t c = 0; c < C; ++c) {  // v_col: mean over R
              double sum = 0;
              for (size_t r = 0; r < R; ++r) sum += s[(o * R + r) * C + c];
              vc_new.data[o * C + c] = decay * vc.data[o * C + c] + mix * sum / static_cast<double>(R);
            }
            double row_mean = 0;
            for (size_t r = 0; r < R; ++r) row_mean += vr_new.data[o * R + r];
            row_mean /= static_cast<double>(R);
            for (size_t r = 0; r < R; ++r)
              for (size_t c = 0; c < C; ++c) {
                const size_t i = (o * R + r) * C + c;
                u[i] = gc[i] / std::sqrt(vr_new.data[o * R + r] / row_mean) / std::sqrt(vc_new.data[o * C + c]);
              }
          }
        } else {
          const Tensor& v = *in[2];
          Tensor& v_new = *out[1];
          for (size_t i = 0; i < n; ++i) {
            v_new.data[i] = decay * v.data[i] + mix * s[i];
            u[i] = gc[i] / std::sqrt(v_new.data[i]);
          }
        }
        if (a.clip_threshold > 0) {
          const double denom = std::max(1.0, rms(u) / a.clip_threshold);
          for (double& x : u) x /= denom;
        }
        const double step_size = a.parameter_scale ? lr * std::max(rms(p.data), a.epsilon2) : lr;
        for (size_t i = 0; i < n; ++i) out[0]->data[i] = p.data[i] - step_size * u[i];
        for (Tensor* o : out) round_all(*o, exact);
      },
      nullptr,  // no gradient through an optimizer step
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& attrs) {
        const auto& a = std::get<AdafactorAttrs>(attrs);
        const double n = elems(in[0]);
        double state = 0;
        for (size_t i = 1; i < out.size(); ++i) state += elems(out[i]);
        return streaming_cost(in, out, 12 * n + 4 * state + (a.parameter_scale ? 2 * n : 0.0));
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
