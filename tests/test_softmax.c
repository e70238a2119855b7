#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "../src/ops/k_norm.h"
#include "testutil.h"

static const int sm_cols[] = {1, 7, 8, 9, 33};

/* softmax of each row in float64, rounded to float */
static void sm_reference(const float *x, size_t rows, size_t cols, float *y)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double m = xr[0], s = 0.0;
        for (size_t j = 1; j < cols; j++) m = xr[j] > m ? xr[j] : m;
        for (size_t j = 0; j < cols; j++) s += exp((double)xr[j] - m);
        for (size_t j = 0; j < cols; j++) y[r * cols + j] = (float)(exp((double)xr[j] - m) / s);
    }
}

static Tensor *fwd_sm(Graph *g, Tensor **in, void *ctx)
{
    (void)ctx;
    return op_softmax(g, in[0]);
}

static void check_forward(const Tensor *x, const char *label)
{
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    Tensor *y = op_softmax(&g, (Tensor *)x);
    ck_assert_int_eq((int)y->numel, (int)x->numel);
    float *ref = malloc(x->numel * sizeof *ref);
    sm_reference(x->data, tensor_rows(x), (size_t)tensor_cols(x), ref);
    /* exp to a few ulp, one rounding of the sum and of 1/sum */
    ck_assert_close(y->data, ref, x->numel, 1e-7, 1e-5, label);
    free(ref);
    graph_free(&g);
}

START_TEST(test_softmax_forward_matches_float64_reference)
{
    for (int rows = 1; rows <= 5; rows++)
        for (size_t c = 0; c < sizeof sm_cols / sizeof sm_cols[0]; c++) {
            Tensor *x = test_tensor(2, (int[]){rows, sm_cols[c]}, false);
            test_fill_uniform(x->data, x->numel, (uint64_t)(rows * 50 + c), -6, 6);
            check_forward(x, "softmax forward");
            test_tensor_free(x);
        }
    /* leading dims are rows */
    Tensor *x = test_tensor(3, (int[]){2, 3, 9}, false);
    test_fill_uniform(x->data, x->numel, 3, -6, 6);
    check_forward(x, "softmax 3-d");
    test_tensor_free(x);
}
END_TEST

START_TEST(test_softmax_large_offsets_stay_finite_and_correct)
{
    /* without the max subtraction exp(1e4) overflows and exp(-1e4) underflows */
    const float offs[] = {1e4f, -1e4f, 80.0f, -80.0f};
    for (size_t o = 0; o < 4; o++) {
        Tensor *x = test_tensor(2, (int[]){3, 33}, false);
        test_fill_uniform(x->data, x->numel, 10 + o, -5, 5);
        for (size_t i = 0; i < x->numel; i++) x->data[i] += offs[o];
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        Tensor *y = op_softmax(&g, x);
        for (size_t i = 0; i < y->numel; i++) ck_assert(isfinite(y->data[i]));
        graph_free(&g);
        check_forward(x, "softmax large offset");
        test_tensor_free(x);
    }
    /* one huge entry: probability 1 there, exactly 0 elsewhere, no NaN */
    Tensor *x = test_tensor(2, (int[]){1, 9}, false);
    x->data[4] = 1e4f;
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    Tensor *y = op_softmax(&g, x);
    for (int j = 0; j < 9; j++) ck_assert_float_eq(y->data[j], j == 4 ? 1.0f : 0.0f);
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_softmax_backward_matches_finite_differences)
{
    for (int rows = 1; rows <= 5; rows++)
        for (size_t c = 0; c < sizeof sm_cols / sizeof sm_cols[0]; c++) {
            Tensor *x = test_tensor(2, (int[]){rows, sm_cols[c]}, true);
            test_fill_uniform(x->data, x->numel, (uint64_t)(rows * 70 + c), -3, 3);
            ck_assert(gradcheck("softmax", fwd_sm, NULL, &x, 1, GRADCHECK_DEFAULTS));
            test_tensor_free(x);
        }
}
END_TEST

enum { BIG_ROWS = 300, BIG_COLS = 67 }; /* above the parallel threshold */

static void sm_run(Tensor *x, const float *dy, float *y_out, float *dx)
{
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    x->grad = NULL;
    Tensor *y = op_softmax(&g, x);
    graph_backward_from(&g, y, dy);
    memcpy(y_out, y->data, x->numel * 4);
    memcpy(dx, x->grad, x->numel * 4);
    x->grad = NULL;
    graph_free(&g);
}

START_TEST(test_softmax_bit_identical_for_1_and_2_threads)
{
    Tensor *x = test_tensor(2, (int[]){BIG_ROWS, BIG_COLS}, true);
    const size_t n = x->numel;
    test_fill_uniform(x->data, n, 51, -4, 4);
    float *dy = malloc(n * 4), *y1 = malloc(n * 4), *dx1 = malloc(n * 4), *y2 = malloc(n * 4),
          *dx2 = malloc(n * 4);
    test_fill_uniform(dy, n, 52, -1, 1);
    omp_set_num_threads(1);
    sm_run(x, dy, y1, dx1);
    omp_set_num_threads(2);
    sm_run(x, dy, y2, dx2);
    ck_assert(memcmp(y1, y2, n * 4) == 0);
    ck_assert(memcmp(dx1, dx2, n * 4) == 0);
    free(dy), free(y1), free(dx1), free(y2), free(dx2);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_softmax_avx2_row_kernels_match_scalar)
{
#if SIMD_AVX2
    for (size_t n = 1; n <= 70; n++) {
        float *x = malloc(n * 4), *dy = malloc(n * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4),
              *dx1 = malloc(n * 4), *dx2 = malloc(n * 4);
        test_fill_uniform(x, n, n, -8, 8);
        test_fill_uniform(dy, n, n + 100, -1, 1);
        k_softmax_fwd_row_scalar(x, y1, n);
        k_softmax_fwd_row_avx2(x, y2, n);
        ck_assert_close(y2, y1, n, 1e-8, 1e-5, "softmax fwd avx2");
        test_fill_uniform(dx1, n, n + 200, -1, 1);
        memcpy(dx2, dx1, n * 4);
        k_softmax_bwd_row_scalar(y1, dy, dx1, n);
        k_softmax_bwd_row_avx2(y1, dy, dx2, n);
        ck_assert_close(dx2, dx1, n, 1e-6, 1e-5, "softmax bwd avx2");
        /* in place (y aliases x) gives the same result */
        memcpy(y2, x, n * 4);
        k_softmax_fwd_row_avx2(y2, y2, n);
        ck_assert_close(y2, y1, n, 1e-8, 1e-5, "softmax in place avx2");
        free(x), free(dy), free(y1), free(y2), free(dx1), free(dx2);
    }
#endif
}
END_TEST

Suite *suite_softmax(void)
{
    Suite *s = suite_create("softmax");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_softmax_forward_matches_float64_reference);
    tcase_add_test(tc, test_softmax_large_offsets_stay_finite_and_correct);
    tcase_add_test(tc, test_softmax_backward_matches_finite_differences);
    tcase_add_test(tc, test_softmax_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_softmax_avx2_row_kernels_match_scalar);
    suite_add_tcase(s, tc);
    return s;
}
