/* Chunked SSD scan: forward, backward and their element-wise kernels.
 *
 * Notation for one (batch b, head h, chunk) with q steps: X (q x P) the
 * chunk of x for head h, B, C (q x N), c_t the float64 cumulative sum of
 * log_a inside the chunk, E = q-1 the last step, S_prev the state entering
 * the chunk (0 for the first), and
 *   G = C B^T,  W[t,s] = exp(c_t - c_s) (s <= t),  M = W o G,
 *   ec_t = exp(c_t),  w_s = exp(c_E - c_s),  ecE = exp(c_E).
 * Forward:
 *   Y      = M X + diag(ec) C S_prev^T
 *   S_next = ecE S_prev + X^T diag(w) B
 * Backward, given dY and dS = dS_next (0 after the last chunk), chunks in
 * reverse order:
 *   dM     = dY X^T,  dG = dM o W
 *   dX    += M^T dY + diag(w) B dS^T
 *   dC    += dG B + diag(ec) (dY S_prev)
 *   dB    += dG^T C + diag(w) (X dS)
 *   dS_prev = ecE dS + dY^T diag(ec) C
 * and for log_a, writing each decay as exp of a sum of log_a over a range
 * of steps, step i of the chunk receives
 *   sum_{s < i <= t} dG[t,s] G[t,s]                    (W: steps s+1..t)
 * + sum_{t >= i} ec_t dY_t . (S_prev C_t)              (ec_t: steps 0..t)
 * + sum_{s < i} w_s (X dS)_s . B_s                     (w_s: steps s+1..E)
 * + ecE <dS, S_prev>                                   (ecE: steps 0..E). */
#include "ssd.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../ops.h"
#include "../simd_math.h"

/* ---------------------------------------------------------------- kernels */

void ssd_decay_mask_scalar(const double *c, int q, const float *G, int ld, float *M, float *W)
{
    for (int t = 0; t < q; t++) {
        const float *gr = G + (size_t)t * ld;
        float *mr = M + (size_t)t * ld, *wr = W ? W + (size_t)t * ld : NULL;
        for (int s = 0; s <= t; s++) {
            float w = expf((float)(c[t] - c[s]));
            mr[s] = w * gr[s];
            if (wr) wr[s] = w;
        }
        for (int s = t + 1; s < q; s++) {
            mr[s] = 0.0f;
            if (wr) wr[s] = 0.0f;
        }
    }
}

void ssd_decay_mask_backward_scalar(int q, float *dM, const float *W, const float *G, int ld,
                                    float *acc, float *da)
{
    /* acc[s] = sum over rows t' >= t (strictly below the diagonal) of
     * dG[t',s] G[t',s]; da[t] += sum_{s < t} acc[s] is then the sum over
     * the pairs (t', s) with s < t <= t'. */
    for (int s = 0; s < q; s++) acc[s] = 0.0f;
    for (int t = q - 1; t >= 0; t--) {
        float *dr = dM + (size_t)t * ld;
        const float *wr = W + (size_t)t * ld, *gr = G + (size_t)t * ld;
        for (int s = 0; s < t; s++) {
            float d = dr[s] * wr[s];
            dr[s] = d;
            acc[s] += d * gr[s];
        }
        dr[t] *= wr[t];
        for (int s = t + 1; s < q; s++) dr[s] = 0.0f;
        float sum = 0.0f;
        for (int s = 0; s < t; s++) sum += acc[s];
        da[t] += sum;
    }
}

