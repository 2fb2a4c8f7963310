// Zero tails of a value: which rows of its storage are zero by construction. Private to executor/
// (and calibrate, which makes tails to time the ragged all-to-all: executor/mpi/ragged_all_to_all.hpp).
//
// MoE expert buffers [E, G, C, D] fill their capacity slots in order (graph/models/moe.cpp gives a
// choice the slot of an exclusive cumsum), so block (e, g) holds its count[e, g] routed rows and
// then zeros. Under moe.dropless the capacity is the group size S, so with 8 experts and top-2 three
// quarters of every expert buffer are such zeros. The executor keeps, per value and run, where the
// zeros start, and runs the expert computation on the rows before them only (executor/ragged_rows.hpp):
// the graph stays the one the simulator prices, with capacity-shaped buffers, and the work is that
// of the routed rows (what the simulator's ragged pricing, simulator/load_skew.hpp, assumes).
#pragma once

#include "graph/shape.hpp"

#include <cstdint>
#include <optional>
#include <vector>

namespace sy::exec {

// Row extents are rounded up to this in the matmuls over tails, so a step meets few distinct
// matmul shapes (oneDNN's primitive cache serves the rest).
inline constexpr int64_t kTailRound = 64;

// A value's storage viewed as [outer, rows, inner] (row-major): in block o, rows r >= extent[o]
// are zero. Storage holds those zeros for rows below zeroed[o] (zeroed[o] >= extent[o]); the rows
// from zeroed[o] on are unspecified until the value is materialised (zero-filled) for a reader
// that does not know tails.
struct RowTails {
  int64_t outer = 0, rows = 0, inner = 0;
  std::vector<int64_t> extent;  // per block
  std::vector<int64_t> zeroed;  // per block

  bool valid() const { return outer > 0; }
  bool same_blocks(const RowTails& o) const { return outer == o.outer && rows == o.rows && inner == o.inner; }
  bool fully_zeroed() const {
    for (int64_t z : zeroed)
      if (z < rows) return false;
    return true;
  }
};

// The dim of `shape` whose entries are t's rows: the dims after it hold t.inner elements, the dims
// before it t.outer blocks. nullopt when no dim fits.
inline std::optional<size_t> tail_axis(const Shape& shape, const RowTails& t) {
  int64_t inner = 1;
  size_t a = shape.size();
  while (a > 0 && inner < t.inner) inner *= shape[--a].size;
  if (inner != t.inner || a == 0) return std::nullopt;
  --a;
  if (shape[a].size != t.rows) return std::nullopt;
  int64_t outer = 1;
  for (size_t i = 0; i < a; ++i) outer *= shape[i].size;
  if (outer != t.outer) return std::nullopt;
  return a;
}

}  // namespace sy::exec
