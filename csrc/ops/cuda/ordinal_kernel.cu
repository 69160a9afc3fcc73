// CUDA kernels of the ordinal op family (schemas in ../ordinal.cpp).
//
// Losses: one warp per row; lanes stride over the row's tasks, each computing
// its loss term and gradient in one read of the logit, and the warp reduces the
// row's loss (fp32 accumulation for half types). Rows are then reduced with
// ATen (deterministic). Labels are validated with a device-side assertion (no
// host synchronisation), like torch.nn.functional.nll_loss.
// Rank prediction (ordinal_predict / ordinal_labels / ordinal_probs): one warp
// per row, the lanes on consecutive tasks (coalesced loads and stores), 32 at a
// time; the running minimum (CORAL envelope) or running sum of log-sigmoids
// (CORN) is a warp scan with shuffles carried from one 32-task chunk to the
// next; only the outputs asked for are written.
// Probability backward: one thread per row running the scalar row math shared
// with the CPU kernels (../ordinal_math.h).

#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "../ordinal_common.h"
#include "../ordinal_math.h"
#include "cuda_common.cuh"

namespace facecore::ops::ordinal {
namespace {

using cuda::blocks_for;
using cuda::kFullMask;
using cuda::kThreads;
using cuda::kWarp;
using cuda::warp_sum;

template <typename scalar_t, typename acc_t>
__global__ void loss_rows_kernel(
    const scalar_t* __restrict__ x,
    const int64_t* __restrict__ y,
    int64_t N,
    int64_t T,
    bool corn,
    const acc_t* __restrict__ w,
    const int64_t* __restrict__ denom, // device count for CORN 'mean', or nullptr
    acc_t gscale,
    acc_t* __restrict__ row_loss,
    scalar_t* __restrict__ grad) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) {
    return; // whole warps leave together: blockDim is a multiple of 32
  }
  const int64_t yi = y[row];
  CUDA_KERNEL_ASSERT(yi >= 0 && yi <= T && "facecore: labels must be class indices in [0, K-1]");
  const int64_t active = corn ? (yi + 1 < T ? yi + 1 : T) : T;
  if (denom != nullptr) {
    const int64_t d = *denom;
    gscale = d > 0 ? acc_t(1) / static_cast<acc_t>(d) : acc_t(1);
  }
  const scalar_t* xr = x + row * T;
  scalar_t* gr = grad == nullptr ? nullptr : grad + row * T;
  acc_t s = acc_t(0);
  for (int64_t k = lane; k < T; k += kWarp) {
    acc_t l = acc_t(0);
    acc_t g = acc_t(0);
    if (k < active) {
      const acc_t xv = static_cast<acc_t>(xr[k]);
      const bool target = k < yi;
      const acc_t e = ::exp(-::abs(xv));
      const acc_t sx = target ? -xv : xv;
      // (sx > 0 ? sx : 0) keeps NaN flowing through e; fmax would drop it.
      l = (sx > acc_t(0) ? sx : acc_t(0)) + ::log1p(e);
      const acc_t sig = (xv >= acc_t(0) ? acc_t(1) : e) / (acc_t(1) + e);
      g = sig - (target ? acc_t(1) : acc_t(0));
      if (w != nullptr) {
        l *= w[k];
        g *= w[k];
      }
    }
    s += l;
    if (gr != nullptr) {
      gr[k] = static_cast<scalar_t>(g * gscale);
    }
  }
  s = warp_sum(s);
  if (lane == 0) {
    row_loss[row] = s;
  }
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
  c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor y = labels_in.to(at::kLong).contiguous();
  const int64_t N = logits.size(0);
  const int64_t T = logits.size(1);
  const at::ScalarType acc = acc_dtype(logits.scalar_type());
  const at::Tensor w = prepare_weights(weights, acc);

