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

/* ------------------------------------------------------ elu1 on a window */

typedef struct Elu1Case {
    int c0, C, fused, also_slice;
    float s;
} Elu1Case;

static Tensor *fwd_elu1(Graph *g, Tensor **in, void *ctx)
{
    const Elu1Case *c = ctx;
    Tensor *x = in[0], *y;
    if (c->fused) {
        y = op_elu1_cols(g, x, c->c0, c->C, c->s);
    } else {
        y = op_add_scalar(g, op_elu(g, op_slice_cols(g, x, c->c0, c->C)), 1.0f);
        if (c->s != 1.0f) y = op_scale(g, y, c->s);
    }
    /* a later consumer of the window: the feature map's backward then adds
     * into an existing gradient */
    if (c->also_slice) y = op_mul(g, y, op_slice_cols(g, x, c->c0, c->C));
    return y;
}

/* y and x's gradient, concatenated (malloc'd), from an arena left full of
 * NaN by an earlier step. */
static float *elu1_run(Elu1Case c, Tensor *x, int threads)
{
    omp_set_num_threads(threads);
    Graph g;
    graph_init(&g, 1 << 22, 1);
    graph_begin(&g, 0, false, true);
    float *junk = graph_scratch(&g, (1 << 22) - 4096);
    for (size_t i = 0; i < ((1 << 22) - 4096) / 4; i++) junk[i] = NAN;
    graph_begin(&g, 1, false, true);
    x->grad = NULL;
    Tensor *y = fwd_elu1(&g, &x, &c);
    float *dy = malloc(y->numel * 4), *out = malloc((y->numel + x->numel) * 4);
    test_fill_uniform(dy, y->numel, 91, -1, 1);
    graph_backward_from(&g, y, dy);
    memcpy(out, y->data, y->numel * 4);
    memcpy(out + y->numel, x->grad, x->numel * 4);
    x->grad = NULL;
    free(dy);
    graph_free(&g);
    return out;
}

START_TEST(test_elu1_cols_same_bits_as_slice_elu_add_scale_chain)
{
    /* rows, cols, c0, C */
    static const int shapes[][4] = {{1, 1, 0, 1}, {5, 20, 3, 9}, {7, 24, 8, 16}, {130, 45, 40, 5}, {600, 130, 1, 128}};
    static const float scales[] = {1.0f, 0.3535534f};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int mode = 0; mode < 4; mode++) {
            Tensor *x = test_tensor(2, (int[]){shapes[i][0], shapes[i][1]}, true);
            test_fill_uniform(x->data, x->numel, 90 + i, -4, 4);
            Elu1Case c = {.c0 = shapes[i][2], .C = shapes[i][3], .also_slice = mode & 1, .s = scales[mode >> 1]};
            const size_t n = (size_t)shapes[i][0] * c.C + x->numel;
            c.fused = 0;
            float *ref = elu1_run(c, x, 2);
            c.fused = 1;
            float *got = elu1_run(c, x, 2);
            for (size_t j = 0; j < n; j++)
                ck_assert_msg(memcmp(&got[j], &ref[j], 4) == 0, "shape %zu mode %d element %zu: %.9g vs %.9g", i,
                              mode, j, got[j], ref[j]);
            free(ref), free(got);
            test_tensor_free(x);
        }
}
END_TEST

START_TEST(test_elu1_cols_gradient_matches_finite_differences)
{
    Tensor *x = test_tensor(3, (int[]){2, 3, 13}, true);
    test_fill_uniform(x->data, x->numel, 95, -3, 3);
    for (size_t i = 0; i < x->numel; i++) /* away from the kink at 0 */
        if (fabsf(x->data[i]) < 0.05f) x->data[i] += 0.1f;
    Elu1Case c = {.c0 = 2, .C = 9, .fused = 1, .also_slice = 1, .s = 0.7f};
    ck_assert(gradcheck("elu1_cols", fwd_elu1, &c, &x, 1, GRADCHECK_DEFAULTS));
    test_tensor_free(x);
}
END_TEST

START_TEST(test_elu1_cols_avx2_matches_scalar_and_leaves_other_columns)
{
#if SIMD_AVX2
    const size_t rows = 37, ldx = 29, c0 = 3, C = 21;
    float *x = malloc(rows * ldx * 4), *dy = malloc(rows * C * 4), *y1 = malloc(rows * C * 4),
          *y2 = malloc(rows * C * 4), *d1 = malloc(rows * ldx * 4), *d2 = malloc(rows * ldx * 4);
    test_fill_uniform(x, rows * ldx, 96, -4, 4);
    test_fill_uniform(dy, rows * C, 97, -1, 1);
    k_elu1_cols_fwd_scalar(x + c0, ldx, y1, rows, C, 0.5f);
    k_elu1_cols_fwd_avx2(x + c0, ldx, y2, rows, C, 0.5f);
    ck_assert_close(y2, y1, rows * C, 1e-7, 1e-6, "elu1 fwd avx2");
    for (int mode = 0; mode < 4; mode++) {
        const int acc = mode & 1;
        const float sc = mode & 2 ? 1.0f : 0.5f;
        k_elu1_cols_fwd_scalar(x + c0, ldx, y1, rows, C, sc);
        for (size_t i = 0; i < rows * ldx; i++) d1[i] = d2[i] = 0.25f;
        k_elu1_cols_bwd_scalar(x + c0, ldx, y1, dy, d1 + c0, ldx, rows, C, sc, acc);
        k_elu1_cols_bwd_avx2(x + c0, ldx, y1, dy, d2 + c0, ldx, rows, C, sc, acc);
        ck_assert_close(d2, d1, rows * ldx, 1e-7, 1e-6, "elu1 bwd avx2");
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < ldx; j++)
                if (j < c0 || j >= c0 + C) ck_assert_float_eq(d2[r * ldx + j], 0.25f);
    }
    free(x), free(dy), free(y1), free(y2), free(d1), free(d2);
#endif
}
END_TEST

START_TEST(test_elu1_cols_bit_identical_for_1_and_2_threads)
{
    Tensor *x = test_tensor(2, (int[]){900, 200}, true); /* 900 x 120 window >= KERNEL_PAR_MIN */
    test_fill_uniform(x->data, x->numel, 98, -4, 4);
    Elu1Case c = {.c0 = 40, .C = 120, .fused = 1, .also_slice = 0, .s = 0.5f};
    float *r1 = elu1_run(c, x, 1), *r2 = elu1_run(c, x, 2);
    ck_assert(memcmp(r1, r2, (900 * 120 + x->numel) * 4) == 0);
    free(r1), free(r2);
    test_tensor_free(x);
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
    tcase_add_test(tc, test_elu1_cols_same_bits_as_slice_elu_add_scale_chain);
    tcase_add_test(tc, test_elu1_cols_gradient_matches_finite_differences);
    tcase_add_test(tc, test_elu1_cols_avx2_matches_scalar_and_leaves_other_columns);
    tcase_add_test(tc, test_elu1_cols_bit_identical_for_1_and_2_threads);
    suite_add_tcase(s, tc);
    return s;
}
