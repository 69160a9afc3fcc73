#pragma once

// C++ API of the face-matching op family (torch.ops.facecore.*). Each function
// calls the dispatcher, so it runs the CPU or CUDA kernel and records autograd
// exactly like the Python API. Semantics: facecore/ops/matching.py and the
// pure-PyTorch reference facecore/reference/matching.py.

#include <optional>
#include <tuple>

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

namespace facecore::ops {

// Pairwise distances dist [B, M] between x [B, D] and y [M, D] (y = x when
// absent): metric "euclidean" | "sqeuclidean" | "cosine" (1 - cosine
// similarity); normalize: L2-normalise rows first.
at::Tensor pairwise_distance(
    const at::Tensor& x,
    const std::optional<at::Tensor>& y = std::nullopt,
    c10::string_view metric = "euclidean",
    bool normalize = false);

// Triplet margin loss over the triplets of a labelled batch, from its square
// distance matrix dist [B, B]. Returns (loss, num_active, num_triplets): the
// reduced loss, the number of mined triplets with a non-zero loss, and the
// number of mined triplets (int64 scalars).
std::tuple<at::Tensor, at::Tensor, at::Tensor> triplet_margin_loss(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double margin = 0.05,
    bool swap = false,
    bool soft = false,
    c10::string_view mining = "none",
    std::optional<double> mining_margin = std::nullopt,
    c10::string_view reduction = "mean_nonzero");

// Contrastive loss over all ordered pairs (i, j), i != j, of a labelled batch.
// Returns (loss, num_active, num_pairs).
std::tuple<at::Tensor, at::Tensor, at::Tensor> contrastive_loss(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double pos_margin = 0.0,
    double neg_margin = 1.0,
    c10::string_view form = "double_margin",
    c10::string_view reduction = "mean_nonzero");

namespace detail {

std::tuple<at::Tensor, at::Tensor> _pairwise_distance_backward(
    const at::Tensor& grad,
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    const at::Tensor& dist,
    c10::string_view metric,
    bool normalize);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> _triplet_margin_loss_fused(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double margin,
    bool swap,
    bool soft,
    c10::string_view mining,
    std::optional<double> mining_margin,
    c10::string_view reduction);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> _contrastive_loss_fused(
    const at::Tensor& dist,
    const at::Tensor& labels,
    double pos_margin,
    double neg_margin,
    c10::string_view form,
    c10::string_view reduction);

at::Tensor _matching_loss_backward(const at::Tensor& grad, const at::Tensor& unit_grad);

} // namespace detail
} // namespace facecore::ops
