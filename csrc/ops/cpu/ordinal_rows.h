#pragma once

// Vectorised per-row math of the ordinal ops (the losses and the fused rank
// prediction), compiled once per CPU capability (vec_default.cpp,
// vec_avx2.cpp, vec_avx512.cpp) inside ATen's `inline namespace
// CPU_CAPABILITY` and picked at run time (vec_isa.h). Only included by those
// translation units; the kernels see the declarations in vec_isa.h.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <ATen/cpu/vec/vec.h>

#include "../ordinal_math.h"
#include "vec_extra.h"

namespace facecore::ops::ordinal::cpu {
inline namespace CPU_CAPABILITY {

// log1p(e) for e in [0, 1] (e = exp(-|x|) here). float: the atanh series
// log1p(e) = 2 atanh(t) = 2 t (1 + t^2/3 + t^4/5 + ...), t = e / (2 + e) <= 1/3,
// truncated after t^12/13 (relative truncation error < (1/3)^14 / 15 = 1.4e-8,
// below float's 6e-8 rounding) and evaluated with FMAs: several times cheaper
// than SLEEF's general log1p, and exact in relative terms for tiny e, where
// log(1 + e) would round to 0. double: SLEEF's log1p.
template <typename T>
inline at::vec::Vectorized<T> log1p_unit(const at::vec::Vectorized<T>& e) {
  return e.log1p();
}

template <>
inline at::vec::Vectorized<float> log1p_unit<float>(const at::vec::Vectorized<float>& e) {
  using Vec = at::vec::Vectorized<float>;
  const Vec t = e / (Vec(2.f) + e);
  const Vec t2 = t * t;
  Vec p(1.f / 13.f);
  p = at::vec::fmadd(p, t2, Vec(1.f / 11.f));
  p = at::vec::fmadd(p, t2, Vec(1.f / 9.f));
  p = at::vec::fmadd(p, t2, Vec(1.f / 7.f));
  p = at::vec::fmadd(p, t2, Vec(1.f / 5.f));
  p = at::vec::fmadd(p, t2, Vec(1.f / 3.f));
  p = at::vec::fmadd(p, t2, Vec(1.f));
  return Vec(2.f) * t * p;
}

// One chunk [k0, k0 + n) of one row's tasks.
//   x      logits of the chunk (x[0] is task k0)
//   y      the row's label; task k has target (y > k)
//   active tasks k >= active are skipped (CORAL: K-1, CORN: min(y + 1, K-1))
//   w      importance weights of the chunk, or nullptr for all ones
//   g      if not nullptr, receives gscale * w_k * (sigmoid(x_k) - target_k)
// Returns sum_k w_k * softplus(+-x_k) over the active tasks of the chunk, with
// softplus(-x) for target 1 and softplus(x) for target 0 (the stable form of
// -[t log s(x) + (1 - t) log(1 - s(x))]).
template <typename T>
T loss_row_impl(
    const T* x,
    int64_t k0,
    int64_t n,
    int64_t y,
    int64_t active,
    const T* w,
    T gscale,
    T* g) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const Vec zero(T(0));
  const Vec one(T(1));
  const Vec yv(static_cast<T>(y));
  const Vec limit(static_cast<T>(std::min<int64_t>(active, k0 + n)));
  const Vec gs(gscale);
  Vec acc(T(0));
  for (int64_t j = 0; j < n; j += V) {
    const int64_t cnt = std::min<int64_t>(V, n - j);
    const Vec xv = Vec::loadu(x + j, cnt);
    const Vec kv = Vec::arange(static_cast<T>(k0 + j), T(1));
    const Vec valid = kv < limit;
    const Vec target_mask = kv < yv;
    const Vec target = Vec::blendv(zero, one, target_mask);
    // softplus(x) for target 0, softplus(-x) for target 1; finite for +-inf.
    const Vec sx = Vec::blendv(xv, zero - xv, target_mask);
    const Vec e = (zero - xv.abs()).exp();
    Vec loss = at::vec::maximum(sx, zero) + log1p_unit<T>(e);
    const Vec sig = Vec::blendv(e, one, xv >= zero) / (one + e);
    Vec grad = sig - target;
    if (w != nullptr) {
      const Vec wv = Vec::loadu(w + j, cnt);
      loss = loss * wv;
      grad = grad * wv;
    }
    acc = acc + Vec::blendv(zero, loss, valid);
    if (g != nullptr) {
      Vec::blendv(zero, grad * gs, valid).store(g + j, cnt);
    }
  }
  T lanes[V];
  acc.store(lanes);
  T s = T(0);
  for (int64_t i = 0; i < V; ++i) {
    s += lanes[i];
  }
  return s;
}

// log1p(e) for e in [0, 1] without a division: e * P(e), P of degree 10
// fitted to log1p(e) / e on Chebyshev nodes (relative error < 3e-7 in float
// arithmetic, exact for tiny e). double: SLEEF's log1p.
template <typename T>
inline at::vec::Vectorized<T> log1p_unit_poly(const at::vec::Vectorized<T>& e) {
  return e.log1p();
}

template <>
inline at::vec::Vectorized<float> log1p_unit_poly<float>(const at::vec::Vectorized<float>& e) {
  using Vec = at::vec::Vectorized<float>;
  // Estrin's scheme: a short dependency chain
  const Vec e2 = e * e;
  const Vec e4 = e2 * e2;
  const Vec a0 = at::vec::fmadd(Vec(-0.4999998211860657f), e, Vec(1.0f));
  const Vec a1 = at::vec::fmadd(Vec(-0.24987392127513885f), e, Vec(0.33332568407058716f));
  const Vec a2 = at::vec::fmadd(Vec(-0.1610863208770752f), e, Vec(0.19891537725925446f));
  const Vec a3 = at::vec::fmadd(Vec(-0.08253533393144608f), e, Vec(0.12425103038549423f));
  const Vec a4 = at::vec::fmadd(Vec(-0.013444830663502216f), e, Vec(0.04155762121081352f));
  const Vec a5(0.0020376904867589474f);
  const Vec b0 = at::vec::fmadd(a1, e2, a0);
  const Vec b1 = at::vec::fmadd(a3, e2, a2);
  const Vec b2 = at::vec::fmadd(a5, e2, a4);
  const Vec p = at::vec::fmadd(at::vec::fmadd(b2, e4, b1), e4, b0);
  return p * e;
}

// log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)); 0 at +inf, -inf at -inf,
// NaN for NaN.
template <typename T>
inline at::vec::Vectorized<T> log_sigmoid_vec(const at::vec::Vectorized<T>& x) {
  using Vec = at::vec::Vectorized<T>;
  const Vec zero(T(0));
  const Vec e = ::facecore::ops::cpu::exp_fast<T>(zero - x.abs());
  // min(x, 0): a NaN x gives 0 here, and NaN from log1p
  return ::facecore::ops::cpu::Lanes<T>::min(x, zero) - log1p_unit_poly<T>(e);
}

// Rank prediction of one row, one pass over its logits x[0, n), each output
// optional (nullptr: not computed).
//   label     #{k : P(y > k) > t}
//   cum[k]    P(y > k)
//   cls[k]    P(y = k), k = 0..n (n + 1 entries)
//   expected  sum_k m_k = sum_k k P(y = k)
// with the envelope m_k of facecore/reference/ordinal.py (CORAL: running
// minimum of P(y > k); CORN: P(y > k) itself). Chunks of V lanes; the last,
// partial chunk is padded with -inf logits, which count for nothing (no
// label, P(y > k) = 0, so m_k = 0 adds nothing to the expected rank).
//
// CORAL: label = #{k : x_k > thr}, thr = the logit of t rounded down to T
//   (x > thr in T <=> x > logit(t) in float64): no sigmoid for the labels.
//   P(y > k) = sigmoid(x_k) (stable form); m = running minimum across the
//   chunk's lanes (shuffles) and the previous chunk's last m. A row with a
//   NaN logit repeats the envelope with the scalar code (NaN propagation of
//   torch.cummin, which the shuffled min does not give).
// CORN: L_k = sum_{j <= k} log sigmoid(x_j) (running sum across the lanes),
//   label = #{k : L_k > thr}, thr = log sigmoid(logit(t)) computed by the
//   same function (x_0 = logit(t) is an exact tie and does not count);
//   P(y > k) = exp(L_k). L never increases, so the labels-only pass stops at
//   the first chunk that ends at or below thr (or NaN).
template <typename T>
void coral_row(const T* x, int64_t n, T thr, int64_t* label, T* cum, T* cls, T* expected) {
  using Vec = at::vec::Vectorized<T>;
  using Ln = ::facecore::ops::cpu::Lanes<T>;
  constexpr int64_t V = Vec::size();
  const Vec zero(T(0));
  const Vec one(T(1));
  const Vec thrv(thr);
  const bool env = cls != nullptr || expected != nullptr;
  const bool probs = env || cum != nullptr;
  Vec count(T(0));
  Vec total(T(0));
  Vec carry(T(1));
  Vec nan(T(0));
  auto chunk = [&](const Vec& xv, int64_t k0, int64_t cnt) {
    if (label != nullptr) {
      count = count + (one & (xv > thrv));
    }
    if (!probs) {
      return;
    }
    const Vec e = ::facecore::ops::cpu::exp_fast<T>(zero - xv.abs());
    const Vec q = Vec::blendv(e, one, xv >= zero) / (one + e);
    if (cum != nullptr) {
      cnt == V ? q.store(cum + k0) : q.store(cum + k0, cnt);
    }
    if (env) {
      nan = nan | (xv != xv);
      const Vec m = Ln::min(Ln::prefix_min(q), carry);
      if (cls != nullptr) {
        const Vec c = Ln::shift_in(m, carry) - m;
        cnt == V ? c.store(cls + k0) : c.store(cls + k0, cnt);
      }
      total = total + m;
      carry = Ln::broadcast(m, static_cast<int>(cnt - 1));
    }
  };
  int64_t k0 = 0;
  for (; k0 + V <= n; k0 += V) {
    chunk(Vec::loadu(x + k0), k0, V);
  }
  if (k0 < n) {
    const Vec pad(-std::numeric_limits<T>::infinity());
    chunk(Vec::set(pad, Vec::loadu(x + k0, n - k0), n - k0), k0, n - k0);
  }
  if (label != nullptr) {
    *label = static_cast<int64_t>(Ln::sum(count));
  }
  if (!env) {
    return;
  }
  if (Ln::any(nan)) {
    probs_row<T, T>(x, n, false, nullptr, cls, expected);
    return;
  }
  if (cls != nullptr) {
    cls[n] = Ln::first(carry);
  }
  if (expected != nullptr) {
    *expected = Ln::sum(total);
  }
}

// CORN: blocks of up to kBlock tasks in two passes, the log-sigmoids of the
// block first (independent chunks, into an L1 buffer), then the running sum,
// labels and probabilities. Splitting the long dependency chain of one chunk
// (exp, log1p, lane scan, exp) lets the CPU overlap many more chunks.
template <typename T>
void corn_row(const T* x, int64_t n, T thr, int64_t* label, T* cum, T* cls, T* expected) {
  using Vec = at::vec::Vectorized<T>;
  using Ln = ::facecore::ops::cpu::Lanes<T>;
  constexpr int64_t V = Vec::size();
  constexpr int64_t kBlock = 32 * V;
  const Vec one(T(1));
  const Vec thrv(thr);
  const Vec pad(-std::numeric_limits<T>::infinity());
  const bool probs = cum != nullptr || cls != nullptr || expected != nullptr;
  Vec count(T(0));
  Vec total(T(0));
  Vec carry_l(T(0)); // L at the end of the previous chunk
  Vec carry_m(T(1)); // P(y > k) at the end of the previous chunk
  T ls[kBlock];
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t bn = std::min<int64_t>(kBlock, n - b0);
    // pass 1: log sigmoid of the block (the partial last chunk padded with -inf)
    for (int64_t j = 0; j < bn; j += V) {
      const int64_t cnt = std::min<int64_t>(V, bn - j);
      const Vec xv = cnt == V ? Vec::loadu(x + b0 + j)
                              : Vec::set(pad, Vec::loadu(x + b0 + j, cnt), cnt);
      log_sigmoid_vec<T>(xv).store(ls + j);
    }
    // pass 2: running sums, labels, probabilities
    bool done = false;
    for (int64_t j = 0; j < bn; j += V) {
      const int64_t cnt = std::min<int64_t>(V, bn - j);
      const int64_t k0 = b0 + j;
      const Vec l = Ln::prefix_sum(Vec::loadu(ls + j)) + carry_l;
      carry_l = Ln::broadcast(l, static_cast<int>(cnt - 1));
      if (label != nullptr) {
        count = count + (one & (l > thrv));
      }
      if (!probs) {
        if (!(Ln::first(carry_l) > thr)) {
          done = true; // labels only: every later L_k <= L at this point <= thr
          break;
        }
        continue;
      }
      const Vec q = ::facecore::ops::cpu::exp_fast<T>(l);
      if (cum != nullptr) {
        cnt == V ? q.store(cum + k0) : q.store(cum + k0, cnt);
      }
      if (cls != nullptr) {
        const Vec c = Ln::shift_in(q, carry_m) - q;
        cnt == V ? c.store(cls + k0) : c.store(cls + k0, cnt);
      }
      total = total + q;
      carry_m = Ln::broadcast(q, static_cast<int>(cnt - 1));
    }
    if (done) {
      break;
    }
  }
  if (label != nullptr) {
    *label = static_cast<int64_t>(Ln::sum(count));
  }
  if (cls != nullptr) {
    cls[n] = Ln::first(carry_m);
  }
  if (expected != nullptr) {
    *expected = Ln::sum(total);
  }
}

