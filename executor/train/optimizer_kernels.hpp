// Fast kernels of the optimizer updates (ops/optimizer.cpp has the formulas and the reference):
// f32 storage, double arithmetic per element, TBB-parallel over rows of the parameter's last dim.
// Every sum is formed per row and then added up in row order, so results do not depend on how TBB
// splits the work: a resumed run repeats an uninterrupted one bit for bit. Private to executor/.
#pragma once

#include "executor/kernels.hpp"

#include <vector>

namespace sy::exec {

// mean_square: in x, [scale], divisors...; out the mean. Sums formed per row or per column block,
// in index order. adafactor_moment: in v, ms, step; out v'. adafactor_update: in param, grad,
// v_row'/mean_R v_row', v_col' (or v'), lr, clip_scale, [ms_u], [ms_param]; out param'. adamw_update:
// in param, grad, m, v, lr, step, clip_scale; out param', m', v'. False when the dtypes are not
// the ones the ops define (the reference then reports the problem).
bool mean_square(const DimsAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out);
bool adafactor_moment(const AdafactorAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out);
bool adafactor_update(const AdafactorAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out);
bool adamw_update(const AdamWAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out);

}  // namespace sy::exec
