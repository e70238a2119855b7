#include <math.h>
#include <signal.h>
#include <stdlib.h>

#include "../src/ops.h"
#include "../src/ops/k_seq.h"
#include "testutil.h"

static Tensor *fwd_glu(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_glu(g, in[0]); }

/* shapes of u; the last dim is 2d with d = 1, 7, 8, 9, 33 */
static const int glu_shapes[][3] = {{1, 1, 2}, {1, 3, 14}, {2, 2, 16}, {2, 5, 18}, {1, 4, 66}};

START_TEST(test_glu_forward_matches_double_reference)
{
    Graph g;
    graph_init(&g, 0, 1);
    for (size_t s = 0; s < sizeof glu_shapes / sizeof glu_shapes[0]; s++) {
        Tensor *u = test_tensor(3, glu_shapes[s], false);
        test_fill_uniform(u->data, u->numel, 40 + s, -8, 8);
        const size_t d = (size_t)glu_shapes[s][2] / 2, rows = u->numel / (2 * d);
        /* saturating gates in the first row: sigmoid(+-100) */
        u->data[d] = 100.0f;
        if (d > 1) u->data[d + 1] = -100.0f;
        graph_begin(&g, 0, false, false);
        Tensor *y = op_glu(&g, u);
        ck_assert_int_eq(y->ndim, 3);
        ck_assert_int_eq(y->shape[0], glu_shapes[s][0]);
        ck_assert_int_eq(y->shape[1], glu_shapes[s][1]);
        ck_assert_int_eq(y->shape[2], (int)d);
        float *ref = malloc(y->numel * sizeof *ref);
        for (size_t r = 0; r < rows; r++)
            for (size_t i = 0; i < d; i++) {
                double a = u->data[r * 2 * d + i], b = u->data[r * 2 * d + d + i];
                ref[r * d + i] = (float)(a / (1.0 + exp(-b)));
            }
        /* exp and the division each cost a few ulp: relative 1e-6; products
         * below float range (sigmoid(-100) ~ 4e-44) may flush to 0: atol 1e-30 */
        ck_assert_close(y->data, ref, y->numel, 1e-30, 1e-6, "glu forward");
        free(ref);
        test_tensor_free(u);
    }
    graph_free(&g);
}
END_TEST

START_TEST(test_glu_gradient_matches_finite_differences)
{
    for (size_t s = 0; s < sizeof glu_shapes / sizeof glu_shapes[0]; s++) {
        Tensor *u = test_tensor(3, glu_shapes[s], true);
        test_fill_uniform(u->data, u->numel, 50 + s, -3, 3);
        ck_assert(gradcheck("glu", fwd_glu, NULL, &u, 1, GRADCHECK_DEFAULTS));
        test_tensor_free(u);
    }
}
END_TEST

START_TEST(test_glu_odd_last_dim_aborts)
{
    Tensor *u = test_tensor(2, (int[]){2, 5}, false);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_glu(&g, u); /* must abort */
}
END_TEST

START_TEST(test_glu_avx2_matches_scalar)
{
#if SIMD_AVX2
    for (size_t d = 1; d < 40; d += 3) {
        const size_t rows = 3, n = rows * 2 * d;
        float *u = malloc(n * 4), *dy = malloc(rows * d * 4), *y1 = malloc(rows * d * 4), *y2 = malloc(rows * d * 4);
        float *du1 = malloc(n * 4), *du2 = malloc(n * 4);
        test_fill_uniform(u, n, d, -10, 10);
        test_fill_uniform(dy, rows * d, d + 100, -1, 1);
        test_fill_uniform(du1, n, d + 200, -1, 1); /* backward accumulates onto this */
        for (size_t i = 0; i < n; i++) du2[i] = du1[i];
        k_glu_fwd_scalar(u, y1, rows, d);
        k_glu_fwd_avx2(u, y2, rows, d);
        /* v8_exp is within a few ulp of expf: relative 1e-6 */
        ck_assert_close(y2, y1, rows * d, 1e-30, 1e-6, "glu fwd avx2");
        k_glu_bwd_scalar(u, dy, du1, rows, d, true);
        k_glu_bwd_avx2(u, dy, du2, rows, d, true);
        /* sigmoid off by a few ulp of 1 (~2e-7) shifts 1 - s by as much; times
         * |dy a s| <= 10 gives 2e-6 absolute on the b half */
        ck_assert_close(du2, du1, n, 3e-6, 1e-6, "glu bwd avx2");
        /* store variant: the old du is not read */
        for (size_t i = 0; i < n; i++) du1[i] = NAN, du2[i] = 1e30f;
        k_glu_bwd_scalar(u, dy, du1, rows, d, false);
        k_glu_bwd_avx2(u, dy, du2, rows, d, false);
        ck_assert_close(du2, du1, n, 3e-6, 1e-6, "glu bwd store avx2");
        free(u), free(dy), free(y1), free(y2), free(du1), free(du2);
    }
#endif
}
END_TEST

Suite *suite_glu(void)
{
    Suite *s = suite_create("glu");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_glu_forward_matches_double_reference);
    tcase_add_test(tc, test_glu_gradient_matches_finite_differences);
    tcase_add_test_raise_signal(tc, test_glu_odd_last_dim_aborts, SIGABRT);
    tcase_add_test(tc, test_glu_avx2_matches_scalar);
    suite_add_tcase(s, tc);
    return s;
}
