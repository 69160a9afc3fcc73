// Portable build of the ordinal row math (any CPU; ATEN_CPU_CAPABILITY=default).
#define CPU_CAPABILITY DEFAULT
#define FACECORE_DEFINE_LOSS_ROWS
#include "ordinal_rows.h"
