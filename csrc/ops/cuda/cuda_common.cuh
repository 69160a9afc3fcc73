#pragma once

// Launch shapes and warp / block reductions shared by the CUDA kernels of
// every op family.

#include <cstdint>

namespace facecore::ops::cuda {

constexpr int kWarp = 32;
constexpr int kThreads = 256; // threads per block (a multiple of kWarp)
constexpr int kWarps = kThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;

// Blocks of kThreads covering `threads_needed` threads.
inline int64_t blocks_for(int64_t threads_needed) {
  return (threads_needed + kThreads - 1) / kThreads;
}

// Sum of v over the warp, valid in every lane.
template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  return v;
}

// Sum of v over the block; the result is valid in thread 0. Every thread of
// the block must call it (it synchronises); `shared` holds kWarps values.
template <typename T>
__device__ T block_sum(T v, T* shared) {
  v = warp_sum(v);
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  __syncthreads(); // the previous call's readers are done with `shared`
  if (lane == 0) {
    shared[warp] = v;
  }
  __syncthreads();
  T total = T(0);
  if (threadIdx.x == 0) {
    for (int w = 0; w < kWarps; ++w) {
      total += shared[w];
    }
  }
  return total;
}

} // namespace facecore::ops::cuda
