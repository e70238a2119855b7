/* Linear layer and batched matrix product, on top of OpenBLAS sgemm.
 *
 * op_linear: y (M, out) = x (M, in) W^T + b with M = all leading dims of x,
 * one sgemm over all rows (called from the serial region: OpenBLAS uses its
 * own OpenMP threads).  Backward: dx += dy W, dW += dy^T x (sgemm with
 * beta = 1, so gradients accumulate), db += column sums of dy
 * (k_colsum_prod_acc: fixed row blocks summed in block order, deterministic
 * for any thread count).
 *
 * op_bmm: one sgemm per batch matrix, batches split over OpenMP threads
 * (inside a parallel region OpenBLAS runs single-threaded), or one plain
 * sgemm when there is a single batch.
 *
 * Every GEMM goes through sgemm_det (see there), which keeps OpenBLAS
 * results bit-identical for any thread count. */
#include <cblas.h>
#include <string.h>

#include "../ops.h"
#include "k_linear.h"
#include "k_seq.h"

/* ---------------------------------------------------------------- kernels */

void k_fill_rows(float *y, size_t rows, size_t cols, const float *b)
{
#pragma omp parallel for schedule(static) if (rows * cols >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) memcpy(y + r * cols, b, cols * sizeof *y);
}

/* ------------------------------------------------------------------- gemm */

/* Contraction lengths above this are split as k = k0 + r, k0 a multiple of
 * GEMM_K_ALIGN and r < GEMM_K_ALIGN. */
#define GEMM_K_ALIGN 128

/* C (m, n) = beta C + op(A) op(B), row-major, op(A) (m, k), op(B) (k, n).
 *
 * Why not one plain sgemm: OpenBLAS cuts k into blocks of GEMM_Q (448 for
 * sgemm on this machine) and sums the blocks into C one after the other;
 * when the last piece of k lies in (Q, 2Q) it is halved, and the serial
 * driver (1 thread) rounds the half up to the kernel's M unroll while the
 * threaded driver does not.  The block sums then differ, and so do the
 * last bits of C between 1 and 2 threads (measured with k = 449..457,
 * 500, 600, 1200, ...).  With k a multiple of 128 (and Q a multiple of
 * 64, as here) the halves are multiples of 32 and both drivers agree; the
 * remainder r < 128 (< Q) is a single block for both.  This leans on
 * OpenBLAS internals (0.3.21), so the thread-count tests in
 * tests/test_linear.c exercise such k and guard it. */
static void sgemm_det(bool ta, bool tb, int m, int n, int k, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc)
{
    const CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    const int k0 = k > GEMM_K_ALIGN ? k - k % GEMM_K_ALIGN : k;
    cblas_sgemm(CblasRowMajor, TA, TB, m, n, k0, 1.0f, A, lda, B, ldb, beta, C, ldc);
    if (k0 == k) return;
    /* the remaining k - k0 columns of op(A) and rows of op(B) */
    const float *Ar = ta ? A + (size_t)k0 * lda : A + k0;
    const float *Br = tb ? B + k0 : B + (size_t)k0 * ldb;
    cblas_sgemm(CblasRowMajor, TA, TB, m, n, k - k0, 1.0f, Ar, lda, Br, ldb, 1.0f, C, ldc);
}

/* ----------------------------------------------------------------- linear */

static void linear_backward(Graph *g, TapeEntry *e)
{
    Tensor *x = e->in[0], *W = e->in[1], *b = e->in[2];
    const float *dy = e->out->grad;
    const int in = W->shape[1], out = W->shape[0];
    const int M = (int)tensor_rows(x);
    float *dx = tensor_grad(g, x), *dW = tensor_grad(g, W), *db = tensor_grad(g, b);
    /* dx (M, in) += dy (M, out) W (out, in) */
    if (dx)
        sgemm_det(false, false, M, in, out, dy, out, W->data, in, 1.0f, dx, in);
    /* dW (out, in) += dy^T (out, M) x (M, in) */
    if (dW)
        sgemm_det(true, false, out, in, M, dy, out, x->data, in, 1.0f, dW, in);
    /* db += column sums of dy in fixed blocks of rows, each block streamed
     * once (the column-group sum walked all M rows per group of columns) */
    if (db) {
        float *work = graph_scratch(g, k_colsum_prod_work_floats((size_t)M, (size_t)out) * sizeof(float));
        k_colsum_prod_acc(dy, NULL, db, work, (size_t)M, (size_t)out);
    }
}

