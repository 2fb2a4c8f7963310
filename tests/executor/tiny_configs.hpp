// Model configs shared by the executor tests.
#pragma once

#include "graph/models/model_config.hpp"

#include <string>
#include <vector>

namespace sy::test {

// A tiny decoder-only MoE model (next-token objective): vocab 64, d_model 16, 2 layers, 4 experts
// top-2, batch 2, sequences of 8; `sets` override keys as train --set does.
inline RunConfig tiny_decoder(std::vector<std::string> sets = {}) {
  const char* text = R"(
[model]
architecture = "decoder_only"
vocab = 64
d_model = 16
d_ff = 32
heads = 2
d_kv = 8
layers = 2
position_buckets = 8
position_max_distance = 16
[moe]
every = 2
experts = 4
k = 2
min_capacity = 1
[train]
batch = 2
length = 8
seed = 3
)";
  return parse_run_config(text, "tiny_decoder.toml", sets);
}

}  // namespace sy::test
