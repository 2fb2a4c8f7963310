// Graph JSON (graph/json.hpp graph_from_text, which verifies the graph): the input is the file. A
// graph that loads is written back (graph_to_text) and that text must load to the same text.
#include "graph/json.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <cstdio>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sy::fuzz::expect_input_error_only([&] {
    const sy::Graph g = sy::graph_from_text(sy::fuzz::as_text(data, size), "fuzz.json");
    const std::string text = sy::graph_to_text(g);
    std::string again;
    try {
      again = sy::graph_to_text(sy::graph_from_text(text, "graph_to_text(fuzz.json)"));
    } catch (const sy::InputError& e) {
      std::fprintf(stderr, "graph_to_text output does not load: %s\n", e.what());
      std::abort();
    }
    if (again != text) {
      std::fprintf(stderr, "graph_to_text is not stable\n");
      std::abort();
    }
  });
  return 0;
}
