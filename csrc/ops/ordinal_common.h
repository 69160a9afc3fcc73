#pragma once

// Shared by the CPU, CUDA and autograd kernels of the ordinal op family:
// argument parsing, validation at the op boundary, and the device-agnostic
// final reduction of per-row losses.
//
// Conventions (documented on the Python API, facecore/ops/ordinal.py):
//   logits [N, T] with T = K-1 >= 1 binary tasks; task k asks "is y > k?".
//   labels [N] integer class indices in [0, K-1] = [0, T].
//   CORAL: every task of every row contributes; level_k = (y > k).
//   CORN:  task k uses the rows with y >= k (y > k-1), target (y > k).

#include <optional>
#include <string>
#include <tuple>

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include "common.h"

namespace facecore::ops::ordinal {

enum class Head { Coral, Corn };

// The reductions the ordinal losses accept (parse_reduction).
inline constexpr Reduction kLossReductions[] = {Reduction::Mean, Reduction::Sum, Reduction::None};

// 'niu' (OR-CNN, K-1 independent tasks) decodes exactly like 'coral':
// P(y > k) = sigmoid(x_k).
inline Head parse_head(c10::string_view h, const char* op) {
  return parse_choice<Head>(
      h, op, "head", {{"coral", Head::Coral}, {"niu", Head::Coral}, {"corn", Head::Corn}});
}

inline void check_logits(const char* op, const at::Tensor& logits, const char* name = "logits") {
  TORCH_CHECK_VALUE(logits.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK_VALUE(
      logits.layout() == at::kStrided, op, ": ", name,
      " must be a dense (strided) tensor, got layout ", logits.layout());
  TORCH_CHECK_VALUE(
      logits.dim() == 2, op, ": ", name, " must be a 2-D tensor of shape [N, K-1], got a ",
      logits.dim(), "-D tensor of shape ", logits.sizes());
  TORCH_CHECK_VALUE(
      is_supported_float(logits.scalar_type()), op, ": ", name,
      " must be float32, float64, float16 or bfloat16, got ", logits.scalar_type());
  TORCH_CHECK_VALUE(
      logits.size(1) >= 1, op, ": ", name,
      " must have at least one column (K-1 >= 1 tasks, i.e. K >= 2 classes), got shape ",
      logits.sizes());
}

inline void check_loss_inputs(
    const char* op,
    const at::Tensor& logits,
    const at::Tensor& labels,
    const std::optional<at::Tensor>& weights) {
  check_logits(op, logits);
  TORCH_CHECK_VALUE(labels.defined(), op, ": labels is undefined");
  TORCH_CHECK_VALUE(
      labels.layout() == at::kStrided, op, ": labels must be a dense (strided) tensor, got layout ",
      labels.layout());
  TORCH_CHECK_VALUE(
      labels.dim() == 1, op, ": labels must be a 1-D tensor of shape [N], got shape ",
      labels.sizes());
  TORCH_CHECK_VALUE(
      labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt, op,
      ": labels must be an integer tensor (int64 or int32) of class indices in [0, K-1], got dtype ",
      labels.scalar_type());
  TORCH_CHECK_VALUE(
      labels.size(0) == logits.size(0), op, ": labels has ", labels.size(0),
      " entries but logits has ", logits.size(0), " rows (shape ", logits.sizes(), ")");
  TORCH_CHECK(
      labels.device() == logits.device(), op, ": labels is on ", labels.device(),
      " but logits is on ", logits.device(), "; put both on the same device");
  if (weights.has_value() && weights->defined()) {
    const at::Tensor& w = *weights;
    TORCH_CHECK_VALUE(
        w.layout() == at::kStrided && w.dim() == 1 && w.size(0) == logits.size(1), op,
        ": importance_weights must be a 1-D tensor with one weight per task (K-1 = ",
        logits.size(1), "), got shape ", w.sizes());
    TORCH_CHECK_VALUE(
        is_supported_float(w.scalar_type()), op,
        ": importance_weights must be a floating-point tensor, got dtype ", w.scalar_type());
    TORCH_CHECK(
        w.device() == logits.device(), op, ": importance_weights is on ", w.device(),
        " but logits is on ", logits.device(), "; put both on the same device");
  }
}

inline void check_threshold(const char* op, double threshold) {
  TORCH_CHECK_VALUE(
      threshold > 0.0 && threshold < 1.0, op,
      ": threshold must be a probability strictly between 0 and 1, got ", threshold);
}

inline void check_loss_backward_inputs(
    const char* op,
    const at::Tensor& grad,
    const at::Tensor& unit_grad,
    Reduction red) {
  check_logits(op, unit_grad, "unit_grad");
  TORCH_CHECK(
      grad.device() == unit_grad.device(), op, ": grad is on ", grad.device(),
      " but unit_grad is on ", unit_grad.device());
  if (red == Reduction::None) {
    TORCH_CHECK_VALUE(
        grad.dim() == 1 && grad.size(0) == unit_grad.size(0), op,
        ": with reduction='none' grad must have shape [N] = [", unit_grad.size(0), "], got ",
        grad.sizes());
  } else {
    TORCH_CHECK_VALUE(
        grad.numel() == 1, op, ": with a reduced loss grad must hold one element, got shape ",
        grad.sizes());
  }
}

inline void check_probs_backward_inputs(
    const char* op,
    const at::Tensor& g_cum,
    const at::Tensor& g_cls,
    const at::Tensor& g_exp,
    const at::Tensor& logits) {
  const int64_t N = logits.size(0);
  const int64_t T = logits.size(1);
  TORCH_CHECK_VALUE(
      g_cum.sizes() == logits.sizes() && g_cls.dim() == 2 && g_cls.size(0) == N &&
          g_cls.size(1) == T + 1 && g_exp.dim() == 1 && g_exp.size(0) == N,
      op, ": gradient shapes must be [N, K-1], [N, K], [N] for logits ", logits.sizes(),
      ", got ", g_cum.sizes(), ", ", g_cls.sizes(), ", ", g_exp.sizes());
  for (const at::Tensor* t : {&g_cum, &g_cls, &g_exp}) {
    TORCH_CHECK(
        t->device() == logits.device(), op, ": gradients must be on ", logits.device(),
        ", got one on ", t->device());
  }
}

// Weights converted to the accumulation dtype, contiguous; undefined if absent.
inline at::Tensor prepare_weights(const std::optional<at::Tensor>& w, at::ScalarType acc) {
  if (!w.has_value() || !w->defined()) {
    return at::Tensor();
  }
  return w->to(acc).contiguous();
}

// Per-row losses (accumulation dtype) -> the requested reduction in `dtype`.
// `denom` is the normaliser of 'mean' (N for CORAL, the number of (row, task)
// pairs for CORN), a 0-d tensor on the rows' device; a zero denominator (empty
// batch) gives a loss of 0, not NaN.
inline at::Tensor finish_loss(
    const at::Tensor& row_loss,
    Reduction red,
    const at::Tensor& denom,
    at::ScalarType dtype) {
  if (red == Reduction::None) {
    return row_loss.to(dtype);
  }
  at::Tensor total = row_loss.sum();
  if (red == Reduction::Mean) {
    total = total / denom.to(total.scalar_type()).clamp_min(1);
  }
  return total.to(dtype);
}

// The four loss entry points of a backend, generated from its
// loss_forward(op, head, logits, labels, weights, reduction, with_grad).
using LossForwardFn = std::tuple<at::Tensor, at::Tensor> (*)(
    const char*,
    Head,
    const at::Tensor&,
    const at::Tensor&,
    const std::optional<at::Tensor>&,
    c10::string_view,
    bool);

template <LossForwardFn Forward>
struct LossKernels {
  static at::Tensor coral(
      const at::Tensor& logits,
      const at::Tensor& labels,
      const std::optional<at::Tensor>& weights,
      c10::string_view reduction) {
    return std::get<0>(
        Forward("facecore::coral_loss", Head::Coral, logits, labels, weights, reduction, false));
  }
  static at::Tensor corn(
      const at::Tensor& logits,
      const at::Tensor& labels,
      const std::optional<at::Tensor>& weights,
      c10::string_view reduction) {
    return std::get<0>(
        Forward("facecore::corn_loss", Head::Corn, logits, labels, weights, reduction, false));
  }
  static std::tuple<at::Tensor, at::Tensor> coral_fused(
      const at::Tensor& logits,
      const at::Tensor& labels,
      const std::optional<at::Tensor>& weights,
      c10::string_view reduction) {
    return Forward("facecore::coral_loss", Head::Coral, logits, labels, weights, reduction, true);
  }
  static std::tuple<at::Tensor, at::Tensor> corn_fused(
      const at::Tensor& logits,
      const at::Tensor& labels,
      const std::optional<at::Tensor>& weights,
      c10::string_view reduction) {
    return Forward("facecore::corn_loss", Head::Corn, logits, labels, weights, reduction, true);
  }
};

// ------------------------------------------------------------ rank prediction

// The outputs of ordinal_predict a caller asks for; the others are not
// computed (an empty [0] tensor is returned in their place).
struct PredictOutputs {
  bool cum = true; // P(y > k) [N, K-1]
  bool cls = true; // P(y = k) [N, K]
  bool expected = true; // expected rank [N]
  bool labels = true; // predicted rank [N] int64

  bool probs() const {
    return cum || cls || expected;
  }
};

// Argument checks of every prediction op; returns the head.
inline Head check_predict_inputs(
    const char* op,
    const at::Tensor& logits,
    c10::string_view head,
    double threshold) {
  check_logits(op, logits);
  const Head h = parse_head(head, op);
  check_threshold(op, threshold);
  return h;
}

// Output tensors of a prediction of `logits` (contiguous, on its device):
// (cum [N, T], cls [N, T + 1], expected [N], labels int64 [N]), each [0] when
// not asked for.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> predict_outputs(
    const at::Tensor& logits,
    PredictOutputs want) {
  const int64_t N = logits.size(0);
  const int64_t T = logits.size(1);
  const auto opt = logits.options();
  return {
      want.cum ? at::empty({N, T}, opt) : at::empty({0}, opt),
      want.cls ? at::empty({N, T + 1}, opt) : at::empty({0}, opt),
      want.expected ? at::empty({N}, opt) : at::empty({0}, opt),
      want.labels ? at::empty({N}, opt.dtype(at::kLong)) : at::empty({0}, opt.dtype(at::kLong))};
}

// The three prediction entry points of a backend, generated from its
// predict_forward(op, logits, head, threshold, outputs): one fused pass
// computes whatever subset of (cum, cls, expected, labels) is asked for.
using PredictForwardFn = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> (*)(
    const char*,
    const at::Tensor&,
    c10::string_view,
    double,
    PredictOutputs);

template <PredictForwardFn Forward>
struct PredictKernels {
  static at::Tensor labels(const at::Tensor& logits, c10::string_view head, double threshold) {
    return std::get<3>(
        Forward("facecore::ordinal_labels", logits, head, threshold, {false, false, false, true}));
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor> probs(
      const at::Tensor& logits,
      c10::string_view head) {
    auto [cum, cls, expected, labels] =
        Forward("facecore::ordinal_probs", logits, head, 0.5, {true, true, true, false});
    return {cum, cls, expected};
  }
  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> predict(
      const at::Tensor& logits,
      c10::string_view head,
      double threshold,
      bool cum_probs,
      bool class_probs,
      bool expected,
      bool labels) {
    return Forward(
        "facecore::ordinal_predict", logits, head, threshold,
        {cum_probs, class_probs, expected, labels});
  }
};

} // namespace facecore::ops::ordinal
