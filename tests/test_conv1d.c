#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "../src/ops/k_seq.h"
#include "testutil.h"

/* unit roundoff of float32 */
#define U32 0x1.0p-24

/* y[b,t,c] = bias[c] + sum_j w[c,j] x[b,t-K+1+j,c], in double, w in (C, K) layout. */
static void conv_ref(const float *x, const float *w, const float *bias, double *y, int B, int L,
                     int C, int K)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++)
            for (int c = 0; c < C; c++) {
                double acc = bias ? bias[c] : 0.0;
                for (int j = 0; j < K; j++) {
                    int s = t - K + 1 + j;
                    if (s >= 0) acc += (double)w[c * K + j] * x[((size_t)b * L + s) * C + c];
                }
                y[((size_t)b * L + t) * C + c] = acc;
            }
}

static void transpose_ck(const float *w, float *wt, int C, int K)
{
    for (int c = 0; c < C; c++)
        for (int j = 0; j < K; j++) wt[j * C + c] = w[c * K + j];
}

START_TEST(test_conv1d_matches_pytorch_fixture)
{
    /* torch.nn.functional.conv1d(x.transpose(1,2), w (C,1,K), b, padding=K-1,
     * groups=C)[..., :L].transpose(1,2) with B=1, L=5, C=2, K=3 (torch 1.13);
     * all values are exact in float32. */
    float xd[] = {1, -2, 0.5f, 3, -1, 1, 2, 0, 4, -0.5f};
    float wd[] = {1, -1, 0.5f, 2, 0.25f, -3};
    float bd[] = {0.5f, -1};
    const float expect[] = {1, 5, -0.25f, -10.5f, 0.5f, -7.25f, 3, 5.25f, -0.5f, 2.5f};
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    Tensor *x = tensor_wrap(&g, xd, 3, (int[]){1, 5, 2});
    Tensor *w = tensor_wrap(&g, wd, 3, (int[]){2, 1, 3});
    Tensor *b = tensor_wrap(&g, bd, 1, (int[]){2});
    Tensor *y = op_conv1d_causal(&g, x, w, b);
    ck_assert_int_eq(y->ndim, 3);
    ck_assert_int_eq(y->shape[1], 5);
    ck_assert_int_eq(y->shape[2], 2);
    for (int i = 0; i < 10; i++) ck_assert_float_eq(y->data[i], expect[i]);
    graph_free(&g);
}
END_TEST

START_TEST(test_conv1d_forward_matches_plain_loops)
{
    const int Ks[] = {1, 2, 4}, Cs[] = {1, 7, 8, 9, 33}, Ls[] = {1, 3, 10};
    const int B = 2;
    Graph g;
    graph_init(&g, 0, 1);
    for (int ik = 0; ik < 3; ik++)
        for (int ic = 0; ic < 5; ic++)
            for (int il = 0; il < 3; il++)
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    int K = Ks[ik], C = Cs[ic], L = Ls[il];
                    uint64_t seed = (uint64_t)(100 * ik + 10 * ic + il);
                    Tensor *x = test_tensor(3, (int[]){B, L, C}, false);
                    Tensor *w = test_tensor(2, (int[]){C, K}, false);
                    Tensor *b = test_tensor(1, (int[]){C}, false);
                    test_fill_uniform(x->data, x->numel, seed, -1, 1);
                    test_fill_uniform(w->data, w->numel, seed + 1000, -1, 1);
                    test_fill_uniform(b->data, b->numel, seed + 2000, -1, 1);
                    graph_begin(&g, 0, false, false);
                    Tensor *y = op_conv1d_causal(&g, x, w, with_bias ? b : NULL);
                    double *ref = malloc(x->numel * sizeof *ref);
                    float *reff = malloc(x->numel * sizeof *reff);
                    conv_ref(x->data, w->data, with_bias ? b->data : NULL, ref, B, L, C, K);
                    for (size_t i = 0; i < x->numel; i++) reff[i] = (float)ref[i];
                    /* at most K+1 = 5 terms of size <= 1: float32 error <= 5 * 5 * 2^-24 = 1.5e-6 */
                    ck_assert_close(y->data, reff, x->numel, 2e-6, 0, "conv1d forward");
                    free(ref), free(reff);
                    test_tensor_free(x), test_tensor_free(w), test_tensor_free(b);
                }
    graph_free(&g);
}
END_TEST

