#pragma once

// C++ API of the ordinal op family (torch.ops.facecore.*). Each function calls
// the dispatcher, so it runs the CPU or CUDA kernel and records autograd exactly
// like the Python API. Semantics: facecore/ops/ordinal.py and the pure-PyTorch
// reference facecore/reference/ordinal.py.

#include <optional>
#include <tuple>

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

namespace facecore::ops {

// CORAL loss (Cao, Mirjalili & Raschka) from integer labels. logits [N, K-1],
// labels [N] in [0, K-1], importance_weights [K-1] or none; reduction
// "mean" (mean over rows of per-row sums) | "sum" | "none" (per-row sums [N]).
at::Tensor coral_loss(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& importance_weights = std::nullopt,
    c10::string_view reduction = "mean");

// CORN loss (Shi, Cao & Raschka): task k uses the rows with label >= k; "mean"
// divides by the number of (row, task) pairs used, as coral-pytorch 1.4 does.
at::Tensor corn_loss(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& importance_weights = std::nullopt,
    c10::string_view reduction = "mean");

// Everything a head decodes from its logits, in one fused pass: (cum_probs
// P(y > k) [N, K-1], class_probs P(y = k) [N, K], expected rank [N], labels
// int64 [N]; the integer output last, as torch.sort's indices). An output
// whose flag is false is not computed and comes back as an empty tensor of
// shape [0]. head: "coral", "niu" (decoded as CORAL) or "corn".
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ordinal_predict(
    const at::Tensor& logits,
    c10::string_view head = "coral",
    double threshold = 0.5,
    bool cum_probs = true,
    bool class_probs = true,
    bool expected = true,
    bool labels = true);

// Predicted rank: the number of tasks with P(y > k) > threshold. int64 [N].
at::Tensor ordinal_labels(
    const at::Tensor& logits,
    c10::string_view head = "coral",
    double threshold = 0.5);

// (cumulative probabilities P(y > k) [N, K-1], class probabilities P(y = k)
// [N, K], expected rank [N]).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ordinal_probs(
    const at::Tensor& logits,
    c10::string_view head = "coral");

namespace detail {

std::tuple<at::Tensor, at::Tensor> _coral_loss_fused(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& importance_weights,
    c10::string_view reduction);

std::tuple<at::Tensor, at::Tensor> _corn_loss_fused(
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& importance_weights,
    c10::string_view reduction);

at::Tensor _ordinal_loss_backward(
    const at::Tensor& grad,
    const at::Tensor& unit_grad,
    c10::string_view reduction);

at::Tensor _ordinal_probs_backward(
    const at::Tensor& grad_cum_probs,
    const at::Tensor& grad_class_probs,
    const at::Tensor& grad_expected,
    const at::Tensor& logits,
    c10::string_view head);

} // namespace detail
} // namespace facecore::ops
