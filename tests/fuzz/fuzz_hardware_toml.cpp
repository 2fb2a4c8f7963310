// Hardware spec TOML (simulator/hardware.hpp parse_hardware): the input is the file. A spec that
// parses is written back (to_toml, what calibrate writes) and that text must parse to the same
// TOML again: a spec the tools write and cannot read back is a fault.
#include "simulator/hardware.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <cstdio>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sy::fuzz::expect_input_error_only([&] {
    const sy::HardwareSpec hw = sy::parse_hardware(sy::fuzz::as_text(data, size), "fuzz.toml");
    const std::string text = sy::to_toml(hw);
    std::string again;
    try {
      again = sy::to_toml(sy::parse_hardware(text, "to_toml(fuzz.toml)"));
    } catch (const sy::InputError& e) {
      std::fprintf(stderr, "to_toml output does not parse: %s\n%s", e.what(), text.c_str());
      std::abort();
    }
    if (again != text) {
      std::fprintf(stderr, "to_toml is not stable:\n%s---\n%s", text.c_str(), again.c_str());
      std::abort();
    }
  });
  return 0;
}
