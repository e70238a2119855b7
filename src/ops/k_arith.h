/* Element-wise arithmetic kernels (ops/arith.c): plain arrays, no tape.
 * Like every kernel family (src/ops/k_<family>.h) each has a scalar version
 * (always built, the reference) and, when SIMD_AVX2, an AVX2+FMA version;
 * the un-suffixed name dispatches to the best one.  Tests compare the two;
 * benchmarks time the dispatched one. */
#ifndef SEQEIG_K_ARITH_H
#define SEQEIG_K_ARITH_H

#include <stdbool.h>
#include <stddef.h>

#include "parallel.h"

/* ---- arith (ops/arith.c) ---- */
/* y = a + b, y = a * b, y = s * x + c (each may alias its inputs) */
void k_add(const float *a, const float *b, float *y, size_t n);
void k_mul(const float *a, const float *b, float *y, size_t n);
void k_affine(const float *x, float s, float c, float *y, size_t n);
/* y += a, y += a * b, y += s * a */
void k_acc(float *y, const float *a, size_t n);
void k_acc_mul(float *y, const float *a, const float *b, size_t n);
void k_acc_scaled(float *y, const float *a, float s, size_t n);
/* y (+)= a * b and y (+)= s * a: accumulate, or store into an uninitialised
 * y when !acc (a fresh gradient, see tensor_grad_fresh) */
void k_mul_to(float *y, const float *a, const float *b, size_t n, bool acc);
void k_scaled_to(float *y, const float *a, float s, size_t n, bool acc);

void k_add_scalar(const float *a, const float *b, float *y, size_t n);
void k_mul_scalar(const float *a, const float *b, float *y, size_t n);
void k_affine_scalar(const float *x, float s, float c, float *y, size_t n);
#if SIMD_AVX2
void k_add_avx2(const float *a, const float *b, float *y, size_t n);
void k_mul_avx2(const float *a, const float *b, float *y, size_t n);
void k_affine_avx2(const float *x, float s, float c, float *y, size_t n);
#endif

#endif
