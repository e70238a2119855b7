/* Broadcasting a vector over rows (add_cols, mul_cols) and per-head scaling
 * (mul_heads).  Forward and the input-shaped gradients are parallel over
 * rows.  Gradients of the broadcast operand are sums over rows: each fixed
 * block of SEQ_ROW_BLOCK rows is summed (rows in order) into `work`, then
 * the block partials are added in block order (k_colsum_prod_acc), so the sums
 * are bit-identical for any thread count. */
#include "../ops.h"
#include "k_arith.h"
#include "k_seq.h"

static size_t row_blocks(size_t rows) { return (rows + SEQ_ROW_BLOCK - 1) / SEQ_ROW_BLOCK; }

size_t k_colsum_prod_work_floats(size_t rows, size_t C) { return row_blocks(rows) * C; }

/* Phase 2 of k_colsum_prod_acc, shared by both variants: out[c] += sum_blk work[blk][c]. */
static void colsum_reduce_blocks(const float *work, float *out, size_t nblk, size_t C)
{
#pragma omp parallel for schedule(static) if (nblk * C >= KERNEL_PAR_MIN)
    for (size_t c = 0; c < C; c++) {
        float s = 0.0f;
        for (size_t blk = 0; blk < nblk; blk++) s += work[blk * C + c];
        out[c] += s;
    }
}

/* ---------------------------------------------------------------- scalar */

void k_add_cols_scalar(const float *x, const float *v, float *y, size_t rows, size_t C)
{
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) y[r * C + c] = x[r * C + c] + v[c];
}

void k_mul_cols_scalar(const float *x, const float *v, float *y, size_t rows, size_t C)
{
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * v[c];
}

void k_mul_cols_acc_scalar(const float *dy, const float *v, float *dx, size_t rows, size_t C)
{
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) dx[r * C + c] += dy[r * C + c] * v[c];
}

void k_colsum_prod_acc_scalar(const float *a, const float *b, float *out, float *work, size_t rows,
                         size_t C)
{
    const size_t nblk = row_blocks(rows);
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r0 = blk * SEQ_ROW_BLOCK, r1 = r0 + SEQ_ROW_BLOCK < rows ? r0 + SEQ_ROW_BLOCK : rows;
        float *part = work + blk * C;
        for (size_t c = 0; c < C; c++) part[c] = 0.0f;
        for (size_t r = r0; r < r1; r++) {
            if (b)
                for (size_t c = 0; c < C; c++) part[c] += a[r * C + c] * b[r * C + c];
            else
                for (size_t c = 0; c < C; c++) part[c] += a[r * C + c];
        }
    }
    colsum_reduce_blocks(work, out, nblk, C);
}

void k_mul_heads_scalar(const float *x, const float *s, float *y, size_t rows, size_t H,
                        size_t P, int s_per_row)
{
    const size_t C = H * P;
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *sr = s_per_row ? s + r * H : s;
        for (size_t h = 0; h < H; h++)
            for (size_t p = 0; p < P; p++) y[r * C + h * P + p] = x[r * C + h * P + p] * sr[h];
    }
}

void k_mul_heads_acc_scalar(const float *dy, const float *s, float *dx, size_t rows, size_t H,
                            size_t P, int s_per_row)
{
    const size_t C = H * P;
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *sr = s_per_row ? s + r * H : s;
        for (size_t h = 0; h < H; h++)
            for (size_t p = 0; p < P; p++) dx[r * C + h * P + p] += dy[r * C + h * P + p] * sr[h];
    }
}

void k_heads_dot_acc_scalar(const float *a, const float *b, float *out, size_t rows, size_t H,
                            size_t P)
{
    const size_t C = H * P;
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (size_t h = 0; h < H; h++) {
            float acc = 0.0f;
            for (size_t p = 0; p < P; p++) acc += a[r * C + h * P + p] * b[r * C + h * P + p];
            out[r * H + h] += acc;
        }
}

/* ------------------------------------------------------------------ AVX2 */

