// Autograd of the ordinal op family, registered in C++ so that a TorchScript
// model loaded from C++ (no Python) still differentiates through the ops.
//
// Losses: when logits require grad, the forward calls _coral_loss_fused /
// _corn_loss_fused, which compute the loss and the gradient for a unit upstream
// gradient in the same pass over the logits (one read, one write), and save only
// that gradient. The backward then scales it by the upstream gradient
// (_ordinal_loss_backward); when the upstream gradient is the plain CPU scalar 1
// (the usual `loss.backward()`), the saved gradient is handed on as is, so
// backward does no work and no extra N x (K-1) buffer exists at any time.
//
// Second derivatives are not implemented: create_graph=True raises a clear
// error instead of silently returning a graph without them.

#include <torch/autograd.h>
#include <torch/library.h>

#include "../ordinal.h"
#include "../ordinal_common.h"
#include "autograd_common.h"

namespace facecore::ops::ordinal {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

using facecore::ops::autograd::check_first_order;
using facecore::ops::autograd::check_internal;
using facecore::ops::autograd::is_plain_cpu_one;

class OrdinalLossFunction : public torch::autograd::Function<OrdinalLossFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx,
      const Variable& logits,
      const Variable& labels,
      const std::optional<Variable>& weights,
      c10::string_view reduction,
      bool corn) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, unit_grad] = corn
        ? detail::_corn_loss_fused(logits, labels, weights, reduction)
        : detail::_coral_loss_fused(logits, labels, weights, reduction);
    ctx->save_for_backward({unit_grad});
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->saved_data["corn"] = corn;
    return {loss};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    const bool corn = ctx->saved_data["corn"].toBool();
    check_first_order(corn ? "facecore::corn_loss" : "facecore::coral_loss");
    const auto saved = ctx->get_saved_variables();
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    const at::Tensor& g = grad_output[0];
    at::Tensor grad_logits;
    if (reduction != "none" && is_plain_cpu_one(g)) {
      grad_logits = saved[0];
    } else {
      grad_logits = detail::_ordinal_loss_backward(g, saved[0], reduction);
    }
    return {grad_logits, Variable(), Variable(), Variable(), Variable()};
  }
};

class OrdinalProbsFunction : public torch::autograd::Function<OrdinalProbsFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx,
      const Variable& logits,
      c10::string_view head) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [cum, cls, expected] = ops::ordinal_probs(logits, head);
    ctx->save_for_backward({logits});
    ctx->saved_data["head"] = std::string(head);
    return {cum, cls, expected};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    check_first_order("facecore::ordinal_probs");
    const auto saved = ctx->get_saved_variables();
    const std::string head = ctx->saved_data["head"].toStringRef();
    at::Tensor grad = detail::_ordinal_probs_backward(
        grad_output[0], grad_output[1], grad_output[2], saved[0], head);
    return {grad, Variable()};
  }
};

// ordinal_predict: the gradient of the probabilities is
// _ordinal_probs_backward's, with zeros for the outputs that were not computed
// or receive no gradient; the labels (last) are integers, not differentiable.
class OrdinalPredictFunction : public torch::autograd::Function<OrdinalPredictFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx,
      const Variable& logits,
      c10::string_view head,
      double threshold,
      bool cum_probs,
      bool class_probs,
      bool expected,
      bool labels) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [cum, cls, exp, lab] =
        ops::ordinal_predict(logits, head, threshold, cum_probs, class_probs, expected, labels);
    ctx->save_for_backward({logits});
    ctx->saved_data["head"] = std::string(head);
    ctx->mark_non_differentiable({lab});
    return {cum, cls, exp, lab};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    check_first_order("facecore::ordinal_predict");
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& logits = saved[0];
    const int64_t N = logits.size(0);
    const int64_t T = logits.size(1);
    auto full = [&](const at::Tensor& g, std::vector<int64_t> shape) {
      if (g.defined() && g.sizes() == at::IntArrayRef(shape)) {
        return g;
      }
      return at::zeros(shape, logits.options());
    };
    at::Tensor grad = detail::_ordinal_probs_backward(
        full(grad_output[0], {N, T}), full(grad_output[1], {N, T + 1}), full(grad_output[2], {N}),
        logits, ctx->saved_data["head"].toStringRef());
    return {grad, Variable(), Variable(), Variable(), Variable(), Variable(), Variable()};
  }
};

