// The facecore operator library: torch.ops.facecore.*
//
// This file owns the namespace (TORCH_LIBRARY) and the build metadata ops. Each
// op family registers its schemas in its own file under csrc/ops/ with
// TORCH_LIBRARY_FRAGMENT, its kernels under csrc/ops/{cpu,cuda}/ and its autograd
// under csrc/ops/autograd/.

#include <string>

#include <torch/library.h>

#ifdef WITH_CUDA
#include <cuda.h>
#endif

#include "version.h"

#ifndef FACECORE_TORCH_VERSION
#define FACECORE_TORCH_VERSION "unknown"
#endif

namespace facecore {

int64_t op_version() {
  return FACECORE_OP_VERSION;
}

int64_t cuda_version() {
#ifdef WITH_CUDA
  return CUDA_VERSION;
#else
  return -1;
#endif
}

std::string build_torch_version() {
  return FACECORE_TORCH_VERSION;
}

TORCH_LIBRARY(facecore, m) {
  m.def("_op_version", &op_version);
  m.def("_cuda_version", &cuda_version);
  m.def("_build_torch_version", &build_torch_version);
}

} // namespace facecore
