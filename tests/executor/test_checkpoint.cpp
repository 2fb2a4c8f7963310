// Safetensors checkpoints (executor/train/checkpoint.hpp): round trip, the layout other readers expect,
// corrupt and truncated files refused with the path named, atomic replacement, restore checks,
// and a trainer checkpoint read by the NumPy reader (tests/reference/read_safetensors.py).
#include "executor/train/checkpoint.hpp"
#include "graph/error.hpp"
#include "tests/source_root.hpp"

#include <sys/resource.h>

#include <csignal>
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

using namespace sy;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

using sy::test::source_root;

// A fresh scratch directory per test case, removed at the end.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) : path(fs::temp_directory_path() / ("sy_test_checkpoint_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void spit(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

// Three tensors of each dtype with known values.
struct Sample {
  std::vector<float> a{1.5f, -2.25f, 3.0f, 0.0f, 1e-30f, -7.0f};
  std::vector<uint16_t> b{f32_to_bf16(0.5f), f32_to_bf16(-3.0f)};
  std::vector<int32_t> c{7, -8, 9};
  std::vector<TensorBytes> tensors() const {
    return {{"layer/w", DType::f32, {2, 3}, a.data()}, {"bias", DType::bf16, {2}, b.data()}, {"ids", DType::i32, {3}, c.data()}};
  }
};

}  // namespace

TEST_CASE("safetensors: written tensors and metadata read back, in the layout other readers expect", "[checkpoint]") {
  TempDir dir("roundtrip");
  const fs::path file = dir.path / "x.safetensors";
  Sample s;
  write_safetensors(file, s.tensors(), {{"note", "hello"}});
  for (const auto& entry : fs::directory_iterator(dir.path))  // no temporary left behind
    CHECK(entry.path().filename() == "x.safetensors");

  const Safetensors st = read_safetensors(file);
  REQUIRE(st.tensors.size() == 3);
  CHECK(st.metadata.at("note") == "hello");
  CHECK(st.metadata.at("checksum").size() == 16);
  const SafetensorsTensor* w = st.find("layer/w");
  REQUIRE(w);
  CHECK(w->dtype == DType::f32);
  CHECK(w->shape == std::vector<int64_t>{2, 3});
  CHECK(std::memcmp(w->bytes.data(), s.a.data(), s.a.size() * 4) == 0);
  CHECK(st.find("bias")->bytes.size() == 4);
  CHECK(std::memcmp(st.find("ids")->bytes.data(), s.c.data(), 12) == 0);

  // Layout: u64 little-endian header length, a multiple of 8; JSON with data_offsets packed in order.
  const std::string raw = slurp(file);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(raw.size() == 8 + n + 24 + 4 + 12);
  const auto header = nlohmann::json::parse(raw.substr(8, n));
  CHECK(header["layer/w"]["dtype"] == "F32");
  CHECK(header["layer/w"]["data_offsets"] == nlohmann::json::array({0, 24}));
  CHECK(header["bias"]["dtype"] == "BF16");
  CHECK(header["ids"]["data_offsets"] == nlohmann::json::array({28, 40}));
}

TEST_CASE("safetensors: missing, truncated, corrupt and foreign files are refused naming the file", "[checkpoint]") {
  TempDir dir("corrupt");
  const fs::path file = dir.path / "x.safetensors";
  Sample s;
  write_safetensors(file, s.tensors(), {});
  const std::string good = slurp(file);

  CHECK_THROWS_WITH(read_safetensors(dir.path / "none.safetensors"), Contains("none.safetensors") && Contains("no such file"));

  std::string flipped = good;
  flipped[flipped.size() - 5] ^= 0x10;  // one bit of the data
  spit(file, flipped);
  CHECK_THROWS_WITH(read_safetensors(file), Contains(file.string()) && Contains("checksum"));

  spit(file, good.substr(0, good.size() - 3));
  CHECK_THROWS_WITH(read_safetensors(file), Contains(file.string()) && Contains("truncated"));

  spit(file, good.substr(0, 20));
  CHECK_THROWS_WITH(read_safetensors(file), Contains("header length"));

  spit(file, "not a checkpoint at all, just text");
  CHECK_THROWS_AS(read_safetensors(file), InputError);

  std::string bad_json = good;
  bad_json[8] = '#';  // the opening brace
  spit(file, bad_json);
  CHECK_THROWS_WITH(read_safetensors(file), Contains("not valid JSON"));

  // A safetensors file without Switchyard's metadata is not a training checkpoint.
  spit(file, good);
  CHECK_THROWS_WITH(read_checkpoint(file), Contains(file.string()) && Contains("metadata 'format' is missing"));
}

