#include "graph/dot.hpp"

#include "graph/error.hpp"
#include "graph/op_def.hpp"

#include <fmt/format.h>
#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <mutex>
#include <string_view>
#include <vector>

namespace sy {
namespace {

// Inside a DOT double-quoted string: escape quotes and backslashes.
std::string quoted(std::string_view s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r + "\"";
}

// A DOT label: quoted, with '\n' turned into DOT's centred line break "\n".
std::string label_text(std::string_view s) {
  std::string q = quoted(s), r;
  for (char c : q) r += c == '\n' ? std::string("\\n") : std::string(1, c);
  return r;
}

// Light fills, one per op class (ColorBrewer pastel).
const char* fill_colour(OpClass c) {
  switch (c) {
    case OpClass::matmul: return "#fbb4ae";
    case OpClass::elementwise: return "#b3cde3";
    case OpClass::reduction: return "#ccebc5";
    case OpClass::index: return "#decbe4";
    case OpClass::layout: return "#fed9a6";
  }
  return "#ffffff";
}

// A tree of scopes: cluster 0 is the root (the graph itself, no subgraph).
struct Cluster {
  std::string name;               // last path component, "ffn"
  std::vector<size_t> children;   // cluster indices, first-appearance order
  std::vector<std::string> lines;  // DOT statements of the nodes inside
};

// Index of the cluster for scope path "a/b/c", creating clusters on the way.
size_t cluster_of(std::vector<Cluster>& cs, std::string_view path) {
  size_t at = 0;
  while (!path.empty()) {
    const size_t slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (part.empty()) continue;
    size_t found = 0;
    for (size_t c : cs[at].children)
      if (cs[c].name == part) found = c;
    if (found == 0) {
      cs.push_back(Cluster{std::string(part), {}, {}});
      found = cs.size() - 1;
      cs[at].children.push_back(found);
    }
    at = found;
  }
  return at;
}

void emit_cluster(const std::vector<Cluster>& cs, size_t c, int depth, std::string& out) {
  const std::string pad(static_cast<size_t>(2 * depth), ' ');
  const bool root = c == 0;
  if (!root) {
    out += fmt::format("{}subgraph cluster_{} {{\n", pad, c);
    out += fmt::format("{}  label={}; style=rounded; color=\"#888888\";\n", pad, quoted(cs[c].name));
  }
  const std::string inner = root ? pad : pad + "  ";
  for (const std::string& l : cs[c].lines) out += inner + l + "\n";
  for (size_t child : cs[c].children) emit_cluster(cs, child, root ? depth : depth + 1, out);
  if (!root) out += pad + "}\n";
}

std::string leaf_scope(const Value& v) {
  const size_t slash = v.name.rfind('/');
  return slash == std::string::npos ? std::string() : v.name.substr(0, slash);
}

// Collects Graphviz's error and warning messages (instead of printing them on stderr) while alive.
std::string* g_graphviz_messages = nullptr;
int collect_graphviz_message(char* msg) {
  if (g_graphviz_messages != nullptr) *g_graphviz_messages += msg;
  return 0;
}
struct GraphvizMessages {
  std::string text;
  agusererrf previous;
  GraphvizMessages() : previous(agseterrf(collect_graphviz_message)) { g_graphviz_messages = &text; }
  ~GraphvizMessages() {
    agseterrf(previous);
    g_graphviz_messages = nullptr;
  }
  GraphvizMessages(const GraphvizMessages&) = delete;
  GraphvizMessages& operator=(const GraphvizMessages&) = delete;
  // The messages on one line, without Graphviz's "Error: " prefixes.
  std::string oneline() const {
    std::string r;
    for (size_t i = 0; i < text.size(); ++i) r += text[i] == '\n' ? ' ' : text[i];
    for (size_t p; (p = r.find("Error: ")) != std::string::npos;) r.erase(p, 7);
    while (!r.empty() && r.back() == ' ') r.pop_back();
    return r;
  }
};

// One Graphviz context for the whole process, never freed: Graphviz 2.42's pango text-layout
// plugin caches a pointer to the last font name, which lives in the context's font dictionary,
// so freeing a context and creating another one reads freed memory (seen under AddressSanitizer).
GVC_t* graphviz_context() {
  static GVC_t* const gvc = gvContext();
  return gvc;
}

// Graphviz keeps global state (error handler, parser): one rendering at a time.
std::mutex g_graphviz_mutex;

}  // namespace

std::string to_dot(const Graph& g) {
  std::vector<Cluster> cs(1);
  for (const Value& v : g.values) {
    if (v.role == ValueRole::computed) continue;
    const std::string label = fmt::format("{}\n{}", v.name, to_string(v.type));
    const char* fill = v.role == ValueRole::parameter ? "#ffffcc" : "#ffffff";
    cs[cluster_of(cs, leaf_scope(v))].lines.push_back(
        fmt::format("v{} [label={}, shape=ellipse, style=filled, fillcolor=\"{}\"];", v.id.v, label_text(label), fill));
  }
  for (const Node& n : g.nodes) {
    std::string label(op_name(n.kind));
    for (ValueId out : n.outputs) {
      label += fmt::format("\n{}", to_string(g.type(out)));
      for (const GraphOutput& o : g.outputs)
        if (o.value == out) label += fmt::format(" -> {}", o.name);
    }
    cs[cluster_of(cs, n.scope)].lines.push_back(fmt::format(
        "n{} [label={}, shape=box, style=\"{}\", fillcolor=\"{}\"];", n.id.v, label_text(label), n.backward ? "filled,dashed" : "filled",
        fill_colour(op_def(n.kind).op_class)));
  }

  std::string out = "digraph switchyard {\n";
  out += "  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [color=\"#555555\"];\n";
  emit_cluster(cs, 0, 1, out);
  for (const Node& n : g.nodes)
    for (ValueId in : n.inputs) {
      const Value& v = g.value(in);
      if (v.producer.valid())
        out += fmt::format("  n{} -> n{};\n", v.producer.v, n.id.v);
      else
        out += fmt::format("  v{} -> n{};\n", v.id.v, n.id.v);
    }
  return out + "}\n";
}

std::string render_svg(const std::string& dot) {
  std::lock_guard<std::mutex> lock(g_graphviz_mutex);
  GraphvizMessages messages;
  GVC_t* gvc = graphviz_context();
  SY_CHECK(gvc != nullptr, "render_svg: gvContext() failed");
  Agraph_t* graph = agmemread(dot.c_str());
  if (graph == nullptr)
    throw InputError(fmt::format("render_svg: the DOT text does not parse: {}", messages.oneline()));
  if (gvLayout(gvc, graph, "dot") != 0) {
    agclose(graph);
    throw InternalError(fmt::format("render_svg: Graphviz could not lay the graph out with \"dot\" (layout plugin "
                                    "missing?): {}",
                                    messages.oneline()));
  }
  char* data = nullptr;
  unsigned int length = 0;
  const int rc = gvRenderData(gvc, graph, "svg", &data, &length);
  std::string svg;
  if (rc == 0 && data != nullptr) svg.assign(data, length);
  if (data != nullptr) gvFreeRenderData(data);
  gvFreeLayout(gvc, graph);
  agclose(graph);
  if (rc != 0)
    throw InternalError(
        fmt::format("render_svg: Graphviz could not render SVG (render plugin missing?): {}", messages.oneline()));
  return svg;
}

}  // namespace sy

// LeakSanitizer (the debug preset) reports allocations that Graphviz 2.42's dot layout and its
// font stack never free, and the one process-wide context above; none are ours to fix. The
// sanitizer runtime calls this hook, if defined, for built-in suppressions; without a sanitizer
// it is never called.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libgvc.so\n"
         "leak:libgvplugin_\n"
         "leak:libcgraph.so\n"
         "leak:libcdt.so\n"
         "leak:libfontconfig.so\n"
         "leak:libpango\n"
         "leak:libcairo.so\n"
         "leak:libglib-2.0.so\n"
         "leak:libgobject-2.0.so\n"
         "leak:libharfbuzz.so\n"
         "leak:libfreetype.so\n";
}
