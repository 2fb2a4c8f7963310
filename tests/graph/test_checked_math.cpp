// Checked 64-bit arithmetic for sizes and counts (graph/checked_math.hpp) and the config-level
// products (graph/models/model_config.cpp check_size_products): what wrapped before is refused.
#include "executor/memory_limit.hpp"
#include "graph/checked_math.hpp"
#include "graph/models/model_config.hpp"
#include "graph/shape.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

namespace sy {
namespace {

constexpr int64_t k2_32 = int64_t{1} << 32;

TEST_CASE("checked_math: products and sums that fit are exact, overflows are InputErrors naming the factors",
          "[checked_math]") {
  CHECK(checked_mul(k2_32, k2_32 / 4, "x") == int64_t{1} << 62);
  CHECK(checked_mul(-3, 5, "x") == -15);
  CHECK_THROWS_WITH(checked_mul(k2_32, k2_32, "elements of w"),
                    "elements of w: 4294967296 × 4294967296 overflows 64-bit integers (largest 9223372036854775807)");
  CHECK(checked_add(kInt64Max - 1, 1, "x") == kInt64Max);
  CHECK_THROWS_WITH(checked_add(kInt64Max, 1, "the count"), Catch::StartsWith("the count: 9223372036854775807 + 1 overflows"));
  CHECK(checked_product("p", {{"a", 1 << 20}, {"b", 1 << 20}, {"c", 1 << 22}}) == int64_t{1} << 62);
  CHECK_THROWS_WITH(checked_product("logits", {{"train.batch", 1 << 20}, {"train.length", 1 << 20}, {"model.vocab", 1 << 24}}),
                    Catch::StartsWith("logits: train.batch = 1048576 × train.length = 1048576 × model.vocab = 16777216 "
                                      "overflows 64-bit integers"));
}

TEST_CASE("checked_math: num_elements and num_bytes refuse a shape whose count wraps", "[checked_math]") {
  // 2^20 · 2^20 · 2^24 = 2^64: before, this wrapped to 0 elements.
  const Shape s{{"batch", 1 << 20}, {"length", 1 << 20}, {"vocab", 1 << 24}};
  CHECK_THROWS_WITH(num_elements(s), Catch::StartsWith("tensor [batch=1048576, length=1048576, vocab=16777216]: its "
                                                       "element count overflows"));
  // 2^61 elements fit; their f32 bytes (2^63) do not.
  const TensorType t{{{"a", int64_t{1} << 40}, {"b", int64_t{1} << 21}}, DType::f32};
  CHECK(num_elements(t.shape) == int64_t{1} << 61);
  CHECK_THROWS_WITH(num_bytes(t), Catch::StartsWith("bytes of tensor [a=1099511627776, b=2097152]: 2305843009213693952 × 4 "
                                                    "overflows"));
}

TEST_CASE("checked_math: config sizes within their bounds whose products pass 2^63 are refused by key",
          "[checked_math]") {
  const std::string model = "[model]\narchitecture = \"decoder_only\"\nvocab = 16777216\nd_model = 64\nheads = 4\n";
  // batch 2^20 × length 2^20 × vocab 2^24 logits.
  CHECK_THROWS_WITH(parse_run_config(model + "[train]\nbatch = 1048576\nlength = 1048576\n", "big.toml"),
                    Catch::StartsWith("big.toml: the logits per step: train.batch = 1048576 × train.length = 1048576 × "
                                      "model.vocab = 16777216 overflows 64-bit integers"));
  // heads 4096 × length² = 2^12 · 2^40 · batch 2^12 = 2^64 attention scores.
  CHECK_THROWS_WITH(parse_run_config(model + "[train]\nbatch = 4096\nlength = 1048576\n", "big.toml", {"model.heads=4096",
                                                                                                       "model.d_kv=16"}),
                    Catch::StartsWith("big.toml: the decoder's attention scores per step: train.batch = 4096 × "
                                      "model.heads = 4096 × train.length = 1048576 × train.length = 1048576 overflows"));
  CHECK_NOTHROW(parse_run_config(model + "[train]\nbatch = 8\nlength = 128\n", "ok.toml"));
}

TEST_CASE("memory_limit: the machine's available memory is read and a larger need is refused with both figures",
          "[checked_math]") {
  const int64_t available = available_memory_bytes();
  REQUIRE(available > 0);
  CHECK_NOTHROW(check_memory_fits(1 << 20, "a small program", "1 MiB"));
  CHECK_THROWS_WITH(check_memory_fits(kInt64Max, "the program", "all of it"),
                    Catch::StartsWith("the program needs 8.00 EiB (all of it) but this machine has ") &&
                        Catch::Contains("available (MemAvailable, /proc/meminfo)"));
}

}  // namespace
}  // namespace sy
