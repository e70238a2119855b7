/* Kernels of the sequence and broadcasting ops (ops/conv1d.c, ops/glu.c,
 * ops/dropout.c, ops/broadcast.c): plain arrays, no tape.
 *
 * As in every kernel family, `_scalar` is the plain C reference (always
 * built), `_avx2` the AVX2+FMA version (only when SIMD_AVX2) and the
 * un-suffixed name dispatches.  Both variants split work between OpenMP
 * threads in the same fixed blocks, and every sum over rows is formed per
 * fixed block of SEQ_ROW_BLOCK rows with the block partials then added in
 * block order, so results are bit-identical for any thread count.  AVX2 and
 * scalar agree to float rounding (the AVX2 code uses FMA), except dropout,
 * which agrees exactly.
 *
 * Memory: outputs are written or accumulated as documented; `work` buffers
 * are caller-provided scratch of the stated size (no allocation here). */
#ifndef SEQEIG_K_SEQ_H
#define SEQEIG_K_SEQ_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "parallel.h"

/* Rows per block for sums over rows (parameter gradients). */
#define SEQ_ROW_BLOCK 64

/* ---- causal depthwise conv (ops/conv1d.c) ----
 * Rows are (b, t) flattened: x, y, dx, dy are (B*L, C).  The weight is
 * passed TAP-MAJOR, wt (K, C) with wt[j*C + c] = w[c, j] (the op transposes
 * PyTorch's (C, K) once per call), so 8 channels load as one vector. */

/* y[b,t,c] = bias[c] + sum_{j<K, t-K+1+j>=0} wt[j,c] x[b,t-K+1+j,c]; bias may be NULL. */
void k_conv1d_fwd(const float *x, const float *wt, const float *bias, float *y, int B, int L,
                  int C, int K);
/* dx[b,s,c] += sum_{j<K, s+K-1-j<L} wt[j,c] dy[b,s+K-1-j,c] */
void k_conv1d_bwd_x(const float *dy, const float *wt, float *dx, int B, int L, int C, int K);
/* dw[c*K + j] += sum_{b,t} dy[b,t,c] x[b,t-K+1+j,c]   (dw in PyTorch (C, K) layout)
 * db[c] += sum_{b,t} dy[b,t,c].  Either may be NULL.  `work` holds
 * k_conv1d_work_floats(B, L, C, K) floats. */
void k_conv1d_bwd_w(const float *x, const float *dy, float *dw, float *db, float *work, int B,
                    int L, int C, int K);
size_t k_conv1d_work_floats(int B, int L, int C, int K);

void k_conv1d_fwd_scalar(const float *x, const float *wt, const float *bias, float *y, int B,
                         int L, int C, int K);
void k_conv1d_bwd_x_scalar(const float *dy, const float *wt, float *dx, int B, int L, int C,
                           int K);
void k_conv1d_bwd_w_scalar(const float *x, const float *dy, float *dw, float *db, float *work,
                           int B, int L, int C, int K);
#if SIMD_AVX2
void k_conv1d_fwd_avx2(const float *x, const float *wt, const float *bias, float *y, int B,
                       int L, int C, int K);
void k_conv1d_bwd_x_avx2(const float *dy, const float *wt, float *dx, int B, int L, int C,
                         int K);
void k_conv1d_bwd_w_avx2(const float *x, const float *dy, float *dw, float *db, float *work,
                         int B, int L, int C, int K);
#endif

/* ---- fused causal conv + SiLU on a column window (ops/conv1d.c) ----
 * x points at the window's first column, rows ldx floats apart; y, dy are
 * (B*L, C).  Forward: y = silu(z), z as k_conv1d_fwd.  Backward: with
 * dz = dy silu'(z) (z recomputed), dx (rows lddx apart) += (acc) or =
 * (!acc) the conv transpose of dz; dw, db (each may be NULL) += as
 * k_conv1d_bwd_w of dz.  work: k_conv1d_silu_work_floats(..., threads)
 * floats with threads >= the OpenMP team size. */
void k_conv1d_silu_fwd(const float *x, size_t ldx, const float *wt, const float *bias, float *y, int B,
                       int L, int C, int K);
void k_conv1d_silu_bwd(const float *x, size_t ldx, const float *wt, const float *bias, const float *dy,
                       float *dx, size_t lddx, bool acc, float *dw, float *db, float *work, int B, int L,
                       int C, int K);
size_t k_conv1d_silu_work_floats(int B, int L, int C, int K, int threads);
void k_conv1d_silu_fwd_scalar(const float *x, size_t ldx, const float *wt, const float *bias, float *y,
                              int B, int L, int C, int K);
void k_conv1d_silu_bwd_scalar(const float *x, size_t ldx, const float *wt, const float *bias,
                              const float *dy, float *dx, size_t lddx, bool acc, float *dw, float *db,
                              float *work, int B, int L, int C, int K);
#if SIMD_AVX2
void k_conv1d_silu_fwd_avx2(const float *x, size_t ldx, const float *wt, const float *bias, float *y,
                            int B, int L, int C, int K);
void k_conv1d_silu_bwd_avx2(const float *x, size_t ldx, const float *wt, const float *bias,
                            const float *dy, float *dx, size_t lddx, bool acc, float *dw, float *db,
                            float *work, int B, int L, int C, int K);
#endif

/* ---- GLU (ops/glu.c) ----
 * u (rows, 2d) = [a | b] per row, y (rows, d) = a * sigmoid(b).
 * Backward accumulates (acc) or stores (!acc) into du (rows, 2d):
 *   du_a += dy sigmoid(b),  du_b += dy a sigmoid(b) (1 - sigmoid(b)). */
