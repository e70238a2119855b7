/* Element-wise activations: exp, exact GELU, SiLU, ELU, softplus,
 * sigmoid, ReLU.  One forward and one backward kernel per activation,
 * selected by ActKind, so every op shares the same blocking and dispatch. */
#include <math.h>
#include <string.h>

#include "../ops.h"
#include "../simd_math.h"
#include "k_activation.h"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

/* ------------------------------------------------------------- scalar */

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float act_scalar(ActKind k, float x)
{
    switch (k) {
    case ACT_EXP: return expf(x);
    case ACT_GELU: return 0.5f * x * erfcf(-x * INV_SQRT2);
    case ACT_SILU: return x * sigmoidf_(x);
    case ACT_ELU: return x > 0.0f ? x : expm1f(x);
    case ACT_SOFTPLUS: return x > SOFTPLUS_THRESHOLD ? x : log1pf(expf(x));
    case ACT_SIGMOID: return sigmoidf_(x);
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    default: return NAN;
    }
}

/* f'(x), from x or y */
static inline float dact_scalar(ActKind k, float x, float y)
{
    switch (k) {
    case ACT_EXP: return y;
    case ACT_GELU: return 0.5f * erfcf(-x * INV_SQRT2) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    case ACT_SILU: {
        float s = sigmoidf_(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case ACT_ELU: return x > 0.0f ? 1.0f : y + 1.0f;
    case ACT_SOFTPLUS: return x > SOFTPLUS_THRESHOLD ? 1.0f : sigmoidf_(x);
    case ACT_SIGMOID: return y * (1.0f - y);
    case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    default: return NAN;
    }
}

void k_act_fwd_scalar(ActKind k, const float *x, float *y, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= KERNEL_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = act_scalar(k, x[i]);
}

void k_act_bwd_scalar(ActKind k, const float *x, const float *y, const float *dy, float *dx, size_t n,
                      bool acc)
{
    if (acc) {
#pragma omp parallel for schedule(static) if (n >= KERNEL_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] += dy[i] * dact_scalar(k, x[i], y[i]);
    } else {
#pragma omp parallel for schedule(static) if (n >= KERNEL_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = dy[i] * dact_scalar(k, x[i], y[i]);
    }
}

/* --------------------------------------------------------------- AVX2 */
#if SIMD_AVX2

static inline __attribute__((always_inline)) __m256 act_v8(ActKind k, __m256 x)
{
    const __m256 zero = _mm256_setzero_ps();
    switch (k) {
    case ACT_EXP: return v8_exp(x);
    case ACT_GELU:
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x),
                             v8_erfc(_mm256_mul_ps(x, _mm256_set1_ps(-INV_SQRT2))));
    case ACT_SILU: return _mm256_mul_ps(x, v8_sigmoid(x));
    case ACT_ELU: {
        __m256 neg = v8_expm1(_mm256_min_ps(x, zero));
        return _mm256_blendv_ps(neg, x, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
    }
    case ACT_SIGMOID: return v8_sigmoid(x);
    case ACT_RELU: return _mm256_max_ps(x, zero);
    default: return _mm256_set1_ps(NAN);
    }
}

static inline __attribute__((always_inline)) __m256 dact_v8(ActKind k, __m256 x, __m256 y)
{
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    switch (k) {
    case ACT_EXP: return y;
    case ACT_GELU: {
        __m256 cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f), v8_erfc(_mm256_mul_ps(x, _mm256_set1_ps(-INV_SQRT2))));
        __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(INV_SQRT_2PI),
                                   v8_exp(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x))));
        return _mm256_fmadd_ps(x, pdf, cdf);
    }
    case ACT_SILU: {
        __m256 s = v8_sigmoid(x);
        return _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_sub_ps(one, s), one));
    }
    case ACT_ELU: return _mm256_blendv_ps(_mm256_add_ps(y, one), one, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
    case ACT_SIGMOID: return _mm256_mul_ps(y, _mm256_sub_ps(one, y));
    case ACT_RELU: return _mm256_and_ps(one, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
    default: return _mm256_set1_ps(NAN);
    }
}

/* One loop per kind (k is a compile-time constant inside each), so the
 * switch in act_v8/dact_v8 folds away instead of running per vector. */
