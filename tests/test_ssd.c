#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops/ssd.h"
#include "../src/ops.h"
#include "testutil.h"

/* ------------------------------------------------------------ references */

typedef struct Shape {
    int B, L, H, P, N;
} Shape;

typedef struct Inputs {
    Shape s;
    Tensor *x, *Bm, *Cm, *la;
} Inputs;

static Inputs make_inputs(Shape s, uint64_t seed, float la_lo, float la_hi)
{
    Inputs in = {.s = s};
    in.x = test_tensor(3, (int[]){s.B, s.L, s.H * s.P}, true);
    in.Bm = test_tensor(3, (int[]){s.B, s.L, s.N}, true);
    in.Cm = test_tensor(3, (int[]){s.B, s.L, s.N}, true);
    in.la = test_tensor(3, (int[]){s.B, s.L, s.H}, true);
    test_fill_uniform(in.x->data, in.x->numel, seed, -1, 1);
    test_fill_uniform(in.Bm->data, in.Bm->numel, seed + 1, -0.7f, 0.7f);
    test_fill_uniform(in.Cm->data, in.Cm->numel, seed + 2, -0.7f, 0.7f);
    test_fill_uniform(in.la->data, in.la->numel, seed + 3, la_lo, la_hi);
    return in;
}

static void free_inputs(Inputs *in)
{
    test_tensor_free(in->x);
    test_tensor_free(in->Bm);
    test_tensor_free(in->Cm);
    test_tensor_free(in->la);
}

/* Explicit recurrence in float64.  y (B, L, H*P).  If dy is given, also
 * backpropagate through the recurrence into dx, dB, dC, dla (overwritten). */
static void ref_scan(const Inputs *in, double *y, const double *dy, double *dx, double *dB,
                     double *dC, double *dla)
{
    const Shape s = in->s;
    const int HP = s.H * s.P, PN = s.P * s.N;
    double *S = malloc(sizeof(double) * (size_t)(s.L + 1) * PN); /* S[t+1] = S_t, S[0] = 0 */
    double *dS = malloc(sizeof(double) * PN);
    if (dy) {
        memset(dx, 0, sizeof(double) * in->x->numel);
        memset(dB, 0, sizeof(double) * in->Bm->numel);
        memset(dC, 0, sizeof(double) * in->Cm->numel);
        memset(dla, 0, sizeof(double) * in->la->numel);
    }
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++) {
            const float *x = in->x->data + (size_t)b * s.L * HP + h * s.P;
            const float *Bm = in->Bm->data + (size_t)b * s.L * s.N;
            const float *Cm = in->Cm->data + (size_t)b * s.L * s.N;
            const float *la = in->la->data + (size_t)b * s.L * s.H + h;
            memset(S, 0, sizeof(double) * PN);
            for (int t = 0; t < s.L; t++) {
                double a = exp((double)la[t * s.H]);
                double *Sp = S + (size_t)t * PN, *St = S + (size_t)(t + 1) * PN;
                for (int p = 0; p < s.P; p++)
                    for (int n = 0; n < s.N; n++)
                        St[p * s.N + n] = a * Sp[p * s.N + n] +
                                          (double)x[t * HP + p] * Bm[t * s.N + n];
                for (int p = 0; p < s.P; p++) {
                    double acc = 0;
                    for (int n = 0; n < s.N; n++) acc += St[p * s.N + n] * Cm[t * s.N + n];
                    y[((size_t)b * s.L + t) * HP + h * s.P + p] = acc;
                }
            }
            if (!dy) continue;
            memset(dS, 0, sizeof(double) * PN);
            for (int t = s.L - 1; t >= 0; t--) {
                const double *St = S + (size_t)(t + 1) * PN, *Sp = S + (size_t)t * PN;
                const size_t ry = ((size_t)b * s.L + t) * HP + h * s.P;
                const size_t rb = ((size_t)b * s.L + t) * s.N;
                /* y_t = S_t C_t */
                for (int p = 0; p < s.P; p++)
                    for (int n = 0; n < s.N; n++) {
                        dS[p * s.N + n] += dy[ry + p] * Cm[t * s.N + n];
                        dC[rb + n] += St[p * s.N + n] * dy[ry + p];
                    }
                /* S_t = a_t S_{t-1} + x_t B_t^T */
                double a = exp((double)la[t * s.H]), g = 0;
                for (int p = 0; p < s.P; p++)
                    for (int n = 0; n < s.N; n++) {
                        double d = dS[p * s.N + n];
                        dx[ry + p] += d * Bm[t * s.N + n];
                        dB[rb + n] += d * x[t * HP + p];
                        g += d * Sp[p * s.N + n];
                        dS[p * s.N + n] = a * d;
                    }
                dla[((size_t)b * s.L + t) * s.H + h] += a * g;
            }
        }
    free(S);
    free(dS);
}

