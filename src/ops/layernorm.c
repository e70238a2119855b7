/* Layer norm over the last dimension, fused (torch.nn.LayerNorm semantics:
 * biased variance, eps inside the square root).
 *
 * Forward saves per-row mean and rstd (2 floats per row, in the arena);
 * backward recomputes xhat from x and those two numbers, so nothing
 * cols-sized is saved beyond the output.
 *
 * dgamma / dbeta are sums over rows.  To make them bit-identical for any
 * thread count, rows are cut into fixed blocks of LN_ROW_BLOCK; each block
 * sums its rows in order into its own partial row, and the partials are
 * then added in block order. */
#include <math.h>
#include <string.h>

#include "../ops.h"
#include "k_norm.h"

#define LN_ROW_BLOCK 32   /* rows per partial sum of dgamma / dbeta */
#define LN_COL_CHUNK 64   /* columns per task in the final partial reduction */

/* ---------------------------------------------------------------- kernels */

void k_layernorm_fwd_row_scalar(const float *x, const float *gamma, const float *beta,
                                float eps, float *y, float *mean, float *rstd, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += x[i];
    const float m = s / (float)n;
    float v = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = x[i] - m;
        v += d * d;
    }
    const float r = 1.0f / sqrtf(v / (float)n + eps);
    for (size_t i = 0; i < n; i++) y[i] = (x[i] - m) * r * gamma[i] + beta[i];
    *mean = m;
    *rstd = r;
}

void k_layernorm_bwd_row_scalar(const float *x, const float *dy, const float *gamma, float mean,
                                float rstd, float *dx, float *dgamma, float *dbeta, size_t n, bool dx_acc)
{
    if (dgamma)
        for (size_t i = 0; i < n; i++) dgamma[i] += dy[i] * ((x[i] - mean) * rstd);
    if (dbeta)
        for (size_t i = 0; i < n; i++) dbeta[i] += dy[i];
    if (!dx) return;
    float sg = 0.0f, sgx = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float xh = (x[i] - mean) * rstd, gi = dy[i] * gamma[i];
        sg += gi;
        sgx += gi * xh;
    }
    const float a = sg / (float)n, b = sgx / (float)n;
    for (size_t i = 0; i < n; i++) {
        float xh = (x[i] - mean) * rstd, gi = dy[i] * gamma[i];
        float v = rstd * (gi - a - xh * b);
        dx[i] = dx_acc ? dx[i] + v : v;
    }
}

#if SIMD_AVX2
void k_layernorm_fwd_row_avx2(const float *x, const float *gamma, const float *beta, float eps,
                              float *y, float *mean, float *rstd, size_t n)
{
    const size_t nv = n & ~(size_t)7;
    const __m256i tm = simd_tail_mask(n - nv);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < nv; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    if (nv < n) acc = _mm256_add_ps(acc, _mm256_maskload_ps(x + nv, tm));
    const float m = simd_hsum(acc) / (float)n;
    const __m256 vm = _mm256_set1_ps(m);

    acc = _mm256_setzero_ps();
    for (size_t i = 0; i < nv; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    if (nv < n) {
        /* masked-off lanes load 0, and 0 - mean must not count */
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + nv, tm), vm),
                                 _mm256_castsi256_ps(tm));
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    const float r = 1.0f / sqrtf(simd_hsum(acc) / (float)n + eps);
    const __m256 vr = _mm256_set1_ps(r);

    for (size_t i = 0; i < nv; i += 8) {
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(xh, _mm256_loadu_ps(gamma + i), _mm256_loadu_ps(beta + i)));
    }
    if (nv < n) {
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + nv, tm), vm), vr);
        _mm256_maskstore_ps(y + nv, tm, _mm256_fmadd_ps(xh, _mm256_maskload_ps(gamma + nv, tm),
                                                        _mm256_maskload_ps(beta + nv, tm)));
    }
    *mean = m;
    *rstd = r;
}

