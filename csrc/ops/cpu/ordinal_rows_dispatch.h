#pragma once

// Run-time choice between the portable and the AVX2 build of the ordinal row
// math. Honours ATEN_CPU_CAPABILITY=default like ATen's own kernels do.

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace facecore::ops::ordinal::cpu {

namespace DEFAULT {
float loss_row(const float*, int64_t, int64_t, int64_t, int64_t, const float*, float, float*);
double loss_row(const double*, int64_t, int64_t, int64_t, int64_t, const double*, double, double*);
} // namespace DEFAULT

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FACECORE_HAVE_AVX2_ROWS 1
namespace AVX2 {
float loss_row(const float*, int64_t, int64_t, int64_t, int64_t, const float*, float, float*);
double loss_row(const double*, int64_t, int64_t, int64_t, int64_t, const double*, double, double*);
} // namespace AVX2
#endif

inline bool use_avx2() {
#ifdef FACECORE_HAVE_AVX2_ROWS
  static const bool ok = [] {
    const char* env = std::getenv("ATEN_CPU_CAPABILITY");
    if (env != nullptr && (std::strcmp(env, "default") == 0 || std::strcmp(env, "DEFAULT") == 0)) {
      return false;
    }
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
#else
  return false;
#endif
}

template <typename T>
using LossRowFn = T (*)(const T*, int64_t, int64_t, int64_t, int64_t, const T*, T, T*);

template <typename T>
LossRowFn<T> loss_row_fn() {
#ifdef FACECORE_HAVE_AVX2_ROWS
  if (use_avx2()) {
    return static_cast<LossRowFn<T>>(&AVX2::loss_row);
  }
#endif
  return static_cast<LossRowFn<T>>(&DEFAULT::loss_row);
}

} // namespace facecore::ops::ordinal::cpu
