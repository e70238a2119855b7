/* Fused causal softmax attention: tiled forward with online softmax and a
 * recomputing backward (see attn_softmax.h for the math and the threading).
 *
 * GEMMs on tiles go through cblas_sgemm; inside the OpenMP parallel regions
 * below OpenBLAS (OpenMP build) runs them single-threaded.  The element-wise
 * tile work (max, exp, sums) is in the kernels at the top of this file.
 *
 * Score tiles are computed as NN products against a transposed copy of the
 * key tile (and, in the backward, of the value tile): OpenBLAS 0.3.21 sends
 * small row-major "A B^T" products through its packing path, which was ~25%
 * slower than transpose + NN on 64 x 64 x 128 tiles.
 *
 * Tile sizes: 64 x 64 was among the best of {32, 64, 96, 128}^2 at the target
 * shapes (L = 64, dk = dv = 64 and L = 512, dk = dv = 128) on the development
 * machine; 128-row tiles leave OpenBLAS's small-matrix kernels and were
 * 10-25% slower. */
#include "attn_softmax.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../simd_math.h"
#include "attn_dropout.h"

/* Number of visible (unmasked) columns of row r in a tile (see header). */
static inline int visible_cols(int r, int diag, int nk)
{
    long n = (long)r + diag + 1;
    return n < 0 ? 0 : n > nk ? nk : (int)n;
}

/* ------------------------------------------------------------ scalar kernels */

void attn_sm_fwd_tile_scalar(float *s, int lds, int nq, int nk, int diag, float *m, float *l,
                             float *alpha)
{
    for (int r = 0; r < nq; r++) {
        float *row = s + (size_t)r * lds;
        int n = visible_cols(r, diag, nk);
        if (n == 0) {
            for (int c = 0; c < nk; c++) row[c] = 0.0f;
            alpha[r] = 1.0f;
            continue;
        }
        float mx = row[0];
        for (int c = 1; c < n; c++) mx = row[c] > mx ? row[c] : mx;
        float mnew = mx > m[r] ? mx : m[r];
        float sum = 0.0f;
        for (int c = 0; c < n; c++) {
            float p = expf(row[c] - mnew);
            row[c] = p;
            sum += p;
        }
        for (int c = n; c < nk; c++) row[c] = 0.0f;
        float a = expf(m[r] - mnew); /* 0 on the first tile (m = -inf) */
        l[r] = l[r] * a + sum;
        m[r] = mnew;
        alpha[r] = a;
    }
}

void attn_sm_bwd_probs_scalar(float *s, int lds, int nq, int nk, int diag, const float *lse)
{
    for (int r = 0; r < nq; r++) {
        float *row = s + (size_t)r * lds;
        int n = visible_cols(r, diag, nk);
        for (int c = 0; c < n; c++) row[c] = expf(row[c] - lse[r]);
        for (int c = n; c < nk; c++) row[c] = 0.0f;
    }
}

void attn_sm_rowdot_scalar(const float *a, int lda, const float *b, int ldb, int n, int m,
                           float *out)
{
    for (int r = 0; r < n; r++) {
        const float *x = a + (size_t)r * lda, *y = b + (size_t)r * ldb;
        float acc = 0.0f;
        for (int j = 0; j < m; j++) acc += x[j] * y[j];
        out[r] = acc;
    }
}

void attn_sm_transpose_scalar(const float *src, int lds, int n, int m, float *dst, int ldd)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) dst[(size_t)j * ldd + i] = src[(size_t)i * lds + j];
}

/* -------------------------------------------------------------- AVX2 kernels */
#if SIMD_AVX2
/* 8 x 8 blocks through registers; the ragged edges element by element */
void attn_sm_transpose_avx2(const float *src, int lds, int n, int m, float *dst, int ldd)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        int j = 0;
        for (; j + 8 <= m; j += 8) {
            const float *s = src + (size_t)i * lds + j;
            __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds);
            __m256 r2 = _mm256_loadu_ps(s + 2 * (size_t)lds), r3 = _mm256_loadu_ps(s + 3 * (size_t)lds);
            __m256 r4 = _mm256_loadu_ps(s + 4 * (size_t)lds), r5 = _mm256_loadu_ps(s + 5 * (size_t)lds);
            __m256 r6 = _mm256_loadu_ps(s + 6 * (size_t)lds), r7 = _mm256_loadu_ps(s + 7 * (size_t)lds);
            /* interleave pairs of rows, then pairs of pairs, then the 128-bit halves */
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + (size_t)j * ldd + i;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * (size_t)ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * (size_t)ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * (size_t)ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * (size_t)ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * (size_t)ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * (size_t)ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; j < m; j++)
            for (int ii = i; ii < i + 8; ii++) dst[(size_t)j * ldd + ii] = src[(size_t)ii * lds + j];
    }
    for (; i < n; i++)
        for (int j = 0; j < m; j++) dst[(size_t)j * ldd + i] = src[(size_t)i * lds + j];
}

