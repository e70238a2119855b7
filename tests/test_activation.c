#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "../src/ops/k_activation.h"
#include "testutil.h"

typedef Tensor *(*ActOp)(Graph *, Tensor *);
static const ActOp act_ops[ACT_COUNT] = {op_exp, op_gelu, op_silu, op_elu, op_softplus, op_sigmoid, op_relu};
static const char *const act_label[ACT_COUNT] = {"exp", "gelu", "silu", "elu", "softplus", "sigmoid", "relu"};

/* double-precision references */
static double ref_f(ActKind k, double x)
{
    switch (k) {
    case ACT_EXP: return exp(x);
    case ACT_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));
    case ACT_SILU: return x / (1.0 + exp(-x));
    case ACT_ELU: return x > 0 ? x : expm1(x);
    case ACT_SOFTPLUS: return x > 20 ? x : log1p(exp(x));
    case ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case ACT_RELU: return x > 0 ? x : 0;
    default: return NAN;
    }
}

static double ref_df(ActKind k, double x)
{
    double s = 1.0 / (1.0 + exp(-x));
    switch (k) {
    case ACT_EXP: return exp(x);
    case ACT_GELU: return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
    case ACT_SILU: return s * (1.0 + x * (1.0 - s));
    case ACT_ELU: return x > 0 ? 1.0 : exp(x);
    case ACT_SOFTPLUS: return x > 20 ? 1.0 : s;
    case ACT_SIGMOID: return s * (1.0 - s);
    case ACT_RELU: return x > 0 ? 1.0 : 0.0;
    default: return NAN;
    }
}

/* Inputs spanning the interesting ranges, including the extremes. */
static float *wide_inputs(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    test_fill_uniform(x, n, seed, -12.0f, 12.0f);
    const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, 20.5f, 19.9f, -87.0f, -100.0f, 80.0f, 88.0f, -30.0f, 30.0f};
    for (size_t i = 0; i < sizeof special / sizeof special[0] && i < n; i++) x[i * 3 % n] = special[i];
    return x;
}

START_TEST(test_activation_forward_matches_double_reference)
{
    const size_t n = 1001;
    float *x = wide_inputs(n, 11), *y = malloc(n * 4), *ref = malloc(n * 4);
    for (int k = 0; k < ACT_COUNT; k++) {
        if (k == ACT_EXP) /* keep exp finite */
            for (size_t i = 0; i < n; i++) x[i] = fminf(x[i], 85.0f);
        k_act_fwd((ActKind)k, x, y, n);
        for (size_t i = 0; i < n; i++) ref[i] = (float)ref_f((ActKind)k, x[i]);
        /* a few float32 ulp of the result, plus an absolute floor for results
         * near 0; GELU's tail x < -5 (|y| < 1e-6) is computed through erfc,
         * whose relative error grows with x^2 (tests/test_simd_math.c), so
         * there it is held to an absolute 1e-9 instead */
        double atol = k == ACT_GELU ? 1e-9 : 1e-30;
        ck_assert_msg(test_close_ratio(y, ref, n, atol, 2e-6, act_label[k]) <= 1.0, "%s", act_label[k]);
    }
    free(x), free(y), free(ref);
}
END_TEST

START_TEST(test_activation_backward_matches_double_derivative)
{
    const size_t n = 777;
    float *x = wide_inputs(n, 12), *y = malloc(n * 4), *dy = malloc(n * 4), *dx = malloc(n * 4),
          *ref = malloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = fminf(x[i], 60.0f);
    test_fill_uniform(dy, n, 13, -2, 2);
    for (int k = 0; k < ACT_COUNT; k++) {
        k_act_fwd((ActKind)k, x, y, n);
        for (size_t i = 0; i < n; i++) dx[i] = 0.5f; /* backward accumulates */
        k_act_bwd((ActKind)k, x, y, dy, dx, n, true);
        for (size_t i = 0; i < n; i++) ref[i] = (float)(0.5 + (double)dy[i] * ref_df((ActKind)k, x[i]));
        ck_assert_msg(test_close_ratio(dx, ref, n, 1e-6, 1e-5, act_label[k]) <= 1.0, "%s", act_label[k]);
        for (size_t i = 0; i < n; i++) dx[i] = NAN; /* store: every element overwritten */
        k_act_bwd((ActKind)k, x, y, dy, dx, n, false);
        for (size_t i = 0; i < n; i++) ref[i] = (float)((double)dy[i] * ref_df((ActKind)k, x[i]));
        ck_assert_msg(test_close_ratio(dx, ref, n, 1e-6, 1e-5, act_label[k]) <= 1.0, "store %s", act_label[k]);
    }
    free(x), free(y), free(dy), free(dx), free(ref);
}
END_TEST

static ActKind cur_kind;
static Tensor *fwd_act(Graph *g, Tensor **in, void *ctx)
{
    (void)ctx;
    return act_ops[cur_kind](g, in[0]);
}

