// Schemas of the ordinal op family and their C++ API.
//
//   coral_loss / corn_loss      fused losses from integer labels
//   ordinal_predict             labels, cumulative / class probabilities and the
//                               expected rank in one pass, each output optional
//   ordinal_labels              predicted rank (threshold on P(y > k))
//   ordinal_probs               cumulative / class probabilities, expected rank
//                               (ordinal_labels / ordinal_probs: the same pass)
//   _coral_loss_fused, _corn_loss_fused
//                               loss plus the gradient for a unit upstream grad,
//                               computed in the same pass (used by autograd)
//   _ordinal_loss_backward      scales that gradient by the upstream grad
//   _ordinal_probs_backward     backward of ordinal_probs
//
// Kernels: cpu/ordinal_kernel.cpp, cuda/ordinal_kernel.cu;
// autograd: autograd/ordinal_kernel.cpp; fake kernels: facecore/ops/_meta.py.

#include "ordinal.h"

#include <torch/library.h>

#include "find_op.h"

namespace facecore::ops {

at::Tensor coral_loss(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& importance_weights,
    c10::string_view reduction) {
  static auto op = find_op<decltype(coral_loss)>("facecore::coral_loss");
  return op.call(logits, labels, importance_weights, reduction);
}

at::Tensor corn_loss(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& importance_weights,
    c10::string_view reduction) {
  static auto op = find_op<decltype(corn_loss)>("facecore::corn_loss");
  return op.call(logits, labels, importance_weights, reduction);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ordinal_predict(
    const at::Tensor& logits,
    c10::string_view head,
    double threshold,
    bool cum_probs,
    bool class_probs,
    bool expected,
    bool labels) {
  static auto op = find_op<decltype(ordinal_predict)>("facecore::ordinal_predict");
  return op.call(logits, head, threshold, cum_probs, class_probs, expected, labels);
}

at::Tensor ordinal_labels(const at::Tensor& logits, c10::string_view head, double threshold) {
  static auto op = find_op<decltype(ordinal_labels)>("facecore::ordinal_labels");
  return op.call(logits, head, threshold);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ordinal_probs(
    const at::Tensor& logits,
    c10::string_view head) {
  static auto op = find_op<decltype(ordinal_probs)>("facecore::ordinal_probs");
  return op.call(logits, head);
}

namespace detail {

std::tuple<at::Tensor, at::Tensor> _coral_loss_fused(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& importance_weights,
    c10::string_view reduction) {
  static auto op = find_op<decltype(_coral_loss_fused)>("facecore::_coral_loss_fused");
  return op.call(logits, labels, importance_weights, reduction);
}

std::tuple<at::Tensor, at::Tensor> _corn_loss_fused(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& importance_weights,
    c10::string_view reduction) {
  static auto op = find_op<decltype(_corn_loss_fused)>("facecore::_corn_loss_fused");
  return op.call(logits, labels, importance_weights, reduction);
}

at::Tensor _ordinal_loss_backward(
    const at::Tensor& grad,
    const at::Tensor& unit_grad,
    c10::string_view reduction) {
  static auto op = find_op<decltype(_ordinal_loss_backward)>("facecore::_ordinal_loss_backward");
  return op.call(grad, unit_grad, reduction);
}

at::Tensor _ordinal_probs_backward(
    const at::Tensor& grad_cum_probs,
    const at::Tensor& grad_class_probs,
    const at::Tensor& grad_expected,
    const at::Tensor& logits,
    c10::string_view head) {
  static auto op = find_op<decltype(_ordinal_probs_backward)>("facecore::_ordinal_probs_backward");
  return op.call(grad_cum_probs, grad_class_probs, grad_expected, logits, head);
}

} // namespace detail

TORCH_LIBRARY_FRAGMENT(facecore, m) {
  m.set_python_module("facecore.ops._meta");
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  m.def(
      "coral_loss(Tensor logits, Tensor labels, Tensor? importance_weights=None, "
      "str reduction=\"mean\") -> Tensor",
      tags);
  m.def(
      "corn_loss(Tensor logits, Tensor labels, Tensor? importance_weights=None, "
      "str reduction=\"mean\") -> Tensor",
      tags);
  m.def(
      "ordinal_labels(Tensor logits, str head=\"coral\", float threshold=0.5) -> Tensor",
      tags);
  m.def("ordinal_probs(Tensor logits, str head=\"coral\") -> (Tensor, Tensor, Tensor)", tags);
  m.def(
      "ordinal_predict(Tensor logits, str head=\"coral\", float threshold=0.5, "
      "bool cum_probs=True, bool class_probs=True, bool expected=True, bool labels=True) "
      "-> (Tensor, Tensor, Tensor, Tensor)",
      tags);
  m.def(
      "_coral_loss_fused(Tensor logits, Tensor labels, Tensor? importance_weights, "
      "str reduction) -> (Tensor, Tensor)",
      tags);
  m.def(
      "_corn_loss_fused(Tensor logits, Tensor labels, Tensor? importance_weights, "
      "str reduction) -> (Tensor, Tensor)",
      tags);
  m.def("_ordinal_loss_backward(Tensor grad, Tensor unit_grad, str reduction) -> Tensor", tags);
  m.def(
      "_ordinal_probs_backward(Tensor grad_cum_probs, Tensor grad_class_probs, "
      "Tensor grad_expected, Tensor logits, str head) -> Tensor",
      tags);
}

} // namespace facecore::ops
