// Autograd of the face-matching op family, registered in C++ so that a
// TorchScript model loaded from C++ (no Python) still differentiates through
// the ops.
//
// pairwise_distance saves its inputs and the distance matrix; its backward is
// the op _pairwise_distance_backward (matrix products, O(B M + (B + M) D)).
// Losses: when dist requires grad, the forward calls the _fused op, which
// computes the loss and dL/d(dist) for a unit upstream gradient in the same
// pass over the triplets / pairs, and saves only that [B, B] gradient. The
// backward scales it by the upstream gradient (_matching_loss_backward); for
// the plain CPU scalar 1 of `loss.backward()` it hands the saved gradient on
// as is. The gradient wrt the embeddings then flows through
// pairwise_distance's backward: no B^3 tensor exists at any time.
//
// Second derivatives are not implemented: create_graph=True raises a clear
// error instead of silently returning a graph without them.

#include <torch/autograd.h>
#include <torch/library.h>

#include "../matching.h"
#include "../matching_common.h"
#include "autograd_common.h"

namespace facecore::ops::matching {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

using facecore::ops::autograd::check_first_order;
using facecore::ops::autograd::check_internal;
using facecore::ops::autograd::is_plain_cpu_one;

bool has(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined();
}

class PairwiseDistanceFunction : public torch::autograd::Function<PairwiseDistanceFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx,
      const Variable& x,
      const std::optional<Variable>& y,
      c10::string_view metric,
      bool normalize) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor dist = ops::pairwise_distance(x, y, metric, normalize);
    ctx->save_for_backward({x, has(y) ? *y : Variable(), dist});
    ctx->saved_data["metric"] = std::string(metric);
    ctx->saved_data["normalize"] = normalize;
    ctx->saved_data["has_y"] = has(y);
    return {dist};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    check_first_order("facecore::pairwise_distance");
    const auto saved = ctx->get_saved_variables();
    const bool has_y = ctx->saved_data["has_y"].toBool();
    if (!grad_output[0].defined()) {
      return {Variable(), Variable(), Variable(), Variable()};
    }
    const std::optional<at::Tensor> y = has_y ? std::optional<at::Tensor>(saved[1]) : std::nullopt;
    auto [gx, gy] = detail::_pairwise_distance_backward(
        grad_output[0], saved[0], y, saved[2], ctx->saved_data["metric"].toStringRef(),
        ctx->saved_data["normalize"].toBool());
    return {gx, has_y ? gy : Variable(), Variable(), Variable()};
  }
};

at::Tensor scale_saved(const at::Tensor& g, const at::Tensor& unit) {
  if (!g.defined()) {
    return at::Tensor();
  }
  if (is_plain_cpu_one(g)) {
    return unit;
  }
  return detail::_matching_loss_backward(g, unit);
}

class TripletFunction : public torch::autograd::Function<TripletFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx,
      const Variable& dist,
      const Variable& labels,
      double margin,
      bool swap,
      bool soft,
      c10::string_view mining,
      std::optional<double> mining_margin,
      c10::string_view reduction) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, active, cands, unit] = detail::_triplet_margin_loss_fused(
        dist, labels, margin, swap, soft, mining, mining_margin, reduction);
    ctx->save_for_backward({unit});
    ctx->mark_non_differentiable({active, cands});
    return {loss, active, cands};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    check_first_order("facecore::triplet_margin_loss");
    const auto saved = ctx->get_saved_variables();
    variable_list out(8);
    out[0] = scale_saved(grad_output[0], saved[0]);
    return out;
  }
};

class ContrastiveFunction : public torch::autograd::Function<ContrastiveFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx,
      const Variable& dist,
      const Variable& labels,
      double pos_margin,
      double neg_margin,
      c10::string_view form,
      c10::string_view reduction) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, active, cands, unit] =
        detail::_contrastive_loss_fused(dist, labels, pos_margin, neg_margin, form, reduction);
    ctx->save_for_backward({unit});
    ctx->mark_non_differentiable({active, cands});
    return {loss, active, cands};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    check_first_order("facecore::contrastive_loss");
    const auto saved = ctx->get_saved_variables();
    variable_list out(6);
    out[0] = scale_saved(grad_output[0], saved[0]);
    return out;
  }
};

