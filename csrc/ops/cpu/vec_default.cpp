// Portable build of the vectorised row kernels (any CPU; ATen's DEFAULT
// capability). See vec_isa.h.
#define CPU_CAPABILITY DEFAULT
#include "vec_rows.h"
