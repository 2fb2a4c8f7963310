#include "executor/sparse_einsum.hpp"

#include "executor/float_storage.hpp"
#include "graph/error.hpp"
#include "graph/sparsity.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>
#include <type_traits>

namespace sy::exec {
namespace {

using Range = tbb::blocked_range<int64_t>;


// Zeroes n bytes with TBB (large outputs: one thread cannot saturate memory bandwidth).
void zero_bytes(void* p, int64_t n) {
  constexpr int64_t kChunk = int64_t{1} << 20;
  tbb::parallel_for(Range(0, (n + kChunk - 1) / kChunk, 1), [&](const Range& r) {
    for (int64_t c = r.begin(); c < r.end(); ++c) {
      const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
      std::memset(static_cast<std::byte*>(p) + b, 0, static_cast<size_t>(e - b));
    }
  });
}

// A set of dims walked together: per element, its offsets into up to three tensors. Adjacent dims
// that are contiguous in every tensor are merged first, so the common case is one strided run.
struct Walk {
  std::vector<int64_t> size;                 // per dim, outermost first
  std::vector<std::array<int64_t, 3>> step;  // per dim: stride in tensors 0, 1, 2 (0: absent)

  void add(int64_t n, std::array<int64_t, 3> s) {
    if (n == 1) return;
    if (!size.empty()) {  // merge with the previous dim when it is the outer part of one run
      const auto& p = step.back();
      if (p[0] == s[0] * n && p[1] == s[1] * n && p[2] == s[2] * n) {
        size.back() *= n;
        step.back() = s;
        return;
      }
    }
    size.push_back(n);
    step.push_back(s);
  }
  int64_t count() const { return std::accumulate(size.begin(), size.end(), int64_t{1}, std::multiplies<>()); }
  // Offsets of every element, in row-major order of the dims.
  std::vector<std::array<int64_t, 3>> offsets() const {
    std::vector<std::array<int64_t, 3>> r(static_cast<size_t>(count()));
    std::vector<int64_t> idx(size.size(), 0);
    std::array<int64_t, 3> off{};
    for (auto& o : r) {
      o = off;
      for (size_t k = size.size(); k-- > 0;) {
        for (int t = 0; t < 3; ++t) off[static_cast<size_t>(t)] += step[k][static_cast<size_t>(t)];
        if (++idx[k] < size[k]) break;
        for (int t = 0; t < 3; ++t) off[static_cast<size_t>(t)] -= step[k][static_cast<size_t>(t)] * size[k];
        idx[k] = 0;
      }
    }
    return r;
  }
};

// Offsets of the nonzeros of a tensor of shape `s` in up to three others: stride[t][k] is the step
// of dim k of s in tensor t (0 when absent).
std::vector<std::array<int64_t, 3>> nonzero_offsets(const Nonzeros& nz, const Shape& s,
                                                    const std::array<std::vector<int64_t>, 3>& stride) {
  std::vector<std::array<int64_t, 3>> r(nz.index.size());
  tbb::parallel_for(Range(0, static_cast<int64_t>(nz.index.size()), 4096), [&](const Range& rr) {
    for (int64_t j = rr.begin(); j < rr.end(); ++j) {
      int64_t rem = nz.index[static_cast<size_t>(j)];
      std::array<int64_t, 3> off{};
      for (size_t k = s.size(); k-- > 0;) {
        const int64_t i = rem % s[k].size;
        rem /= s[k].size;
        for (size_t t = 0; t < 3; ++t) off[t] += i * stride[t][k];
      }
      r[static_cast<size_t>(j)] = off;
    }
  });
  return r;
}

// Stride of each dim of `s` in `in` (0 when `in` lacks it).
std::vector<int64_t> strides_in(const Shape& s, const Shape& in) {
  const auto st = strides_of(in);
  std::vector<int64_t> r(s.size(), 0);
  for (size_t k = 0; k < s.size(); ++k)
    if (auto i = dim_index(in, s[k].name)) r[k] = st[*i];
  return r;
}

// v as storage type T holds it (bf16: rounded to nearest even).
template <typename T>
float round_as(float v) {
  T t;
  st(&t, 0, v);
  return ld(&t, 0);
}

// Entries sorted by index (each index once) -> nonzeros, leaving out exact zeros (of either sign).
void to_nonzeros(const std::vector<std::pair<int64_t, float>>& entry, Nonzeros& out) {
  out.index.clear();
  out.value.clear();
  for (const auto& [i, v] : entry)
    if (v != 0.0f) {
      out.index.push_back(i);
      out.value.push_back(v);
    }
}

}  // namespace

void store_nonzeros(const Nonzeros& x, const TensorType& t, void* data) {
  zero_bytes(data, num_bytes(t));
  visit_float(t.dtype, [&](auto* tag) {
    auto* p = static_cast<Storage<decltype(tag)>*>(data);
    for (size_t j = 0; j < x.index.size(); ++j) st(p, x.index[j], x.value[j]);
  });
}

bool einsum_sparse_sparse(const Nonzeros& p_nz, const TensorType& p_type, const Nonzeros& q_nz, const TensorType& q_type,
                          const TensorType& out_type, int64_t max_pairs, Nonzeros& out_nz) {
  const Shape& ps = p_type.shape;
  const Shape& qs = q_type.shape;
  const Shape& os = out_type.shape;
  if (!is_float(p_type.dtype) || !is_float(q_type.dtype) || !is_float(out_type.dtype)) return false;
  for (const Dim& d : ps)
    if (!has_dim(qs, d.name) && !has_dim(os, d.name)) return false;  // summed within p alone
  for (const Dim& d : qs)
    if (!has_dim(ps, d.name) && !has_dim(os, d.name)) return false;  // summed within q alone
  for (const Dim& d : os)
    if (!has_dim(ps, d.name) && !has_dim(qs, d.name)) return false;
  // Per nonzero: a key over the shared dims (mixed radix in p's order) and its offset in out (a
  // shared dim of out counted on p's side only).
  const auto ostr = strides_of(os);
  std::vector<int64_t> p_key(ps.size(), 0), q_key(qs.size(), 0), p_out(ps.size(), 0), q_out(qs.size(), 0);
  int64_t radix = 1;
  for (size_t k = ps.size(); k-- > 0;)
    if (const auto j = dim_index(qs, ps[k].name)) {
      p_key[k] = radix;
      q_key[*j] = radix;
      radix *= ps[k].size;
    }
  for (size_t k = 0; k < ps.size(); ++k)
    if (const auto o = dim_index(os, ps[k].name)) p_out[k] = ostr[*o];
  for (size_t k = 0; k < qs.size(); ++k)
    if (const auto o = dim_index(os, qs[k].name); o && !has_dim(ps, qs[k].name)) q_out[k] = ostr[*o];
  const std::vector<int64_t> zeros_p(ps.size(), 0), zeros_q(qs.size(), 0);
  const auto p_off = nonzero_offsets(p_nz, ps, {p_key, p_out, zeros_p});
  const auto q_off = nonzero_offsets(q_nz, qs, {q_key, q_out, zeros_q});
  // q's nonzeros by key (stable: q's order within a key).
  std::vector<int64_t> q_order(q_off.size());
  std::iota(q_order.begin(), q_order.end(), 0);
  std::stable_sort(q_order.begin(), q_order.end(), [&](int64_t i, int64_t j) {
    return q_off[static_cast<size_t>(i)][0] < q_off[static_cast<size_t>(j)][0];
  });
  std::vector<int64_t> q_keys(q_order.size());
  for (size_t i = 0; i < q_order.size(); ++i) q_keys[i] = q_off[static_cast<size_t>(q_order[i])][0];
  // Every pair in p's order, then q's; stable-sorted by out offset, so each element sums in that order.
  std::vector<std::pair<int64_t, float>> pair;
  for (size_t i = 0; i < p_off.size(); ++i) {
    const auto [lo, hi] = std::equal_range(q_keys.begin(), q_keys.end(), p_off[i][0]);
    if (static_cast<int64_t>(pair.size() + static_cast<size_t>(hi - lo)) > max_pairs) return false;
    for (auto it = lo; it != hi; ++it) {
      const auto j = static_cast<size_t>(q_order[static_cast<size_t>(it - q_keys.begin())]);
      pair.emplace_back(p_off[i][1] + q_off[j][1], p_nz.value[i] * q_nz.value[j]);
    }
  }
  std::stable_sort(pair.begin(), pair.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::pair<int64_t, float>> entry;
  for (const auto& [i, v] : pair) {
    if (!entry.empty() && entry.back().first == i) entry.back().second += v;
    else entry.emplace_back(i, v);
  }
  visit_float(out_type.dtype, [&](auto* tag) {
    for (auto& e : entry) e.second = round_as<Storage<decltype(tag)>>(e.second);
  });
  to_nonzeros(entry, out_nz);
  return true;
}

bool find_nonzeros(ConstView x, int64_t max_count, Nonzeros& out) {
  if (!is_float(x.type.dtype)) return false;
  const int64_t n = num_elements(x.type.shape);
  constexpr int64_t kChunk = int64_t{1} << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<Nonzeros> part(static_cast<size_t>(chunks));
  std::atomic<int64_t> total{0};
  std::atomic<bool> over{false};
  visit_float(x.type.dtype, [&](auto* tag) {
    using T = Storage<decltype(tag)>;
    const T* p = static_cast<const T*>(x.data);
    using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t>;
    constexpr U kMagnitude = sizeof(T) == 4 ? U(0x7fffffffu) : U(0x7fffu);  // bits without the sign
    tbb::parallel_for(Range(0, chunks, 1), [&](const Range& r) {
      for (int64_t c = r.begin(); c < r.end() && !over.load(std::memory_order_relaxed); ++c) {
        const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
        Nonzeros& nz = part[static_cast<size_t>(c)];
        for (int64_t i0 = b; i0 < e; i0 += 64) {  // blocks of 64: test a whole block for zero first
          const int64_t i1 = std::min(e, i0 + 64);
          uint32_t any = 0;
          for (int64_t i = i0; i < i1; ++i) {
            U bits;
            std::memcpy(&bits, p + i, sizeof(U));
            any |= static_cast<uint32_t>(bits & kMagnitude);
          }
          if (!any) continue;
          for (int64_t i = i0; i < i1; ++i) {
            U bits;
            std::memcpy(&bits, p + i, sizeof(U));
            if (bits & kMagnitude) {
              nz.index.push_back(i);
              nz.value.push_back(ld(p, i));
            }
          }
        }
        if (total.fetch_add(static_cast<int64_t>(nz.index.size())) + static_cast<int64_t>(nz.index.size()) > max_count)
          over = true;
      }
    });
  });
  if (over) return false;
  out.index.clear();
  out.value.clear();
  out.index.reserve(static_cast<size_t>(total.load()));
  out.value.reserve(static_cast<size_t>(total.load()));
  for (const Nonzeros& nz : part) {
    out.index.insert(out.index.end(), nz.index.begin(), nz.index.end());
    out.value.insert(out.value.end(), nz.value.begin(), nz.value.end());
  }
  return true;
}

bool einsum_sparse_dense(const Nonzeros& p_nz, const TensorType& p_type, ConstView q, View out, bool zero_fill) {
  const Shape& ps = p_type.shape;
  const Shape& qs = q.type.shape;
  const Shape& os = out.type.shape;
  if (!is_float(p_type.dtype) || !is_float(q.type.dtype) || !is_float(out.type.dtype)) return false;
  for (const Dim& d : os)
    if (!has_dim(ps, d.name) && !has_dim(qs, d.name)) return false;
  // Y: q's dims not in p, walked per nonzero (offsets in out and q), in out's order.
  Walk y;
  const auto ostr = strides_of(os);
  const auto qstr = strides_of(qs);
  for (size_t k = 0; k < os.size(); ++k) {
    if (has_dim(ps, os[k].name)) continue;
    y.add(os[k].size, {ostr[k], qstr[*dim_index(qs, os[k].name)], 0});
  }
  for (const Dim& d : qs)
    if (!has_dim(ps, d.name) && !has_dim(os, d.name)) return false;  // summed within q alone

  // Per nonzero: its row of out and of q; rows of out in increasing order, nonzeros of one row in
  // p's order (a stable sort).
  const auto off = nonzero_offsets(p_nz, ps, {strides_in(ps, os), strides_in(ps, qs), std::vector<int64_t>(ps.size(), 0)});
  std::vector<int64_t> order(off.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t i, int64_t j) { return off[static_cast<size_t>(i)][0] < off[static_cast<size_t>(j)][0]; });
  std::vector<int64_t> group;  // start of each run of equal out rows in `order`, then order.size()
  for (size_t i = 0; i < order.size(); ++i)
    if (i == 0 || off[static_cast<size_t>(order[i])][0] != off[static_cast<size_t>(order[i - 1])][0])
      group.push_back(static_cast<int64_t>(i));
  const auto groups = static_cast<int64_t>(group.size());
  group.push_back(static_cast<int64_t>(order.size()));

  if (zero_fill) zero_bytes(out.data, num_bytes(out.type));
  const bool contiguous = y.size.size() <= 1 && (y.size.empty() || (y.step[0][0] == 1 && y.step[0][1] == 1));
  const auto y_off = contiguous ? std::vector<std::array<int64_t, 3>>{} : y.offsets();
  const int64_t ny = y.count();
  visit_float(q.type.dtype, [&](auto* qt) {
    visit_float(out.type.dtype, [&](auto* ot) {
      const auto* qp = static_cast<const Storage<decltype(qt)>*>(q.data);
      auto* op = static_cast<Storage<decltype(ot)>*>(out.data);
      const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, ny));
      tbb::parallel_for(Range(0, groups, grain), [&](const Range& r) {
        std::vector<float> acc(static_cast<size_t>(ny));
        for (int64_t gi = r.begin(); gi < r.end(); ++gi) {
          const int64_t first = group[static_cast<size_t>(gi)], last = group[static_cast<size_t>(gi) + 1];
          const int64_t orow = off[static_cast<size_t>(order[static_cast<size_t>(first)])][0];
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t j = first; j < last; ++j) {
            const auto nzi = static_cast<size_t>(order[static_cast<size_t>(j)]);
            const float v = p_nz.value[nzi];
            const auto* qrow = qp + off[nzi][1];
            if (contiguous) {
              for (int64_t i = 0; i < ny; ++i) acc[static_cast<size_t>(i)] += v * ld(qrow, i);
            } else {
              for (int64_t i = 0; i < ny; ++i) acc[static_cast<size_t>(i)] += v * ld(qrow, y_off[static_cast<size_t>(i)][1]);
            }
          }
          if (contiguous) {
            for (int64_t i = 0; i < ny; ++i) st(op, orow + i, acc[static_cast<size_t>(i)]);
          } else {
            for (int64_t i = 0; i < ny; ++i) st(op, orow + y_off[static_cast<size_t>(i)][0], acc[static_cast<size_t>(i)]);
          }
        }
      });
    });
  });
  return true;
}