at::Tensor pairwise_distance_autograd(
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    c10::string_view metric,
    bool normalize) {
  if (at::GradMode::is_enabled() && (x.requires_grad() || (has(y) && y->requires_grad()))) {
    return PairwiseDistanceFunction::apply(x, y, metric, normalize)[0];
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::pairwise_distance(x, y, metric, normalize);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> triplet_autograd(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double margin,
    bool swap,
    bool soft,
    c10::string_view mining,
    std::optional<double> mining_margin,
    c10::string_view reduction) {
  if (at::GradMode::is_enabled() && dist.requires_grad()) {
    auto out =
        TripletFunction::apply(dist, labels, margin, swap, soft, mining, mining_margin, reduction);
    return {out[0], out[1], out[2]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::triplet_margin_loss(dist, labels, margin, swap, soft, mining, mining_margin, reduction);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> contrastive_autograd(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double pos_margin,
    double neg_margin,
    c10::string_view form,
    c10::string_view reduction) {
  if (at::GradMode::is_enabled() && dist.requires_grad()) {
    auto out = ContrastiveFunction::apply(dist, labels, pos_margin, neg_margin, form, reduction);
    return {out[0], out[1], out[2]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::contrastive_loss(dist, labels, pos_margin, neg_margin, form, reduction);
}

std::tuple<at::Tensor, at::Tensor> pairwise_distance_backward_autograd(
    const at::Tensor& grad,
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    const at::Tensor& dist,
    c10::string_view metric,
    bool normalize) {
  const at::Tensor yt = has(y) ? *y : at::Tensor();
  check_internal(
      "facecore::_pairwise_distance_backward", {&grad, &x, &yt, &dist}, "facecore::pairwise_distance");
  at::AutoDispatchBelowADInplaceOrView guard;
  return detail::_pairwise_distance_backward(grad, x, y, dist, metric, normalize);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> triplet_fused_autograd(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double margin,
    bool swap,
    bool soft,
    c10::string_view mining,
    std::optional<double> mining_margin,
    c10::string_view reduction) {
  check_internal(
      "facecore::_triplet_margin_loss_fused", {&dist}, "facecore::triplet_margin_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return detail::_triplet_margin_loss_fused(
      dist, labels, margin, swap, soft, mining, mining_margin, reduction);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> contrastive_fused_autograd(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double pos_margin,
    double neg_margin,
    c10::string_view form,
    c10::string_view reduction) {
  check_internal(
      "facecore::_contrastive_loss_fused", {&dist}, "facecore::contrastive_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return detail::_contrastive_loss_fused(dist, labels, pos_margin, neg_margin, form, reduction);
}

at::Tensor matching_loss_backward_autograd(const at::Tensor& grad, const at::Tensor& unit_grad) {
  check_internal(
      "facecore::_matching_loss_backward", {&grad, &unit_grad}, "facecore::triplet_margin_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return detail::_matching_loss_backward(grad, unit_grad);
}

} // namespace

TORCH_LIBRARY_IMPL(facecore, Autograd, m) {
  m.impl("pairwise_distance", TORCH_FN(pairwise_distance_autograd));
  m.impl("triplet_margin_loss", TORCH_FN(triplet_autograd));
  m.impl("contrastive_loss", TORCH_FN(contrastive_autograd));
  m.impl("_pairwise_distance_backward", TORCH_FN(pairwise_distance_backward_autograd));
  m.impl("_triplet_margin_loss_fused", TORCH_FN(triplet_fused_autograd));
  m.impl("_contrastive_loss_fused", TORCH_FN(contrastive_fused_autograd));
  m.impl("_matching_loss_backward", TORCH_FN(matching_loss_backward_autograd));
}

} // namespace facecore::ops::matching
