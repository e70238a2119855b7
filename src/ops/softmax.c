/* Softmax over the last dimension, numerically stable (the row maximum is
 * subtracted before exp).  Backward uses the saved output:
 * dx = y (dy - sum(dy y)). */
#include <math.h>

#include "../ops.h"
#include "../simd_math.h"
#include "k_norm.h"

/* ---------------------------------------------------------------- kernels */

void k_softmax_fwd_row_scalar(const float *x, float *y, size_t n)
{
    float m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) {
        y[i] = expf(x[i] - m);
        s += y[i];
    }
    const float inv = 1.0f / s;
    for (size_t i = 0; i < n; i++) y[i] *= inv;
}

void k_softmax_bwd_row_scalar(const float *y, const float *dy, float *dx, size_t n)
{
    float dot = 0.0f;
    for (size_t i = 0; i < n; i++) dot += dy[i] * y[i];
    for (size_t i = 0; i < n; i++) dx[i] += y[i] * (dy[i] - dot);
}

#if SIMD_AVX2
void k_softmax_fwd_row_avx2(const float *x, float *y, size_t n)
{
    const size_t nv = n & ~(size_t)7;
    const __m256i tm = simd_tail_mask(n - nv);
    const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
    /* tail lanes become -inf: they do not raise the max and exp() gives 0 */
    const __m256 xt = nv < n ? _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + nv, tm), _mm256_castsi256_ps(tm))
                             : ninf;
    __m256 vmax = xt;
    for (size_t i = 0; i < nv; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    const __m256 vm = _mm256_set1_ps(simd_hmax(vmax));

    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < nv; i += 8) {
        __m256 ev = v8_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(y + i, ev);
        acc = _mm256_add_ps(acc, ev);
    }
    if (nv < n) {
        __m256 ev = v8_exp(_mm256_sub_ps(xt, vm));
        _mm256_maskstore_ps(y + nv, tm, ev);
        acc = _mm256_add_ps(acc, ev);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / simd_hsum(acc));
    for (size_t i = 0; i < nv; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
    if (nv < n) _mm256_maskstore_ps(y + nv, tm, _mm256_mul_ps(_mm256_maskload_ps(y + nv, tm), inv));
}

void k_softmax_bwd_row_avx2(const float *y, const float *dy, float *dx, size_t n)
{
    const size_t nv = n & ~(size_t)7;
    const __m256i tm = simd_tail_mask(n - nv);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < nv; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(dy + i), _mm256_loadu_ps(y + i), acc);
    if (nv < n) acc = _mm256_fmadd_ps(_mm256_maskload_ps(dy + nv, tm), _mm256_maskload_ps(y + nv, tm), acc);
    const __m256 dot = _mm256_set1_ps(simd_hsum(acc));
    for (size_t i = 0; i < nv; i += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(dy + i), dot);
        _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(_mm256_loadu_ps(y + i), t, _mm256_loadu_ps(dx + i)));
    }
    if (nv < n) {
        __m256 t = _mm256_sub_ps(_mm256_maskload_ps(dy + nv, tm), dot);
        _mm256_maskstore_ps(dx + nv, tm, _mm256_fmadd_ps(_mm256_maskload_ps(y + nv, tm), t,
                                                         _mm256_maskload_ps(dx + nv, tm)));
    }
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void k_softmax_fwd_row(const float *x, float *y, size_t n) { DISPATCH(k_softmax_fwd_row, x, y, n); }
void k_softmax_bwd_row(const float *y, const float *dy, float *dx, size_t n)
{
    DISPATCH(k_softmax_bwd_row, y, dy, dx, n);
}

/* -------------------------------------------------------------------- op */

static void softmax_backward(Graph *g, TapeEntry *e)
{
    float *dx = tensor_grad(g, e->in[0]);
    if (!dx) return;
    const Tensor *y = e->out;
    const size_t cols = (size_t)tensor_cols(y), rows = tensor_rows(y);
    const float *dy = y->grad;
#pragma omp parallel for schedule(static) if (rows * cols >= NORM_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        k_softmax_bwd_row(y->data + r * cols, dy + r * cols, dx + r * cols, cols);
}

Tensor *op_softmax(Graph *g, Tensor *x)
{
    const size_t cols = (size_t)tensor_cols(x), rows = tensor_rows(x);
    Tensor *y = tensor_new_like(g, x);
#pragma omp parallel for schedule(static) if (rows * cols >= NORM_PAR_MIN)
    for (size_t r = 0; r < rows; r++) k_softmax_fwd_row(x->data + r * cols, y->data + r * cols, cols);
    if (graph_wants_grad(g, x, NULL, NULL, NULL))
        graph_record(g, "softmax", softmax_backward, y, x, NULL, NULL, NULL);
    return y;
}