// The decision threshold of predict_rows_impl for the logit of t.
template <typename T>
T predict_threshold(bool corn, double logit_t) {
  if (corn) {
    return ::facecore::ops::cpu::Lanes<T>::first(
        log_sigmoid_vec<T>(at::vec::Vectorized<T>(static_cast<T>(logit_t))));
  }
  T thr = static_cast<T>(logit_t);
  if (static_cast<double>(thr) > logit_t) {
    thr = std::nextafter(thr, -std::numeric_limits<T>::infinity());
  }
  return thr;
}

// `rows` contiguous rows of n logits; the outputs (nullable) are the row
// outputs of coral_row / corn_row, advanced row by row.
template <typename T>
void predict_rows_impl(
    const T* x,
    int64_t rows,
    int64_t n,
    bool corn,
    double logit_t,
    int64_t* label,
    T* cum,
    T* cls,
    T* expected) {
  const T thr = predict_threshold<T>(corn, logit_t);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t* lr = label == nullptr ? nullptr : label + r;
    T* cr = cum == nullptr ? nullptr : cum + r * n;
    T* pr = cls == nullptr ? nullptr : cls + r * (n + 1);
    T* er = expected == nullptr ? nullptr : expected + r;
    if (corn) {
      corn_row<T>(x + r * n, n, thr, lr, cr, pr, er);
    } else {
      coral_row<T>(x + r * n, n, thr, lr, cr, pr, er);
    }
  }
}

} // namespace CPU_CAPABILITY
} // namespace facecore::ops::ordinal::cpu