#if SIMD_AVX2
/* y[i] = OP(x[i], v[i]) over one row of n; tail through the same vector code. */
#define ROW_BINARY(OP, x, v, y, n, tail)                                              \
    do {                                                                              \
        size_t i_ = 0;                                                                \
        for (; i_ + 8 <= (n); i_ += 8)                                                \
            _mm256_storeu_ps((y) + i_, OP(_mm256_loadu_ps((x) + i_), _mm256_loadu_ps((v) + i_))); \
        if (i_ < (n))                                                                 \
            _mm256_maskstore_ps((y) + i_, (tail),                                     \
                                OP(_mm256_maskload_ps((x) + i_, (tail)), _mm256_maskload_ps((v) + i_, (tail)))); \
    } while (0)

void k_add_cols_avx2(const float *x, const float *v, float *y, size_t rows, size_t C)
{
    const __m256i tail = simd_tail_mask(C % 8);
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) ROW_BINARY(_mm256_add_ps, x + r * C, v, y + r * C, C, tail);
}

void k_mul_cols_avx2(const float *x, const float *v, float *y, size_t rows, size_t C)
{
    const __m256i tail = simd_tail_mask(C % 8);
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) ROW_BINARY(_mm256_mul_ps, x + r * C, v, y + r * C, C, tail);
}

/* d += a * b over n floats (FMA). */
static inline void row_fma_acc(const float *a, const float *b, float *d, size_t n, __m256i tail)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i),
                                                _mm256_loadu_ps(d + i)));
    if (i < n)
        _mm256_maskstore_ps(d + i, tail, _mm256_fmadd_ps(_mm256_maskload_ps(a + i, tail),
                                                         _mm256_maskload_ps(b + i, tail),
                                                         _mm256_maskload_ps(d + i, tail)));
}

void k_mul_cols_acc_avx2(const float *dy, const float *v, float *dx, size_t rows, size_t C)
{
    const __m256i tail = simd_tail_mask(C % 8);
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) row_fma_acc(dy + r * C, v, dx + r * C, C, tail);
}

void k_colsum_prod_acc_avx2(const float *a, const float *b, float *out, float *work, size_t rows,
                       size_t C)
{
    const size_t nblk = row_blocks(rows);
    const __m256i tail = simd_tail_mask(C % 8);
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r0 = blk * SEQ_ROW_BLOCK, r1 = r0 + SEQ_ROW_BLOCK < rows ? r0 + SEQ_ROW_BLOCK : rows;
        float *part = work + blk * C;
        for (size_t c = 0; c < C; c++) part[c] = 0.0f;
        for (size_t r = r0; r < r1; r++) {
            if (b)
                row_fma_acc(a + r * C, b + r * C, part, C, tail);
            else
                ROW_BINARY(_mm256_add_ps, part, a + r * C, part, C, tail);
        }
    }
    colsum_reduce_blocks(work, out, nblk, C);
}

/* d = x * s (acc = 0) or d += x * s (acc = 1) over one head of P floats. */
static inline void head_scale(const float *x, float s, float *d, size_t P, __m256i tail, int acc)
{
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= P; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(d + i, acc ? _mm256_fmadd_ps(xv, vs, _mm256_loadu_ps(d + i)) : _mm256_mul_ps(xv, vs));
    }
    if (i < P) {
        __m256 xv = _mm256_maskload_ps(x + i, tail);
        _mm256_maskstore_ps(d + i, tail,
                            acc ? _mm256_fmadd_ps(xv, vs, _mm256_maskload_ps(d + i, tail)) : _mm256_mul_ps(xv, vs));
    }
}

void k_mul_heads_avx2(const float *x, const float *s, float *y, size_t rows, size_t H, size_t P,
                      int s_per_row)
{
    const size_t C = H * P;
    const __m256i tail = simd_tail_mask(P % 8);
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *sr = s_per_row ? s + r * H : s;
        for (size_t h = 0; h < H; h++) head_scale(x + r * C + h * P, sr[h], y + r * C + h * P, P, tail, 0);
    }
}