typedef struct ConvCase {
    int with_bias;
} ConvCase;

static Tensor *fwd_conv(Graph *g, Tensor **in, void *ctx)
{
    const ConvCase *c = ctx;
    return op_conv1d_causal(g, in[0], in[1], c->with_bias ? in[2] : NULL);
}

START_TEST(test_conv1d_gradients_match_finite_differences)
{
    /* (B, L, C, K): channel tails, L < K, K = 1, several batches */
    const int cases[][4] = {{1, 1, 1, 1}, {2, 3, 7, 4}, {2, 6, 9, 4}, {1, 5, 8, 2}, {3, 2, 3, 3}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            int B = cases[s][0], L = cases[s][1], C = cases[s][2], K = cases[s][3];
            Tensor *x = test_tensor(3, (int[]){B, L, C}, true);
            Tensor *w = test_tensor(3, (int[]){C, 1, K}, true);
            Tensor *b = test_tensor(1, (int[]){C}, true);
            test_fill_uniform(x->data, x->numel, 10 + s, -1, 1);
            test_fill_uniform(w->data, w->numel, 20 + s, -1, 1);
            test_fill_uniform(b->data, b->numel, 30 + s, -1, 1);
            ConvCase cc = {with_bias};
            ck_assert(gradcheck("conv1d", fwd_conv, &cc, (Tensor *[]){x, w, b}, with_bias ? 3 : 2,
                                GRADCHECK_DEFAULTS));
            test_tensor_free(x), test_tensor_free(w), test_tensor_free(b);
        }
}
END_TEST

/* got within the worst-case float32 bound of a blocked sum:
 * |got - ref| <= (SEQ_ROW_BLOCK + nblk + 2) u sum|terms| */
static void check_blocked_sum(float got, double ref, double sum_abs, size_t nblk, const char *what)
{
    double bound = (SEQ_ROW_BLOCK + (double)nblk + 2) * U32 * sum_abs + 1e-30;
    ck_assert_msg(fabs((double)got - ref) <= bound, "%s: %.9g vs %.9g (bound %.3g)", what, got, ref,
                  bound);
}

/* Kernels directly (scalar, then dispatched) against double sums, on a
 * shape with several row blocks, a channel tail and a long kernel (K = 10). */
