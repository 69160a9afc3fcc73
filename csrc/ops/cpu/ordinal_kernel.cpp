// CPU kernels of the ordinal op family (schemas in ../ordinal.cpp).
//
// Rows are split across threads with at::parallel_for; every row is computed
// in one pass in the accumulation type (fp32 for half types), vectorised with
// at::vec (ordinal_rows.h, built for the CPU capability ATen runs with; see
// vec_isa.h):
//   losses       the loss and its gradient in one read of the logits;
//   prediction   one fused pass for labels, P(y > k), P(y = k) and the
//                expected rank, computing only the outputs asked for
//                (ordinal_labels, ordinal_probs and ordinal_predict are three
//                views of it).

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../ordinal_common.h"
#include "../ordinal_math.h"
#include "vec_isa.h"

namespace facecore::ops::ordinal {
namespace {

// Labels as contiguous int64, each checked to lie in [0, T]. Also returns the
// number of (row, task) pairs CORN uses: sum_i min(y_i + 1, T).
at::Tensor checked_labels(const char* op, const at::Tensor& labels, int64_t T, int64_t* pairs) {
  at::Tensor y = labels.to(at::kLong).contiguous();
  const int64_t* p = y.const_data_ptr<int64_t>();
  const int64_t n = y.numel();
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = p[i];
    TORCH_CHECK_VALUE(
        v >= 0 && v <= T, op, ": labels must be class indices in [0, K-1] = [0, ", T,
        "] for logits with K-1 = ", T, " columns; labels[", i, "] = ", v);
    count += std::min<int64_t>(v + 1, T);
  }
  *pairs = count;
  return y;
}

template <typename scalar_t>
void loss_rows(
    const at::Tensor& logits,
    const int64_t* y,
    Head head,
    const at::Tensor& w,
    double gscale,
    at::Tensor& row_loss,
    scalar_t* grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = logits.size(0);
  const int64_t T = logits.size(1);
  const scalar_t* x = logits.const_data_ptr<scalar_t>();
  const acc_t* wp = w.defined() ? w.const_data_ptr<acc_t>() : nullptr;
  acc_t* rl = row_loss.mutable_data_ptr<acc_t>();
  const auto fn = cpu::loss_row_fn<acc_t>();
  const acc_t gs = static_cast<acc_t>(gscale);
  at::parallel_for(0, N, grain_for(T), [&](int64_t begin, int64_t end) {
    constexpr int64_t C = 256;
    acc_t xb[C];
    acc_t gb[C];
    for (int64_t i = begin; i < end; ++i) {
      const int64_t yi = y[i];
      const int64_t active = head == Head::Coral ? T : std::min<int64_t>(yi + 1, T);
      const scalar_t* xi = x + i * T;
      scalar_t* gi = grad == nullptr ? nullptr : grad + i * T;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        rl[i] = fn(xi, 0, T, yi, active, wp, gs, gi);
      } else {
        acc_t s = acc_t(0);
        for (int64_t k0 = 0; k0 < T; k0 += C) {
          const int64_t n = std::min<int64_t>(C, T - k0);
          for (int64_t j = 0; j < n; ++j) {
            xb[j] = static_cast<acc_t>(xi[k0 + j]);
          }
          s += fn(xb, k0, n, yi, active, wp == nullptr ? nullptr : wp + k0, gs,
                  gi == nullptr ? nullptr : gb);
          if (gi != nullptr) {
            for (int64_t j = 0; j < n; ++j) {
              gi[k0 + j] = static_cast<scalar_t>(gb[j]);
            }
          }
        }
        rl[i] = s;
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> loss_forward(
    const char* op,
    Head head,
    const at::Tensor& logits_in,
    const at::Tensor& labels_in,
    const std::optional<at::Tensor>& weights,
    c10::string_view reduction,
    bool with_grad) {
  check_loss_inputs(op, logits_in, labels_in, weights);
  const Reduction red = parse_reduction(reduction, op, kLossReductions);
  const at::Tensor logits = logits_in.contiguous();
  const int64_t N = logits.size(0);
  const int64_t T = logits.size(1);
  int64_t pairs = 0;
  const at::Tensor y = checked_labels(op, labels_in, T, &pairs);
  const at::ScalarType acc = acc_dtype(logits.scalar_type());
  const at::Tensor w = prepare_weights(weights, acc);

  const int64_t denom = head == Head::Coral ? N : pairs;
  const double gscale = (red == Reduction::Mean && denom > 0) ? 1.0 / double(denom) : 1.0;
  at::Tensor row_loss = at::empty({N}, logits.options().dtype(acc));
  at::Tensor grad = with_grad ? at::empty({N, T}, logits.options()) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "facecore_ordinal_cpu", [&] {
    loss_rows<scalar_t>(
        logits, y.const_data_ptr<int64_t>(), head, w, gscale, row_loss,
        with_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr);
  });
  at::Tensor loss = finish_loss(
      row_loss, red, at::scalar_tensor(double(denom), row_loss.options()), logits.scalar_type());
  return {loss, grad};
}

at::Tensor ordinal_loss_backward_cpu(
    const at::Tensor& grad_in,
    const at::Tensor& unit_grad_in,
    c10::string_view reduction) {
  const char* op = "facecore::_ordinal_loss_backward";
  const Reduction red = parse_reduction(reduction, op, kLossReductions);
  check_loss_backward_inputs(op, grad_in, unit_grad_in, red);
  const at::Tensor unit = unit_grad_in.contiguous();
  const at::Tensor g = grad_in.to(acc_dtype(unit.scalar_type())).contiguous();
  at::Tensor out = at::empty(unit.sizes(), unit.options());
  const int64_t N = unit.size(0);
  const int64_t T = unit.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, unit.scalar_type(), "facecore_ordinal_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* u = unit.const_data_ptr<scalar_t>();
    const acc_t* gp = g.const_data_ptr<acc_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const bool per_row = red == Reduction::None;
    at::parallel_for(0, N, grain_for(T), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t s = per_row ? gp[i] : gp[0];
        for (int64_t k = 0; k < T; ++k) {
          o[i * T + k] = static_cast<scalar_t>(static_cast<acc_t>(u[i * T + k]) * s);
        }
      }
    });
  });
  return out;
}

