#pragma once

// Scalar per-row math of the ordinal op family, shared verbatim by the CPU
// kernels (one row per loop iteration) and the CUDA kernels (one row per
// thread). Everything accumulates in acc_t (fp32 for half types and fp32, fp64
// for fp64). Semantics match facecore/reference/ordinal.py.

#include <cmath>
#include <cstdint>

#include <c10/macros/Macros.h>

namespace facecore::ops::ordinal {

template <typename acc_t>
C10_HOST_DEVICE inline acc_t stable_sigmoid(acc_t x) {
  const acc_t e = std::exp(-std::abs(x));
  return (x >= acc_t(0) ? acc_t(1) : e) / (acc_t(1) + e);
}

// log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)); NaN in, NaN out.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t log_sigmoid(acc_t x) {
  return (x < acc_t(0) ? x : acc_t(0)) - std::log1p(std::exp(-std::abs(x)));
}

// Probabilities of one row; each output may be nullptr (not computed).
//   cum[k]  = P(y > k): CORAL sigmoid(x_k); CORN prod_{j <= k} sigmoid(x_j),
//             accumulated as a sum of log-sigmoids.
//   m_k     = the monotone envelope used for class probabilities: CORAL the
//             running minimum of cum (equal to cum when the head is rank
//             consistent), CORN cum itself (already non-increasing).
//   cls[k]  = m_{k-1} - m_k with m_{-1} = 1 and m_{K-1} = 0 (K = T + 1 entries,
//             non-negative, summing to 1).
//   *expected = sum_k m_k = sum_k k * cls[k].
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline void probs_row(
    const scalar_t* x,
    int64_t T,
    bool corn,
    scalar_t* cum,
    scalar_t* cls,
    scalar_t* expected) {
  acc_t prev = acc_t(1);
  acc_t L = acc_t(0);
  acc_t total = acc_t(0);
  for (int64_t k = 0; k < T; ++k) {
    const acc_t xk = static_cast<acc_t>(x[k]);
    acc_t q;
    acc_t m;
    if (corn) {
      L += log_sigmoid<acc_t>(xk);
      q = std::exp(L);
      m = q;
    } else {
      q = stable_sigmoid<acc_t>(xk);
      // torch.cummin semantics: a tie moves the minimum to the later index;
      // NaN propagates.
      m = (k == 0 || q <= prev || q != q) ? q : prev;
    }
    if (cum != nullptr) {
      cum[k] = static_cast<scalar_t>(q);
    }
    if (cls != nullptr) {
      cls[k] = static_cast<scalar_t>(prev - m);
    }
    total += m;
    prev = m;
  }
  if (cls != nullptr) {
    cls[T] = static_cast<scalar_t>(prev);
  }
  if (expected != nullptr) {
    *expected = static_cast<scalar_t>(total);
  }
}

// Backward of probs_row for one row. g_cum [T], g_cls [T + 1], g_exp scalar;
// writes grad [T]. `scratch` holds T acc_t values (used by CORN only).
// With c_0 = 1 - m_0, c_k = m_{k-1} - m_k, c_T = m_{T-1}, E = sum m_k:
//   dL/dm_k = g_cls[k + 1] - g_cls[k] + g_exp.
//   CORAL: m_k = q_{a(k)} (a = index of the running minimum); the gradient of
//          every m_k goes to q_{a(k)}, then dq/dx = q (1 - q).
//   CORN:  m_k = P_k = prod_{j <= k} s_j; dP_k/dx_j = P_k (1 - s_j) for j <= k,
//          so grad_j = (1 - s_j) sum_{k >= j} (g_cum[k] + dL/dm_k) P_k.
template <typename scalar_t, typename acc_t>
C10_HOST_DEVICE inline void probs_backward_row(
    const scalar_t* g_cum,
    const scalar_t* g_cls,
    acc_t g_exp,
    const scalar_t* x,
    int64_t T,
    bool corn,
    acc_t* scratch,
    scalar_t* grad) {
  auto dm = [&](int64_t k) {
    return static_cast<acc_t>(g_cls[k + 1]) - static_cast<acc_t>(g_cls[k]) + g_exp;
  };
  if (corn) {
    acc_t L = acc_t(0);
    for (int64_t k = 0; k < T; ++k) {
      L += log_sigmoid<acc_t>(static_cast<acc_t>(x[k]));
      scratch[k] = (static_cast<acc_t>(g_cum[k]) + dm(k)) * std::exp(L);
    }
    acc_t S = acc_t(0);
    for (int64_t k = T - 1; k >= 0; --k) {
      S += scratch[k];
      grad[k] = static_cast<scalar_t>(stable_sigmoid<acc_t>(-static_cast<acc_t>(x[k])) * S);
    }
    return;
  }
  // CORAL: stream over k keeping the current argmin a, its q and the gradient
  // pending for it; an index that never becomes the argmin at its own position
  // only receives g_cum.
  int64_t a = 0;
  acc_t qa = stable_sigmoid<acc_t>(static_cast<acc_t>(x[0]));
  acc_t m = qa;
  acc_t pending = dm(0);
  for (int64_t k = 1; k < T; ++k) {
    const acc_t q = stable_sigmoid<acc_t>(static_cast<acc_t>(x[k]));
    if (q <= m || q != q) {
      grad[a] = static_cast<scalar_t>((static_cast<acc_t>(g_cum[a]) + pending) * qa * (acc_t(1) - qa));
      a = k;
      qa = q;
      m = q;
      pending = dm(k);
    } else {
      grad[k] = static_cast<scalar_t>(static_cast<acc_t>(g_cum[k]) * q * (acc_t(1) - q));
      pending += dm(k);
    }
  }
  grad[a] = static_cast<scalar_t>((static_cast<acc_t>(g_cum[a]) + pending) * qa * (acc_t(1) - qa));
}

} // namespace facecore::ops::ordinal
