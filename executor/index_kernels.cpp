#include "executor/index_kernels.hpp"

#include "executor/float_storage.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace sy::exec {
namespace {

using Range = tbb::blocked_range<int64_t>;

// Rows per TBB task when each row holds `row` elements: about 16K elements per task.
int64_t row_grain(int64_t row) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, row)); }

// True iff every one of the n ids is in [0, rows).
bool ids_in_range(const int32_t* id, int64_t n, int64_t rows) {
  for (int64_t i = 0; i < n; ++i)
    if (id[i] < 0 || id[i] >= rows) return false;
  return true;
}

// acc[k] += x[k] for k < n (x widened to double).
template <typename T>
void add_row(double* acc, const T* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) acc[k] += static_cast<double>(ld(x, k));
}

}  // namespace

bool embedding(ConstView table, ConstView ids, View y) {
  if (!is_float(table.type.dtype) || table.type.dtype != y.type.dtype || ids.type.dtype != DType::i32 ||
      table.type.shape.size() != 2)
    return false;
  const int64_t V = table.type.shape[0].size, D = table.type.shape[1].size;
  const int64_t n = num_elements(ids.type.shape);
  const auto* id = static_cast<const int32_t*>(ids.data);
  if (!ids_in_range(id, n, V)) return false;
  const size_t row_bytes = static_cast<size_t>(D * dtype_bytes(y.type.dtype));
  const auto* src = static_cast<const std::byte*>(table.data);
  auto* dst = static_cast<std::byte*>(y.data);
  tbb::parallel_for(Range(0, n, row_grain(D)), [&](const Range& r) {
    for (int64_t i = r.begin(); i < r.end(); ++i)
      std::memcpy(dst + static_cast<size_t>(i) * row_bytes, src + static_cast<size_t>(id[i]) * row_bytes, row_bytes);
  });
  return true;
}

bool embedding_grad(ConstView ids, ConstView dy, View y) {
  if (ids.type.dtype != DType::i32 || !is_float(dy.type.dtype) || dy.type.dtype != y.type.dtype ||
      y.type.shape.size() != 2)
    return false;
  const int64_t V = y.type.shape[0].size, D = y.type.shape[1].size;
  const int64_t n = num_elements(ids.type.shape);
  const auto* id = static_cast<const int32_t*>(ids.data);
  if (!ids_in_range(id, n, V)) return false;
  // Tokens bucketed by id, in token order within a bucket: tokens of row v are
  // order[first[v] .. first[v + 1]).
  std::vector<int64_t> first(static_cast<size_t>(V + 1), 0), order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ++first[static_cast<size_t>(id[i]) + 1];
  for (int64_t v = 0; v < V; ++v) first[static_cast<size_t>(v + 1)] += first[static_cast<size_t>(v)];
  {
    std::vector<int64_t> next(first.begin(), first.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(next[static_cast<size_t>(id[i])]++)] = i;
  }
  visit_float(y.type.dtype, [&](auto* tag) {
    using T = Storage<decltype(tag)>;
    const T* g = static_cast<const T*>(dy.data);
    T* out = static_cast<T*>(y.data);
    tbb::parallel_for(Range(0, V, row_grain(D)), [&](const Range& r) {
      std::vector<double> acc(static_cast<size_t>(D));
      for (int64_t v = r.begin(); v < r.end(); ++v) {
        T* row = out + v * D;
        const int64_t b = first[static_cast<size_t>(v)], e = first[static_cast<size_t>(v + 1)];
        if (b == e) {
          std::memset(row, 0, static_cast<size_t>(D) * sizeof(T));
          continue;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = b; j < e; ++j) add_row(acc.data(), g + order[static_cast<size_t>(j)] * D, D);
        for (int64_t k = 0; k < D; ++k) st(row, k, static_cast<float>(acc[static_cast<size_t>(k)]));
      }
    });
  });
  return true;
}

}  // namespace sy::exec
