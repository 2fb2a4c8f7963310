// Collectives over mesh axes: the communication graph/lower inserts into the per-device program.
//
// N = the product of the sizes of the op's axes; the N devices of one collective group are ordered
// row-major over the axes as listed. Per device i of N (x is that device's local value):
//   all_reduce      y = reduce_j x_j (sum, mean or max)                   same shape
//   all_gather      y = concat_j x_j along gather_dim                     gather_dim × N
//   reduce_scatter  y = block i of (reduce_j x_j) along scatter_dim       scatter_dim / N
//   all_to_all      y = concat_j (block i of x_j along scatter_dim) along gather_dim
//                                                                         gather_dim × N, scatter_dim / N
//   shard_slice     y = block i of x along scatter_dim (no communication) scatter_dim / N
//
// Reference forward: one process is one device, so N must be 1, and then each op is the identity
// (what the conformance harness checks). The MPI executor runs them for N > 1.
//
// Backward (SPMD adjoints): all_reduce(sum|mean) -> the same all_reduce of dy; all_gather ->
// reduce_scatter(sum); reduce_scatter(sum) -> all_gather; all_to_all -> all_to_all with the two
// dims swapped; shard_slice -> all_gather (the input is replicated: its gradient is the
// concatenation of the blocks' gradients). max reductions have no adjoint over N > 1 devices.
//
// Cost (ring algorithms, as the α-β model of REFERENCE.md; L = bytes of the local input, E its
// elements), each kind's OpDef::collective_cost: its OpDef::cost applies it to the op's types, and
// lowering's planner calls it directly to price a resharding step before (or without) emitting it:
//   all_reduce      collective_bytes 2(N−1)/N·L (a reduce-scatter then an all-gather);
//                   flops (N−1)/N·E reduction adds (+ E divides for mean)
//   all_gather      collective_bytes (N−1)·L = (N−1)/N·V, V the bytes of the gathered array
//   reduce_scatter  collective_bytes (N−1)/N·L; flops (N−1)/N·E (+ E/N divides for mean)
//   all_to_all      collective_bytes (N−1)/N·L (each device keeps 1/N of its data)
//   shard_slice     collective_bytes 0
// Local bytes: the input read once and the output written once, except shard_slice, which reads
// only the block it keeps.
//
// Lowering: no roles (OpDef::roles is nullptr). Lowering inserts collectives and never splits one;
// a graph holding them is already lowered.
#include "ops/common.hpp"
#include "ops/defs.hpp"

#include <algorithm>
#include <cstring>

