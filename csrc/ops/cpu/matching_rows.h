#pragma once

// Vectorised hinge pass of the triplet losses (mining none / all / hard /
// semihard / easy, no swap), compiled once per CPU capability like
// ordinal_rows.h (see vec_isa.h). Only included by the vec_*.cpp units.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <ATen/cpu/vec/vec.h>

#include "../matching_math.h"

namespace facecore::ops::matching::cpu {
inline namespace CPU_CAPABILITY {

// The mining rule of is_mined (../matching_math.h) as a lane mask; NaN is
// never mined (every comparison is false), except by Mining::None.
template <typename T, Mining kMining>
inline at::vec::Vectorized<T> mined_mask(
    const at::vec::Vectorized<T>& t,
    const at::vec::Vectorized<T>& mm,
    const at::vec::Vectorized<T>& zero) {
  if constexpr (kMining == Mining::All) {
    return t <= mm;
  } else if constexpr (kMining == Mining::Hard) {
    return (t <= mm) & (t <= zero);
  } else if constexpr (kMining == Mining::SemiHard) {
    return (t <= mm) & (t > zero);
  } else if constexpr (kMining == Mining::Easy) {
    return t > mm;
  } else {
    return zero == zero;
  }
}

// All (p, n) triplets of one anchor a, in one pass over its distance row.
//   Da       row a of the distance matrix [B]
//   neg      1 for the anchor's negatives, 0 elsewhere [B]
//   dap      d(a, p) of its npos positives
// For each column n (V lanes at a time) every positive is tested in turn,
// branch-free (masks), and the gradient of the row, sum_p dh/dv, is
// accumulated in registers and written once:
//   Ga[n]   -= sum_p h'(v_apn)          (Ga nullable; row a of dL/d(dist))
//   gpos[j]  = sum_n h'(v_apn)          (the caller adds it to Ga[p_j])
// with v = d_ap - d_an + margin, h = relu (NaN kept) or torch's softplus.
// A mined term counts when its loss is > 0, or always with keep_zero
// ('mean' / 'sum' reductions); *loss, *active, *mined are that anchor's sum
// of counted losses, number of mined terms with a loss > 0, number mined.
template <typename T, Mining kMining, bool kSoft>
void triplet_anchor_t(
    const T* Da,
    const T* neg,
    int64_t B,
    const T* dap,
    int64_t npos,
    T margin,
    T mining_margin,
    bool keep_zero,
    T* Ga,
    T* gpos,
    double* loss,
    int64_t* active,
    int64_t* mined) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t V = Vec::size();
  constexpr int64_t P = 16; // positives per pass (their gradient sums stay in registers)
  // lane counts stay exact in T: flush them before they can reach 2^22
  constexpr int64_t kFlush = (int64_t(1) << 22) / P;
  const Vec zero(T(0));
  const Vec one(T(1));
  const Vec marg(margin);
  const Vec mmv(mining_margin);
  const Vec twenty(T(20));
  const Vec keep = keep_zero ? (zero == zero) : (zero != zero);
  Vec lsum(T(0));
  double total = 0.0;
  int64_t n_active = 0;
  int64_t n_mined = 0;
  for (int64_t pb = 0; pb < npos; pb += P) {
    const int64_t np = std::min<int64_t>(P, npos - pb);
    Vec gs[P];
    Vec dapv[P];
    for (int64_t j = 0; j < np; ++j) {
      gs[j] = zero;
      dapv[j] = Vec(dap[pb + j]);
    }
    Vec nact(T(0));
    Vec nmin(T(0));
    int64_t since_flush = 0;
    for (int64_t n0 = 0; n0 < B; n0 += V) {
      const int64_t cnt = std::min<int64_t>(V, B - n0);
      const bool full = cnt == V;
      const Vec dan = full ? Vec::loadu(Da + n0) : Vec::loadu(Da + n0, cnt);
      const Vec negm = (full ? Vec::loadu(neg + n0) : Vec::loadu(neg + n0, cnt)) != zero;
      Vec gacc(T(0));
      for (int64_t j = 0; j < np; ++j) {
        const Vec m = negm & mined_mask<T, kMining>(dan - dapv[j], mmv, zero);
        const Vec v = (dapv[j] - dan) + marg;
        Vec l;
        Vec g;
        if constexpr (kSoft) {
          const Vec big = v > twenty;
          const Vec z = v.exp();
          l = Vec::blendv(z.log1p(), v, big);
          g = Vec::blendv(z / (z + one), one, big);
        } else {
          l = Vec::blendv(v, zero, v < zero); // relu, NaN kept
          g = one & (v > zero);
        }
        const Vec pos = l > zero;
        const Vec take = m & (pos | keep);
        lsum = lsum + (take & l); // a term not taken adds +0, even a NaN one
        nact = nact + (one & (m & pos));
        nmin = nmin + (one & m);
        const Vec gv = take & g;
        gs[j] = gs[j] + gv;
        gacc = gacc + gv;
      }
      if (Ga != nullptr) {
        if (full) {
          (Vec::loadu(Ga + n0) - gacc).store(Ga + n0);
        } else {
          (Vec::loadu(Ga + n0, cnt) - gacc).store(Ga + n0, cnt);
        }
      }
      if (++since_flush == kFlush || n0 + V >= B) {
        T a[V];
        T b[V];
        nact.store(a);
        nmin.store(b);
        for (int64_t i = 0; i < V; ++i) {
          n_active += static_cast<int64_t>(a[i]);
          n_mined += static_cast<int64_t>(b[i]);
        }
        nact = zero;
        nmin = zero;
        since_flush = 0;
      }
    }
    if (gpos != nullptr) {
      for (int64_t j = 0; j < np; ++j) {
        T a[V];
        gs[j].store(a);
        T s = T(0);
        for (int64_t i = 0; i < V; ++i) {
          s += a[i];
        }
        gpos[pb + j] = s;
      }
    }
    T a[V];
    lsum.store(a);
    for (int64_t i = 0; i < V; ++i) {
      total += static_cast<double>(a[i]);
    }
    lsum = zero;
  }
  *loss = total;
  *active = n_active;
  *mined = n_mined;
}

#if defined(CPU_CAPABILITY_AVX512)
// triplet_anchor_t for float, hard hinge, with AVX-512 mask registers (the
// same arithmetic; about half the instructions of the Vectorized form, whose
// comparisons return vectors).
template <Mining kMining>
inline __mmask16 mined_k(__m512 t, __m512 mm) {
  if constexpr (kMining == Mining::All) {
    return _mm512_cmp_ps_mask(t, mm, _CMP_LE_OQ);
  } else if constexpr (kMining == Mining::Hard) {
    return _mm512_cmp_ps_mask(t, mm, _CMP_LE_OQ) &
        _mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_LE_OQ);
  } else if constexpr (kMining == Mining::SemiHard) {
    return _mm512_cmp_ps_mask(t, mm, _CMP_LE_OQ) &
        _mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_GT_OQ);
  } else if constexpr (kMining == Mining::Easy) {
    return _mm512_cmp_ps_mask(t, mm, _CMP_GT_OQ);
  } else {
    return static_cast<__mmask16>(0xFFFF);
  }
}

