#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "../src/ops/k_norm.h"
#include "testutil.h"

static const int xe_vocab[] = {1, 7, 8, 9, 33};

/* float64 reference: per-row loss lse - x[label], the sum over valid rows,
 * and (if grad != NULL) d(mean loss)/dlogits = (softmax - onehot) / n_valid. */
static double xe_reference(const float *x, const int32_t *labels, size_t N, size_t V, int *n_valid,
                           float *grad)
{
    double sum = 0.0;
    int nv = 0;
    for (size_t r = 0; r < N; r++) nv += labels[r] != IGNORE_INDEX;
    for (size_t r = 0; r < N; r++) {
        const float *xr = x + r * V;
        if (grad) memset(grad + r * V, 0, V * sizeof(float));
        if (labels[r] == IGNORE_INDEX) continue;
        double m = xr[0], s = 0.0;
        for (size_t j = 1; j < V; j++) m = xr[j] > m ? xr[j] : m;
        for (size_t j = 0; j < V; j++) s += exp((double)xr[j] - m);
        sum += (m - xr[labels[r]]) + log(s);
        if (grad)
            for (size_t j = 0; j < V; j++)
                grad[r * V + j] = (float)((exp((double)xr[j] - m) / s - (j == (size_t)labels[r])) / nv);
    }
    *n_valid = nv;
    return sum;
}

/* labels: row r gets (r * 5 + 3) % V, every third row (r % 3 == 1) ignored */
static int32_t *xe_labels(size_t N, size_t V)
{
    int32_t *l = malloc(N * sizeof *l);
    for (size_t r = 0; r < N; r++) l[r] = r % 3 == 1 ? IGNORE_INDEX : (int32_t)((r * 5 + 3) % V);
    return l;
}

static Tensor *fwd_xe(Graph *g, Tensor **in, void *ctx) { return op_cross_entropy(g, in[0], ctx, NULL); }

START_TEST(test_cross_entropy_forward_and_stats_match_float64_reference)
{
    for (int N = 1; N <= 5; N++)
        for (size_t v = 0; v < sizeof xe_vocab / sizeof xe_vocab[0]; v++) {
            const int V = xe_vocab[v];
            Tensor *x = test_tensor(2, (int[]){N, V}, false);
            test_fill_uniform(x->data, x->numel, (uint64_t)(N * 10 + v), -5, 5);
            int32_t *lab = xe_labels((size_t)N, (size_t)V);
            int nv;
            double ref = xe_reference(x->data, lab, (size_t)N, (size_t)V, &nv, NULL);
            Graph g;
            graph_init(&g, 0, 1);
            graph_begin(&g, 0, false, false);
            XentStats st;
            Tensor *loss = op_cross_entropy(&g, x, lab, &st);
            ck_assert_int_eq((int)loss->numel, 1);
            ck_assert_int_eq(st.n_valid, nv);
            ck_assert(nv > 0);
            /* a few float32 roundings in sum exp, per-row loss in float64 */
            ck_assert_msg(fabs(st.loss_sum - ref) <= 1e-6 * (1 + fabs(ref)), "loss_sum %.9g vs %.9g",
                          st.loss_sum, ref);
            float meanf = (float)(ref / nv);
            ck_assert_close(loss->data, &meanf, 1, 1e-6, 1e-6, "cross entropy mean");
            graph_free(&g);
            free(lab);
            test_tensor_free(x);
        }
}
END_TEST

START_TEST(test_cross_entropy_all_rows_ignored_gives_zero_loss_and_gradient)
{
    Tensor *x = test_tensor(2, (int[]){3, 9}, true);
    test_fill_uniform(x->data, x->numel, 5, -2, 2);
    int32_t lab[3] = {IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX};
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, true, true);
    XentStats st = {.n_valid = 99, .n_correct = 99, .loss_sum = 99};
    Tensor *loss = op_cross_entropy(&g, x, lab, &st);
    ck_assert_float_eq(loss->data[0], 0.0f);
    ck_assert_int_eq(st.n_valid, 0);
    ck_assert_int_eq(st.n_correct, 0);
    ck_assert(st.loss_sum == 0.0);
    graph_backward(&g, loss);
    float *dx = tensor_grad(&g, x);
    for (size_t i = 0; i < x->numel; i++) ck_assert_float_eq(dx[i], 0.0f);
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_backward_matches_finite_differences)
{
    for (int N = 1; N <= 5; N++)
        for (size_t v = 0; v < sizeof xe_vocab / sizeof xe_vocab[0]; v++) {
            const int V = xe_vocab[v];
            Tensor *x = test_tensor(2, (int[]){N, V}, true);
            test_fill_uniform(x->data, x->numel, (uint64_t)(N * 30 + v), -3, 3);
            int32_t *lab = xe_labels((size_t)N, (size_t)V);
            ck_assert(gradcheck("cross entropy", fwd_xe, lab, &x, 1, GRADCHECK_DEFAULTS));
            free(lab);
            test_tensor_free(x);
        }
}
END_TEST

