// Schemas of the face-matching op family and their C++ API.
//
//   pairwise_distance           distance matrix of embeddings (L2, squared L2, cosine)
//   triplet_margin_loss         triplet loss with PML-compatible mining, from the
//                               distance matrix, O(B^2) memory
//   contrastive_loss            double-margin / Hadsell contrastive loss over all pairs
//   _pairwise_distance_backward backward of pairwise_distance
//   _triplet_margin_loss_fused, _contrastive_loss_fused
//                               loss plus dL/d(dist) for a unit upstream grad,
//                               computed in the same pass (used by autograd)
//   _matching_loss_backward     scales that gradient by the upstream grad
//
// Kernels: cpu/matching_kernel.cpp, cuda/matching_kernel.cu;
// autograd: autograd/matching_kernel.cpp; fake kernels: facecore/ops/_meta_matching.py.

#include "matching.h"

#include <torch/library.h>

#include "find_op.h"

namespace facecore::ops {

at::Tensor pairwise_distance(
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    c10::string_view metric,
    bool normalize) {
  static auto op = find_op<decltype(pairwise_distance)>("facecore::pairwise_distance");
  return op.call(x, y, metric, normalize);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> triplet_margin_loss(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double margin,
    bool swap,
    bool soft,
    c10::string_view mining,
    std::optional<double> mining_margin,
    c10::string_view reduction) {
  static auto op = find_op<decltype(triplet_margin_loss)>("facecore::triplet_margin_loss");
  return op.call(dist, labels, margin, swap, soft, mining, mining_margin, reduction);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> contrastive_loss(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double pos_margin,
    double neg_margin,
    c10::string_view form,
    c10::string_view reduction) {
  static auto op = find_op<decltype(contrastive_loss)>("facecore::contrastive_loss");
  return op.call(dist, labels, pos_margin, neg_margin, form, reduction);
}

namespace detail {

std::tuple<at::Tensor, at::Tensor> _pairwise_distance_backward(
    const at::Tensor& grad,
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    const at::Tensor& dist,
    c10::string_view metric,
    bool normalize) {
  static auto op =
      find_op<decltype(_pairwise_distance_backward)>("facecore::_pairwise_distance_backward");
  return op.call(grad, x, y, dist, metric, normalize);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> _triplet_margin_loss_fused(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double margin,
    bool swap,
    bool soft,
    c10::string_view mining,
    std::optional<double> mining_margin,
    c10::string_view reduction) {
  static auto op =
      find_op<decltype(_triplet_margin_loss_fused)>("facecore::_triplet_margin_loss_fused");
  return op.call(dist, labels, margin, swap, soft, mining, mining_margin, reduction);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> _contrastive_loss_fused(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double pos_margin,
    double neg_margin,
    c10::string_view form,
    c10::string_view reduction) {
  static auto op = find_op<decltype(_contrastive_loss_fused)>("facecore::_contrastive_loss_fused");
  return op.call(dist, labels, pos_margin, neg_margin, form, reduction);
}

at::Tensor _matching_loss_backward(const at::Tensor& grad, const at::Tensor& unit_grad) {
  static auto op = find_op<decltype(_matching_loss_backward)>("facecore::_matching_loss_backward");
  return op.call(grad, unit_grad);
}

} // namespace detail

TORCH_LIBRARY_FRAGMENT(facecore, m) {
  m.set_python_module("facecore.ops._meta_matching");
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  m.def(
      "pairwise_distance(Tensor x, Tensor? y=None, str metric=\"euclidean\", "
      "bool normalize=False) -> Tensor",
      tags);
  m.def(
      "triplet_margin_loss(Tensor dist, Tensor labels, float margin=0.05, bool swap=False, "
      "bool soft=False, str mining=\"none\", float? mining_margin=None, "
      "str reduction=\"mean_nonzero\") -> (Tensor, Tensor, Tensor)",
      tags);
  m.def(
      "contrastive_loss(Tensor dist, Tensor labels, float pos_margin=0.0, float neg_margin=1.0, "
      "str form=\"double_margin\", str reduction=\"mean_nonzero\") -> (Tensor, Tensor, Tensor)",
      tags);
  m.def(
      "_pairwise_distance_backward(Tensor grad, Tensor x, Tensor? y, Tensor dist, str metric, "
      "bool normalize) -> (Tensor, Tensor)",
      tags);
  m.def(
      "_triplet_margin_loss_fused(Tensor dist, Tensor labels, float margin, bool swap, bool soft, "
      "str mining, float? mining_margin, str reduction) -> (Tensor, Tensor, Tensor, Tensor)",
      tags);
  m.def(
      "_contrastive_loss_fused(Tensor dist, Tensor labels, float pos_margin, float neg_margin, "
      "str form, str reduction) -> (Tensor, Tensor, Tensor, Tensor)",
      tags);
  m.def("_matching_loss_backward(Tensor grad, Tensor unit_grad) -> Tensor", tags);
}

} // namespace facecore::ops
