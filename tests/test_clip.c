#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../optim/clip.h"
#include "../src/ops/parallel.h"
#include "../src/threads.h"
#include "testutil.h"

static float *falloc(size_t n)
{
    float *x = calloc(n ? n : 1, sizeof(float));
    ck_assert(x);
    return x;
}

static double ref_norm(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

START_TEST(test_clip_norm_of_3_4_is_5)
{
    float g[2] = {3.0f, 4.0f};
    ck_assert(clip_global_norm(g, 2) == 5.0);
    ck_assert(clip_grad_norm(g, 2, 10.0) == 5.0);
    ck_assert(g[0] == 3.0f && g[1] == 4.0f); /* below max_norm: untouched */
    ck_assert(clip_grad_norm(g, 2, 1.0) == 5.0); /* returns the norm before clipping */
    float coef = (float)(1.0 / (5.0 + 1e-6));
    ck_assert(g[0] == 3.0f * coef && g[1] == 4.0f * coef);
    ck_assert_double_eq_tol(clip_global_norm(g, 2), 1.0, 1e-6); /* 5 / (5 + 1e-6) */
    ck_assert(clip_global_norm(g, 0) == 0.0);
}
END_TEST

START_TEST(test_clip_norm_matches_double_reference)
{
    const size_t sizes[] = {1, 7, 9, CLIP_BLOCK_MIN + 3, 100003, 5000011};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *g = falloc(n);
        test_fill_uniform(g, n, 11 + s, -3, 3);
        /* both sums are of n positive doubles: relative error <= n * 2^-53 */
        double want = ref_norm(g, n);
        ck_assert_double_eq_tol(clip_global_norm(g, n), want, want * (double)n * 1.2e-16);
        free(g);
    }
}
END_TEST

START_TEST(test_clip_scales_only_above_max_norm)
{
    const size_t n = 100003;
    float *g = falloc(n), *g0 = falloc(n);
    test_fill_uniform(g0, n, 5, -1, 1);
    double norm = ref_norm(g0, n);

    memcpy(g, g0, n * sizeof(float));
    clip_grad_norm(g, n, norm * 1.01);
    ck_assert(memcmp(g, g0, n * sizeof(float)) == 0);

    for (int r = 0; r < 2; r++) {
        double max_norm = r ? norm * 0.999 : 0.25;
        memcpy(g, g0, n * sizeof(float));
        double ret = clip_grad_norm(g, n, max_norm);
        ck_assert_double_eq_tol(ret, norm, norm * 1e-11);
        float coef = (float)(max_norm / (ret + 1e-6));
        for (size_t i = 0; i < n; i++) ck_assert(g[i] == g0[i] * coef);
        /* new norm: max_norm up to the float rounding of coef and of the products */
        ck_assert_double_eq_tol(ref_norm(g, n), max_norm, max_norm * 2e-7);
    }
    free(g), free(g0);
}
END_TEST

START_TEST(test_clip_nonfinite_gradient_gives_nonfinite_norm)
{
    float g[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    g[4] = INFINITY;
    ck_assert(isinf(clip_grad_norm(g, 9, 1.0)));
    g[4] = NAN;
    ck_assert(isnan(clip_global_norm(g, 9)));
}
END_TEST

START_TEST(test_clip_sumsq_avx2_matches_scalar_bitwise)
{
#if SIMD_AVX2
    for (size_t n = 1; n < 300; n += 7) {
        float *g = falloc(n);
        test_fill_uniform(g, n, n, -10, 10);
        double a = k_sumsq_avx2(g, n), b = k_sumsq_scalar(g, n);
        ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "n = %zu: %a vs %a", n, a, b);
        free(g);
    }
#endif
    /* block layout depends on n only */
    ck_assert_uint_eq(clip_block_len(10), CLIP_BLOCK_MIN);
    for (size_t n = 1000; n < 100000000; n = n * 3 + 1) {
        size_t bl = clip_block_len(n);
        ck_assert(bl % 8 == 0 && (n + bl - 1) / bl <= CLIP_MAX_BLOCKS);
    }
}
END_TEST

START_TEST(test_clip_same_bits_for_1_and_2_threads)
{
    const size_t n = 2000003; /* 245 blocks, split between threads */
    float *g0 = falloc(n), *g[2];
    double norm[2];
    test_fill_uniform(g0, n, 77, -0.01f, 0.01f);
    g0[12345] = 3.0f; /* a few large entries make the order matter */
    g0[n - 1] = -2.5f;
    for (int r = 0; r < 2; r++) {
        ck_assert_int_eq(threads_set(r + 1), r + 1);
        g[r] = falloc(n);
        memcpy(g[r], g0, n * sizeof(float));
        norm[r] = clip_grad_norm(g[r], n, 1.0);
    }
    ck_assert_msg(memcmp(&norm[0], &norm[1], sizeof(double)) == 0, "%a vs %a", norm[0], norm[1]);
    ck_assert(norm[0] > 1.0);
    ck_assert(memcmp(g[0], g[1], n * sizeof(float)) == 0);
    free(g0), free(g[0]), free(g[1]);
}
END_TEST

START_TEST(test_threads_set_sets_openmp_and_openblas)
{
    ck_assert_int_eq(threads_set(1), 1);
    ck_assert_int_eq(threads_get(), 1);
    ck_assert_int_eq(openblas_get_num_threads(), 1);
    ck_assert_int_eq(threads_set(2), 2);
    ck_assert_int_eq(omp_get_max_threads(), 2);
    ck_assert_int_eq(openblas_get_num_threads(), 2);
    /* n <= 0: OMP_NUM_THREADS (first entry), else all cores */
    const char *saved = getenv("OMP_NUM_THREADS");
    char *copy = saved ? strdup(saved) : NULL;
    setenv("OMP_NUM_THREADS", "3,1", 1);
    ck_assert_int_eq(threads_set(0), 3);
    ck_assert_int_eq(openblas_get_num_threads(), 3);
    setenv("OMP_NUM_THREADS", "1", 1);
    ck_assert_int_eq(threads_set(-1), 1);
    unsetenv("OMP_NUM_THREADS");
    ck_assert_int_eq(threads_set(0), omp_get_num_procs());
    setenv("OMP_NUM_THREADS", "junk", 1);
    ck_assert_int_eq(threads_set(0), omp_get_num_procs());
    if (copy) setenv("OMP_NUM_THREADS", copy, 1);
    else unsetenv("OMP_NUM_THREADS");
    free(copy);
    threads_set(0);
}
END_TEST

Suite *suite_clip(void)
{
    Suite *s = suite_create("clip");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_clip_norm_of_3_4_is_5);
    tcase_add_test(tc, test_clip_norm_matches_double_reference);
    tcase_add_test(tc, test_clip_scales_only_above_max_norm);
    tcase_add_test(tc, test_clip_nonfinite_gradient_gives_nonfinite_norm);
    tcase_add_test(tc, test_clip_sumsq_avx2_matches_scalar_bitwise);
    tcase_add_test(tc, test_clip_same_bits_for_1_and_2_threads);
    tcase_add_test(tc, test_threads_set_sets_openmp_and_openblas);
    suite_add_tcase(s, tc);
    return s;
}