START_TEST(test_cross_entropy_gradient_matches_float64_softmax_minus_onehot)
{
    /* direct check of the scaled gradient, incl. a dloss != 1 */
    enum { N = 6, V = 33 };
    Tensor *x = test_tensor(2, (int[]){N, V}, true);
    test_fill_uniform(x->data, x->numel, 61, -4, 4);
    int32_t *lab = xe_labels(N, V);
    float ref[N * V];
    int nv;
    xe_reference(x->data, lab, N, V, &nv, ref);
    for (int i = 0; i < N * V; i++) ref[i] *= -2.5f;
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, true, true);
    Tensor *loss = op_cross_entropy(&g, x, lab, NULL);
    graph_backward_from(&g, loss, (float[]){-2.5f});
    ck_assert_close(x->grad, ref, (size_t)(N * V), 1e-7, 1e-5, "cross entropy grad");
    x->grad = NULL;
    graph_free(&g);
    free(lab);
    test_tensor_free(x);
}
END_TEST

/* Fresh gradients are written without zero-fill: run in an arena whose
 * memory holds NaN from an earlier step, so any element the backward
 * forgets to write shows up.  A gradient that already exists is
 * accumulated into. */
START_TEST(test_cross_entropy_backward_writes_fresh_and_accumulates_existing_gradient)
{
    enum { N = 7, V = 19 };
    Tensor *x = test_tensor(2, (int[]){N, V}, true);
    test_fill_uniform(x->data, x->numel, 71, -3, 3);
    int32_t *lab = xe_labels(N, V);
    lab[2] = IGNORE_INDEX; /* its fresh row must come out as zeros */
    float ref[N * V];
    int nv;
    xe_reference(x->data, lab, N, V, &nv, ref);
    Graph g;
    graph_init(&g, 1 << 20, 1);
    graph_begin(&g, 0, true, true);
    float *junk = graph_scratch(&g, (1 << 20) - 4096);
    for (size_t i = 0; i < ((1 << 20) - 4096) / sizeof(float); i++) junk[i] = NAN;
    for (int pass = 0; pass < 2; pass++) {
        graph_begin(&g, 1, true, true);
        float *prev = NULL;
        if (pass == 1) { /* existing gradient: 0.5 everywhere */
            prev = graph_scratch(&g, sizeof ref);
            for (int i = 0; i < N * V; i++) prev[i] = 0.5f;
            x->grad = prev;
        }
        Tensor *loss = op_cross_entropy(&g, x, lab, NULL);
        graph_backward(&g, loss);
        if (pass == 1) ck_assert_ptr_eq(x->grad, prev);
        float want[N * V];
        for (int i = 0; i < N * V; i++) want[i] = ref[i] + (pass == 1 ? 0.5f : 0.0f);
        ck_assert_close(x->grad, want, (size_t)(N * V), 1e-6, 1e-5, "cross entropy grad");
        x->grad = NULL;
    }
    graph_free(&g);
    free(lab);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_stats_on_known_logits_with_ties)
{
    /* V = 20 spans two vector chunks (lanes 0..7, 8..15, tail 16..19).
     * Ties must resolve to the first index, as torch.argmax does. */
    enum { N = 8, V = 20 };
    Tensor *x = test_tensor(2, (int[]){N, V}, false); /* zero-filled */
    float *d = x->data;
    int32_t lab[N];
    d[0 * V + 2] = 3.0f, lab[0] = 2;                         /* clear max at label: correct */
    d[1 * V + 3] = d[1 * V + 12] = 2.0f, lab[1] = 12;        /* tie 3/12 (lanes 3, 4): argmax 3, wrong */
    d[2 * V + 3] = d[2 * V + 12] = 2.0f, lab[2] = 3;         /* same tie, label first: correct */
    d[3 * V + 9] = d[3 * V + 17] = 1.0f, lab[3] = 9;         /* same lane, later chunk: argmax 9 */
    d[4 * V + 17] = d[4 * V + 18] = 4.0f, lab[4] = 18;       /* tie in the tail: argmax 17, wrong */
    lab[5] = 7;                                              /* all equal: argmax 0, wrong; loss log 20 */
    d[6 * V + 5] = 9.0f, lab[6] = IGNORE_INDEX;              /* ignored although "correct" */
    d[7 * V + 0] = -1.0f, d[7 * V + 19] = 5.0f, lab[7] = 19; /* max in the last lane: correct */
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    XentStats st;
    Tensor *loss = op_cross_entropy(&g, x, lab, &st);
    ck_assert_int_eq(st.n_valid, 7);
    ck_assert_int_eq(st.n_correct, 4);
    /* closed forms: a at k places and 0 elsewhere, label at an a: log(k e^a + V - k) - a */
    double known = (log(exp(3.0) + 19) - 3) + (log(2 * exp(2.0) + 18) - 2) + (log(2 * exp(2.0) + 18) - 2) +
                   (log(2 * exp(1.0) + 18) - 1) + (log(2 * exp(4.0) + 18) - 4) + log(20.0) +
                   (log(exp(5.0) + exp(-1.0) + 18) - 5);
    ck_assert_msg(fabs(st.loss_sum - known) < 1e-5, "loss_sum %.9g vs %.9g", st.loss_sum, known);
    ck_assert_msg(fabs(loss->data[0] - known / 7) < 1e-6, "loss %.9g", loss->data[0]);
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_large_magnitude_logits_stay_finite_and_correct)
{
    /* rows offset by +1e4 / -1e4, plus a row where one logit is 1e4 above the rest */
    enum { N = 5, V = 33 };
    Tensor *x = test_tensor(2, (int[]){N, V}, true);
    test_fill_uniform(x->data, x->numel, 71, -5, 5);
    for (int j = 0; j < V; j++) x->data[0 * V + j] += 1e4f, x->data[1 * V + j] -= 1e4f, x->data[2 * V + j] += 3e4f;
    for (int j = 0; j < V; j++) x->data[3 * V + j] = 0.0f, x->data[4 * V + j] = 0.0f;
    x->data[3 * V + 7] = 1e4f, x->data[4 * V + 7] = 1e4f;
    int32_t lab[N] = {4, 31, 0, 7, 8}; /* row 3: loss ~0; row 4: loss 1e4 */
    int nv;
    float ref[N * V];
    double ref_sum = xe_reference(x->data, lab, N, V, &nv, ref);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, true, true);
    XentStats st;
    Tensor *loss = op_cross_entropy(&g, x, lab, &st);
    ck_assert(isfinite(loss->data[0]));
    /* the 1e4 row is exactly 1e4 + log(1); the other rows carry float32 sum-of-exp error */
    ck_assert_msg(fabs(st.loss_sum - ref_sum) <= 1e-5, "loss_sum %.9g vs %.9g", st.loss_sum, ref_sum);
    float meanf = (float)(ref_sum / nv);
    ck_assert_close(loss->data, &meanf, 1, 0, 1e-6, "large-logit loss");
    graph_backward(&g, loss);
    for (int i = 0; i < N * V; i++) ck_assert(isfinite(x->grad[i]));
    ck_assert_close(x->grad, ref, (size_t)(N * V), 1e-7, 1e-5, "large-logit grad");
    x->grad = NULL;
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