START_TEST(test_activation_gradients_match_finite_differences)
{
    static const int shapes[][3] = {{1, 1, 1}, {1, 1, 7}, {2, 3, 9}, {1, 4, 17}};
    for (int k = 0; k < ACT_COUNT; k++) {
        cur_kind = (ActKind)k;
        for (size_t s = 0; s < 4; s++) {
            Tensor *x = test_tensor(3, shapes[s], true);
            test_fill_uniform(x->data, x->numel, 100 + s, -3, 3);
            /* keep away from the kinks of relu/elu where differences straddle them */
            for (size_t i = 0; i < x->numel; i++)
                if (fabsf(x->data[i]) < 0.05f) x->data[i] += 0.1f;
            ck_assert_msg(gradcheck(act_label[k], fwd_act, NULL, &x, 1, GRADCHECK_DEFAULTS), "%s", act_label[k]);
            test_tensor_free(x);
        }
    }
}
END_TEST

START_TEST(test_softplus_threshold_follows_pytorch)
{
    float x[4] = {20.0f, 20.001f, 25.0f, -25.0f}, y[4], dy[4] = {1, 1, 1, 1}, dx[4] = {0};
    k_act_fwd(ACT_SOFTPLUS, x, y, 4);
    ck_assert_float_eq(y[1], 20.001f); /* above the threshold: identity */
    ck_assert_float_eq(y[2], 25.0f);
    ck_assert_float_eq_tol(y[0], (float)log1p(exp(20.0)), 1e-5);
    ck_assert(y[3] > 0.0f && y[3] < 2e-11f); /* e^-25, not rounded to 0 */
    k_act_bwd(ACT_SOFTPLUS, x, y, dy, dx, 4, true);
    ck_assert_float_eq(dx[1], 1.0f);
    ck_assert_float_eq(dx[2], 1.0f);
}
END_TEST

START_TEST(test_activation_avx2_matches_scalar)
{
#if SIMD_AVX2
    for (size_t n = 1; n < 80; n += 7) {
        float *x = wide_inputs(n, n), *y1 = malloc(n * 4), *y2 = malloc(n * 4), *dy = malloc(n * 4),
              *d1 = calloc(n, 4), *d2 = calloc(n, 4);
        for (size_t i = 0; i < n; i++) x[i] = fminf(x[i], 80.0f);
        test_fill_uniform(dy, n, n + 5, -1, 1);
        for (int k = 0; k < ACT_COUNT; k++) {
            k_act_fwd_scalar((ActKind)k, x, y1, n);
            k_act_fwd_avx2((ActKind)k, x, y2, n);
            double atol = k == ACT_GELU ? 1e-9 : 1e-30; /* see the forward test */
            ck_assert_msg(test_close_ratio(y2, y1, n, atol, 1e-6, act_label[k]) <= 1.0, "fwd %s", act_label[k]);
            for (int acc = 0; acc < 2; acc++) {
                for (size_t i = 0; i < n; i++) d1[i] = d2[i] = acc ? 0.25f : NAN;
                k_act_bwd_scalar((ActKind)k, x, y1, dy, d1, n, acc);
                k_act_bwd_avx2((ActKind)k, x, y1, dy, d2, n, acc);
                ck_assert_msg(test_close_ratio(d2, d1, n, 1e-7, 1e-6, act_label[k]) <= 1.0, "bwd %s acc %d",
                              act_label[k], acc);
            }
        }
        free(x), free(y1), free(y2), free(dy), free(d1), free(d2);
    }
#endif
}
END_TEST

START_TEST(test_activation_same_bits_for_one_and_two_threads)
{
    const size_t n = 3 * KERNEL_PAR_MIN + 13; /* parallel path with a ragged tail */
    float *x = wide_inputs(n, 21), *dy = malloc(n * 4);
    float *y1 = malloc(n * 4), *y2 = malloc(n * 4), *d1 = calloc(n, 4), *d2 = calloc(n, 4);
    test_fill_uniform(dy, n, 22, -1, 1);
    for (size_t i = 0; i < n; i++) x[i] = fminf(x[i], 80.0f);
    for (int k = 0; k < ACT_COUNT; k++) {
        omp_set_num_threads(1);
        k_act_fwd((ActKind)k, x, y1, n);
        memset(d1, 0xff, n * 4);
        k_act_bwd((ActKind)k, x, y1, dy, d1, n, false);
        omp_set_num_threads(2);
        k_act_fwd((ActKind)k, x, y2, n);
        memset(d2, 0xff, n * 4); /* NaN: the store variant must overwrite it */
        k_act_bwd((ActKind)k, x, y2, dy, d2, n, false);
        ck_assert_msg(memcmp(y1, y2, n * 4) == 0 && memcmp(d1, d2, n * 4) == 0, "%s", act_label[k]);
    }
    free(x), free(dy), free(y1), free(y2), free(d1), free(d2);
}
END_TEST

Suite *suite_activation(void)
{
    Suite *s = suite_create("activation");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_activation_forward_matches_double_reference);
    tcase_add_test(tc, test_activation_backward_matches_double_derivative);
    tcase_add_test(tc, test_activation_gradients_match_finite_differences);
    tcase_add_test(tc, test_softplus_threshold_follows_pytorch);
    tcase_add_test(tc, test_activation_avx2_matches_scalar);
    tcase_add_test(tc, test_activation_same_bits_for_one_and_two_threads);
    suite_add_tcase(s, tc);
    return s;
}
