#pragma once

// Run-time choice of the vectorised CPU row kernels. The row math
// (ordinal_rows.h, matching_rows.h) is compiled once per capability, inside
// ATen's `inline namespace CPU_CAPABILITY`:
//   vec_default.cpp  DEFAULT  any CPU (ATen's portable Vectorized)
//   vec_avx2.cpp     AVX2     AVX2 + FMA (x86-64, GCC / clang)
//   vec_avx512.cpp   AVX512   AVX-512 F/BW/VL/DQ (x86-64, GCC / clang)
// and the kernels call the build of the capability ATen itself runs with
// (at::get_cpu_capability(): the best the CPU supports, lowered by
// ATEN_CPU_CAPABILITY=default|avx2), so facecore and ATen agree.

#include <cstdint>
#include <string>

#include <ATen/Version.h>

#include "../matching_math.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FACECORE_HAVE_X86_ROWS 1
#endif

namespace facecore::ops::cpu {

enum class Isa { Default, Avx2, Avx512 };

inline Isa cpu_isa() {
  static const Isa isa = [] {
#ifdef FACECORE_HAVE_X86_ROWS
    const std::string cap = at::get_cpu_capability();
    if (cap == "AVX512") {
      return Isa::Avx512;
    }
    if (cap == "AVX2") {
      return Isa::Avx2;
    }
#endif
    return Isa::Default;
  }();
  return isa;
}

} // namespace facecore::ops::cpu

// Pointer of type FnType to `name` in the running capability's namespace
// (DEFAULT / AVX2 / AVX512 nested in the current namespace).
#ifdef FACECORE_HAVE_X86_ROWS
#define FACECORE_ISA_PICK(FnType, name)                                           \
  (::facecore::ops::cpu::cpu_isa() == ::facecore::ops::cpu::Isa::Avx512            \
       ? static_cast<FnType>(&AVX512::name)                                        \
       : ::facecore::ops::cpu::cpu_isa() == ::facecore::ops::cpu::Isa::Avx2        \
       ? static_cast<FnType>(&AVX2::name)                                          \
       : static_cast<FnType>(&DEFAULT::name))
#define FACECORE_FOR_EACH_ISA(DECL) \
  namespace DEFAULT {               \
  DECL(float) DECL(double)          \
  }                                 \
  namespace AVX2 {                  \
  DECL(float) DECL(double)          \
  }                                 \
  namespace AVX512 {                \
  DECL(float) DECL(double)          \
  }
#else
#define FACECORE_ISA_PICK(FnType, name) static_cast<FnType>(&DEFAULT::name)
#define FACECORE_FOR_EACH_ISA(DECL) \
  namespace DEFAULT {               \
  DECL(float) DECL(double)          \
  }
#endif

// ------------------------------------------------------------------ ordinal

namespace facecore::ops::ordinal::cpu {

#define FACECORE_ORDINAL_ROWS(T)                                                        \
  T loss_row(const T* x, int64_t k0, int64_t n, int64_t y, int64_t active, const T* w,  \
             T gscale, T* g);                                                           \
  void predict_rows(const T* x, int64_t rows, int64_t n, bool corn, double logit_t,     \
                    int64_t* label, T* cum, T* cls, T* expected);
FACECORE_FOR_EACH_ISA(FACECORE_ORDINAL_ROWS)

template <typename T>
using LossRowFn = T (*)(const T*, int64_t, int64_t, int64_t, int64_t, const T*, T, T*);
template <typename T>
using PredictRowsFn =
    void (*)(const T*, int64_t, int64_t, bool, double, int64_t*, T*, T*, T*);

template <typename T>
LossRowFn<T> loss_row_fn() {
  return FACECORE_ISA_PICK(LossRowFn<T>, loss_row);
}

template <typename T>
PredictRowsFn<T> predict_rows_fn() {
  return FACECORE_ISA_PICK(PredictRowsFn<T>, predict_rows);
}

} // namespace facecore::ops::ordinal::cpu

// ----------------------------------------------------------------- matching

namespace facecore::ops::matching::cpu {

#define FACECORE_MATCHING_ROWS(T)                                                          \
  void triplet_anchor(const T* Da, const T* neg, int64_t B, const T* dap, int64_t npos,    \
                      Mining mining, bool soft, T margin, T mining_margin, bool keep_zero, \
                      T* Ga, T* gpos, double* loss, int64_t* active, int64_t* mined);
FACECORE_FOR_EACH_ISA(FACECORE_MATCHING_ROWS)

template <typename T>
using TripletAnchorFn = void (*)(const T*, const T*, int64_t, const T*, int64_t, Mining, bool, T,
                                 T, bool, T*, T*, double*, int64_t*, int64_t*);

template <typename T>
TripletAnchorFn<T> triplet_anchor_fn() {
  return FACECORE_ISA_PICK(TripletAnchorFn<T>, triplet_anchor);
}

} // namespace facecore::ops::matching::cpu