static void check_backward_kernels(int use_scalar)
{
    const int B = 3, L = 70, C = 20, K = 10;
    const size_t n = (size_t)B * L * C, nblk = ((size_t)B * L + SEQ_ROW_BLOCK - 1) / SEQ_ROW_BLOCK;
    float *x = malloc(n * 4), *dy = malloc(n * 4), *w = malloc((size_t)C * K * 4), *wt = malloc((size_t)C * K * 4);
    float *dx = calloc(n, 4), *dw = calloc((size_t)C * K, 4), *db = calloc((size_t)C, 4);
    float *work = malloc(k_conv1d_work_floats(B, L, C, K) * 4);
    test_fill_uniform(x, n, 1, -1, 1);
    test_fill_uniform(dy, n, 2, -1, 1);
    test_fill_uniform(w, (size_t)C * K, 3, -1, 1);
    transpose_ck(w, wt, C, K);
    if (use_scalar) {
        k_conv1d_bwd_x_scalar(dy, wt, dx, B, L, C, K);
        k_conv1d_bwd_w_scalar(x, dy, dw, db, work, B, L, C, K);
    } else {
        k_conv1d_bwd_x(dy, wt, dx, B, L, C, K);
        k_conv1d_bwd_w(x, dy, dw, db, work, B, L, C, K);
    }
    for (int b = 0; b < B; b++)
        for (int s = 0; s < L; s++)
            for (int c = 0; c < C; c++) {
                double acc = 0;
                for (int j = 0; j < K; j++) {
                    int t = s + K - 1 - j;
                    if (t < L) acc += (double)w[c * K + j] * dy[((size_t)b * L + t) * C + c];
                }
                float got = dx[((size_t)b * L + s) * C + c];
                /* <= K = 10 terms of size <= 1 */
                ck_assert_msg(fabs(got - acc) <= 10 * 10 * U32, "dx %.9g vs %.9g", got, acc);
            }
    for (int c = 0; c < C; c++) {
        double sb = 0, sba = 0;
        for (size_t r = 0; r < (size_t)B * L; r++) sb += dy[r * C + c], sba += fabs(dy[r * C + c]);
        check_blocked_sum(db[c], sb, sba, nblk, "db");
        for (int j = 0; j < K; j++) {
            double sw = 0, swa = 0;
            for (int b = 0; b < B; b++)
                for (int t = K - 1 - j; t < L; t++) {
                    double v = (double)dy[((size_t)b * L + t) * C + c] * x[((size_t)b * L + t - K + 1 + j) * C + c];
                    sw += v, swa += fabs(v);
                }
            check_blocked_sum(dw[c * K + j], sw, swa, nblk, "dw");
        }
    }
    /* bias only: dw untouched, db accumulates a second time */
    float db2[20];
    memcpy(db2, db, sizeof db2);
    if (use_scalar)
        k_conv1d_bwd_w_scalar(x, dy, NULL, db2, work, B, L, C, K);
    else
        k_conv1d_bwd_w(x, dy, NULL, db2, work, B, L, C, K);
    for (int c = 0; c < C; c++) ck_assert_float_eq(db2[c], db[c] + db[c]);
    free(x), free(dy), free(w), free(wt), free(dx), free(dw), free(db), free(work);
}

START_TEST(test_conv1d_backward_kernels_match_double_sums)
{
    check_backward_kernels(1);
    check_backward_kernels(0);
}
END_TEST

START_TEST(test_conv1d_avx2_matches_scalar)
{
#if SIMD_AVX2
    const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 7, 4}, {2, 10, 9, 2}, {3, 50, 33, 4}, {2, 9, 17, 12}, {1, 3, 8, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int B = shapes[s][0], L = shapes[s][1], C = shapes[s][2], K = shapes[s][3];
        size_t n = (size_t)B * L * C, nw = (size_t)C * K;
        float *x = malloc(n * 4), *dy = malloc(n * 4), *wt = malloc(nw * 4), *bias = malloc((size_t)C * 4);
        float *y1 = malloc(n * 4), *y2 = malloc(n * 4), *dx1 = calloc(n, 4), *dx2 = calloc(n, 4);
        float *dw1 = calloc(nw, 4), *dw2 = calloc(nw, 4), *db1 = calloc((size_t)C, 4), *db2 = calloc((size_t)C, 4);
        float *work = malloc(k_conv1d_work_floats(B, L, C, K) * 4);
        test_fill_uniform(x, n, s, -1, 1);
        test_fill_uniform(dy, n, s + 10, -1, 1);
        test_fill_uniform(wt, nw, s + 20, -1, 1);
        test_fill_uniform(bias, (size_t)C, s + 30, -1, 1);
        /* FMA rounds once where the scalar code rounds twice: differences of a
         * few ulp of the largest partial sum (terms <= 1, at most K + 1 of them) */
        k_conv1d_fwd_scalar(x, wt, bias, y1, B, L, C, K);
        k_conv1d_fwd_avx2(x, wt, bias, y2, B, L, C, K);
        ck_assert_close(y2, y1, n, (K + 1) * 2 * U32 * (K + 1), 0, "conv fwd avx2");
        k_conv1d_fwd_scalar(x, wt, NULL, y1, B, L, C, K);
        k_conv1d_fwd_avx2(x, wt, NULL, y2, B, L, C, K);
        ck_assert_close(y2, y1, n, K * 2 * U32 * K, 0, "conv fwd avx2 no bias");
        k_conv1d_bwd_x_scalar(dy, wt, dx1, B, L, C, K);
        k_conv1d_bwd_x_avx2(dy, wt, dx2, B, L, C, K);
        ck_assert_close(dx2, dx1, n, K * 2 * U32 * K, 0, "conv bwd_x avx2");
        k_conv1d_bwd_w_scalar(x, dy, dw1, db1, work, B, L, C, K);
        k_conv1d_bwd_w_avx2(x, dy, dw2, db2, work, B, L, C, K);
        /* both sum <= B*L terms of size <= 1 in the same order; only the FMA differs */
        double rows = (double)B * L;
        ck_assert_close(dw2, dw1, nw, rows * 2 * U32 * rows, 0, "conv bwd_w avx2");
        ck_assert_close(db2, db1, (size_t)C, 0, 0, "conv bwd_b avx2 (adds only: identical)");
        free(x), free(dy), free(wt), free(bias), free(y1), free(y2), free(dx1), free(dx2);
        free(dw1), free(dw2), free(db1), free(db2), free(work);
    }
