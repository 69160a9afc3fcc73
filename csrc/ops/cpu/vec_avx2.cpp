// AVX2 + FMA build of the vectorised row kernels (x86-64 only), chosen at run
// time when ATen runs with AVX2 (see vec_isa.h). Only this translation unit
// is compiled for AVX2, so the library still loads on older CPUs. The ISA
// macros are set by hand because `#pragma GCC target` does not define them,
// and ATen's and SLEEF's vector headers test them.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "vec_rows.h"
#endif
