#include "executor/train/checkpoint.hpp"

#include "executor/data/random.hpp"
#include "graph/error.hpp"
#include "graph/file_io.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <unistd.h>

namespace sy {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
  }
  return "?";
}

[[noreturn]] void bad_file(const fs::path& path, const std::string& what) {
  throw InputError(fmt::format("checkpoint {}: {}", path.string(), what));
}

std::string hex64(uint64_t x) { return fmt::format("{:016x}", x); }

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The bytes a tensor of `shape` (dims >= 0) and `dtype` takes, or nullopt when that overflows 64
// bits (a file's header can claim any shape).
std::optional<uint64_t> checked_byte_count(const std::vector<int64_t>& shape, DType dtype) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  uint64_t n = static_cast<uint64_t>(dtype_bytes(dtype));
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  return n;
}

}  // namespace

const SafetensorsTensor* Safetensors::find(const std::string& name) const {
  for (const SafetensorsTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

void write_safetensors(const fs::path& path, const std::vector<TensorBytes>& tensors,
                       std::map<std::string, std::string> metadata) {
  Json header = Json::object();
  uint64_t offset = 0;
  uint64_t checksum = 0xcbf29ce484222325ull;
  for (const TensorBytes& t : tensors) {
    const uint64_t n = static_cast<uint64_t>(element_count(t.shape) * dtype_bytes(t.dtype));
    header[t.name] = {{"dtype", safetensors_dtype(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    checksum = data::fnv1a64(std::string_view(static_cast<const char*>(t.data), n), checksum);
    offset += n;
  }
  metadata["checksum"] = hex64(checksum);
  Json meta = Json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  Json top = Json::object();
  top["__metadata__"] = meta;
  for (auto& [k, v] : header.items()) top[k] = v;
  // The header's own checksum: FNV-1a 64 of the header as dumped without this key (the reader
  // re-dumps what it parsed, minus the key; nlohmann's dump of a parsed ordered_json is the same
  // text, the header holding only strings and integers).
  top["__metadata__"]["header_checksum"] = hex64(data::fnv1a64(top.dump()));
  std::string text = top.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  const auto write = [&](std::FILE* f) {
    bool ok = true;
    const uint64_t n = text.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    ok = ok && std::fwrite(len, 1, 8, f) == 8;
    ok = ok && std::fwrite(text.data(), 1, text.size(), f) == text.size();
    for (const TensorBytes& t : tensors) {
      const size_t bytes = static_cast<size_t>(element_count(t.shape) * dtype_bytes(t.dtype));
      ok = ok && (bytes == 0 || std::fwrite(t.data, 1, bytes, f) == bytes);
    }
    return ok;
  };
  const auto reads_back = [&](const fs::path& tmp) {  // what was written reads back whole
    try {
      read_safetensors(tmp);
    } catch (const InputError& e) {
      throw InputError(fmt::format("checkpoint {}: the new file does not read back ({}); the previous checkpoint is kept",
                                   path.string(), e.what()));
    }
  };
  try {
    write_file_atomic(path, write, reads_back);
  } catch (const InputError& e) {
    const std::string what = e.what();
    if (what.rfind("checkpoint ", 0) == 0) throw;
    throw InputError(fmt::format("checkpoint: {} (the previous checkpoint is kept)", what));
  }
}

Safetensors read_safetensors(const fs::path& path) {
  if (std::error_code ec; fs::is_directory(path, ec)) bad_file(path, "is a directory, not a checkpoint file");
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_file(path, fs::exists(path) ? "cannot be opened for reading" : "no such file");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 8) bad_file(path, fmt::format("{} bytes: too short for a safetensors header", bytes.size()));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[static_cast<size_t>(i)])) << (8 * i);
  if (n > bytes.size() - 8)
    bad_file(path, fmt::format("header length {} exceeds the file ({} bytes): not a safetensors file, or truncated", n,
                               bytes.size()));
  Json header;
  try {
    header = Json::parse(bytes.substr(8, n));
  } catch (const nlohmann::json::exception& e) {
    bad_file(path, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object()) bad_file(path, "header is not a JSON object");
  const size_t data_begin = 8 + n;
  const uint64_t data_size = bytes.size() - data_begin;

  Safetensors st;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& item : header.items()) {
    const std::string& name = item.key();  // not a structured binding: the lambda below captures it (clang 14)
    const Json& entry = item.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) bad_file(path, "__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) bad_file(path, fmt::format("metadata '{}' is not a string", k));
        st.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    auto fail = [&](const std::string& what) { bad_file(path, fmt::format("tensor '{}': {}", name, what)); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      fail("expected {dtype, shape, data_offsets}");
    SafetensorsTensor t;
    t.name = name;
    const Json& dt = entry["dtype"];
    if (dt == "F32") t.dtype = DType::f32;
    else if (dt == "BF16") t.dtype = DType::bf16;
    else if (dt == "I32") t.dtype = DType::i32;
    else fail(fmt::format("dtype {} (allowed: F32, BF16, I32)", dt.dump()));
    if (!entry["shape"].is_array()) fail("shape is not an array");
    for (const Json& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) fail(fmt::format("bad shape {}", entry["shape"].dump()));
      t.shape.push_back(d.get<int64_t>());
    }
    const Json& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(fmt::format("bad data_offsets {}", off.dump()));
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    const std::optional<uint64_t> bytes_needed = checked_byte_count(t.shape, t.dtype);
    if (!bytes_needed) fail(fmt::format("shape {} needs more than 2^64 bytes", entry["shape"].dump()));
    const uint64_t want = *bytes_needed;
    if (e < b || e - b != want)
      fail(fmt::format("data_offsets [{}, {}] hold {} bytes but shape {} needs {}", b, e, e < b ? 0 : e - b,
                       entry["shape"].dump(), want));
    if (e > data_size) fail(fmt::format("data_offsets end {} is past the data ({} bytes): the file is truncated", e, data_size));
    t.bytes = bytes.substr(data_begin + b, e - b);
    ranges.emplace_back(b, e);
    st.tensors.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = 0;
  for (const auto& [b, e] : ranges) {
    if (b != at) bad_file(path, fmt::format("tensor data has a gap or overlap at byte {}", std::min(b, at)));
    at = e;
  }
  if (at != data_size) bad_file(path, fmt::format("{} bytes of data follow the last tensor", data_size - at));
  // Checkpoints written before header checksums (no "header_checksum") load on the data checksum
  // alone; every newer one must match, so one edited byte of its step or config is refused.
  if (auto it = st.metadata.find("header_checksum"); it != st.metadata.end()) {
    Json rest = header;
    rest["__metadata__"].erase("header_checksum");
    const uint64_t sum = data::fnv1a64(rest.dump());
    if (hex64(sum) != it->second)
      bad_file(path, fmt::format("header checksum {} does not match the header ({}): the header (step, config, tensor "
                                 "list) was edited or is corrupt",
                                 it->second, hex64(sum)));
  }
  if (auto it = st.metadata.find("checksum"); it != st.metadata.end()) {
    // The writer's checksum runs over the tensors in data order: the whole data section.
    const uint64_t sum = data::fnv1a64(std::string_view(bytes).substr(data_begin));
    if (hex64(sum) != it->second)
      bad_file(path, fmt::format("checksum {} does not match the data ({}): the file is corrupt", it->second, hex64(sum)));
  }
  return st;
}

void save_checkpoint(const fs::path& path, const std::vector<StateTensor>& state, const RunState& run) {
  std::vector<TensorBytes> tensors;
  Json dims = Json::object();
  for (const StateTensor& s : state) {
    TensorBytes t{s.name, s.type.dtype, {}, s.data};
    Json names = Json::array();
    for (const Dim& d : s.type.shape) {
      t.shape.push_back(d.size);
      names.push_back(d.name);
    }
    dims[s.name] = names;
    tensors.push_back(std::move(t));
  }
  std::map<std::string, std::string> meta{
      {"format", kCheckpointFormat},
      {"step", std::to_string(run.step)},
      {"data_epoch", std::to_string(run.data.epoch)},
      {"data_example", std::to_string(run.data.example)},
      {"loss_ema", fmt::format("{}", run.loss_ema)},
      {"loss_ema_best", fmt::format("{}", run.loss_ema_best)},
      {"config", run.config_json},
      {"model_path", run.model_path},
      {"model_toml", run.model_toml},
      {"overrides", Json(run.overrides).dump()},
      {"dims", dims.dump()},
  };
  write_safetensors(path, tensors, std::move(meta));
}

Checkpoint read_checkpoint(const fs::path& path) {
  Checkpoint c;
  c.file = read_safetensors(path);
  const auto& m = c.file.metadata;
  auto get = [&](const char* key) -> const std::string& {
    auto it = m.find(key);
    if (it == m.end()) bad_file(path, fmt::format("metadata '{}' is missing (not a Switchyard checkpoint?)", key));
    return it->second;
  };
  if (get("format") != kCheckpointFormat)
    bad_file(path, fmt::format("format '{}' (this Switchyard reads '{}')", get("format"), kCheckpointFormat));
  auto integer = [&](const char* key) {
    const std::string& s = get(key);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno != 0 || v < 0) bad_file(path, fmt::format("metadata {} = '{}' is not a count", key, s));
    return static_cast<int64_t>(v);
  };
  c.run.step = integer("step");
  c.run.data.epoch = integer("data_epoch");
  c.run.data.example = integer("data_example");
  {
    const std::string& s = get("loss_ema");
    char* end = nullptr;
    c.run.loss_ema = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0') bad_file(path, fmt::format("metadata loss_ema = '{}' is not a number", s));
    c.run.loss_ema_best = c.run.loss_ema;  // checkpoints from before the key existed
    if (auto it = m.find("loss_ema_best"); it != m.end()) {
      c.run.loss_ema_best = std::strtod(it->second.c_str(), &end);
      if (it->second.empty() || *end != '\0')
        bad_file(path, fmt::format("metadata loss_ema_best = '{}' is not a number", it->second));
    }
  }
  c.run.config_json = get("config");
  if (const nlohmann::json cfg = nlohmann::json::parse(c.run.config_json, nullptr, false); !cfg.is_object())
    bad_file(path, "metadata config is not a JSON object (the file is corrupt)");
  c.run.model_path = get("model_path");
  c.run.model_toml = get("model_toml");
  try {
    c.run.overrides = Json::parse(get("overrides")).get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception&) {
    bad_file(path, "metadata overrides is not a JSON array of strings");
  }
  return c;
}

void restore_state(const Checkpoint& ckpt, const std::vector<StateTensor>& state, const fs::path& path) {
  std::set<std::string> wanted;
  for (const StateTensor& s : state) {
    wanted.insert(s.name);
    const SafetensorsTensor* t = ckpt.file.find(s.name);
    if (!t) bad_file(path, fmt::format("tensor '{}' {} of this model is missing", s.name, to_string(s.type)));
    std::vector<int64_t> shape;
    for (const Dim& d : s.type.shape) shape.push_back(d.size);
    if (t->dtype != s.type.dtype || t->shape != shape)
      bad_file(path, fmt::format("tensor '{}' is {} {} but this model has {}", s.name, safetensors_dtype(t->dtype),
                                 Json(t->shape).dump(), to_string(s.type)));
  }
  for (const SafetensorsTensor& t : ckpt.file.tensors)
    if (!wanted.count(t.name)) bad_file(path, fmt::format("tensor '{}' is not part of this model", t.name));
  for (const StateTensor& s : state) std::memcpy(s.data, ckpt.file.find(s.name)->bytes.data(), ckpt.file.find(s.name)->bytes.size());
}

}  // namespace sy
