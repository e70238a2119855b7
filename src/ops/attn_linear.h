/* Chunked causal linear attention: the core op shared by the linear-attention
 * and norm-attention layers (docs/parameters.md, Transformer forward pass).
 *
 * Shapes: q, k (B, L, H*dk), already feature-mapped by the caller (elu+1, or
 * identity for norm attention with approx_fn none); v (B, L, H*dv); the
 * output y (B, L, H*dv) has the heads concatenated like v.  Per head h, with
 * S_t = sum_{s<=t} k_s v_s^T (dk x dv) and z_t = sum_{s<=t} k_s:
 *
 *   num_t = q_t^T S_t = sum_{s<=t} (q_t . k_s) v_s
 *   normalize = true  (linear attention): y_t = num_t / (q_t . z_t)   (no eps)
 *   normalize = false (norm attention):   y_t = num_t
 *
 * With normalize = false the caller applies its own per-(t, h) factor
 * exp(-f(n_t + o_h)) and folds the 1/sqrt(dh) key scale into k.
 *
 * log_eta: NULL, or (B, H, L) float64 receiving log den_t = log(q_t . z_t)
 * exactly as used by this forward pass (normalize only; ignored otherwise).
 * The linear-attention eigenvalue (docs/eigenvalues.md, section 1) is then
 * eta_{t-1}/eta_t = exp(log_eta[t-1] - log_eta[t]).
 *
 * Algorithm.  Per (b, h), the sequence is cut into chunks of C rows; the
 * state S (and z) is carried across chunks.  For the normalised case v is
 * augmented with a column of ones, V' = [V | 1], so that S' = [S | z] and
 * the numerator's last column is the denominator; both modes then share
 * one code path with dva = dv + normalize columns.  Per chunk:
 *   A = tril(Q_c K_c^T)           (C x C, s <= t inclusive)
 *   N = A V'_c + Q_c S'           (the carried state, before this chunk)
 *   S' += K_c^T V'_c
 * Backward, with W' = [dy/den | -(dy/den . y)] (normalize) or W' = dy:
 *   dQ_c += tril(W'_c V'_c^T) K_c + W'_c S'^T           (S' before chunk c)
 *   dK_c += tril(W'_c V'_c^T)^T Q_c + V'_c G'^T        (G' after chunk c)
 *   dV_c += A^T W_c + K_c G                              (first dv columns)
 *   G' = sum over later chunks of Q_c^T W'_c
 * computed in two sweeps: an ascending one carrying S' (only the
 * inter-chunk term of dQ) and a descending one carrying G'.  All products
 * are cblas_sgemm calls, issued inside an OpenMP loop over (b, h) (OpenBLAS
 * then runs single-threaded); every (b, h) is computed by one thread in a
 * fixed order, so results are bit-identical for any thread count.  Little
 * parallelism when B*H is below the thread count.
 *
 * Memory.  Forward saves den (B*H*L floats) on the tape when normalize is
 * set, nothing else (y is the op's output; q, k, v are inputs).  Scratch per
 * thread, forward and backward: 2 C^2 + 2 C dva + dk dva floats
 * (C = 32, dk = dv = 128: 105 KB), independent of L (the default chunk is
 * at most max(64, min(dk, dv)) rows, see attnlin_default_chunk).
 * Cost: forward 2 C^2 (dk + dva) + 4 C dk dva flops per chunk, backward
 * 10 C^2 d + 10 C d^2 (dk = dva = d), about 2.5x the forward. */
#ifndef SEQEIG_MODELS_ATTN_LINEAR_H
#define SEQEIG_MODELS_ATTN_LINEAR_H

#include <stdbool.h>

#include "../graph.h"

/* Chunk size of op_causal_linear_attn: one chunk (plain masked quadratic
 * form, no state GEMMs, cheapest backward) when L <= 64 or L < min(dk, dv),
 * else ATTNLIN_CHUNK rows.  Measured fwd / bwd ms on 2 cores, B=64, H=1,
 * normalize: L=512, dk=dv=128: C=32 14 / 39, C=64 19 / 50; L=128,
 * dk=dv=128: C=32 2.8 / 7.3, one chunk 3.0 / 8.1; L=96, dk=dv=128: C=32
 * 1.9 / 5.0, one chunk 1.7 / 4.0; L=64, dk=dv=128: C=32 1.0 / 2.6, one
 * chunk 0.8 / 1.9. */
#define ATTNLIN_CHUNK 32
int attnlin_default_chunk(int L, int dk, int dv);

Tensor *op_causal_linear_attn(Graph *g, Tensor *q, Tensor *k, Tensor *v, int H, bool normalize,
                              double *log_eta);
/* Same with an explicit chunk size (>= 1); results differ from another chunk
 * size only by float32 rounding.  Used by the tests to exercise many chunks. */
Tensor *op_causal_linear_attn_chunked(Graph *g, Tensor *q, Tensor *k, Tensor *v, int H,
                                      bool normalize, double *log_eta, int chunk);

/* ---- element-wise kernels (exposed for the AVX2-vs-scalar tests) ----
 * Row t of N has dv numerator columns followed by the denominator:
 *   den[t] = N[t*ldn + dv];  y[t*ldy + j] = N[t*ldn + j] / den[t]. */
void attnlin_k_normalize_rows(const float *N, int ldn, int n, int dv, float *y, int ldy, float *den);
void attnlin_k_normalize_rows_scalar(const float *N, int ldn, int n, int dv, float *y, int ldy,
                                     float *den);
/* W[t*ldw + j] = dy[t*ldd + j] / den[t] (j < dv);
 * W[t*ldw + dv] = -sum_j W[t*ldw + j] * y[t*ldy + j]. */
void attnlin_k_grad_rows(const float *dy, int ldd, const float *y, int ldy, const float *den,
                         int n, int dv, float *W, int ldw);
void attnlin_k_grad_rows_scalar(const float *dy, int ldd, const float *y, int ldy,
                                const float *den, int n, int dv, float *W, int ldw);
#if defined(__AVX2__) && defined(__FMA__)
void attnlin_k_normalize_rows_avx2(const float *N, int ldn, int n, int dv, float *y, int ldy,
                                   float *den);
void attnlin_k_grad_rows_avx2(const float *dy, int ldd, const float *y, int ldy, const float *den,
                              int n, int dv, float *W, int ldw);
#endif

#endif