void attn_sm_fwd_tile_avx2(float *s, int lds, int nq, int nk, int diag, float *m, float *l,
                           float *alpha)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    for (int r = 0; r < nq; r++) {
        float *row = s + (size_t)r * lds;
        int n = visible_cols(r, diag, nk);
        if (n == 0) {
            for (int c = 0; c < nk; c++) row[c] = 0.0f;
            alpha[r] = 1.0f;
            continue;
        }
        __m256 vmax = ninf;
        int c = 0;
        for (; c + 8 <= n; c += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(row + c));
        if (c < n) {
            __m256i msk = simd_tail_mask((size_t)(n - c));
            __m256 x = _mm256_blendv_ps(ninf, _mm256_maskload_ps(row + c, msk), _mm256_castsi256_ps(msk));
            vmax = _mm256_max_ps(vmax, x);
        }
        float mx = simd_hmax(vmax);
        float mnew = mx > m[r] ? mx : m[r];
        const __m256 vm = _mm256_set1_ps(mnew);
        __m256 acc0 = zero, acc1 = zero;
        c = 0;
        for (; c + 16 <= n; c += 16) {
            __m256 p0 = v8_exp(_mm256_sub_ps(_mm256_loadu_ps(row + c), vm));
            __m256 p1 = v8_exp(_mm256_sub_ps(_mm256_loadu_ps(row + c + 8), vm));
            _mm256_storeu_ps(row + c, p0);
            _mm256_storeu_ps(row + c + 8, p1);
            acc0 = _mm256_add_ps(acc0, p0);
            acc1 = _mm256_add_ps(acc1, p1);
        }
        for (; c + 8 <= n; c += 8) {
            __m256 p = v8_exp(_mm256_sub_ps(_mm256_loadu_ps(row + c), vm));
            _mm256_storeu_ps(row + c, p);
            acc0 = _mm256_add_ps(acc0, p);
        }
        if (c < n) {
            __m256i msk = simd_tail_mask((size_t)(n - c));
            __m256 p = v8_exp(_mm256_sub_ps(_mm256_maskload_ps(row + c, msk), vm));
            p = _mm256_and_ps(p, _mm256_castsi256_ps(msk));
            _mm256_maskstore_ps(row + c, msk, p);
            acc1 = _mm256_add_ps(acc1, p);
        }
        for (c = n; c < nk; c++) row[c] = 0.0f;
        float sum = simd_hsum(_mm256_add_ps(acc0, acc1));
        float a = expf(m[r] - mnew);
        l[r] = l[r] * a + sum;
        m[r] = mnew;
        alpha[r] = a;
    }
}

void attn_sm_bwd_probs_avx2(float *s, int lds, int nq, int nk, int diag, const float *lse)
{
    for (int r = 0; r < nq; r++) {
        float *row = s + (size_t)r * lds;
        int n = visible_cols(r, diag, nk);
        const __m256 vl = _mm256_set1_ps(lse[r]);
        int c = 0;
        for (; c + 8 <= n; c += 8)
            _mm256_storeu_ps(row + c, v8_exp(_mm256_sub_ps(_mm256_loadu_ps(row + c), vl)));
        if (c < n) {
            __m256i msk = simd_tail_mask((size_t)(n - c));
            __m256 p = v8_exp(_mm256_sub_ps(_mm256_maskload_ps(row + c, msk), vl));
            _mm256_maskstore_ps(row + c, msk, p);
        }
        for (c = n; c < nk; c++) row[c] = 0.0f;
    }
}

