#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/init.h"
#include "testutil.h"

static float *falloc(size_t n)
{
    float *x = calloc(n ? n : 1, sizeof(float));
    ck_assert(x);
    return x;
}

static void moments(const float *x, size_t n, double *mean, double *var)
{
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *var = s2 / (double)n;
}

/* Statistical bounds are 5 standard errors (a fixed key makes each test
 * deterministic; 5 sigma keeps a correct generator far from the edge). */
START_TEST(test_uniform_range_mean_and_variance)
{
    const size_t n = 200000;
    const double lo = -0.5, hi = 2.0, w = hi - lo;
    float *x = falloc(n);
    Rng r;
    rng_init(&r, rng_derive_key(1, RNG_INIT, 0));
    init_uniform(x, n, &r, lo, hi);
    float mn = x[0], mx = x[0];
    for (size_t i = 0; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    ck_assert(mn >= (float)lo && mx < (float)hi);
    ck_assert(mn < lo + 1e-3 * w && mx > hi - 1e-3 * w); /* the whole range is used */
    double mean, var;
    moments(x, n, &mean, &var);
    double var_true = w * w / 12, mu4 = w * w * w * w / 80;
    ck_assert_double_eq_tol(mean, (lo + hi) / 2, 5 * sqrt(var_true / n));
    ck_assert_double_eq_tol(var, var_true, 5 * sqrt((mu4 - var_true * var_true) / n));
    free(x);
}
END_TEST

START_TEST(test_uniform_never_returns_hi_after_rounding)
{
    /* [1, 1 + 2^-23): every double draw rounds to 1 or to the float just
     * above, and about half of them would round up to hi = 1 + 2^-23 */
    const size_t n = 1000;
    float *x = falloc(n);
    Rng r;
    rng_init(&r, 3);
    const double hi = 1.0 + 0x1p-23;
    init_uniform(x, n, &r, 1.0, hi);
    for (size_t i = 0; i < n; i++) ck_assert(x[i] == 1.0f);
    free(x);
}
END_TEST

START_TEST(test_normal_mean_std_and_shape)
{
    const size_t n = 200000;
    const double mu = 0.3, sd = 2.0;
    float *x = falloc(n);
    Rng r;
    rng_init(&r, rng_derive_key(2, RNG_INIT, 5));
    init_normal(x, n, &r, mu, sd);
    double mean, var;
    moments(x, n, &mean, &var);
    ck_assert_double_eq_tol(mean, mu, 5 * sd / sqrt((double)n));
    ck_assert_double_eq_tol(var, sd * sd, 5 * sd * sd * sqrt(2.0 / n));
    size_t within = 0; /* P(|z| < 1) = 0.682689 for a normal */
    for (size_t i = 0; i < n; i++) within += fabs(x[i] - mu) < sd;
    double p = 0.682689492137;
    ck_assert_double_eq_tol((double)within / n, p, 5 * sqrt(p * (1 - p) / n));
    free(x);
}
END_TEST

START_TEST(test_draws_are_row_major_and_deterministic_per_key)
{
    const size_t n = 37;
    float a[37], b[37], c[37];
    Rng r1, r2, r3, ref;
    rng_init(&r1, 42), rng_init(&r2, 42), rng_init(&r3, 43), rng_init(&ref, 42);
    init_uniform(a, n, &r1, -1, 1);
    init_uniform(b, n, &r2, -1, 1);
    init_uniform(c, n, &r3, -1, 1);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    /* element i is the i-th draw of the stream */
    for (size_t i = 0; i < n; i++) ck_assert(a[i] == (float)(-1.0 + 2.0 * rng_uniform(&ref)));
    /* the stream continues where it stopped */
    ck_assert(r1.counter == ref.counter && r1.avail == ref.avail);
    init_normal(a, n, &r1, 0, 1);
    for (size_t i = 0; i < n; i++) ck_assert(a[i] == (float)rng_normal(&ref));
}
END_TEST

START_TEST(test_constant_and_linspace)
{
    float x[40];
    init_constant(x, 5, -1.5f);
    for (int i = 0; i < 5; i++) ck_assert(x[i] == -1.5f);

    init_linspace(x, 4, 4, 9); /* [4, 5.6667, 7.3333, 9] */
    ck_assert(x[0] == 4.0f && x[3] == 9.0f);
    ck_assert_float_eq_tol(x[1], 5.6666667f, 1e-6f);
    ck_assert_float_eq_tol(x[2], 7.3333333f, 1e-6f);
    x[1] = 123.0f;
    init_linspace(x, 1, 4, 9); /* a single head gets start */
    ck_assert(x[0] == 4.0f && x[1] == 123.0f);
    init_linspace(x, 0, 4, 9); /* writes nothing */
    ck_assert(x[0] == 4.0f);
    init_linspace(x, 2, 4, 9);
    ck_assert(x[0] == 4.0f && x[1] == 9.0f);
}
END_TEST

/* torch.linspace(a, b, n).tolist() printed with float.hex() (PyTorch 1.13.1, CPU). */
static const float TORCH_LIN_4_9_4[4] = {0x1p+2f, 0x1.6aaaaap+2f, 0x1.d55556p+2f, 0x1.2p+3f};
static const float TORCH_LIN_4_9_37[37] = {
    0x1p+2f,       0x1.08e38ep+2f, 0x1.11c71cp+2f, 0x1.1aaaaap+2f, 0x1.238e38p+2f, 0x1.2c71c8p+2f,
    0x1.355556p+2f, 0x1.3e38e4p+2f, 0x1.471c72p+2f, 0x1.5p+2f,     0x1.58e38ep+2f, 0x1.61c71cp+2f,
    0x1.6aaaacp+2f, 0x1.738e3ap+2f, 0x1.7c71c8p+2f, 0x1.855556p+2f, 0x1.8e38e4p+2f, 0x1.971c72p+2f,
    0x1.ap+2f,     0x1.a8e38ep+2f, 0x1.b1c71cp+2f, 0x1.baaaacp+2f, 0x1.c38e3ap+2f, 0x1.cc71c8p+2f,
    0x1.d55554p+2f, 0x1.de38e2p+2f, 0x1.e71c7p+2f, 0x1.effffep+2f, 0x1.f8e38cp+2f, 0x1.00e38ep+3f,
    0x1.055554p+3f, 0x1.09c71cp+3f, 0x1.0e38e4p+3f, 0x1.12aaaap+3f, 0x1.171c72p+3f, 0x1.1b8e38p+3f,
    0x1.2p+3f};
static const float TORCH_LIN_M33_71_19[19] = {
    -0x1.a66666p+1f, -0x1.5c71c8p+1f, -0x1.127d28p+1f, -0x1.911112p+0f, -0x1.fa4fa8p-1f,
    -0x1.a4fa5p-2f,  0x1.55554p-3f,   0x1.7d27c8p-1f,  0x1.527d24p+0f,  0x1.e66662p+0f,
    0x1.3d27dp+1f,   0x1.871c7p+1f,   0x1.d1110ep+1f,  0x1.0d82d8p+2f,  0x1.327d26p+2f,
    0x1.577774p+2f,  0x1.7c71c8p+2f,  0x1.a16c16p+2f,  0x1.c66666p+2f};

START_TEST(test_linspace_matches_torch_bit_for_bit)
{
    float x[37];
    init_linspace(x, 4, 4, 9);
    ck_assert(memcmp(x, TORCH_LIN_4_9_4, sizeof TORCH_LIN_4_9_4) == 0);
    init_linspace(x, 37, 4, 9); /* torch's 8-lane path: element 27 is 7.9999995, not 8 */
    ck_assert(memcmp(x, TORCH_LIN_4_9_37, sizeof TORCH_LIN_4_9_37) == 0);
    init_linspace(x, 19, -3.3, 7.1);
    ck_assert(memcmp(x, TORCH_LIN_M33_71_19, sizeof TORCH_LIN_M33_71_19) == 0);
}
END_TEST

START_TEST(test_linear_default_bounds_and_draw_order)
{
    ParamSet ps;
    paramset_init(&ps);
    Param *w = paramset_add(&ps, "w", 2, (int[]){6, 50});
    Param *b = paramset_add(&ps, "b", 1, (int[]){6});
    Param *conv = paramset_add(&ps, "conv", 3, (int[]){8, 1, 4});
    Param *bad_b = paramset_add(&ps, "bad_b", 1, (int[]){5});
    ck_assert(w && b && conv && bad_b);
    ck_assert_int_eq(paramset_finalize(&ps), 0);
    Rng r, ref;
    rng_init(&r, 7), rng_init(&ref, 7);
    ck_assert_int_eq(init_linear_default(w, b, &r), 0);
    const double bound = 1.0 / sqrt(50.0);
    double amax = 0.0;
    for (size_t i = 0; i < w->t.numel; i++) {
        ck_assert(fabs(w->t.data[i]) <= bound);
        amax = fmax(amax, fabs(w->t.data[i]));
        ck_assert(w->t.data[i] == (float)(-bound + 2 * bound * rng_uniform(&ref)));
    }
    ck_assert(amax > 0.9 * bound); /* 300 draws: the bound is really the bound */
    for (size_t i = 0; i < b->t.numel; i++) /* bias continues the stream */
        ck_assert(b->t.data[i] == (float)(-bound + 2 * bound * rng_uniform(&ref)));

    /* depthwise conv weight (C, 1, K): fan_in = K = 4, bound 1/2 */
    size_t fi, fo;
    ck_assert_int_eq(init_fans(&conv->t, &fi, &fo), 0);
    ck_assert_uint_eq(fi, 4);
    ck_assert_uint_eq(fo, 32);
    ck_assert_int_eq(init_linear_default(conv, NULL, &r), 0);
    amax = 0.0;
    for (size_t i = 0; i < conv->t.numel; i++) amax = fmax(amax, fabs(conv->t.data[i]));
    ck_assert(amax <= 0.5 && amax > 0.3);

    /* errors: 1-D weight, bias of the wrong size */
    ck_assert_int_eq(init_linear_default(b, NULL, &r), -1);
    ck_assert_int_eq(init_linear_default(w, bad_b, &r), -1);
    paramset_free(&ps);
}
END_TEST

START_TEST(test_xavier_uniform_bound_and_variance)
{
    ParamSet ps;
    paramset_init(&ps);
    Param *w = paramset_add(&ps, "w", 2, (int[]){200, 300});
    ck_assert(w);
    ck_assert_int_eq(paramset_finalize(&ps), 0);
    Rng r;
    rng_init(&r, 11);
    ck_assert_int_eq(init_xavier_uniform(w, &r, 0.1), 0);
    const double bound = 0.1 * sqrt(6.0 / 500.0);
    double mean, var;
    for (size_t i = 0; i < w->t.numel; i++) ck_assert(fabs(w->t.data[i]) <= bound);
    moments(w->t.data, w->t.numel, &mean, &var);
    const double n = (double)w->t.numel, v = bound * bound / 3, mu4 = pow(2 * bound, 4) / 80;
    ck_assert_double_eq_tol(var, v, 5 * sqrt((mu4 - v * v) / n)); /* gain^2 * 2/(fan_in+fan_out) */
    ck_assert_double_eq_tol(mean, 0.0, 5 * sqrt(v / n));
    paramset_free(&ps);
}
END_TEST

Suite *suite_init(void)
{
    Suite *s = suite_create("init");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_uniform_range_mean_and_variance);
    tcase_add_test(tc, test_uniform_never_returns_hi_after_rounding);
    tcase_add_test(tc, test_normal_mean_std_and_shape);
    tcase_add_test(tc, test_draws_are_row_major_and_deterministic_per_key);
    tcase_add_test(tc, test_constant_and_linspace);
    tcase_add_test(tc, test_linspace_matches_torch_bit_for_bit);
    tcase_add_test(tc, test_linear_default_bounds_and_draw_order);
    tcase_add_test(tc, test_xavier_uniform_bound_and_variance);
    suite_add_tcase(s, tc);
    return s;
}
