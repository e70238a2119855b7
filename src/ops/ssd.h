/* Chunked SSD scan (structured state-space duality, Mamba-2; Dao & Gu 2024):
 * the linear recurrence at the heart of the Mamba-2 layer, forward and a
 * hand-written backward, as one op on the autograd tape.
 *
 * Shapes: x (B, L, H*P); Bm, Cm (B, L, N), shared by all H heads (one
 * group); log_a (B, L, H), the log of the scalar decay of head h at step t
 * (Delta_t * a_h for Mamba-2, a constant -softplus(A_h) for the pseudo-LTI
 * variant).  Per head h, with S_{-1} = 0 and S_t of size P x N:
 *
 *     S_t = exp(log_a_t) S_{t-1} + x_t B_t^T,      y_t = S_t C_t,
 *
 * y (B, L, H*P).  The caller does everything else (Delta scaling of x or B,
 * the D x skip term).  Gradients flow to x, Bm, Cm and log_a (accumulated);
 * inputs without requires_grad get none.
 *
 * Algorithm: the sequence is cut in chunks of Q steps.  With the in-chunk
 * cumulative log decay c_t = sum_{i <= t in chunk} log_a_i (float64):
 *   intra-chunk   Y  = (W o C B^T) X,  W[t,s] = exp(c_t - c_s) for s <= t, else 0
 *   inter-chunk   Y += diag(exp(c_t)) C S_prev^T
 *   state         S_next = exp(c_end) S_prev + X^T diag(exp(c_end - c_s)) B
 * so the work is GEMMs (cblas_sgemm) plus O(Q^2) element-wise decay masks
 * (AVX2 + v8_exp, scalar fall-back).  Decays are always exponentials of
 * differences of float64 cumulative sums inside one chunk, never ratios of
 * exponentials, so strong decay over long sequences cannot under/overflow
 * into NaN.  The backward is the exact adjoint of these formulas (derivation
 * in ssd.c); d log_a_i collects every pair (t, s) whose decay product
 * contains step i directly (no cancelling cumulative-sum differences).
 *
 * Threads: OpenMP over the batch index b; each b runs its heads and chunks
 * in a fixed order (C B^T is computed once per chunk and shared by the
 * heads; dBm and dCm sum over heads in head order), so results are
 * bit-identical for any thread count.  Parallelism is therefore B: a batch
 * smaller than the thread count leaves cores idle.
 *
 * Memory (bytes, arena):
 *   saved for backward: 4 * B * (K-1) * H * P * N   (the state entering
 *     every chunk but the first; K = ceil(L / Q)); only when Cm or log_a
 *     requires grad and K > 1; nothing when no gradient is recorded.
 *   per-thread scratch, forward and backward: about
 *     4 * (4 Q^2 + 2 Q N + 8 Q + H P N) per thread.
 *   Nothing of size L x L is ever formed. */
#ifndef SEQEIG_SSD_H
#define SEQEIG_SSD_H

#include "../graph.h"
#include "../simd.h"

/* Default chunk length Q (a multiple of 8).  Measured on B=64, L=512,
 * P=N=128, 2 threads: Q=32, 64, 128 give forward+backward 73, 73, 79 ms;
 * 64 saves half the state memory of 32.  Chunks of >= 32 steps split their
 * triangular products in two blocks to skip the zero upper-right quarter. */
#define SSD_CHUNK_DEFAULT 64

Tensor *op_ssd_scan(Graph *g, Tensor *x, Tensor *Bm, Tensor *Cm, Tensor *log_a, int H);
/* Same with an explicit chunk length (any multiple of 8 >= 8); the result
 * does not depend on it beyond float rounding.  For tests and tuning. */
Tensor *op_ssd_scan_chunked(Graph *g, Tensor *x, Tensor *Bm, Tensor *Cm, Tensor *log_a, int H,
                            int chunk);

/* ---- element-wise kernels (exposed for the tests) ----
 * Matrices are q x q inside buffers with leading dimension ld (ld a
 * multiple of 8, ld >= q; every row must be readable up to column ld).
 * c: q float64 cumulative log decays, readable up to index ld.
 *
 * ssd_decay_mask: W[t,s] = exp(c_t - c_s), M[t,s] = W[t,s] G[t,s] for s <= t,
 * both 0 for t < s < q.  W may be NULL. */
void ssd_decay_mask(const double *c, int q, const float *G, int ld, float *M, float *W);
void ssd_decay_mask_scalar(const double *c, int q, const float *G, int ld, float *M, float *W);
/* ssd_decay_mask_backward: given dM (the gradient of M, any values above
 * the diagonal), overwrite dM with dG = dM o W (0 above the diagonal) and
 * add to da[i] (i < q) the decay gradient sum_{s < i <= t} dG[t,s] G[t,s]
 * = d loss / d log_a_i through W.  acc: scratch of ld floats. */
void ssd_decay_mask_backward(int q, float *dM, const float *W, const float *G, int ld, float *acc,
                             float *da);
void ssd_decay_mask_backward_scalar(int q, float *dM, const float *W, const float *G, int ld,
                                    float *acc, float *da);
#if SIMD_AVX2
void ssd_decay_mask_avx2(const double *c, int q, const float *G, int ld, float *M, float *W);
void ssd_decay_mask_backward_avx2(int q, float *dM, const float *W, const float *G, int ld,
                                  float *acc, float *da);
#endif

#endif