void k_mul_heads_acc_avx2(const float *dy, const float *s, float *dx, size_t rows, size_t H,
                          size_t P, int s_per_row)
{
    const size_t C = H * P;
    const __m256i tail = simd_tail_mask(P % 8);
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *sr = s_per_row ? s + r * H : s;
        for (size_t h = 0; h < H; h++) head_scale(dy + r * C + h * P, sr[h], dx + r * C + h * P, P, tail, 1);
    }
}

void k_heads_dot_acc_avx2(const float *a, const float *b, float *out, size_t rows, size_t H,
                          size_t P)
{
    const size_t C = H * P;
    const __m256i tail = simd_tail_mask(P % 8);
#pragma omp parallel for schedule(static) if (rows * C >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (size_t h = 0; h < H; h++) {
            const float *ah = a + r * C + h * P, *bh = b + r * C + h * P;
            __m256 acc = _mm256_setzero_ps();
            size_t i = 0;
            for (; i + 8 <= P; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(ah + i), _mm256_loadu_ps(bh + i), acc);
            if (i < P)
                acc = _mm256_fmadd_ps(_mm256_maskload_ps(ah + i, tail), _mm256_maskload_ps(bh + i, tail), acc);
            out[r * H + h] += simd_hsum(acc);
        }
}
#undef ROW_BINARY
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void k_add_cols(const float *x, const float *v, float *y, size_t rows, size_t C)
{
    DISPATCH(k_add_cols, x, v, y, rows, C);
}
void k_mul_cols(const float *x, const float *v, float *y, size_t rows, size_t C)
{
    DISPATCH(k_mul_cols, x, v, y, rows, C);
}
void k_mul_cols_acc(const float *dy, const float *v, float *dx, size_t rows, size_t C)
{
    DISPATCH(k_mul_cols_acc, dy, v, dx, rows, C);
}
void k_colsum_prod_acc(const float *a, const float *b, float *out, float *work, size_t rows, size_t C)
{
    DISPATCH(k_colsum_prod_acc, a, b, out, work, rows, C);
}
void k_mul_heads(const float *x, const float *s, float *y, size_t rows, size_t H, size_t P,
                 int s_per_row)
{
    DISPATCH(k_mul_heads, x, s, y, rows, H, P, s_per_row);
}
void k_mul_heads_acc(const float *dy, const float *s, float *dx, size_t rows, size_t H, size_t P,
                     int s_per_row)
{
    DISPATCH(k_mul_heads_acc, dy, s, dx, rows, H, P, s_per_row);
}
void k_heads_dot_acc(const float *a, const float *b, float *out, size_t rows, size_t H, size_t P)
{
    DISPATCH(k_heads_dot_acc, a, b, out, rows, H, P);
}

/* -------------------------------------------------------------------- ops */

static float *colsum_work(Graph *g, size_t rows, size_t C)
{
    return graph_scratch(g, k_colsum_prod_work_floats(rows, C) * sizeof(float));
}

static void check_cols_vector(const char *op, Tensor *x, Tensor *v)
{
    if (v->numel != (size_t)tensor_cols(x))
        op_shape_error(op, "v must hold cols(x) elements (x, v):", x, v);
}

static void add_cols_backward(Graph *g, TapeEntry *e)
{
    Tensor *x = e->in[0], *v = e->in[1];
    const float *dy = e->out->grad;
    float *dv = tensor_grad(g, v);
    const size_t rows = tensor_rows(x), C = (size_t)tensor_cols(x);
    if (dv) k_colsum_prod_acc(dy, NULL, dv, colsum_work(g, rows, C), rows, C);
    /* dx += dy; dy itself when x has no gradient yet (after dv: adopting
     * dy hands it over for good) */
    if (x->requires_grad && !tensor_grad_adopt(g, x, (float *)dy)) k_acc(tensor_grad(g, x), dy, x->numel);
}

