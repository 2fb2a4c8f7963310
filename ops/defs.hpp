// One accessor per op kind, defined in ops/<family>.cpp (family as listed in op_kinds.def).
#pragma once

#include "graph/op_def.hpp"

namespace sy::ops {
#define SY_OP(kind, attrs, family) const OpDef& def_##kind();
#include "graph/op_kinds.def"
#undef SY_OP
}  // namespace sy::ops
