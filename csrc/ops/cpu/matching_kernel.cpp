// CPU kernels of the face-matching op family (schemas in ../matching.cpp).
//
// pairwise_distance: |x_i|^2 + |y_j|^2 - 2 <x_i, y_j> in one BLAS call
//   (addmm). Where the product form loses precision to cancellation
//   (|x_i - y_j|^2 < |x_i|^2/16 + |y_j|^2/16, which includes every diagonal
//   entry of a batch against itself) the squared distance is recomputed
//   exactly from the differences, so near-duplicates get accurate small
//   distances and the diagonal is exactly 0; then one vectorised sqrt.
// Triplet loss: anchors are split across threads; each anchor runs one
//   vectorised, branch-free pass over its distance row (cpu/matching_rows.h,
//   built for the CPU capability ATen runs with): V columns at a time, every
//   positive p tests the columns for the mining condition, and the loss, the
//   counts and dL/d(dist) accumulate in registers, the row's gradient written
//   once per column (no triplet list, no B^3 buffer). With swap the gradient
//   also lands in row p: one pass per positive (auto-vectorised), and threads
//   own whole identities (all anchors of a label) instead of single anchors,
//   so there are no races.
// Batch-hard: one O(B) pass per anchor. Contrastive: one pass per row.
// Everything accumulates in acc_t (fp32 for half types); per-anchor loss sums
// are kept in fp64.

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

// The loss loops are branch-free selects; GCC if-converts and vectorises them
// only when it may assume FP comparisons do not trap (no FP exceptions are
// used; results are unchanged: nothing is reassociated beyond the explicit
// omp simd reductions). Applies to the functions defined below.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "../matching_common.h"
#include "../matching_math.h"
#include "vec_isa.h"