#endif
}
END_TEST

/* Forward + backward of the op with `threads` OpenMP threads; returns y, dx, dw, db concatenated. */
static float *conv_run_threads(int threads, Tensor *x, Tensor *w, Tensor *b)
{
    omp_set_num_threads(threads);
    ck_assert_int_eq(omp_get_max_threads(), threads);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    x->grad = w->grad = b->grad = NULL;
    Tensor *y = op_conv1d_causal(&g, x, w, b);
    float *dout = malloc(y->numel * 4);
    test_fill_uniform(dout, y->numel, 77, -1, 1);
    graph_backward_from(&g, y, dout);
    size_t n = y->numel + x->numel + w->numel + b->numel;
    float *out = malloc(n * 4), *p = out;
    memcpy(p, y->data, y->numel * 4), p += y->numel;
    memcpy(p, x->grad, x->numel * 4), p += x->numel;
    memcpy(p, w->grad, w->numel * 4), p += w->numel;
    memcpy(p, b->grad, b->numel * 4);
    x->grad = w->grad = b->grad = NULL;
    free(dout);
    graph_free(&g);
    return out;
}

START_TEST(test_conv1d_bit_identical_for_1_and_2_threads)
{
    /* B*L*C*K = 4*130*41*4 = 85280 >= KERNEL_PAR_MIN, so the parallel path runs */
    const int B = 4, L = 130, C = 41, K = 4;
    ck_assert((size_t)B * L * C * K >= KERNEL_PAR_MIN);
    Tensor *x = test_tensor(3, (int[]){B, L, C}, true);
    Tensor *w = test_tensor(2, (int[]){C, K}, true);
    Tensor *b = test_tensor(1, (int[]){C}, true);
    test_fill_uniform(x->data, x->numel, 5, -1, 1);
    test_fill_uniform(w->data, w->numel, 6, -1, 1);
    test_fill_uniform(b->data, b->numel, 7, -1, 1);
    float *r1 = conv_run_threads(1, x, w, b), *r2 = conv_run_threads(2, x, w, b);
    size_t n = 2 * x->numel + w->numel + b->numel;
    ck_assert_msg(memcmp(r1, r2, n * 4) == 0, "conv1d results differ between 1 and 2 threads");
    free(r1), free(r2);
    test_tensor_free(x), test_tensor_free(w), test_tensor_free(b);
}
END_TEST

/* ---------------------------------------------------- fused conv + SiLU */

/* The fused op on the window [c0, c0 + C) of x (B, L, cols), or the
 * unfused chain slice -> conv -> silu; `also_slice` adds a later consumer
 * of the same window (recorded after the conv, so its backward runs first
 * and the fused backward accumulates into an existing gradient). */
typedef struct SiluCase {
    int c0, C, fused, also_slice, with_bias;
} SiluCase;

static Tensor *fwd_conv_silu(Graph *g, Tensor **in, void *ctx)
{
    const SiluCase *c = ctx;
    Tensor *x = in[0], *b = c->with_bias ? in[2] : NULL;
    Tensor *y = c->fused ? op_conv1d_silu(g, x, c->c0, c->C, in[1], b)
                         : op_silu(g, op_conv1d_causal(g, op_slice_cols(g, x, c->c0, c->C), in[1], b));
    if (c->also_slice) y = op_add(g, y, op_scale(g, op_slice_cols(g, x, c->c0, c->C), 0.5f));
    return y;
}