bool einsum_masked(ConstView a, ConstView b, const Nonzeros& mask_nz, const TensorType& mask_type, View out,
                   Nonzeros* out_nz) {
  const Shape& as = a.type.shape;
  const Shape& bs = b.type.shape;
  const Shape& os = out.type.shape;
  const Shape& ms = mask_type.shape;
  if (!is_float(a.type.dtype) || !is_float(b.type.dtype) || !is_float(out.type.dtype)) return false;
  for (const Dim& d : os)
    if (!has_dim(as, d.name) && !has_dim(bs, d.name)) return false;
  // K: the summed dims (in a and b, not in out), in a's order.
  Walk k;
  const auto astr = strides_of(as), bstr = strides_of(bs), ostr = strides_of(os);
  for (size_t i = 0; i < as.size(); ++i) {
    if (has_dim(os, as[i].name)) continue;
    auto j = dim_index(bs, as[i].name);
    if (!j) return false;  // summed within a alone
    k.add(as[i].size, {astr[i], bstr[*j], 0});
  }
  for (const Dim& d : bs)
    if (!has_dim(os, d.name) && !has_dim(as, d.name)) return false;  // summed within b alone
  // Z: out's dims not in the mask, walked in full for every needed row (offsets in out, a, b).
  Walk z;
  for (size_t i = 0; i < os.size(); ++i) {
    if (has_dim(ms, os[i].name)) continue;
    const auto ia = dim_index(as, os[i].name), ib = dim_index(bs, os[i].name);
    z.add(os[i].size, {ostr[i], ia ? astr[*ia] : 0, ib ? bstr[*ib] : 0});
  }
  // The needed rows: the mask's nonzeros projected on the dims out shares with it (offsets in
  // out, a, b), each once.
  std::array<std::vector<int64_t>, 3> mstride{std::vector<int64_t>(ms.size(), 0), std::vector<int64_t>(ms.size(), 0),
                                              std::vector<int64_t>(ms.size(), 0)};
  for (size_t i = 0; i < ms.size(); ++i) {
    const auto io = dim_index(os, ms[i].name);
    if (!io) continue;  // not a dim of out: any value of it reads the same row
    const auto ia = dim_index(as, ms[i].name), ib = dim_index(bs, ms[i].name);
    mstride[0][i] = ostr[*io];
    mstride[1][i] = ia ? astr[*ia] : 0;
    mstride[2][i] = ib ? bstr[*ib] : 0;
  }
  auto rows = nonzero_offsets(mask_nz, ms, mstride);
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());

  if (!out_nz) zero_bytes(out.data, num_bytes(out.type));
  const auto z_off = z.offsets();
  const bool k_run = k.size.size() <= 1;  // one strided run (or nothing) to sum over
  const auto k_off = k_run ? std::vector<std::array<int64_t, 3>>{} : k.offsets();
  const int64_t nk = k.count();
  const int64_t ka = k.size.empty() ? 0 : k.step[0][0], kb = k.size.empty() ? 0 : k.step[0][1];
  visit_float(a.type.dtype, [&](auto* at) {
    visit_float(b.type.dtype, [&](auto* bt) {
      visit_float(out.type.dtype, [&](auto* ot) {
        const auto* ap = static_cast<const Storage<decltype(at)>*>(a.data);
        const auto* bp = static_cast<const Storage<decltype(bt)>*>(b.data);
        auto* op = static_cast<Storage<decltype(ot)>*>(out.data);
        // Σ_k a[ao + k] · b[bo + k] in f32 with 8 partial sums (the order oneDNN-like kernels use
        // is not reproduced exactly; see the header).
        auto dot = [&](int64_t ao, int64_t bo) {
          float part[8] = {};
          if (k_run && ka == 1 && kb == 1) {
            const auto* x = ap + ao;
            const auto* w = bp + bo;
            int64_t i = 0;
            for (; i + 8 <= nk; i += 8)
              for (int l = 0; l < 8; ++l) part[l] += ld(x, i + l) * ld(w, i + l);
            for (; i < nk; ++i) part[0] += ld(x, i) * ld(w, i);
          } else if (k_run) {
            for (int64_t i = 0; i < nk; ++i) part[i & 7] += ld(ap, ao + i * ka) * ld(bp, bo + i * kb);
          } else {
            for (int64_t i = 0; i < nk; ++i) {
              const auto& o = k_off[static_cast<size_t>(i)];
              part[i & 7] += ld(ap, ao + o[0]) * ld(bp, bo + o[1]);
            }
          }
          return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        };
        const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, nk * static_cast<int64_t>(z_off.size())));
        if (!out_nz) {
          tbb::parallel_for(Range(0, static_cast<int64_t>(rows.size()), grain), [&](const Range& r) {
            for (int64_t ri = r.begin(); ri < r.end(); ++ri) {
              const auto& row = rows[static_cast<size_t>(ri)];
              for (const auto& zo : z_off) st(op, row[0] + zo[0], dot(row[1] + zo[1], row[2] + zo[2]));
            }
          });
          return;
        }
        // Deferred: the computed entries as nonzeros, each rounded as out stores it.
        const auto nzo = static_cast<int64_t>(z_off.size());
        std::vector<std::pair<int64_t, float>> entry(rows.size() * z_off.size());
        tbb::parallel_for(Range(0, static_cast<int64_t>(rows.size()), grain), [&](const Range& r) {
          for (int64_t ri = r.begin(); ri < r.end(); ++ri) {
            const auto& row = rows[static_cast<size_t>(ri)];
            for (int64_t zi = 0; zi < nzo; ++zi) {
              const auto& zo = z_off[static_cast<size_t>(zi)];
              entry[static_cast<size_t>(ri * nzo + zi)] = {row[0] + zo[0],
                                                           round_as<Storage<decltype(ot)>>(dot(row[1] + zo[1], row[2] + zo[2]))};
            }
          }
        });
        std::sort(entry.begin(), entry.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
        to_nonzeros(entry, *out_nz);
      });
    });
  });
  return true;
}

