#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "../src/ops/k_norm.h"
#include "testutil.h"

#define LN_EPS 1e-5f

static const int ln_cols[] = {1, 7, 8, 9, 33};

/* y = (x - mean) / sqrt(var + eps) * gamma + beta in float64 */
static void ln_reference(const float *x, const float *gamma, const float *beta, double eps,
                         size_t rows, size_t cols, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double m = 0.0, v = 0.0;
        for (size_t j = 0; j < cols; j++) m += xr[j];
        m /= (double)cols;
        for (size_t j = 0; j < cols; j++) v += (xr[j] - m) * (xr[j] - m);
        v /= (double)cols;
        for (size_t j = 0; j < cols; j++)
            y[r * cols + j] = (xr[j] - m) / sqrt(v + eps) * gamma[j] + beta[j];
    }
}

static Tensor *fwd_ln(Graph *g, Tensor **in, void *ctx)
{
    (void)ctx;
    return op_layernorm(g, in[0], in[1], in[2], LN_EPS);
}

/* x (rows, cols) with an offset (so the mean matters), gamma around 1, beta around 0 */
static void ln_inputs(int rows, int cols, uint64_t seed, Tensor **x, Tensor **gamma, Tensor **beta)
{
    *x = test_tensor(2, (int[]){rows, cols}, true);
    *gamma = test_tensor(1, (int[]){cols}, true);
    *beta = test_tensor(1, (int[]){cols}, true);
    test_fill_uniform((*x)->data, (*x)->numel, seed, 1.0f, 5.0f);
    test_fill_uniform((*gamma)->data, (size_t)cols, seed + 1000, 0.5f, 1.5f);
    test_fill_uniform((*beta)->data, (size_t)cols, seed + 2000, -0.5f, 0.5f);
}

static void ln_free(Tensor *x, Tensor *gamma, Tensor *beta)
{
    test_tensor_free(x);
    test_tensor_free(gamma);
    test_tensor_free(beta);
}

START_TEST(test_layernorm_forward_matches_float64_reference)
{
    for (int rows = 1; rows <= 5; rows++)
        for (size_t c = 0; c < sizeof ln_cols / sizeof ln_cols[0]; c++) {
            const int cols = ln_cols[c];
            Tensor *x, *gm, *bt;
            ln_inputs(rows, cols, (uint64_t)(rows * 100 + cols), &x, &gm, &bt);
            Graph g;
            graph_init(&g, 0, 1);
            graph_begin(&g, 0, false, false);
            Tensor *y = op_layernorm(&g, x, gm, bt, LN_EPS);
            ck_assert_int_eq(y->ndim, 2);
            ck_assert_int_eq(y->shape[0], rows);
            ck_assert_int_eq(y->shape[1], cols);
            double *ref = malloc(x->numel * sizeof *ref);
            float *reff = malloc(x->numel * sizeof *reff);
            ln_reference(x->data, gm->data, bt->data, LN_EPS, (size_t)rows, (size_t)cols, ref);
            for (size_t i = 0; i < x->numel; i++) reff[i] = (float)ref[i];
            /* |xhat| <= sqrt(cols) ~ 6, a few float32 roundings of values of that size */
            ck_assert_close(y->data, reff, x->numel, 2e-6, 2e-6, "layernorm forward");
            free(ref);
            free(reff);
            graph_free(&g);
            ln_free(x, gm, bt);
        }
}
END_TEST

START_TEST(test_layernorm_leading_dims_are_rows)
{
    /* (2, 3, 9) must equal the same data as (6, 9) */
    Tensor *x = test_tensor(3, (int[]){2, 3, 9}, false), *gm = test_tensor(1, (int[]){9}, false),
           *bt = test_tensor(1, (int[]){9}, false);
    test_fill_uniform(x->data, x->numel, 5, -3, 3);
    test_fill_uniform(gm->data, 9, 6, 0.5f, 1.5f);
    test_fill_uniform(bt->data, 9, 7, -1, 1);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    Tensor *y = op_layernorm(&g, x, gm, bt, LN_EPS);
    ck_assert_int_eq(y->ndim, 3);
    double ref[54];
    float reff[54];
    ln_reference(x->data, gm->data, bt->data, LN_EPS, 6, 9, ref);
    for (int i = 0; i < 54; i++) reff[i] = (float)ref[i];
    ck_assert_close(y->data, reff, 54, 2e-6, 2e-6, "layernorm 3-d");
    graph_free(&g);
    ln_free(x, gm, bt);
}
END_TEST