/* Forward + backward in an arena that holds NaN from an earlier step, so a
 * gradient element the fused backward forgets to write shows up; returns
 * y, dx, dw, db concatenated (malloc'd). */
static float *conv_silu_run(SiluCase c, Tensor *x, Tensor *w, Tensor *b, int threads)
{
    omp_set_num_threads(threads);
    Graph g;
    graph_init(&g, 1 << 22, 1);
    graph_begin(&g, 0, false, true);
    float *junk = graph_scratch(&g, (1 << 22) - 4096);
    for (size_t i = 0; i < ((1 << 22) - 4096) / 4; i++) junk[i] = NAN;
    graph_begin(&g, 1, false, true);
    x->grad = w->grad = b->grad = NULL;
    Tensor *y = fwd_conv_silu(&g, (Tensor *[]){x, w, b}, &c);
    float *dout = malloc(y->numel * 4);
    test_fill_uniform(dout, y->numel, 78, -1, 1);
    graph_backward_from(&g, y, dout);
    size_t n = y->numel + x->numel + w->numel + b->numel;
    float *out = calloc(n, 4), *p = out;
    memcpy(p, y->data, y->numel * 4), p += y->numel;
    memcpy(p, x->grad, x->numel * 4), p += x->numel;
    memcpy(p, w->grad, w->numel * 4), p += w->numel;
    if (c.with_bias) memcpy(p, b->grad, b->numel * 4);
    x->grad = w->grad = b->grad = NULL;
    free(dout);
    graph_free(&g);
    return out;
}