// Found by tests/fuzz/fuzz_checkpoint: the shape's byte count was an unchecked int64 product
// (signed overflow, undefined; with wrap-around a huge shape could match small data_offsets).
TEST_CASE("safetensors: a shape whose byte count overflows 64 bits is refused", "[checkpoint]") {
  TempDir dir("overflow");
  const fs::path file = dir.path / "x.safetensors";
  const std::string header = R"({"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})";
  std::string bytes(8, '\0');
  for (size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  spit(file, bytes + header);
  CHECK_THROWS_WITH(read_safetensors(file), Contains(file.string()) && Contains("needs more than 2^64 bytes"));
}

TEST_CASE("safetensors: a write that fails keeps the previous file", "[checkpoint]") {
  TempDir dir("atomic");
  const fs::path file = dir.path / "x.safetensors";
  Sample s;
  write_safetensors(file, s.tensors(), {{"version", "1"}});
  const std::string before = slurp(file);
  // A full disk: files may not grow past 64 bytes (RLIMIT_FSIZE; the write fails with EFBIG
  // instead of raising SIGXFSZ once that signal is ignored).
  struct rlimit old_limit {};
  ::getrlimit(RLIMIT_FSIZE, &old_limit);
  struct rlimit small = old_limit;
  small.rlim_cur = 64;
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  ::setrlimit(RLIMIT_FSIZE, &small);
  s.a[0] = 99.0f;
  const bool threw = [&] {
    try {
      write_safetensors(file, s.tensors(), {{"version", "2"}});
    } catch (const InputError& e) {
      return std::string(e.what()).find(file.string()) != std::string::npos;
    }
    return false;
  }();
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  CHECK(threw);
  for (const auto& entry : fs::directory_iterator(dir.path))  // the temporary is removed
    CHECK(entry.path().filename() == "x.safetensors");
  CHECK(slurp(file) == before);
  CHECK(read_safetensors(file).metadata.at("version") == "1");
}

TEST_CASE("checkpoint: restore refuses missing, extra and reshaped tensors", "[checkpoint]") {
  TempDir dir("restore");
  const fs::path file = dir.path / "c.safetensors";
  std::vector<float> w(6, 1.0f), v(2, 2.0f), out_w(6), out_v(2);
  const TensorType tw{{{"d_model", 2}, {"d_ff", 3}}, DType::f32}, tv{{{"d_model", 2}}, DType::f32};
  save_checkpoint(file, {{"w", tw, w.data()}, {"optimizer/w/v", tv, v.data()}},
                  RunState{7, {1, 3}, 2.5, "{\"model\":{}}", "m.toml", "[model]\n", {"model.d_model=2"}});
  const Checkpoint ck = read_checkpoint(file);
  CHECK(ck.run.step == 7);
  CHECK(ck.run.data == data::BatchPosition{1, 3});
  CHECK(ck.run.loss_ema == 2.5);
  CHECK(ck.run.overrides == std::vector<std::string>{"model.d_model=2"});
  CHECK(ck.file.metadata.at("dims") == R"({"w":["d_model","d_ff"],"optimizer/w/v":["d_model"]})");

  restore_state(ck, {{"w", tw, out_w.data()}, {"optimizer/w/v", tv, out_v.data()}}, file);
  CHECK(out_w == w);
  CHECK(out_v == v);
  CHECK_THROWS_WITH(restore_state(ck, {{"w", tw, out_w.data()}}, file), Contains("'optimizer/w/v' is not part of this model"));
  CHECK_THROWS_WITH(restore_state(ck, {{"w", tw, out_w.data()}, {"optimizer/w/v", tv, out_v.data()}, {"u", tv, out_v.data()}}, file),
                    Contains("tensor 'u'") && Contains("missing"));
  const TensorType tw_other{{{"d_model", 3}, {"d_ff", 2}}, DType::f32};
  CHECK_THROWS_WITH(restore_state(ck, {{"w", tw_other, out_w.data()}, {"optimizer/w/v", tv, out_v.data()}}, file),
                    Contains("'w' is F32 [2,3]"));
}

