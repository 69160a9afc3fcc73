#pragma once

// Shared by the CPU, CUDA and autograd kernels of the face-matching op family:
// argument parsing, validation at the op boundary, and the device-agnostic
// (ATen) parts: row normalisation, the distance backward, the final reductions.
//
// Conventions (documented on the Python API, facecore/ops/matching.py):
//   x [B, D], y [M, D] embeddings; dist [B, M] with smaller = more similar:
//     sqeuclidean  |x_i - y_j|^2
//     euclidean    |x_i - y_j|            (gradient 0 where the distance is 0)
//     cosine       1 - <x_i, y_j> / (|x_i| |y_j|)   (embeddings always normalised)
//   normalize: rows are first divided by max(|x_i|, 1e-12) (F.normalize).
//   Losses take a square dist [B, B] of a batch against itself and labels [B]
//   (any int64 / int32 identity ids). Anchor a, positive p: label[p] == label[a]
//   and p != a; negative n: label[n] != label[a].

#include <cmath>
#include <optional>
#include <string>
#include <tuple>

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include "common.h"
#include "matching_math.h"

namespace facecore::ops::matching {

enum class Metric { SqEuclidean, Euclidean, Cosine };

// The reductions the matching losses accept (parse_reduction).
inline constexpr Reduction kLossReductions[] = {
    Reduction::MeanNonzero, Reduction::Mean, Reduction::Sum};

inline Metric parse_metric(c10::string_view m, const char* op) {
  return parse_choice<Metric>(
      m, op, "metric",
      {{"euclidean", Metric::Euclidean},
       {"sqeuclidean", Metric::SqEuclidean},
       {"cosine", Metric::Cosine}});
}

inline Mining parse_mining(c10::string_view m, const char* op) {
  return parse_choice<Mining>(
      m, op, "mining",
      {{"none", Mining::None},
       {"all", Mining::All},
       {"hard", Mining::Hard},
       {"semihard", Mining::SemiHard},
       {"easy", Mining::Easy},
       {"batch_hard", Mining::BatchHard}});
}

inline PairForm parse_form(c10::string_view f, const char* op) {
  return parse_choice<PairForm>(
      f, op, "form", {{"double_margin", PairForm::DoubleMargin}, {"hadsell", PairForm::Hadsell}});
}

inline void check_float_matrix(const char* op, const at::Tensor& t, const char* name, const char* shape) {
  TORCH_CHECK_VALUE(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK_VALUE(
      t.layout() == at::kStrided, op, ": ", name, " must be a dense (strided) tensor, got layout ",
      t.layout());
  TORCH_CHECK_VALUE(
      t.dim() == 2, op, ": ", name, " must be a 2-D tensor of shape ", shape, ", got a ", t.dim(),
      "-D tensor of shape ", t.sizes());
  TORCH_CHECK_VALUE(
      is_supported_float(t.scalar_type()), op, ": ", name,
      " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
}

inline void check_distance_inputs(
    const char* op,
    const at::Tensor& x,
    const std::optional<at::Tensor>& y) {
  check_float_matrix(op, x, "x", "[B, D]");
  if (y.has_value() && y->defined()) {
    check_float_matrix(op, *y, "y", "[M, D]");
    TORCH_CHECK_VALUE(
        y->size(1) == x.size(1), op, ": x and y must have the same embedding dimension D, got x ",
        x.sizes(), " and y ", y->sizes());
    TORCH_CHECK_VALUE(
        y->scalar_type() == x.scalar_type(), op, ": x and y must have the same dtype, got ",
        x.scalar_type(), " and ", y->scalar_type());
    TORCH_CHECK(
        y->device() == x.device(), op, ": y is on ", y->device(), " but x is on ", x.device(),
        "; put both on the same device");
  }
}

inline void check_loss_inputs(const char* op, const at::Tensor& dist, const at::Tensor& labels) {
  check_float_matrix(op, dist, "dist", "[B, B]");
  TORCH_CHECK_VALUE(
      dist.size(0) == dist.size(1), op,
      ": dist must be the square [B, B] distance matrix of a batch against itself, got shape ",
      dist.sizes());
  TORCH_CHECK_VALUE(labels.defined(), op, ": labels is undefined");
  TORCH_CHECK_VALUE(
      labels.layout() == at::kStrided, op, ": labels must be a dense (strided) tensor, got layout ",
      labels.layout());
  TORCH_CHECK_VALUE(
      labels.dim() == 1, op, ": labels must be a 1-D tensor of shape [B], got shape ",
      labels.sizes());
  TORCH_CHECK_VALUE(
      labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt, op,
      ": labels must be an integer tensor (int64 or int32) of identity ids, got dtype ",
      labels.scalar_type());
  TORCH_CHECK_VALUE(
      labels.size(0) == dist.size(0), op, ": labels has ", labels.size(0),
      " entries but dist is ", dist.sizes(), "; labels must have B = ", dist.size(0), " entries");
  TORCH_CHECK(
      labels.device() == dist.device(), op, ": labels is on ", labels.device(),
      " but dist is on ", dist.device(), "; put both on the same device");
}

inline void check_margin(const char* op, const char* name, double m) {
  TORCH_CHECK_VALUE(std::isfinite(m), op, ": ", name, " must be a finite number, got ", m);
}

inline void check_distance_backward_inputs(
    const char* op,
    const at::Tensor& grad,
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    const at::Tensor& dist) {
  check_distance_inputs(op, x, y);
  const int64_t M = (y.has_value() && y->defined()) ? y->size(0) : x.size(0);
  for (const at::Tensor* t : {&grad, &dist}) {
    TORCH_CHECK_VALUE(
        t->defined() && t->dim() == 2 && t->size(0) == x.size(0) && t->size(1) == M, op,
        ": grad and dist must have shape [B, M] = [", x.size(0), ", ", M, "], got ",
        t->defined() ? t->sizes() : at::IntArrayRef{});
    TORCH_CHECK(
        t->device() == x.device(), op, ": grad and dist must be on ", x.device(), ", got one on ",
        t->device());
  }
}

inline void check_loss_backward_inputs(
    const char* op,
    const at::Tensor& grad,
    const at::Tensor& unit_grad) {
  check_float_matrix(op, unit_grad, "unit_grad", "[B, B]");
  TORCH_CHECK_VALUE(
      grad.defined() && grad.numel() == 1, op, ": grad must hold one element (the loss is a scalar), got shape ",
      grad.defined() ? grad.sizes() : at::IntArrayRef{});
  TORCH_CHECK(
      grad.device() == unit_grad.device(), op, ": grad is on ", grad.device(),
      " but unit_grad is on ", unit_grad.device());
}

// ---------------------------------------------------------------- distances

constexpr double kNormEps = 1e-12; // torch.nn.functional.normalize's eps

// Rows divided by max(|row|, eps), in the accumulation dtype.
inline at::Tensor normalize_rows(const at::Tensor& x) {
  return x / x.norm(2, {1}, true).clamp_min(kNormEps);
}

// Backward of normalize_rows: x raw rows, g = dL/dx_hat.
//   |x| > eps: (g - x_hat <x_hat, g>) / |x|;   otherwise g / eps.
inline at::Tensor normalize_rows_backward(const at::Tensor& g, const at::Tensor& x) {
  const at::Tensor n = x.norm(2, {1}, true);
  const at::Tensor nc = n.clamp_min(kNormEps);
  const at::Tensor xh = x / nc;
  const at::Tensor proj = (xh * g).sum(1, true);
  return at::where(n > kNormEps, (g - xh * proj) / nc, g / kNormEps);
}

// The embeddings a distance is computed on (accumulation dtype, contiguous,
// normalised when asked or for cosine).
inline at::Tensor prepared_rows(const at::Tensor& x, Metric metric, bool normalize) {
  at::Tensor xa = x.to(acc_dtype(x.scalar_type())).contiguous();
  if (normalize || metric == Metric::Cosine) {
    xa = normalize_rows(xa);
  }
  return xa;
}

// Gradient of the distance matrix wrt both inputs, composed from matrix
// products (device agnostic). grad, dist: [B, M]; returns (dL/dx [B, D],
// dL/dy [M, D] or an empty [0, D] when y is absent, in which case dL/dx holds
// both sides).
//   L2 family: W = 2 G (sqeuclidean) or G / dist (euclidean; 0 where dist = 0)
//     dL/dx_i = x_i sum_j W_ij - (W y)_i,  dL/dy_j = y_j sum_i W_ij - (W^T x)_j
//   cosine: dL/dx_hat = -G y_hat, dL/dy_hat = -G^T x_hat, then through the
//     normalisation.
inline std::tuple<at::Tensor, at::Tensor> distance_backward(
    const at::Tensor& grad,
    const at::Tensor& x,
    const std::optional<at::Tensor>& y_opt,
    const at::Tensor& dist,
    Metric metric,
    bool normalize) {
  const bool self = !(y_opt.has_value() && y_opt->defined());
  const at::ScalarType acc = acc_dtype(x.scalar_type());
  const bool norm = normalize || metric == Metric::Cosine;
  const at::Tensor xr = x.to(acc).contiguous();
  const at::Tensor yr = self ? xr : y_opt->to(acc).contiguous();
  const at::Tensor X = norm ? normalize_rows(xr) : xr;
  const at::Tensor Y = self ? X : (norm ? normalize_rows(yr) : yr);
  const at::Tensor G = grad.to(acc);
  at::Tensor gX;
  at::Tensor gY;
  if (metric == Metric::Cosine) {
    if (self) {
      gX = -at::mm(G + G.t(), X);
    } else {
      gX = -at::mm(G, Y);
      gY = -at::mm(G.t(), X);
    }
  } else {
    at::Tensor W;
    if (metric == Metric::SqEuclidean) {
      W = G * 2;
    } else {
      const at::Tensor d = dist.to(acc);
      // 0 where the distance is exactly 0 (subgradient); NaN flows through.
      W = at::where(d == 0, at::zeros({}, G.options()), G / d);
    }
    if (self) {
      // both sides at once: S = W + W^T, one matrix product
      const at::Tensor S = W + W.t();
      gX = X * S.sum(1, true) - at::mm(S, X);
    } else {
      gX = X * W.sum(1, true) - at::mm(W, Y);
      gY = Y * W.sum(0).unsqueeze(1) - at::mm(W.t(), X);
    }
  }
  if (self) {
    if (norm) {
      gX = normalize_rows_backward(gX, xr);
    }
    return {gX.to(x.scalar_type()), at::empty({0, x.size(1)}, x.options())};
  }
  if (norm) {
    gX = normalize_rows_backward(gX, xr);
    gY = normalize_rows_backward(gY, yr);
  }
  return {gX.to(x.scalar_type()), gY.to(y_opt->scalar_type())};
}

// ------------------------------------------------------------------ losses

// Final reduction from per-row partial sums (device agnostic, no host sync).
//   rows: [B, 2] float (sum of counted terms of group 0 / group 1)
//   counts: [B, 4] int64 (active 0, candidates 0, active 1, candidates 1)
// Triplets use group 0 only; the contrastive loss uses group 0 = positive
// pairs and group 1 = negative pairs, each reduced separately and summed
// (as pytorch-metric-learning does with its sub-losses).
// Returns (loss in `dtype`, num_active, num_candidates, gradient scales [2]).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> finish_loss(
    const at::Tensor& rows,
    const at::Tensor& counts,
    Reduction red,
    at::ScalarType dtype) {
  const at::Tensor sums = rows.sum(0); // [2]
  const at::Tensor tot = counts.sum(0); // [4]
  const at::Tensor active = tot.index({at::indexing::Slice(0, 4, 2)}); // [2]
  const at::Tensor cands = tot.index({at::indexing::Slice(1, 4, 2)}); // [2]
  at::Tensor scale;
  if (red == Reduction::Sum) {
    scale = at::ones({2}, sums.options());
  } else {
    const at::Tensor denom = (red == Reduction::MeanNonzero ? active : cands).to(sums.scalar_type());
    // no term -> loss 0 and gradient 0 (pytorch-metric-learning's zero loss)
    scale = at::where(denom > 0, denom.clamp_min(1).reciprocal(), at::zeros({}, sums.options()));
  }
  const at::Tensor loss = (sums * scale).sum().to(dtype);
  return {loss, active.sum(), cands.sum(), scale};
}

// dL/d(dist) for an upstream gradient `grad` (one element) from the gradient
// for a unit upstream gradient (device agnostic).
inline at::Tensor scale_unit_grad(const at::Tensor& grad, const at::Tensor& unit_grad) {
  const at::ScalarType acc = acc_dtype(unit_grad.scalar_type());
  return (unit_grad.to(acc) * grad.to(acc).reshape({})).to(unit_grad.scalar_type());
}

// ---------------------------------------------------------------- entry points

// The four loss entry points of a backend, generated from its
// triplet_forward(dist, labels, margin, swap, soft, mining, mining_margin,
// reduction, with_grad) and contrastive_forward(dist, labels, pos_margin,
// neg_margin, form, reduction, with_grad), each returning (loss, num_active,
// num_candidates, dL/d(dist) for a unit upstream gradient or undefined).
using LossResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using TripletForwardFn = LossResult (*)(
    const at::Tensor&,
    const at::Tensor&,
    double,
    bool,
    bool,
    c10::string_view,
    std::optional<double>,
    c10::string_view,
    bool);
using ContrastiveForwardFn = LossResult (*)(
    const at::Tensor&,
    const at::Tensor&,
    double,
    double,
    c10::string_view,
    c10::string_view,
    bool);

template <TripletForwardFn Triplet, ContrastiveForwardFn Contrastive>
struct LossKernels {
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> triplet(
      const at::Tensor& dist,
      const at::Tensor& labels,
      double margin,
      bool swap,
      bool soft,
      c10::string_view mining,
      std::optional<double> mining_margin,
      c10::string_view reduction) {
    auto [loss, active, cands, grad] =
        Triplet(dist, labels, margin, swap, soft, mining, mining_margin, reduction, false);
    return {loss, active, cands};
  }
  static LossResult triplet_fused(
      const at::Tensor& dist,
      const at::Tensor& labels,
      double margin,
      bool swap,
      bool soft,
      c10::string_view mining,
      std::optional<double> mining_margin,
      c10::string_view reduction) {
    return Triplet(dist, labels, margin, swap, soft, mining, mining_margin, reduction, true);
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> contrastive(
      const at::Tensor& dist,
      const at::Tensor& labels,
      double pos_margin,
      double neg_margin,
      c10::string_view form,
      c10::string_view reduction) {
    auto [loss, active, cands, grad] =
        Contrastive(dist, labels, pos_margin, neg_margin, form, reduction, false);
    return {loss, active, cands};
  }
  static LossResult contrastive_fused(
      const at::Tensor& dist,
      const at::Tensor& labels,
      double pos_margin,
      double neg_margin,
      c10::string_view form,
      c10::string_view reduction) {
    return Contrastive(dist, labels, pos_margin, neg_margin, form, reduction, true);
  }
};

} // namespace facecore::ops::matching