#define ACT_BLOCKS(K)                                                                              \
    static void fwd_block_##K(const float *x, float *y, size_t n)                                  \
    {                                                                                              \
        size_t i = 0;                                                                              \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, act_v8(K, _mm256_loadu_ps(x + i)));     \
        if (i < n) {                                                                               \
            __m256i m = simd_tail_mask(n - i);                                                     \
            _mm256_maskstore_ps(y + i, m, act_v8(K, _mm256_maskload_ps(x + i, m)));                \
        }                                                                                          \
    }                                                                                              \
    static void bwd_block_##K(const float *x, const float *y, const float *dy, float *dx, size_t n, \
                              bool acc)                                                            \
    {                                                                                              \
        size_t i = 0;                                                                              \
        if (acc) {                                                                                 \
            for (; i + 8 <= n; i += 8) {                                                           \
                __m256 d = dact_v8(K, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));             \
                _mm256_storeu_ps(dx + i, _mm256_fmadd_ps(_mm256_loadu_ps(dy + i), d, _mm256_loadu_ps(dx + i))); \
            }                                                                                      \
        } else { /* store: dy * d, what the fma gives on a zero dx */                              \
            for (; i + 8 <= n; i += 8) {                                                           \
                __m256 d = dact_v8(K, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));             \
                _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), d));               \
            }                                                                                      \
        }                                                                                          \
        if (i < n) {                                                                               \
            __m256i m = simd_tail_mask(n - i);                                                     \
            __m256 d = dact_v8(K, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m));     \
            __m256 g = _mm256_maskload_ps(dy + i, m);                                              \
            __m256 r = acc ? _mm256_fmadd_ps(g, d, _mm256_maskload_ps(dx + i, m)) : _mm256_mul_ps(g, d); \
            _mm256_maskstore_ps(dx + i, m, r);                                                     \
        }                                                                                          \
    }
ACT_BLOCKS(ACT_EXP)
ACT_BLOCKS(ACT_GELU)
ACT_BLOCKS(ACT_SILU)
ACT_BLOCKS(ACT_ELU)
ACT_BLOCKS(ACT_SIGMOID)
ACT_BLOCKS(ACT_RELU)

typedef void (*FwdBlock)(const float *, float *, size_t);
typedef void (*BwdBlock)(const float *, const float *, const float *, float *, size_t, bool);
static const FwdBlock fwd_blocks[ACT_COUNT] = {
    [ACT_EXP] = fwd_block_ACT_EXP, [ACT_GELU] = fwd_block_ACT_GELU, [ACT_SILU] = fwd_block_ACT_SILU,
    [ACT_ELU] = fwd_block_ACT_ELU, [ACT_SIGMOID] = fwd_block_ACT_SIGMOID, [ACT_RELU] = fwd_block_ACT_RELU};
static const BwdBlock bwd_blocks[ACT_COUNT] = {
    [ACT_EXP] = bwd_block_ACT_EXP, [ACT_GELU] = bwd_block_ACT_GELU, [ACT_SILU] = bwd_block_ACT_SILU,
    [ACT_ELU] = bwd_block_ACT_ELU, [ACT_SIGMOID] = bwd_block_ACT_SIGMOID, [ACT_RELU] = bwd_block_ACT_RELU};

/* softplus needs log1p: it is applied to (rows, heads) sized tensors only
 * (Mamba-2 dt, norm-attention n), so it keeps the scalar kernel. */
void k_act_fwd_avx2(ActKind k, const float *x, float *y, size_t n)
{
    if (k == ACT_SOFTPLUS) {
        k_act_fwd_scalar(k, x, y, n);
        return;
    }
    FwdBlock f = fwd_blocks[k];
    PARALLEL_BLOCKS(n, f(x + off, y + off, len));
}

void k_act_bwd_avx2(ActKind k, const float *x, const float *y, const float *dy, float *dx, size_t n,
                    bool acc)
{
    if (k == ACT_SOFTPLUS) {
        k_act_bwd_scalar(k, x, y, dy, dx, n, acc);
        return;
    }
    BwdBlock f = bwd_blocks[k];
    PARALLEL_BLOCKS(n, f(x + off, y + off, dy + off, dx + off, len, acc));
}

void k_act_fwd(ActKind k, const float *x, float *y, size_t n) { k_act_fwd_avx2(k, x, y, n); }
void k_act_bwd(ActKind k, const float *x, const float *y, const float *dy, float *dx, size_t n, bool acc)
{
    k_act_bwd_avx2(k, x, y, dy, dx, n, acc);
}
#else
void k_act_fwd(ActKind k, const float *x, float *y, size_t n) { k_act_fwd_scalar(k, x, y, n); }
void k_act_bwd(ActKind k, const float *x, const float *y, const float *dy, float *dx, size_t n, bool acc)
{
    k_act_bwd_scalar(k, x, y, dy, dx, n, acc);
}
#endif