void k_layernorm_bwd_row_avx2(const float *x, const float *dy, const float *gamma, float mean,
                              float rstd, float *dx, float *dgamma, float *dbeta, size_t n, bool dx_acc)
{
    const size_t nv = n & ~(size_t)7;
    const __m256i tm = simd_tail_mask(n - nv);
    const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    /* Pass 1: parameter gradients and the two row sums.  In the tail, the
     * masked-off lanes have dy = 0, so they add nothing to the sums. */
    __m256 sg = _mm256_setzero_ps(), sgx = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8) {
        const bool tail = i == nv;
        __m256 xv = tail ? _mm256_maskload_ps(x + i, tm) : _mm256_loadu_ps(x + i);
        __m256 dyv = tail ? _mm256_maskload_ps(dy + i, tm) : _mm256_loadu_ps(dy + i);
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(xv, vm), vr);
        if (dgamma) {
            __m256 dgv = tail ? _mm256_maskload_ps(dgamma + i, tm) : _mm256_loadu_ps(dgamma + i);
            dgv = _mm256_fmadd_ps(dyv, xh, dgv);
            if (tail) _mm256_maskstore_ps(dgamma + i, tm, dgv);
            else _mm256_storeu_ps(dgamma + i, dgv);
        }
        if (dbeta) {
            __m256 dbv = tail ? _mm256_maskload_ps(dbeta + i, tm) : _mm256_loadu_ps(dbeta + i);
            dbv = _mm256_add_ps(dbv, dyv);
            if (tail) _mm256_maskstore_ps(dbeta + i, tm, dbv);
            else _mm256_storeu_ps(dbeta + i, dbv);
        }
        if (dx) {
            __m256 gv = _mm256_mul_ps(dyv, tail ? _mm256_maskload_ps(gamma + i, tm) : _mm256_loadu_ps(gamma + i));
            sg = _mm256_add_ps(sg, gv);
            sgx = _mm256_fmadd_ps(gv, xh, sgx);
        }
    }
    if (!dx) return;
    /* Pass 2: dx += rstd (g - a - xhat b) */
    const __m256 va = _mm256_set1_ps(simd_hsum(sg) / (float)n);
    const __m256 vb = _mm256_set1_ps(simd_hsum(sgx) / (float)n);
    for (size_t i = 0; i < n; i += 8) {
        const bool tail = i == nv;
        __m256 xv = tail ? _mm256_maskload_ps(x + i, tm) : _mm256_loadu_ps(x + i);
        __m256 dyv = tail ? _mm256_maskload_ps(dy + i, tm) : _mm256_loadu_ps(dy + i);
        __m256 gm = tail ? _mm256_maskload_ps(gamma + i, tm) : _mm256_loadu_ps(gamma + i);
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(xv, vm), vr);
        __m256 t = _mm256_fnmadd_ps(xh, vb, _mm256_sub_ps(_mm256_mul_ps(dyv, gm), va));
        __m256 dxv;
        if (dx_acc) {
            dxv = tail ? _mm256_maskload_ps(dx + i, tm) : _mm256_loadu_ps(dx + i);
            dxv = _mm256_fmadd_ps(vr, t, dxv);
        } else {
            dxv = _mm256_mul_ps(vr, t); /* what the fma gives on a zero dx */
        }
        if (tail) _mm256_maskstore_ps(dx + i, tm, dxv);
        else _mm256_storeu_ps(dx + i, dxv);
    }
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void k_layernorm_fwd_row(const float *x, const float *gamma, const float *beta, float eps,
                         float *y, float *mean, float *rstd, size_t n)
{
    DISPATCH(k_layernorm_fwd_row, x, gamma, beta, eps, y, mean, rstd, n);
}

void k_layernorm_bwd_row(const float *x, const float *dy, const float *gamma, float mean,
                         float rstd, float *dx, float *dgamma, float *dbeta, size_t n, bool dx_acc)
{
    DISPATCH(k_layernorm_bwd_row, x, dy, gamma, mean, rstd, dx, dgamma, dbeta, n, dx_acc);
}

/* -------------------------------------------------------------------- op */