#if SIMD_AVX2
void ssd_decay_mask_avx2(const double *c, int q, const float *G, int ld, float *M, float *W)
{
    const __m256 zero = _mm256_setzero_ps();
    for (int t = 0; t < q; t++) {
        const float *gr = G + (size_t)t * ld;
        float *mr = M + (size_t)t * ld, *wr = W ? W + (size_t)t * ld : NULL;
        const __m256d ct = _mm256_set1_pd(c[t]);
        int s0 = 0;
        /* columns 0..t in blocks of 8; lanes s > t become 0 (blend, so an
         * overflowing exp above the diagonal never meets a multiply) */
        for (; s0 <= t; s0 += 8) {
            __m128 lo = _mm256_cvtpd_ps(_mm256_sub_pd(ct, _mm256_loadu_pd(c + s0)));
            __m128 hi = _mm256_cvtpd_ps(_mm256_sub_pd(ct, _mm256_loadu_pd(c + s0 + 4)));
            __m256 e = v8_exp(_mm256_set_m128(hi, lo));
            int n = t + 1 - s0;
            __m256 keep = _mm256_castsi256_ps(simd_tail_mask((size_t)(n < 8 ? n : 8)));
            __m256 w = _mm256_blendv_ps(zero, e, keep);
            __m256 m = _mm256_blendv_ps(zero, _mm256_mul_ps(e, _mm256_loadu_ps(gr + s0)), keep);
            _mm256_storeu_ps(mr + s0, m);
            if (wr) _mm256_storeu_ps(wr + s0, w);
        }
        for (int s = s0; s < q; s++) {
            mr[s] = 0.0f;
            if (wr) wr[s] = 0.0f;
        }
    }
}

void ssd_decay_mask_backward_avx2(int q, float *dM, const float *W, const float *G, int ld,
                                  float *acc, float *da)
{
    const __m256 zero = _mm256_setzero_ps();
    for (int s = 0; s < ld; s++) acc[s] = 0.0f;
    for (int t = q - 1; t >= 0; t--) {
        float *dr = dM + (size_t)t * ld;
        const float *wr = W + (size_t)t * ld, *gr = G + (size_t)t * ld;
        int s0 = 0;
        for (; s0 <= t; s0 += 8) {
            int n = t + 1 - s0; /* lanes s <= t */
            __m256 le = _mm256_castsi256_ps(simd_tail_mask((size_t)(n < 8 ? n : 8)));
            __m256 lt = _mm256_castsi256_ps(simd_tail_mask((size_t)(n - 1 < 8 ? n - 1 : 8)));
            __m256 d = _mm256_blendv_ps(zero, _mm256_mul_ps(_mm256_loadu_ps(dr + s0),
                                                            _mm256_loadu_ps(wr + s0)), le);
            _mm256_storeu_ps(dr + s0, d);
            __m256 r = _mm256_blendv_ps(zero, _mm256_mul_ps(d, _mm256_loadu_ps(gr + s0)), lt);
            _mm256_storeu_ps(acc + s0, _mm256_add_ps(_mm256_loadu_ps(acc + s0), r));
        }
        for (int s = s0; s < q; s++) dr[s] = 0.0f;
        /* sum acc[0..t) */
        __m256 sum = zero;
        int s = 0;
        for (; s + 8 <= t; s += 8) sum = _mm256_add_ps(sum, _mm256_loadu_ps(acc + s));
        if (s < t) sum = _mm256_add_ps(sum, _mm256_maskload_ps(acc + s, simd_tail_mask((size_t)(t - s))));
        da[t] += simd_hsum(sum);
    }
}
#define SSD_DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define SSD_DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void ssd_decay_mask(const double *c, int q, const float *G, int ld, float *M, float *W)
{
    SSD_DISPATCH(ssd_decay_mask, c, q, G, ld, M, W);
}

void ssd_decay_mask_backward(int q, float *dM, const float *W, const float *G, int ld, float *acc,
                             float *da)
{
    SSD_DISPATCH(ssd_decay_mask_backward, q, dM, W, G, ld, acc, da);
}

/* ------------------------------------------------------------- helpers */

typedef struct SsdDims {
    int B, L, H, P, N, Q, K;
} SsdDims;

