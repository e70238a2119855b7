/* Chunked causal linear attention, forward and backward (see attn_linear.h
 * for the maths, the memory bound and the determinism argument). */
#include "attn_linear.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../ops.h"
#include "../simd.h"

/* ---------------------------------------------------------------- kernels */

void attnlin_k_normalize_rows_scalar(const float *N, int ldn, int n, int dv, float *y, int ldy,
                                     float *den)
{
    for (int t = 0; t < n; t++) {
        const float *nr = N + (size_t)t * ldn;
        float *yr = y + (size_t)t * ldy;
        float d = nr[dv];
        den[t] = d;
        for (int j = 0; j < dv; j++) yr[j] = nr[j] / d;
    }
}

void attnlin_k_grad_rows_scalar(const float *dy, int ldd, const float *y, int ldy,
                                const float *den, int n, int dv, float *W, int ldw)
{
    for (int t = 0; t < n; t++) {
        const float *dr = dy + (size_t)t * ldd, *yr = y + (size_t)t * ldy;
        float *wr = W + (size_t)t * ldw;
        float d = den[t], s = 0.0f;
        for (int j = 0; j < dv; j++) {
            wr[j] = dr[j] / d;
            s += wr[j] * yr[j];
        }
        wr[dv] = -s;
    }
}

#if SIMD_AVX2
void attnlin_k_normalize_rows_avx2(const float *N, int ldn, int n, int dv, float *y, int ldy,
                                   float *den)
{
    for (int t = 0; t < n; t++) {
        const float *nr = N + (size_t)t * ldn;
        float *yr = y + (size_t)t * ldy;
        float d = nr[dv];
        den[t] = d;
        const __m256 vd = _mm256_set1_ps(d);
        int j = 0;
        for (; j + 8 <= dv; j += 8) _mm256_storeu_ps(yr + j, _mm256_div_ps(_mm256_loadu_ps(nr + j), vd));
        if (j < dv) {
            __m256i m = simd_tail_mask((size_t)(dv - j));
            _mm256_maskstore_ps(yr + j, m, _mm256_div_ps(_mm256_maskload_ps(nr + j, m), vd));
        }
    }
}

void attnlin_k_grad_rows_avx2(const float *dy, int ldd, const float *y, int ldy, const float *den,
                              int n, int dv, float *W, int ldw)
{
    for (int t = 0; t < n; t++) {
        const float *dr = dy + (size_t)t * ldd, *yr = y + (size_t)t * ldy;
        float *wr = W + (size_t)t * ldw;
        const __m256 vd = _mm256_set1_ps(den[t]);
        __m256 acc = _mm256_setzero_ps();
        int j = 0;
        for (; j + 8 <= dv; j += 8) {
            __m256 w = _mm256_div_ps(_mm256_loadu_ps(dr + j), vd);
            _mm256_storeu_ps(wr + j, w);
            acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(yr + j), acc);
        }
        if (j < dv) {
            __m256i m = simd_tail_mask((size_t)(dv - j));
            __m256 w = _mm256_div_ps(_mm256_maskload_ps(dr + j, m), vd); /* 0 in masked lanes */
            _mm256_maskstore_ps(wr + j, m, w);
            acc = _mm256_fmadd_ps(w, _mm256_maskload_ps(yr + j, m), acc);
        }
        wr[dv] = -simd_hsum(acc);
    }
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void attnlin_k_normalize_rows(const float *N, int ldn, int n, int dv, float *y, int ldy, float *den)
{
    DISPATCH(attnlin_k_normalize_rows, N, ldn, n, dv, y, ldy, den);
}

void attnlin_k_grad_rows(const float *dy, int ldd, const float *y, int ldy, const float *den,
                         int n, int dv, float *W, int ldw)
{
    DISPATCH(attnlin_k_grad_rows, dy, ldd, y, ldy, den, n, dv, W, ldw);
}

/* ------------------------------------------------------------ chunk core */

typedef struct Dims {
    int B, L, H, dk, dv, dva, C, nc;
    int ldq; /* row stride of q, k: H*dk */
    int ldv; /* row stride of v, y: H*dv */
    bool normalize;
} Dims;

static size_t ws_floats(const Dims *d)
{
    size_t n = 2 * (size_t)d->C * d->C + 2 * (size_t)d->C * d->dva + (size_t)d->dk * d->dva;
    return (n + 15) & ~(size_t)15; /* keep every thread's block 64-byte aligned */
}