void k_glu_fwd(const float *u, float *y, size_t rows, size_t d);
void k_glu_bwd(const float *u, const float *dy, float *du, size_t rows, size_t d, bool acc);
void k_glu_fwd_scalar(const float *u, float *y, size_t rows, size_t d);
void k_glu_bwd_scalar(const float *u, const float *dy, float *du, size_t rows, size_t d, bool acc);
#if SIMD_AVX2
void k_glu_fwd_avx2(const float *u, float *y, size_t rows, size_t d);
void k_glu_bwd_avx2(const float *u, const float *dy, float *du, size_t rows, size_t d, bool acc);
#endif

/* ---- dropout (ops/dropout.c) ----
 * Element i (0-based over the whole tensor) is kept iff
 *   u_i = (word >> 8) * 2^-24 >= p,
 * word = word (i mod 4) of philox4x32_10(ctr = {i/4 (64 bit, low word
 * first), step, op}, key), i.e. u_i == rng_uniform_at(key, step, op, i).
 * Kept elements are scaled by 1.0f / (1.0f - p), dropped ones are 0.
 * p in [0, 1).  Forward writes y, backward accumulates dx += mask*scale*dy. */
void k_dropout_fwd(const float *x, float *y, size_t n, uint64_t key, uint32_t step, uint32_t op,
                   float p);
void k_dropout_bwd(const float *dy, float *dx, size_t n, uint64_t key, uint32_t step,
                   uint32_t op, float p);
void k_dropout_fwd_scalar(const float *x, float *y, size_t n, uint64_t key, uint32_t step,
                          uint32_t op, float p);
void k_dropout_bwd_scalar(const float *dy, float *dx, size_t n, uint64_t key, uint32_t step,
                          uint32_t op, float p);
#if SIMD_AVX2
void k_dropout_fwd_avx2(const float *x, float *y, size_t n, uint64_t key, uint32_t step,
                        uint32_t op, float p);
void k_dropout_bwd_avx2(const float *dy, float *dx, size_t n, uint64_t key, uint32_t step,
                        uint32_t op, float p);
#endif

/* ---- broadcasting (ops/broadcast.c) ----
 * x, y, dx, dy are (rows, C); v is (C). */
/* y = x + v,  y = x * v (per row) */
void k_add_cols(const float *x, const float *v, float *y, size_t rows, size_t C);
void k_mul_cols(const float *x, const float *v, float *y, size_t rows, size_t C);
/* dx += dy * v (per row) */
void k_mul_cols_acc(const float *dy, const float *v, float *dx, size_t rows, size_t C);
/* out[c] += sum_r a[r,c] * b[r,c]  (b NULL: sum_r a[r,c]).  `work` holds
 * k_colsum_prod_work_floats(rows, C) floats. */
void k_colsum_prod_acc(const float *a, const float *b, float *out, float *work, size_t rows, size_t C);
size_t k_colsum_prod_work_floats(size_t rows, size_t C);
/* Per-head scaling, x and y (rows, H*P), s (rows, H) if s_per_row else (H):
 *   y[r, h*P+p] = x[r, h*P+p] * s[r, h] */
void k_mul_heads(const float *x, const float *s, float *y, size_t rows, size_t H, size_t P,
                 int s_per_row);
/* dx[r, h*P+p] += dy[r, h*P+p] * s[r, h]  (s as in k_mul_heads) */
void k_mul_heads_acc(const float *dy, const float *s, float *dx, size_t rows, size_t H,
                     size_t P, int s_per_row);
/* out[r, h] += sum_p a[r, h*P+p] * b[r, h*P+p] */
void k_heads_dot_acc(const float *a, const float *b, float *out, size_t rows, size_t H,
                     size_t P);

void k_add_cols_scalar(const float *x, const float *v, float *y, size_t rows, size_t C);
void k_mul_cols_scalar(const float *x, const float *v, float *y, size_t rows, size_t C);
void k_mul_cols_acc_scalar(const float *dy, const float *v, float *dx, size_t rows, size_t C);
void k_colsum_prod_acc_scalar(const float *a, const float *b, float *out, float *work, size_t rows,
                         size_t C);
void k_mul_heads_scalar(const float *x, const float *s, float *y, size_t rows, size_t H,
                        size_t P, int s_per_row);
void k_mul_heads_acc_scalar(const float *dy, const float *s, float *dx, size_t rows, size_t H,
                            size_t P, int s_per_row);
void k_heads_dot_acc_scalar(const float *a, const float *b, float *out, size_t rows, size_t H,
                            size_t P);
#if SIMD_AVX2
void k_add_cols_avx2(const float *x, const float *v, float *y, size_t rows, size_t C);
void k_mul_cols_avx2(const float *x, const float *v, float *y, size_t rows, size_t C);
void k_mul_cols_acc_avx2(const float *dy, const float *v, float *dx, size_t rows, size_t C);
void k_colsum_prod_acc_avx2(const float *a, const float *b, float *out, float *work, size_t rows,
                       size_t C);
void k_mul_heads_avx2(const float *x, const float *s, float *y, size_t rows, size_t H,
                      size_t P, int s_per_row);
void k_mul_heads_acc_avx2(const float *dy, const float *s, float *dx, size_t rows, size_t H,
                          size_t P, int s_per_row);
void k_heads_dot_acc_avx2(const float *a, const float *b, float *out, size_t rows, size_t H,
                          size_t P);
#endif

#endif
