// inspect: print the counts of a graph file or of a model config, optionally draw the graph.
//
//   inspect experiments/graphs/mlp.json                 node/value counts, parameters, FLOPs
//   inspect experiments/graphs/mlp.json --dot mlp.svg   also the Graphviz drawing (.svg or .dot)
//   inspect experiments/configs/models/st_moe_32b.toml  total/active parameters, FLOPs per token
//                                                       and per sequence, split by component
//   inspect MODEL.toml --set moe.cf_train=2 --json      overrides; the counts as JSON on stdout
//
// Bad input (missing file, malformed JSON or TOML, bad id, cycle, shape mismatch, unknown key)
// prints one message naming the file, the node or key and the problem on stderr, exits 2, and
// writes nothing.
#include "graph/models/count.hpp"
#include "graph/dot.hpp"
#include "graph/error.hpp"
#include "graph/json.hpp"
#include "graph/models/model_stats.hpp"

#include "experiments/tool/tool_main.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <iostream>
#include <string>

namespace {

void print_text(const std::string& path, const sy::GraphCounts& c) {
  fmt::print("graph          {}\n", path);
  fmt::print("nodes          {} ({} forward, {} backward)\n", c.nodes, c.forward_nodes, c.backward_nodes);
  fmt::print("values         {} ({} inputs, {} parameter tensors)\n", c.values, c.inputs, c.parameter_tensors);
  fmt::print("parameters     {}\n", c.parameters);
  fmt::print("forward FLOPs  {:.0f}\n", c.forward_flops);
  fmt::print("total FLOPs    {:.0f}\n", c.total_flops);
  fmt::print("\n{:<16} {:>8} {:>12} {:>16} {:>16}\n", "scope", "nodes", "parameters", "forward FLOPs", "total FLOPs");
  for (const sy::ScopeCounts& s : c.by_scope)
    fmt::print("{:<16} {:>8} {:>12} {:>16.0f} {:>16.0f}\n", s.scope.empty() ? "(root)" : s.scope, s.nodes, s.parameters,
               s.forward_flops, s.total_flops);
}

sy::Json counts_json(const std::string& path, const sy::GraphCounts& c) {
  sy::Json scopes = sy::Json::array();
  for (const sy::ScopeCounts& s : c.by_scope)
    scopes.push_back({{"scope", s.scope},
                      {"nodes", s.nodes},
                      {"parameters", s.parameters},
                      {"forward_flops", s.forward_flops},
                      {"total_flops", s.total_flops}});
  return {{"graph", path},
          {"nodes", c.nodes},
          {"forward_nodes", c.forward_nodes},
          {"backward_nodes", c.backward_nodes},
          {"values", c.values},
          {"inputs", c.inputs},
          {"parameter_tensors", c.parameter_tensors},
          {"parameters", c.parameters},
          {"forward_flops", c.forward_flops},
          {"total_flops", c.total_flops},
          {"by_scope", scopes}};
}

}  // namespace

int main(int argc, char** argv) {
  return sy::tool_main("inspect", [&] {
    CLI::App app{"inspect: print the counts of a Switchyard graph file (.json) or model config (.toml)"};
    std::string graph_path, dot_path;
    std::vector<std::string> overrides;
    bool as_json = false, eval = false, forward_only = false;
    app.add_option("file", graph_path, "graph file (.json, as written by save_graph) or model config (.toml)")->required();
    app.add_option("--dot", dot_path, "also draw the graph: SVG via Graphviz, or DOT text if the name ends in .dot");
    app.add_flag("--json", as_json, "print the counts as JSON instead of a table");
    app.add_option("--set", overrides, "model config override key=value (repeatable), e.g. moe.cf_train=2");
    app.add_flag("--eval", eval, "model config: count the eval graph (eval capacity factor, no dropout)");
    app.add_flag("--forward-only", forward_only, "model config: skip the backward pass (faster for huge models)");
    sy::parse_command_line(app, argc, argv);

    const bool want_dot_text = dot_path.ends_with(".dot");
    if (!dot_path.empty() && !want_dot_text && !dot_path.ends_with(".svg"))
      throw sy::InputError(fmt::format("--dot {}: the file name must end in .svg (Graphviz drawing) or .dot (DOT text)",
                                       dot_path));
    if (graph_path.ends_with(".toml")) {
      const sy::RunConfig cfg = sy::load_run_config(graph_path, overrides);
      sy::StatsOptions opts;
      opts.mode = eval ? sy::Mode::eval : sy::Mode::train;
      opts.training = !forward_only;
      const sy::ModelStats stats = sy::model_stats(cfg.model, cfg.train, opts);
      if (!dot_path.empty()) {
        sy::BuildOptions bo;
        bo.mode = opts.mode;
        const std::string dot = sy::to_dot(sy::build_model(cfg.model, cfg.train, bo).graph);
        sy::write_file_atomic(dot_path, want_dot_text ? dot : sy::render_svg(dot));
      }
      if (as_json)
        fmt::print("{}\n", sy::to_json(stats).dump(2));
      else
        fmt::print("{}", sy::format_model_stats(stats));
      return 0;
    }
    if (!overrides.empty() || eval || forward_only)
      throw sy::InputError(fmt::format("{}: --set, --eval and --forward-only apply to model configs (.toml) only", graph_path));
    const sy::Graph g = sy::load_graph(graph_path);  // verifies
    const sy::GraphCounts counts = sy::count_graph(g);
    if (!dot_path.empty()) {
      const std::string dot = sy::to_dot(g);
      sy::write_file_atomic(dot_path, want_dot_text ? dot : sy::render_svg(dot));
    }
    if (as_json)
      fmt::print("{}\n", counts_json(graph_path, counts).dump(2));
    else
      print_text(graph_path, counts);
    return 0;
  });
}