void attn_sm_rowdot_avx2(const float *a, int lda, const float *b, int ldb, int n, int m,
                         float *out)
{
    for (int r = 0; r < n; r++) {
        const float *x = a + (size_t)r * lda, *y = b + (size_t)r * ldb;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int j = 0;
        for (; j + 32 <= m; j += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), _mm256_loadu_ps(y + j + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 16), _mm256_loadu_ps(y + j + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 24), _mm256_loadu_ps(y + j + 24), a3);
        }
        for (; j + 8 <= m; j += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j), a0);
        if (j < m) {
            __m256i msk = simd_tail_mask((size_t)(m - j));
            a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + j, msk), _mm256_maskload_ps(y + j, msk), a1);
        }
        out[r] = simd_hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void attn_sm_fwd_tile(float *s, int lds, int nq, int nk, int diag, float *m, float *l,
                      float *alpha)
{
    DISPATCH(attn_sm_fwd_tile, s, lds, nq, nk, diag, m, l, alpha);
}
void attn_sm_bwd_probs(float *s, int lds, int nq, int nk, int diag, const float *lse)
{
    DISPATCH(attn_sm_bwd_probs, s, lds, nq, nk, diag, lse);
}
void attn_sm_rowdot(const float *a, int lda, const float *b, int ldb, int n, int m, float *out)
{
    DISPATCH(attn_sm_rowdot, a, lda, b, ldb, n, m, out);
}
void attn_sm_transpose(const float *src, int lds, int n, int m, float *dst, int ldd)
{
    DISPATCH(attn_sm_transpose, src, lds, n, m, dst, ldd);
}

/* ------------------------------------------------------------------ drivers */

typedef struct AttnDims {
    int B, L, H, dk, dv;
    int ldq, ldv, ldy; /* row strides of q and k, of v, of y and dy */
    float scale;
} AttnDims;

static inline int imin(int a, int b) { return a < b ? a : b; }
/* floats, rounded up to a whole 64-byte line */
static inline size_t line_floats(size_t n) { return (n + 15) & ~(size_t)15; }

/* Index of element (row q0, column k0) of head bh's L x L probability
 * matrix in the flattened (B, H, L, L) matrix the dropout mask is drawn for. */
static inline uint64_t drop_index(const AttnDims *d, int bh, int q0, int k0)
{
    return ((uint64_t)bh * (uint64_t)d->L + (uint64_t)q0) * (uint64_t)d->L + (uint64_t)k0;
}

/* Forward of one (b*H + h, query block starting at q0).  work: per-thread
 * scratch of fwd_work_floats(); dr: the dropout or NULL. */
static size_t fwd_work_floats(const AttnDims *d, const AttnDropout *dr)
{
    return line_floats((size_t)ATTN_SM_BQ * ATTN_SM_BK) * (dr ? 2 : 1) +
           line_floats((size_t)ATTN_SM_BQ * d->dv) + line_floats((size_t)d->dk * ATTN_SM_BK) +
           3 * line_floats(ATTN_SM_BQ);
}