/* ---------------------------------------------------------------- ops */

static const char *const act_names[ACT_COUNT] = {"exp", "gelu", "silu", "elu", "softplus", "sigmoid", "relu"};

static void act_backward(Graph *g, TapeEntry *e)
{
    bool fresh;
    float *dx = tensor_grad_fresh(g, e->in[0], &fresh);
    if (dx)
        k_act_bwd((ActKind)e->iarg[0], e->in[0]->data, e->out->data, e->out->grad, dx, e->out->numel,
                  !fresh);
}

static Tensor *activation(Graph *g, Tensor *x, ActKind k)
{
    Tensor *y = tensor_new_like(g, x);
    k_act_fwd(k, x->data, y->data, y->numel);
    if (graph_wants_grad(g, x, NULL, NULL, NULL))
        graph_record(g, act_names[k], act_backward, y, x, NULL, NULL, NULL)->iarg[0] = (int)k;
    return y;
}

Tensor *op_exp(Graph *g, Tensor *x) { return activation(g, x, ACT_EXP); }
Tensor *op_gelu(Graph *g, Tensor *x) { return activation(g, x, ACT_GELU); }
Tensor *op_silu(Graph *g, Tensor *x) { return activation(g, x, ACT_SILU); }
Tensor *op_elu(Graph *g, Tensor *x) { return activation(g, x, ACT_ELU); }
Tensor *op_softplus(Graph *g, Tensor *x) { return activation(g, x, ACT_SOFTPLUS); }
Tensor *op_sigmoid(Graph *g, Tensor *x) { return activation(g, x, ACT_SIGMOID); }
Tensor *op_relu(Graph *g, Tensor *x) { return activation(g, x, ACT_RELU); }

/* ------------------------------------- feature map elu + 1 on a window
 *
 * y = s (elu(x) + 1) on the columns [c0, c0 + C) of x, dx = s dy elu'(x)
 * with elu'(x) = elu(x) + 1 for x <= 0 (recomputed from x).  The
 * operations are those of op_elu, op_add_scalar(., 1) and op_scale(., s)
 * in turn (s = 1 skips the scale), so the values are the same bits. */

static void elu1_fwd_rows_scalar(const float *x, size_t ldx, float *y, size_t rows, size_t C, float s)
{
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) {
            float u = act_scalar(ACT_ELU, x[r * ldx + c]) + 1.0f;
            y[r * C + c] = s == 1.0f ? u : s * u + 0.0f;
        }
}

static void elu1_bwd_rows_scalar(const float *x, size_t ldx, const float *y, const float *dy, float *dx,
                                 size_t lddx, size_t rows, size_t C, float s, bool acc)
{
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) {
            const float xv = x[r * ldx + c];
            const float g = s == 1.0f ? dy[r * C + c] : s * dy[r * C + c] + 0.0f;
            /* s = 1: y = elu(x) + 1, the derivative for x <= 0 */
            const float de = s == 1.0f ? (xv > 0.0f ? 1.0f : y[r * C + c])
                                       : dact_scalar(ACT_ELU, xv, act_scalar(ACT_ELU, xv));
            const float d = g * de;
            float *o = dx + r * lddx + c;
            *o = acc ? *o + d : d;
        }
}

#if SIMD_AVX2
static void elu1_fwd_rows_avx2(const float *x, size_t ldx, float *y, size_t rows, size_t C, float s)
{
    const __m256i tail = simd_tail_mask(C % 8);
    const __m256 one = _mm256_set1_ps(1.0f), vs = _mm256_set1_ps(s), zero = _mm256_setzero_ps();
    const size_t Cv = C & ~(size_t)7;
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * C;
        for (size_t c = 0; c < C; c += 8) {
            const int full = c < Cv;
            const __m256 xv = full ? _mm256_loadu_ps(xr + c) : _mm256_maskload_ps(xr + c, tail);
            __m256 u = _mm256_fmadd_ps(one, act_v8(ACT_ELU, xv), one);
            if (s != 1.0f) u = _mm256_fmadd_ps(vs, u, zero);
            if (full)
                _mm256_storeu_ps(yr + c, u);
            else
                _mm256_maskstore_ps(yr + c, tail, u);
        }
    }
}

/* y: the forward's output; with s = 1 it is elu(x) + 1 itself, the
 * derivative for x <= 0, so nothing is recomputed */