TEST_CASE("checkpoint: a trainer checkpoint loads in NumPy with the right names, shapes and values", "[checkpoint]") {
  TempDir dir("numpy");
  const fs::path file = dir.path / kCheckpointFile;
  const RunConfig run = load_run_config((source_root() / "experiments/configs/models/tiny.toml").string());
  const TrainConfig& cfg = run.train;
  Trainer t(run, 10);
  // Nonzero optimizer state: one step on a batch of padding-free tokens.
  data::Batch batch;
  batch.objective = data::Objective::kSpanCorruption;
  batch.batch = cfg.batch;
  batch.inputs_length = cfg.input_length;
  batch.targets_length = cfg.target_length;
  for (int64_t i = 0; i < cfg.batch * cfg.input_length; ++i) batch.inputs.push_back(static_cast<int32_t>(3 + i % 40));
  for (int64_t i = 0; i < cfg.batch * cfg.target_length; ++i) {
    batch.decoder_inputs.push_back(static_cast<int32_t>(3 + i % 30));
    batch.targets.push_back(static_cast<int32_t>(4 + i % 30));
    batch.weights.push_back(1.0f);
  }
  t.train_step(batch);
  const std::vector<StateTensor> state = t.state();
  save_checkpoint(file, state, RunState{t.step(), {0, 2}, 3.0, "{}", "tiny.toml", "", {}});

  const fs::path json = dir.path / "out.json";
  const std::string cmd = fmt::format("/usr/bin/python3 {} {} --json > {}", (source_root() / "tests/reference/read_safetensors.py").string(),
                                      file.string(), json.string());
  REQUIRE(std::system(cmd.c_str()) == 0);
  const auto j = nlohmann::json::parse(slurp(json));
  CHECK(j["metadata"]["format"] == kCheckpointFormat);
  CHECK(j["metadata"]["step"] == "1");
  const auto& tensors = j["tensors"];
  CHECK(tensors.size() == state.size());
  std::set<std::string> names;
  for (const StateTensor& s : state) {
    INFO(s.name);
    names.insert(s.name);
    REQUIRE(tensors.contains(s.name));
    const auto& x = tensors[s.name];
    CHECK(x["dtype"] == "float32");
    std::vector<int64_t> shape;
    for (const Dim& d : s.type.shape) shape.push_back(d.size);
    CHECK(x["shape"].get<std::vector<int64_t>>() == shape);
    const auto values = x["values"].get<std::vector<double>>();
    REQUIRE(static_cast<int64_t>(values.size()) == num_elements(s.type.shape));
    bool equal = true;
    for (size_t i = 0; i < values.size(); ++i) equal = equal && static_cast<float>(values[i]) == s.data[i];
    CHECK(equal);
  }
  CHECK(names.count("encoder/layer_00/attention/wq") == 1);
  CHECK(names.count("optimizer/encoder/layer_00/attention/wq/v_row") == 1);
  CHECK(names.count("optimizer/embedding/table/v_col") == 1);
}