enum { BIG_N = 300, BIG_V = 67 }; /* above the parallel threshold */

static float xe_run(Tensor *x, const int32_t *lab, XentStats *st, float *dx)
{
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, true, true);
    x->grad = NULL;
    Tensor *loss = op_cross_entropy(&g, x, lab, st);
    float l = loss->data[0];
    graph_backward(&g, loss);
    memcpy(dx, x->grad, x->numel * 4);
    x->grad = NULL;
    graph_free(&g);
    return l;
}

START_TEST(test_cross_entropy_bit_identical_for_1_and_2_threads)
{
    Tensor *x = test_tensor(2, (int[]){BIG_N, BIG_V}, true);
    test_fill_uniform(x->data, x->numel, 81, -6, 6);
    int32_t *lab = xe_labels(BIG_N, BIG_V);
    float *dx1 = malloc(x->numel * 4), *dx2 = malloc(x->numel * 4);
    XentStats s1, s2;
    omp_set_num_threads(1);
    float l1 = xe_run(x, lab, &s1, dx1);
    omp_set_num_threads(2);
    float l2 = xe_run(x, lab, &s2, dx2);
    ck_assert(memcmp(&l1, &l2, sizeof l1) == 0);
    ck_assert(memcmp(&s1.loss_sum, &s2.loss_sum, sizeof(double)) == 0);
    ck_assert_int_eq(s1.n_correct, s2.n_correct);
    ck_assert_int_eq(s1.n_valid, s2.n_valid);
    ck_assert(memcmp(dx1, dx2, x->numel * 4) == 0);
    free(dx1), free(dx2), free(lab);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_avx2_row_kernels_match_scalar)
{
#if SIMD_AVX2
    for (size_t n = 1; n <= 70; n++) {
        float *x = malloc(n * 4), *dx1 = malloc(n * 4), *dx2 = malloc(n * 4);
        /* values on a coarse grid: many exact ties for argmax */
        test_fill_uniform(x, n, n, -3, 3);
        for (size_t i = 0; i < n; i++) x[i] = roundf(x[i]);
        float m1, s1, m2, s2;
        int a1, a2;
        k_xent_fwd_row_scalar(x, &m1, &s1, &a1, n);
        k_xent_fwd_row_avx2(x, &m2, &s2, &a2, n);
        ck_assert_float_eq(m2, m1);
        ck_assert_int_eq(a2, a1);
        ck_assert_close(&s2, &s1, 1, 0, 1e-6, "xent sum avx2");
        test_fill_uniform(dx1, n, n + 100, -1, 1);
        memcpy(dx2, dx1, n * 4);
        k_xent_bwd_row_scalar(x, m1, 0.37f / s1, dx1, n, true);
        k_xent_bwd_row_avx2(x, m1, 0.37f / s1, dx2, n, true);
        ck_assert_close(dx2, dx1, n, 1e-7, 1e-5, "xent bwd avx2");
        /* store variant: garbage in dx must not leak through */
        for (size_t i = 0; i < n; i++) dx1[i] = NAN, dx2[i] = 1e30f;
        k_xent_bwd_row_scalar(x, m1, 0.37f / s1, dx1, n, false);
        k_xent_bwd_row_avx2(x, m1, 0.37f / s1, dx2, n, false);
        ck_assert_close(dx2, dx1, n, 1e-7, 1e-5, "xent bwd store avx2");
        free(x), free(dx1), free(dx2);
    }
#endif
}
END_TEST

