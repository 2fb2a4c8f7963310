// Per-machine kernel choice (executor/kernel_choice.hpp): the policy with a stand-in probe (probed
// once per shape, cached on disk for the next process, re-probed on request, never probed when off,
// a corrupt cache ignored, a 5 % margin for native), and the real probe and both bf16 paths.
#include "exec_test_util.hpp"

#include "executor/kernel_choice.hpp"
#include "graph/file_io.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

namespace sy {
namespace {

namespace fs = std::filesystem;

// SWITCHYARD_CACHE pointed at a fresh directory while alive; the process's choices forgotten on
// entry and exit.
struct ScopedCache {
  fs::path dir;
  std::optional<std::string> old;
  ScopedCache() {
    dir = fs::temp_directory_path() / fmt::format("sy_kernel_choice_{}", ::getpid());
    fs::remove_all(dir);
    if (const char* v = std::getenv("SWITCHYARD_CACHE")) old = v;
    ::setenv("SWITCHYARD_CACHE", dir.c_str(), 1);
    exec::forget_kernel_choices();
  }
  ~ScopedCache() {
    if (old) ::setenv("SWITCHYARD_CACHE", old->c_str(), 1);
    else ::unsetenv("SWITCHYARD_CACHE");
    exec::forget_kernel_choices();
    fs::remove_all(dir);
  }
};

TEST_CASE("kernel choice: probed once per shape, cached for the next process, re-probed on request, off never probes",
          "[executor][kernel_choice]") {
  ScopedCache cache;
  int probes = 0;
  exec::EinsumKernel::PathTimes next{2.0, 1.0};  // widened twice as fast
  auto probe = [&] {
    ++probes;
    return next;
  };
  exec::set_probe_mode(exec::ProbeMode::auto_);
  CHECK(exec::choose_bf16_path("shape A", 2, probe) == exec::Bf16Path::widened);
  CHECK(exec::choose_bf16_path("shape A", 2, probe) == exec::Bf16Path::widened);
  CHECK(probes == 1);  // the process's own choice
  const std::string file = exec::kernel_cache_file(2);
  REQUIRE(fs::is_regular_file(file));
  CHECK(read_file(file).find("\"shape A\"") != std::string::npos);

  // Another process (choices forgotten) reads the cache: no probe, the same path.
  exec::forget_kernel_choices();
  exec::set_probe_mode(exec::ProbeMode::auto_);
  CHECK(exec::choose_bf16_path("shape A", 2, probe) == exec::Bf16Path::widened);
  CHECK(probes == 1);
  REQUIRE(exec::kernel_choices().size() == 1);
  CHECK(exec::kernel_choices()[0].source == "cache");
  CHECK(exec::kernel_choices()[0].native_s == 2.0);
  // Another thread count is another file: probed.
  CHECK(exec::choose_bf16_path("shape A", 1, probe) == exec::Bf16Path::widened);
  CHECK(probes == 2);

  // Re-probe: the machine changed its mind; the cache is overwritten.
  exec::forget_kernel_choices();
  exec::set_probe_mode(exec::ProbeMode::reprobe);
  next = {1.0, 2.0};
  CHECK(exec::choose_bf16_path("shape A", 2, probe) == exec::Bf16Path::native);
  CHECK(probes == 3);
  exec::forget_kernel_choices();
  exec::set_probe_mode(exec::ProbeMode::auto_);
  CHECK(exec::choose_bf16_path("shape A", 2, probe) == exec::Bf16Path::native);
  CHECK(probes == 3);

  // Within the 5 % margin native stays.
  next = {1.0, 0.96};
  CHECK(exec::choose_bf16_path("shape B", 2, probe) == exec::Bf16Path::native);
  next = {1.0, 0.94};
  CHECK(exec::choose_bf16_path("shape C", 2, probe) == exec::Bf16Path::widened);
  CHECK(probes == 5);

  // Off: never probes, native.
  exec::forget_kernel_choices();
  exec::set_probe_mode(exec::ProbeMode::off);
  CHECK(exec::choose_bf16_path("shape D", 2, probe) == exec::Bf16Path::native);
  CHECK(probes == 5);
  CHECK(exec::kernel_choices().at(0).source == "off");

  // A corrupt cache is ignored (probed again) and rewritten.
  exec::forget_kernel_choices();
  exec::set_probe_mode(exec::ProbeMode::auto_);
  write_file_atomic(file, "{not json");
  next = {2.0, 1.0};
  CHECK(exec::choose_bf16_path("shape A", 2, probe) == exec::Bf16Path::widened);
  CHECK(probes == 6);
  CHECK(read_file(file).find("\"shape A\"") != std::string::npos);
}

TEST_CASE("kernel choice: SY_KERNEL_PROBE is auto, reprobe or off; anything else is refused naming it",
          "[executor][kernel_choice]") {
  ScopedCache cache;
  ::setenv("SY_KERNEL_PROBE", "sometimes", 1);
  exec::forget_kernel_choices();
  CHECK_THROWS_WITH(exec::probe_mode(), Catch::Contains("SY_KERNEL_PROBE=sometimes") && Catch::Contains("auto, reprobe, off"));
  ::setenv("SY_KERNEL_PROBE", "off", 1);
  exec::forget_kernel_choices();
  CHECK(exec::probe_mode() == exec::ProbeMode::off);
  ::unsetenv("SY_KERNEL_PROBE");
  exec::forget_kernel_choices();
  CHECK(exec::probe_mode() == exec::ProbeMode::auto_);
}

TEST_CASE("kernel choice: the probe times both bf16 paths, and the widened einsum equals the native one",
          "[executor][kernel_choice]") {
  if (!exec::bf16_matmul_native()) {
    WARN("this CPU has no bf16 dot products: bf16 einsums are always widened, nothing to choose");
    return;
  }
  const TensorType a{{{"b", 2}, {"m", 70}, {"k", 96}}, DType::bf16};
  const TensorType w{{{"k", 96}, {"n", 33}}, DType::bf16};
  const TensorType out{{{"b", 2}, {"m", 70}, {"n", 33}}, DType::f32};
  const EinsumAttrs attrs{{"b", "m", "n"}};
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  const exec::EinsumKernel::PathTimes t = exec::EinsumKernel::time_bf16_paths(a, w, out, attrs, engine);
  CHECK(t.native_s > 0);
  CHECK(t.widened_s > 0);

  std::mt19937_64 rng(5);
  const Tensor ta = test::random_tensor(a, rng), tw = test::random_tensor(w, rng);
  auto run = [&](exec::Bf16Path path) {
    const auto k = exec::EinsumKernel::make(a, w, out, attrs, engine, path);
    REQUIRE(k.has_value());
    dnnl::stream stream(engine);
    auto ra = test::to_storage(ta), rw = test::to_storage(tw);
    std::vector<float> y(static_cast<size_t>(num_elements(out.shape)));
    std::array<std::vector<std::byte>, 3> ws;
    std::array<std::byte*, 3> wp{};
    for (size_t i = 0; i < 3; ++i) {
      ws[i].resize(static_cast<size_t>(k->workspace_bytes()[i]));
      wp[i] = ws[i].data();
    }
    k->run(ra.data(), rw.data(), y.data(), wp, stream);
    return y;
  };
  const std::vector<float> native = run(exec::Bf16Path::native), widened = run(exec::Bf16Path::widened);
  // Products of bf16 values are exact in f32 and both accumulate 96 of them in f32: only the order
  // of the additions differs, a few f32 roundings of sums of magnitude <= 96 (kTolEinsumF32).
  for (size_t i = 0; i < native.size(); ++i) CHECK(std::abs(native[i] - widened[i]) <= test::kTolEinsumF32 * 96);
}

}  // namespace
}  // namespace sy
