// What every libFuzzer target here shares (tests/fuzz/README.md).
//
// A target feeds one parser the fuzzer's bytes. Bad input must end in sy::InputError (a tool
// prints it and exits 2): that is a normal outcome and returns. Anything else is a fault the
// fuzzer reports: another exception (uncaught, so libFuzzer aborts and saves the input), a
// sanitizer report (ASan, UBSan with -fno-sanitize-recover, LeakSanitizer), a crash, a timeout.
#pragma once

#include "graph/error.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>

namespace sy::fuzz {

// Runs `parse`; an InputError is the expected answer to bad input and is swallowed (printed when
// SY_FUZZ_VERBOSE is set, to see how far an input gets: build-fuzz/bin/fuzz_<target> FILE).
template <class F>
void expect_input_error_only(F&& parse) {
  static const bool verbose = std::getenv("SY_FUZZ_VERBOSE") != nullptr;
  try {
    parse();
    if (verbose) std::fprintf(stderr, "accepted\n");
  } catch (const sy::InputError& e) {
    if (verbose) std::fprintf(stderr, "InputError: %s\n", e.what());
  }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A private scratch directory for targets whose parser reads files: /tmp/sy_fuzz.<pid>, removed at
// exit. One process runs one input at a time, so a fixed name inside it is enough.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d = std::filesystem::temp_directory_path() / ("sy_fuzz." + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::temp_directory_path() / ("sy_fuzz." + std::to_string(::getpid())), ec);
    });
    return d;
  }();
  return dir;
}

inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) std::abort();  // the harness itself failed, not the parser
}

// Splits `text` at the first `sep`: {before, after}; after is empty when there is none.
inline std::pair<std::string_view, std::string_view> split_once(std::string_view text, char sep) {
  const size_t at = text.find(sep);
  if (at == std::string_view::npos) return {text, {}};
  return {text.substr(0, at), text.substr(at + 1)};
}

}  // namespace sy::fuzz