namespace sy::ops {
namespace {

int64_t group_size(const CollectiveAttrs& a) {
  int64_t n = 1;
  for (const Dim& ax : a.axes) n *= ax.size;
  return n;
}

std::string axes_text(const CollectiveAttrs& a) {
  std::string s;
  for (const Dim& ax : a.axes) s += fmt::format("{}{}:{}", s.empty() ? "" : ",", ax.name, ax.size);
  return s;
}

// Checks shared by every collective: one input, axes named once each with positive sizes, and the
// dims the kind uses (and only those) set.
void expect_collective(const std::vector<TensorType>& in, const CollectiveAttrs& a, bool gather, bool scatter) {
  expect_inputs(in, 1);
  if (a.axes.empty()) fail("no mesh axes given (a collective runs over one or more axes)");
  for (size_t i = 0; i < a.axes.size(); ++i) {
    if (a.axes[i].name.empty() || a.axes[i].size < 1)
      fail("mesh axis {} is '{}' of size {} (axes need a name and a size >= 1)", i, a.axes[i].name, a.axes[i].size);
    for (size_t j = 0; j < i; ++j)
      if (a.axes[j].name == a.axes[i].name) fail("mesh axis '{}' is listed twice", a.axes[i].name);
  }
  auto check_dim = [&](const std::string& d, bool used, const char* what) {
    if (!used && !d.empty()) fail("{} '{}' is set but this collective has none", what, d);
    if (used && !has_dim(in[0].shape, d)) fail("{} '{}' is not a dim of x {}", what, d, to_string(in[0]));
  };
  check_dim(a.gather_dim, gather, "gather_dim");
  check_dim(a.scatter_dim, scatter, "scatter_dim");
  if (gather && scatter && a.gather_dim == a.scatter_dim) fail("gather_dim and scatter_dim are both '{}'", a.gather_dim);
  if (scatter) {
    const int64_t size = in[0].shape[*dim_index(in[0].shape, a.scatter_dim)].size;
    if (size % group_size(a) != 0)
      fail("scatter_dim '{}' of size {} does not divide over the {} devices of axes {}", a.scatter_dim, size,
           group_size(a), axes_text(a));
  }
}

Shape resized(Shape s, const std::string& dim, int64_t mul, int64_t div) {
  for (Dim& d : s)
    if (d.name == dim) d.size = d.size * mul / div;
  return s;
}

// The reference forward: the identity on one device.
void identity_forward(const char* name, const Attrs& attrs, std::span<const Tensor* const> in,
                      std::span<Tensor* const> out) {
  const auto& a = std::get<CollectiveAttrs>(attrs);
  if (group_size(a) != 1)
    fail("{} over axes {} spans {} devices, but the reference forward runs one device (a single process): run the "
         "lowered program with the mesh executor",
         name, axes_text(a), group_size(a));
  out[0]->data = in[0]->data;
}

// ---- cost: each kind's OpDef::collective_cost (the formulas above; n devices, the local input's
// bytes L and elements E, the local output's bytes)

OpCost read_and_written(double in_bytes, double out_bytes) {
  OpCost c;
  c.bytes_read = in_bytes;
  c.bytes_written = out_bytes;
  return c;
}

OpCost all_reduce_cost(double n, ReduceOp reduce, double in_bytes, double in_elems, double out_bytes) {
  const double share = (n - 1.0) / n;  // of the data, the part that lives on other devices
  OpCost c = read_and_written(in_bytes, out_bytes);
  c.collective_bytes = 2.0 * share * in_bytes;
  c.flops = share * in_elems + (reduce == ReduceOp::mean ? in_elems : 0.0);
  return c;
}

OpCost all_gather_cost(double n, ReduceOp, double in_bytes, double, double out_bytes) {
  OpCost c = read_and_written(in_bytes, out_bytes);
  c.collective_bytes = (n - 1.0) * in_bytes;
  return c;
}

OpCost reduce_scatter_cost(double n, ReduceOp reduce, double in_bytes, double in_elems, double out_bytes) {
  const double share = (n - 1.0) / n;
  OpCost c = read_and_written(in_bytes, out_bytes);
  c.collective_bytes = share * in_bytes;
  c.flops = share * in_elems + (reduce == ReduceOp::mean ? in_elems / n : 0.0);
  return c;
}

OpCost all_to_all_cost(double n, ReduceOp, double in_bytes, double, double out_bytes) {
  const double share = (n - 1.0) / n;
  OpCost c = read_and_written(in_bytes, out_bytes);
  c.collective_bytes = share * in_bytes;
  return c;
}

OpCost shard_slice_cost(double, ReduceOp, double, double, double out_bytes) {
  return read_and_written(out_bytes, out_bytes);  // reads only the block it keeps
}

// OpDef::cost of a collective: its collective_cost over the devices of its axes.
OpCost cost_of(decltype(OpDef::collective_cost) collective_cost, const std::vector<TensorType>& in,
               const std::vector<TensorType>& out, const Attrs& attrs) {
  const auto& a = std::get<CollectiveAttrs>(attrs);
  double n = 1;
  for (const Dim& ax : a.axes) n *= static_cast<double>(ax.size);
  return collective_cost(n, a.reduce, bytes(in[0]), elems(in[0]), bytes(out[0]));
}

CollectiveAttrs attrs_of(const Node& n) { return std::get<CollectiveAttrs>(n.attrs); }

}  // namespace

const OpDef& def_all_reduce() {
  static const OpDef d{
      "all_reduce", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& a) -> std::vector<TensorType> {
        expect_collective(in, std::get<CollectiveAttrs>(a), false, false);
        return {in[0]};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) {
        identity_forward("all_reduce", a, in, out);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const CollectiveAttrs a = attrs_of(n);
        if (a.reduce == ReduceOp::max) {
          if (group_size(a) != 1) fail("all_reduce(max) over {} devices has no gradient", group_size(a));
          return {dy[0]};
        }
        return {all_reduce(b.wrap(dy[0]), a.axes, a.reduce).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& a) {
        return cost_of(all_reduce_cost, in, out, a);
      },
      nullptr, same_attrs, all_reduce_cost};
  return d;
}

const OpDef& def_all_gather() {
  static const OpDef d{
      "all_gather", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        const auto& a = std::get<CollectiveAttrs>(attrs);
        expect_collective(in, a, true, false);
        return {TensorType{resized(in[0].shape, a.gather_dim, group_size(a), 1), in[0].dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) {
        identity_forward("all_gather", a, in, out);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const CollectiveAttrs a = attrs_of(n);
        return {reduce_scatter(b.wrap(dy[0]), a.axes, a.gather_dim, ReduceOp::sum).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& a) {
        return cost_of(all_gather_cost, in, out, a);
      },
      nullptr, same_attrs, all_gather_cost};
  return d;
}

const OpDef& def_reduce_scatter() {
  static const OpDef d{
      "reduce_scatter", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        const auto& a = std::get<CollectiveAttrs>(attrs);
        expect_collective(in, a, false, true);
        return {TensorType{resized(in[0].shape, a.scatter_dim, 1, group_size(a)), in[0].dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) {
        identity_forward("reduce_scatter", a, in, out);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const CollectiveAttrs a = attrs_of(n);
        if (a.reduce == ReduceOp::max && group_size(a) != 1)
          fail("reduce_scatter(max) over {} devices has no gradient", group_size(a));
        Expr g = all_gather(b.wrap(dy[0]), a.axes, a.scatter_dim);
        if (a.reduce == ReduceOp::mean && group_size(a) != 1) g = scale(g, 1.0 / static_cast<double>(group_size(a)));
        return {g.id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& a) {
        return cost_of(reduce_scatter_cost, in, out, a);
      },
      nullptr, same_attrs, reduce_scatter_cost};
  return d;
}

const OpDef& def_all_to_all() {
  static const OpDef d{
      "all_to_all", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        const auto& a = std::get<CollectiveAttrs>(attrs);
        expect_collective(in, a, true, true);
        const int64_t n = group_size(a);
        return {TensorType{resized(resized(in[0].shape, a.gather_dim, n, 1), a.scatter_dim, 1, n), in[0].dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) {
        identity_forward("all_to_all", a, in, out);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const CollectiveAttrs a = attrs_of(n);
        return {all_to_all(b.wrap(dy[0]), a.axes, a.scatter_dim, a.gather_dim).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& a) {
        return cost_of(all_to_all_cost, in, out, a);
      },
      nullptr, same_attrs, all_to_all_cost};
  return d;
}

const OpDef& def_shard_slice() {
  static const OpDef d{
      "shard_slice", OpClass::layout,
      [](const std::vector<TensorType>& in, const Attrs& attrs) -> std::vector<TensorType> {
        const auto& a = std::get<CollectiveAttrs>(attrs);
        expect_collective(in, a, false, true);
        return {TensorType{resized(in[0].shape, a.scatter_dim, 1, group_size(a)), in[0].dtype}};
      },
      [](const Attrs& a, std::span<const Tensor* const> in, std::span<Tensor* const> out, bool) {
        identity_forward("shard_slice", a, in, out);
      },
      [](Builder& b, const Node& n, std::span<const ValueId> dy) -> std::vector<ValueId> {
        const CollectiveAttrs a = attrs_of(n);
        return {all_gather(b.wrap(dy[0]), a.axes, a.scatter_dim).id};
      },
      [](const std::vector<TensorType>& in, const std::vector<TensorType>& out, const Attrs& a) {
        return cost_of(shard_slice_cost, in, out, a);
      },
      nullptr, same_attrs, shard_slice_cost};
  return d;
}

}  // namespace sy::ops