/* Per-thread scratch. */
typedef struct SsdWork {
    float *G, *M, *W, *dM;   /* Q x Q */
    float *T, *V;            /* Q x N */
    double *c;               /* Q (cumulative log decay) */
    float *ec, *w, *acc, *da, *r;   /* Q */
    float *S;                /* H x P x N: running states (forward) or dS (backward) */
} SsdWork;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static size_t work_floats(const SsdDims *d)
{
    size_t Q = (size_t)d->Q;
    return 4 * round16(Q * Q) + 2 * round16(Q * (size_t)d->N) + round16(2 * Q) + 5 * round16(Q) +
           round16((size_t)d->H * d->P * d->N);
}

static SsdWork work_carve(float *base, const SsdDims *d)
{
    size_t Q = (size_t)d->Q;
    SsdWork w;
    float *p = base;
#define TAKE(ptr, n) (ptr = (void *)p, p += round16(n))
    TAKE(w.G, Q * Q);
    TAKE(w.M, Q * Q);
    TAKE(w.W, Q * Q);
    TAKE(w.dM, Q * Q);
    TAKE(w.T, Q * d->N);
    TAKE(w.V, Q * d->N);
    TAKE(w.c, 2 * Q);
    TAKE(w.ec, Q);
    TAKE(w.w, Q);
    TAKE(w.acc, Q);
    TAKE(w.da, Q);
    TAKE(w.r, Q);
    TAKE(w.S, (size_t)d->H * d->P * d->N);
#undef TAKE
    return w;
}

/* Zeroed scratch for every thread the next parallel region may use. */
static float *work_alloc(Graph *g, const SsdDims *d, int *nthreads)
{
    *nthreads = omp_get_max_threads();
    size_t bytes = (size_t)*nthreads * work_floats(d) * sizeof(float);
    float *p = graph_scratch(g, bytes);
    memset(p, 0, bytes);
    return p;
}

/* Cumulative log decay of one chunk (float64) and the decays derived from it. */
/* out[i] = exp(sgn * (c[i] - ref)), the float64 difference rounded to float
 * before the exponential (as in the decay mask). */
static void exp_shifted(const double *c, int q, double ref, double sgn, float *out)
{
    int i = 0;
#if SIMD_AVX2
    const __m256d vr = _mm256_set1_pd(ref), vs = _mm256_set1_pd(sgn);
    for (; i + 8 <= q; i += 8) {
        __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(vs, _mm256_sub_pd(_mm256_loadu_pd(c + i), vr)));
        __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(vs, _mm256_sub_pd(_mm256_loadu_pd(c + i + 4), vr)));
        _mm256_storeu_ps(out + i, v8_exp(_mm256_set_m128(hi, lo)));
    }
#endif
    for (; i < q; i++) out[i] = expf((float)(sgn * (c[i] - ref)));
}

/* In-chunk cumulative log decay c (float64) and, when asked, ec_t = exp(c_t)
 * and w_s = exp(c_E - c_s).  Returns exp(c_E). */
static float chunk_decays(const float *la, int stride, int q, SsdWork *w, bool want_ec, bool want_w)
{
    double s = 0.0;
    for (int i = 0; i < q; i++) {
        s += (double)la[(size_t)i * stride];
        w->c[i] = s;
    }
    if (want_ec) exp_shifted(w->c, q, 0.0, 1.0, w->ec);
    if (want_w) exp_shifted(w->c, q, s, -1.0, w->w);
    return (float)exp(s);
}

/* dst[i, :] = v[i] * src[i, :] for q rows of n. */
static void scale_rows(float *dst, const float *src, const float *v, int q, int n)
{
    for (int i = 0; i < q; i++) {
        const float *a = src + (size_t)i * n;
        float *o = dst + (size_t)i * n;
        float s = v[i];
        for (int j = 0; j < n; j++) o[j] = s * a[j];
    }
}

