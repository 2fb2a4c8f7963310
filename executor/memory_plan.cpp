#include "executor/memory_plan.hpp"

#include "graph/checked_math.hpp"
#include "graph/error.hpp"

#include <algorithm>
#include <iterator>
#include <map>

namespace sy::exec {
namespace {

int64_t align_up(int64_t bytes) { return (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

// Offsets in an arena that grows on demand; freed blocks are kept merged and reused by best fit.
class BestFitArena {
 public:
  int64_t alloc(int64_t size) {
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it)  // lowest offset first, so ties keep it
      if (it->second >= size && (best == free_.end() || it->second < best->second)) best = it;
    if (best != free_.end()) {
      const int64_t off = best->first, rest = best->second - size;
      free_.erase(best);
      if (rest > 0) free_.emplace(off + size, rest);
      return off;
    }
    // Nothing fits: grow, starting inside the free block at the end of the arena if there is one.
    int64_t off = end_;
    if (!free_.empty()) {
      auto last = std::prev(free_.end());
      if (last->first + last->second == end_) {
        off = last->first;
        free_.erase(last);
      }
    }
    end_ = checked_add(off, size, "the memory plan's arena");
    peak_ = std::max(peak_, end_);
    return off;
  }

  void release(int64_t off, int64_t size) {
    auto [it, inserted] = free_.emplace(off, size);
    SY_CHECK(inserted, "memory plan: block at offset {} released twice", off);
    auto next = std::next(it);
    if (next != free_.end() && it->first + it->second == next->first) {  // merge with the next block
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {  // merge with the previous block
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }

  int64_t peak() const { return peak_; }

 private:
  std::map<int64_t, int64_t> free_;  // offset -> size
  int64_t end_ = 0;
  int64_t peak_ = 0;
};

}  // namespace

MemoryPlan plan_memory(const Graph& g, const std::vector<std::vector<int64_t>>& workspace_bytes,
                       const std::vector<bool>& in_leaf) {
  SY_CHECK(workspace_bytes.size() == g.nodes.size(), "memory plan: {} workspace lists for {} nodes",
           workspace_bytes.size(), g.nodes.size());
  const size_t nv = g.values.size();
  SY_CHECK(in_leaf.empty() || in_leaf.size() == nv, "memory plan: {} in-leaf flags for {} values", in_leaf.size(), nv);
  const auto stored_in_leaf = [&](ValueId v) { return !in_leaf.empty() && in_leaf[static_cast<size_t>(v.v)]; };
  const int32_t end_of_run = static_cast<int32_t>(g.nodes.size());
  MemoryPlan plan;
  plan.value_offset.assign(nv, -1);
  plan.workspace_offset.resize(g.nodes.size());
  plan.kept.assign(nv, false);
  for (const GraphOutput& o : g.outputs) plan.kept.at(static_cast<size_t>(o.value.v)) = true;
  if (g.loss.valid()) plan.kept.at(static_cast<size_t>(g.loss.v)) = true;

  // Last node reading each value; a value nobody reads dies at its producer. A value no node
  // produces or reads (the output of a node the executor skips as a duplicate) gets no block.
  std::vector<int32_t> last_use(nv, -1);
  for (const Node& n : g.nodes) {
    for (ValueId v : n.inputs) last_use[static_cast<size_t>(v.v)] = n.id.v;
    for (ValueId v : n.outputs) last_use[static_cast<size_t>(v.v)] = n.id.v;
  }
  for (size_t v = 0; v < nv; ++v)
    if (plan.kept[v]) last_use[v] = end_of_run;
  // Values dying at each node.
  std::vector<std::vector<ValueId>> dies_at(g.nodes.size());
  for (const Value& v : g.values)
    if (v.role == ValueRole::computed && !stored_in_leaf(v.id) && last_use[static_cast<size_t>(v.id.v)] >= 0 &&
        last_use[static_cast<size_t>(v.id.v)] < end_of_run)
      dies_at[static_cast<size_t>(last_use[static_cast<size_t>(v.id.v)])].push_back(v.id);

  BestFitArena arena;
  for (const Node& n : g.nodes) {
    for (ValueId v : n.outputs) {
      if (stored_in_leaf(v)) continue;
      const int64_t size = align_up(num_bytes(g.type(v)));
      plan.value_offset[static_cast<size_t>(v.v)] = arena.alloc(size);
      plan.unplanned_bytes = checked_add(plan.unplanned_bytes, size, "the memory plan's bytes");
      ++plan.buffers;
    }
    const auto& ws = workspace_bytes[static_cast<size_t>(n.id.v)];
    auto& ws_off = plan.workspace_offset[static_cast<size_t>(n.id.v)];
    for (int64_t bytes : ws) {
      ws_off.push_back(bytes > 0 ? arena.alloc(align_up(bytes)) : -1);
      plan.unplanned_bytes = checked_add(plan.unplanned_bytes, align_up(bytes), "the memory plan's bytes");
    }
    for (size_t i = 0; i < ws.size(); ++i)
      if (ws_off[i] >= 0) arena.release(ws_off[i], align_up(ws[i]));
    for (ValueId v : dies_at[static_cast<size_t>(n.id.v)])
      arena.release(plan.value_offset[static_cast<size_t>(v.v)], align_up(num_bytes(g.type(v))));
  }
  plan.arena_bytes = arena.peak();
  return plan;
}

}  // namespace sy::exec
