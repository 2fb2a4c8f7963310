// Graph <-> JSON (nlohmann). The file format, version 1:
//
//   {
//     "format": "switchyard.graph",
//     "version": 1,
//     "values": [                      one per value, index = id
//       {"id":0,"name":"x","role":"input","dtype":"f32","shape":[["batch",4],["d_model",8]],
//        "producer":null,"output_index":0,"grad_of":null}, ...],
//     "nodes": [                       one per node, topological order, index = id
//       {"id":0,"op":"einsum","attrs":{"out":["batch","d_ff"]},"inputs":[0,1],"outputs":[2],
//        "scope":"ffn","backward":false}, ...],
//     "outputs": [{"name":"loss","value":12}, ...],
//     "loss": 12                       or null
//   }
//
// Dims are [name, size] pairs. Attributes are an object with one key per field of the op's
// attribute struct (graph/attrs.hpp); ops without attributes have "attrs": {}. Every key is
// required and no other key is allowed. Files are written with one value/node per line, so a
// save -> load -> save round trip is byte-identical and diffs read well.
//
// Loading checks everything (JSON syntax, keys, types, op and dtype names) and throws
// sy::InputError naming the source, the value/node index and the key; then it runs verify().
#pragma once

#include "graph/file_io.hpp"

#include "graph/ir.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace sy {

// Key order is kept as written (format, version, values, ...).
using Json = nlohmann::ordered_json;

inline constexpr std::string_view kGraphFormat = "switchyard.graph";
inline constexpr int kGraphFormatVersion = 1;

Json to_json(const Graph& g);
// The file text: the JSON above, one value/node/output per line, ending in a newline.
std::string graph_to_text(const Graph& g);

// One op's attributes as a JSON object (one key per field of its struct), and back. Errors name
// `source_name` and the key ("attrs.factor").
Json attrs_to_json(const Attrs& a);
Attrs attrs_from_json(OpKind kind, const Json& j, std::string_view source_name);

// `source_name` (a file name, or e.g. "<test>") prefixes every error message.
Graph graph_from_json(const Json& j, std::string_view source_name);
Graph graph_from_text(std::string_view text, std::string_view source_name);

// Writes graph_to_text(g) atomically (write_file_atomic).
void save_graph(const Graph& g, const std::string& path);
// Reads, parses and verifies; errors name `path`.
Graph load_graph(const std::string& path);


}  // namespace sy
