#pragma once

// Vectorised per-row math of the ordinal losses, compiled once per CPU
// capability (ordinal_rows_default.cpp, ordinal_rows_avx2.cpp) inside ATen's
// `inline namespace CPU_CAPABILITY`, and picked at run time by
// ordinal_rows_dispatch.h. Only included by those translation units.

#include <algorithm>
#include <cstdint>

#include <ATen/cpu/vec/vec.h>

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

float loss_row(
    const float* x, int64_t k0, int64_t n, int64_t y, int64_t active,
    const float* w, float gscale, float* g);
double loss_row(
    const double* x, int64_t k0, int64_t n, int64_t y, int64_t active,
    const double* w, double gscale, double* g);

} // namespace CPU_CAPABILITY
} // namespace facecore::ops::ordinal::cpu

// Definitions for the translation unit that includes this header with
// FACECORE_DEFINE_LOSS_ROWS set.
#ifdef FACECORE_DEFINE_LOSS_ROWS
namespace facecore::ops::ordinal::cpu {
inline namespace CPU_CAPABILITY {
float loss_row(
    const float* x, int64_t k0, int64_t n, int64_t y, int64_t active,
    const float* w, float gscale, float* g) {
  return loss_row_impl<float>(x, k0, n, y, active, w, gscale, g);
}
double loss_row(
    const double* x, int64_t k0, int64_t n, int64_t y, int64_t active,
    const double* w, double gscale, double* g) {
  return loss_row_impl<double>(x, k0, n, y, active, w, gscale, g);
}
} // namespace CPU_CAPABILITY
} // namespace facecore::ops::ordinal::cpu
#endif