template <Mining kMining>
void triplet_anchor_hard_avx512(
    const float* Da,
    const float* neg,
    int64_t B,
    const float* dap,
    int64_t npos,
    float margin,
    float mining_margin,
    bool keep_zero,
    float* Ga,
    float* gpos,
    double* loss,
    int64_t* active,
    int64_t* mined) {
  constexpr int64_t V = 16;
  constexpr int64_t P = 16;
  const __m512 zero = _mm512_setzero_ps();
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 marg = _mm512_set1_ps(margin);
  const __m512 mmv = _mm512_set1_ps(mining_margin);
  const __mmask16 keep = keep_zero ? 0xFFFF : 0;
  __m512 lsum = zero;
  int64_t n_active = 0;
  int64_t n_mined = 0;
  for (int64_t pb = 0; pb < npos; pb += P) {
    const int64_t np = std::min<int64_t>(P, npos - pb);
    __m512 gs[P];
    __m512 dapv[P];
    for (int64_t j = 0; j < np; ++j) {
      gs[j] = zero;
      dapv[j] = _mm512_set1_ps(dap[pb + j]);
    }
    for (int64_t n0 = 0; n0 < B; n0 += V) {
      const int64_t cnt = std::min<int64_t>(V, B - n0);
      const __mmask16 lanes = cnt == V ? 0xFFFF : static_cast<__mmask16>((1u << cnt) - 1);
      const __m512 dan = _mm512_maskz_loadu_ps(lanes, Da + n0);
      const __mmask16 negk =
          _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(lanes, neg + n0), zero, _CMP_NEQ_UQ) & lanes;
      __m512 gacc = zero;
      for (int64_t j = 0; j < np; ++j) {
        const __m512 t = _mm512_sub_ps(dan, dapv[j]);
        const __mmask16 m = negk & mined_k<kMining>(t, mmv);
        // v = (d_ap - d_an) + margin (= margin - t exactly); relu keeps NaN:
        // max(0, v) returns its second operand when one is NaN
        const __m512 v = _mm512_add_ps(_mm512_sub_ps(dapv[j], dan), marg);
        const __m512 l = _mm512_max_ps(zero, v);
        const __mmask16 pos = _mm512_cmp_ps_mask(l, zero, _CMP_GT_OQ);
        const __mmask16 take = m & (pos | keep);
        lsum = _mm512_mask_add_ps(lsum, take, lsum, l);
        n_active += _mm_popcnt_u32(static_cast<unsigned>(m & pos));
        n_mined += _mm_popcnt_u32(static_cast<unsigned>(m));
        const __mmask16 gk = take & _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
        gs[j] = _mm512_mask_add_ps(gs[j], gk, gs[j], one);
        gacc = _mm512_mask_add_ps(gacc, gk, gacc, one);
      }
      if (Ga != nullptr) {
        const __m512 ga = _mm512_maskz_loadu_ps(lanes, Ga + n0);
        _mm512_mask_storeu_ps(Ga + n0, lanes, _mm512_sub_ps(ga, gacc));
      }
    }
    if (gpos != nullptr) {
      for (int64_t j = 0; j < np; ++j) {
        gpos[pb + j] = _mm512_reduce_add_ps(gs[j]);
      }
    }
  }
  alignas(64) float a[V];
  _mm512_store_ps(a, lsum);
  double total = 0.0;
  for (int64_t i = 0; i < V; ++i) {
    total += static_cast<double>(a[i]);
  }
  *loss = total;
  *active = n_active;
  *mined = n_mined;
}
#endif

