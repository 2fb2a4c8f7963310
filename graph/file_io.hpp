// Reading and writing whole files: the one atomic write every output of Switchyard goes through
// (graphs, reports, metrics, status files, checkpoints, sweep indexes, caches).
//
// write_file_atomic writes to a temporary of this process and call beside the target
// (PATH.tmp.<pid>.<n>: racing writers never share one), flushes and fsyncs it, optionally lets the
// caller check the written file, then renames it over PATH. A reader sees the old file or the new
// one, never a part; on any failure (a full disk, a failed check) the temporary is removed, PATH
// is left as it was and an InputError names PATH and the reason.
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace sy {

// Writes `text` to `path` atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view text);

// Writes to `path` atomically through `write`, which fills the open temporary and returns false
// on a failed write; `check` (optional) runs on the complete temporary before the rename and
// throws InputError to keep the old file.
void write_file_atomic(const std::filesystem::path& path, const std::function<bool(std::FILE*)>& write,
                       const std::function<void(const std::filesystem::path& tmp)>& check = {});

// Appends `text` (whole lines) to `path`, creating it, in one checked write followed by fsync. On
// any failure (a full disk) the file is cut back to its old size, so it never ends in a partial
// line, and an InputError names PATH and the reason. Used for the per-step logs (metrics.jsonl,
// task_eval.jsonl), which are appended to rather than rewritten each step.
void append_file_checked(const std::filesystem::path& path, std::string_view text);

// The whole file as bytes; InputError naming the file if it cannot be read.
std::string read_file(const std::filesystem::path& path);

}  // namespace sy