Tensor *op_add_cols(Graph *g, Tensor *x, Tensor *v)
{
    check_cols_vector("add_cols", x, v);
    Tensor *y = tensor_new_like(g, x);
    k_add_cols(x->data, v->data, y->data, tensor_rows(x), (size_t)tensor_cols(x));
    if (graph_wants_grad(g, x, v, NULL, NULL)) graph_record(g, "add_cols", add_cols_backward, y, x, v, NULL, NULL);
    return y;
}

static void mul_cols_backward(Graph *g, TapeEntry *e)
{
    Tensor *x = e->in[0], *v = e->in[1];
    const float *dy = e->out->grad;
    bool fresh;
    float *dx = tensor_grad_fresh(g, x, &fresh), *dv = tensor_grad(g, v);
    const size_t rows = tensor_rows(x), C = (size_t)tensor_cols(x);
    if (dx && fresh)
        k_mul_cols(dy, v->data, dx, rows, C); /* a fresh gradient is written */
    else if (dx)
        k_mul_cols_acc(dy, v->data, dx, rows, C);
    if (dv) k_colsum_prod_acc(dy, x->data, dv, colsum_work(g, rows, C), rows, C);
}

Tensor *op_mul_cols(Graph *g, Tensor *x, Tensor *v)
{
    check_cols_vector("mul_cols", x, v);
    Tensor *y = tensor_new_like(g, x);
    k_mul_cols(x->data, v->data, y->data, tensor_rows(x), (size_t)tensor_cols(x));
    if (graph_wants_grad(g, x, v, NULL, NULL)) graph_record(g, "mul_cols", mul_cols_backward, y, x, v, NULL, NULL);
    return y;
}

/* iarg[0] = H, iarg[1] = s_per_row */
static void mul_heads_backward(Graph *g, TapeEntry *e)
{
    Tensor *x = e->in[0], *s = e->in[1];
    const float *dy = e->out->grad;
    const size_t rows = tensor_rows(x), H = (size_t)e->iarg[0], P = (size_t)tensor_cols(x) / H;
    const int per_row = e->iarg[1];
    bool fresh;
    float *dx = tensor_grad_fresh(g, x, &fresh), *ds = tensor_grad(g, s);
    if (dx && fresh)
        k_mul_heads(dy, s->data, dx, rows, H, P, per_row); /* a fresh gradient is written */
    else if (dx)
        k_mul_heads_acc(dy, s->data, dx, rows, H, P, per_row);
    if (!ds) return;
    if (per_row) {
        k_heads_dot_acc(dy, x->data, ds, rows, H, P);
    } else {
        /* per-row head dots, then a fixed-order sum over rows */
        float *t = graph_scratch(g, rows * H * sizeof(float));
        for (size_t i = 0; i < rows * H; i++) t[i] = 0.0f;
        k_heads_dot_acc(dy, x->data, t, rows, H, P);
        k_colsum_prod_acc(t, NULL, ds, colsum_work(g, rows, H), rows, H);
    }
}

Tensor *op_mul_heads(Graph *g, Tensor *x, Tensor *s)
{
    const size_t H = (size_t)tensor_cols(s), C = (size_t)tensor_cols(x), rows = tensor_rows(x);
    if (C % H != 0) op_shape_error("mul_heads", "cols(x) must be a multiple of H = cols(s) (x, s):", x, s);
    int per_row;
    if (tensor_rows(s) == rows)
        per_row = 1;
    else if (s->numel == H)
        per_row = 0;
    else
        op_shape_error("mul_heads", "s must be (rows(x), H) or (H) (x, s):", x, s);
    Tensor *y = tensor_new_like(g, x);
    k_mul_heads(x->data, s->data, y->data, rows, H, C / H, per_row);
    if (graph_wants_grad(g, x, s, NULL, NULL)) {
        TapeEntry *e = graph_record(g, "mul_heads", mul_heads_backward, y, x, s, NULL, NULL);
        e->iarg[0] = (int)H;
        e->iarg[1] = per_row;
    }
    return y;
}
