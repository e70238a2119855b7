/* Kernels of the linear-algebra ops (ops/linear.c) that are not GEMMs.
 * GEMMs themselves go to OpenBLAS cblas_sgemm. */
#ifndef SEQEIG_K_LINEAR_H
#define SEQEIG_K_LINEAR_H

#include <stddef.h>

#include "parallel.h"

/* Column sums accumulated into db: for every column c of dy (rows, cols),
 * s = 0; s += dy[0, c]; ...; s += dy[rows-1, c]; db[c] += s.
 * Every column is summed over all rows in row order, so the result is the
 * same bits for the scalar and the AVX2 version and for any thread count
 * (threads split the columns, never the rows). */
void k_colsum_acc(const float *dy, size_t rows, size_t cols, float *db);
void k_colsum_acc_scalar(const float *dy, size_t rows, size_t cols, float *db);
#if SIMD_AVX2
void k_colsum_acc_avx2(const float *dy, size_t rows, size_t cols, float *db);
#endif

/* y (rows, cols): every row set to b (cols). */
void k_fill_rows(float *y, size_t rows, size_t cols, const float *b);

#endif