/* Zero the strict upper triangle of the n x n block A (row stride lda). */
static void tril_inplace(float *A, int n, int lda)
{
    for (int t = 0; t + 1 < n; t++) memset(A + (size_t)t * lda + t + 1, 0, (size_t)(n - t - 1) * sizeof(float));
}

/* [v_t | 1] rows of one chunk into Va (row stride dv + 1). */
static void augment_rows(const float *v, int ldv, int n, int dv, float *Va)
{
    for (int t = 0; t < n; t++) {
        memcpy(Va + (size_t)t * (dv + 1), v + (size_t)t * ldv, (size_t)dv * sizeof(float));
        Va[(size_t)t * (dv + 1) + dv] = 1.0f;
    }
}

/* Transposed (and, when normalising, augmented) copy of one chunk of v:
 * Vt[j*ldt + t] = v[t*ldv + j] for j < dv, Vt[dv*ldt + t] = 1 if aug.  The
 * backward keeps V' transposed because OpenBLAS's row-major A*B^T path
 * measured 30-40% slower than the other three forms at these sizes. */
static void transpose_rows(const float *v, int ldv, int n, int dv, bool aug, float *Vt, int ldt)
{
    for (int t = 0; t < n; t++) {
        const float *vr = v + (size_t)t * ldv;
        for (int j = 0; j < dv; j++) Vt[(size_t)j * ldt + t] = vr[j];
        if (aug) Vt[(size_t)dv * ldt + t] = 1.0f;
    }
}

