/* Raw kernels behind the ops: plain arrays, no tape.  Each kernel family
 * has a scalar version (always built, the reference) and, when SIMD_AVX2,
 * an AVX2+FMA version; the un-suffixed name dispatches to the best one.
 * Tests compare the two; benchmarks time the dispatched one. */
#ifndef SEQEIG_KERNELS_H
#define SEQEIG_KERNELS_H

#include <stddef.h>

#include "../simd.h"

/* Element-wise loops are split between threads in blocks of this many
 * elements (a multiple of 8), and only when there are enough of them. */
#define KERNEL_BLOCK 4096
#define KERNEL_PAR_MIN 65536

/* ---- arith (ops/arith.c) ---- */
/* y = a + b, y = a * b, y = s * x + c (each may alias its inputs) */
void k_add(const float *a, const float *b, float *y, size_t n);
void k_mul(const float *a, const float *b, float *y, size_t n);
void k_affine(const float *x, float s, float c, float *y, size_t n);
/* y += a, y += a * b, y += s * a */
void k_acc(float *y, const float *a, size_t n);
void k_acc_mul(float *y, const float *a, const float *b, size_t n);
void k_acc_scaled(float *y, const float *a, float s, size_t n);

void k_add_scalar(const float *a, const float *b, float *y, size_t n);
void k_mul_scalar(const float *a, const float *b, float *y, size_t n);
void k_affine_scalar(const float *x, float s, float c, float *y, size_t n);
#if SIMD_AVX2
void k_add_avx2(const float *a, const float *b, float *y, size_t n);
void k_mul_avx2(const float *a, const float *b, float *y, size_t n);
void k_affine_avx2(const float *x, float s, float c, float *y, size_t n);
#endif

#endif