/* sum a_j b_j accumulated in float64 (AVX2: 2 x 4 lanes, masked tail) */
static double dot_d(const float *a, const float *b, size_t n)
{
#if SIMD_AVX2
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 va = _mm256_loadu_ps(a + j), vb = _mm256_loadu_ps(b + j);
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(va)),
                             _mm256_cvtps_pd(_mm256_castps256_ps128(vb)), s0);
        s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(va, 1)),
                             _mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1)), s1);
    }
    if (j < n) {
        __m256i m = simd_tail_mask(n - j);
        __m256 va = _mm256_maskload_ps(a + j, m), vb = _mm256_maskload_ps(b + j, m);
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(va)),
                             _mm256_cvtps_pd(_mm256_castps256_ps128(vb)), s0);
        s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(va, 1)),
                             _mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1)), s1);
    }
    s0 = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s0), _mm256_extractf128_pd(s0, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
#else
    double s = 0.0;
    for (size_t j = 0; j < n; j++) s += (double)a[j] * b[j];
    return s;
#endif
}

/* Products with a q x q lower-triangular factor: split at h (about q/2) so
 * that the zero upper-right block is skipped (3/4 of the full work). */
static int tri_split(int q) { return q >= 32 ? ((q / 2 + 7) & ~7) : 0; }

/* Lower triangle (with the diagonal) of O = A Bt^T, A and Bt (q x k); the
 * block O[0:h, h:q] is left unwritten. */
static void gemm_lower_abt(int q, int k, const float *A, int lda, const float *Bt, int ldb, float *O,
                           int ldo)
{
    int h = tri_split(q);
    if (!h) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q, q, k, 1.0f, A, lda, Bt, ldb, 0.0f, O, ldo);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, h, h, k, 1.0f, A, lda, Bt, ldb, 0.0f, O, ldo);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q - h, q, k, 1.0f, A + (size_t)h * lda, lda,
                Bt, ldb, 0.0f, O + (size_t)h * ldo, ldo);
}

/* Y = beta Y + Lm Z, Lm (q x q) lower triangular, Z (q x n). */
static void gemm_lower_lz(int q, int n, const float *Lm, int ldl, const float *Z, int ldz, float beta,
                          float *Y, int ldy)
{
    int h = tri_split(q);
    if (!h) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q, n, q, 1.0f, Lm, ldl, Z, ldz, beta, Y, ldy);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, h, n, h, 1.0f, Lm, ldl, Z, ldz, beta, Y, ldy);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q - h, n, q, 1.0f, Lm + (size_t)h * ldl, ldl,
                Z, ldz, beta, Y + (size_t)h * ldy, ldy);
}

/* Y = beta Y + Lm^T Z, Lm (q x q) lower triangular, Z (q x n). */
static void gemm_lower_ltz(int q, int n, const float *Lm, int ldl, const float *Z, int ldz, float beta,
                           float *Y, int ldy)
{
    int h = tri_split(q);
    if (!h) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, q, n, q, 1.0f, Lm, ldl, Z, ldz, beta, Y, ldy);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, n, q, 1.0f, Lm, ldl, Z, ldz, beta, Y, ldy);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, q - h, n, q - h, 1.0f,
                Lm + (size_t)h * ldl + h, ldl, Z + (size_t)h * ldz, ldz, beta, Y + (size_t)h * ldy, ldy);
}

typedef struct SsdCtx {
    SsdDims d;
    float *states; /* (B, K-1, H, P, N) or NULL */
} SsdCtx;

/* ------------------------------------------------------------- forward */

