// AVX2 + FMA build of the ordinal row math (x86-64 only), chosen at run time
// when the CPU supports it (see ordinal_rows_dispatch.h). Only this translation
// unit is compiled for AVX2, so the library still loads on older CPUs. The
// ISA macros are set by hand because `#pragma GCC target` does not define
// them, and ATen's and SLEEF's vector headers test them.
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
#define FACECORE_DEFINE_LOSS_ROWS
#include "ordinal_rows.h"
#endif
