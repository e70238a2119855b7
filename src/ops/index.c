/* Indexing ops: embedding lookup, row gather, mean over time, column slice.
 *
 * The scatter-adds of the embedding and gather backward are deterministic:
 * every destination row is owned by one thread (threads split the
 * destination rows into contiguous ranges, and each scans all sources in
 * order), so a row receives its contributions in source order whatever the
 * thread count. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops.h"
#include "parallel.h"

/* ---------------------------------------------------------------- helpers */

static inline void add_row(float *restrict d, const float *restrict s, size_t n)
{
    for (size_t j = 0; j < n; j++) d[j] += s[j];
}

/* dst (nrows, cols): dst[idx[i]] += src[i] for i = 0 .. n-1, in order of i
 * for every destination row.  idx must be in [0, nrows). */
static void scatter_add_rows(float *dst, size_t nrows, size_t cols, const int32_t *idx, size_t n,
                             const float *src)
{
#pragma omp parallel if (nrows > 1 && n * cols >= KERNEL_PAR_MIN)
    {
        const size_t nt = (size_t)omp_get_num_threads(), tid = (size_t)omp_get_thread_num();
        const size_t lo = nrows * tid / nt, hi = nrows * (tid + 1) / nt;
        for (size_t i = 0; i < n; i++) {
            size_t r = (size_t)idx[i];
            if (r >= lo && r < hi) add_row(dst + r * cols, src + i * cols, cols);
        }
    }
}

/* dst[i] = src[idx[i]] (rows of `cols` floats). */
static void gather_rows(float *dst, const float *src, size_t cols, const int32_t *idx, size_t n)
{
#pragma omp parallel for schedule(static) if (n * cols >= KERNEL_PAR_MIN)
    for (size_t i = 0; i < n; i++) memcpy(dst + i * cols, src + (size_t)idx[i] * cols, cols * sizeof *dst);
}

/* Abort unless every idx[i] lies in [0, limit). */
static void check_indices(const char *op, const char *what, const int32_t *idx, size_t n, size_t limit)
{
    for (size_t i = 0; i < n; i++) {
        if (idx[i] < 0 || (size_t)idx[i] >= limit) {
            fprintf(stderr, "seqeig: %s: %s %d at position %zu is outside [0, %zu)\n", op, what, idx[i], i,
                    limit);
            abort();
        }
    }
}

/* Saved by embedding and gather_rows for backward. */
typedef struct IndexCtx {
    const int32_t *idx; /* caller's array, valid until backward has run */
    size_t n;           /* number of indices */
    size_t nrows;       /* rows of the source viewed as (nrows, cols) */
} IndexCtx;

static void index_backward(Graph *g, TapeEntry *e)
{
    const IndexCtx *c = e->ctx;
    float *dsrc = tensor_grad(g, e->in[0]);
    if (!dsrc) return;
    const size_t cols = (size_t)tensor_cols(e->in[0]);
    scatter_add_rows(dsrc, c->nrows, cols, c->idx, c->n, e->out->grad);
}

static void record_index(Graph *g, const char *name, Tensor *y, Tensor *src, const int32_t *idx, size_t n)
{
    if (!graph_wants_grad(g, src, NULL, NULL, NULL)) return;
    TapeEntry *e = graph_record(g, name, index_backward, y, src, NULL, NULL, NULL);
    IndexCtx *c = graph_scratch(g, sizeof *c);
    c->idx = idx;
    c->n = n;
    c->nrows = tensor_rows(src);
    e->ctx = c;
}

/* -------------------------------------------------------------- embedding */

Tensor *op_embedding(Graph *g, Tensor *W, const int32_t *ids, int ndim, const int *shape)
{
    if (W->ndim != 2) op_shape_error("embedding", "weight must be 2-D (V, d):", W, NULL);
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS - 1) {
        fprintf(stderr, "seqeig: embedding: ids must have 1..%d dims, got %d\n", TENSOR_MAX_DIMS - 1, ndim);
        abort();
    }
    int oshape[TENSOR_MAX_DIMS];
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) {
            fprintf(stderr, "seqeig: embedding: ids dimension %d has size %d\n", i, shape[i]);
            abort();
        }
        oshape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    const int d = W->shape[1];
    oshape[ndim] = d;
    check_indices("embedding", "token id", ids, n, (size_t)W->shape[0]);
    Tensor *y = tensor_new(g, ndim + 1, oshape);
    gather_rows(y->data, W->data, (size_t)d, ids, n);
    record_index(g, "embedding", y, W, ids, n);
    return y;
}

/* ------------------------------------------------------------ gather_rows */

Tensor *op_gather_rows(Graph *g, Tensor *x, const int32_t *rows, int n)
{
    if (n < 1) {
        fprintf(stderr, "seqeig: gather_rows: need at least one row, got %d\n", n);
        abort();
    }
    const int cols = tensor_cols(x);
    check_indices("gather_rows", "row", rows, (size_t)n, tensor_rows(x));
    Tensor *y = tensor_new(g, 2, (int[]){n, cols});
    gather_rows(y->data, x->data, (size_t)cols, rows, (size_t)n);
    record_index(g, "gather_rows", y, x, rows, (size_t)n);
    return y;
}