/* stats: mean[0..rows) followed by rstd[0..rows) */
static void layernorm_backward(Graph *g, TapeEntry *e)
{
    Tensor *x = e->in[0], *gamma = e->in[1], *beta = e->in[2];
    const float *dy = e->out->grad, *stats = e->ctx;
    bool fresh; /* a fresh dx is written, not added into */
    float *dx = tensor_grad_fresh(g, x, &fresh), *dgamma = tensor_grad(g, gamma), *dbeta = tensor_grad(g, beta);
    const size_t cols = (size_t)tensor_cols(x), rows = tensor_rows(x);
    const float *mean = stats, *rstd = stats + rows;
    const bool par = rows * cols >= NORM_PAR_MIN;

    if (!dgamma && !dbeta) {
        if (!dx) return;
#pragma omp parallel for schedule(static) if (par)
        for (size_t r = 0; r < rows; r++)
            k_layernorm_bwd_row(x->data + r * cols, dy + r * cols, gamma->data, mean[r], rstd[r],
                                dx + r * cols, NULL, NULL, cols, !fresh);
        return;
    }

    const size_t nblk = (rows + LN_ROW_BLOCK - 1) / LN_ROW_BLOCK;
    float *pg = dgamma ? graph_scratch(g, nblk * cols * sizeof(float)) : NULL;
    float *pb = dbeta ? graph_scratch(g, nblk * cols * sizeof(float)) : NULL;
#pragma omp parallel for schedule(static) if (par)
    for (size_t blk = 0; blk < nblk; blk++) {
        float *bg = pg ? pg + blk * cols : NULL, *bb = pb ? pb + blk * cols : NULL;
        if (bg) memset(bg, 0, cols * sizeof(float));
        if (bb) memset(bb, 0, cols * sizeof(float));
        const size_t r1 = (blk + 1) * LN_ROW_BLOCK < rows ? (blk + 1) * LN_ROW_BLOCK : rows;
        for (size_t r = blk * LN_ROW_BLOCK; r < r1; r++)
            k_layernorm_bwd_row(x->data + r * cols, dy + r * cols, gamma->data, mean[r], rstd[r],
                                dx ? dx + r * cols : NULL, bg, bb, cols, !fresh);
    }

    /* partials in block order; each column's sum is independent of the split */
    const size_t nchunk = (cols + LN_COL_CHUNK - 1) / LN_COL_CHUNK;
#pragma omp parallel for schedule(static) if (par && nchunk > 1)
    for (size_t c = 0; c < nchunk; c++) {
        const size_t j0 = c * LN_COL_CHUNK;
        const size_t nj = cols - j0 < LN_COL_CHUNK ? cols - j0 : LN_COL_CHUNK;
        float sg[LN_COL_CHUNK] = {0}, sb[LN_COL_CHUNK] = {0};
        for (size_t b = 0; b < nblk; b++) {
            if (pg)
                for (size_t j = 0; j < nj; j++) sg[j] += pg[b * cols + j0 + j];
            if (pb)
                for (size_t j = 0; j < nj; j++) sb[j] += pb[b * cols + j0 + j];
        }
        if (dgamma)
            for (size_t j = 0; j < nj; j++) dgamma[j0 + j] += sg[j];
        if (dbeta)
            for (size_t j = 0; j < nj; j++) dbeta[j0 + j] += sb[j];
    }
}

Tensor *op_layernorm(Graph *g, Tensor *x, Tensor *gamma, Tensor *beta, float eps)
{
    const size_t cols = (size_t)tensor_cols(x), rows = tensor_rows(x);
    if (gamma->numel != cols) op_shape_error("layernorm", "gamma must have cols elements:", x, gamma);
    if (beta->numel != cols) op_shape_error("layernorm", "beta must have cols elements:", x, beta);

    Tensor *y = tensor_new_like(g, x);
    float *stats = graph_scratch(g, 2 * rows * sizeof(float));
    float *mean = stats, *rstd = stats + rows;
#pragma omp parallel for schedule(static) if (rows * cols >= NORM_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        k_layernorm_fwd_row(x->data + r * cols, gamma->data, beta->data, eps, y->data + r * cols,
                            mean + r, rstd + r, cols);

    if (graph_wants_grad(g, x, gamma, beta, NULL)) {
        TapeEntry *e = graph_record(g, "layernorm", layernorm_backward, y, x, gamma, beta, NULL);
        e->ctx = stats;
        e->farg[0] = eps;
    }
    return y;
}
