// The unit tests' main. Kernel choices probed by the tests (executor/kernel_choice.hpp) are cached
// in the build tree, build/kernel_cache, not in the user's ~/.cache, unless SWITCHYARD_CACHE says
// otherwise (the CLI and MPI tests get the same directory from tests/CMakeLists.txt).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>

int main(int argc, char** argv) {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);  // build/bin/sy_tests
  if (!ec && std::getenv("SWITCHYARD_CACHE") == nullptr)
    ::setenv("SWITCHYARD_CACHE", (exe.parent_path().parent_path() / "kernel_cache").c_str(), 1);
  return Catch::Session().run(argc, argv);
}