template <typename scalar_t>
void predict_rows_cpu(
    const at::Tensor& logits,
    bool corn,
    double logit_t,
    PredictOutputs want,
    at::Tensor& labels,
    at::Tensor& cum,
    at::Tensor& cls,
    at::Tensor& expected) {
  const int64_t N = logits.size(0);
  const int64_t T = logits.size(1);
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x = logits.const_data_ptr<scalar_t>();
  int64_t* lp = want.labels ? labels.mutable_data_ptr<int64_t>() : nullptr;
  scalar_t* cp = want.cum ? cum.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* pp = want.cls ? cls.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* ep = want.expected ? expected.mutable_data_ptr<scalar_t>() : nullptr;
  const auto rows = cpu::predict_rows_fn<acc_t>();
  at::parallel_for(0, N, grain_for(T), [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      rows(x + begin * T, end - begin, T, corn, logit_t, lp == nullptr ? nullptr : lp + begin,
           cp == nullptr ? nullptr : cp + begin * T,
           pp == nullptr ? nullptr : pp + begin * (T + 1),
           ep == nullptr ? nullptr : ep + begin);
    } else {
      // half types: one row at a time through fp32 buffers
      std::vector<acc_t> xb(T);
      std::vector<acc_t> cb(cp == nullptr ? 0 : T);
      std::vector<acc_t> pb(pp == nullptr ? 0 : T + 1);
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t k = 0; k < T; ++k) {
          xb[k] = static_cast<acc_t>(x[i * T + k]);
        }
        acc_t e = acc_t(0);
        rows(xb.data(), 1, T, corn, logit_t, lp == nullptr ? nullptr : lp + i,
             cp == nullptr ? nullptr : cb.data(), pp == nullptr ? nullptr : pb.data(),
             ep == nullptr ? nullptr : &e);
        if (cp != nullptr) {
          for (int64_t k = 0; k < T; ++k) {
            cp[i * T + k] = static_cast<scalar_t>(cb[k]);
          }
        }
        if (pp != nullptr) {
          for (int64_t k = 0; k <= T; ++k) {
            pp[i * (T + 1) + k] = static_cast<scalar_t>(pb[k]);
          }
        }
        if (ep != nullptr) {
          ep[i] = static_cast<scalar_t>(e);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> predict_forward(
    const char* op,
    const at::Tensor& logits_in,
    c10::string_view head_str,
    double threshold,
    PredictOutputs want) {
  const Head head = check_predict_inputs(op, logits_in, head_str, threshold);
  const at::Tensor logits = logits_in.contiguous();
  auto [cum, cls, expected, labels] = predict_outputs(logits, want);
  const bool corn = head == Head::Corn;
  const double logit_t = std::log(threshold) - std::log1p(-threshold);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "facecore_ordinal_cpu", [&] {
    predict_rows_cpu<scalar_t>(logits, corn, logit_t, want, labels, cum, cls, expected);
  });
  return {cum, cls, expected, labels};
}

at::Tensor ordinal_probs_backward_cpu(
    const at::Tensor& g_cum_in,
    const at::Tensor& g_cls_in,
    const at::Tensor& g_exp_in,
    const at::Tensor& logits_in,
    c10::string_view head_str) {
  const char* op = "facecore::_ordinal_probs_backward";
  check_logits(op, logits_in);
  const Head head = parse_head(head_str, op);
  const int64_t N = logits_in.size(0);
  const int64_t T = logits_in.size(1);
  check_probs_backward_inputs(op, g_cum_in, g_cls_in, g_exp_in, logits_in);
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor g_cum = g_cum_in.to(logits.scalar_type()).contiguous();
  const at::Tensor g_cls = g_cls_in.to(logits.scalar_type()).contiguous();
  const at::Tensor g_exp = g_exp_in.to(acc_dtype(logits.scalar_type())).contiguous();
  at::Tensor grad = at::empty({N, T}, logits.options());
  at::Tensor scratch = at::empty({head == Head::Corn ? N : 0, T}, logits.options().dtype(acc_dtype(logits.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "facecore_ordinal_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    const scalar_t* gc = g_cum.const_data_ptr<scalar_t>();
    const scalar_t* gl = g_cls.const_data_ptr<scalar_t>();
    const acc_t* ge = g_exp.const_data_ptr<acc_t>();
    acc_t* s = scratch.mutable_data_ptr<acc_t>();
    scalar_t* gx = grad.mutable_data_ptr<scalar_t>();
    const bool corn = head == Head::Corn;
    at::parallel_for(0, N, grain_for(T), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        probs_backward_row<scalar_t, acc_t>(
            gc + i * T, gl + i * (T + 1), ge[i], x + i * T, T, corn,
            corn ? s + i * T : nullptr, gx + i * T);
      }
    });
  });
  return grad;
}

} // namespace

TORCH_LIBRARY_IMPL(facecore, CPU, m) {
  using Loss = LossKernels<&loss_forward>;
  m.impl("coral_loss", TORCH_FN(Loss::coral));
  m.impl("corn_loss", TORCH_FN(Loss::corn));
  m.impl("_coral_loss_fused", TORCH_FN(Loss::coral_fused));
  m.impl("_corn_loss_fused", TORCH_FN(Loss::corn_fused));
  m.impl("_ordinal_loss_backward", TORCH_FN(ordinal_loss_backward_cpu));
  using Predict = PredictKernels<&predict_forward>;
  m.impl("ordinal_labels", TORCH_FN(Predict::labels));
  m.impl("ordinal_probs", TORCH_FN(Predict::probs));
  m.impl("ordinal_predict", TORCH_FN(Predict::predict));
  m.impl("_ordinal_probs_backward", TORCH_FN(ordinal_probs_backward_cpu));
}

} // namespace facecore::ops::ordinal