static void elu1_bwd_rows_avx2(const float *x, size_t ldx, const float *y, const float *dy, float *dx,
                               size_t lddx, size_t rows, size_t C, float s, bool acc)
{
    const __m256i tail = simd_tail_mask(C % 8);
    const __m256 vs = _mm256_set1_ps(s), zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const size_t Cv = C & ~(size_t)7;
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx, *yr = y + r * C, *gr = dy + r * C;
        float *o = dx + r * lddx;
        for (size_t c = 0; c < C; c += 8) {
            const int full = c < Cv;
#define LDM(p) (full ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), tail))
            const __m256 xv = LDM(xr + c);
            __m256 g = LDM(gr + c);
            __m256 d;
            if (s != 1.0f) {
                g = _mm256_fmadd_ps(vs, g, zero);
                d = dact_v8(ACT_ELU, xv, act_v8(ACT_ELU, xv));
            } else { /* elu'(x) = 1 for x > 0, y for x <= 0 */
                d = _mm256_blendv_ps(LDM(yr + c), one, _mm256_cmp_ps(xv, zero, _CMP_GT_OQ));
            }
            __m256 v = _mm256_mul_ps(g, d); /* added, not fused: as slice_cols adds it */
            if (acc) v = _mm256_add_ps(LDM(o + c), v);
#undef LDM
            if (full)
                _mm256_storeu_ps(o + c, v);
            else
                _mm256_maskstore_ps(o + c, tail, v);
        }
    }
}
#endif

void k_elu1_cols_fwd_scalar(const float *x, size_t ldx, float *y, size_t rows, size_t C, float s)
{
    elu1_fwd_rows_scalar(x, ldx, y, rows, C, s);
}
void k_elu1_cols_bwd_scalar(const float *x, size_t ldx, const float *y, const float *dy, float *dx, size_t lddx,
                            size_t rows, size_t C, float s, bool acc)
{
    elu1_bwd_rows_scalar(x, ldx, y, dy, dx, lddx, rows, C, s, acc);
}
#if SIMD_AVX2
void k_elu1_cols_fwd_avx2(const float *x, size_t ldx, float *y, size_t rows, size_t C, float s)
{
    elu1_fwd_rows_avx2(x, ldx, y, rows, C, s);
}
void k_elu1_cols_bwd_avx2(const float *x, size_t ldx, const float *y, const float *dy, float *dx, size_t lddx,
                          size_t rows, size_t C, float s, bool acc)
{
    elu1_bwd_rows_avx2(x, ldx, y, dy, dx, lddx, rows, C, s, acc);
}
#define ELU1_IMPL(name) name##_avx2
#else
#define ELU1_IMPL(name) name##_scalar
#endif

/* iarg[0] = c0; farg[0] = s */
static void elu1_cols_backward(Graph *g, TapeEntry *e)
{
    Tensor *x = e->in[0];
    bool fresh;
    float *dx = tensor_grad_fresh(g, x, &fresh);
    if (!dx) return;
    const size_t ldx = (size_t)tensor_cols(x), rows = tensor_rows(x), C = (size_t)tensor_cols(e->out);
    const size_t c0 = (size_t)e->iarg[0];
    if (fresh && C < ldx) { /* zeros outside the window, then the window is written */
#pragma omp parallel for schedule(static) if (rows * ldx >= KERNEL_PAR_MIN)
        for (size_t r = 0; r < rows; r++) {
            memset(dx + r * ldx, 0, c0 * sizeof *dx);
            memset(dx + r * ldx + c0 + C, 0, (ldx - c0 - C) * sizeof *dx);
        }
    }
    ELU1_IMPL(k_elu1_cols_bwd)(x->data + c0, ldx, e->out->data, e->out->grad, dx + c0, ldx, rows, C, e->farg[0],
                               !fresh);
}

Tensor *op_elu1_cols(Graph *g, Tensor *x, int c0, int C, float s)
{
    const int cols = tensor_cols(x);
    if (c0 < 0 || C < 1 || c0 > cols - C) op_shape_error("elu1_cols", "column window outside", x, NULL);
    int shape[TENSOR_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = C;
    Tensor *y = tensor_new(g, x->ndim, shape);
    ELU1_IMPL(k_elu1_cols_fwd)(x->data + c0, (size_t)cols, y->data, tensor_rows(x), (size_t)C, s);
    if (graph_wants_grad(g, x, NULL, NULL, NULL)) {
        TapeEntry *e = graph_record(g, "elu1_cols", elu1_cols_backward, y, x, NULL, NULL, NULL);
        e->iarg[0] = c0;
        e->farg[0] = s;
    }
    return y;
}
