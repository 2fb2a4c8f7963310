// Expert load imbalance in the simulator: per-expert loads (measured by a real run or a stated
// skew model) priced against the graph's capacity buffers.
//
// Loads are in the unit `train` logs (graph/models/moe.cpp expert_load, metrics.jsonl
// "moe"/<scope>/"expert_load"): f_e = choices routed to expert e (after the second-expert policy,
// before capacity) / tokens; Σ_e f_e = k when every choice is kept. An expert then receives
// f_e·S choices of each group of S tokens (every group assumed to route alike: the log holds the
// sum over groups only).
//
// The graph is Mesh-TF's (moe.hpp): dispatch and combine are einsums into capacity-padded
// [experts, group, capacity, d_model] buffers, C slots per expert and group. Two backings:
//
//   capacity (default)  XLA on TPU compiles static shapes: the expert matmuls and the dispatch /
//       combine all-to-alls process all C slots whether they hold a token or not (GShard §2.2 and
//       Mesh-TF moe.py pad every expert to capacity; Switch Transformer §2.2: "tokens ... overflow
//       ... are dropped"). Skew therefore costs no time: it costs DROPPED choices. Per layer
//       dropped = Σ_e max(0, f_e·S − C) / Σ_e f_e·S. Because max(0, x − C) is convex, groups that
//       fluctuate around the mean drop at least this much (Jensen): it is a lower bound.
//   ragged (--ragged-experts)  a backing that computes only the routed rows (MegaBlocks' block-
//       sparse kernels, Gale et al. 2022; ragged all-to-all / grouped matmuls): a device holding
//       experts e ∈ D_d (contiguous blocks of E/n experts over the expert axis, as lowering
//       shards) processes Σ_{e∈D_d} min(f_e·S, C) rows per group instead of |D_d|·C. SPMD: every
//       device waits for the busiest at the next collective, so each op of the layer that touches
//       a capacity-indexed tensor — the expert computation (scope <layer>/experts, forward and
//       backward) and the all-to-alls — is priced with its capacity dim holding
//       ρ = max_d Σ_{e∈D_d} min(f_e·S, C) / (|D_d|·C) of its slots. The graph's capacity still
//       bounds a row count (moe.dropless sets C = S: nothing dropped). The one-hot dispatch /
//       combine einsums (scope <layer>/dispatch) keep their padded price (a ragged backing replaces
//       them with gathers; not modelled: an upper bound).
//
// Pricing by ρ: every scaled op's OpDef::cost is affine in its capacity dim (einsum flops are a
// product of dims, bytes a sum of tensor sizes, all-to-all bytes its payload), so
// cost(ρ·C) = cost(0) + ρ·(cost(C) − cost(0)), with cost(0) the op priced with capacity dims of 0.
//
// Skew models (--skew), loads summing to k over E experts:
//   uniform     f_e = k/E
//   zipf:s      f_e ∝ 1/(e+1)^s, s ≥ 0 (expert 0 the busiest; s = 0 is uniform)
//   hot:p       expert 0 takes the share p of all routed choices (f_0 = p·k), the others share
//               the rest equally; 1/E ≤ p ≤ 1
// A load above 1 (more choices than tokens: top-k picks distinct experts) is rejected.
#pragma once

#include "graph/ir.hpp"
#include "graph/op_def.hpp"
#include "graph/parallel/lower.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sy {

// Where the loads come from: a metrics.jsonl (per MoE layer scope) or a skew model (every layer).
struct ExpertLoads {
  std::string source;                                   // for the report
  std::string model;                                    // the skew model text, or "" for measured
  std::map<std::string, std::vector<double>> by_scope;  // measured: "decoder/layer_01/moe" -> f_e
};

// --skew MODEL: checks the syntax (InputError naming --skew, the value and what is allowed).
ExpertLoads skew_model(const std::string& text);
// The model's loads for E experts and k choices per token (sum k).
std::vector<double> skew_model_loads(const std::string& text, int64_t experts, int64_t k);
// --expert-load FILE with --expert-load-steps "last:N" (the mean of the last N training steps) or
// "step:S". InputError for a missing file, a line that is not JSON, no MoE loads, a bad spec.
ExpertLoads read_expert_loads(const std::string& path, const std::string& steps);

// One MoE layer priced under the loads.
struct MoeLayerLoad {
  std::string scope;  // "decoder/layer_01/moe"
  int64_t experts = 0, expert_shards = 1, groups = 0, group_size = 0, capacity = 0, k = 1;
  std::vector<double> loads;     // f_e
  int64_t busiest_expert = 0;
  double expert_overload = 1;    // max_e f_e / mean_e f_e
  int64_t busiest_device = 0;    // index along the expert axis
  double device_overload = 1;    // max_d / mean_d of the devices' loads
  double dropped_fraction = 0;   // Σ max(0, f·S − C) / Σ f·S
  double rows_busiest = 1;       // ρ: the busiest device's rows / its capacity slots (min(f·S, C) per expert)
  double rows_mean = 1;          // the same for the mean device
  double scaled_time = 0;        // ragged: time of the ops priced at ρ (per device)
  double extra_time = 0;         // ragged: scaled_time × (1 − rows_mean/ρ): the busiest device's wait over a balanced one
};

struct LoadSkewReport {
  bool enabled = false;
  bool ragged = false;
  std::string source;
  std::vector<MoeLayerLoad> layers;
};

class LoadSkew {
 public:
  // Finds the MoE layers of the program and prices `loads` on them. InputError when a measured
  // file lacks a layer of the program or its expert count differs.
  LoadSkew(const Lowered& program, const ExpertLoads& loads, bool ragged);
  // The cost of node n (priced = OpDef::cost(in, out)): unchanged unless ragged and n is one of
  // the layer's capacity-indexed ops; then priced at ρ of its capacity slots.
  OpCost cost(const Node& n, const std::vector<TensorType>& in, const std::vector<TensorType>& out,
              const OpCost& priced) const;
  // Ragged: when n is one of the layers' all-to-alls of an expert buffer (moved at ρ of its
  // slots), the number of (expert, group) blocks of its local input `in` (its dims before the
  // capacity dim); else 0.
  int64_t ragged_all_to_all_blocks(const Node& n, const TensorType& in) const;
  // The per-layer results, with the scaled ops' times (duration by node id of the program).
  LoadSkewReport report(const std::vector<double>& duration_by_node) const;

 private:
  LoadSkewReport report_;
  std::vector<int> layer_of_node_;  // -1: not scaled
};

// report.md section "Expert load" and summary.json "expert_load" ("" / null when not enabled).
std::string expert_load_markdown(const LoadSkewReport& r);
nlohmann::ordered_json expert_load_json(const LoadSkewReport& r);

}  // namespace sy