static void fwd_block(const AttnDims *d, const AttnDropout *dr, const float *q, const float *k,
                      const float *v, float *y, float *lse, double *log_eta, int bh, int q0, float *work)
{
    const int L = d->L, H = d->H, dk = d->dk, dv = d->dv;
    const int ldq = d->ldq, ldv = d->ldv, b = bh / H, h = bh % H;
    const int nq = imin(ATTN_SM_BQ, L - q0);
    const float *Qb = q + ((size_t)b * L + q0) * ldq + (size_t)h * dk;
    const float *Kh = k + (size_t)b * L * ldq + (size_t)h * dk;
    const float *Vh = v + (size_t)b * L * ldv + (size_t)h * dv;
    float *S = work;
    float *O = S + line_floats((size_t)ATTN_SM_BQ * ATTN_SM_BK);
    float *m = O + line_floats((size_t)ATTN_SM_BQ * dv);
    float *l = m + line_floats(ATTN_SM_BQ);
    float *alpha = l + line_floats(ATTN_SM_BQ);
    float *KT = alpha + line_floats(ATTN_SM_BQ);
    float *M = KT + line_floats((size_t)dk * ATTN_SM_BK); /* dropout multipliers (dr only) */

    for (int r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0.0f;
    const int q_end = q0 + nq; /* keys s < q_end can be visible */
    for (int k0 = 0; k0 < q_end; k0 += ATTN_SM_BK) {
        const int nk = imin(ATTN_SM_BK, q_end - k0); /* columns past the last query are all masked */
        /* S = scale Q K^T as a plain NN product with K transposed: faster
         * than OpenBLAS's transposed path on tiles this small */
        attn_sm_transpose(Kh + (size_t)k0 * ldq, ldq, nk, dk, KT, ATTN_SM_BK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, nk, dk, d->scale, Qb, ldq, KT,
                    ATTN_SM_BK, 0.0f, S, ATTN_SM_BK);
        attn_sm_fwd_tile(S, ATTN_SM_BK, nq, nk, q0 - k0, m, l, alpha);
        if (dr) { /* after the row sums: the normaliser l is the un-dropped one */
            attn_drop_mult(dr, drop_index(d, bh, q0, k0), (uint64_t)L, nq, nk, q0 - k0, M, ATTN_SM_BK);
            for (int r = 0; r < nq; r++) {
                float *p = S + (size_t)r * ATTN_SM_BK;
                const float *mr = M + (size_t)r * ATTN_SM_BK;
                for (int c = 0; c < nk; c++) p[c] *= mr[c];
            }
        }
        if (k0 > 0) {
            for (int r = 0; r < nq; r++) {
                const float a = alpha[r];
                if (a == 1.0f) continue;
                float *o = O + (size_t)r * dv;
                for (int j = 0; j < dv; j++) o[j] *= a;
            }
        }
        /* first tile: beta = 0 overwrites the uninitialised O */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, dv, nk, 1.0f, S, ATTN_SM_BK,
                    Vh + (size_t)k0 * ldv, ldv, k0 > 0 ? 1.0f : 0.0f, O, dv);
    }
    float *Yb = y + ((size_t)b * L + q0) * d->ldy + (size_t)h * dv;
    for (int r = 0; r < nq; r++) {
        const float lr = l[r];
        const float *o = O + (size_t)r * dv;
        float *yr = Yb + (size_t)r * d->ldy;
        for (int j = 0; j < dv; j++) yr[j] = o[j] / lr;
    }
    const size_t row0 = (size_t)bh * L + q0;
    if (lse)
        for (int r = 0; r < nq; r++) lse[row0 + r] = m[r] + logf(l[r]);
    if (log_eta)
        for (int r = 0; r < nq; r++) log_eta[row0 + r] = (double)m[r] + log((double)l[r]);
}

static size_t bwd_work_floats(const AttnDims *d, const AttnDropout *dr)
{
    return line_floats((size_t)ATTN_SM_BQ * ATTN_SM_BK) * (dr ? 3 : 2) + line_floats((size_t)d->L) +
           line_floats((size_t)d->dk * ATTN_SM_BK) + line_floats((size_t)d->dv * ATTN_SM_BK);
}

/* Backward of one (b*H + h): key blocks outer, query blocks inner, each
 * gradient accumulated into the caller's buffers in that fixed order.  gq,
 * gk, gv may be NULL.
 *
 * With dropout (multipliers M = keep / (1-p), y = (A o M) v): dv += (A o M)^T dy,
 * dA = M o (dy v^T), and the softmax backward dS = A o (dA - D) keeps
 * D_t = sum_s A_ts dA_ts = dy_t . sum_s A_ts M_ts v_s = dy_t . y_t. */
