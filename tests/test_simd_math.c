#include <math.h>
#include <stdlib.h>

#include "../src/simd_math.h"
#include "testutil.h"

#if SIMD_AVX2
typedef __m256 (*V8Fn)(__m256);

/* Max relative error of f over xs against the double-precision ref. */
static double max_rel_err(V8Fn f, double (*ref)(double), const float *xs, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        float out[8];
        _mm256_storeu_ps(out, f(_mm256_loadu_ps(xs + i)));
        for (int j = 0; j < 8; j++) {
            double r = ref(xs[i + j]);
            double e = fabs(out[j] - r) / fabs(r);
            if (e > worst) worst = e;
        }
    }
    return worst;
}

static double erfc_ref(double x) { return erfc(x); }
static double sigmoid_ref(double x) { return 1.0 / (1.0 + exp(-x)); }
#endif

START_TEST(test_v8_exp_matches_exp_to_a_few_ulp)
{
#if SIMD_AVX2
    size_t n = 80000;
    float *x = malloc(n * 4);
    test_fill_uniform(x, n, 1, -87.0f, 88.7f);
    /* 4 ulp of float32 (2^-22 relative): polynomial + reduction rounding */
    ck_assert_double_le(max_rel_err(v8_exp, exp, x, n), 4.0 * 0x1p-23);
    test_fill_uniform(x, n, 2, -1.0f, 1.0f);
    ck_assert_double_le(max_rel_err(v8_exp, exp, x, n), 4.0 * 0x1p-23);
    free(x);
#endif
}
END_TEST

START_TEST(test_v8_exp_edge_cases)
{
#if SIMD_AVX2
    float in[8] = {-88.0f, -1000.0f, 88.72f, 88.73f, 1000.0f, NAN, 0.0f, -INFINITY}, out[8];
    _mm256_storeu_ps(out, v8_exp(_mm256_loadu_ps(in)));
    ck_assert_float_eq(out[0], 0.0f);        /* would be denormal: flushed to exactly 0 */
    ck_assert_float_eq(out[1], 0.0f);
    ck_assert(isfinite(out[2]) && fabs(out[2] / exp((double)88.72f) - 1) < 1e-6); /* just below overflow */
    ck_assert(isinf(out[3]) && out[3] > 0);
    ck_assert(isinf(out[4]) && out[4] > 0);
    ck_assert(isnan(out[5]));
    ck_assert_float_eq(out[6], 1.0f);
    ck_assert_float_eq(out[7], 0.0f);
#endif
}
END_TEST

START_TEST(test_v8_erfc_expm1_and_sigmoid_accuracy)
{
#if SIMD_AVX2
    size_t n = 40000;
    float *x = malloc(n * 4);
    /* erfc: relative error of the fit ~1.2e-7 plus the float rounding of
     * -x^2 + P inside the exp, up to 2 ulp of x^2 = 16 * 2^-22 at |x| = 4 */
    test_fill_uniform(x, n, 3, -4.0f, 4.0f);
    ck_assert_double_le(max_rel_err(v8_erfc, erfc_ref, x, n), 1.2e-7 + 16.0 * 0x1p-22);
    test_fill_uniform(x, n, 4, -30.0f, 30.0f);
    ck_assert_double_le(max_rel_err(v8_sigmoid, sigmoid_ref, x, n), 4.0 * 0x1p-23);
    float big[8] = {100, -100, 1e30f, -1e30f, 0, 9, -9, 50}, out[8];
    test_fill_uniform(x, n, 5, -3.0f, 3.0f);
    ck_assert_double_le(max_rel_err(v8_expm1, expm1, x, n), 8.0 * 0x1p-23);
    test_fill_uniform(x, n, 6, -1e-3f, 1e-3f);
    ck_assert_double_le(max_rel_err(v8_expm1, expm1, x, n), 4.0 * 0x1p-23);
    _mm256_storeu_ps(out, v8_sigmoid(_mm256_loadu_ps(big)));
    ck_assert_float_eq(out[0], 1.0f);
    ck_assert_float_eq(out[1], 0.0f);
    ck_assert_float_eq(out[2], 1.0f);
    ck_assert_float_eq(out[3], 0.0f);
    ck_assert_float_eq(out[4], 0.5f);
    free(x);
#endif
}
END_TEST

Suite *suite_simd_math(void)
{
    Suite *s = suite_create("simd_math");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_v8_exp_matches_exp_to_a_few_ulp);
    tcase_add_test(tc, test_v8_exp_edge_cases);
    tcase_add_test(tc, test_v8_erfc_expm1_and_sigmoid_accuracy);
    suite_add_tcase(s, tc);
    return s;
}