  // 'mean' normaliser: N for CORAL, the number of (row, task) pairs for CORN,
  // kept on the device (no synchronisation).
  at::Tensor denom = head == Head::Coral
      ? at::scalar_tensor(double(N), logits.options().dtype(acc))
      : (y.clamp(0, T - 1) + 1).sum();
  const bool mean = red == Reduction::Mean;
  const double host_scale = (mean && head == Head::Coral && N > 0) ? 1.0 / double(N) : 1.0;

  at::Tensor row_loss = at::empty({N}, logits.options().dtype(acc));
  at::Tensor grad = with_grad ? at::empty({N, T}, logits.options()) : at::Tensor();
  if (N > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, logits.scalar_type(), "facecore_ordinal_loss_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          loss_rows_kernel<scalar_t, acc_t><<<blocks_for(N * kWarp), kThreads, 0, stream>>>(
              logits.const_data_ptr<scalar_t>(), y.const_data_ptr<int64_t>(), N, T,
              head == Head::Corn, w.defined() ? w.const_data_ptr<acc_t>() : nullptr,
              (mean && head == Head::Corn) ? denom.const_data_ptr<int64_t>() : nullptr,
              static_cast<acc_t>(host_scale), row_loss.mutable_data_ptr<acc_t>(),
              with_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  at::Tensor loss = finish_loss(row_loss, red, denom, logits.scalar_type());
  return {loss, grad};
}

template <typename scalar_t, typename acc_t>
__global__ void scale_rows_kernel(
    const scalar_t* __restrict__ unit,
    const acc_t* __restrict__ g,
    bool per_row,
    int64_t numel,
    int64_t T,
    scalar_t* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += stride) {
    const acc_t s = per_row ? g[i / T] : g[0];
    out[i] = static_cast<scalar_t>(static_cast<acc_t>(unit[i]) * s);
  }
}