START_TEST(test_layernorm_single_column_outputs_beta_and_zero_dx)
{
    /* var = 0: xhat = 0 / sqrt(eps) = 0 exactly, y = beta, dy/dx = 0 */
    Tensor *x, *gm, *bt;
    ln_inputs(4, 1, 11, &x, &gm, &bt);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    Tensor *y = op_layernorm(&g, x, gm, bt, LN_EPS);
    for (int r = 0; r < 4; r++) ck_assert_float_eq(y->data[r], bt->data[0]);
    graph_backward_from(&g, y, (float[]){1.0f, -2.0f, 0.5f, 3.0f});
    for (int r = 0; r < 4; r++) {
        ck_assert(isfinite(x->grad[r]));
        ck_assert_float_eq(x->grad[r], 0.0f);
    }
    ck_assert_float_eq(gm->grad[0], 0.0f);
    ck_assert_float_eq(bt->grad[0], 2.5f);
    graph_free(&g);
    ln_free(x, gm, bt);
}
END_TEST

START_TEST(test_layernorm_backward_matches_finite_differences)
{
    for (int rows = 1; rows <= 5; rows++)
        for (size_t c = 0; c < sizeof ln_cols / sizeof ln_cols[0]; c++) {
            Tensor *x, *gm, *bt;
            ln_inputs(rows, ln_cols[c], (uint64_t)(rows * 17 + c), &x, &gm, &bt);
            ck_assert(gradcheck("layernorm", fwd_ln, NULL, (Tensor *[]){x, gm, bt}, 3, GRADCHECK_DEFAULTS));
            ln_free(x, gm, bt);
        }
}
END_TEST

START_TEST(test_layernorm_backward_with_partial_requires_grad)
{
    /* only the parameters need grad (dx skipped), then only x (dgamma/dbeta skipped) */
    Tensor *x, *gm, *bt;
    ln_inputs(5, 9, 21, &x, &gm, &bt);
    x->requires_grad = false;
    ck_assert(gradcheck("layernorm params only", fwd_ln, NULL, (Tensor *[]){x, gm, bt}, 3, GRADCHECK_DEFAULTS));
    x->requires_grad = true;
    gm->requires_grad = bt->requires_grad = false;
    ck_assert(gradcheck("layernorm x only", fwd_ln, NULL, (Tensor *[]){x, gm, bt}, 3, GRADCHECK_DEFAULTS));
    ln_free(x, gm, bt);
}
END_TEST

/* forward + backward from dy; copies y, dx, dgamma, dbeta out */
static void ln_run(Tensor *x, Tensor *gm, Tensor *bt, const float *dy, float *y_out, float *dx,
                   float *dg, float *db)
{
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    x->grad = gm->grad = bt->grad = NULL;
    Tensor *y = op_layernorm(&g, x, gm, bt, LN_EPS);
    graph_backward_from(&g, y, dy);
    memcpy(y_out, y->data, x->numel * sizeof(float));
    memcpy(dx, x->grad, x->numel * sizeof(float));
    memcpy(dg, gm->grad, gm->numel * sizeof(float));
    memcpy(db, bt->grad, bt->numel * sizeof(float));
    x->grad = gm->grad = bt->grad = NULL;
    graph_free(&g);
}

enum { BIG_ROWS = 300, BIG_COLS = 67 }; /* 10 row blocks, above the parallel threshold */

START_TEST(test_layernorm_param_grads_over_many_rows_match_float64)
{
    Tensor *x, *gm, *bt;
    ln_inputs(BIG_ROWS, BIG_COLS, 31, &x, &gm, &bt);
    const size_t n = x->numel;
    float *dy = malloc(n * 4), *y = malloc(n * 4), *dx = malloc(n * 4);
    float dg[BIG_COLS], db[BIG_COLS], rg[BIG_COLS], rb[BIG_COLS];
    test_fill_uniform(dy, n, 32, -1, 1);
    ln_run(x, gm, bt, dy, y, dx, dg, db);
    double *xh = malloc(n * sizeof *xh);
    float zero[BIG_COLS] = {0}, one[BIG_COLS];
    for (int j = 0; j < BIG_COLS; j++) one[j] = 1.0f;
    ln_reference(x->data, one, zero, LN_EPS, BIG_ROWS, BIG_COLS, xh);
    for (int j = 0; j < BIG_COLS; j++) {
        double sg = 0, sb = 0;
        for (int r = 0; r < BIG_ROWS; r++) {
            sg += dy[r * BIG_COLS + j] * xh[r * BIG_COLS + j];
            sb += dy[r * BIG_COLS + j];
        }
        rg[j] = (float)sg, rb[j] = (float)sb;
    }
    /* 300 terms of size <= ~2: float32 summation error well below 1e-4 */
    ck_assert_close(dg, rg, BIG_COLS, 1e-4, 1e-5, "dgamma");
    ck_assert_close(db, rb, BIG_COLS, 1e-4, 1e-5, "dbeta");
    free(dy), free(y), free(dx), free(xh);
    ln_free(x, gm, bt);
}
END_TEST

