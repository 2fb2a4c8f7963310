// The small MLP shipped as experiments/graphs/mlp.json (test_json.cpp checks the file equals a
// fresh serialisation of this graph; run the tests with SY_UPDATE_GOLDEN=1 to rewrite it).
//
//   x [B=4, D=8] -> einsum w1 [D, F=16] -> relu -> einsum w2 [F, D] -> y [B, D]
//   loss = mean_{B,D} (y - target)^2, plus its gradients (autodiff)
#pragma once

#include "tests/source_root.hpp"

#include "graph/autodiff.hpp"
#include "graph/builder.hpp"

#include <filesystem>

namespace sy::test {

inline Graph build_mlp() {
  Graph g;
  Builder b(g);
  Expr x = b.input("x", {{"batch", 4}, {"d_model", 8}});            // [B, D]
  Expr target = b.input("target", {{"batch", 4}, {"d_model", 8}});  // [B, D]
  Expr w1 = b.parameter("ffn/w1", {{"d_model", 8}, {"d_ff", 16}});  // [D, F]
  Expr w2 = b.parameter("ffn/w2", {{"d_ff", 16}, {"d_model", 8}});  // [F, D]
  Expr y;
  {
    ScopeGuard s(b, "ffn");
    Expr h = relu(einsum(x, w1, {"batch", "d_ff"}));  // [B, F]
    y = einsum(h, w2, {"batch", "d_model"});          // [B, D]
  }
  b.output("y", y);
  {
    ScopeGuard s(b, "loss");
    Expr err = y - target;                                // [B, D]
    b.set_loss(mean(err * err, {"batch", "d_model"}));    // []
  }
  gradients(g);
  return g;
}


}  // namespace sy::test
