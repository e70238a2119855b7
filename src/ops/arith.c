/* Element-wise add, mul, scale, add-scalar and the accumulate kernels
 * every backward uses. */
#include <string.h>

#include "../ops.h"
#include "k_arith.h"

/* ---------------------------------------------------------------- kernels */

void k_add_scalar(const float *a, const float *b, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void k_mul_scalar(const float *a, const float *b, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

void k_affine_scalar(const float *x, float s, float c, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = s * x[i] + c;
}

#if SIMD_AVX2
/* One block of a binary op; the tail goes through the same vector code. */
#define BINARY_BLOCK(OP)                                                         \
    size_t i = 0;                                                                \
    for (; i + 8 <= n; i += 8)                                                   \
        _mm256_storeu_ps(y + i, OP(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i))); \
    if (i < n) {                                                                 \
        __m256i m = simd_tail_mask(n - i);                                       \
        _mm256_maskstore_ps(y + i, m,                                            \
                            OP(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m))); \
    }

static void add_block(const float *a, const float *b, float *y, size_t n) { BINARY_BLOCK(_mm256_add_ps) }
static void mul_block(const float *a, const float *b, float *y, size_t n) { BINARY_BLOCK(_mm256_mul_ps) }

static void affine_block(const float *x, float s, float c, float *y, size_t n)
{
    const __m256 vs = _mm256_set1_ps(s), vc = _mm256_set1_ps(c);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(x + i), vc));
    if (i < n) {
        __m256i m = simd_tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(vs, _mm256_maskload_ps(x + i, m), vc));
    }
}

void k_add_avx2(const float *a, const float *b, float *y, size_t n)
{
    PARALLEL_BLOCKS(n, add_block(a + off, b + off, y + off, len));
}
void k_mul_avx2(const float *a, const float *b, float *y, size_t n)
{
    PARALLEL_BLOCKS(n, mul_block(a + off, b + off, y + off, len));
}
void k_affine_avx2(const float *x, float s, float c, float *y, size_t n)
{
    PARALLEL_BLOCKS(n, affine_block(x + off, s, c, y + off, len));
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void k_add(const float *a, const float *b, float *y, size_t n) { DISPATCH(k_add, a, b, y, n); }
void k_mul(const float *a, const float *b, float *y, size_t n) { DISPATCH(k_mul, a, b, y, n); }
void k_affine(const float *x, float s, float c, float *y, size_t n) { DISPATCH(k_affine, x, s, c, y, n); }
void k_acc(float *y, const float *a, size_t n) { k_add(y, a, y, n); }

void k_acc_mul(float *y, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= KERNEL_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += a[i] * b[i];
}

void k_acc_scaled(float *y, const float *a, float s, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= KERNEL_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += s * a[i];
}

void k_mul_to(float *y, const float *a, const float *b, size_t n, bool acc)
{
    if (acc)
        k_acc_mul(y, a, b, n);
    else
        k_mul(a, b, y, n);
}

void k_scaled_to(float *y, const float *a, float s, size_t n, bool acc)
{
    if (acc)
        k_acc_scaled(y, a, s, n);
    else
        k_affine(a, s, 0.0f, y, n);
}

/* -------------------------------------------------------------------- ops */

/* dx (+)= dy for an identity backward: dy itself becomes x's gradient when
 * x has none yet (no copy), otherwise it is added. */
static void identity_backward_to(Graph *g, Tensor *x, const float *dy, size_t n)
{
    if (!x || !x->requires_grad) return;
    if (tensor_grad_adopt(g, x, (float *)dy)) return;
    k_acc(tensor_grad(g, x), dy, n);
}

static void add_backward(Graph *g, TapeEntry *e)
{
    const float *dy = e->out->grad;
    const size_t n = e->out->numel;
    /* b first: if b adopts dy, a (even when a == b) adds into it */
    float *db = NULL;
    bool fresh_b = false;
    if (e->in[1]->requires_grad && !tensor_grad_adopt(g, e->in[1], (float *)dy))
        db = tensor_grad_fresh(g, e->in[1], &fresh_b);
    if (db && fresh_b) memcpy(db, dy, n * sizeof *db);
    else if (db) k_acc(db, dy, n);
    identity_backward_to(g, e->in[0], dy, n);
}

Tensor *op_add(Graph *g, Tensor *a, Tensor *b)
{
    if (!tensor_same_shape(a, b)) op_shape_error("add", "shapes differ:", a, b);
    Tensor *y = tensor_new_like(g, a);
    k_add(a->data, b->data, y->data, y->numel);
    if (graph_wants_grad(g, a, b, NULL, NULL)) graph_record(g, "add", add_backward, y, a, b, NULL, NULL);
    return y;
}

static void mul_backward(Graph *g, TapeEntry *e)
{
    const float *dy = e->out->grad;
    Tensor *a = e->in[0], *b = e->in[1];
    bool fa, fb;
    float *da = tensor_grad_fresh(g, a, &fa);
    if (da) k_mul_to(da, dy, b->data, a->numel, !fa);
    float *db = tensor_grad_fresh(g, b, &fb);
    if (db) k_mul_to(db, dy, a->data, b->numel, !fb);
}

Tensor *op_mul(Graph *g, Tensor *a, Tensor *b)
{
    if (!tensor_same_shape(a, b)) op_shape_error("mul", "shapes differ:", a, b);
    Tensor *y = tensor_new_like(g, a);
    k_mul(a->data, b->data, y->data, y->numel);
    if (graph_wants_grad(g, a, b, NULL, NULL)) graph_record(g, "mul", mul_backward, y, a, b, NULL, NULL);
    return y;
}

static void scale_backward(Graph *g, TapeEntry *e)
{
    bool fresh;
    float *dx = tensor_grad_fresh(g, e->in[0], &fresh);
    if (dx) k_scaled_to(dx, e->out->grad, e->farg[0], e->out->numel, !fresh);
}

static void add_scalar_backward(Graph *g, TapeEntry *e)
{
    identity_backward_to(g, e->in[0], e->out->grad, e->out->numel);
}

Tensor *op_scale(Graph *g, Tensor *x, float s)
{
    Tensor *y = tensor_new_like(g, x);
    k_affine(x->data, s, 0.0f, y->data, y->numel);
    if (graph_wants_grad(g, x, NULL, NULL, NULL))
        graph_record(g, "scale", scale_backward, y, x, NULL, NULL, NULL)->farg[0] = s;
    return y;
}

Tensor *op_add_scalar(Graph *g, Tensor *x, float c)
{
    Tensor *y = tensor_new_like(g, x);
    k_affine(x->data, 1.0f, c, y->data, y->numel);
    if (graph_wants_grad(g, x, NULL, NULL, NULL))
        graph_record(g, "add_scalar", add_scalar_backward, y, x, NULL, NULL, NULL);
    return y;
}