static void bwd_head(const AttnDims *d, const AttnDropout *dr, const float *q, const float *k,
                     const float *v, const float *y, const float *dy, const float *lse, float *gq,
                     float *gk, float *gv, int bh, float *work)
{
    const int L = d->L, H = d->H, dk = d->dk, dv = d->dv;
    const int ldq = d->ldq, ldv = d->ldv, ldy = d->ldy, b = bh / H, h = bh % H;
    const size_t oq = (size_t)b * L * ldq + (size_t)h * dk, ov = (size_t)b * L * ldv + (size_t)h * dv;
    const size_t oy = (size_t)b * L * ldy + (size_t)h * dv;
    const float *Qh = q + oq, *Kh = k + oq, *Vh = v + ov, *dYh = dy + oy;
    const float *lse_h = lse + (size_t)bh * L;
    float *P = work;
    float *dS = P + line_floats((size_t)ATTN_SM_BQ * ATTN_SM_BK);
    float *D = dS + line_floats((size_t)ATTN_SM_BQ * ATTN_SM_BK);
    float *KT = D + line_floats((size_t)L);
    float *VT = KT + line_floats((size_t)dk * ATTN_SM_BK);
    float *M = VT + line_floats((size_t)dv * ATTN_SM_BK); /* dropout multipliers (dr only) */

    attn_sm_rowdot(dYh, ldy, y + oy, ldy, L, dv, D);
    for (int k0 = 0; k0 < L; k0 += ATTN_SM_BK) {
        const int nk_full = imin(ATTN_SM_BK, L - k0);
        /* k and v of this key block transposed once for all query blocks:
         * the score tiles S = Q K^T and dP = dY V^T become NN products */
        attn_sm_transpose(Kh + (size_t)k0 * ldq, ldq, nk_full, dk, KT, ATTN_SM_BK);
        if (gq || gk) attn_sm_transpose(Vh + (size_t)k0 * ldv, ldv, nk_full, dv, VT, ATTN_SM_BK);
        /* the query block holding row k0 is the first that sees key k0 */
        for (int q0 = (k0 / ATTN_SM_BQ) * ATTN_SM_BQ; q0 < L; q0 += ATTN_SM_BQ) {
            const int nq = imin(ATTN_SM_BQ, L - q0);
            const int nk = imin(nk_full, q0 + nq - k0);
            const float *Qb = Qh + (size_t)q0 * ldq, *Kb = Kh + (size_t)k0 * ldq;
            const float *dYb = dYh + (size_t)q0 * ldy;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, nk, dk, d->scale, Qb, ldq, KT,
                        ATTN_SM_BK, 0.0f, P, ATTN_SM_BK);
            attn_sm_bwd_probs(P, ATTN_SM_BK, nq, nk, q0 - k0, lse_h + q0);
            if (dr) attn_drop_mult(dr, drop_index(d, bh, q0, k0), (uint64_t)L, nq, nk, q0 - k0, M, ATTN_SM_BK);
            if (gv) {
                const float *Pd = P;
                if (dr) { /* the dropped probabilities A o M, in dS until dS is computed */
                    for (int r = 0; r < nq; r++) {
                        const float *p = P + (size_t)r * ATTN_SM_BK, *mr = M + (size_t)r * ATTN_SM_BK;
                        float *pd = dS + (size_t)r * ATTN_SM_BK;
                        for (int c = 0; c < nk; c++) pd[c] = p[c] * mr[c];
                    }
                    Pd = dS;
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, dv, nq, 1.0f, Pd, ATTN_SM_BK,
                            dYb, ldy, 1.0f, gv + ov + (size_t)k0 * ldv, ldv);
            }
            if (!gq && !gk) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, nk, dv, 1.0f, dYb, ldy, VT,
                        ATTN_SM_BK, 0.0f, dS, ATTN_SM_BK);
            if (dr) /* dA = M o (dy v^T) */
                for (int r = 0; r < nq; r++) {
                    const float *mr = M + (size_t)r * ATTN_SM_BK;
                    float *ds = dS + (size_t)r * ATTN_SM_BK;
                    for (int c = 0; c < nk; c++) ds[c] = mr[c] * ds[c];
                }
            for (int r = 0; r < nq; r++) {
                const float Dr = D[q0 + r];
                const float *p = P + (size_t)r * ATTN_SM_BK;
                float *ds = dS + (size_t)r * ATTN_SM_BK;
                for (int c = 0; c < nk; c++) ds[c] = p[c] * (ds[c] - Dr);
            }
            if (gk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, dk, nq, d->scale, dS,
                            ATTN_SM_BK, Qb, ldq, 1.0f, gk + oq + (size_t)k0 * ldq, ldq);
            if (gq)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, dk, nk, d->scale, dS,
                            ATTN_SM_BK, Kb, ldq, 1.0f, gq + oq + (size_t)q0 * ldq, ldq);
        }
    }
}

/* Backward of all (b, h); gq, gk, gv may be NULL.  zero_qkv (packed form,
 * fresh gradient): each (b, h) first zeroes its own columns of q, k and v
 * in the shared gradient (rows of batch b), so no separate zero-fill pass
 * runs over it. */