static inline void sgemm(bool ta, bool tb, int m, int n, int k, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

/* Forward of one (b, h).  qb, kb point at row 0 of this head's q, k columns
 * (row stride ldq); vb, yb likewise for v, y (row stride ldv); den has L
 * entries (normalize only). */
static void forward_bh(const Dims *d, const float *qb, const float *kb, const float *vb, float *yb,
                       float *den, float *ws)
{
    const int C = d->C, dk = d->dk, dv = d->dv, dva = d->dva, ldq = d->ldq, ldv = d->ldv;
    float *A = ws, *Va = A + (size_t)C * C, *N = Va + (size_t)C * dva, *S = N + (size_t)C * dva;
    for (int c = 0; c < d->nc; c++) {
        const int t0 = c * C, n = d->L - t0 < C ? d->L - t0 : C;
        const float *Qc = qb + (size_t)t0 * ldq, *Kc = kb + (size_t)t0 * ldq, *Vc;
        float *Nc;
        int ldvc, ldn;
        if (d->normalize) {
            augment_rows(vb + (size_t)t0 * ldv, ldv, n, dv, Va);
            Vc = Va, ldvc = dva, Nc = N, ldn = dva;
        } else {
            Vc = vb + (size_t)t0 * ldv, ldvc = ldv, Nc = yb + (size_t)t0 * ldv, ldn = ldv;
        }
        sgemm(false, true, n, n, dk, Qc, ldq, Kc, ldq, 0.0f, A, C);
        tril_inplace(A, n, C);
        sgemm(false, false, n, dva, n, A, C, Vc, ldvc, 0.0f, Nc, ldn);
        if (c > 0) sgemm(false, false, n, dva, dk, Qc, ldq, S, dva, 1.0f, Nc, ldn);
        if (c + 1 < d->nc) sgemm(true, false, dk, dva, n, Kc, ldq, Vc, ldvc, c > 0 ? 1.0f : 0.0f, S, dva);
        if (d->normalize) attnlin_k_normalize_rows(N, dva, n, dv, yb + (size_t)t0 * ldv, ldv, den + t0);
    }
}

/* One chunk as the backward sees it: rows [t0, t0 + n), Q/K pointers, V'
 * transposed into Vt (dva x n, row stride C) and W' (a copy in W when
 * normalising, a view of dy otherwise). */
typedef struct Chunk {
    size_t t0;
    int n, ldw;
    const float *Q, *K, *W;
} Chunk;

static void chunk_setup(const Dims *d, int c, const float *qb, const float *kb, const float *vb,
                        const float *yb, const float *gyb, const float *den, float *Vt, float *W,
                        Chunk *k)
{
    const int t0 = c * d->C;
    k->t0 = (size_t)t0;
    k->n = d->L - t0 < d->C ? d->L - t0 : d->C;
    k->Q = qb + k->t0 * d->ldq;
    k->K = kb + k->t0 * d->ldq;
    transpose_rows(vb + k->t0 * d->ldv, d->ldv, k->n, d->dv, d->normalize, Vt, d->C);
    if (d->normalize) {
        attnlin_k_grad_rows(gyb + k->t0 * d->ldv, d->ldv, yb + k->t0 * d->ldv, d->ldv, den + t0, k->n,
                            d->dv, W, d->dva);
        k->W = W, k->ldw = d->dva;
    } else {
        k->W = gyb + k->t0 * d->ldv, k->ldw = d->ldv;
    }
}

/* Backward of one (b, h); dqb, dkb, dvb may be NULL.  gyb is dy with the
 * layout of y. */
static void backward_bh(const Dims *d, const float *qb, const float *kb, const float *vb,
                        const float *yb, const float *gyb, const float *den, float *dqb, float *dkb,
                        float *dvb, float *ws)
{
    const int C = d->C, dk = d->dk, dv = d->dv, dva = d->dva, ldq = d->ldq, ldv = d->ldv, nc = d->nc;
    float *A = ws, *Ga = A + (size_t)C * C, *Vt = Ga + (size_t)C * C, *W = Vt + (size_t)C * dva;
    /* S'^T (dva x dk) in the ascending sweep, G' (dk x dva) in the descending one */
    float *S = W + (size_t)C * dva;
    Chunk k;

    /* ascending sweep: the inter-chunk part of dQ, W'_c S'^T */
    if (dqb && nc > 1) {
        for (int c = 0; c < nc; c++) {
            chunk_setup(d, c, qb, kb, vb, yb, gyb, den, Vt, W, &k);
            if (c > 0) sgemm(false, false, k.n, dk, dva, k.W, k.ldw, S, dk, 1.0f, dqb + k.t0 * ldq, ldq);
            if (c + 1 < nc) sgemm(false, false, dva, dk, k.n, Vt, C, k.K, ldq, c > 0 ? 1.0f : 0.0f, S, dk);
        }
    }

    /* descending sweep: intra-chunk dQ, all of dK and dV, carrying G' */
    for (int c = nc - 1; c >= 0; c--) {
        chunk_setup(d, c, qb, kb, vb, yb, gyb, den, Vt, W, &k);
        const int n = k.n;
        if (dqb || dkb) {
            sgemm(false, false, n, n, dva, k.W, k.ldw, Vt, C, 0.0f, Ga, C);
            tril_inplace(Ga, n, C);
        }
        if (dqb) sgemm(false, false, n, dk, n, Ga, C, k.K, ldq, 1.0f, dqb + k.t0 * ldq, ldq);
        if (dkb) {
            float *dKc = dkb + k.t0 * ldq;
            sgemm(true, false, n, dk, n, Ga, C, k.Q, ldq, 1.0f, dKc, ldq);
            if (c + 1 < nc) sgemm(true, true, n, dk, dva, Vt, C, S, dva, 1.0f, dKc, ldq);
        }
        if (dvb) {
            float *dVc = dvb + k.t0 * ldv;
            sgemm(false, true, n, n, dk, k.Q, ldq, k.K, ldq, 0.0f, A, C);
            tril_inplace(A, n, C);
            sgemm(true, false, n, dv, n, A, C, k.W, k.ldw, 1.0f, dVc, ldv);
            if (c + 1 < nc) sgemm(false, false, n, dv, dk, k.K, ldq, S, dva, 1.0f, dVc, ldv);
        }
        if (c > 0 && (dkb || dvb))
            sgemm(true, false, dk, dva, n, k.Q, ldq, k.W, k.ldw, c + 1 < nc ? 1.0f : 0.0f, S, dva);
    }
}

/* -------------------------------------------------------------------- op */

static Dims make_dims(const Tensor *q, const Tensor *v, int H, bool normalize, int chunk)
{
    Dims d;
    d.B = q->shape[0], d.L = q->shape[1], d.H = H;
    d.dk = q->shape[2] / H, d.dv = v->shape[2] / H;
    d.dva = d.dv + (normalize ? 1 : 0);
    d.C = chunk < d.L ? chunk : d.L;
    d.nc = (d.L + d.C - 1) / d.C;
    d.ldq = q->shape[2], d.ldv = v->shape[2];
    d.normalize = normalize;
    return d;
}

static void causal_linear_attn_backward(Graph *g, TapeEntry *e)
{
    Tensor *q = e->in[0], *k = e->in[1], *v = e->in[2];
    const Dims d = make_dims(q, v, e->iarg[0], e->iarg[1] != 0, e->iarg[2]);
    float *dq = tensor_grad(g, q), *dk = tensor_grad(g, k), *dv = tensor_grad(g, v);
    if (!dq && !dk && !dv) return;
    const float *den = e->ctx, *gy = e->out->grad, *y = e->out->data;
    const size_t wsn = ws_floats(&d);
    float *ws = graph_scratch(g, (size_t)omp_get_max_threads() * wsn * sizeof(float));
    const int BH = d.B * d.H;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < BH; bh++) {
        const int b = bh / d.H, h = bh % d.H;
        const size_t oq = (size_t)b * d.L * d.ldq + (size_t)h * d.dk;
        const size_t ov = (size_t)b * d.L * d.ldv + (size_t)h * d.dv;
        backward_bh(&d, q->data + oq, k->data + oq, v->data + ov, y + ov, gy + ov,
                    den ? den + (size_t)bh * d.L : NULL, dq ? dq + oq : NULL, dk ? dk + oq : NULL,
                    dv ? dv + ov : NULL, ws + (size_t)omp_get_thread_num() * wsn);
    }
}

