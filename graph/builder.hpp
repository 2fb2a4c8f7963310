// Builder: appends nodes to a Graph in topological order, inferring output types through the
// op registry. The free functions below read like the math:
//
//   Builder b(g);
//   Expr x = b.input("x", {{"batch", 4}, {"d_model", 8}});              // [B, D]
//   Expr w = b.parameter("w", {{"d_model", 8}, {"d_ff", 16}});          // [D, F]
//   Expr h = relu(einsum(x, w, {"batch", "d_ff"}));                     // [B, F]
#pragma once

#include "graph/ir.hpp"

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace sy {

class Builder;

// A handle on a value being built: the builder and the value id.
struct Expr {
  Builder* b = nullptr;
  ValueId id;

  const TensorType& type() const;
  const Shape& shape() const { return type().shape; }
  DType dtype() const { return type().dtype; }
  int64_t dim_size(const std::string& name) const;  // throws if absent
};

class Builder {
 public:
  explicit Builder(Graph& g) : g_(g) {}

  Graph& graph() { return g_; }
  const Graph& graph() const { return g_; }

  Expr input(std::string name, Shape shape, DType dtype = DType::f32);
  Expr parameter(std::string name, Shape shape, DType dtype = DType::f32);
  Expr wrap(ValueId id) { return Expr{this, id}; }

  // Appends one node; returns its outputs. Checks attrs and infers types via op_def(kind).
  std::vector<Expr> op(OpKind kind, Attrs attrs, std::vector<ValueId> inputs);
  Expr op1(OpKind kind, Attrs attrs, std::vector<ValueId> inputs) { return op(kind, std::move(attrs), std::move(inputs)).at(0); }

  void output(std::string name, Expr e);
  void set_loss(Expr e);

  // Scope of nodes appended from now on: "encoder/layer_0".
  void push_scope(const std::string& s);
  void pop_scope();
  const std::string& scope() const { return scope_; }

  // Nodes appended while true are flagged `backward` (autodiff sets this).
  void set_backward(bool on) { backward_ = on; }

 private:
  Expr leaf(std::string name, Shape shape, DType dtype, ValueRole role);

  Graph& g_;
  std::string scope_;
  std::vector<size_t> scope_marks_;
  bool backward_ = false;
};

// RAII scope: { ScopeGuard s(b, "layer_0"); ... }
struct ScopeGuard {
  ScopeGuard(Builder& b, const std::string& s) : b_(b) { b_.push_scope(s); }
  ~ScopeGuard() { b_.pop_scope(); }
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;

 private:
  Builder& b_;
};

// ---- elementwise (b's dims ⊆ a's dims: b broadcasts by name) ----
Expr operator+(Expr a, Expr b);
Expr operator-(Expr a, Expr b);
Expr operator*(Expr a, Expr b);
Expr operator/(Expr a, Expr b);
Expr greater(Expr a, Expr b);
Expr where(Expr cond, Expr a, Expr b);
Expr scale(Expr x, double factor, double offset = 0.0);
Expr relu(Expr x);
Expr relu_grad(Expr x, Expr dy);
Expr gelu(Expr x);
Expr gelu_grad(Expr x, Expr dy);
Expr exp(Expr x);
Expr log(Expr x);
Expr rsqrt(Expr x);
Expr cast(Expr x, DType to);
Expr dropout(Expr x, Expr step, double rate, uint64_t seed);  // step: i32 scalar input

// ---- layout ----
Expr fill(Builder& b, Shape shape, double value, DType dtype = DType::f32);
Expr random_uniform(Expr step, Shape shape, double lo, double hi, uint64_t seed, DType dtype = DType::f32);
Expr random_normal(Expr step, Shape shape, double mean, double stddev, uint64_t seed, DType dtype = DType::f32);
Expr broadcast(Expr x, Shape shape);
Expr transpose(Expr x, std::vector<std::string> order);
Expr reshape(Expr x, Shape shape);
// x, available once `control` is (an optimization barrier; ops/layout.cpp after).
Expr after(Expr x, Expr control);

// ---- reductions and normalizations ----
Expr sum(Expr x, std::vector<std::string> dims);
Expr mean(Expr x, std::vector<std::string> dims);
Expr max(Expr x, std::vector<std::string> dims);
Expr softmax(Expr x, const std::string& dim);
Expr logsumexp(Expr x, const std::string& dim);
Expr rms_norm(Expr x, Expr g, const std::string& dim, double eps = 1e-6);
Expr cross_entropy(Expr logits, Expr labels, const std::string& class_dim);

// ---- matmul ----
Expr einsum(Expr a, Expr b, std::vector<std::string> out);

// ---- index ----
Expr embedding(Expr table, Expr ids);
Expr embedding_grad(Expr ids, Expr dy, Dim vocab);
Expr one_hot(Expr ids, Dim dim, DType dtype = DType::f32);
std::pair<Expr, Expr> top_k(Expr x, const std::string& dim, Dim k);  // values, indices
Expr cumsum(Expr x, const std::string& dim, bool exclusive = false, bool reverse = false);
Expr gather(Expr x, Expr idx, const std::string& dim);
Expr scatter_add(Expr src, Expr idx, const std::string& index_dim, Dim out_dim);

// ---- collective (over mesh axes given as (name, size); graph/lower inserts these) ----
Expr all_reduce(Expr x, std::vector<Dim> axes, ReduceOp op = ReduceOp::sum);
Expr all_gather(Expr x, std::vector<Dim> axes, const std::string& gather_dim);
Expr reduce_scatter(Expr x, std::vector<Dim> axes, const std::string& scatter_dim, ReduceOp op = ReduceOp::sum);
Expr all_to_all(Expr x, std::vector<Dim> axes, const std::string& gather_dim, const std::string& scatter_dim);
Expr shard_slice(Expr x, std::vector<Dim> axes, const std::string& scatter_dim);

// ---- optimizer (ops/optimizer.cpp; one update node per parameter) ----
// mean over dims of (x·scale)² / Π divisors (scale f32 [] optional: Expr{} for none; divisors'
// dims ⊆ x's dims).
Expr mean_square(Expr x, std::vector<std::string> dims, Expr scale = {}, const std::vector<Expr>& divisors = {});
// decay·v + (1-decay)·(ms + epsilon1), decay = 1 - (step+1)^-decay_exponent.
Expr adafactor_moment(Expr v, Expr ms, Expr step, const AdafactorAttrs& attrs);
// Returns the new parameter, then the new state in the order given. state: Adafactor {v_row,
// v_col} (factored: param's shape without its last dim, without its second-to-last dim) or {v};
// AdamW {m, v}. lr f32 [], step i32 [] (0-based), clip_scale f32 [] (multiplies the gradient).
// Adafactor is written as its statistics (mean_square, adafactor_moment, reduce_mean: each a node
// lowering splits like any reduction) and one adafactor_update node; AdamW is one node.
std::vector<Expr> adafactor_update(Expr param, Expr grad, const std::vector<Expr>& state, Expr lr, Expr step,
                                   Expr clip_scale, const AdafactorAttrs& attrs);
std::vector<Expr> adamw_update(Expr param, Expr grad, const std::vector<Expr>& state, Expr lr, Expr step,
                               Expr clip_scale, const AdamWAttrs& attrs);

}  // namespace sy