// ---- the executor's plan ----

namespace {

// Whether n's output may be mostly zero given which inputs may be: kinds whose output is zero
// wherever a sparse input is (for finite other inputs), and einsums of two sparse operands (an
// einsum of a sparse and a dense operand usually sums the zeros away: combine's output is dense).
}  // namespace

SparseEinsums::SparseEinsums(const Graph& g, const std::vector<bool>& kept) : g_(g) {
  SparsityPlan plan = plan_sparsity(g, kept);
  maybe_sparse_ = std::move(plan.maybe_sparse);
  deferrable_ = std::move(plan.deferrable);
  mask_ = std::move(plan.mask);
  found_.assign(g.values.size(), Found::unknown);
  nz_.resize(g.values.size());
}

void SparseEinsums::begin_run() {
  std::fill(found_.begin(), found_.end(), Found::unknown);
  stats_ = {};
}

const Nonzeros* SparseEinsums::nonzeros(ValueId v, const Ptr& ptr) {
  const auto i = static_cast<size_t>(v.v);
  if (!maybe_sparse_[i]) return nullptr;
  if (found_[i] == Found::unknown) {
    const TensorType& t = g_.type(v);
    const int64_t n = num_elements(t.shape);
    const bool sparse = n >= kMinSparse && find_nonzeros(ConstView{ptr(v), t}, n / 4, nz_[i]);
    found_[i] = sparse ? Found::sparse : Found::dense;
  }
  return found_[i] == Found::sparse || found_[i] == Found::deferred ? &nz_[i] : nullptr;
}