at::Tensor loss_autograd(
    bool corn,
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& weights,
    c10::string_view reduction) {
  const char* op = corn ? "facecore::corn_loss" : "facecore::coral_loss";
  const bool grad_mode = at::GradMode::is_enabled();
  TORCH_CHECK_VALUE(
      !(grad_mode && weights.has_value() && weights->defined() && weights->requires_grad()), op,
      ": importance_weights are constant task weights and must not require grad; pass "
      "importance_weights.detach()");
  if (grad_mode && logits.requires_grad()) {
    return OrdinalLossFunction::apply(logits, labels, weights, reduction, corn)[0];
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return corn ? ops::corn_loss(logits, labels, weights, reduction)
              : ops::coral_loss(logits, labels, weights, reduction);
}

at::Tensor coral_loss_autograd(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& weights,
    c10::string_view reduction) {
  return loss_autograd(false, logits, labels, weights, reduction);
}

at::Tensor corn_loss_autograd(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& weights,
    c10::string_view reduction) {
  return loss_autograd(true, logits, labels, weights, reduction);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ordinal_probs_autograd(
    const at::Tensor& logits,
    c10::string_view head) {
  if (at::GradMode::is_enabled() && logits.requires_grad()) {
    auto out = OrdinalProbsFunction::apply(logits, head);
    return {out[0], out[1], out[2]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::ordinal_probs(logits, head);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ordinal_predict_autograd(
    const at::Tensor& logits,
    c10::string_view head,
    double threshold,
    bool cum_probs,
    bool class_probs,
    bool expected,
    bool labels) {
  if (at::GradMode::is_enabled() && logits.requires_grad() &&
      (cum_probs || class_probs || expected)) {
    auto out = OrdinalPredictFunction::apply(
        logits, head, threshold, cum_probs, class_probs, expected, labels);
    return {out[0], out[1], out[2], out[3]};
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::ordinal_predict(logits, head, threshold, cum_probs, class_probs, expected, labels);
}

// Integer output: nothing to differentiate.
at::Tensor ordinal_labels_autograd(
    const at::Tensor& logits,
    c10::string_view head,
    double threshold) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return ops::ordinal_labels(logits, head, threshold);
}

std::tuple<at::Tensor, at::Tensor> coral_loss_fused_autograd(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& weights,
    c10::string_view reduction) {
  check_internal(
      "facecore::_coral_loss_fused", {&logits}, "facecore::coral_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return detail::_coral_loss_fused(logits, labels, weights, reduction);
}

std::tuple<at::Tensor, at::Tensor> corn_loss_fused_autograd(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& weights,
    c10::string_view reduction) {
  check_internal(
      "facecore::_corn_loss_fused", {&logits}, "facecore::corn_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return detail::_corn_loss_fused(logits, labels, weights, reduction);
}

at::Tensor ordinal_loss_backward_autograd(
    const at::Tensor& grad,
    const at::Tensor& unit_grad,
    c10::string_view reduction) {
  check_internal(
      "facecore::_ordinal_loss_backward", {&grad, &unit_grad}, "facecore::coral_loss");
  at::AutoDispatchBelowADInplaceOrView guard;
  return detail::_ordinal_loss_backward(grad, unit_grad, reduction);
}

at::Tensor ordinal_probs_backward_autograd(
    const at::Tensor& g_cum,
    const at::Tensor& g_cls,
    const at::Tensor& g_exp,
    const at::Tensor& logits,
    c10::string_view head) {
  check_internal(
      "facecore::_ordinal_probs_backward", {&g_cum, &g_cls, &g_exp, &logits}, "facecore::ordinal_probs");
  at::AutoDispatchBelowADInplaceOrView guard;
  return detail::_ordinal_probs_backward(g_cum, g_cls, g_exp, logits, head);
}

} // namespace

TORCH_LIBRARY_IMPL(facecore, Autograd, m) {
  m.impl("coral_loss", TORCH_FN(coral_loss_autograd));
  m.impl("corn_loss", TORCH_FN(corn_loss_autograd));
  m.impl("ordinal_probs", TORCH_FN(ordinal_probs_autograd));
  m.impl("ordinal_labels", TORCH_FN(ordinal_labels_autograd));
  m.impl("ordinal_predict", TORCH_FN(ordinal_predict_autograd));
  m.impl("_coral_loss_fused", TORCH_FN(coral_loss_fused_autograd));
  m.impl("_corn_loss_fused", TORCH_FN(corn_loss_fused_autograd));
  m.impl("_ordinal_loss_backward", TORCH_FN(ordinal_loss_backward_autograd));
  m.impl("_ordinal_probs_backward", TORCH_FN(ordinal_probs_backward_autograd));
}

} // namespace facecore::ops::ordinal
