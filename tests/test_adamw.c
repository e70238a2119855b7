#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../optim/adamw.h"
#include "../src/ops/parallel.h"
#include "../src/threads.h"
#include "testutil.h"

/* Index of the first element whose bits differ, or -1. */
static long first_diff(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            fprintf(stderr, "first difference at %zu: %a vs %a\n", i, (double)a[i], (double)b[i]);
            return (long)i;
        }
    return -1;
}

static float *falloc(size_t n)
{
    float *x = calloc(n ? n : 1, sizeof(float));
    ck_assert(x);
    return x;
}

/* ------------------------------------------------------------------------
 * Independent check 1: the AdamW formulas in double, three steps by hand. */
START_TEST(test_adamw_three_steps_match_double_precision_formulas)
{
    enum { N = 5, STEPS = 3 };
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    const double lrs[STEPS] = {1e-2, 4e-3, 2.5e-2};
    /* element 2: zero gradient (pure weight decay); element 3: gradients
     * ~1e-9 where sqrt(v)/sqrt(bc2) is comparable to eps */
    const float p0[N] = {0.5f, -1.25f, 1.5f, 0.75f, -0.3f};
    const float grads[STEPS][N] = {{0.2f, -1.5f, 0.0f, 1e-9f, 3.0f},
                                   {0.1f, -0.5f, 0.0f, 2e-9f, -2.0f},
                                   {0.4f, -2.5f, 0.0f, 1e-9f, 0.5f}};
    double p[N], m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++) p[i] = p0[i];

    AdamW opt;
    ck_assert_int_eq(adamw_init(&opt, N, (AdamWConfig){b1, b2, eps, wd}), 0);
    float pf[N];
    memcpy(pf, p0, sizeof pf);
    for (int t = 1; t <= STEPS; t++) {
        double lr = lrs[t - 1];
        for (int i = 0; i < N; i++) {
            double g = grads[t - 1][i];
            p[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
            p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
        }
        adamw_step(&opt, pf, grads[t - 1], lr);
        ck_assert_int_eq(opt.t, t);
    }
    /* Element 2 only decays: p0 * prod(1 - lr wd). */
    ck_assert_double_eq_tol(p[2], 1.5 * (1 - 1e-3) * (1 - 4e-4) * (1 - 2.5e-3), 1e-15);
    /* float32 vs double: |p| <= 2 and ~3 roundings per step (ulp(2) = 2.4e-7)
     * plus the float rounding of beta1/beta2 (relative 3e-8): 1e-6 absolute. */
    for (int i = 0; i < N; i++) {
        ck_assert_msg(fabs(pf[i] - p[i]) <= 1e-6, "p[%d] = %.9g, want %.9g", i, pf[i], p[i]);
        ck_assert_msg(fabs(opt.m[i] - m[i]) <= 1e-7 + 1e-6 * fabs(m[i]), "m[%d] = %.9g, want %.9g", i,
                      opt.m[i], m[i]);
        ck_assert_msg(fabs(opt.v[i] - v[i]) <= 1e-6 * fabs(v[i]), "v[%d] = %.9g, want %.9g", i,
                      opt.v[i], v[i]);
    }
    /* The tiny-gradient element really exercised eps: the update differs
     * markedly from the eps-free one (which would be ~lr * sign(m)). */
    ck_assert(fabs(pf[3] - p0[3] * (1 - 1e-3) * (1 - 4e-4) * (1 - 2.5e-3)) < 0.8 * (1e-2 + 4e-3 + 2.5e-2));
    adamw_free(&opt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Independent check 2: numbers produced by PyTorch 1.13.1 (CPU, AVX2) with
 *
 *   g = torch.Generator().manual_seed(2024)
 *   p0 = torch.rand(19, generator=g) * 4 - 2
 *   grads = [torch.randn(19, generator=g) * s for s in (1.0, 0.1, 3.0)]; grads[k][5] = 0
 *   opt = torch.optim.AdamW([p], lr=.., betas=(0.9, 0.999), eps=1e-8,
 *                           weight_decay=0.1, foreach=False)
 *   lr per step 1e-2, 5e-3, 2e-2 (set in opt.param_groups before each step)
 *
 * printed with float.hex().  19 elements cover torch's 16-wide vector path
 * and its scalar tail.  Our kernel performs the same float operations, so
 * the match is exact. */
static const float TORCH_P0[19] = {
    0x1.03d1p-3f, 0x1.5337e8p+0f, 0x1.e3298p+0f, -0x1.85d6p+0f, -0x1.551794p+0f, -0x1.344eep-1f,
    -0x1.23d908p+0f, 0x1.ec0b7p-2f, -0x1.f06b8p-5f, 0x1.fe63f8p-1f, -0x1.6440fcp+0f,
    0x1.0013cp-2f, -0x1.4e5c74p+0f, 0x1.a3025p-1f, 0x1.b4c508p+0f, -0x1.80a2p-2f,
    -0x1.9062d8p-1f, 0x1.a117fp+0f, 0x1.0e0fc4p+0f,
};

static const float TORCH_G1[19] = {
    0x1.a857f2p-2f, 0x1.db51eep+0f, 0x1.fa42dap+0f, -0x1.cb3b62p-1f, 0x1.436f3ep+0f, 0x0p+0f,
    -0x1.2fb34p-1f, -0x1.07e144p-1f, 0x1.0af828p-1f, -0x1.7356e6p-2f, -0x1.10d08cp+0f,
    0x1.1b04e6p-2f, -0x1.ec09ap-3f, 0x1.3bc9b4p-2f, -0x1.d84d2ep-1f, -0x1.f63fbap-1f,
    0x1.99a384p+0f, 0x1.8fecfp+1f, -0x1.1cf3f2p-1f,
};

static const float TORCH_G2[19] = {
    -0x1.46f71ep-4f, 0x1.abb82ep-4f, 0x1.d128fp-4f, -0x1.a27a66p-4f, -0x1.50f85ap-4f, 0x0p+0f,
    -0x1.87fe4ap-4f, -0x1.80f498p-7f, -0x1.bfb9fep-4f, 0x1.1b0cdep-4f, -0x1.fc883ap-4f,
    -0x1.a3885ap-6f, 0x1.867f56p-7f, 0x1.e974b4p-6f, -0x1.d319bep-3f, -0x1.656736p-4f,
    0x1.2113a2p-3f, -0x1.37240ep-5f, 0x1.2e59cep-6f,
};

static const float TORCH_G3[19] = {
    -0x1.e176e8p+0f, 0x1.59fa68p+1f, -0x1.596ab8p+1f, 0x1.8c645cp+2f, 0x1.1f0fbcp+0f, 0x0p+0f,
    -0x1.b94242p+1f, 0x1.687d3ap+0f, 0x1.438616p+0f, 0x1.07f408p+2f, 0x1.b95d78p-1f,
    -0x1.247d88p+2f, -0x1.e3265ep+1f, -0x1.33fca8p+0f, 0x1.b3ab94p+0f, -0x1.bccda4p+2f,
    0x1.c411a8p-1f, 0x1.6f9b08p+1f, 0x1.c2e3d8p-1f,
};

static const float TORCH_P1[19] = {
    0x1.de2736p-4f, 0x1.5051b6p+0f, 0x1.e01e74p+0f, -0x1.82e2d8p+0f, -0x1.574f9ep+0f,
    -0x1.33fff2p-1f, -0x1.20fef6p+0f, 0x1.f5caeap-2f, -0x1.20ebf8p-4f, 0x1.018004p+0f,
    -0x1.61566cp+0f, 0x1.eb2982p-3f, -0x1.4b778p+0f, 0x1.9d7854p-1f, 0x1.b6e494p+0f,
    -0x1.76021ap-2f, -0x1.951b1p-1f, 0x1.9e1dcep+0f, 0x1.1059fep+0f,
};

static const float TORCH_P2[19] = {
    0x1.d352c6p-4f, 0x1.4f3dbep+0f, 0x1.def7cep+0f, -0x1.81bb8ep+0f, -0x1.57eeecp+0f,
    -0x1.33d884p-1f, -0x1.1fda5ap+0f, 0x1.f90ef2p-2f, -0x1.2b145ap-4f, 0x1.020912p+0f,
    -0x1.6032ep+0f, 0x1.e4c9a8p-3f, -0x1.4a7ddcp+0f, 0x1.9b5f46p-1f, 0x1.b7bc18p+0f,
    -0x1.7210f8p-2f, -0x1.96c782p-1f, 0x1.9d1036p+0f, 0x1.110a7ep+0f,
};

static const float TORCH_P3[19] = {
    0x1.fe4a38p-4f, 0x1.4a4824p+0f, 0x1.defb6cp+0f, -0x1.83c524p+0f, -0x1.5b408ap+0f,
    -0x1.333ae6p-1f, -0x1.1b8682p+0f, 0x1.ef7f08p-2f, -0x1.6712fep-4f, 0x1.fce39cp-1f,
    -0x1.5f39d4p+0f, 0x1.fcc9cap-3f, -0x1.466854p+0f, 0x1.9f6d7ap-1f, 0x1.b598f8p+0f,
    -0x1.62bebep-2f, -0x1.9e33a8p-1f, 0x1.9818fcp+0f, 0x1.0f17d2p+0f,
};

static const float TORCH_M3[19] = {
    -0x1.4b2432p-3f, 0x1.b868fp-2f, -0x1.975af2p-4f, 0x1.13353cp-1f, 0x1.a81234p-3f, 0x0p+0f,
    -0x1.9b06bep-2f, 0x1.91752ep-4f, 0x1.452b5cp-3f, 0x1.8e9d86p-2f, -0x1.71f2c4p-7f,
    -0x1.bf6b7ep-2f, -0x1.955962p-2f, -0x1.7b737ap-4f, 0x1.32f164p-4f, -0x1.908bacp-1f,
    0x1.d84a56p-3f, 0x1.12de32p-1f, 0x1.6dbb1cp-5f,
};

static const float TORCH_V3[19] = {
    0x1.e6e9f6p-9f, 0x1.607f5cp-7f, 0x1.6ef11cp-7f, 0x1.40ea7ep-5f, 0x1.767f12p-9f, 0x0p+0f,
    0x1.913986p-7f, 0x1.26ab7p-9f, 0x1.ecee04p-10f, 0x1.18e9eap-6f, 0x1.eff4cp-10f,
    0x1.577654p-6f, 0x1.d4c288p-7f, 0x1.9489c8p-10f, 0x1.f1bd6cp-9f, 0x1.93a122p-5f,
    0x1.b7ba9ap-9f, 0x1.26c738p-6f, 0x1.1c6d46p-10f,
};

static void check_against_torch(bool scalar_kernel)
{
    enum { N = 19 };
    const float *grads[3] = {TORCH_G1, TORCH_G2, TORCH_G3};
    const float *want[3] = {TORCH_P1, TORCH_P2, TORCH_P3};
    const double lrs[3] = {1e-2, 5e-3, 2e-2};
    AdamW opt;
    ck_assert_int_eq(adamw_init(&opt, N, (AdamWConfig){0.9, 0.999, 1e-8, 0.1}), 0);
    float p[N];
    memcpy(p, TORCH_P0, sizeof p);
    for (int k = 0; k < 3; k++) {
        if (scalar_kernel) {
            opt.t++;
            AdamWCoeffs c = adamw_coeffs(&opt.cfg, lrs[k], opt.t);
            k_adamw_scalar(p, grads[k], opt.m, opt.v, N, &c);
        } else {
            adamw_step(&opt, p, grads[k], lrs[k]);
        }
        ck_assert_msg(first_diff(p, want[k], N) < 0, "params differ from torch after step %d", k + 1);
    }
    ck_assert_msg(first_diff(opt.m, TORCH_M3, N) < 0, "exp_avg differs from torch");
    ck_assert_msg(first_diff(opt.v, TORCH_V3, N) < 0, "exp_avg_sq differs from torch");
    adamw_free(&opt);
}

START_TEST(test_adamw_matches_torch_bit_for_bit) { check_against_torch(false); }
END_TEST

START_TEST(test_adamw_scalar_kernel_matches_torch_bit_for_bit) { check_against_torch(true); }
END_TEST

/* Random problem: p, and STEPS gradients of different scales. */
static void random_problem(size_t n, float *p, float *g, int steps, uint64_t seed)
{
    test_fill_uniform(p, n, seed, -2, 2);
    for (int k = 0; k < steps; k++) test_fill_uniform(g + (size_t)k * n, n, seed + 1 + k, -1, 1);
    for (int k = 0; k < steps; k++)
        for (size_t i = 0; i < n; i++) g[(size_t)k * n + i] *= (float)pow(10.0, -(k % 4));
}

START_TEST(test_adamw_avx2_kernel_matches_scalar_bitwise)
{
#if SIMD_AVX2
    const size_t sizes[] = {1, 7, 8, 9, 31, KERNEL_BLOCK + 5, KERNEL_PAR_MIN + 13};
    enum { STEPS = 4 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *p1 = falloc(n), *p2 = falloc(n), *g = falloc(n * STEPS);
        float *m1 = falloc(n), *v1 = falloc(n), *m2 = falloc(n), *v2 = falloc(n);
        random_problem(n, p1, g, STEPS, 40 + s);
        memcpy(p2, p1, n * sizeof(float));
        AdamWConfig cfg = {0.9, 0.95, 1e-8, 0.05};
        for (int k = 0; k < STEPS; k++) {
            AdamWCoeffs c = adamw_coeffs(&cfg, 1e-2 * (k + 1), k + 1);
            k_adamw_scalar(p1, g + (size_t)k * n, m1, v1, n, &c);
            k_adamw_avx2(p2, g + (size_t)k * n, m2, v2, n, &c);
        }
        ck_assert_msg(first_diff(p2, p1, n) < 0, "p differs, n = %zu", n);
        ck_assert_msg(first_diff(m2, m1, n) < 0, "m differs, n = %zu", n);
        ck_assert_msg(first_diff(v2, v1, n) < 0, "v differs, n = %zu", n);
        free(p1), free(p2), free(g), free(m1), free(v1), free(m2), free(v2);
    }
#endif
}
END_TEST

START_TEST(test_adamw_same_bits_for_1_and_2_threads)
{
    /* large enough for PARALLEL_BLOCKS to split the work between threads */
    const size_t n = 3 * KERNEL_PAR_MIN + 77;
    enum { STEPS = 3 };
    float *g = falloc(n * STEPS), *p_init = falloc(n);
    float *p[2], *m[2], *v[2];
    random_problem(n, p_init, g, STEPS, 7);
    for (int r = 0; r < 2; r++) {
        ck_assert_int_eq(threads_set(r + 1), r + 1);
        p[r] = falloc(n);
        memcpy(p[r], p_init, n * sizeof(float));
        AdamW opt;
        ck_assert_int_eq(adamw_init(&opt, n, (AdamWConfig){0.9, 0.999, 1e-8, 0.1}), 0);
        for (int k = 0; k < STEPS; k++) adamw_step(&opt, p[r], g + (size_t)k * n, 3e-3);
        m[r] = opt.m, v[r] = opt.v; /* the state is freed below */
    }
    ck_assert(first_diff(p[0], p[1], n) < 0);
    ck_assert(first_diff(m[0], m[1], n) < 0);
    ck_assert(first_diff(v[0], v[1], n) < 0);
    for (int r = 0; r < 2; r++) free(p[r]), free(m[r]), free(v[r]);
    free(g), free(p_init);
}
END_TEST

START_TEST(test_adamw_restored_state_continues_bit_identically)
{
    const size_t n = 1003;
    enum { STEPS = 6, SAVE_AT = 2 };
    float *g = falloc(n * STEPS), *p = falloc(n), *p_saved = falloc(n);
    float *m_saved = falloc(n), *v_saved = falloc(n);
    random_problem(n, p, g, STEPS, 99);
    AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.01};
    AdamW a;
    ck_assert_int_eq(adamw_init(&a, n, cfg), 0);
    int64_t t_saved = 0;
    for (int k = 0; k < STEPS; k++) {
        if (k == SAVE_AT) {
            memcpy(p_saved, p, n * sizeof(float));
            memcpy(m_saved, a.m, n * sizeof(float));
            memcpy(v_saved, a.v, n * sizeof(float));
            t_saved = a.t;
        }
        adamw_step(&a, p, g + (size_t)k * n, 1e-3 * (k + 1));
    }
    AdamW b;
    ck_assert_int_eq(adamw_init(&b, n, cfg), 0);
    ck_assert_int_eq(adamw_set_state(&b, m_saved, v_saved, n - 1, t_saved), -1);
    ck_assert_int_eq(adamw_set_state(&b, m_saved, v_saved, n, t_saved), 0);
    ck_assert_int_eq(b.t, SAVE_AT);
    for (int k = SAVE_AT; k < STEPS; k++) adamw_step(&b, p_saved, g + (size_t)k * n, 1e-3 * (k + 1));
    ck_assert_int_eq(b.t, a.t);
    ck_assert(first_diff(p_saved, p, n) < 0);
    ck_assert(first_diff(b.m, a.m, n) < 0);
    ck_assert(first_diff(b.v, a.v, n) < 0);
    adamw_free(&a), adamw_free(&b);
    free(g), free(p), free(p_saved), free(m_saved), free(v_saved);
}
END_TEST

START_TEST(test_adamw_paramset_decays_all_params_and_keeps_padding_zero)
{
    ParamSet ps;
    paramset_init(&ps);
    Param *w = paramset_add(&ps, "w", 2, (int[]){3, 5});
    Param *b = paramset_add(&ps, "b", 1, (int[]){3});
    ck_assert(w && b);
    ck_assert_int_eq(paramset_finalize(&ps), 0);
    ck_assert(ps.total > paramset_count(&ps)); /* there is padding */
    for (size_t i = 0; i < w->t.numel; i++) w->t.data[i] = 1.0f, w->t.grad[i] = 0.5f;
    for (size_t i = 0; i < b->t.numel; i++) b->t.data[i] = 2.0f; /* zero gradient */
    AdamW opt;
    ck_assert_int_eq(adamw_init_params(&opt, &ps, (AdamWConfig){0.9, 0.999, 1e-8, 0.1}), 0);
    ck_assert_uint_eq(opt.n, ps.total);
    adamw_step_params(&opt, &ps, 0.01);
    /* bias: no gradient, so only the decoupled decay 2 * (1 - 0.001) */
    for (size_t i = 0; i < b->t.numel; i++) ck_assert_float_eq(b->t.data[i], 2.0f * (float)(1.0 - 0.001));
    /* weights: decay then a first Adam step of exactly -lr (m/sqrt(v) = 1 after bias correction) */
    for (size_t i = 0; i < w->t.numel; i++) ck_assert_float_eq_tol(w->t.data[i], 0.999f - 0.01f, 1e-6f);
    /* padding (between w and b, and after b) stays exactly +0 with zero state */
    for (size_t i = 0; i < ps.total; i++) {
        int in_w = i >= w->offset && i < w->offset + w->t.numel;
        int in_b = i >= b->offset && i < b->offset + b->t.numel;
        if (in_w || in_b) continue;
        ck_assert_msg(ps.data[i] == 0.0f && !signbit(ps.data[i]) && opt.m[i] == 0.0f && opt.v[i] == 0.0f,
                      "padding element %zu changed", i);
    }
    adamw_free(&opt);
    paramset_free(&ps);
}
END_TEST

Suite *suite_adamw(void)
{
    Suite *s = suite_create("adamw");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_adamw_three_steps_match_double_precision_formulas);
    tcase_add_test(tc, test_adamw_matches_torch_bit_for_bit);
    tcase_add_test(tc, test_adamw_scalar_kernel_matches_torch_bit_for_bit);
    tcase_add_test(tc, test_adamw_avx2_kernel_matches_scalar_bitwise);
    tcase_add_test(tc, test_adamw_same_bits_for_1_and_2_threads);
    tcase_add_test(tc, test_adamw_restored_state_continues_bit_identically);
    tcase_add_test(tc, test_adamw_paramset_decays_all_params_and_keeps_padding_zero);
    suite_add_tcase(s, tc);
    return s;
}