namespace facecore::ops::matching {
namespace {

constexpr double kRecompute = 0.0625;



// ------------------------------------------------------------ distances

at::Tensor pairwise_distance_cpu(
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    c10::string_view metric_s,
    bool normalize) {
  const char* op = "facecore::pairwise_distance";
  check_distance_inputs(op, x, y);
  const Metric metric = parse_metric(metric_s, op);
  const bool self = !(y.has_value() && y->defined());
  const at::Tensor X = prepared_rows(x, metric, normalize);
  const at::Tensor Y = self ? X : prepared_rows(*y, metric, normalize);
  const int64_t B = X.size(0);
  const int64_t M = Y.size(0);
  const int64_t D = X.size(1);
  if (B == 0 || M == 0) {
    return at::empty({B, M}, x.options());
  }
  if (metric == Metric::Cosine) {
    return at::addmm(at::ones({}, X.options()), X, Y.t(), 1, -1).to(x.scalar_type());
  }
  // |x_i|^2 + |y_j|^2 - 2 <x_i, y_j> in one BLAS call
  const at::Tensor nx = X.pow(2).sum(1);
  const at::Tensor ny = self ? nx : Y.pow(2).sum(1);
  const at::Tensor n2 = nx.unsqueeze(1) + ny.unsqueeze(0);
  at::Tensor sq = at::addmm(n2, X, Y.t(), 1, -2);
  // cancellation: recompute from the differences where the product form has
  // lost the precision (exact 0 on the diagonal; NaN compares false, stays NaN)
  const at::Tensor bad = at::lt(sq, n2 * kRecompute).nonzero().contiguous(); // [K, 2]
  const int64_t nbad = bad.size(0);
  if (nbad > 0) {
    AT_DISPATCH_FLOATING_TYPES(sq.scalar_type(), "facecore_pairwise_distance_cpu", [&] {
      const int64_t* ij = bad.const_data_ptr<int64_t>();
      const scalar_t* xp = X.const_data_ptr<scalar_t>();
      const scalar_t* yp = Y.const_data_ptr<scalar_t>();
      scalar_t* sp = sq.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, nbad, grain_for(D), [&](int64_t begin, int64_t end) {
        for (int64_t e = begin; e < end; ++e) {
          const int64_t i = ij[2 * e];
          const int64_t j = ij[2 * e + 1];
          scalar_t t = scalar_t(0);
          for (int64_t k = 0; k < D; ++k) {
            const scalar_t d = xp[i * D + k] - yp[j * D + k];
            t += d * d;
          }
          sp[i * M + j] = t;
        }
      });
    });
  }
  if (metric == Metric::Euclidean) {
    sq.sqrt_();
  }
  return sq.to(x.scalar_type());
}

// distance_backward (../matching_common.h) for a batch against itself, with
// the symmetrisation S = W + W^T done as a blocked transpose copy plus an add
// (a strided add of W^T is several times slower on the CPU) and the final
// combination as one BLAS call:
//   L2:     dL/dx = x * rowsum(S) - S x      (W = 2G, or G / dist with 0 at 0)
//   cosine: dL/dx = -S x                     (on the normalised rows)
at::Tensor distance_backward_self_cpu(
    const at::Tensor& grad,
    const at::Tensor& x,
    const at::Tensor& dist,
    Metric metric,
    bool normalize) {
  const at::ScalarType acc = acc_dtype(x.scalar_type());
  const bool norm = normalize || metric == Metric::Cosine;
  const at::Tensor xr = x.to(acc).contiguous();
  const at::Tensor X = norm ? normalize_rows(xr) : xr;
  const int64_t B = X.size(0);
  at::Tensor W = at::empty({B, B}, X.options());
  const at::Tensor G = grad.to(acc).contiguous();
  const at::Tensor d = dist.to(acc).contiguous();
  AT_DISPATCH_FLOATING_TYPES(acc, "facecore_distance_backward_cpu", [&] {
    const scalar_t* gp = G.const_data_ptr<scalar_t>();
    const scalar_t* dp = d.const_data_ptr<scalar_t>();
    scalar_t* wp = W.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, grain_for(B), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t* gi = gp + i * B;
        const scalar_t* di = dp + i * B;
        scalar_t* wi = wp + i * B;
        if (metric == Metric::Euclidean) {
          for (int64_t j = 0; j < B; ++j) {
            // 0 where the distance is exactly 0 (subgradient); NaN flows
            wi[j] = di[j] == scalar_t(0) ? scalar_t(0) : gi[j] / di[j];
          }
        } else if (metric == Metric::SqEuclidean) {
          for (int64_t j = 0; j < B; ++j) {
            wi[j] = gi[j] * scalar_t(2);
          }
        } else {
          for (int64_t j = 0; j < B; ++j) {
            wi[j] = gi[j];
          }
        }
      }
    });
  });
  at::Tensor Wt = at::empty({B, B}, X.options());
  Wt.copy_(W.t());
  const at::Tensor S = W.add_(Wt);
  at::Tensor gX = metric == Metric::Cosine ? at::mm(S, X).neg_()
                                           : at::addmm(X * S.sum(1, true), S, X, 1, -1);
  if (norm) {
    gX = normalize_rows_backward(gX, xr);
  }
  return gX.to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> pairwise_distance_backward_cpu(
    const at::Tensor& grad,
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    const at::Tensor& dist,
    c10::string_view metric_s,
    bool normalize) {
  const char* op = "facecore::_pairwise_distance_backward";
  check_distance_backward_inputs(op, grad, x, y, dist);
  const Metric metric = parse_metric(metric_s, op);
  if (!(y.has_value() && y->defined())) {
    return {
        distance_backward_self_cpu(grad, x, dist, metric, normalize),
        at::empty({0, x.size(1)}, x.options())};
  }
  return distance_backward(grad, x, y, dist, metric, normalize);
}

// ---------------------------------------------------------------- triplets

struct TripletParams {
  double margin;
  double mining_margin;
  bool nonzero; // reduction 'mean_nonzero': only terms with a loss > 0 count
};

// Accumulators of one anchor.
struct AnchorSums {
  double loss = 0.0;
  int64_t active = 0;
  int64_t mined = 0;
};

