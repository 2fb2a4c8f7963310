// The registry: a switch over every op kind (no default, so a kind without an OpDef breaks the
// build under -Werror=switch).
#include "graph/op_def.hpp"
#include "graph/error.hpp"
#include "ops/defs.hpp"

namespace sy {

const OpDef& op_def(OpKind k) {
  switch (k) {
#define SY_OP(kind, attrs, family) \
  case OpKind::kind: return ops::def_##kind();
#include "graph/op_kinds.def"
#undef SY_OP
  }
  throw InternalError("op_def: op kind out of range");
}

std::string_view op_class_name(OpClass c) {
  switch (c) {
    case OpClass::matmul: return "matmul";
    case OpClass::elementwise: return "elementwise";
    case OpClass::reduction: return "reduction";
    case OpClass::index: return "index";
    case OpClass::layout: return "layout";
  }
  return "?";
}

}  // namespace sy