static double max_abs_d(const double *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* max |got - ref| / max |ref| (norm-wise relative error); 0 if ref == 0 and got == 0 */
static double rel_err(const float *got, const double *ref, size_t n)
{
    double m = max_abs_d(ref, n), e = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        e = fmax(e, fabs((double)got[i] - ref[i]));
    }
    return m > 0 ? e / m : e;
}

/* Forward (and backward seeded with dy, if given) of the fast op. */
static Tensor *run_fast(Graph *g, const Inputs *in, int chunk, const float *dy)
{
    graph_begin(g, 0, false, dy != NULL);
    for (Tensor **t = (Tensor *[]){in->x, in->Bm, in->Cm, in->la, NULL}; *t; t++) (*t)->grad = NULL;
    Tensor *y = op_ssd_scan_chunked(g, in->x, in->Bm, in->Cm, in->la, in->s.H, chunk);
    if (dy) graph_backward_from(g, y, dy);
    return y;
}

/* Fast forward and backward against the float64 recurrence; returns the
 * worst norm-wise relative error over y and the four gradients. */
static double compare_with_reference(const Inputs *in, int chunk, bool backward)
{
    size_t ny = in->x->numel;
    double *y = malloc(sizeof(double) * ny), *dyd = malloc(sizeof(double) * ny);
    double *dx = malloc(sizeof(double) * ny), *dB = malloc(sizeof(double) * in->Bm->numel),
           *dC = malloc(sizeof(double) * in->Cm->numel), *dla = malloc(sizeof(double) * in->la->numel);
    float *dy = malloc(sizeof(float) * ny);
    test_fill_uniform(dy, ny, 777, -1, 1);
    for (size_t i = 0; i < ny; i++) dyd[i] = dy[i];
    ref_scan(in, y, backward ? dyd : NULL, dx, dB, dC, dla);

    Graph g;
    graph_init(&g, 0, 1);
    Tensor *yt = run_fast(&g, in, chunk, backward ? dy : NULL);
    double worst = rel_err(yt->data, y, ny);
    if (backward) {
        ck_assert(in->x->grad && in->Bm->grad && in->Cm->grad && in->la->grad);
        worst = fmax(worst, rel_err(in->x->grad, dx, ny));
        worst = fmax(worst, rel_err(in->Bm->grad, dB, in->Bm->numel));
        worst = fmax(worst, rel_err(in->Cm->grad, dC, in->Cm->numel));
        worst = fmax(worst, rel_err(in->la->grad, dla, in->la->numel));
    }
    graph_free(&g);
    free(y), free(dyd), free(dx), free(dB), free(dC), free(dla), free(dy);
    return worst;
}

/* ---------------------------------------------------------------- tests */

START_TEST(test_ssd_forward_matches_sequential_recurrence)
{
    const Shape shapes[] = {{2, 7, 2, 3, 4}, {1, 1, 1, 1, 1}, {3, 1, 2, 5, 3},
                            {2, 77, 2, 5, 6}, {2, 150, 3, 8, 16}, {1, 64, 1, 16, 9}};
    const int chunks[] = {8, 16, 64};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (size_t c = 0; c < 3; c++) {
            Inputs in = make_inputs(shapes[i], 10 + i, -2, 0);
            double e = compare_with_reference(&in, chunks[c], false);
            ck_assert_msg(e < 2e-6, "shape %zu chunk %d: forward rel err %g", i, chunks[c], e);
            free_inputs(&in);
        }
}
END_TEST

START_TEST(test_ssd_backward_matches_reference_backward)
{
    /* medium shape, L = 150 is not a multiple of any chunk */
    const int chunks[] = {8, 16, 32, 64, 128, 256};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        Inputs in = make_inputs((Shape){2, 150, 2, 8, 16}, 21, -2, 0);
        double e = compare_with_reference(&in, chunks[c], true);
        ck_assert_msg(e < 1e-5, "chunk %d: rel err %g", chunks[c], e);
        free_inputs(&in);
    }
}
END_TEST