START_TEST(test_cross_entropy_label_out_of_range_aborts)
{
    Tensor *x = test_tensor(2, (int[]){2, 5}, false);
    int32_t lab[2] = {0, 5}; /* 5 == V */
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_cross_entropy(&g, x, lab, NULL);
}
END_TEST

START_TEST(test_cross_entropy_negative_label_other_than_ignore_aborts)
{
    Tensor *x = test_tensor(2, (int[]){2, 5}, false);
    int32_t lab[2] = {-1, 2};
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_cross_entropy(&g, x, lab, NULL);
}
END_TEST

Suite *suite_cross_entropy(void)
{
    Suite *s = suite_create("cross_entropy");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cross_entropy_forward_and_stats_match_float64_reference);
    tcase_add_test(tc, test_cross_entropy_all_rows_ignored_gives_zero_loss_and_gradient);
    tcase_add_test(tc, test_cross_entropy_backward_matches_finite_differences);
    tcase_add_test(tc, test_cross_entropy_gradient_matches_float64_softmax_minus_onehot);
    tcase_add_test(tc, test_cross_entropy_backward_writes_fresh_and_accumulates_existing_gradient);
    tcase_add_test(tc, test_cross_entropy_stats_on_known_logits_with_ties);
    tcase_add_test(tc, test_cross_entropy_large_magnitude_logits_stay_finite_and_correct);
    tcase_add_test(tc, test_cross_entropy_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_cross_entropy_avx2_row_kernels_match_scalar);
    tcase_add_test_raise_signal(tc, test_cross_entropy_label_out_of_range_aborts, SIGABRT);
    tcase_add_test_raise_signal(tc, test_cross_entropy_negative_label_other_than_ignore_aborts, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}
