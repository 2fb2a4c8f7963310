#include "experiments/calibrate/timing.hpp"

#include <algorithm>
#include <chrono>

namespace sy::timing {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

void stream_through(std::vector<float>& buffer, float stamp) {
  for (float& x : buffer) x += stamp;
}

CollectiveNode node_for(const Communicator& comm, const std::string& kind, int64_t bytes) {
  const MeshAxis& m = comm.mesh().axes.at(0);
  const Dim axis{m.name, m.size};
  const int64_t v = std::max<int64_t>(2, bytes / 4 / 2 * 2);  // f32 elements of V, even
  const std::string x = "x", y = "y";  // named, not literals (GCC 12's -Werror=restrict false positive)
  CollectiveNode n;
  n.attrs.axes = {axis};
  if (kind == "all_gather") {
    n.kind = OpKind::all_gather;
    n.attrs.gather_dim = x;
    n.in = TensorType{{{"x", v / 2}}, DType::f32};
    n.out = TensorType{{{"x", v}}, DType::f32};
  } else if (kind == "all_to_all") {
    n.kind = OpKind::all_to_all;
    n.attrs.gather_dim = y;
    n.attrs.scatter_dim = x;
    n.in = TensorType{{{x, 2}, {y, v / 2}}, DType::f32};
    n.out = TensorType{{{x, 1}, {y, v}}, DType::f32};
  } else if (kind == "reduce_scatter") {
    n.kind = OpKind::reduce_scatter;
    n.attrs.scatter_dim = x;
    n.in = TensorType{{{"x", v}}, DType::f32};
    n.out = TensorType{{{"x", v / 2}}, DType::f32};
  } else {
    n.kind = OpKind::all_reduce;
    n.in = n.out = TensorType{{{"x", v}}, DType::f32};
  }
  return n;
}

OpKind kind_of(const std::string& kind) {
  return kind == "all_gather" ? OpKind::all_gather : kind == "all_to_all" ? OpKind::all_to_all
                                                   : kind == "reduce_scatter" ? OpKind::reduce_scatter
                                                                              : OpKind::all_reduce;
}

}  // namespace sy::timing
