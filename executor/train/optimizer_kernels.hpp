// Fast kernels of the optimizer updates (ops/optimizer.cpp has the formulas and the reference):
// f32 storage, double arithmetic per element, TBB-parallel over rows of the parameter's last dim.
// Every sum is formed per row and then added up in row order, so results do not depend on how TBB
// splits the work: a resumed run repeats an uninterrupted one bit for bit. Private to executor/.
#pragma once

#include "executor/kernels.hpp"

#include <vector>

namespace sy::exec {

// in: param, grad, state..., lr, step, clip_scale; out: param', state'. False when the dtypes are
// not the ones the ops define (the reference then reports the problem).
bool adafactor_update(const AdafactorAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out);
bool adamw_update(const AdamWAttrs& a, const std::vector<ConstView>& in, const std::vector<View>& out);

}  // namespace sy::exec
