// TEMPORARY during parallel development: weak placeholders so the tree links while op families
// are written. Each family file's strong definition replaces these. Deleted before landing.
#include "ops/defs.hpp"

#include "graph/error.hpp"

namespace sy::ops {
#define SY_OP(kind, attrs, family)                                       \
  __attribute__((weak)) const OpDef& def_##kind() {                       \
    throw InternalError("op " #kind " is not defined yet (ops/pending.cpp)"); \
  }
#include "graph/op_kinds.def"
#undef SY_OP
}  // namespace sy::ops
