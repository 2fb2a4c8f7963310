// ExecutorOptions::updates: a leaf takes a value's contents after each run, written straight into
// the leaf's storage when that is safe (donation) and copied in after the run when it is not.
#include "executor/executor.hpp"
#include "graph/builder.hpp"
#include "graph/error.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <random>

namespace sy {
namespace {

// One AdamW step on w [d=256, f=128] (128 KiB per tensor) after a forward that reads w:
//   y = sum(x · w), new w, m, v = adamw(w, grad, m, v). With `late_reader`, a node after the update
//   reads w again (its output: sum(w · 2)), so w cannot be written in place.
struct AdamGraph {
  Graph g;
  ValueId x, w, grad, m, v, lr, step, clip;
  ValueId new_w, new_m, new_v, y, late;
};

AdamGraph adam_graph(bool late_reader) {
  AdamGraph a;
  Builder b(a.g);
  const Dim D{"d", 256}, F{"f", 128};
  Expr x = b.input("x", {D, F});
  Expr w = b.parameter("w", {D, F});
  Expr grad = b.input("grad", {D, F});
  Expr m = b.input("m", {D, F});
  Expr v = b.input("v", {D, F});
  Expr lr = b.input("lr", {});
  Expr step = b.input("step", {}, DType::i32);
  Expr clip = b.input("clip", {});
  Expr y = sum(x * w, {"d", "f"});
  b.output("y", y);
  const std::vector<Expr> u = adamw_update(w, grad, {m, v}, lr, step, clip, AdamWAttrs{0.9, 0.99, 1e-8, 0.01});
  b.output("new_w", u[0]);
  b.output("new_m", u[1]);
  b.output("new_v", u[2]);
  a.x = x.id, a.w = w.id, a.grad = grad.id, a.m = m.id, a.v = v.id, a.lr = lr.id, a.step = step.id, a.clip = clip.id;
  a.new_w = u[0].id, a.new_m = u[1].id, a.new_v = u[2].id, a.y = y.id;
  if (late_reader) {
    Expr late = sum(scale(w, 2.0), {"d", "f"});
    b.output("late", late);
    a.late = late.id;
  }
  return a;
}

void fill(Executor& ex, ValueId v, const Graph& g, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.1f, 1.0f);
  auto* p = static_cast<float*>(ex.data(v));
  for (int64_t i = 0; i < num_elements(g.type(v).shape); ++i) p[i] = u(rng);
}

void feed(Executor& ex, const AdamGraph& a, int32_t step) {
  fill(ex, a.x, a.g, 1);
  fill(ex, a.grad, a.g, 100 + static_cast<uint64_t>(step));
  *static_cast<float*>(ex.data(a.lr)) = 0.01f;
  *static_cast<int32_t*>(ex.data(a.step)) = step;
  *static_cast<float*>(ex.data(a.clip)) = 1.0f;
}

std::vector<float> contents(Executor& ex, ValueId v, const Graph& g) {
  const auto* p = static_cast<const float*>(ex.data(v));
  return {p, p + num_elements(g.type(v).shape)};
}

// Three steps with the updates given to the executor, against three steps that copy each update
// back by hand (what the trainer did before): the same bits in w, m and v after every step.
void check_same_bits_as_copying(bool late_reader, int64_t want_in_place) {
  const AdamGraph a = adam_graph(late_reader);
  ExecutorOptions by_hand_opts, updating_opts;
  updating_opts.updates = {{a.w, a.new_w}, {a.m, a.new_m}, {a.v, a.new_v}};
  Executor by_hand(a.g, by_hand_opts), updating(a.g, updating_opts);
  CHECK(updating.memory().updates_in_place == want_in_place);
  CHECK(updating.memory().updates_copied == 3 - want_in_place);
  for (Executor* ex : {&by_hand, &updating}) {
    fill(*ex, a.w, a.g, 7);
    std::memset(ex->data(a.m), 0, static_cast<size_t>(num_bytes(a.g.type(a.m))));
    std::memset(ex->data(a.v), 0, static_cast<size_t>(num_bytes(a.g.type(a.v))));
  }
  for (int32_t step = 0; step < 3; ++step) {
    const std::vector<float> w_before = contents(by_hand, a.w, a.g);
    for (Executor* ex : {&by_hand, &updating}) {
      feed(*ex, a, step);
      ex->run();
    }
    if (late_reader) {  // the late reader saw the old w, not the update
      double want = 0;
      for (float x : w_before) want += 2.0 * x;
      CHECK(updating.get(a.late).data[0] == Approx(want).epsilon(1e-5));
    }
    CHECK(updating.get(a.y).data[0] == by_hand.get(a.y).data[0]);
    for (auto [leaf, value] : {std::pair{a.w, a.new_w}, {a.m, a.new_m}, {a.v, a.new_v}})
      std::memcpy(by_hand.data(leaf), by_hand.data(value), static_cast<size_t>(num_bytes(a.g.type(leaf))));
    for (ValueId leaf : {a.w, a.m, a.v}) {
      const bool same_bits = contents(updating, leaf, a.g) == contents(by_hand, leaf, a.g);
      CHECK(same_bits);
    }
    const bool moved = contents(updating, a.w, a.g) != w_before;  // the step changed w
    CHECK(moved);
  }
}

TEST_CASE("updates written into their leaves need no arena blocks and give the copied updates' bits", "[executor][update]") {
  check_same_bits_as_copying(/*late_reader=*/false, 3);
  const AdamGraph a = adam_graph(false);
  ExecutorOptions opts;
  opts.updates = {{a.w, a.new_w}, {a.m, a.new_m}, {a.v, a.new_v}};
  // Every block the plan places, summed: three tensors fewer (the arena's peak may shrink less,
  // as freed forward blocks are reused).
  const int64_t three_tensors = 3 * num_bytes(a.g.type(a.w));
  CHECK(Executor(a.g).memory().unplanned_bytes - Executor(a.g, opts).memory().unplanned_bytes == three_tensors);
}

TEST_CASE("an update whose leaf is read after the update's producer is copied in after the run", "[executor][update]") {
  // w is read again after adamw_update: writing w' into w would feed that reader the new w. The
  // node's other updates (m, v) are copied too: its kernel runs wholly in place or not at all.
  check_same_bits_as_copying(/*late_reader=*/true, 0);
}

TEST_CASE("bad updates are refused by name", "[executor][update]") {
  const AdamGraph a = adam_graph(false);
  using Catch::Matchers::Contains;
  ExecutorOptions into_computed;
  into_computed.updates = {{a.new_w, a.y}};
  CHECK_THROWS_AS(Executor(a.g, into_computed), InputError);
  ExecutorOptions twice;
  twice.updates = {{a.w, a.new_w}, {a.w, a.new_w}};
  CHECK_THROWS_WITH(Executor(a.g, twice), Contains("target of another update"));
  ExecutorOptions mistyped;
  mistyped.updates = {{a.lr, a.y}};  // f32 [] from f32 []: fine; a step (i32) from y (f32) is not
  CHECK_NOTHROW(Executor(a.g, mistyped));
  mistyped.updates = {{a.step, a.y}};
  CHECK_THROWS_WITH(Executor(a.g, mistyped), Contains("same type"));
}

}  // namespace
}  // namespace sy