void SparseEinsums::materialize(ValueId v, const Ptr& ptr) {
  const auto i = static_cast<size_t>(v.v);
  if (found_[i] != Found::deferred) return;
  store_nonzeros(nz_[i], g_.type(v), ptr(v));
  found_[i] = Found::sparse;
  ++stats_.materialized;
}

void SparseEinsums::materialize_inputs(const Node& n, const Ptr& ptr) {
  for (ValueId v : n.inputs) materialize(v, ptr);
}

void SparseEinsums::produced(ValueId v, const Ptr& ptr) {
  const auto i = static_cast<size_t>(v.v);
  if (deferrable_[i]) {
    found_[i] = Found::deferred;
    ++stats_.deferred;
  } else {
    store_nonzeros(nz_[i], g_.type(v), ptr(v));
    found_[i] = Found::sparse;
  }
}

bool SparseEinsums::run(const Node& n, const Ptr& ptr) {
  if (n.outputs.empty()) return false;  // a duplicate (graph/cse.hpp): runs nowhere
  switch (n.kind) {
    case OpKind::einsum: return run_einsum(n, ptr);
    case OpKind::cast: return run_cast(n, ptr);
    case OpKind::one_hot: return run_one_hot(n, ptr);
    case OpKind::reduce_sum: return run_reduce_sum(n, ptr);
    default: return false;
  }
}