static void backward_all(Graph *g, const AttnDims *d, const AttnDropout *dr, const float *q,
                         const float *k, const float *v, const float *y, const float *dy,
                         const float *lse, float *gq, float *gk, float *gv, bool zero_qkv)
{
    const size_t per = bwd_work_floats(d, dr);
    float *work = graph_scratch(g, (size_t)omp_get_max_threads() * per * sizeof(float));
    const int nbh = d->B * d->H;
#pragma omp parallel
    {
        float *w = work + (size_t)omp_get_thread_num() * per;
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < nbh; bh++) {
            if (zero_qkv) {
                const int b = bh / d->H, h = bh % d->H;
                for (int t = 0; t < d->L; t++) {
                    const size_t rq = ((size_t)b * d->L + t) * d->ldq + (size_t)h * d->dk;
                    const size_t rv = ((size_t)b * d->L + t) * d->ldv + (size_t)h * d->dv;
                    memset(gq + rq, 0, (size_t)d->dk * sizeof(float));
                    memset(gk + rq, 0, (size_t)d->dk * sizeof(float));
                    memset(gv + rv, 0, (size_t)d->dv * sizeof(float));
                }
            }
            bwd_head(d, dr, q, k, v, y, dy, lse, gq, gk, gv, bh, w);
        }
    }
}

/* Forward of all (b, h, query block) items into y; lse may be NULL. */
static void forward_all(Graph *g, const AttnDims *d, const AttnDropout *dr, const float *q,
                        const float *k, const float *v, float *y, float *lse, double *log_eta)
{
    const int nqb = (d->L + ATTN_SM_BQ - 1) / ATTN_SM_BQ;
    const long n_items = (long)d->B * d->H * nqb;
    const size_t per = fwd_work_floats(d, dr);
    float *work = graph_scratch(g, (size_t)omp_get_max_threads() * per * sizeof(float));
#pragma omp parallel
    {
        float *w = work + (size_t)omp_get_thread_num() * per;
        /* each item is independent, so any schedule gives the same result;
         * dynamic with the costly (late) query blocks first balances the
         * triangular work */
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < n_items; it++) {
            const int bh = (int)(it / nqb), qb = nqb - 1 - (int)(it % nqb);
            fwd_block(d, dr, q, k, v, y, lse, log_eta, bh, qb * ATTN_SM_BQ, w);
        }
    }
}

/* The dropout of one call: NULL when inactive (evaluation mode or p = 0);
 * otherwise it takes the step's next dropout-op index. */
static const AttnDropout *dropout_of(Graph *g, const char *name, float p, AttnDropout *dr)
{
    if (!(p >= 0.0f && p < 1.0f)) {
        fprintf(stderr, "seqeig: %s: dropout probability p = %g must be in [0, 1)\n", name, (double)p);
        abort();
    }
    if (!g->training || p == 0.0f) return NULL;
    *dr = (AttnDropout){.key = g->dropout_seed, .step = (uint32_t)g->step, .op = g->n_dropout++, .p = p};
    return dr;
}

/* What the backward needs: the shapes, the saved log-sum-exp and the
 * dropout (has_drop: drop is valid). */
typedef struct AttnCtx {
    AttnDims d;
    const float *lse;
    AttnDropout drop;
    bool has_drop;
} AttnCtx;

static AttnCtx *save_ctx(Graph *g, const AttnDims *d, const float *lse, const AttnDropout *dr)
{
    AttnCtx *c = graph_scratch(g, sizeof *c);
    *c = (AttnCtx){.d = *d, .lse = lse, .has_drop = dr != NULL};
    if (dr) c->drop = *dr;
    return c;
}

static void causal_softmax_attn_backward(Graph *g, TapeEntry *e)
{
    Tensor *q = e->in[0], *k = e->in[1], *v = e->in[2];
    const AttnCtx *c = e->ctx;
    float *gq = tensor_grad(g, q), *gk = tensor_grad(g, k), *gv = tensor_grad(g, v);
    backward_all(g, &c->d, c->has_drop ? &c->drop : NULL, q->data, k->data, v->data, e->out->data,
                 e->out->grad, c->lse, gq, gk, gv, false);
}

