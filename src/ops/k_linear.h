/* Kernels of the linear-algebra ops (ops/linear.c) that are not GEMMs.
 * GEMMs themselves go to OpenBLAS cblas_sgemm. */
#ifndef SEQEIG_K_LINEAR_H
#define SEQEIG_K_LINEAR_H

#include <stddef.h>

#include "parallel.h"

/* y (rows, cols): every row set to b (cols). */
void k_fill_rows(float *y, size_t rows, size_t cols, const float *b);

#endif
