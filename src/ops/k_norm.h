/* Row kernels of the normalisation / probability ops: layer norm
 * (ops/layernorm.c), softmax (ops/softmax.c) and fused cross entropy
 * (ops/cross_entropy.c).  Each works on ONE row of n contiguous floats;
 * the ops run them over rows with `omp parallel for schedule(static)`, so
 * a row's arithmetic never depends on the number of threads.
 *
 * Like every kernel family: `_scalar` is the plain-C reference (always
 * built), `_avx2` the AVX2+FMA version (only when SIMD_AVX2; tails use
 * masked loads), the un-suffixed name dispatches.  Outputs named y / mean /
 * rstd / max / sum / argmax are written; dx / dgamma / dbeta are
 * ACCUMULATED (+=) and may be NULL when that gradient is not needed. */
#ifndef SEQEIG_K_NORM_H
#define SEQEIG_K_NORM_H

#include <stdbool.h>
#include <stddef.h>

#include "../simd.h"

/* ---- layer norm (ops/layernorm.c) ---- */
/* mean = sum(x)/n, var = sum((x-mean)^2)/n (biased), rstd = 1/sqrt(var+eps),
 * y = (x - mean) * rstd * gamma + beta.  n = 1 gives y = beta. */
void k_layernorm_fwd_row(const float *x, const float *gamma, const float *beta, float eps,
                         float *y, float *mean, float *rstd, size_t n);
/* With xhat = (x - mean) rstd and g = dy * gamma:
 *   dx     += rstd (g - mean(g) - xhat mean(g xhat))   (dx_acc; else dx =, dx
 *                                                     may be uninitialised)
 *   dgamma += dy xhat,   dbeta += dy          (any of the three may be NULL) */
void k_layernorm_bwd_row(const float *x, const float *dy, const float *gamma, float mean,
                         float rstd, float *dx, float *dgamma, float *dbeta, size_t n,
                         bool dx_acc);

void k_layernorm_fwd_row_scalar(const float *x, const float *gamma, const float *beta,
                                float eps, float *y, float *mean, float *rstd, size_t n);
void k_layernorm_bwd_row_scalar(const float *x, const float *dy, const float *gamma, float mean,
                                float rstd, float *dx, float *dgamma, float *dbeta, size_t n,
                         bool dx_acc);
#if SIMD_AVX2
void k_layernorm_fwd_row_avx2(const float *x, const float *gamma, const float *beta, float eps,
                              float *y, float *mean, float *rstd, size_t n);
void k_layernorm_bwd_row_avx2(const float *x, const float *dy, const float *gamma, float mean,
                              float rstd, float *dx, float *dgamma, float *dbeta, size_t n,
                         bool dx_acc);
#endif

/* ---- softmax (ops/softmax.c) ---- */
/* y = exp(x - max x) / sum exp(x - max x); y may alias x. */
void k_softmax_fwd_row(const float *x, float *y, size_t n);
/* dx += y (dy - sum(dy y)) */
void k_softmax_bwd_row(const float *y, const float *dy, float *dx, size_t n);

void k_softmax_fwd_row_scalar(const float *x, float *y, size_t n);
void k_softmax_bwd_row_scalar(const float *y, const float *dy, float *dx, size_t n);
#if SIMD_AVX2
void k_softmax_fwd_row_avx2(const float *x, float *y, size_t n);
void k_softmax_bwd_row_avx2(const float *y, const float *dy, float *dx, size_t n);
#endif

/* ---- cross entropy (ops/cross_entropy.c) ---- */
/* *max = max x, *sum = sum exp(x - max) (>= 1), *argmax = first index of
 * the maximum (torch.argmax).  log-sum-exp = max + log(sum).  n >= 1. */
void k_xent_fwd_row(const float *x, float *max, float *sum, int *argmax, size_t n);
/* dx += scale * exp(x - max) (accumulate) or dx = scale * exp(x - max)
 * (!accumulate: dx may be uninitialised): with scale = dloss / (n_valid *
 * sum) this is the softmax part of the gradient; the caller subtracts the
 * one-hot. */
void k_xent_bwd_row(const float *x, float max, float scale, float *dx, size_t n, bool accumulate);

void k_xent_fwd_row_scalar(const float *x, float *max, float *sum, int *argmax, size_t n);
void k_xent_bwd_row_scalar(const float *x, float max, float scale, float *dx, size_t n,
                           bool accumulate);
#if SIMD_AVX2
void k_xent_fwd_row_avx2(const float *x, float *max, float *sum, int *argmax, size_t n);
void k_xent_bwd_row_avx2(const float *x, float max, float scale, float *dx, size_t n,
                         bool accumulate);
#endif

/* Rows x cols below this many elements run on one thread (OpenMP start-up
 * costs more than the work); the result is the same either way. */
#define NORM_PAR_MIN 16384

#endif