template <typename T, Mining kMining>
void triplet_anchor_m(
    const T* Da, const T* neg, int64_t B, const T* dap, int64_t npos, bool soft, T margin,
    T mm, bool keep_zero, T* Ga, T* gpos, double* loss, int64_t* active, int64_t* mined) {
  if (soft) {
    triplet_anchor_t<T, kMining, true>(
        Da, neg, B, dap, npos, margin, mm, keep_zero, Ga, gpos, loss, active, mined);
    return;
  }
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    triplet_anchor_hard_avx512<kMining>(
        Da, neg, B, dap, npos, margin, mm, keep_zero, Ga, gpos, loss, active, mined);
    return;
  }
#endif
  {
    triplet_anchor_t<T, kMining, false>(
        Da, neg, B, dap, npos, margin, mm, keep_zero, Ga, gpos, loss, active, mined);
  }
}

template <typename T>
void triplet_anchor_impl(
    const T* Da, const T* neg, int64_t B, const T* dap, int64_t npos, Mining mining, bool soft,
    T margin, T mm, bool keep_zero, T* Ga, T* gpos, double* loss, int64_t* active,
    int64_t* mined) {
  switch (mining) {
    case Mining::All:
      return triplet_anchor_m<T, Mining::All>(
          Da, neg, B, dap, npos, soft, margin, mm, keep_zero, Ga, gpos, loss, active, mined);
    case Mining::Hard:
      return triplet_anchor_m<T, Mining::Hard>(
          Da, neg, B, dap, npos, soft, margin, mm, keep_zero, Ga, gpos, loss, active, mined);
    case Mining::SemiHard:
      return triplet_anchor_m<T, Mining::SemiHard>(
          Da, neg, B, dap, npos, soft, margin, mm, keep_zero, Ga, gpos, loss, active, mined);
    case Mining::Easy:
      return triplet_anchor_m<T, Mining::Easy>(
          Da, neg, B, dap, npos, soft, margin, mm, keep_zero, Ga, gpos, loss, active, mined);
    default:
      return triplet_anchor_m<T, Mining::None>(
          Da, neg, B, dap, npos, soft, margin, mm, keep_zero, Ga, gpos, loss, active, mined);
  }
}

} // namespace CPU_CAPABILITY
} // namespace facecore::ops::matching::cpu