// Whether t passes the mining rule, as 0 / 1 (branch-free; NaN gives 0).
template <typename acc_t, Mining kMining>
inline acc_t mined_f(acc_t t, acc_t mm) {
  // the rules of is_mined (../matching_math.h), resolved at compile time
  if constexpr (kMining == Mining::All) {
    return static_cast<acc_t>(t <= mm);
  } else if constexpr (kMining == Mining::Hard) {
    return static_cast<acc_t>(t <= mm) * static_cast<acc_t>(t <= acc_t(0));
  } else if constexpr (kMining == Mining::SemiHard) {
    return static_cast<acc_t>(t <= mm) * static_cast<acc_t>(t > acc_t(0));
  } else if constexpr (kMining == Mining::Easy) {
    return static_cast<acc_t>(t > mm);
  } else {
    return acc_t(1);
  }
}

// One pass over the negatives of anchor a for one positive p: a branch-free
// loop over the anchor's distance row that the compiler vectorises (masks
// and counts are kept as 0 / 1 floats, exact up to 2^24 per pass).
// negf[n] = 1 for the anchor's negatives. Ga / Gp (rows a and p of
// dL/d(dist), unscaled by the reduction) are written when kGrad.
template <typename acc_t, Mining kMining, bool kSoft, bool kSwap, bool kGrad>
inline void triplet_pass(
    const acc_t* __restrict__ Da,
    const acc_t* __restrict__ Dp,
    const acc_t* __restrict__ negf,
    int64_t B,
    acc_t dap,
    acc_t margin,
    acc_t mm,
    acc_t keep_zero, // 1: terms of loss 0 count too ('mean', 'sum'); 0: 'mean_nonzero'
    acc_t* __restrict__ Ga,
    acc_t* __restrict__ Gp,
    acc_t* out_loss,
    acc_t* out_grad_ap,
    acc_t* out_active,
    acc_t* out_mined) {
  acc_t lsum = acc_t(0);
  acc_t gsum = acc_t(0);
  acc_t nact = acc_t(0);
  acc_t nmin = acc_t(0);
  // the sums are reductions: let the compiler reassociate them (-fopenmp)
#pragma omp simd reduction(+ : lsum, gsum, nact, nmin)
  for (int64_t n = 0; n < B; ++n) {
    const acc_t dan = Da[n];
    const acc_t mf = negf[n] * mined_f<acc_t, kMining>(dan - dap, mm);
    acc_t de = dan;
    acc_t w_an = acc_t(1);
    acc_t w_pn = acc_t(0);
    if constexpr (kSwap) {
      const acc_t dpn = Dp[n];
      de = min_nan(dan, dpn);
      min_weights(dan, dpn, &w_an, &w_pn);
    }
    acc_t l;
    acc_t g;
    triplet_term<acc_t>(kSoft, dap - de + margin, &l, &g);
    const acc_t posf = static_cast<acc_t>(l > acc_t(0));
    const acc_t takef = mf * (posf > keep_zero ? posf : keep_zero);
    lsum += takef > acc_t(0) ? l : acc_t(0); // a select: NaN terms not taken stay out
    nact += mf * posf;
    nmin += mf;
    if constexpr (kGrad) {
      const acc_t gv = takef > acc_t(0) ? g : acc_t(0);
      gsum += gv;
      Ga[n] -= gv * w_an;
      if constexpr (kSwap) {
        Gp[n] -= gv * w_pn;
      }
    }
  }
  *out_loss = lsum;
  *out_grad_ap = gsum;
  *out_active = nact;
  *out_mined = nmin;
}

