#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "../src/ops/k_seq.h"
#include "testutil.h"

#define SEED 0x243F6A8885A308D3ull

/* x with no zeros, so a kept element is never mistaken for a dropped one */
static Tensor *nonzero_tensor(int ndim, const int *shape, uint64_t seed, bool rg)
{
    Tensor *x = test_tensor(ndim, shape, rg);
    test_fill_uniform(x->data, x->numel, seed, 0.5f, 1.5f);
    for (size_t i = 0; i < x->numel; i += 2) x->data[i] = -x->data[i];
    return x;
}

START_TEST(test_dropout_keeps_fraction_within_6_sigma_and_scales_exactly)
{
    const float ps[] = {0.1f, 0.5f};
    const int n = 100000;
    Tensor *x = nonzero_tensor(1, &n, 1, false);
    Graph g;
    graph_init(&g, 0, SEED);
    for (int k = 0; k < 2; k++) {
        const float p = ps[k], scale = 1.0f / (1.0f - p);
        graph_begin(&g, 3, true, false);
        Tensor *y = op_dropout(&g, x, p);
        ck_assert_ptr_ne(y, x);
        size_t kept = 0;
        for (size_t i = 0; i < x->numel; i++) {
            if (y->data[i] == 0.0f) continue;
            kept++;
            ck_assert_msg(y->data[i] == x->data[i] * scale, "kept element %zu not scaled by exactly 1/(1-p)", i);
        }
        double mean = n * (1.0 - p), sigma = sqrt(n * p * (1.0 - p));
        ck_assert_msg(fabs((double)kept - mean) <= 6 * sigma, "p=%g: kept %zu of %d (expected %.0f +- %.0f)",
                      p, kept, n, mean, 6 * sigma);
    }
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_dropout_mask_is_philox_uniform_at_element)
{
    /* element i of the o-th dropout op of step s is kept iff
     * rng_uniform_at(seed, s, o, i) >= p: four elements per Philox block */
    const int n = 1003;
    const float p = 0.3f;
    Tensor *x = nonzero_tensor(1, &n, 2, false);
    Graph g;
    graph_init(&g, 0, SEED);
    graph_begin(&g, 12345, true, false);
    Tensor *y0 = op_dropout(&g, x, p);
    Tensor *y1 = op_dropout(&g, x, p);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(y0->data[i] != 0.0f, rng_uniform_at(SEED, 12345, 0, (uint64_t)i) >= p);
        ck_assert_int_eq(y1->data[i] != 0.0f, rng_uniform_at(SEED, 12345, 1, (uint64_t)i) >= p);
    }
    ck_assert_uint_eq(g.n_dropout, 2);
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

/* number of positions where exactly one of y1, y2 is zero */
static size_t mask_differences(const float *y1, const float *y2, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += (y1[i] == 0.0f) != (y2[i] == 0.0f);
    return d;
}

START_TEST(test_dropout_masks_differ_between_steps_and_ops)
{
    const int n = 10000;
    const float p = 0.5f;
    Tensor *x = nonzero_tensor(1, &n, 3, false);
    Graph g;
    graph_init(&g, 0, SEED);
    float *step0 = malloc(n * 4), *step0_op1 = malloc(n * 4), *step1 = malloc(n * 4), *again = malloc(n * 4);
    graph_begin(&g, 0, true, false);
    memcpy(step0, op_dropout(&g, x, p)->data, n * 4);
    memcpy(step0_op1, op_dropout(&g, x, p)->data, n * 4);
    graph_begin(&g, 1, true, false);
    memcpy(step1, op_dropout(&g, x, p)->data, n * 4);
    graph_begin(&g, 0, true, false);
    memcpy(again, op_dropout(&g, x, p)->data, n * 4);
    /* independent masks with p = 1/2 differ at n/2 = 5000 +- 50 positions */
    ck_assert_uint_gt(mask_differences(step0, step1, n), 4500);
    ck_assert_uint_gt(mask_differences(step0, step0_op1, n), 4500);
    ck_assert_uint_gt(mask_differences(step1, step0_op1, n), 4500);
    /* same (seed, step, op): same mask */
    ck_assert(memcmp(step0, again, n * 4) == 0);
    /* another seed: another mask */
    Graph g2;
    graph_init(&g2, 0, SEED + 1);
    graph_begin(&g2, 0, true, false);
    ck_assert_uint_gt(mask_differences(step0, op_dropout(&g2, x, p)->data, n), 4500);
    graph_free(&g2);
    free(step0), free(step0_op1), free(step1), free(again);
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_dropout_is_identity_in_eval_mode_and_for_p_zero)
{
    Tensor *x = nonzero_tensor(2, (int[]){3, 7}, 4, true);
    Graph g;
    graph_init(&g, 0, SEED);
    graph_begin(&g, 0, false, true);
    ck_assert_ptr_eq(op_dropout(&g, x, 0.5f), x);
    ck_assert_uint_eq(g.n_entries, 0);
    graph_begin(&g, 0, true, true);
    ck_assert_ptr_eq(op_dropout(&g, x, 0.0f), x);
    ck_assert_uint_eq(g.n_entries, 0);
    /* the p = 0 op still took index 0: the next one is op 1 */
    Tensor *y = op_dropout(&g, x, 0.25f);
    ck_assert_uint_eq(g.n_entries, 1);
    for (size_t i = 0; i < x->numel; i++)
        ck_assert_int_eq(y->data[i] != 0.0f, rng_uniform_at(SEED, 0, 1, i) >= 0.25f);
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_dropout_p_one_aborts)
{
    Tensor *x = nonzero_tensor(1, (int[]){4}, 5, false);
    Graph g;
    graph_init(&g, 0, SEED);
    graph_begin(&g, 0, true, false);
    op_dropout(&g, x, 1.0f); /* must abort */
}
END_TEST