bool SparseEinsums::run_one_hot(const Node& n, const Ptr& ptr) {
  const ValueId ids = n.inputs.at(0), y = n.outputs.at(0);
  if (!deferrable_[static_cast<size_t>(y.v)] || g_.type(ids).dtype != DType::i32) return false;
  const int64_t classes = g_.type(y).shape.back().size;
  const int64_t rows = num_elements(g_.type(ids).shape);
  const auto* id = reinterpret_cast<const int32_t*>(ptr(ids));
  Nonzeros& out = nz_[static_cast<size_t>(y.v)];
  out.index.clear();
  out.value.clear();
  for (int64_t r = 0; r < rows; ++r)
    if (id[r] >= 0 && id[r] < classes) {  // out of range: an all-zero row (ops/index.cpp)
      out.index.push_back(r * classes + id[r]);
      out.value.push_back(1.0f);
    }
  produced(y, ptr);
  return true;
}

bool SparseEinsums::run_cast(const Node& n, const Ptr& ptr) {
  const ValueId x = n.inputs.at(0), y = n.outputs.at(0);
  const TensorType& yt = g_.type(y);
  if (!maybe_sparse_[static_cast<size_t>(y.v)] || !is_float(yt.dtype)) return false;
  const Nonzeros* nz = nonzeros(x, ptr);
  if (!nz) return false;
  Nonzeros& out = nz_[static_cast<size_t>(y.v)];
  out.index = nz->index;
  out.value.resize(nz->value.size());
  visit_float(yt.dtype, [&](auto* tag) {
    for (size_t j = 0; j < nz->index.size(); ++j) out.value[j] = round_as<Storage<decltype(tag)>>(nz->value[j]);
  });
  produced(y, ptr);
  return true;
}