// All (p, n) triplets of anchor a under a TripletMarginMiner-style condition.
template <typename acc_t, Mining kMining, bool kSoft, bool kSwap>
void triplet_anchor(
    int64_t a,
    const acc_t* Dm,
    const int64_t* lab,
    int64_t B,
    const TripletParams& prm,
    const acc_t* negf,
    acc_t* Gm,
    AnchorSums* out) {
  const acc_t margin = static_cast<acc_t>(prm.margin);
  const acc_t mm = static_cast<acc_t>(prm.mining_margin);
  const acc_t keep_zero = prm.nonzero ? acc_t(0) : acc_t(1);
  const acc_t* Da = Dm + a * B;
  const int64_t la = lab[a];
  for (int64_t p = 0; p < B; ++p) {
    if (p == a || lab[p] != la) {
      continue;
    }
    const acc_t* Dp = Dm + p * B;
    acc_t l, gap, nact, nmin;
    if (Gm == nullptr) {
      triplet_pass<acc_t, kMining, kSoft, kSwap, false>(
          Da, Dp, negf, B, Da[p], margin, mm, keep_zero, nullptr, nullptr, &l, &gap, &nact, &nmin);
    } else {
      triplet_pass<acc_t, kMining, kSoft, kSwap, true>(
          Da, Dp, negf, B, Da[p], margin, mm, keep_zero, Gm + a * B, Gm + p * B, &l, &gap, &nact,
          &nmin);
      Gm[a * B + p] += gap;
    }
    out->loss += static_cast<double>(l);
    out->active += static_cast<int64_t>(nact);
    out->mined += static_cast<int64_t>(nmin);
  }
}

// Batch-hard (Hermans et al.; PML BatchHardMiner): the farthest positive and
// the closest negative of anchor a (torch.max / torch.min semantics: first
// index on ties, NaN wins), one triplet per anchor that has both.
template <typename acc_t, bool kSoft, bool kSwap>
void batch_hard_anchor(
    int64_t a,
    const acc_t* Dm,
    const int64_t* lab,
    int64_t B,
    const TripletParams& prm,
    acc_t* Gm,
    AnchorSums* out) {
  const acc_t* Da = Dm + a * B;
  const int64_t la = lab[a];
  int64_t ip = -1;
  int64_t in = -1;
  acc_t dp = acc_t(0);
  acc_t dn = acc_t(0);
  for (int64_t j = 0; j < B; ++j) {
    const acc_t v = Da[j];
    if (lab[j] == la) {
      if (j != a && (ip < 0 || v > dp || (v != v && dp == dp))) {
        ip = j;
        dp = v;
      }
    } else if (in < 0 || v < dn || (v != v && dn == dn)) {
      in = j;
      dn = v;
    }
  }
  if (ip < 0 || in < 0) {
    return;
  }
  acc_t de = dn;
  acc_t w_an = acc_t(1);
  acc_t w_pn = acc_t(0);
  if constexpr (kSwap) {
    const acc_t dpn = Dm[ip * B + in];
    de = min_nan(dn, dpn);
    min_weights(dn, dpn, &w_an, &w_pn);
  }
  acc_t l;
  acc_t g;
  triplet_term<acc_t>(kSoft, dp - de + static_cast<acc_t>(prm.margin), &l, &g);
  const bool pos = l > acc_t(0);
  const bool take = pos || !prm.nonzero;
  out->loss += take ? static_cast<double>(l) : 0.0;
  out->active += pos ? 1 : 0;
  out->mined += 1;
  if (Gm != nullptr && take) {
    Gm[a * B + ip] += g;
    Gm[a * B + in] -= g * w_an;
    if constexpr (kSwap) {
      Gm[ip * B + in] -= g * w_pn;
    }
  }
}

