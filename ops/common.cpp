#include "ops/common.hpp"

#include <algorithm>

namespace sy::ops {

void expect_valid_shape(const Shape& s, const char* what) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].name.empty()) fail("{}: dim {} of {} has an empty name", what, i, to_string(s));
    if (s[i].size <= 0) fail("{}: dim '{}' has size {} (must be positive)", what, s[i].name, s[i].size);
    for (size_t j = 0; j < i; ++j)
      if (s[j].name == s[i].name) fail("{}: dim '{}' appears twice in {}", what, s[i].name, to_string(s));
  }
}

std::vector<int64_t> project_index(const Shape& full, const Shape& sub) {
  const auto sub_strides = strides_of(sub);
  std::vector<int64_t> stride_in_full(full.size(), 0);  // sub stride for each dim of full (0 if absent)
  for (size_t i = 0; i < full.size(); ++i)
    if (auto j = dim_index(sub, full[i].name)) stride_in_full[i] = sub_strides[*j];
  const int64_t n = num_elements(full);
  std::vector<int64_t> out(static_cast<size_t>(n));
  std::vector<int64_t> idx(full.size(), 0);
  int64_t off = 0;
  for (int64_t e = 0; e < n; ++e) {
    out[static_cast<size_t>(e)] = off;
    for (size_t d = full.size(); d-- > 0;) {  // increment the multi-index
      if (++idx[d] < full[d].size) {
        off += stride_in_full[d];
        break;
      }
      off -= stride_in_full[d] * (full[d].size - 1);
      idx[d] = 0;
    }
  }
  return out;
}

Shape drop_dims(const Shape& s, const std::vector<std::string>& drop) {
  Shape r;
  for (const Dim& d : s)
    if (std::find(drop.begin(), drop.end(), d.name) == drop.end()) r.push_back(d);
  return r;
}

OpCost streaming_cost(const std::vector<TensorType>& in, const std::vector<TensorType>& out, double flops) {
  OpCost c;
  c.flops = flops;
  for (const TensorType& t : in) c.bytes_read += bytes(t);
  for (const TensorType& t : out) c.bytes_written += bytes(t);
  return c;
}

ValueId sum_to(Builder& b, ValueId g, Shape target) {
  Expr e = b.wrap(g);
  std::vector<std::string> extra;
  for (const Dim& d : e.shape())
    if (!has_dim(target, d.name)) extra.push_back(d.name);
  if (!extra.empty()) e = sum(e, extra);
  if (e.shape() != target) {
    std::vector<std::string> order;
    for (const Dim& d : target) order.push_back(d.name);
    e = transpose(e, order);
  }
  return e.id;
}

}  // namespace sy::ops
