#pragma once

// The row functions declared in vec_isa.h, defined for one CPU capability.
// Included once by each vec_<capability>.cpp after it sets CPU_CAPABILITY
// (and the ISA macros); nothing else includes it.

#include "matching_rows.h"
#include "ordinal_rows.h"

#define FACECORE_DEFINE_ROWS(T)                                                                 \
  namespace ordinal::cpu {                                                                      \
  inline namespace CPU_CAPABILITY {                                                             \
  T loss_row(const T* x, int64_t k0, int64_t n, int64_t y, int64_t active, const T* w,          \
             T gscale, T* g) {                                                                  \
    return loss_row_impl<T>(x, k0, n, y, active, w, gscale, g);                                 \
  }                                                                                             \
  void predict_rows(const T* x, int64_t rows, int64_t n, bool corn, double logit_t,             \
                    int64_t* label, T* cum, T* cls, T* expected) {                              \
    predict_rows_impl<T>(x, rows, n, corn, logit_t, label, cum, cls, expected);                 \
  }                                                                                             \
  }                                                                                             \
  }                                                                                             \
  namespace matching::cpu {                                                                     \
  inline namespace CPU_CAPABILITY {                                                             \
  void triplet_anchor(const T* Da, const T* neg, int64_t B, const T* dap, int64_t npos,         \
                      Mining mining, bool soft, T margin, T mining_margin, bool keep_zero,      \
                      T* Ga, T* gpos, double* loss, int64_t* active, int64_t* mined) {          \
    triplet_anchor_impl<T>(Da, neg, B, dap, npos, mining, soft, margin, mining_margin,          \
                           keep_zero, Ga, gpos, loss, active, mined);                           \
  }                                                                                             \
  }                                                                                             \
  }

namespace facecore::ops {
FACECORE_DEFINE_ROWS(float)
FACECORE_DEFINE_ROWS(double)
} // namespace facecore::ops