template <typename acc_t, Mining kMining, bool kSoft, bool kSwap>
void triplet_rows(
    const acc_t* Dm,
    const int64_t* lab,
    int64_t B,
    const TripletParams& prm,
    acc_t* Gm,
    double* row_loss,
    int64_t* row_counts) {
  // Work items: single anchors, or (with swap, whose gradient also lands in
  // the positive's row) all anchors of one identity.
  std::vector<int64_t> order(B);
  std::iota(order.begin(), order.end(), 0);
  std::vector<int64_t> starts;
  if (kSwap) {
    std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return lab[i] < lab[j]; });
    for (int64_t i = 0; i < B; ++i) {
      if (i == 0 || lab[order[i]] != lab[order[i - 1]]) {
        starts.push_back(i);
      }
    }
  } else {
    starts.resize(B);
    std::iota(starts.begin(), starts.end(), 0);
  }
  starts.push_back(B);
  const int64_t items = static_cast<int64_t>(starts.size()) - 1;
  const int64_t per_anchor = kMining == Mining::BatchHard ? B : B * 8;
  // ATen's portable Vectorized (no AVX2) is slower than the compiler's own
  // vectorisation of the per-positive pass below: use it there.
  const bool vectorised = ::facecore::ops::cpu::cpu_isa() != ::facecore::ops::cpu::Isa::Default;
  const auto anchor = cpu::triplet_anchor_fn<acc_t>();
  at::parallel_for(0, items, grain_for(per_anchor), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> neg(kMining == Mining::BatchHard ? 0 : B);
    std::vector<int64_t> pos;
    std::vector<acc_t> dap;
    std::vector<acc_t> gpos;
    for (int64_t it = begin; it < end; ++it) {
      for (int64_t k = starts[it]; k < starts[it + 1]; ++k) {
        const int64_t a = order[k];
        AnchorSums s;
        if constexpr (kMining == Mining::BatchHard) {
          batch_hard_anchor<acc_t, kSoft, kSwap>(a, Dm, lab, B, prm, Gm, &s);
        } else if (!kSwap && vectorised) {
          // vectorised pass (matching_rows.h): every positive per column,
          // the row's gradient accumulated in registers
          const int64_t la = lab[a];
          const acc_t* Da = Dm + a * B;
          pos.clear();
          dap.clear();
          for (int64_t n = 0; n < B; ++n) {
            const bool same = lab[n] == la;
            neg[n] = same ? acc_t(0) : acc_t(1);
            if (same && n != a) {
              pos.push_back(n);
              dap.push_back(Da[n]);
            }
          }
          const int64_t np = static_cast<int64_t>(pos.size());
          gpos.resize(np);
          anchor(Da, neg.data(), B, dap.data(), np, kMining, kSoft,
                 static_cast<acc_t>(prm.margin), static_cast<acc_t>(prm.mining_margin),
                 !prm.nonzero, Gm == nullptr ? nullptr : Gm + a * B,
                 Gm == nullptr ? nullptr : gpos.data(), &s.loss, &s.active, &s.mined);
          if (Gm != nullptr) {
            for (int64_t j = 0; j < np; ++j) {
              Gm[a * B + pos[j]] += gpos[j];
            }
          }
        } else {
          const int64_t la = lab[a];
          for (int64_t n = 0; n < B; ++n) {
            neg[n] = lab[n] != la ? acc_t(1) : acc_t(0);
          }
          triplet_anchor<acc_t, kMining, kSoft, kSwap>(a, Dm, lab, B, prm, neg.data(), Gm, &s);
        }
        row_loss[2 * a] = s.loss;
        row_counts[4 * a] = s.active;
        row_counts[4 * a + 1] = s.mined;
      }
    }
  });
}