static void ssd_forward_batch(const SsdDims *d, int b, const float *x, const float *Bm,
                              const float *Cm, const float *la, float *y, float *states, SsdWork *wk)
{
    const int L = d->L, H = d->H, P = d->P, N = d->N, Q = d->Q, K = d->K, HP = H * P;
    const size_t PN = (size_t)P * N;
    const float *xb = x + (size_t)b * L * HP, *Bb = Bm + (size_t)b * L * N,
                *Cb = Cm + (size_t)b * L * N, *lab = la + (size_t)b * L * H;
    float *yb = y + (size_t)b * L * HP;
    float *sb = states ? states + (size_t)b * (K - 1) * H * PN : NULL;

    for (int k = 0; k < K; k++) {
        const int t0 = k * Q, q = L - t0 < Q ? L - t0 : Q;
        const float *Bk = Bb + (size_t)t0 * N, *Ck = Cb + (size_t)t0 * N;
        /* G = C B^T, shared by the heads */
        gemm_lower_abt(q, N, Ck, N, Bk, N, wk->G, Q);
        for (int h = 0; h < H; h++) {
            const float *Xk = xb + (size_t)t0 * HP + (size_t)h * P;
            float *Yk = yb + (size_t)t0 * HP + (size_t)h * P;
            const float ecE = chunk_decays(lab + (size_t)t0 * H + h, H, q, wk, k > 0, k < K - 1);
            ssd_decay_mask(wk->c, q, wk->G, Q, wk->M, NULL);
            gemm_lower_lz(q, P, wk->M, Q, Xk, HP, 0.0f, Yk, HP);
            float *Sprev = NULL;
            if (k > 0) {
                Sprev = sb ? sb + ((size_t)(k - 1) * H + h) * PN : wk->S + (size_t)h * PN;
                scale_rows(wk->T, Ck, wk->ec, q, N);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q, P, N, 1.0f, wk->T, N, Sprev,
                            N, 1.0f, Yk, HP);
            }
            if (k < K - 1) {
                float *Snext = sb ? sb + ((size_t)k * H + h) * PN : wk->S + (size_t)h * PN;
                float beta = 0.0f;
                if (Sprev) {
                    beta = ecE;
                    if (Snext != Sprev) memcpy(Snext, Sprev, PN * sizeof(float));
                }
                scale_rows(wk->T, Bk, wk->w, q, N);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, N, q, 1.0f, Xk, HP, wk->T, N,
                            beta, Snext, N);
            }
        }
    }
}

/* ------------------------------------------------------------ backward */

typedef struct SsdGrads {
    const float *x, *Bm, *Cm, *la, *dy;
    float *dx, *dB, *dC, *dla; /* NULL when not needed */
} SsdGrads;

