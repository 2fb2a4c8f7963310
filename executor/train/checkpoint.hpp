// Checkpoints as safetensors files (readable by PyTorch's safetensors and by NumPy:
// tests/reference/read_safetensors.py).
//
// Format (https://github.com/huggingface/safetensors): an unsigned 64-bit little-endian header
// length N, N bytes of JSON (padded with spaces to a multiple of 8), then the tensor data. The
// header maps each tensor name to {"dtype": "F32" | "BF16" | "I32", "shape": [...],
// "data_offsets": [begin, end]} (byte offsets into the data, packed in header order) and holds
// "__metadata__", a map of strings. The writer adds metadata "checksum" = FNV-1a 64 of the data
// (16 hex digits), which the reader verifies: a flipped bit is an error, not a silent resume. It
// also adds "header_checksum" = FNV-1a 64 of the header JSON as written without that key, so one
// edited byte of the step, config or tensor list is refused too. Files without header_checksum
// (written before it existed, or by other safetensors writers) load on the data checksum alone.
//
// A Switchyard training checkpoint holds every parameter under its graph name
// ("decoder/layer_00/attention/wq") and every optimizer state tensor under
// "optimizer/<param>/<slot>" (f32, row-major, the graph's dim order), and metadata:
//   format        "switchyard-checkpoint/1"
//   step          updates done
//   data_epoch, data_example   the training batch source's position (batches.hpp)
//   loss_ema      the divergence detector's running mean of the loss (shortest round-trip decimal)
//   loss_ema_best the lowest loss_ema so far, the spike reference (optional: = loss_ema when absent)
//   config        the resolved RunConfig as JSON (graph/models/model_config.hpp to_json)
//   model_path, model_toml, overrides (JSON array)   the config file as given, to resume without it
//   dims          JSON {tensor name: [dim names]}: the named dims behind each shape
//
// Writes are atomic: the file is written as PATH.tmp, flushed to disk, read back and verified,
// then renamed over PATH. A crash leaves either the old checkpoint or the new one, never a torn
// file; a write that fails leaves the old one in place.
#pragma once

#include "executor/data/batches.hpp"
#include "executor/train/trainer.hpp"
#include "graph/dtype.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace sy {

// ---- safetensors ----

struct TensorBytes {  // a tensor to write: `data` holds product(shape) elements of dtype
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::string bytes;  // row-major, little-endian
};

struct Safetensors {
  std::vector<SafetensorsTensor> tensors;  // in header order
  std::map<std::string, std::string> metadata;
  const SafetensorsTensor* find(const std::string& name) const;
};

// Writes `tensors` and `metadata` (plus "checksum") atomically to `path`. Throws InputError
// naming the path when it cannot be written.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorBytes>& tensors,
                       std::map<std::string, std::string> metadata);

// Reads and verifies a file written as above (or by any safetensors writer; the checksum is
// checked when present). Throws InputError naming the path and what is wrong with it.
Safetensors read_safetensors(const std::filesystem::path& path);

// ---- training checkpoints ----

inline constexpr const char* kCheckpointFormat = "switchyard-checkpoint/1";
inline constexpr const char* kCheckpointFile = "checkpoint.safetensors";

// What a run needs besides the tensors to continue bit for bit.
struct RunState {
  int64_t step = 0;
  data::BatchPosition data;
  double loss_ema = 0;
  std::string config_json;  // to_json(RunConfig).dump()
  std::string model_path;
  std::string model_toml;
  std::vector<std::string> overrides;
  double loss_ema_best = 0;  // the lowest loss_ema so far (executor/train/divergence.hpp); = loss_ema when absent
};

// Saves the trainer's parameters and optimizer state with `run` to `path` (atomically).
void save_checkpoint(const std::filesystem::path& path, const std::vector<StateTensor>& state, const RunState& run);

struct Checkpoint {
  RunState run;
  Safetensors file;
};

// Reads a checkpoint and its metadata. Throws InputError naming the path for a missing,
// unreadable, corrupt or non-Switchyard file.
Checkpoint read_checkpoint(const std::filesystem::path& path);

// Copies the checkpoint's tensors into `state` (Trainer::state()). Every tensor of `state` must
// be in the checkpoint with the same shape, and the checkpoint must hold no other tensor;
// otherwise InputError naming `path` and the tensor.
void restore_state(const Checkpoint& ckpt, const std::vector<StateTensor>& state, const std::filesystem::path& path);

}  // namespace sy
