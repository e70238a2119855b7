/* Kernel benchmarks: the element-wise, normalisation and sequence kernels
 * the models spend their non-GEMM time in, and the sgemm shapes the models
 * issue.  Memory-bound kernels report GB/s (bytes that must cross the
 * memory bus at least once), GEMMs GFLOP/s; bench/run.sh puts them next to
 * the machine limits from bench/machine.c. */
#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "../src/graph.h"
#include "../src/ops.h"
#include "../src/threads.h"
#include "benchutil.h"

static Graph G;

static Tensor *wrap(float *d, int ndim, const int *shape, bool grad)
{
    Tensor *t = tensor_wrap(&G, d, ndim, shape);
    t->requires_grad = grad;
    return t;
}

static void report(const char *name, const char *shape, double sec, double bytes, double flops)
{
    if (flops > 0)
        printf("kernel %-28s %-22s %9.3f ms %8.1f GFLOP/s\n", name, shape, sec * 1e3, flops / sec * 1e-9);
    else
        printf("kernel %-28s %-22s %9.3f ms %8.1f GB/s\n", name, shape, sec * 1e3, bytes / sec * 1e-9);
}

/* forward (and forward+backward) of a unary op on rows x cols */
typedef Tensor *(*UnaryOp)(Graph *, Tensor *);

static void bench_unary(const char *name, UnaryOp op, int rows, int cols)
{
    size_t n = (size_t)rows * cols;
    float *x = bench_alloc(n), *dy = bench_alloc(n);
    char shape[64], nm[64];
    snprintf(shape, sizeof shape, "%dx%d", rows, cols);
    double t;
    BENCH_MEDIAN(15, t, {
        graph_begin(&G, 0, false, false);
        op(&G, wrap(x, 2, (int[]){rows, cols}, false));
    });
    snprintf(nm, sizeof nm, "%s fwd", name);
    report(nm, shape, t, 2.0 * n * 4, 0);
    BENCH_MEDIAN(15, t, {
        graph_begin(&G, 0, true, true);
        Tensor *xt = wrap(x, 2, (int[]){rows, cols}, true);
        Tensor *y = op(&G, xt);
        graph_backward_from(&G, y, dy);
    });
    snprintf(nm, sizeof nm, "%s fwd+bwd", name);
    /* fwd: read x, write y; bwd: read x (or y), dy, read+write dx */
    report(nm, shape, t, 6.0 * n * 4, 0);
    free(x), free(dy);
}

static Tensor *ln_op(Graph *g, Tensor *x)
{
    static float gamma[4096], beta[4096];
    int c = tensor_cols(x);
    for (int i = 0; i < c; i++) gamma[i] = 1.0f, beta[i] = 0.0f;
    Tensor *gt = wrap(gamma, 1, &c, false), *bt = wrap(beta, 1, &c, false);
    return op_layernorm(g, x, gt, bt, 1e-5f);
}

static Tensor *conv_op(Graph *g, Tensor *x)
{
    static float w[4096 * 4], b[4096];
    int c = tensor_cols(x);
    for (int i = 0; i < 4 * c; i++) w[i] = 0.25f;
    Tensor *wt = wrap(w, 2, (int[]){c, 4}, false), *bt = wrap(b, 1, &c, false);
    /* (B, L, C) with L = 512 */
    int rows = (int)tensor_rows(x);
    Tensor *x3 = tensor_reshape(g, x, 3, (int[]){rows / 512, 512, c});
    return op_conv1d_causal(g, x3, wt, bt);
}

static void bench_sgemm(const char *name, int m, int n, int k, int transb)
{
    float *a = bench_alloc((size_t)m * k), *b = bench_alloc((size_t)k * n), *c = bench_alloc((size_t)m * n);
    double t;
    BENCH_MEDIAN(10, t, cblas_sgemm(CblasRowMajor, CblasNoTrans, transb ? CblasTrans : CblasNoTrans, m, n, k,
                                    1.0f, a, k, b, transb ? k : n, 0.0f, c, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%dx%d", m, n, k);
    report(name, shape, t, 0, 2.0 * m * n * k);
    free(a), free(b), free(c);
}

static void bench_xent(int rows, int vocab)
{
    float *x = bench_alloc((size_t)rows * vocab);
    int32_t *lab = malloc(sizeof(int32_t) * rows);
    for (int i = 0; i < rows; i++) lab[i] = (i * 37) % vocab;
    double t;
    char shape[64];
    snprintf(shape, sizeof shape, "%dx%d", rows, vocab);
    BENCH_MEDIAN(10, t, {
        graph_begin(&G, 0, true, true);
        Tensor *l = op_cross_entropy(&G, wrap(x, 2, (int[]){rows, vocab}, true), lab, NULL);
        graph_backward(&G, l);
    });
    report("cross_entropy fwd+bwd", shape, t, 3.0 * rows * vocab * 4, 0);
    free(x), free(lab);
}

int main(int argc, char **argv)
{
    threads_pin_blas_kernel(argv);
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    threads_set(threads);
    graph_init(&G, 0, 1);
    printf("# kernels, %d thread(s)\n", threads);
    /* paper shape activations: B*L = 64*512 rows, d = 128 */
    bench_unary("layernorm", ln_op, 32768, 128);
    bench_unary("softmax rows", op_softmax, 8192, 512);
    bench_unary("gelu", op_gelu, 32768, 128);
    bench_unary("silu", op_silu, 32768, 384);
    bench_unary("conv1d causal K=4", conv_op, 32768, 384);
    bench_xent(4096, 8192);
    /* GEMMs of a paper-shape step (B*L = 32768 rows, d = 128) */
    bench_sgemm("sgemm Wqkv fwd", 32768, 384, 128, 1);
    bench_sgemm("sgemm out_proj fwd", 32768, 128, 128, 1);
    bench_sgemm("sgemm decoder (64 rows/seq)", 4096, 8192, 128, 1);
    bench_sgemm("sgemm attention tile", 64, 64, 128, 1);
    graph_free(&G);
    return 0;
}