bool SparseEinsums::run_reduce_sum(const Node& n, const Ptr& ptr) {
  const ValueId x = n.inputs.at(0), y = n.outputs.at(0);
  if (found_[static_cast<size_t>(x.v)] != Found::deferred) return false;  // written densely: the dense kernel
  const TensorType& xt = g_.type(x);
  const TensorType& yt = g_.type(y);
  if (!is_float(yt.dtype)) return false;
  const Nonzeros& nz = nz_[static_cast<size_t>(x.v)];
  // Each nonzero adds to the element of y at its coordinates without the summed dims, in order.
  const std::vector<int64_t> zeros(xt.shape.size(), 0);
  const auto off = nonzero_offsets(nz, xt.shape, {strides_in(xt.shape, yt.shape), zeros, zeros});
  std::vector<float> acc(static_cast<size_t>(num_elements(yt.shape)), 0.0f);
  for (size_t j = 0; j < off.size(); ++j) acc[static_cast<size_t>(off[j][0])] += nz.value[j];
  visit_float(yt.dtype, [&](auto* tag) {
    auto* yp = reinterpret_cast<Storage<decltype(tag)>*>(ptr(y));
    for (size_t j = 0; j < acc.size(); ++j) st(yp, static_cast<int64_t>(j), acc[j]);
  });
  return true;
}