static void ssd_backward_batch(const SsdDims *d, int b, const SsdGrads *gr, const float *states,
                               SsdWork *wk)
{
    const int L = d->L, H = d->H, P = d->P, N = d->N, Q = d->Q, K = d->K, HP = H * P;
    const size_t PN = (size_t)P * N;
    const size_t ox = (size_t)b * L * HP, ob = (size_t)b * L * N, oa = (size_t)b * L * H;
    const float *sb = states ? states + (size_t)b * (K - 1) * H * PN : NULL;
    const bool need_dM = gr->dB || gr->dC || gr->dla;

    for (int k = K - 1; k >= 0; k--) {
        const int t0 = k * Q, q = L - t0 < Q ? L - t0 : Q;
        const float *Bk = gr->Bm + ob + (size_t)t0 * N, *Ck = gr->Cm + ob + (size_t)t0 * N;
        float *dBk = gr->dB ? gr->dB + ob + (size_t)t0 * N : NULL;
        float *dCk = gr->dC ? gr->dC + ob + (size_t)t0 * N : NULL;
        gemm_lower_abt(q, N, Ck, N, Bk, N, wk->G, Q);
        for (int h = 0; h < H; h++) {
            const size_t off = ox + (size_t)t0 * HP + (size_t)h * P;
            const float *Xk = gr->x + off, *dYk = gr->dy + off;
            float *dXk = gr->dx ? gr->dx + off : NULL;
            float *dS = wk->S + (size_t)h * PN;
            const bool has_dS = k < K - 1;          /* gradient w.r.t. the state after the chunk */
            const float *Sprev = (k > 0 && sb) ? sb + ((size_t)(k - 1) * H + h) * PN : NULL;
            float *da = wk->da;
            const float ecE = chunk_decays(gr->la + oa + (size_t)t0 * H + h, H, q, wk, k > 0, has_dS);
            ssd_decay_mask(wk->c, q, wk->G, Q, wk->M, wk->W);
            for (int i = 0; i < q; i++) da[i] = 0.0f;

            /* ---- terms through S_next = ecE S_prev + X^T diag(w) B ---- */
            if (has_dS) {
                if (dXk) {
                    scale_rows(wk->T, Bk, wk->w, q, N);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q, P, N, 1.0f, wk->T, N, dS,
                                N, 1.0f, dXk, HP);
                }
                if (dBk || gr->dla) {
                    /* V = X dS */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q, N, P, 1.0f, Xk, HP, dS,
                                N, 0.0f, wk->V, N);
                    if (gr->dla) {
                        float run = 0.0f; /* sum_{s < i} w_s V_s . B_s */
                        for (int i = 0; i < q; i++) {
                            da[i] += run;
                            run += wk->w[i] * (float)dot_d(wk->V + (size_t)i * N, Bk + (size_t)i * N,
                                                           (size_t)N);
                        }
                        if (Sprev) {
                            float all = ecE * (float)dot_d(dS, Sprev, PN);
                            for (int i = 0; i < q; i++) da[i] += all;
                        }
                    }
                    if (dBk)
                        for (int i = 0; i < q; i++) {
                            float s = wk->w[i];
                            const float *v = wk->V + (size_t)i * N;
                            float *o = dBk + (size_t)i * N;
                            for (int j = 0; j < N; j++) o[j] += s * v[j];
                        }
                }
            }

            /* ---- intra-chunk: Y = M X ---- */
            if (dXk)
                gemm_lower_ltz(q, P, wk->M, Q, dYk, HP, 1.0f, dXk, HP);
            if (need_dM) {
                gemm_lower_abt(q, P, dYk, HP, Xk, HP, wk->dM, Q);
                ssd_decay_mask_backward(q, wk->dM, wk->W, wk->G, Q, wk->acc, da);
                if (dCk)
                    gemm_lower_lz(q, N, wk->dM, Q, Bk, N, 1.0f, dCk, N);
                if (dBk)
                    gemm_lower_ltz(q, N, wk->dM, Q, Ck, N, 1.0f, dBk, N);
            }

            /* ---- inter-chunk: Y += diag(ec) C S_prev^T ---- */
            if (Sprev && (dCk || gr->dla)) {
                /* V = dY S_prev */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q, N, P, 1.0f, dYk, HP, Sprev,
                            N, 0.0f, wk->V, N);
                if (gr->dla) {
                    float run = 0.0f; /* sum_{t >= i} ec_t V_t . C_t */
                    for (int i = q - 1; i >= 0; i--) {
                        run += wk->ec[i] * (float)dot_d(wk->V + (size_t)i * N, Ck + (size_t)i * N,
                                                        (size_t)N);
                        da[i] += run;
                    }
                }
                if (dCk)
                    for (int i = 0; i < q; i++) {
                        float s = wk->ec[i];
                        const float *v = wk->V + (size_t)i * N;
                        float *o = dCk + (size_t)i * N;
                        for (int j = 0; j < N; j++) o[j] += s * v[j];
                    }
            }

            /* ---- dS_prev = ecE dS + dY^T diag(ec) C (needed by earlier chunks) ---- */
            if (k > 0) {
                scale_rows(wk->T, Ck, wk->ec, q, N);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, N, q, 1.0f, dYk, HP, wk->T, N,
                            has_dS ? ecE : 0.0f, dS, N);
            }

            if (gr->dla) {
                float *o = gr->dla + oa + (size_t)t0 * H + h;
                for (int i = 0; i < q; i++) o[(size_t)i * H] += da[i];
            }
        }
    }
}