Tensor *op_causal_linear_attn_chunked(Graph *g, Tensor *q, Tensor *k, Tensor *v, int H,
                                      bool normalize, double *log_eta, int chunk)
{
    if (q->ndim != 3 || !tensor_same_shape(q, k))
        op_shape_error("causal_linear_attn", "q and k must be equal (B, L, H*dk):", q, k);
    if (v->ndim != 3 || v->shape[0] != q->shape[0] || v->shape[1] != q->shape[1])
        op_shape_error("causal_linear_attn", "v must be (B, L, H*dv) like q:", q, v);
    if (H < 1 || q->shape[2] % H != 0 || v->shape[2] % H != 0)
        op_shape_error("causal_linear_attn", "H must divide the q and v widths:", q, v);
    if (chunk < 1) op_shape_error("causal_linear_attn", "chunk size must be >= 1", q, NULL);

    const Dims d = make_dims(q, v, H, normalize, chunk);
    Tensor *y = tensor_new(g, 3, v->shape);
    const int BH = d.B * d.H;
    float *den = normalize ? graph_scratch(g, (size_t)BH * d.L * sizeof(float)) : NULL;
    const size_t wsn = ws_floats(&d);
    float *ws = graph_scratch(g, (size_t)omp_get_max_threads() * wsn * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < BH; bh++) {
        const int b = bh / d.H, h = bh % d.H;
        const size_t oq = (size_t)b * d.L * d.ldq + (size_t)h * d.dk;
        const size_t ov = (size_t)b * d.L * d.ldv + (size_t)h * d.dv;
        float *den_bh = den ? den + (size_t)bh * d.L : NULL;
        forward_bh(&d, q->data + oq, k->data + oq, v->data + ov, y->data + ov, den_bh,
                   ws + (size_t)omp_get_thread_num() * wsn);
        if (den_bh && log_eta)
            for (int t = 0; t < d.L; t++) log_eta[(size_t)bh * d.L + t] = log((double)den_bh[t]);
    }
    if (graph_wants_grad(g, q, k, v, NULL)) {
        TapeEntry *e = graph_record(g, "causal_linear_attn", causal_linear_attn_backward, y, q, k, v, NULL);
        e->ctx = den;
        e->iarg[0] = H;
        e->iarg[1] = normalize;
        e->iarg[2] = d.C;
    }
    return y;
}

int attnlin_default_chunk(int L, int dk, int dv)
{
    return L <= 64 || L < (dk < dv ? dk : dv) ? L : ATTNLIN_CHUNK;
}

Tensor *op_causal_linear_attn(Graph *g, Tensor *q, Tensor *k, Tensor *v, int H, bool normalize,
                              double *log_eta)
{
    if (q->ndim != 3 || v->ndim != 3 || H < 1)
        op_shape_error("causal_linear_attn", "q, k, v must be (B, L, H*d):", q, v);
    int chunk = attnlin_default_chunk(q->shape[1], q->shape[2] / H, v->shape[2] / H);
    return op_causal_linear_attn_chunked(g, q, k, v, H, normalize, log_eta, chunk);
}