/* -------------------------------------------------------------- mean_time */

/* Saved for backward: per batch row the number of valid steps (0 for a row
 * without any, which gets no gradient), and a copy of the mask (NULL when
 * none was given). */
typedef struct MeanTimeCtx {
    float *count; /* (B): valid steps per batch row */
    float *mask;  /* (B, L) copy, or NULL */
} MeanTimeCtx;

static void mean_time_backward(Graph *g, TapeEntry *e)
{
    float *dx = tensor_grad(g, e->in[0]);
    if (!dx) return;
    const MeanTimeCtx *c = e->ctx;
    const Tensor *x = e->in[0];
    const int B = x->shape[0], L = x->shape[1], d = x->shape[2];
    const float *dy = e->out->grad;
#pragma omp parallel for schedule(static) if (x->numel >= KERNEL_PAR_MIN)
    for (int r = 0; r < B * L; r++) {
        const int b = r / L;
        if (c->count[b] == 0.0f || (c->mask && c->mask[r] == 0.0f)) continue;
        const float cnt = c->count[b];
        float *dxr = dx + (size_t)r * d;
        const float *dyr = dy + (size_t)b * d;
        for (int j = 0; j < d; j++) dxr[j] += dyr[j] / cnt;
    }
}

Tensor *op_mean_time(Graph *g, Tensor *x, const float *mask)
{
    if (x->ndim != 3) op_shape_error("mean_time", "x must be (B, L, d):", x, NULL);
    const int B = x->shape[0], L = x->shape[1], d = x->shape[2];
    float *count = graph_scratch(g, (size_t)B * sizeof *count);
    for (int b = 0; b < B; b++) {
        int n = L;
        if (mask) {
            n = 0;
            for (int t = 0; t < L; t++) n += mask[(size_t)b * L + t] != 0.0f;
        }
        count[b] = (float)n;
    }
    Tensor *y = tensor_new(g, 2, (int[]){B, d});
#pragma omp parallel for schedule(static) if (x->numel >= KERNEL_PAR_MIN)
    for (int b = 0; b < B; b++) {
        float *yr = y->data + (size_t)b * d;
        memset(yr, 0, (size_t)d * sizeof *yr);
        if (count[b] == 0.0f) continue;
        for (int t = 0; t < L; t++) {
            if (mask && mask[(size_t)b * L + t] == 0.0f) continue;
            add_row(yr, x->data + ((size_t)b * L + t) * d, (size_t)d);
        }
        for (int j = 0; j < d; j++) yr[j] /= count[b];
    }
    if (graph_wants_grad(g, x, NULL, NULL, NULL)) {
        TapeEntry *e = graph_record(g, "mean_time", mean_time_backward, y, x, NULL, NULL, NULL);
        MeanTimeCtx *c = graph_scratch(g, sizeof *c);
        c->count = count;
        c->mask = NULL;
        if (mask) {
            c->mask = graph_scratch(g, (size_t)B * L * sizeof *c->mask);
            memcpy(c->mask, mask, (size_t)B * L * sizeof *c->mask);
        }
        e->ctx = c;
    }
    return y;
}

/* ------------------------------------------------------------- slice_cols */

/* A fresh gradient of x is written row by row in one pass (the slice's
 * columns from dy, zeros elsewhere) instead of zero-filled and then added
 * into. */
static void slice_cols_backward(Graph *g, TapeEntry *e)
{
    bool fresh;
    float *dx = tensor_grad_fresh(g, e->in[0], &fresh);
    if (!dx) return;
    const size_t cols = (size_t)tensor_cols(e->in[0]), rows = tensor_rows(e->in[0]);
    const size_t start = (size_t)e->iarg[0], len = (size_t)e->iarg[1];
    const float *dy = e->out->grad;
    if (fresh) {
#pragma omp parallel for schedule(static) if (rows * cols >= KERNEL_PAR_MIN)
        for (size_t r = 0; r < rows; r++) {
            float *d = dx + r * cols;
            memset(d, 0, start * sizeof *d);
            memcpy(d + start, dy + r * len, len * sizeof *d);
            memset(d + start + len, 0, (cols - start - len) * sizeof *d);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (rows * len >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) add_row(dx + r * cols + start, dy + r * len, len);
}

Tensor *op_slice_cols(Graph *g, Tensor *x, int start, int len)
{
    const int cols = tensor_cols(x);
    if (start < 0 || len < 1 || start > cols - len) {
        char what[96];
        snprintf(what, sizeof what, "columns [%d, %d) outside the last dim of", start, start + len);
        op_shape_error("slice_cols", what, x, NULL);
    }
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = len;
    Tensor *y = tensor_new(g, x->ndim, shape);
    const size_t rows = tensor_rows(x);
#pragma omp parallel for schedule(static) if (rows * (size_t)len >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        memcpy(y->data + r * len, x->data + r * cols + start, (size_t)len * sizeof *y->data);
    if (graph_wants_grad(g, x, NULL, NULL, NULL)) {
        TapeEntry *e = graph_record(g, "slice_cols", slice_cols_backward, y, x, NULL, NULL, NULL);
        e->iarg[0] = start;
        e->iarg[1] = len;
    }
    return y;
}
