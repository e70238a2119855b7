#include <math.h>
#include <stdlib.h>

#include "../src/ops.h"
#include "../src/ops/k_arith.h"
#include "testutil.h"

static Tensor *fwd_add(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_add(g, in[0], in[1]); }
static Tensor *fwd_mul(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_mul(g, in[0], in[1]); }
static Tensor *fwd_scale(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_scale(g, in[0], -1.75f); }
static Tensor *fwd_add_scalar(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_add_scalar(g, in[0], 0.5f); }
/* x used twice: gradients must accumulate */
static Tensor *fwd_square(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_mul(g, in[0], in[0]); }
static Tensor *fwd_double(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_add(g, in[0], in[0]); }
/* x reaches the output four ways: add_scalar and add hand their output
 * gradient on without a copy when x has none yet, the others add to it */
static Tensor *fwd_mixed(Graph *g, Tensor **in, void *ctx)
{
    (void)ctx;
    Tensor *x = in[0];
    Tensor *h = op_add(g, op_add_scalar(g, x, 1.0f), x);
    return op_mul(g, op_add(g, h, op_scale(g, x, 0.75f)), op_add_scalar(g, h, -0.5f));
}

static const int shapes[][3] = {{1, 1, 1}, {1, 1, 7}, {2, 3, 9}, {3, 5, 17}};

static void check_binary(GradcheckForward f, const char *label, int which)
{
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Tensor *a = test_tensor(3, shapes[s], true), *b = test_tensor(3, shapes[s], true);
        test_fill_uniform(a->data, a->numel, 1 + s, -2, 2);
        test_fill_uniform(b->data, b->numel, 2 + s, -2, 2);
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        Tensor *y = f(&g, (Tensor *[]){a, b}, NULL);
        for (size_t i = 0; i < a->numel; i++) {
            float ref = which == 0 ? a->data[i] + b->data[i] : a->data[i] * b->data[i];
            ck_assert_float_eq(y->data[i], ref);
        }
        graph_free(&g);
        ck_assert(gradcheck(label, f, NULL, (Tensor *[]){a, b}, 2, GRADCHECK_DEFAULTS));
        test_tensor_free(a);
        test_tensor_free(b);
    }
}

START_TEST(test_add_forward_and_gradient) { check_binary(fwd_add, "add", 0); }
END_TEST

START_TEST(test_mul_forward_and_gradient) { check_binary(fwd_mul, "mul", 1); }
END_TEST

START_TEST(test_scale_and_add_scalar_gradients)
{
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Tensor *x = test_tensor(3, shapes[s], true);
        test_fill_uniform(x->data, x->numel, 7 + s, -3, 3);
        ck_assert(gradcheck("scale", fwd_scale, NULL, &x, 1, GRADCHECK_DEFAULTS));
        ck_assert(gradcheck("add_scalar", fwd_add_scalar, NULL, &x, 1, GRADCHECK_DEFAULTS));
        test_tensor_free(x);
    }
}
END_TEST

START_TEST(test_tensor_used_twice_accumulates_gradient)
{
    Tensor *x = test_tensor(2, (int[]){3, 11}, true);
    test_fill_uniform(x->data, x->numel, 3, -1, 1);
    ck_assert(gradcheck("square", fwd_square, NULL, &x, 1, GRADCHECK_DEFAULTS));
    ck_assert(gradcheck("x + x", fwd_double, NULL, &x, 1, GRADCHECK_DEFAULTS));
    ck_assert(gradcheck("mixed uses", fwd_mixed, NULL, &x, 1, GRADCHECK_DEFAULTS));
    test_tensor_free(x);
}
END_TEST

START_TEST(test_arith_avx2_matches_scalar)
{
#if SIMD_AVX2
    for (size_t n = 1; n < 70; n += 3) {
        float *a = malloc(n * 4), *b = malloc(n * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4);
        test_fill_uniform(a, n, n, -5, 5);
        test_fill_uniform(b, n, n + 100, -5, 5);
        k_add_scalar(a, b, y1, n);
        k_add_avx2(a, b, y2, n);
        ck_assert_close(y2, y1, n, 0, 0, "add avx2");
        k_mul_scalar(a, b, y1, n);
        k_mul_avx2(a, b, y2, n);
        ck_assert_close(y2, y1, n, 0, 0, "mul avx2");
        k_affine_scalar(a, 0.3f, -1.25f, y1, n);
        k_affine_avx2(a, 0.3f, -1.25f, y2, n);
        ck_assert_close(y2, y1, n, 1e-6, 1e-6, "affine avx2"); /* fma rounds once */
        free(a), free(b), free(y1), free(y2);
    }
#endif
}
END_TEST

Suite *suite_arith(void)
{
    Suite *s = suite_create("arith");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_add_forward_and_gradient);
    tcase_add_test(tc, test_mul_forward_and_gradient);
    tcase_add_test(tc, test_scale_and_add_scalar_gradients);
    tcase_add_test(tc, test_tensor_used_twice_accumulates_gradient);
    tcase_add_test(tc, test_arith_avx2_matches_scalar);
    suite_add_tcase(s, tc);
    return s;
}
