// Per-machine kernel choice (kernel_choice.hpp): the process's choices, the cache file, the probe.
#include "executor/kernel_choice.hpp"

#include "graph/error.hpp"
#include "graph/file_io.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>

namespace fs = std::filesystem;

namespace sy::exec {
namespace {

// Widened wins only below this fraction of native's time (noise must not flip near-equal paths).
constexpr double kWidenedMargin = 0.95;

struct State {
  std::mutex mu;
  std::optional<ProbeMode> mode;           // set_probe_mode, else read from the environment
  std::map<std::string, size_t> index;     // shape and thread count -> position in choices
  std::vector<KernelChoice> choices;
};

State& state() {
  static State s;
  return s;
}

const char* path_name(Bf16Path p) { return p == Bf16Path::native ? "native" : "widened"; }

// The CPU's model name (/proc/cpuinfo), as a file-name-safe slug.
std::string cpu_slug() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown-cpu";
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) model = line.substr(colon + 1);
      break;
    }
  std::string slug;
  for (char c : model) {
    if (std::isalnum(static_cast<unsigned char>(c))) slug += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else if (!slug.empty() && slug.back() != '-') slug += '-';
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return slug.empty() ? "unknown-cpu" : slug;
}

fs::path cache_dir() {
  if (const char* d = std::getenv("SWITCHYARD_CACHE"); d && *d) return fs::path(d) / "kernels";
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return fs::path(d) / "switchyard" / "kernels";
  if (const char* d = std::getenv("HOME"); d && *d) return fs::path(d) / ".cache" / "switchyard" / "kernels";
  return {};
}

// The cache file's choices ({} when missing or unreadable: the cache is best-effort).
nlohmann::json read_cache(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return nlohmann::json::object();
  try {
    nlohmann::json j = nlohmann::json::parse(read_file(file), nullptr, false);
    if (j.is_object() && j.contains("choices") && j["choices"].is_object()) return j["choices"];
  } catch (const std::exception&) {
  }
  return nlohmann::json::object();
}

// Holds an exclusive lock on `file`.lock while it lives (no lock when the file cannot be opened).
class CacheLock {
 public:
  explicit CacheLock(const fs::path& file) {
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    fd_ = ::open((file.string() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~CacheLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  CacheLock(const CacheLock&) = delete;
  CacheLock& operator=(const CacheLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace

ProbeMode probe_mode() {
  State& s = state();
  {
    std::lock_guard<std::mutex> g(s.mu);
    if (s.mode) return *s.mode;
  }
  const char* v = std::getenv("SY_KERNEL_PROBE");
  const std::string text = v ? v : "";
  ProbeMode m;
  if (text.empty() || text == "auto") m = ProbeMode::auto_;
  else if (text == "reprobe") m = ProbeMode::reprobe;
  else if (text == "off") m = ProbeMode::off;
  else throw InputError(fmt::format("SY_KERNEL_PROBE={}: not a probe mode; allowed: auto, reprobe, off", text));
  std::lock_guard<std::mutex> g(s.mu);
  s.mode = m;
  return m;
}

void set_probe_mode(ProbeMode mode) {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  s.mode = mode;
}

std::string kernel_cache_file(int threads) {
  const fs::path dir = cache_dir();
  if (dir.empty()) return "";
  return (dir / fmt::format("{}-t{}.json", cpu_slug(), threads)).string();
}

Bf16Path choose_bf16_path(const std::string& shape, int threads, const std::function<EinsumKernel::PathTimes()>& probe) {
  const ProbeMode mode = probe_mode();
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  const std::string key = fmt::format("{} @{} threads", shape, threads);
  if (auto it = s.index.find(key); it != s.index.end()) return s.choices[it->second].path;
  KernelChoice c;
  c.shape = shape;
  if (mode == ProbeMode::off) {
    c.source = "off";
  } else {
    const std::string file = kernel_cache_file(threads);
    std::optional<CacheLock> lock;
    if (!file.empty()) lock.emplace(file);
    nlohmann::json cached = file.empty() ? nlohmann::json::object() : read_cache(file);
    const nlohmann::json* hit = mode == ProbeMode::auto_ && cached.contains(shape) ? &cached[shape] : nullptr;
    if (hit && hit->is_object() && hit->value("path", "") != "") {
      c.path = hit->value("path", "") == "widened" ? Bf16Path::widened : Bf16Path::native;
      c.native_s = hit->value("native_s", 0.0);
      c.widened_s = hit->value("widened_s", 0.0);
      c.source = "cache";
    } else {
      const EinsumKernel::PathTimes t = probe();
      c.native_s = t.native_s;
      c.widened_s = t.widened_s;
      c.path = t.native_s > 0 && t.widened_s > 0 && t.widened_s < kWidenedMargin * t.native_s ? Bf16Path::widened
                                                                                               : Bf16Path::native;
      c.source = "probed";
      if (!file.empty()) {
        cached[shape] = {{"path", path_name(c.path)}, {"native_s", c.native_s}, {"widened_s", c.widened_s}};
        const nlohmann::json doc = {{"cpu", cpu_slug()}, {"threads", threads}, {"choices", cached}};
        try {
          write_file_atomic(file, doc.dump(1) + "\n");
        } catch (const std::exception&) {  // best-effort: the choice stays in this process
        }
      }
    }
  }
  s.index[key] = s.choices.size();
  s.choices.push_back(c);
  return c.path;
}

std::vector<KernelChoice> kernel_choices() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  return s.choices;
}

void forget_kernel_choices() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.mu);
  s.index.clear();
  s.choices.clear();
  s.mode.reset();
}

}  // namespace sy::exec
