// TEMPORARY during parallel development: weak placeholders for the families still being written
// (index), so the tree links. Deleted before landing.
#include "ops/defs.hpp"

#include "graph/error.hpp"

namespace sy::ops {
#define SY_PENDING_elementwise(kind)
#define SY_PENDING_layout(kind)
#define SY_PENDING_reduce(kind)
#define SY_PENDING_matmul(kind)
#define SY_PENDING_index(kind)                                                \
  __attribute__((weak)) const OpDef& def_##kind() {                           \
    throw InternalError("op " #kind " is not defined yet (ops/pending.cpp)"); \
  }
#define SY_OP(kind, attrs, family) SY_PENDING_##family(kind)
#include "graph/op_kinds.def"
#undef SY_OP
}  // namespace sy::ops