START_TEST(test_conv1d_silu_same_bits_as_slice_conv_silu_chain)
{
    /* B, L, cols, c0, C, K: windows at the start, middle and end, channel
     * tails, L < K, several row blocks */
    static const int shapes[][6] = {{1, 1, 1, 0, 1, 1},   {2, 3, 9, 0, 9, 4},    {2, 5, 20, 3, 13, 4},
                                    {3, 70, 41, 8, 33, 4}, {1, 9, 12, 2, 10, 12}, {2, 66, 25, 24, 1, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int B = shapes[s][0], L = shapes[s][1], cols = shapes[s][2], c0 = shapes[s][3],
                  C = shapes[s][4], K = shapes[s][5];
        Tensor *x = test_tensor(3, (int[]){B, L, cols}, true);
        Tensor *w = test_tensor(2, (int[]){C, K}, true);
        Tensor *b = test_tensor(1, (int[]){C}, true);
        test_fill_uniform(x->data, x->numel, s + 1, -3, 3);
        test_fill_uniform(w->data, w->numel, s + 2, -1, 1);
        test_fill_uniform(b->data, b->numel, s + 3, -1, 1);
        const size_t n = (size_t)B * L * C + x->numel + w->numel + b->numel;
        for (int mode = 0; mode < 4; mode++) {
            SiluCase c = {.c0 = c0, .C = C, .also_slice = mode & 1, .with_bias = (mode >> 1) & 1};
            c.fused = 0;
            float *ref = conv_silu_run(c, x, w, b, 2);
            c.fused = 1;
            float *got = conv_silu_run(c, x, w, b, 2);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(memcmp(&got[i], &ref[i], 4) == 0, "shape %zu mode %d element %zu: %.9g vs %.9g", s,
                              mode, i, got[i], ref[i]);
            free(ref), free(got);
        }
        test_tensor_free(x), test_tensor_free(w), test_tensor_free(b);
    }
}
END_TEST

START_TEST(test_conv1d_silu_gradients_match_finite_differences)
{
    static const int shapes[][6] = {{1, 1, 3, 1, 2, 2}, {2, 4, 11, 2, 9, 3}, {1, 6, 5, 0, 5, 4}};
    for (size_t s = 0; s < 3; s++) {
        const int B = shapes[s][0], L = shapes[s][1], cols = shapes[s][2], K = shapes[s][5];
        SiluCase c = {.c0 = shapes[s][3], .C = shapes[s][4], .fused = 1, .also_slice = (int)s & 1, .with_bias = 1};
        Tensor *x = test_tensor(3, (int[]){B, L, cols}, true);
        Tensor *w = test_tensor(2, (int[]){c.C, K}, true);
        Tensor *b = test_tensor(1, (int[]){c.C}, true);
        test_fill_uniform(x->data, x->numel, s + 40, -2, 2);
        test_fill_uniform(w->data, w->numel, s + 41, -1, 1);
        test_fill_uniform(b->data, b->numel, s + 42, -1, 1);
        ck_assert(gradcheck("conv1d_silu", fwd_conv_silu, &c, (Tensor *[]){x, w, b}, 3, GRADCHECK_DEFAULTS));
        test_tensor_free(x), test_tensor_free(w), test_tensor_free(b);
    }
}
END_TEST

START_TEST(test_conv1d_silu_avx2_matches_scalar)
{
#if SIMD_AVX2
    const int B = 3, L = 70, ldx = 29, c0 = 3, C = 21, K = 4;
    const size_t rows = (size_t)B * L, n = rows * (size_t)C, nw = (size_t)C * K;
    float *x = malloc(rows * ldx * 4), *dy = malloc(n * 4), *wt = malloc(nw * 4), *bias = malloc(C * 4);
    float *y1 = malloc(n * 4), *y2 = malloc(n * 4), *dx1 = malloc(rows * ldx * 4), *dx2 = malloc(rows * ldx * 4);
    float *dw1 = calloc(nw, 4), *dw2 = calloc(nw, 4), *db1 = calloc(C, 4), *db2 = calloc(C, 4);
    float *work = malloc(k_conv1d_silu_work_floats(B, L, C, K, omp_get_max_threads()) * 4);
    test_fill_uniform(x, rows * ldx, 1, -3, 3);
    test_fill_uniform(dy, n, 2, -1, 1);
    test_fill_uniform(wt, nw, 3, -1, 1);
    test_fill_uniform(bias, C, 4, -1, 1);
    k_conv1d_silu_fwd_scalar(x + c0, ldx, wt, bias, y1, B, L, C, K);
    k_conv1d_silu_fwd_avx2(x + c0, ldx, wt, bias, y2, B, L, C, K);
    /* z differs by the FMA roundings (a few ulp of sums of <= K + 1 terms
     * of size <= 3), silu by its exp: relative 1e-6 of |z| ~ 10 */
    ck_assert_close(y2, y1, n, 2e-5, 1e-5, "conv_silu fwd avx2");
    for (int acc = 0; acc < 2; acc++) {
        for (size_t i = 0; i < rows * ldx; i++) dx1[i] = dx2[i] = acc ? 0.5f : -7.0f;
        k_conv1d_silu_bwd_scalar(x + c0, ldx, wt, bias, dy, dx1 + c0, ldx, acc, dw1, db1, work, B, L, C, K);
        k_conv1d_silu_bwd_avx2(x + c0, ldx, wt, bias, dy, dx2 + c0, ldx, acc, dw2, db2, work, B, L, C, K);
        ck_assert_close(dx2, dx1, rows * ldx, 2e-5, 1e-5, "conv_silu dx avx2");
        for (size_t r = 0; r < rows; r++) /* columns outside the window untouched */
            for (int j = 0; j < ldx; j++)
                if (j < c0 || j >= c0 + C) ck_assert_float_eq(dx2[r * ldx + j], acc ? 0.5f : -7.0f);
    }
    /* sums of 2 x 210 terms of size <= 3 */
    ck_assert_close(dw2, dw1, nw, 2 * rows * 3 * 1e-6, 1e-5, "conv_silu dw avx2");
    ck_assert_close(db2, db1, C, 2 * rows * 1e-6, 1e-5, "conv_silu db avx2");
    free(x), free(dy), free(wt), free(bias), free(y1), free(y2), free(dx1), free(dx2);
    free(dw1), free(dw2), free(db1), free(db2), free(work);
#endif
}
END_TEST

START_TEST(test_conv1d_silu_bit_identical_for_1_and_2_threads)
{
    const int B = 4, L = 130, cols = 45, C = 41, K = 4;
    ck_assert((size_t)B * L * C * K >= KERNEL_PAR_MIN);
    Tensor *x = test_tensor(3, (int[]){B, L, cols}, true);
    Tensor *w = test_tensor(2, (int[]){C, K}, true);
    Tensor *b = test_tensor(1, (int[]){C}, true);
    test_fill_uniform(x->data, x->numel, 5, -2, 2);
    test_fill_uniform(w->data, w->numel, 6, -1, 1);
    test_fill_uniform(b->data, b->numel, 7, -1, 1);
    SiluCase c = {.c0 = 2, .C = C, .fused = 1, .also_slice = 0, .with_bias = 1};
    float *r1 = conv_silu_run(c, x, w, b, 1), *r2 = conv_silu_run(c, x, w, b, 2);
    size_t n = (size_t)B * L * C + x->numel + w->numel + b->numel;
    ck_assert_msg(memcmp(r1, r2, n * 4) == 0, "conv1d_silu results differ between 1 and 2 threads");
    free(r1), free(r2);
    test_tensor_free(x), test_tensor_free(w), test_tensor_free(b);
}
END_TEST

/* Split output: parts p (B, L, widths[p]); `skip` (>= 0) is a part left
 * out of the result (nobody differentiates it).  The result is the sum of
 * each used part times a different constant, reduced to its first part's
 * width by slicing, so every used part's gradient differs. */
typedef struct SplitCase {
    int c0, n, widths[3], split, skip;
} SplitCase;

static Tensor *fwd_split(Graph *g, Tensor **in, void *ctx)
{
    const SplitCase *c = ctx;
    Tensor *parts[3];
    int C = 0;
    for (int p = 0; p < c->n; p++) C += c->widths[p];
    if (c->split) {
        op_conv1d_silu_split(g, in[0], c->c0, c->n, c->widths, in[1], in[2], parts);
    } else {
        Tensor *y = op_conv1d_silu(g, in[0], c->c0, C, in[1], in[2]);
        for (int p = 0, off = 0; p < c->n; off += c->widths[p], p++) parts[p] = op_slice_cols(g, y, off, c->widths[p]);
    }
    int wmin = c->widths[0];
    for (int p = 1; p < c->n; p++) wmin = c->widths[p] < wmin ? c->widths[p] : wmin;
    Tensor *out = NULL;
    for (int p = 0; p < c->n; p++) {
        if (p == c->skip) continue;
        Tensor *t = op_scale(g, op_slice_cols(g, parts[p], 0, wmin), 1.0f + 0.5f * (float)p);
        out = out ? op_add(g, out, t) : t;
    }
    return out;
}

static float *split_run(SplitCase c, Tensor *x, Tensor *w, Tensor *b, size_t *n_out)
{
    Graph g;
    graph_init(&g, 1 << 22, 1);
    graph_begin(&g, 0, false, true);
    float *junk = graph_scratch(&g, (1 << 22) - 4096);
    for (size_t i = 0; i < ((1 << 22) - 4096) / 4; i++) junk[i] = NAN;
    graph_begin(&g, 1, false, true);
    x->grad = w->grad = b->grad = NULL;
    Tensor *y = fwd_split(&g, (Tensor *[]){x, w, b}, &c);
    float *dout = malloc(y->numel * 4);
    test_fill_uniform(dout, y->numel, 79, -1, 1);
    graph_backward_from(&g, y, dout);
    *n_out = y->numel + x->numel + w->numel + b->numel;
    float *out = malloc(*n_out * 4), *p = out;
    memcpy(p, y->data, y->numel * 4), p += y->numel;
    memcpy(p, x->grad, x->numel * 4), p += x->numel;
    memcpy(p, w->grad, w->numel * 4), p += w->numel;
    memcpy(p, b->grad, b->numel * 4);
    x->grad = w->grad = b->grad = NULL;
    free(dout);
    graph_free(&g);
    return out;
}

START_TEST(test_conv1d_silu_split_same_bits_as_slices_of_conv1d_silu)
{
    /* B, L, cols, c0, K, widths: tails, a window inside x, parts of 1 */
    static const int shapes[][8] = {{2, 5, 9, 0, 4, 3, 3, 3}, {3, 70, 40, 2, 4, 13, 8, 16}, {1, 9, 7, 1, 3, 1, 2, 1}};
    for (size_t s = 0; s < 3; s++) {
        const int B = shapes[s][0], L = shapes[s][1], cols = shapes[s][2], K = shapes[s][4];
        SplitCase c = {.c0 = shapes[s][3], .n = 3, .widths = {shapes[s][5], shapes[s][6], shapes[s][7]}};
        const int C = c.widths[0] + c.widths[1] + c.widths[2];
        Tensor *x = test_tensor(3, (int[]){B, L, cols}, true);
        Tensor *w = test_tensor(2, (int[]){C, K}, true);
        Tensor *b = test_tensor(1, (int[]){C}, true);
        test_fill_uniform(x->data, x->numel, s + 50, -3, 3);
        test_fill_uniform(w->data, w->numel, s + 51, -1, 1);
        test_fill_uniform(b->data, b->numel, s + 52, -1, 1);
        for (int skip = -1; skip < 3; skip++) {
            size_t n1, n2;
            c.skip = skip, c.split = 0;
            float *ref = split_run(c, x, w, b, &n1);
            c.split = 1;
            float *got = split_run(c, x, w, b, &n2);
            ck_assert_uint_eq(n1, n2);
            for (size_t i = 0; i < n1; i++)
                ck_assert_msg(memcmp(&got[i], &ref[i], 4) == 0, "shape %zu skip %d element %zu: %.9g vs %.9g", s,
                              skip, i, got[i], ref[i]);
            free(ref), free(got);
        }
        test_tensor_free(x), test_tensor_free(w), test_tensor_free(b);
    }
}
END_TEST

START_TEST(test_conv1d_silu_split_gradients_match_finite_differences)
{
    SplitCase c = {.c0 = 1, .n = 2, .widths = {3, 4}, .split = 1, .skip = -1};
    Tensor *x = test_tensor(3, (int[]){2, 4, 9}, true);
    Tensor *w = test_tensor(2, (int[]){7, 3}, true);
    Tensor *b = test_tensor(1, (int[]){7}, true);
    test_fill_uniform(x->data, x->numel, 60, -2, 2);
    test_fill_uniform(w->data, w->numel, 61, -1, 1);
    test_fill_uniform(b->data, b->numel, 62, -1, 1);
    ck_assert(gradcheck("conv1d_silu_split", fwd_split, &c, (Tensor *[]){x, w, b}, 3, GRADCHECK_DEFAULTS));
    test_tensor_free(x), test_tensor_free(w), test_tensor_free(b);
}
END_TEST

Suite *suite_conv1d(void)
{
    Suite *s = suite_create("conv1d");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_conv1d_matches_pytorch_fixture);
    tcase_add_test(tc, test_conv1d_forward_matches_plain_loops);
    tcase_add_test(tc, test_conv1d_gradients_match_finite_differences);
    tcase_add_test(tc, test_conv1d_backward_kernels_match_double_sums);
    tcase_add_test(tc, test_conv1d_avx2_matches_scalar);
    tcase_add_test(tc, test_conv1d_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_conv1d_silu_same_bits_as_slice_conv_silu_chain);
    tcase_add_test(tc, test_conv1d_silu_gradients_match_finite_differences);
    tcase_add_test(tc, test_conv1d_silu_avx2_matches_scalar);
    tcase_add_test(tc, test_conv1d_silu_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_conv1d_silu_split_same_bits_as_slices_of_conv1d_silu);
    tcase_add_test(tc, test_conv1d_silu_split_gradients_match_finite_differences);
    suite_add_tcase(s, tc);
    return s;
}
