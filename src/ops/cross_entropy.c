/* Fused log-softmax + negative log-likelihood (F.cross_entropy with
 * ignore_index = -100, mean over the valid rows).
 *
 * Per row only the maximum m and s = sum exp(x - m) are saved (log-sum-exp
 * = m + log s, kept split so that large logits, e.g. 1e4, lose no
 * precision); backward recomputes the softmax row as exp(x - m) / s.
 * Rows run in parallel; their losses go to a scratch array that is summed
 * sequentially in float64, so the loss does not depend on the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "../simd_math.h"
#include "k_norm.h"

/* ---------------------------------------------------------------- kernels */

void k_xent_fwd_row_scalar(const float *x, float *max, float *sum, int *argmax, size_t n)
{
    float m = x[0];
    size_t am = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > m) m = x[i], am = i;
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += expf(x[i] - m);
    *max = m;
    *sum = s;
    *argmax = (int)am;
}

void k_xent_bwd_row_scalar(const float *x, float max, float scale, float *dx, size_t n,
                           bool accumulate)
{
    if (accumulate)
        for (size_t i = 0; i < n; i++) dx[i] += scale * expf(x[i] - max);
    else
        for (size_t i = 0; i < n; i++) dx[i] = scale * expf(x[i] - max);
}

#if SIMD_AVX2
void k_xent_fwd_row_avx2(const float *x, float *max, float *sum, int *argmax, size_t n)
{
    const size_t nv = n & ~(size_t)7;
    const __m256i tm = simd_tail_mask(n - nv);
    const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
    /* tail lanes become -inf: never a maximum, exp() gives 0 */
    const __m256 xt = nv < n ? _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + nv, tm), _mm256_castsi256_ps(tm))
                             : ninf;
    /* Pass 1: the maximum (two accumulators: max is exact, so any order
     * gives the same value). */
    __m256 mx0 = xt, mx1 = ninf;
    size_t i = 0;
    for (; i + 16 <= nv; i += 16) {
        mx0 = _mm256_max_ps(mx0, _mm256_loadu_ps(x + i));
        mx1 = _mm256_max_ps(mx1, _mm256_loadu_ps(x + i + 8));
    }
    if (i < nv) mx0 = _mm256_max_ps(mx0, _mm256_loadu_ps(x + i));
    const float m = simd_hmax(_mm256_max_ps(mx0, mx1));
    const __m256 vm = _mm256_set1_ps(m);

    /* Pass 2: the first index holding the maximum (torch.argmax on ties);
     * stops at the first hit. */
    int am = -1;
    for (i = 0; i < n && am < 0; i += 8) {
        __m256 xv = i == nv ? xt : _mm256_loadu_ps(x + i);
        int bits = _mm256_movemask_ps(_mm256_cmp_ps(xv, vm, _CMP_EQ_OQ));
        if (bits) am = (int)i + __builtin_ctz((unsigned)bits);
    }

    /* Pass 3: sum exp(x - max), two accumulators added at the end. */
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (i = 0; i + 16 <= nv; i += 16) {
        acc0 = _mm256_add_ps(acc0, v8_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
        acc1 = _mm256_add_ps(acc1, v8_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm)));
    }
    if (i < nv) acc0 = _mm256_add_ps(acc0, v8_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
    if (nv < n) acc1 = _mm256_add_ps(acc1, v8_exp(_mm256_sub_ps(xt, vm)));
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    *max = m;
    *sum = simd_hsum(acc);
    *argmax = am < 0 ? 0 : am; /* am < 0 only for an all -inf (or NaN) row */
}

/* The store variant writes scale * p; fma(scale, p, 0) would round the
 * same product, so both variants agree with accumulating into zeros. */
void k_xent_bwd_row_avx2(const float *x, float max, float scale, float *dx, size_t n,
                         bool accumulate)
{
    const size_t nv = n & ~(size_t)7;
    const __m256i tm = simd_tail_mask(n - nv);
    const __m256 vm = _mm256_set1_ps(max), vs = _mm256_set1_ps(scale);
    if (accumulate) {
        for (size_t i = 0; i < nv; i += 8) {
            __m256 p = v8_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
            _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(vs, p, _mm256_loadu_ps(dx + i)));
        }
    } else {
        for (size_t i = 0; i < nv; i += 8) {
            __m256 p = v8_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
            _mm256_storeu_ps(dx + i, _mm256_mul_ps(vs, p));
        }
    }
    if (nv < n) {
        __m256 p = v8_exp(_mm256_sub_ps(_mm256_maskload_ps(x + nv, tm), vm));
        __m256 d = accumulate ? _mm256_fmadd_ps(vs, p, _mm256_maskload_ps(dx + nv, tm)) : _mm256_mul_ps(vs, p);
        _mm256_maskstore_ps(dx + nv, tm, d);
    }
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void k_xent_fwd_row(const float *x, float *max, float *sum, int *argmax, size_t n)
{
    DISPATCH(k_xent_fwd_row, x, max, sum, argmax, n);
}