START_TEST(test_ssd_strong_and_no_decay_stay_finite_and_correct)
{
    /* log_a = -30: products of decays fall far below float range inside and
     * across chunks; log_a = 0: y grows linearly along the sequence; a mix
     * of both (uniform in [-30, 0]) stresses the float64 cumulative sums. */
    const float las[][2] = {{-30, -30}, {0, 0}, {-30, 0}, {-60, -40}};
    for (size_t i = 0; i < sizeof las / sizeof las[0]; i++) {
        Inputs in = make_inputs((Shape){2, 150, 2, 8, 16}, 31 + i, las[i][0], las[i][1]);
        double e = compare_with_reference(&in, 64, true);
        ck_assert_msg(e < 1e-5, "log_a in [%g, %g]: rel err %g", las[i][0], las[i][1], e);
        free_inputs(&in);
    }
    /* a long sequence without decay: many chunks of state carried at full weight */
    Inputs in = make_inputs((Shape){1, 700, 1, 4, 4}, 41, 0, 0);
    double e = compare_with_reference(&in, 64, true);
    ck_assert_msg(e < 1e-5, "long, no decay: rel err %g", e);
    free_inputs(&in);
}
END_TEST

typedef struct FwdCtx {
    int H, chunk;
    bool twice;
} FwdCtx;

static Tensor *fwd_ssd(Graph *g, Tensor **in, void *vctx)
{
    FwdCtx *c = vctx;
    Tensor *y = op_ssd_scan_chunked(g, in[0], in[1], in[2], in[3], c->H, c->chunk);
    /* used twice, with B and C swapped: gradients must accumulate */
    if (c->twice) y = op_add(g, y, op_ssd_scan_chunked(g, in[0], in[2], in[1], in[3], c->H, c->chunk));
    return y;
}

START_TEST(test_ssd_gradients_match_finite_differences)
{
    struct {
        Shape s;
        int chunk;
        size_t max_probe;
        bool twice;
    } cases[] = {
        {{2, 7, 2, 3, 4}, 64, 0, false},
        {{2, 7, 2, 3, 4}, 8, 0, true},
        {{2, 1, 2, 3, 4}, 64, 0, false},
        {{1, 19, 1, 5, 3}, 8, 0, false},   /* three chunks, last one partial */
        {{1, 77, 2, 3, 2}, 64, 60, false}, /* default chunk: 64 + 13 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Inputs in = make_inputs(cases[i].s, 50 + i, -2, 0);
        FwdCtx ctx = {cases[i].s.H, cases[i].chunk, cases[i].twice};
        GradcheckOpts o = GRADCHECK_DEFAULTS;
        o.max_probe = cases[i].max_probe;
        ck_assert_msg(gradcheck("ssd", fwd_ssd, &ctx, (Tensor *[]){in.x, in.Bm, in.Cm, in.la}, 4, o),
                      "case %zu", i);
        free_inputs(&in);
    }
}
END_TEST

START_TEST(test_ssd_only_requested_gradients_are_computed)
{
    Inputs in = make_inputs((Shape){2, 40, 2, 4, 5}, 61, -1, 0);
    size_t ny = in.x->numel;
    float *dy = malloc(sizeof(float) * ny);
    test_fill_uniform(dy, ny, 5, -1, 1);
    Graph g;
    graph_init(&g, 0, 1);
    run_fast(&g, &in, 16, dy);
    float *dx_all = malloc(sizeof(float) * ny), *dB_all = malloc(sizeof(float) * in.Bm->numel);
    memcpy(dx_all, in.x->grad, sizeof(float) * ny);
    memcpy(dB_all, in.Bm->grad, sizeof(float) * in.Bm->numel);

    /* x and Bm only: no saved states needed, same values */
    in.Cm->requires_grad = in.la->requires_grad = false;
    run_fast(&g, &in, 16, dy);
    ck_assert_ptr_null(in.Cm->grad);
    ck_assert_ptr_null(in.la->grad);
    ck_assert_int_eq(memcmp(in.x->grad, dx_all, sizeof(float) * ny), 0);
    ck_assert_int_eq(memcmp(in.Bm->grad, dB_all, sizeof(float) * in.Bm->numel), 0);

    /* nothing requires grad: nothing is recorded */
    in.x->requires_grad = in.Bm->requires_grad = false;
    graph_begin(&g, 0, false, true);
    Tensor *y = op_ssd_scan(&g, in.x, in.Bm, in.Cm, in.la, 2);
    ck_assert(!y->requires_grad);
    ck_assert_int_eq((int)g.n_entries, 0);
    graph_free(&g);
    free(dy), free(dx_all), free(dB_all);
    free_inputs(&in);
}
END_TEST

START_TEST(test_ssd_bit_identical_for_1_and_2_threads)
{
    Inputs in = make_inputs((Shape){5, 150, 2, 8, 16}, 71, -2, 0);
    size_t ny = in.x->numel;
    float *dy = malloc(sizeof(float) * ny);
    test_fill_uniform(dy, ny, 9, -1, 1);
    Tensor *ts[] = {in.x, in.Bm, in.Cm, in.la};
    float *saved[5];
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        Graph g;
        graph_init(&g, 0, 1);
        Tensor *y = run_fast(&g, &in, 64, dy);
        if (threads == 1) {
            saved[0] = malloc(sizeof(float) * ny);
            memcpy(saved[0], y->data, sizeof(float) * ny);
            for (int k = 0; k < 4; k++) {
                saved[k + 1] = malloc(sizeof(float) * ts[k]->numel);
                memcpy(saved[k + 1], ts[k]->grad, sizeof(float) * ts[k]->numel);
            }
        } else {
            ck_assert_int_eq(memcmp(saved[0], y->data, sizeof(float) * ny), 0);
            for (int k = 0; k < 4; k++)
                ck_assert_msg(memcmp(saved[k + 1], ts[k]->grad, sizeof(float) * ts[k]->numel) == 0,
                              "gradient %d differs between 1 and 2 threads", k);
        }
        graph_free(&g);
    }
    for (int k = 0; k < 5; k++) free(saved[k]);
    free(dy);
    free_inputs(&in);
}
END_TEST

