/* Fused causal softmax attention (forward + hand-written backward).
 *
 * Per batch b and head h, with q_h, k_h, v_h the columns of head h:
 *
 *     S = scale * q_h k_h^T,  S_ts masked for s > t,  A = softmax_s(S),  y_h = A v_h
 *
 * computed FlashAttention-2 style: the L x L score matrix is never stored.
 * Each (b, h, block of ATTN_SM_BQ query rows) walks the key blocks of
 * ATTN_SM_BK rows up to the diagonal; a score tile comes from one sgemm, an
 * online softmax (running row max m and sum l, rescaling the output tile)
 * turns it into probabilities and a second sgemm adds P v to the output.
 * Only the row log-sum-exp lse_t = m_t + log l_t is kept (float32, (B, H, L))
 * for the backward, which recomputes each tile as P = exp(S - lse) and
 * applies, with D_t = sum_j dy_tj y_tj:
 *
 *     dv += P^T dy,  dP = dy v^T,  dS = P * (dP - D),  dq += scale dS k,  dk += scale dS^T q
 *
 * Memory: per thread a few tiles (forward: ATTN_SM_BQ x (ATTN_SM_BK + dv)
 * plus a transposed key tile dk x ATTN_SM_BK; backward: 2 ATTN_SM_BQ x
 * ATTN_SM_BK, the transposed key and value tiles and L floats), whatever L
 * is; plus the saved (B, H, L) float32 log-sum-exp when recording.  With
 * dropout, one more ATTN_SM_BQ x ATTN_SM_BK tile (the mask multipliers).
 *
 * Threads: the forward runs (b, h, query block) items in parallel; the
 * backward runs one (b, h) per thread with a fixed loop order inside
 * (key blocks outer, query blocks inner), so every result is bit-identical
 * for any OpenMP thread count.  The backward therefore uses at most B*H
 * threads.
 *
 * Attention dropout (the reference's Dropout(att_dropout) on the attention
 * matrix; docs/training.md, Attention dropout): with probability p > 0 in
 * training mode,
 *
 *     y_t = sum_s A_ts M_ts v_s,   M_ts = keep_ts / (1 - p)
 *
 * where A is the un-dropped softmax (its normaliser, lse and log_eta ignore
 * the mask).  The mask of element ((b*H + h)*L + t)*L + s is drawn per tile
 * in the forward and drawn again in the backward (attn_dropout.h), never
 * stored.  The backward uses dv += (A o M)^T dy and dS = A o (M o (dy v^T) - D)
 * with the same D_t = dy_t . y_t as without dropout. */
#ifndef SEQEIG_ATTN_SOFTMAX_H
#define SEQEIG_ATTN_SOFTMAX_H

#include "../graph.h"

/* Tile sizes (rows of q per block, rows of k/v per block), chosen by
 * measurement on the target shapes; see attn_softmax.c. */
#ifndef ATTN_SM_BQ
#define ATTN_SM_BQ 64
#endif
#ifndef ATTN_SM_BK
#define ATTN_SM_BK 64
#endif

/* q, k: (B, L, H*dk); v: (B, L, H*dv); returns y (B, L, H*dv) with the heads
 * concatenated: y[b, t, h*dv + j].  dk and dv may differ.  `scale` is
 * usually 1/sqrt(dk).
 *
 * dropout: probability p in [0, 1) (aborts otherwise) of the inverted
 * dropout on the attention probabilities.  Active only when g->training and
 * p > 0; it then takes the step's next dropout-op index (g->n_dropout++,
 * the counter op_dropout uses) and the mask is a pure function of
 * (g->dropout_seed, g->step, that index, element index).  Unlike op_dropout,
 * p = 0 takes no index: p = 0 or evaluation mode is exactly the plain
 * attention (the same bits, and the later dropout ops keep their indices).
 *
 * log_eta: NULL, or a caller-owned (B, H, L) float64 array that receives
 * log eta_t = log sum_{s<=t} exp(scale q_t.k_s) (the row log-sum-exp of this
 * very forward pass), indexed [(b*H + h)*L + t].  The softmax-attention
 * eigenvalue is eig_t = exp(log_eta[t-1] - log_eta[t]).
 *
 * Records a tape entry when q, k or v requires grad; the backward
 * accumulates (+=) into the gradients of those that do. */
Tensor *op_causal_softmax_attn(Graph *g, Tensor *q, Tensor *k, Tensor *v, int H, float scale,
                               float dropout, double *log_eta);

/* The same on q, k, v packed in the columns of one tensor, as a fused
 * projection produces them: q = qkv[..., 0:dqk], k = qkv[..., dqk:2 dqk],
 * v = qkv[..., 2 dqk:2 dqk + dv] (qkv may have more columns, which get no
 * gradient).  The kernels read and write these column windows in place,
 * so no slice is copied; same values (and the same dropout mask) as
 * op_causal_softmax_attn on the three slices. */
Tensor *op_causal_softmax_attn_qkv(Graph *g, Tensor *qkv, int dqk, int dv, int H, float scale,
                                   float dropout, double *log_eta);

/* ---- tile kernels (exposed for the tests; scalar reference + AVX2) ----
 *
 * A tile holds nq rows of nk scores with row stride lds.  Row r is query
 * q0 + r, column c is key k0 + c, and diag = q0 - k0: column c is visible
 * to row r iff c <= r + diag (causal), other columns are masked. */

/* Online-softmax step of the forward.  s holds scaled scores; on return it
 * holds p = exp(s - m_new) for visible columns and 0 for masked ones (all nk
 * columns are written).  Per row: m (running max, -inf initially) and l
 * (running sum, 0 initially) are updated, and alpha receives
 * exp(m_old - m_new), the factor the output row must be rescaled by.  A row
 * with no visible column is left unchanged (alpha = 1). */
void attn_sm_fwd_tile(float *s, int lds, int nq, int nk, int diag, float *m, float *l,
                      float *alpha);
void attn_sm_fwd_tile_scalar(float *s, int lds, int nq, int nk, int diag, float *m, float *l,
                             float *alpha);

/* Backward probabilities: s <- exp(s - lse[r]) for visible columns, 0 for
 * masked ones (all nk columns written). */
void attn_sm_bwd_probs(float *s, int lds, int nq, int nk, int diag, const float *lse);
void attn_sm_bwd_probs_scalar(float *s, int lds, int nq, int nk, int diag, const float *lse);

/* Dot products of n rows: out[r] = sum_j a[r*lda + j] * b[r*ldb + j], j < m. */
void attn_sm_rowdot(const float *a, int lda, const float *b, int ldb, int n, int m, float *out);
void attn_sm_rowdot_scalar(const float *a, int lda, const float *b, int ldb, int n, int m,
                           float *out);

/* dst (m rows x n cols, row stride ldd) = transpose of src (n x m, lds).
 * Exact (no arithmetic), so both versions give identical results. */
void attn_sm_transpose(const float *src, int lds, int n, int m, float *dst, int ldd);
void attn_sm_transpose_scalar(const float *src, int lds, int n, int m, float *dst, int ldd);

#include "../simd.h"
#if SIMD_AVX2
void attn_sm_transpose_avx2(const float *src, int lds, int n, int m, float *dst, int ldd);
void attn_sm_fwd_tile_avx2(float *s, int lds, int nq, int nk, int diag, float *m, float *l,
                           float *alpha);
void attn_sm_bwd_probs_avx2(float *s, int lds, int nq, int nk, int diag, const float *lse);
void attn_sm_rowdot_avx2(const float *a, int lda, const float *b, int ldb, int n, int m,
                         float *out);
#endif

#endif