bool SparseEinsums::run_einsum(const Node& n, const Ptr& ptr) {
  const ValueId y = n.outputs.at(0);
  const TensorType& ot = g_.type(y);
  const TensorType& at = g_.type(n.inputs.at(0));
  const TensorType& bt = g_.type(n.inputs.at(1));
  const View out{ptr(y), ot};
  // Multiply-adds of the dense contraction: |out| times the summed dims.
  int64_t summed = 1;
  for (const Dim& d : at.shape)
    if (!has_dim(ot.shape, d.name)) summed *= d.size;
  const double dense = static_cast<double>(num_elements(ot.shape)) * static_cast<double>(summed);
  const bool defer = deferrable_[static_cast<size_t>(y.v)];

  if (const ValueId m = mask_[static_cast<size_t>(n.id.v)]; m.valid()) {
    const Nonzeros* nz = nonzeros(m, ptr);
    if (!nz) return false;
    const Shape& ms = g_.type(m).shape;
    int64_t free = 1;  // out's elements per needed row
    for (const Dim& d : ot.shape)
      if (!has_dim(ms, d.name)) free *= d.size;
    const double work = static_cast<double>(nz->index.size()) * static_cast<double>(free) * static_cast<double>(summed) +
                        (defer ? 0.0 : static_cast<double>(num_elements(ot.shape)));
    if (work * kDenseAdvantage > dense) return false;
    materialize_inputs(n, ptr);
    const ConstView a{ptr(n.inputs[0]), at}, b{ptr(n.inputs[1]), bt};
    if (!defer) return einsum_masked(a, b, *nz, g_.type(m), out);
    if (!einsum_masked(a, b, *nz, g_.type(m), out, &nz_[static_cast<size_t>(y.v)])) return false;
    produced(y, ptr);
    return true;
  }

  const Nonzeros* nz_a = nonzeros(n.inputs[0], ptr);
  const Nonzeros* nz_b = nonzeros(n.inputs[1], ptr);
  // Both sparse: pairs of nonzeros, when they are few (the one-hot dispatch and combine tensors
  // from their [G, S, K, E] and [G, S, K, C] factors; the gradient of the gates from d combine).
  if (nz_a && nz_b && n.inputs[0] != n.inputs[1]) {
    const auto max_pairs = static_cast<int64_t>(dense / kDenseAdvantage);
    Nonzeros& o = nz_[static_cast<size_t>(y.v)];
    if (einsum_sparse_sparse(*nz_a, at, *nz_b, bt, ot, max_pairs, o)) {
      produced(y, ptr);
      return true;
    }
  }

  // Sparse x dense: of the operands with few nonzeros, the one with the least work.
  double best = dense / kDenseAdvantage;
  int pick = -1;
  const Nonzeros* pick_nz = nullptr;
  for (int i = 0; i < 2; ++i) {
    const Nonzeros* nz = i == 0 ? nz_a : nz_b;
    if (!nz) continue;
    const TensorType& pt = i == 0 ? at : bt;
    const TensorType& qt = i == 0 ? bt : at;
    int64_t row = 1;  // q's dims not in p
    for (const Dim& d : qt.shape)
      if (!has_dim(pt.shape, d.name)) row *= d.size;
    const double work = static_cast<double>(nz->index.size()) * static_cast<double>(row) +
                        static_cast<double>(num_elements(ot.shape));
    if (work < best) {
      best = work;
      pick = i;
      pick_nz = nz;
    }
  }
  if (pick < 0) return false;
  const auto p = static_cast<size_t>(pick);
  materialize(n.inputs[1 - p], ptr);
  const bool zeroed = zero_output_ && zero_output_(n, pick, *pick_nz);
  return einsum_sparse_dense(*pick_nz, g_.type(n.inputs[p]), ConstView{ptr(n.inputs[1 - p]), g_.type(n.inputs[1 - p])},
                             out, !zeroed);
}

}  // namespace sy::exec