START_TEST(test_layernorm_bit_identical_for_1_and_2_threads)
{
    Tensor *x, *gm, *bt;
    ln_inputs(BIG_ROWS, BIG_COLS, 41, &x, &gm, &bt);
    const size_t n = x->numel;
    float *dy = malloc(n * 4), *y1 = malloc(n * 4), *dx1 = malloc(n * 4), *y2 = malloc(n * 4),
          *dx2 = malloc(n * 4);
    float dg1[BIG_COLS], db1[BIG_COLS], dg2[BIG_COLS], db2[BIG_COLS];
    test_fill_uniform(dy, n, 42, -1, 1);
    omp_set_num_threads(1);
    ln_run(x, gm, bt, dy, y1, dx1, dg1, db1);
    omp_set_num_threads(2);
    ln_run(x, gm, bt, dy, y2, dx2, dg2, db2);
    ck_assert(memcmp(y1, y2, n * 4) == 0);
    ck_assert(memcmp(dx1, dx2, n * 4) == 0);
    ck_assert(memcmp(dg1, dg2, sizeof dg1) == 0);
    ck_assert(memcmp(db1, db2, sizeof db1) == 0);
    free(dy), free(y1), free(dx1), free(y2), free(dx2);
    ln_free(x, gm, bt);
}
END_TEST

START_TEST(test_layernorm_avx2_row_kernels_match_scalar)
{
#if SIMD_AVX2
    for (size_t n = 1; n <= 70; n++) {
        float *x = malloc(n * 4), *gm = malloc(n * 4), *bt = malloc(n * 4), *dy = malloc(n * 4);
        float *y1 = malloc(n * 4), *y2 = malloc(n * 4);
        float *dx1 = malloc(n * 4), *dx2 = malloc(n * 4), *dg1 = malloc(n * 4), *dg2 = malloc(n * 4),
              *db1 = malloc(n * 4), *db2 = malloc(n * 4);
        test_fill_uniform(x, n, n, -2, 6);
        test_fill_uniform(gm, n, n + 100, 0.5f, 1.5f);
        test_fill_uniform(bt, n, n + 200, -1, 1);
        test_fill_uniform(dy, n, n + 300, -1, 1);
        float m1, r1, m2, r2;
        k_layernorm_fwd_row_scalar(x, gm, bt, LN_EPS, y1, &m1, &r1, n);
        k_layernorm_fwd_row_avx2(x, gm, bt, LN_EPS, y2, &m2, &r2, n);
        ck_assert_close(&m2, &m1, 1, 1e-6, 1e-6, "mean avx2");
        ck_assert_close(&r2, &r1, 1, 0, 1e-5, "rstd avx2");
        ck_assert_close(y2, y1, n, 1e-5, 1e-5, "layernorm fwd avx2");
        /* backward accumulates: start from the same non-zero values */
        test_fill_uniform(dx1, n, n + 400, -1, 1);
        test_fill_uniform(dg1, n, n + 500, -1, 1);
        test_fill_uniform(db1, n, n + 600, -1, 1);
        memcpy(dx2, dx1, n * 4), memcpy(dg2, dg1, n * 4), memcpy(db2, db1, n * 4);
        k_layernorm_bwd_row_scalar(x, dy, gm, m1, r1, dx1, dg1, db1, n, true);
        k_layernorm_bwd_row_avx2(x, dy, gm, m1, r1, dx2, dg2, db2, n, true);
        ck_assert_close(dx2, dx1, n, 1e-5, 1e-5, "layernorm dx avx2");
        ck_assert_close(dg2, dg1, n, 1e-6, 1e-6, "layernorm dgamma avx2");
        ck_assert_close(db2, db1, n, 0, 0, "layernorm dbeta avx2");
        /* store variant: the old dx is not read */
        for (size_t i = 0; i < n; i++) dx1[i] = NAN, dx2[i] = 1e30f;
        k_layernorm_bwd_row_scalar(x, dy, gm, m1, r1, dx1, NULL, NULL, n, false);
        k_layernorm_bwd_row_avx2(x, dy, gm, m1, r1, dx2, NULL, NULL, n, false);
        ck_assert_close(dx2, dx1, n, 1e-5, 1e-5, "layernorm dx store avx2");
        /* NULL outputs are skipped */
        k_layernorm_bwd_row_avx2(x, dy, gm, m1, r1, NULL, NULL, NULL, n, true);
        free(x), free(gm), free(bt), free(dy), free(y1), free(y2);
        free(dx1), free(dx2), free(dg1), free(dg2), free(db1), free(db2);
    }
#endif
}
END_TEST

Suite *suite_layernorm(void)
{
    Suite *s = suite_create("layernorm");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_layernorm_forward_matches_float64_reference);
    tcase_add_test(tc, test_layernorm_leading_dims_are_rows);
    tcase_add_test(tc, test_layernorm_single_column_outputs_beta_and_zero_dx);
    tcase_add_test(tc, test_layernorm_backward_matches_finite_differences);
    tcase_add_test(tc, test_layernorm_backward_with_partial_requires_grad);
    tcase_add_test(tc, test_layernorm_param_grads_over_many_rows_match_float64);
    tcase_add_test(tc, test_layernorm_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_layernorm_avx2_row_kernels_match_scalar);
    suite_add_tcase(s, tc);
    return s;
}
