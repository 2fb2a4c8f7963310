// The router tests' fixture (tests/graph/test_router*.cpp): a tiny MoE layer whose router weight is
// the identity, so the router logits are the input rows themselves, run with the reference
// interpreter. Logits are written as log-probabilities (plus a per-token shift where the z-loss
// needs one): softmax(ln p + c) = p, so the router probabilities are the p written in each case.
#pragma once

#include "graph/builder.hpp"
#include "graph/models/moe.hpp"
#include "graph/tensor.hpp"

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sy::test {

using Probs = std::vector<std::vector<double>>;  // [token][expert]

// One layer built and run: its graph, its outputs and every value.
struct RouterRun {
  Graph g;
  MoeLayer m;
  std::map<ValueId, Tensor> leaves;
  std::vector<Tensor> vals;
  const Tensor& at(const Expr& e) const { return vals.at(static_cast<size_t>(e.id.v)); }
  double scalar(const Expr& e) const { return at(e).data.at(0); }
  std::vector<double> vec(const Expr& e) const { return at(e).data; }
};

struct RunOptions {
  std::vector<double> shift;       // per-token logit shift (default 0)
  int64_t step = 0;
  std::vector<int> token_ids;      // hash routing
  FfnKind ffn = FfnKind::relu;
  bool exact = true;
  std::vector<double> bias;        // moe/router/balance_bias (bias_balance_rate > 0)
  int64_t sequences = 0;           // > 0: x is [batch = sequences, length, d_model] instead of [tokens, d_model]
};

// x [tokens = T, d_model = E] holds ln p (+ shift); router w = I_E; expert weights a fixed pattern.
std::unique_ptr<RouterRun> run(MoeConfig cfg, MoeContext ctx, const Probs& p, const RunOptions& o = {});

// E experts, top-k, every second choice kept, d_ff 3, capacity at least 1.
MoeConfig base_config(int64_t E, int64_t k);

// check_moe_config's message for `cfg`, or "no error".
std::string config_error(const MoeConfig& cfg);

// Slot assignments in the dispatch tensor [G, S, E, C]: (group·S + token, expert, slot), sorted.
using Slot = std::array<int64_t, 3>;
std::vector<Slot> slots(const RouterRun& r, const Expr& t);

// combine[token, expert, slot] of a layer run in one group.
double combine_at(const RouterRun& r, int64_t token, int64_t expert, int64_t slot);

// Whether row `token` of y [tokens, D] is all zero.
bool row_is_zero(const Tensor& y, int64_t token);

}  // namespace sy::test