static void ssd_backward(Graph *g, TapeEntry *e)
{
    const SsdCtx *ctx = e->ctx;
    const SsdDims *d = &ctx->d;
    SsdGrads gr = {
        .x = e->in[0]->data, .Bm = e->in[1]->data, .Cm = e->in[2]->data, .la = e->in[3]->data,
        .dy = e->out->grad,
        .dx = tensor_grad(g, e->in[0]), .dB = tensor_grad(g, e->in[1]),
        .dC = tensor_grad(g, e->in[2]), .dla = tensor_grad(g, e->in[3]),
    };
    if (!gr.dx && !gr.dB && !gr.dC && !gr.dla) return;
    int nthreads;
    float *work = work_alloc(g, d, &nthreads);
    const size_t wf = work_floats(d);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < d->B; b++) {
        SsdWork wk = work_carve(work + (size_t)omp_get_thread_num() * wf, d);
        ssd_backward_batch(d, b, &gr, ctx->states, &wk);
    }
}

/* ---------------------------------------------------------------- op */

Tensor *op_ssd_scan_chunked(Graph *g, Tensor *x, Tensor *Bm, Tensor *Cm, Tensor *log_a, int H,
                            int chunk)
{
    static const char *op = "ssd_scan";
    if (x->ndim != 3 || Bm->ndim != 3 || log_a->ndim != 3) op_shape_error(op, "need 3-d x, Bm, log_a", x, Bm);
    if (!tensor_same_shape(Bm, Cm)) op_shape_error(op, "Bm and Cm differ", Bm, Cm);
    if (Bm->shape[0] != x->shape[0] || Bm->shape[1] != x->shape[1])
        op_shape_error(op, "Bm must be (B, L, N) like x (B, L, H*P)", x, Bm);
    if (H <= 0 || x->shape[2] % H != 0) op_shape_error(op, "x's last dim is not H*P", x, NULL);
    if (log_a->shape[0] != x->shape[0] || log_a->shape[1] != x->shape[1] || log_a->shape[2] != H)
        op_shape_error(op, "log_a must be (B, L, H)", x, log_a);
    if (chunk < 8 || chunk % 8 != 0) op_shape_error(op, "chunk must be a positive multiple of 8", x, NULL);

    SsdDims d = {.B = x->shape[0], .L = x->shape[1], .H = H, .P = x->shape[2] / H,
                 .N = Bm->shape[2], .Q = chunk};
    /* no point in a chunk longer than the sequence (rounded up to 8) */
    if (d.Q > ((d.L + 7) & ~7)) d.Q = (d.L + 7) & ~7;
    d.K = (d.L + d.Q - 1) / d.Q;

    Tensor *y = tensor_new(g, 3, x->shape);
    const bool record = graph_wants_grad(g, x, Bm, Cm, log_a);
    float *states = NULL;
    /* the states are read back only by the dC and d log_a terms */
    if (record && d.K > 1 && (Cm->requires_grad || log_a->requires_grad))
        states = graph_scratch(g, (size_t)d.B * (d.K - 1) * d.H * d.P * d.N * sizeof(float));

    int nthreads;
    float *work = work_alloc(g, &d, &nthreads);
    const size_t wf = work_floats(&d);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < d.B; b++) {
        SsdWork wk = work_carve(work + (size_t)omp_get_thread_num() * wf, &d);
        ssd_forward_batch(&d, b, x->data, Bm->data, Cm->data, log_a->data, y->data, states, &wk);
    }

    if (record) {
        TapeEntry *e = graph_record(g, op, ssd_backward, y, x, Bm, Cm, log_a);
        SsdCtx *ctx = graph_scratch(g, sizeof *ctx);
        ctx->d = d;
        ctx->states = states;
        e->ctx = ctx;
    }
    return y;
}

Tensor *op_ssd_scan(Graph *g, Tensor *x, Tensor *Bm, Tensor *Cm, Tensor *log_a, int H)
{
    return op_ssd_scan_chunked(g, x, Bm, Cm, log_a, H, SSD_CHUNK_DEFAULT);
}