at::Tensor ordinal_loss_backward_cuda(
    const at::Tensor& grad_in,
    const at::Tensor& unit_grad_in,
    c10::string_view reduction) {
  const char* op = "facecore::_ordinal_loss_backward";
  const Reduction red = parse_reduction(reduction, op, kLossReductions);
  check_loss_backward_inputs(op, grad_in, unit_grad_in, red);
  c10::cuda::CUDAGuard guard(unit_grad_in.device());
  const at::Tensor unit = unit_grad_in.contiguous();
  const at::Tensor g = grad_in.to(acc_dtype(unit.scalar_type())).contiguous();
  at::Tensor out = at::empty(unit.sizes(), unit.options());
  const int64_t numel = unit.numel();
  if (numel > 0) {
    const int64_t blocks = std::min<int64_t>(blocks_for(numel), 65535);
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, unit.scalar_type(), "facecore_ordinal_loss_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          scale_rows_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
              unit.const_data_ptr<scalar_t>(), g.const_data_ptr<acc_t>(),
              red == Reduction::None, numel, unit.size(1), out.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return out;
}

// min with NaN propagation (torch.cummin's values)
template <typename acc_t>
__device__ inline acc_t min_nan(acc_t a, acc_t b) {
  return (a != a) ? a : ((b < a || b != b) ? b : a);
}

template <typename scalar_t, typename acc_t>
__global__ void predict_kernel(
    const scalar_t* __restrict__ x,
    int64_t N,
    int64_t T,
    bool corn,
    double logit_t,
    acc_t coral_thr, // logit(t) rounded down to acc_t: x > coral_thr <=> x > logit(t)
    int64_t* __restrict__ labels,
    scalar_t* __restrict__ cum,
    scalar_t* __restrict__ cls,
    scalar_t* __restrict__ expected) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) {
    return; // whole warps leave together: blockDim is a multiple of 32
  }
  const bool probs = cum != nullptr || cls != nullptr || expected != nullptr;
  const acc_t inf = acc_t(INFINITY);
  // CORN decides log P(y > k) > log sigmoid(logit(t)), computed like the terms
  const acc_t log_t = log_sigmoid<acc_t>(static_cast<acc_t>(logit_t));
  const scalar_t* xr = x + row * T;
  acc_t carry_l = acc_t(0); // CORN: L at the end of the previous chunk
  acc_t carry_m = acc_t(1); // envelope m at the end of the previous chunk
  int64_t count = 0;
  acc_t total = acc_t(0);
  for (int64_t k0 = 0; k0 < T; k0 += kWarp) {
    const int64_t k = k0 + lane;
    const bool valid = k < T;
    const int last = static_cast<int>(T - k0 < kWarp ? T - k0 - 1 : kWarp - 1);
    // padding: a -inf logit counts for nothing (P(y > k) = 0)
    const acc_t xv = valid ? static_cast<acc_t>(xr[k]) : -inf;
    acc_t q;
    if (corn) {
      acc_t l = log_sigmoid<acc_t>(xv);
      for (int off = 1; off < kWarp; off *= 2) {
        const acc_t t = __shfl_up_sync(kFullMask, l, off);
        if (lane >= off) {
          l += t;
        }
      }
      l += carry_l;
      carry_l = __shfl_sync(kFullMask, l, last);
      count += (valid && l > log_t) ? 1 : 0;
      if (!probs) {
        continue;
      }
      q = ::exp(l);
    } else {
      count += (valid && xv > coral_thr) ? 1 : 0;
      if (!probs) {
        continue;
      }
      q = stable_sigmoid<acc_t>(xv);
    }
    acc_t m = q; // the envelope: CORN P(y > k) itself, CORAL its running minimum
    if (!corn) {
      for (int off = 1; off < kWarp; off *= 2) {
        const acc_t t = __shfl_up_sync(kFullMask, m, off);
        if (lane >= off) {
          m = min_nan(t, m);
        }
      }
      m = min_nan(carry_m, m);
    }
    acc_t prev = __shfl_up_sync(kFullMask, m, 1);
    if (lane == 0) {
      prev = carry_m;
    }
    if (valid) {
      if (cum != nullptr) {
        cum[row * T + k] = static_cast<scalar_t>(q);
      }
      if (cls != nullptr) {
        cls[row * (T + 1) + k] = static_cast<scalar_t>(prev - m);
      }
      total += m;
    }
    carry_m = __shfl_sync(kFullMask, m, last);
  }
  count = warp_sum(count);
  total = warp_sum(total);
  if (lane == 0) {
    if (labels != nullptr) {
      labels[row] = count;
    }
    if (cls != nullptr) {
      cls[row * (T + 1) + T] = static_cast<scalar_t>(carry_m);
    }
    if (expected != nullptr) {
      expected[row] = static_cast<scalar_t>(total);
    }
  }
}

// logit(t) rounded down to acc_t (for float: x > result <=> x > logit(t) in
// float64, for every float x).
template <typename acc_t>
acc_t round_down(double v) {
  acc_t r = static_cast<acc_t>(v);
  if (static_cast<double>(r) > v) {
    r = std::nextafter(r, -std::numeric_limits<acc_t>::infinity());
  }
  return r;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> predict_forward(
    const char* op,
    const at::Tensor& logits_in,
    c10::string_view head_str,
    double threshold,
    PredictOutputs want) {
  const Head head = check_predict_inputs(op, logits_in, head_str, threshold);
  c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const int64_t N = logits.size(0);
  const int64_t T = logits.size(1);
  auto [cum, cls, expected, labels] = predict_outputs(logits, want);
  const double logit_t = std::log(threshold) - std::log1p(-threshold);
  if (N > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, logits.scalar_type(), "facecore_ordinal_predict_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          predict_kernel<scalar_t, acc_t><<<blocks_for(N * kWarp), kThreads, 0, stream>>>(
              logits.const_data_ptr<scalar_t>(), N, T, head == Head::Corn, logit_t,
              round_down<acc_t>(logit_t),
              want.labels ? labels.mutable_data_ptr<int64_t>() : nullptr,
              want.cum ? cum.mutable_data_ptr<scalar_t>() : nullptr,
              want.cls ? cls.mutable_data_ptr<scalar_t>() : nullptr,
              want.expected ? expected.mutable_data_ptr<scalar_t>() : nullptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return {cum, cls, expected, labels};
}

template <typename scalar_t, typename acc_t>
__global__ void probs_backward_kernel(
    const scalar_t* __restrict__ g_cum,
    const scalar_t* __restrict__ g_cls,
    const acc_t* __restrict__ g_exp,
    const scalar_t* __restrict__ x,
    int64_t N,
    int64_t T,
    bool corn,
    acc_t* __restrict__ scratch,
    scalar_t* __restrict__ grad) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < N) {
    probs_backward_row<scalar_t, acc_t>(
        g_cum + i * T, g_cls + i * (T + 1), g_exp[i], x + i * T, T, corn,
        corn ? scratch + i * T : nullptr, grad + i * T);
  }
}

