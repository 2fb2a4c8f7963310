// Mesh and layout strings (graph/parallel/mesh.hpp parse_mesh, layout.hpp parse_layout and
// check_layout): the first input line is --mesh, the rest --layout, checked against a fixed graph
// (experiments/graphs/mlp.json: dims batch, d_model, d_ff). A mesh that parses must print
// (to_string) as text that parses to the same mesh; likewise a layout.
#include "graph/json.hpp"
#include "graph/parallel/layout.hpp"
#include "graph/parallel/mesh.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <cstdio>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sy::Graph graph = sy::load_graph(SY_SOURCE_DIR "/experiments/graphs/mlp.json");
  const std::pair<std::string_view, std::string_view> lines = sy::fuzz::split_once(sy::fuzz::as_text(data, size), '\n');
  const std::string_view mesh_text = lines.first, layout_text = lines.second;
  sy::fuzz::expect_input_error_only([&] {
    const sy::Mesh mesh = sy::parse_mesh(mesh_text);
    (void)mesh.devices();  // what every tool asks next
    if (!(sy::parse_mesh(sy::to_string(mesh)) == mesh)) {
      std::fprintf(stderr, "mesh '%s' does not round-trip\n", sy::to_string(mesh).c_str());
      std::abort();
    }
    const sy::Layout layout = sy::parse_layout(layout_text, mesh);
    if (sy::to_string(sy::parse_layout(sy::to_string(layout), mesh)) != sy::to_string(layout)) {
      std::fprintf(stderr, "layout '%s' does not round-trip\n", sy::to_string(layout).c_str());
      std::abort();
    }
    sy::check_layout(graph, mesh, layout);
  });
  return 0;
}