template <typename acc_t, bool kSoft, bool kSwap>
void triplet_dispatch_mining(Mining mining, const acc_t* Dm, const int64_t* lab, int64_t B,
                             const TripletParams& prm, acc_t* Gm, double* rl, int64_t* rc) {
  switch (mining) {
    case Mining::None:
      return triplet_rows<acc_t, Mining::None, kSoft, kSwap>(Dm, lab, B, prm, Gm, rl, rc);
    case Mining::All:
      return triplet_rows<acc_t, Mining::All, kSoft, kSwap>(Dm, lab, B, prm, Gm, rl, rc);
    case Mining::Hard:
      return triplet_rows<acc_t, Mining::Hard, kSoft, kSwap>(Dm, lab, B, prm, Gm, rl, rc);
    case Mining::SemiHard:
      return triplet_rows<acc_t, Mining::SemiHard, kSoft, kSwap>(Dm, lab, B, prm, Gm, rl, rc);
    case Mining::Easy:
      return triplet_rows<acc_t, Mining::Easy, kSoft, kSwap>(Dm, lab, B, prm, Gm, rl, rc);
    case Mining::BatchHard:
      return triplet_rows<acc_t, Mining::BatchHard, kSoft, kSwap>(Dm, lab, B, prm, Gm, rl, rc);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> triplet_forward(
    const at::Tensor& dist_in,
    const at::Tensor& labels_in,
    double margin,
    bool swap,
    bool soft,
    c10::string_view mining_s,
    std::optional<double> mining_margin,
    c10::string_view reduction_s,
    bool with_grad) {
  const char* op = "facecore::triplet_margin_loss";
  check_loss_inputs(op, dist_in, labels_in);
  check_margin(op, "margin", margin);
  if (mining_margin.has_value()) {
    check_margin(op, "mining_margin", *mining_margin);
  }
  const Mining mining = parse_mining(mining_s, op);
  const Reduction red = parse_reduction(reduction_s, op, kLossReductions);
  const at::ScalarType acc = acc_dtype(dist_in.scalar_type());
  const at::Tensor dist = dist_in.to(acc).contiguous();
  const at::Tensor lab = labels_in.to(at::kLong).contiguous();
  const int64_t B = dist.size(0);
  at::Tensor rows = at::zeros({B, 2}, dist.options().dtype(at::kDouble));
  at::Tensor counts = at::zeros({B, 4}, dist.options().dtype(at::kLong));
  at::Tensor G = with_grad ? at::zeros({B, B}, dist.options()) : at::Tensor();
  const TripletParams prm{
      margin, mining_margin.value_or(margin), red == Reduction::MeanNonzero};
  AT_DISPATCH_FLOATING_TYPES(acc, "facecore_triplet_margin_loss_cpu", [&] {
    const scalar_t* Dm = dist.const_data_ptr<scalar_t>();
    const int64_t* lp = lab.const_data_ptr<int64_t>();
    scalar_t* Gm = with_grad ? G.mutable_data_ptr<scalar_t>() : nullptr;
    double* rl = rows.mutable_data_ptr<double>();
    int64_t* rc = counts.mutable_data_ptr<int64_t>();
    if (soft) {
      swap ? triplet_dispatch_mining<scalar_t, true, true>(mining, Dm, lp, B, prm, Gm, rl, rc)
           : triplet_dispatch_mining<scalar_t, true, false>(mining, Dm, lp, B, prm, Gm, rl, rc);
    } else {
      swap ? triplet_dispatch_mining<scalar_t, false, true>(mining, Dm, lp, B, prm, Gm, rl, rc)
           : triplet_dispatch_mining<scalar_t, false, false>(mining, Dm, lp, B, prm, Gm, rl, rc);
    }
  });
  auto [loss, active, cands, scale] = finish_loss(rows, counts, red, dist_in.scalar_type());
  at::Tensor grad;
  if (with_grad) {
    G.mul_(scale[0].to(acc));
    grad = G.to(dist_in.scalar_type());
  }
  return {loss, active, cands, grad};
}

// ------------------------------------------------------------- contrastive

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> contrastive_forward(
    const at::Tensor& dist_in,
    const at::Tensor& labels_in,
    double pos_margin,
    double neg_margin,
    c10::string_view form_s,
    c10::string_view reduction_s,
    bool with_grad) {
  const char* op = "facecore::contrastive_loss";
  check_loss_inputs(op, dist_in, labels_in);
  check_margin(op, "pos_margin", pos_margin);
  check_margin(op, "neg_margin", neg_margin);
  const PairForm form = parse_form(form_s, op);
  const Reduction red = parse_reduction(reduction_s, op, kLossReductions);
  const at::ScalarType acc = acc_dtype(dist_in.scalar_type());
  const at::Tensor dist = dist_in.to(acc).contiguous();
  const at::Tensor lab = labels_in.to(at::kLong).contiguous();
  const int64_t B = dist.size(0);
  at::Tensor rows = at::zeros({B, 2}, dist.options().dtype(at::kDouble));
  at::Tensor counts = at::zeros({B, 4}, dist.options().dtype(at::kLong));
  at::Tensor G = with_grad ? at::empty({B, B}, dist.options()) : at::Tensor();
  const bool nonzero = red == Reduction::MeanNonzero;
  AT_DISPATCH_FLOATING_TYPES(acc, "facecore_contrastive_loss_cpu", [&] {
    using acc_t = scalar_t;
    const acc_t* Dm = dist.const_data_ptr<acc_t>();
    const int64_t* lp = lab.const_data_ptr<int64_t>();
    acc_t* Gm = with_grad ? G.mutable_data_ptr<acc_t>() : nullptr;
    double* rl = rows.mutable_data_ptr<double>();
    int64_t* rc = counts.mutable_data_ptr<int64_t>();
    const acc_t mp = static_cast<acc_t>(pos_margin);
    const acc_t mn = static_cast<acc_t>(neg_margin);
    at::parallel_for(0, B, grain_for(B * 4), [&](int64_t begin, int64_t end) {
      for (int64_t a = begin; a < end; ++a) {
        const acc_t* Da = Dm + a * B;
        acc_t* Ga = Gm == nullptr ? nullptr : Gm + a * B;
        const int64_t la = lp[a];
        acc_t sum[2] = {acc_t(0), acc_t(0)};
        int64_t act[2] = {0, 0};
        int64_t cnt[2] = {0, 0};
        for (int64_t j = 0; j < B; ++j) {
          const bool same = lp[j] == la;
          const int k = same ? 0 : 1;
          const acc_t d = Da[j];
          acc_t l;
          acc_t g;
          pair_term<acc_t>(form, same ? d - mp : mn - d, &l, &g);
          const bool valid = j != a;
          const bool pos = valid && l > acc_t(0);
          const bool take = valid && (pos || !nonzero);
          sum[k] += take ? l : acc_t(0);
          act[k] += pos ? 1 : 0;
          cnt[k] += valid ? 1 : 0;
          if (Ga != nullptr) {
            Ga[j] = take ? (same ? g : -g) : acc_t(0);
          }
        }
        rl[2 * a] = static_cast<double>(sum[0]);
        rl[2 * a + 1] = static_cast<double>(sum[1]);
        rc[4 * a] = act[0];
        rc[4 * a + 1] = cnt[0];
        rc[4 * a + 2] = act[1];
        rc[4 * a + 3] = cnt[1];
      }
    });
  });
  auto [loss, active, cands, scale] = finish_loss(rows, counts, red, dist_in.scalar_type());
  at::Tensor grad;
  if (with_grad) {
    const double* sc = scale.const_data_ptr<double>();
    AT_DISPATCH_FLOATING_TYPES(acc, "facecore_contrastive_loss_cpu", [&] {
      scalar_t* Gm = G.mutable_data_ptr<scalar_t>();
      const int64_t* lp = lab.const_data_ptr<int64_t>();
      const scalar_t s_pos = static_cast<scalar_t>(sc[0]);
      const scalar_t s_neg = static_cast<scalar_t>(sc[1]);
      at::parallel_for(0, B, grain_for(B), [&](int64_t begin, int64_t end) {
        for (int64_t a = begin; a < end; ++a) {
          for (int64_t j = 0; j < B; ++j) {
            Gm[a * B + j] *= lp[j] == lp[a] ? s_pos : s_neg;
          }
        }
      });
    });
    grad = G.to(dist_in.scalar_type());
  }
  return {loss, active, cands, grad};
}

// ---------------------------------------------------------------- entry points

at::Tensor matching_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& unit_grad) {
  check_loss_backward_inputs("facecore::_matching_loss_backward", grad, unit_grad);
  return scale_unit_grad(grad, unit_grad);
}

} // namespace

TORCH_LIBRARY_IMPL(facecore, CPU, m) {
  m.impl("pairwise_distance", TORCH_FN(pairwise_distance_cpu));
  m.impl("_pairwise_distance_backward", TORCH_FN(pairwise_distance_backward_cpu));
  using Loss = LossKernels<&triplet_forward, &contrastive_forward>;
  m.impl("triplet_margin_loss", TORCH_FN(Loss::triplet));
  m.impl("_triplet_margin_loss_fused", TORCH_FN(Loss::triplet_fused));
  m.impl("contrastive_loss", TORCH_FN(Loss::contrastive));
  m.impl("_contrastive_loss_fused", TORCH_FN(Loss::contrastive_fused));
  m.impl("_matching_loss_backward", TORCH_FN(matching_loss_backward_cpu));
}

} // namespace facecore::ops::matching