Tensor *op_causal_softmax_attn(Graph *g, Tensor *q, Tensor *k, Tensor *v, int H, float scale,
                               float dropout, double *log_eta)
{
    static const char *name = "causal_softmax_attn";
    if (q->ndim != 3 || !tensor_same_shape(q, k)) op_shape_error(name, "q and k must be equal (B, L, H*dk)", q, k);
    if (v->ndim != 3 || v->shape[0] != q->shape[0] || v->shape[1] != q->shape[1])
        op_shape_error(name, "v must be (B, L, H*dv) with the B, L of q", q, v);
    if (H < 1 || q->shape[2] % H != 0 || v->shape[2] % H != 0)
        op_shape_error(name, "H must divide the widths of q and v", q, v);
    const AttnDims d = {.B = q->shape[0], .L = q->shape[1], .H = H, .dk = q->shape[2] / H,
                        .dv = v->shape[2] / H, .ldq = q->shape[2], .ldv = v->shape[2],
                        .ldy = v->shape[2], .scale = scale};
    AttnDropout drop;
    const AttnDropout *dr = dropout_of(g, name, dropout, &drop);

    Tensor *y = tensor_new(g, 3, v->shape);
    const bool record = graph_wants_grad(g, q, k, v, NULL);
    float *lse = record ? graph_scratch(g, (size_t)d.B * d.H * d.L * sizeof(float)) : NULL;
    forward_all(g, &d, dr, q->data, k->data, v->data, y->data, lse, log_eta);

    if (record) {
        TapeEntry *e = graph_record(g, name, causal_softmax_attn_backward, y, q, k, v, NULL);
        e->ctx = save_ctx(g, &d, lse, dr);
    }
    return y;
}

/* ------------------------------------------------------------ packed q|k|v */

static void causal_softmax_attn_qkv_backward(Graph *g, TapeEntry *e)
{
    Tensor *qkv = e->in[0];
    const AttnCtx *c = e->ctx;
    const AttnDims *d = &c->d;
    bool fresh;
    float *gp = tensor_grad_fresh(g, qkv, &fresh);
    if (!gp) return;
    const size_t ldp = (size_t)d->ldq, used = (size_t)d->H * (2 * (size_t)d->dk + d->dv);
    if (fresh && used < ldp) { /* columns right of v get no gradient here */
        const size_t rows = (size_t)d->B * d->L;
        for (size_t r = 0; r < rows; r++) memset(gp + r * ldp + used, 0, (ldp - used) * sizeof(float));
    }
    const size_t kof = (size_t)d->H * d->dk, vof = 2 * kof;
    backward_all(g, d, c->has_drop ? &c->drop : NULL, qkv->data, qkv->data + kof, qkv->data + vof,
                 e->out->data, e->out->grad, c->lse, gp, gp + kof, gp + vof, fresh);
}

Tensor *op_causal_softmax_attn_qkv(Graph *g, Tensor *qkv, int dqk, int dv, int H, float scale,
                                   float dropout, double *log_eta)
{
    static const char *name = "causal_softmax_attn_qkv";
    if (qkv->ndim != 3 || dqk < 1 || dv < 1 || 2 * dqk + dv > qkv->shape[2])
        op_shape_error(name, "qkv must be (B, L, >= 2 dqk + dv)", qkv, NULL);
    if (H < 1 || dqk % H != 0 || dv % H != 0) op_shape_error(name, "H must divide dqk and dv", qkv, NULL);
    const AttnDims d = {.B = qkv->shape[0], .L = qkv->shape[1], .H = H, .dk = dqk / H, .dv = dv / H,
                        .ldq = qkv->shape[2], .ldv = qkv->shape[2], .ldy = dv, .scale = scale};
    AttnDropout drop;
    const AttnDropout *dr = dropout_of(g, name, dropout, &drop);
    Tensor *y = tensor_new(g, 3, (int[]){d.B, d.L, dv});
    const bool record = graph_wants_grad(g, qkv, NULL, NULL, NULL);
    float *lse = record ? graph_scratch(g, (size_t)d.B * d.H * d.L * sizeof(float)) : NULL;
    forward_all(g, &d, dr, qkv->data, qkv->data + dqk, qkv->data + 2 * dqk, y->data, lse, log_eta);
    if (record) {
        TapeEntry *e = graph_record(g, name, causal_softmax_attn_qkv_backward, y, qkv, NULL, NULL, NULL);
        e->ctx = save_ctx(g, &d, lse, dr);
    }
    return y;
}
