#include "graph/parallel/collective_blocks.hpp"

#include "graph/error.hpp"

namespace sy {

Slabs slabs_at(const TensorType& t, const std::string& dim) {
  const auto p = dim_index(t.shape, dim);
  SY_CHECK(p.has_value(), "collective: '{}' is not a dim of {}", dim, to_string(t));
  Slabs s;
  s.slab_bytes = dtype_bytes(t.dtype);
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (i < *p)
      s.outer *= t.shape[i].size;
    else
      s.slab_bytes *= t.shape[i].size;
  }
  return s;
}

StagingBytes staging_bytes(OpKind kind, const CollectiveAttrs& a, const TensorType& in, int64_t n) {
  StagingBytes b;
  if (n <= 1) return b;
  const int64_t in_bytes = num_elements(in.shape) * dtype_bytes(in.dtype);
  switch (kind) {
    case OpKind::all_reduce:  // the library reduces in place: the input is copied into the output first
      b.pack = in_bytes;
      break;
    case OpKind::all_gather:  // the members' blocks arrive [n][outer][slab]
      if (slabs_at(in, a.gather_dim).outer != 1) b.unpack = n * in_bytes;
      break;
    case OpKind::reduce_scatter:  // the blocks to reduce leave [n][outer][slab/n]
      if (slabs_at(in, a.scatter_dim).outer != 1) b.pack = in_bytes;
      break;
    case OpKind::all_to_all: {  // blocks along scatter_dim leave packed; received blocks concatenate along gather_dim
      if (slabs_at(in, a.scatter_dim).outer != 1) b.pack = in_bytes;
      TensorType block = in;
      for (Dim& d : block.shape)
        if (d.name == a.scatter_dim) d.size /= n;
      if (slabs_at(block, a.gather_dim).outer != 1) b.unpack = in_bytes;
      break;
    }
    default: break;
  }
  return b;
}

}  // namespace sy