at::Tensor ordinal_probs_backward_cuda(
    const at::Tensor& g_cum_in,
    const at::Tensor& g_cls_in,
    const at::Tensor& g_exp_in,
    const at::Tensor& logits_in,
    c10::string_view head_str) {
  const char* op = "facecore::_ordinal_probs_backward";
  check_logits(op, logits_in);
  const Head head = parse_head(head_str, op);
  check_probs_backward_inputs(op, g_cum_in, g_cls_in, g_exp_in, logits_in);
  c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const int64_t N = logits.size(0);
  const int64_t T = logits.size(1);
  const at::ScalarType acc = acc_dtype(logits.scalar_type());
  const at::Tensor g_cum = g_cum_in.to(logits.scalar_type()).contiguous();
  const at::Tensor g_cls = g_cls_in.to(logits.scalar_type()).contiguous();
  const at::Tensor g_exp = g_exp_in.to(acc).contiguous();
  at::Tensor grad = at::empty({N, T}, logits.options());
  at::Tensor scratch = at::empty({head == Head::Corn ? N : 0, T}, logits.options().dtype(acc));
  if (N > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, logits.scalar_type(), "facecore_ordinal_probs_backward_cuda",
        [&] {
          using acc_t = at::opmath_type<scalar_t>;
          probs_backward_kernel<scalar_t, acc_t><<<blocks_for(N), kThreads, 0, stream>>>(
              g_cum.const_data_ptr<scalar_t>(), g_cls.const_data_ptr<scalar_t>(),
              g_exp.const_data_ptr<acc_t>(), logits.const_data_ptr<scalar_t>(), N, T,
              head == Head::Corn, head == Head::Corn ? scratch.mutable_data_ptr<acc_t>() : nullptr,
              grad.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return grad;
}

} // namespace

TORCH_LIBRARY_IMPL(facecore, CUDA, m) {
  using Loss = LossKernels<&loss_forward>;
  m.impl("coral_loss", TORCH_FN(Loss::coral));
  m.impl("corn_loss", TORCH_FN(Loss::corn));
  m.impl("_coral_loss_fused", TORCH_FN(Loss::coral_fused));
  m.impl("_corn_loss_fused", TORCH_FN(Loss::corn_fused));
  m.impl("_ordinal_loss_backward", TORCH_FN(ordinal_loss_backward_cuda));
  using Predict = PredictKernels<&predict_forward>;
  m.impl("ordinal_labels", TORCH_FN(Predict::labels));
  m.impl("ordinal_probs", TORCH_FN(Predict::probs));
  m.impl("ordinal_predict", TORCH_FN(Predict::predict));
  m.impl("_ordinal_probs_backward", TORCH_FN(ordinal_probs_backward_cuda));
}

} // namespace facecore::ops::ordinal