Tensor *op_linear(Graph *g, Tensor *x, Tensor *W, Tensor *b)
{
    if (W->ndim != 2) op_shape_error("linear", "weight must be 2-D (out, in):", W, NULL);
    const int out = W->shape[0], in = W->shape[1];
    if (tensor_cols(x) != in) op_shape_error("linear", "x's last dim differs from W's in-dim:", x, W);
    if (b && (b->ndim != 1 || b->shape[0] != out))
        op_shape_error("linear", "bias must be (out) for W", b, W);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    Tensor *y = tensor_new(g, x->ndim, shape);
    const int M = (int)tensor_rows(x);
    if (b) k_fill_rows(y->data, (size_t)M, (size_t)out, b->data);
    sgemm_det(false, true, M, out, in, x->data, in, W->data, in, b ? 1.0f : 0.0f, y->data, out);
    if (graph_wants_grad(g, x, W, b, NULL)) graph_record(g, "linear", linear_backward, y, x, W, b, NULL);
    return y;
}

/* -------------------------------------------------------------------- bmm */

/* Shapes of one batch element: op(A) is (m, k), op(B) is (k, n); lda/ldb
 * are the stored row lengths. */
typedef struct BmmDims {
    int batch, m, k, n, lda, ldb;
    bool ta, tb;
} BmmDims;

/* C_i (mc, nc) = beta C_i + op(A_i) op(B_i) for every batch element i,
 * with the given transposes and leading dimensions.  One sgemm per batch;
 * batches go to OpenMP threads (each sgemm single-threaded inside). */
static void gemm_batched(int batch, bool ta, bool tb, int mc, int nc, int kc, const float *A, int lda,
                         size_t sa, const float *B, int ldb, size_t sb, float beta, float *C, size_t sc)
{
    if (batch == 1) {
        sgemm_det(ta, tb, mc, nc, kc, A, lda, B, ldb, beta, C, nc);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < batch; i++)
        sgemm_det(ta, tb, mc, nc, kc, A + (size_t)i * sa, lda, B + (size_t)i * sb, ldb, beta,
                  C + (size_t)i * sc, nc);
}

static void bmm_backward(Graph *g, TapeEntry *e)
{
    Tensor *a = e->in[0], *b = e->in[1];
    const BmmDims d = *(const BmmDims *)e->ctx;
    const float *dC = e->out->grad; /* (m, n) per batch */
    const size_t sa = (size_t)d.m * d.k, sb = (size_t)d.k * d.n, sc = (size_t)d.m * d.n;
    float *da = tensor_grad(g, a), *db = tensor_grad(g, b);
    if (da) {
        if (!d.ta) /* dA (m, k) += dC (m, n) op(B)^T (n, k) */
            gemm_batched(d.batch, false, !d.tb, d.m, d.k, d.n, dC, d.n, sc, b->data, d.ldb, sb, 1.0f, da, sa);
        else /* dA (k, m) += op(B) (k, n) dC^T (n, m) */
            gemm_batched(d.batch, d.tb, true, d.k, d.m, d.n, b->data, d.ldb, sb, dC, d.n, sc, 1.0f, da, sa);
    }
    if (db) {
        if (!d.tb) /* dB (k, n) += op(A)^T (k, m) dC (m, n) */
            gemm_batched(d.batch, !d.ta, false, d.k, d.n, d.m, a->data, d.lda, sa, dC, d.n, sc, 1.0f, db, sb);
        else /* dB (n, k) += dC^T (n, m) op(A) (m, k) */
            gemm_batched(d.batch, true, d.ta, d.n, d.k, d.m, dC, d.n, sc, a->data, d.lda, sa, 1.0f, db, sb);
    }
}

Tensor *op_bmm(Graph *g, Tensor *a, Tensor *b, bool ta, bool tb)
{
    if (a->ndim < 2 || a->ndim != b->ndim) op_shape_error("bmm", "need equal ranks >= 2:", a, b);
    const int nd = a->ndim;
    int batch = 1;
    for (int i = 0; i < nd - 2; i++) {
        if (a->shape[i] != b->shape[i]) op_shape_error("bmm", "leading dims differ:", a, b);
        batch *= a->shape[i];
    }
    const int m = ta ? a->shape[nd - 1] : a->shape[nd - 2];
    const int k = ta ? a->shape[nd - 2] : a->shape[nd - 1];
    const int kb = tb ? b->shape[nd - 1] : b->shape[nd - 2];
    const int n = tb ? b->shape[nd - 2] : b->shape[nd - 1];
    if (k != kb) op_shape_error("bmm", "inner dims differ:", a, b);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[nd - 2] = m;
    shape[nd - 1] = n;
    Tensor *y = tensor_new(g, nd, shape);
    const BmmDims d = {.batch = batch, .m = m, .k = k, .n = n, .lda = ta ? m : k, .ldb = tb ? k : n,
                       .ta = ta, .tb = tb};
    gemm_batched(batch, ta, tb, m, n, k, a->data, d.lda, (size_t)m * k, b->data, d.ldb, (size_t)k * n,
                 0.0f, y->data, (size_t)m * n);
    if (graph_wants_grad(g, a, b, NULL, NULL)) {
        TapeEntry *e = graph_record(g, "bmm", bmm_backward, y, a, b, NULL, NULL);
        BmmDims *saved = graph_scratch(g, sizeof *saved);
        *saved = d;
        e->ctx = saved;
    }
    return y;
}
