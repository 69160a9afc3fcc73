// CUDA kernels of the face-matching op family (schemas in ../matching.cpp).
//
// pairwise_distance: <x_i, y_j> with one cuBLAS product (at::mm), then one
//   thread per entry turns it into a distance, recomputing from the
//   differences where the product form cancels (as the CPU kernel does).
//   Its backward is matrix products (distance_backward in ../matching_common.h).
// Triplet loss: one block per anchor. For each positive p (uniform across the
//   block) the threads stride over the negatives n, each accumulating its loss
//   terms and writing dL/d(dist)[a, n] for its own columns; dL/d(dist)[a, p]
//   is a block reduction. With swap, dL/d(dist)[p, n] is shared with the
//   other anchors of the identity and accumulated with atomics (run-to-run
//   rounding differences), and so is the anchor row.
// Batch-hard: one thread per anchor (an O(B) scan). Contrastive: one block per
//   row. Per-row sums and counts are reduced with ATen (no host
//   synchronisation); accumulation in acc_t (fp32 for half types).

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "../matching_common.h"
#include "../matching_math.h"
#include "cuda_common.cuh"

namespace facecore::ops::matching {
namespace {

using cuda::block_sum;
using cuda::kThreads;
using cuda::kWarps;

constexpr double kRecompute = 0.0625;

// Blocks for a grid-stride loop over `threads_needed` threads.
int64_t grid_blocks(int64_t threads_needed) {
  return std::min<int64_t>(cuda::blocks_for(threads_needed), 65535);
}

// ------------------------------------------------------------ distances

template <typename scalar_t, typename acc_t>
__global__ void distance_kernel(
    const acc_t* __restrict__ g,
    const acc_t* __restrict__ X,
    const acc_t* __restrict__ Y,
    const acc_t* __restrict__ nx,
    const acc_t* __restrict__ ny,
    int64_t B,
    int64_t M,
    int64_t D,
    int metric,
    acc_t tau,
    scalar_t* __restrict__ out) {
  const int64_t total = B * M;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t i = idx / M;
    const int64_t j = idx - i * M;
    const acc_t gij = g[idx];
    acc_t r;
    if (metric == static_cast<int>(Metric::Cosine)) {
      r = acc_t(1) - gij;
    } else {
      const acc_t n2 = nx[i] + ny[j];
      acc_t s = n2 - acc_t(2) * gij;
      if (s < tau * n2) {
        const acc_t* xi = X + i * D;
        const acc_t* yj = Y + j * D;
        acc_t t = acc_t(0);
        for (int64_t k = 0; k < D; ++k) {
          const acc_t d = xi[k] - yj[k];
          t += d * d;
        }
        s = t;
      }
      r = metric == static_cast<int>(Metric::Euclidean) ? ::sqrt(s) : s;
    }
    out[idx] = static_cast<scalar_t>(r);
  }
}

at::Tensor pairwise_distance_cuda(
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    c10::string_view metric_s,
    bool normalize) {
  const char* op = "facecore::pairwise_distance";
  check_distance_inputs(op, x, y);
  const Metric metric = parse_metric(metric_s, op);
  c10::cuda::CUDAGuard guard(x.device());
  const bool self = !(y.has_value() && y->defined());
  const at::Tensor X = prepared_rows(x, metric, normalize);
  const at::Tensor Y = self ? X : prepared_rows(*y, metric, normalize);
  const int64_t B = X.size(0);
  const int64_t M = Y.size(0);
  const int64_t D = X.size(1);
  at::Tensor out = at::empty({B, M}, x.options());
  if (B == 0 || M == 0) {
    return out;
  }
  const at::Tensor G = at::mm(X, Y.t());
  const at::Tensor nx = X.pow(2).sum(1);
  const at::Tensor ny = self ? nx : Y.pow(2).sum(1);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "facecore_pairwise_distance_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        distance_kernel<scalar_t, acc_t><<<grid_blocks(B * M), kThreads, 0, stream>>>(
            G.const_data_ptr<acc_t>(), X.const_data_ptr<acc_t>(), Y.const_data_ptr<acc_t>(),
            nx.const_data_ptr<acc_t>(), ny.const_data_ptr<acc_t>(), B, M, D,
            static_cast<int>(metric), static_cast<acc_t>(kRecompute),
            out.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor> pairwise_distance_backward_cuda(
    const at::Tensor& grad,
    const at::Tensor& x,
    const std::optional<at::Tensor>& y,
    const at::Tensor& dist,
    c10::string_view metric_s,
    bool normalize) {
  const char* op = "facecore::_pairwise_distance_backward";
  check_distance_backward_inputs(op, grad, x, y, dist);
  const Metric metric = parse_metric(metric_s, op);
  c10::cuda::CUDAGuard guard(x.device());
  return distance_backward(grad, x, y, dist, metric, normalize);
}

// ---------------------------------------------------------------- triplets

template <typename acc_t>
__global__ void triplet_kernel(
    const acc_t* __restrict__ Dm,
    const int64_t* __restrict__ lab,
    int64_t B,
    int mining_i,
    bool soft,
    bool swap,
    bool nonzero,
    acc_t margin,
    acc_t mm,
    acc_t* Gm, // nullable; aliased rows with swap, hence no __restrict__
    acc_t* __restrict__ row_loss, // [B, 2]
    int64_t* __restrict__ row_counts) { // [B, 4]
  __shared__ acc_t s_acc[kWarps];
  __shared__ long long s_cnt[kWarps];
  const Mining mining = static_cast<Mining>(mining_i);
  const int64_t a = blockIdx.x;
  const int64_t la = lab[a];
  const acc_t* Da = Dm + a * B;
  acc_t* Ga = Gm == nullptr ? nullptr : Gm + a * B;
  acc_t lsum = acc_t(0);
  long long nact = 0;
  long long nmin = 0;
  for (int64_t p = 0; p < B; ++p) {
    if (p == a || lab[p] != la) {
      continue; // uniform across the block
    }
    const acc_t dap = Da[p];
    const acc_t* Dp = Dm + p * B;
    acc_t gp = acc_t(0);
    for (int64_t n = threadIdx.x; n < B; n += blockDim.x) {
      if (lab[n] == la) {
        continue;
      }
      const acc_t dan = Da[n];
      if (!is_mined<acc_t>(mining, dan - dap, mm)) {
        continue;
      }
      acc_t de = dan;
      acc_t w_an = acc_t(1);
      acc_t w_pn = acc_t(0);
      if (swap) {
        const acc_t dpn = Dp[n];
        de = min_nan(dan, dpn);
        min_weights(dan, dpn, &w_an, &w_pn);
      }
      acc_t l;
      acc_t g;
      triplet_term<acc_t>(soft, dap - de + margin, &l, &g);
      const bool pos = l > acc_t(0);
      nmin += 1;
      nact += pos ? 1 : 0;
      if (pos || !nonzero) {
        lsum += l;
        if (Ga != nullptr) {
          gp += g;
          if (swap) {
            atomicAdd(Ga + n, -g * w_an);
            atomicAdd(Gm + p * B + n, -g * w_pn);
          } else {
            Ga[n] -= g * w_an;
          }
        }
      }
    }
    if (Ga != nullptr) {
      const acc_t total = block_sum(gp, s_acc);
      if (threadIdx.x == 0) {
        Ga[p] += total; // column p is a positive of a: no other block writes it
      }
    }
  }
  lsum = block_sum(lsum, s_acc);
  nact = block_sum(nact, s_cnt);
  nmin = block_sum(nmin, s_cnt);
  if (threadIdx.x == 0) {
    row_loss[2 * a] = lsum;
    row_counts[4 * a] = static_cast<int64_t>(nact);
    row_counts[4 * a + 1] = static_cast<int64_t>(nmin);
  }
}

template <typename acc_t>
__global__ void batch_hard_kernel(
    const acc_t* __restrict__ Dm,
    const int64_t* __restrict__ lab,
    int64_t B,
    bool soft,
    bool swap,
    bool nonzero,
    acc_t margin,
    acc_t* Gm,
    acc_t* __restrict__ row_loss,
    int64_t* __restrict__ row_counts) {
  const int64_t a = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (a >= B) {
    return;
  }
  const acc_t* Da = Dm + a * B;
  const int64_t la = lab[a];
  int64_t ip = -1;
  int64_t in = -1;
  acc_t dp = acc_t(0);
  acc_t dn = acc_t(0);
  for (int64_t j = 0; j < B; ++j) {
    const acc_t v = Da[j];
    if (lab[j] == la) {
      if (j != a && (ip < 0 || v > dp || (v != v && dp == dp))) {
        ip = j;
        dp = v;
      }
    } else if (in < 0 || v < dn || (v != v && dn == dn)) {
      in = j;
      dn = v;
    }
  }
  if (ip < 0 || in < 0) {
    return; // row_loss / row_counts are zero-initialised
  }
  acc_t de = dn;
  acc_t w_an = acc_t(1);
  acc_t w_pn = acc_t(0);
  if (swap) {
    const acc_t dpn = Dm[ip * B + in];
    de = min_nan(dn, dpn);
    min_weights(dn, dpn, &w_an, &w_pn);
  }
  acc_t l;
  acc_t g;
  triplet_term<acc_t>(soft, dp - de + margin, &l, &g);
  const bool pos = l > acc_t(0);
  const bool take = pos || !nonzero;
  row_loss[2 * a] = take ? l : acc_t(0);
  row_counts[4 * a] = pos ? 1 : 0;
  row_counts[4 * a + 1] = 1;
  if (Gm != nullptr && take) {
    atomicAdd(Gm + a * B + ip, g);
    atomicAdd(Gm + a * B + in, -g * w_an);
    if (swap) {
      atomicAdd(Gm + ip * B + in, -g * w_pn);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> triplet_forward(
    const at::Tensor& dist_in,
    const at::Tensor& labels_in,
    double margin,
    bool swap,
    bool soft,
    c10::string_view mining_s,
    std::optional<double> mining_margin,
    c10::string_view reduction_s,
    bool with_grad) {
  const char* op = "facecore::triplet_margin_loss";
  check_loss_inputs(op, dist_in, labels_in);
  check_margin(op, "margin", margin);
  if (mining_margin.has_value()) {
    check_margin(op, "mining_margin", *mining_margin);
  }
  const Mining mining = parse_mining(mining_s, op);
  const Reduction red = parse_reduction(reduction_s, op, kLossReductions);
  c10::cuda::CUDAGuard guard(dist_in.device());
  const at::ScalarType acc = acc_dtype(dist_in.scalar_type());
  const at::Tensor dist = dist_in.to(acc).contiguous();
  const at::Tensor lab = labels_in.to(at::kLong).contiguous();
  const int64_t B = dist.size(0);
  at::Tensor rows = at::zeros({B, 2}, dist.options());
  at::Tensor counts = at::zeros({B, 4}, dist.options().dtype(at::kLong));
  at::Tensor G = with_grad ? at::zeros({B, B}, dist.options()) : at::Tensor();
  const bool nonzero = red == Reduction::MeanNonzero;
  const double mm = mining_margin.value_or(margin);
  if (B > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(acc, "facecore_triplet_margin_loss_cuda", [&] {
      scalar_t* Gm = with_grad ? G.mutable_data_ptr<scalar_t>() : nullptr;
      if (mining == Mining::BatchHard) {
        batch_hard_kernel<scalar_t><<<(B + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
            dist.const_data_ptr<scalar_t>(), lab.const_data_ptr<int64_t>(), B, soft, swap,
            nonzero, static_cast<scalar_t>(margin), Gm, rows.mutable_data_ptr<scalar_t>(),
            counts.mutable_data_ptr<int64_t>());
      } else {
        triplet_kernel<scalar_t><<<B, kThreads, 0, stream>>>(
            dist.const_data_ptr<scalar_t>(), lab.const_data_ptr<int64_t>(), B,
            static_cast<int>(mining), soft, swap, nonzero, static_cast<scalar_t>(margin),
            static_cast<scalar_t>(mm), Gm, rows.mutable_data_ptr<scalar_t>(),
            counts.mutable_data_ptr<int64_t>());
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  auto [loss, active, cands, scale] = finish_loss(rows, counts, red, dist_in.scalar_type());
  at::Tensor grad;
  if (with_grad) {
    G.mul_(scale[0]);
    grad = G.to(dist_in.scalar_type());
  }
  return {loss, active, cands, grad};
}

// ------------------------------------------------------------- contrastive

template <typename acc_t>
__global__ void contrastive_kernel(
    const acc_t* __restrict__ Dm,
    const int64_t* __restrict__ lab,
    int64_t B,
    int form_i,
    bool nonzero,
    acc_t mp,
    acc_t mn,
    acc_t* __restrict__ Gm,
    acc_t* __restrict__ row_loss,
    int64_t* __restrict__ row_counts) {
  __shared__ acc_t s_acc[kWarps];
  __shared__ long long s_cnt[kWarps];
  const PairForm form = static_cast<PairForm>(form_i);
  const int64_t a = blockIdx.x;
  const int64_t la = lab[a];
  const acc_t* Da = Dm + a * B;
  acc_t sum0 = acc_t(0);
  acc_t sum1 = acc_t(0);
  long long act0 = 0;
  long long act1 = 0;
  long long cnt0 = 0;
  long long cnt1 = 0;
  for (int64_t j = threadIdx.x; j < B; j += blockDim.x) {
    const bool same = lab[j] == la;
    const acc_t d = Da[j];
    acc_t l;
    acc_t g;
    pair_term<acc_t>(form, same ? d - mp : mn - d, &l, &g);
    const bool valid = j != a;
    const bool pos = valid && l > acc_t(0);
    const bool take = valid && (pos || !nonzero);
    const acc_t lt = take ? l : acc_t(0);
    if (same) {
      sum0 += lt;
      act0 += pos ? 1 : 0;
      cnt0 += valid ? 1 : 0;
    } else {
      sum1 += lt;
      act1 += pos ? 1 : 0;
      cnt1 += 1;
    }
    if (Gm != nullptr) {
      Gm[a * B + j] = take ? (same ? g : -g) : acc_t(0);
    }
  }
  sum0 = block_sum(sum0, s_acc);
  sum1 = block_sum(sum1, s_acc);
  act0 = block_sum(act0, s_cnt);
  act1 = block_sum(act1, s_cnt);
  cnt0 = block_sum(cnt0, s_cnt);
  cnt1 = block_sum(cnt1, s_cnt);
  if (threadIdx.x == 0) {
    row_loss[2 * a] = sum0;
    row_loss[2 * a + 1] = sum1;
    row_counts[4 * a] = static_cast<int64_t>(act0);
    row_counts[4 * a + 1] = static_cast<int64_t>(cnt0);
    row_counts[4 * a + 2] = static_cast<int64_t>(act1);
    row_counts[4 * a + 3] = static_cast<int64_t>(cnt1);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> contrastive_forward(
    const at::Tensor& dist_in,
    const at::Tensor& labels_in,
    double pos_margin,
    double neg_margin,
    c10::string_view form_s,
    c10::string_view reduction_s,
    bool with_grad) {
  const char* op = "facecore::contrastive_loss";
  check_loss_inputs(op, dist_in, labels_in);
  check_margin(op, "pos_margin", pos_margin);
  check_margin(op, "neg_margin", neg_margin);
  const PairForm form = parse_form(form_s, op);
  const Reduction red = parse_reduction(reduction_s, op, kLossReductions);
  c10::cuda::CUDAGuard guard(dist_in.device());
  const at::ScalarType acc = acc_dtype(dist_in.scalar_type());
  const at::Tensor dist = dist_in.to(acc).contiguous();
  const at::Tensor lab = labels_in.to(at::kLong).contiguous();
  const int64_t B = dist.size(0);
  at::Tensor rows = at::zeros({B, 2}, dist.options());
  at::Tensor counts = at::zeros({B, 4}, dist.options().dtype(at::kLong));
  at::Tensor G = with_grad ? at::empty({B, B}, dist.options()) : at::Tensor();
  if (B > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(acc, "facecore_contrastive_loss_cuda", [&] {
      contrastive_kernel<scalar_t><<<B, kThreads, 0, stream>>>(
          dist.const_data_ptr<scalar_t>(), lab.const_data_ptr<int64_t>(), B,
          static_cast<int>(form), red == Reduction::MeanNonzero,
          static_cast<scalar_t>(pos_margin), static_cast<scalar_t>(neg_margin),
          with_grad ? G.mutable_data_ptr<scalar_t>() : nullptr, rows.mutable_data_ptr<scalar_t>(),
          counts.mutable_data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  auto [loss, active, cands, scale] = finish_loss(rows, counts, red, dist_in.scalar_type());
  at::Tensor grad;
  if (with_grad) {
    const at::Tensor same = lab.unsqueeze(1) == lab.unsqueeze(0);
    G.mul_(at::where(same, scale[0], scale[1]));
    grad = G.to(dist_in.scalar_type());
  }
  return {loss, active, cands, grad};
}

// ---------------------------------------------------------------- entry points

at::Tensor matching_loss_backward_cuda(const at::Tensor& grad, const at::Tensor& unit_grad) {
  check_loss_backward_inputs("facecore::_matching_loss_backward", grad, unit_grad);
  c10::cuda::CUDAGuard guard(unit_grad.device());
  return scale_unit_grad(grad, unit_grad);
}

} // namespace

TORCH_LIBRARY_IMPL(facecore, CUDA, m) {
  m.impl("pairwise_distance", TORCH_FN(pairwise_distance_cuda));
  m.impl("_pairwise_distance_backward", TORCH_FN(pairwise_distance_backward_cuda));
  using Loss = LossKernels<&triplet_forward, &contrastive_forward>;
  m.impl("triplet_margin_loss", TORCH_FN(Loss::triplet));
  m.impl("_triplet_margin_loss_fused", TORCH_FN(Loss::triplet_fused));
  m.impl("contrastive_loss", TORCH_FN(Loss::contrastive));
  m.impl("_contrastive_loss_fused", TORCH_FN(Loss::contrastive_fused));
  m.impl("_matching_loss_backward", TORCH_FN(matching_loss_backward_cuda));
}

} // namespace facecore::ops::matching
