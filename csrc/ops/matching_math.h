#pragma once

// Scalar math of the face-matching losses, shared verbatim by the CPU and CUDA
// kernels. Semantics match facecore/reference/matching.py, which follows
// pytorch-metric-learning (PML) 2.x:
//   TripletMarginMiner: t = d_an - d_ap; 'all' t <= m, 'hard' t <= m and t <= 0,
//                       'semihard' 0 < t <= m, 'easy' t > m (NaN never mined).
//   TripletMarginLoss:  v = d_ap - d_an' + margin, d_an' = min(d_an, d_pn) with
//                       swap; loss relu(v), or softplus(v) (torch's, threshold 20).
//   ContrastiveLoss:    positive relu(d - m_pos), negative relu(m_neg - d);
//                       Hadsell form 1/2 relu(.)^2 instead.

#include <cmath>
#include <cstdint>

#include <c10/macros/Macros.h>

namespace facecore::ops::matching {

enum class Mining : int { None = 0, All, Hard, SemiHard, Easy, BatchHard };
enum class PairForm : int { DoubleMargin = 0, Hadsell };

// Whether a triplet with t = d_an - d_ap is mined (PML's TripletMarginMiner).
template <typename acc_t>
C10_HOST_DEVICE inline bool is_mined(Mining mining, acc_t t, acc_t mm) {
  switch (mining) {
    case Mining::All:
      return t <= mm;
    case Mining::Hard:
      return (t <= mm) & (t <= acc_t(0));
    case Mining::SemiHard:
      return (t <= mm) & (t > acc_t(0));
    case Mining::Easy:
      return t > mm;
    default:
      return true;
  }
}

// torch.nn.functional.softplus(v) with beta 1, threshold 20, and its derivative.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t softplus(acc_t v) {
  return v > acc_t(20) ? v : std::log1p(std::exp(v));
}

template <typename acc_t>
C10_HOST_DEVICE inline acc_t softplus_grad(acc_t v) {
  if (v > acc_t(20)) {
    return acc_t(1);
  }
  const acc_t z = std::exp(v);
  return z / (z + acc_t(1));
}

// relu with NaN propagation (torch.relu(NaN) = NaN); its derivative is
// torch's threshold_backward: 1 where v > 0, else 0 (NaN -> 0).
template <typename acc_t>
C10_HOST_DEVICE inline acc_t relu_nan(acc_t v) {
  return v < acc_t(0) ? acc_t(0) : v; // NaN < 0 is false
}

// min(d_an, d_pn) with NaN propagation (torch.minimum), and the weights of
// d_an and d_pn in its gradient (torch.minimum's backward: a tie splits the
// gradient in half; with a NaN both get it).
template <typename acc_t>
C10_HOST_DEVICE inline acc_t min_nan(acc_t a, acc_t b) {
  return ((b < a) | (b != b)) ? b : a;
}

template <typename acc_t>
C10_HOST_DEVICE inline void min_weights(acc_t dan, acc_t dpn, acc_t* w_an, acc_t* w_pn) {
  // branch-free: 1 - [d_an > d_pn] - [tie] / 2
  const acc_t eq = static_cast<acc_t>(dan == dpn);
  *w_an = acc_t(1) - static_cast<acc_t>(dan > dpn) - acc_t(0.5) * eq;
  *w_pn = acc_t(1) - static_cast<acc_t>(dan < dpn) - acc_t(0.5) * eq;
}

// One term h(v) and dh/dv of the triplet loss.
template <typename acc_t>
C10_HOST_DEVICE inline void triplet_term(bool soft, acc_t v, acc_t* l, acc_t* g) {
  if (soft) {
    *l = softplus(v);
    *g = softplus_grad(v);
  } else {
    *l = relu_nan(v);
    *g = static_cast<acc_t>(v > acc_t(0));
  }
}

// One term h(u) and dh/du of the contrastive loss, u = d - m_pos for positive
// pairs and u = m_neg - d for negative pairs.
template <typename acc_t>
C10_HOST_DEVICE inline void pair_term(PairForm form, acc_t u, acc_t* l, acc_t* g) {
  if (form == PairForm::Hadsell) {
    const acc_t r = relu_nan(u);
    *l = acc_t(0.5) * r * r;
    *g = u > acc_t(0) ? u : acc_t(0);
  } else {
    *l = relu_nan(u);
    *g = u > acc_t(0) ? acc_t(1) : acc_t(0);
  }
}

} // namespace facecore::ops::matching
