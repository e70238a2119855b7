/* Activation kernels (ops/activation.c).  Forward: y = f(x).  Backward:
 * dx += dy * f'(x), written from whichever of x and y is cheaper and
 * exact (exp and sigmoid from y, the others from x).  The scalar versions
 * use libm (expf, erfcf, log1pf) and are the reference; the AVX2 versions
 * use src/simd_math.h and agree with them to a few float32 ulp. */
#ifndef SEQEIG_K_ACTIVATION_H
#define SEQEIG_K_ACTIVATION_H

#include <stdbool.h>
#include <stddef.h>

#include "parallel.h"

typedef enum { ACT_EXP, ACT_GELU, ACT_SILU, ACT_ELU, ACT_SOFTPLUS, ACT_SIGMOID, ACT_RELU, ACT_COUNT } ActKind;

/* PyTorch's softplus threshold: x > 20 returns x (and gradient 1). */
#define SOFTPLUS_THRESHOLD 20.0f

void k_act_fwd_scalar(ActKind k, const float *x, float *y, size_t n);
void k_act_bwd_scalar(ActKind k, const float *x, const float *y, const float *dy, float *dx, size_t n,
                      bool acc);
#if SIMD_AVX2
void k_act_fwd_avx2(ActKind k, const float *x, float *y, size_t n);
void k_act_bwd_avx2(ActKind k, const float *x, const float *y, const float *dy, float *dx, size_t n,
                    bool acc);
#endif
/* Best available; splits large arrays between threads in fixed blocks. */
void k_act_fwd(ActKind k, const float *x, float *y, size_t n);
void k_act_bwd(ActKind k, const float *x, const float *y, const float *dy, float *dx, size_t n, bool acc);

/* Feature map s (elu(x) + 1) on a column window (ops/activation.c): x
 * points at the window, rows ldx apart; y, dy are (rows, C).  Backward:
 * dx (rows lddx apart) += (acc) or = (!acc) s dy elu'(x), taking elu'(x)
 * from the forward's output y when s = 1 (recomputed otherwise). */
void k_elu1_cols_fwd_scalar(const float *x, size_t ldx, float *y, size_t rows, size_t C, float s);
void k_elu1_cols_bwd_scalar(const float *x, size_t ldx, const float *y, const float *dy, float *dx, size_t lddx,
                            size_t rows, size_t C, float s, bool acc);
#if SIMD_AVX2
void k_elu1_cols_fwd_avx2(const float *x, size_t ldx, float *y, size_t rows, size_t C, float s);
void k_elu1_cols_bwd_avx2(const float *x, size_t ldx, const float *y, const float *dy, float *dx, size_t lddx,
                          size_t rows, size_t C, float s, bool acc);
#endif

#endif
