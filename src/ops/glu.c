/* Gated linear unit over the last dimension: u = [a | b] (each d wide),
 * y = a * sigmoid(b).  sigmoid(b) is recomputed in backward rather than
 * stored.  Rows are independent: parallel over rows, channel tails through
 * masked vector loads. */
#include <math.h>

#include "../ops.h"
#include "../simd_math.h"
#include "k_seq.h"

/* ---------------------------------------------------------------- scalar */

static inline float sigmoidf_(float b) { return 1.0f / (1.0f + expf(-b)); }

void k_glu_fwd_scalar(const float *u, float *y, size_t rows, size_t d)
{
#pragma omp parallel for schedule(static) if (rows * d >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *a = u + r * 2 * d, *b = a + d;
        float *yr = y + r * d;
        for (size_t i = 0; i < d; i++) yr[i] = a[i] * sigmoidf_(b[i]);
    }
}

void k_glu_bwd_scalar(const float *u, const float *dy, float *du, size_t rows, size_t d, bool acc)
{
#pragma omp parallel for schedule(static) if (rows * d >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *a = u + r * 2 * d, *b = a + d, *g = dy + r * d;
        float *da = du + r * 2 * d, *db = da + d;
        for (size_t i = 0; i < d; i++) {
            float s = sigmoidf_(b[i]);
            float va = g[i] * s, vb = g[i] * a[i] * s * (1.0f - s);
            da[i] = acc ? da[i] + va : va;
            db[i] = acc ? db[i] + vb : vb;
        }
    }
}

/* ------------------------------------------------------------------ AVX2 */

#if SIMD_AVX2
void k_glu_fwd_avx2(const float *u, float *y, size_t rows, size_t d)
{
    const __m256i m = simd_tail_mask(d % 8);
#pragma omp parallel for schedule(static) if (rows * d >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *a = u + r * 2 * d, *b = a + d;
        float *yr = y + r * d;
        size_t i = 0;
        for (; i + 8 <= d; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), v8_sigmoid(_mm256_loadu_ps(b + i))));
        if (i < d)
            _mm256_maskstore_ps(yr + i, m, _mm256_mul_ps(_mm256_maskload_ps(a + i, m),
                                                         v8_sigmoid(_mm256_maskload_ps(b + i, m))));
    }
}

/* One vector of the backward (full, or the lanes of m): da (+)= g s,
 * db (+)= g a s (1 - s); the store variant (!acc) reads neither. */
static inline __attribute__((always_inline)) void glu_bwd8(const float *a, const float *b, const float *g,
                                                           float *da, float *db, int full, __m256i m, bool acc)
{
#define LDM(p) (full ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), m))
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 av = LDM(a), gv = LDM(g);
    __m256 s = v8_sigmoid(LDM(b));
    __m256 dbv = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(gv, av), s), _mm256_sub_ps(one, s));
    __m256 dav = acc ? _mm256_fmadd_ps(gv, s, LDM(da)) : _mm256_mul_ps(gv, s);
    if (acc) dbv = _mm256_add_ps(LDM(db), dbv);
#undef LDM
    if (full) {
        _mm256_storeu_ps(da, dav);
        _mm256_storeu_ps(db, dbv);
    } else {
        _mm256_maskstore_ps(da, m, dav);
        _mm256_maskstore_ps(db, m, dbv);
    }
}

void k_glu_bwd_avx2(const float *u, const float *dy, float *du, size_t rows, size_t d, bool acc)
{
    const __m256i m = simd_tail_mask(d % 8);
#pragma omp parallel for schedule(static) if (rows * d >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *a = u + r * 2 * d, *b = a + d, *g = dy + r * d;
        float *da = du + r * 2 * d, *db = da + d;
        size_t i = 0;
        for (; i + 8 <= d; i += 8) glu_bwd8(a + i, b + i, g + i, da + i, db + i, 1, m, acc);
        if (i < d) glu_bwd8(a + i, b + i, g + i, da + i, db + i, 0, m, acc);
    }
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void k_glu_fwd(const float *u, float *y, size_t rows, size_t d) { DISPATCH(k_glu_fwd, u, y, rows, d); }
void k_glu_bwd(const float *u, const float *dy, float *du, size_t rows, size_t d, bool acc)
{
    DISPATCH(k_glu_bwd, u, dy, du, rows, d, acc);
}

/* -------------------------------------------------------------------- op */

static void glu_backward(Graph *g, TapeEntry *e)
{
    Tensor *u = e->in[0];
    bool fresh; /* a fresh du is written, not added into */
    float *du = tensor_grad_fresh(g, u, &fresh);
    if (du) k_glu_bwd(u->data, e->out->grad, du, tensor_rows(u), (size_t)tensor_cols(e->out), !fresh);
}

Tensor *op_glu(Graph *g, Tensor *u)
{
    const int cols = tensor_cols(u);
    if (cols % 2 != 0) op_shape_error("glu", "last dim must be even (2d), got", u, NULL);
    int shape[TENSOR_MAX_DIMS];
    for (int i = 0; i < u->ndim; i++) shape[i] = u->shape[i];
    shape[u->ndim - 1] = cols / 2;
    Tensor *y = tensor_new(g, u->ndim, shape);
    k_glu_fwd(u->data, y->data, tensor_rows(u), (size_t)(cols / 2));
    if (graph_wants_grad(g, u, NULL, NULL, NULL)) graph_record(g, "glu", glu_backward, y, u, NULL, NULL, NULL);
    return y;
}