START_TEST(test_ssd_mask_kernels_avx2_match_scalar)
{
#if SIMD_AVX2
    const int ld = 64;
    float *G = malloc(sizeof(float) * ld * ld), *dM0 = malloc(sizeof(float) * ld * ld);
    float *M1 = calloc(ld * ld, sizeof(float)), *M2 = calloc(ld * ld, sizeof(float));
    float *W1 = calloc(ld * ld, sizeof(float)), *W2 = calloc(ld * ld, sizeof(float));
    float *d1 = malloc(sizeof(float) * ld * ld), *d2 = malloc(sizeof(float) * ld * ld);
    float acc[64], da1[64], da2[64], la[64];
    double c[64];
    const int qs[] = {1, 2, 7, 8, 9, 13, 31, 64};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        int q = qs[k];
        test_fill_uniform(G, (size_t)ld * ld, 100 + k, -1, 1);
        test_fill_uniform(dM0, (size_t)ld * ld, 200 + k, -1, 1);
        test_fill_uniform(la, 64, 300 + k, -3, 0);
        double s = 0;
        for (int i = 0; i < 64; i++) c[i] = (s += la[i]);
        ssd_decay_mask_scalar(c, q, G, ld, M1, W1);
        ssd_decay_mask_avx2(c, q, G, ld, M2, W2);
        for (int t = 0; t < q; t++) {
            ck_assert_close(M2 + t * ld, M1 + t * ld, (size_t)q, 1e-7, 2e-6, "mask M avx2");
            ck_assert_close(W2 + t * ld, W1 + t * ld, (size_t)q, 1e-7, 2e-6, "mask W avx2");
            for (int s2 = t + 1; s2 < q; s2++) ck_assert(M2[t * ld + s2] == 0 && W2[t * ld + s2] == 0);
        }
        memcpy(d1, dM0, sizeof(float) * ld * ld);
        memcpy(d2, dM0, sizeof(float) * ld * ld);
        for (int i = 0; i < 64; i++) da1[i] = da2[i] = 0.5f;
        ssd_decay_mask_backward_scalar(q, d1, W1, G, ld, acc, da1);
        ssd_decay_mask_backward_avx2(q, d2, W1, G, ld, acc, da2);
        for (int t = 0; t < q; t++) ck_assert_close(d2 + t * ld, d1 + t * ld, (size_t)q, 0, 0, "dG avx2");
        ck_assert_close(da2, da1, (size_t)q, 1e-5, 1e-5, "da avx2"); /* summation order differs */
        ck_assert_float_eq(da1[0], 0.5f); /* no pair (t, s) has s < 0 */
    }
    free(G), free(dM0), free(M1), free(M2), free(W1), free(W2), free(d1), free(d2);
#endif
}
END_TEST

Suite *suite_ssd(void)
{
    Suite *s = suite_create("ssd");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ssd_forward_matches_sequential_recurrence);
    tcase_add_test(tc, test_ssd_backward_matches_reference_backward);
    tcase_add_test(tc, test_ssd_strong_and_no_decay_stay_finite_and_correct);
    tcase_add_test(tc, test_ssd_gradients_match_finite_differences);
    tcase_add_test(tc, test_ssd_only_requested_gradients_are_computed);
    tcase_add_test(tc, test_ssd_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_ssd_mask_kernels_avx2_match_scalar);
    suite_add_tcase(s, tc);
    return s;
}