void k_xent_bwd_row(const float *x, float max, float scale, float *dx, size_t n, bool accumulate)
{
    DISPATCH(k_xent_bwd_row, x, max, scale, dx, n, accumulate);
}

/* -------------------------------------------------------------------- op */

typedef struct XentCtx {
    const int32_t *labels;
    const float *rowmax;   /* (N) */
    const float *rowsum;   /* (N) sum exp(x - max) */
    int n_valid;
} XentCtx;

static void cross_entropy_backward(Graph *g, TapeEntry *e)
{
    const XentCtx *c = e->ctx;
    Tensor *logits = e->in[0];
    bool fresh;
    float *dx = tensor_grad_fresh(g, logits, &fresh);
    if (!dx) return;
    const size_t V = (size_t)tensor_cols(logits), N = tensor_rows(logits);
    if (c->n_valid == 0) {
        if (fresh) memset(dx, 0, N * V * sizeof *dx);
        return;
    }
    const float gs = e->out->grad[0] / (float)c->n_valid;
    /* a fresh gradient is written row by row (no zero-fill pass) */
#pragma omp parallel for schedule(static) if (N * V >= NORM_PAR_MIN)
    for (size_t r = 0; r < N; r++) {
        const int32_t lab = c->labels[r];
        if (lab == IGNORE_INDEX) {
            if (fresh) memset(dx + r * V, 0, V * sizeof *dx);
            continue;
        }
        k_xent_bwd_row(logits->data + r * V, c->rowmax[r], gs / c->rowsum[r], dx + r * V, V, !fresh);
        dx[r * V + (size_t)lab] -= gs;
    }
}

Tensor *op_cross_entropy(Graph *g, Tensor *logits, const int32_t *labels, XentStats *stats)
{
    const size_t V = (size_t)tensor_cols(logits), N = tensor_rows(logits);
    /* a bad label is a programming error: say which one before any work */
    for (size_t r = 0; r < N; r++) {
        const int32_t lab = labels[r];
        if (lab != IGNORE_INDEX && (lab < 0 || (size_t)lab >= V)) {
            fprintf(stderr,
                    "seqeig: cross_entropy: label %d of row %zu is outside [0, %zu) and is not "
                    "IGNORE_INDEX (%d)\n",
                    (int)lab, r, V, IGNORE_INDEX);
            abort();
        }
    }

    float *rowmax = graph_scratch(g, N * sizeof(float));
    float *rowsum = graph_scratch(g, N * sizeof(float));
    double *rowloss = graph_scratch(g, N * sizeof(double));
    unsigned char *correct = graph_scratch(g, N);
#pragma omp parallel for schedule(static) if (N * V >= NORM_PAR_MIN)
    for (size_t r = 0; r < N; r++) {
        const int32_t lab = labels[r];
        if (lab == IGNORE_INDEX) {
            rowmax[r] = 0.0f, rowsum[r] = 1.0f, rowloss[r] = 0.0, correct[r] = 0;
            continue;
        }
        const float *x = logits->data + r * V;
        int am;
        k_xent_fwd_row(x, rowmax + r, rowsum + r, &am, V);
        /* loss = lse - x[lab] = (m - x[lab]) + log s, in float64 */
        rowloss[r] = ((double)rowmax[r] - (double)x[lab]) + log((double)rowsum[r]);
        correct[r] = am == lab;
    }

    int n_valid = 0, n_correct = 0;
    double loss_sum = 0.0;
    for (size_t r = 0; r < N; r++) {
        if (labels[r] == IGNORE_INDEX) continue;
        n_valid++;
        n_correct += correct[r];
        loss_sum += rowloss[r];
    }
    Tensor *out = tensor_new(g, 1, (int[]){1});
    out->data[0] = n_valid ? (float)(loss_sum / n_valid) : 0.0f;
    if (stats) *stats = (XentStats){.n_valid = n_valid, .n_correct = n_correct, .loss_sum = loss_sum};

    if (graph_wants_grad(g, logits, NULL, NULL, NULL)) {
        TapeEntry *e = graph_record(g, "cross_entropy", cross_entropy_backward, out, logits, NULL, NULL, NULL);
        XentCtx *c = graph_scratch(g, sizeof *c);
        *c = (XentCtx){.labels = labels, .rowmax = rowmax, .rowsum = rowsum, .n_valid = n_valid};
        e->ctx = c;
    }
    return out;
}