static Tensor *fwd_dropout(Graph *g, Tensor **in, void *ctx)
{
    /* two dropout ops in a row: each backward must regenerate its own mask */
    float p = *(const float *)ctx;
    return op_dropout(g, op_dropout(g, in[0], p), p);
}

START_TEST(test_dropout_gradient_uses_forward_mask)
{
    const int shapes[][3] = {{1, 1, 1}, {1, 3, 7}, {2, 5, 9}, {4, 8, 33}};
    float p = 0.3f;
    for (size_t s = 0; s < 4; s++) {
        Tensor *x = nonzero_tensor(3, shapes[s], 6 + s, true);
        GradcheckOpts o = GRADCHECK_DEFAULTS;
        o.training = true;
        ck_assert(gradcheck("dropout", fwd_dropout, &p, &x, 1, o));
        test_tensor_free(x);
    }
    /* direct: dx = dy * scale exactly where y kept, 0 where dropped */
    const int n = 5000;
    Tensor *x = nonzero_tensor(1, &n, 9, true);
    Graph g;
    graph_init(&g, 0, SEED);
    graph_begin(&g, 7, true, true);
    Tensor *y = op_dropout(&g, x, p);
    float *dy = malloc(n * 4);
    test_fill_uniform(dy, n, 10, -1, 1);
    graph_backward_from(&g, y, dy);
    const float scale = 1.0f / (1.0f - p);
    for (int i = 0; i < n; i++) ck_assert(x->grad[i] == (y->data[i] != 0.0f ? dy[i] * scale : 0.0f));
    free(dy);
    x->grad = NULL;
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_dropout_avx2_matches_scalar_bit_for_bit)
{
#if SIMD_AVX2
    const size_t ns[] = {1, 3, 4, 5, 31, 32, 33, 100, 4095, 4097, 9001};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        float *x = malloc(n * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4), *d1 = malloc(n * 4), *d2 = malloc(n * 4);
        test_fill_uniform(x, n, k, -2, 2);
        test_fill_uniform(d1, n, k + 50, -2, 2);
        memcpy(d2, d1, n * 4);
        uint64_t key = 0xF00DFACECAFEBEEFull + k;
        k_dropout_fwd_scalar(x, y1, n, key, 0xFFFFFFF0u + (uint32_t)k, (uint32_t)k, 0.37f);
        k_dropout_fwd_avx2(x, y2, n, key, 0xFFFFFFF0u + (uint32_t)k, (uint32_t)k, 0.37f);
        ck_assert(memcmp(y1, y2, n * 4) == 0);
        k_dropout_bwd_scalar(x, d1, n, key, 9, 2, 0.5f);
        k_dropout_bwd_avx2(x, d2, n, key, 9, 2, 0.5f);
        ck_assert(memcmp(d1, d2, n * 4) == 0);
        free(x), free(y1), free(y2), free(d1), free(d2);
    }
#endif
}
END_TEST

static void dropout_run_threads(int threads, Tensor *x, float *y, float *dx)
{
    omp_set_num_threads(threads);
    ck_assert_int_eq(omp_get_max_threads(), threads);
    Graph g;
    graph_init(&g, 0, SEED);
    graph_begin(&g, 11, true, true);
    x->grad = NULL;
    Tensor *out = op_dropout(&g, x, 0.2f);
    float *dy = malloc(x->numel * 4);
    test_fill_uniform(dy, x->numel, 12, -1, 1);
    graph_backward_from(&g, out, dy);
    memcpy(y, out->data, x->numel * 4);
    memcpy(dx, x->grad, x->numel * 4);
    x->grad = NULL;
    free(dy);
    graph_free(&g);
}

START_TEST(test_dropout_bit_identical_for_1_and_2_threads)
{
    const int n = 200003; /* > KERNEL_PAR_MIN: the parallel path runs */
    Tensor *x = nonzero_tensor(1, &n, 13, true);
    float *y1 = malloc(n * 4), *y2 = malloc(n * 4), *d1 = malloc(n * 4), *d2 = malloc(n * 4);
    dropout_run_threads(1, x, y1, d1);
    dropout_run_threads(2, x, y2, d2);
    ck_assert(memcmp(y1, y2, n * 4) == 0);
    ck_assert(memcmp(d1, d2, n * 4) == 0);
    free(y1), free(y2), free(d1), free(d2);
    test_tensor_free(x);
}
END_TEST

Suite *suite_dropout(void)
{
    Suite *s = suite_create("dropout");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_dropout_keeps_fraction_within_6_sigma_and_scales_exactly);
    tcase_add_test(tc, test_dropout_mask_is_philox_uniform_at_element);
    tcase_add_test(tc, test_dropout_masks_differ_between_steps_and_ops);
    tcase_add_test(tc, test_dropout_is_identity_in_eval_mode_and_for_p_zero);
    tcase_add_test_raise_signal(tc, test_dropout_p_one_aborts, SIGABRT);
    tcase_add_test(tc, test_dropout_gradient_uses_forward_mask);
    tcase_add_test(tc, test_dropout_avx2_matches_scalar_bit_for_bit);
    tcase_add_test(tc, test_dropout_bit_identical_for_1_and_2_threads);
    suite_add_tcase(s, tc);
    return s;
}
