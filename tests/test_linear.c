/* op_linear and op_bmm: forwards against float64 loops, gradients against
 * finite differences, the bias column-sum kernel (AVX2 vs scalar), and
 * bit-identical results for 1 and 2 threads. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "../src/ops/k_linear.h"
#include "testutil.h"

static void set_threads(int n)
{
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

/* ----------------------------------------------------------------- linear */

typedef struct LinearCase {
    int ndim;
    int xshape[4];
    int out;
    bool bias;
} LinearCase;

static const LinearCase linear_cases[] = {
    {2, {1, 1}, 1, true},      {2, {7, 9}, 17, true},     {3, {2, 3, 17}, 7, false},
    {4, {2, 1, 3, 9}, 9, true}, {2, {17, 1}, 7, true},      {3, {1, 7, 8}, 1, false},
};
#define N_LINEAR_CASES (sizeof linear_cases / sizeof linear_cases[0])

typedef struct LinearData {
    Tensor *x, *W, *b; /* b NULL without bias */
} LinearData;

static LinearData linear_make(const LinearCase *c, uint64_t seed)
{
    LinearData d;
    int in = c->xshape[c->ndim - 1];
    d.x = test_tensor(c->ndim, c->xshape, true);
    d.W = test_tensor(2, (int[]){c->out, in}, true);
    d.b = c->bias ? test_tensor(1, (int[]){c->out}, true) : NULL;
    test_fill_uniform(d.x->data, d.x->numel, seed, -1, 1);
    test_fill_uniform(d.W->data, d.W->numel, seed + 1, -1, 1);
    if (d.b) test_fill_uniform(d.b->data, d.b->numel, seed + 2, -1, 1);
    return d;
}

static void linear_free(LinearData *d)
{
    test_tensor_free(d->x);
    test_tensor_free(d->W);
    test_tensor_free(d->b);
}

static Tensor *fwd_linear(Graph *g, Tensor **in, void *ctx)
{
    bool bias = *(const bool *)ctx;
    return op_linear(g, in[0], in[1], bias ? in[2] : NULL);
}

START_TEST(test_linear_forward_matches_double_reference)
{
    for (size_t ci = 0; ci < N_LINEAR_CASES; ci++) {
        const LinearCase *c = &linear_cases[ci];
        LinearData d = linear_make(c, 10 + ci);
        const int in = d.W->shape[1], out = c->out, M = (int)tensor_rows(d.x);
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        Tensor *y = op_linear(&g, d.x, d.W, d.b);
        ck_assert_int_eq(y->ndim, c->ndim);
        for (int i = 0; i < c->ndim - 1; i++) ck_assert_int_eq(y->shape[i], c->xshape[i]);
        ck_assert_int_eq(y->shape[c->ndim - 1], out);
        float *ref = malloc(y->numel * sizeof *ref);
        for (int r = 0; r < M; r++)
            for (int o = 0; o < out; o++) {
                double s = d.b ? d.b->data[o] : 0.0;
                for (int k = 0; k < in; k++) s += (double)d.x->data[r * in + k] * d.W->data[o * in + k];
                ref[r * out + o] = (float)s;
            }
        /* in <= 17 products of |.| <= 1 in float32: error well below 1e-5 */
        ck_assert_close(y->data, ref, y->numel, 1e-5, 1e-5, "linear forward");
        free(ref);
        graph_free(&g);
        linear_free(&d);
    }
}
END_TEST

START_TEST(test_linear_gradients_of_x_W_b_match_finite_differences)
{
    for (size_t ci = 0; ci < N_LINEAR_CASES; ci++) {
        const LinearCase *c = &linear_cases[ci];
        LinearData d = linear_make(c, 30 + ci);
        bool bias = c->bias;
        Tensor *in[3] = {d.x, d.W, d.b};
        ck_assert(gradcheck("linear", fwd_linear, &bias, in, bias ? 3 : 2, GRADCHECK_DEFAULTS));
        linear_free(&d);
    }
}
END_TEST

START_TEST(test_linear_gradient_only_for_some_inputs)
{
    /* W frozen: x and b still get their gradients, W none */
    LinearData d = linear_make(&linear_cases[1], 50);
    d.W->requires_grad = false;
    bool bias = true;
    Tensor *in[3] = {d.x, d.W, d.b};
    ck_assert(gradcheck("linear (W frozen)", fwd_linear, &bias, in, 3, GRADCHECK_DEFAULTS));
    linear_free(&d);
}
END_TEST

/* Forward + backward of linear layers large enough for every parallel path:
 * OpenBLAS runs threaded, the contraction lengths (in for y, out for dx, M
 * for dW) include values above OpenBLAS's k-block (448 here) that are not
 * multiples of 32, and the bias column sum runs over > KERNEL_PAR_MIN
 * elements in several column groups. */
typedef struct LinearRun {
    float *y, *dx, *dW, *db;
} LinearRun;

static LinearRun linear_run(LinearData *d, const float *dy, int threads)
{
    set_threads(threads);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    d->x->grad = d->W->grad = d->b->grad = NULL;
    Tensor *y = op_linear(&g, d->x, d->W, d->b);
    graph_backward_from(&g, y, dy);
    LinearRun r;
    r.y = malloc(y->numel * sizeof(float));
    r.dx = malloc(d->x->numel * sizeof(float));
    r.dW = malloc(d->W->numel * sizeof(float));
    r.db = malloc(d->b->numel * sizeof(float));
    memcpy(r.y, y->data, y->numel * sizeof(float));
    memcpy(r.dx, d->x->grad, d->x->numel * sizeof(float));
    memcpy(r.dW, d->W->grad, d->W->numel * sizeof(float));
    memcpy(r.db, d->b->grad, d->b->numel * sizeof(float));
    d->x->grad = d->W->grad = d->b->grad = NULL;
    graph_free(&g);
    return r;
}

START_TEST(test_linear_forward_and_gradients_same_bits_for_1_and_2_threads)
{
    static const LinearCase cases[] = {
        {3, {4, 300, 40}, 72, true}, /* dW contracts over M = 1200 rows */
        {2, {300, 500}, 600, true},  /* y over in = 500, dx over out = 600 */
        {2, {1000, 17}, 9, true},    /* small out: OpenBLAS threads over rows */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const LinearCase *c = &cases[ci];
        LinearData d = linear_make(c, 70 + ci);
        const size_t M = tensor_rows(d.x), out = (size_t)c->out, ny = M * out;
        float *dy = malloc(ny * sizeof *dy);
        test_fill_uniform(dy, ny, 80 + ci, -1, 1);
        LinearRun r1 = linear_run(&d, dy, 1), r2 = linear_run(&d, dy, 2);
        ck_assert_int_eq(omp_get_max_threads(), 2);
        ck_assert_msg(memcmp(r1.y, r2.y, ny * sizeof(float)) == 0, "case %zu: y differs", ci);
        ck_assert_msg(memcmp(r1.dx, r2.dx, d.x->numel * sizeof(float)) == 0, "case %zu: dx differs", ci);
        ck_assert_msg(memcmp(r1.dW, r2.dW, d.W->numel * sizeof(float)) == 0, "case %zu: dW differs", ci);
        ck_assert_msg(memcmp(r1.db, r2.db, d.b->numel * sizeof(float)) == 0, "case %zu: db differs", ci);
        /* and the results are the right ones (not two identical wrong answers):
         * db is the column sum of dy, dW[0][0] = sum_r dy[r][0] x[r][0] */
        const size_t in = (size_t)d.W->shape[1];
        for (size_t o = 0; o < out; o++) {
            double s = 0;
            for (size_t r = 0; r < M; r++) s += dy[r * out + o];
            ck_assert_double_eq_tol(r1.db[o], s, 1e-3);
        }
        double w00 = 0;
        for (size_t r = 0; r < M; r++) w00 += (double)dy[r * out] * d.x->data[r * in];
        ck_assert_double_eq_tol(r1.dW[0], w00, 1e-3);
        free(r1.y), free(r1.dx), free(r1.dW), free(r1.db);
        free(r2.y), free(r2.dx), free(r2.dW), free(r2.db);
        free(dy);
        linear_free(&d);
    }
}
END_TEST

/* -------------------------------------------------------------------- bmm */

typedef struct BmmCase {
    int nlead, lead[2];
    int m, k, n;
} BmmCase;

static const BmmCase bmm_cases[] = {
    {0, {0, 0}, 1, 1, 1}, {0, {0, 0}, 7, 9, 17}, {1, {3, 0}, 17, 1, 9},
    {2, {2, 2}, 9, 17, 7}, {1, {1, 0}, 1, 7, 9}, {2, {2, 1}, 7, 7, 1},
};
#define N_BMM_CASES (sizeof bmm_cases / sizeof bmm_cases[0])

typedef struct BmmFlags {
    bool ta, tb;
} BmmFlags;

/* a stored (..., m, k) or (..., k, m); b stored (..., k, n) or (..., n, k) */
static void bmm_make(const BmmCase *c, BmmFlags f, uint64_t seed, Tensor **a, Tensor **b)
{
    int sa[4], sb[4], nd = c->nlead + 2;
    for (int i = 0; i < c->nlead; i++) sa[i] = sb[i] = c->lead[i];
    sa[nd - 2] = f.ta ? c->k : c->m;
    sa[nd - 1] = f.ta ? c->m : c->k;
    sb[nd - 2] = f.tb ? c->n : c->k;
    sb[nd - 1] = f.tb ? c->k : c->n;
    *a = test_tensor(nd, sa, true);
    *b = test_tensor(nd, sb, true);
    test_fill_uniform((*a)->data, (*a)->numel, seed, -1, 1);
    test_fill_uniform((*b)->data, (*b)->numel, seed + 1, -1, 1);
}

static Tensor *fwd_bmm(Graph *g, Tensor **in, void *ctx)
{
    const BmmFlags *f = ctx;
    return op_bmm(g, in[0], in[1], f->ta, f->tb);
}

START_TEST(test_bmm_forward_matches_double_reference_all_transposes)
{
    for (int t = 0; t < 4; t++) {
        BmmFlags f = {t & 1, (t >> 1) & 1};
        for (size_t ci = 0; ci < N_BMM_CASES; ci++) {
            const BmmCase *c = &bmm_cases[ci];
            Tensor *a, *b;
            bmm_make(c, f, 100 + ci, &a, &b);
            Graph g;
            graph_init(&g, 0, 1);
            graph_begin(&g, 0, false, false);
            Tensor *y = op_bmm(&g, a, b, f.ta, f.tb);
            int nd = c->nlead + 2, batch = 1;
            ck_assert_int_eq(y->ndim, nd);
            for (int i = 0; i < c->nlead; i++) {
                ck_assert_int_eq(y->shape[i], c->lead[i]);
                batch *= c->lead[i];
            }
            ck_assert_int_eq(y->shape[nd - 2], c->m);
            ck_assert_int_eq(y->shape[nd - 1], c->n);
            const int m = c->m, k = c->k, n = c->n;
            float *ref = malloc(y->numel * sizeof *ref);
            for (int bi = 0; bi < batch; bi++) {
                const float *A = a->data + (size_t)bi * m * k, *B = b->data + (size_t)bi * k * n;
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double s = 0;
                        for (int p = 0; p < k; p++) {
                            double av = f.ta ? A[p * m + i] : A[i * k + p];
                            double bv = f.tb ? B[j * k + p] : B[p * n + j];
                            s += av * bv;
                        }
                        ref[(size_t)bi * m * n + (size_t)i * n + j] = (float)s;
                    }
            }
            ck_assert_close(y->data, ref, y->numel, 1e-5, 1e-5, "bmm forward");
            free(ref);
            graph_free(&g);
            test_tensor_free(a);
            test_tensor_free(b);
        }
    }
}
END_TEST

START_TEST(test_bmm_gradients_of_a_and_b_match_finite_differences_all_transposes)
{
    for (int t = 0; t < 4; t++) {
        BmmFlags f = {t & 1, (t >> 1) & 1};
        for (size_t ci = 0; ci < N_BMM_CASES; ci++) {
            Tensor *a, *b;
            bmm_make(&bmm_cases[ci], f, 200 + ci, &a, &b);
            char label[64];
            snprintf(label, sizeof label, "bmm ta=%d tb=%d case %zu", f.ta, f.tb, ci);
            ck_assert(gradcheck(label, fwd_bmm, &f, (Tensor *[]){a, b}, 2, GRADCHECK_DEFAULTS));
            test_tensor_free(a);
            test_tensor_free(b);
        }
    }
}
END_TEST

START_TEST(test_bmm_same_input_twice_accumulates_gradient)
{
    /* y = a a^T: both gradient paths land in a */
    Tensor *a = test_tensor(3, (int[]){2, 7, 9}, true);
    test_fill_uniform(a->data, a->numel, 300, -1, 1);
    BmmFlags f = {false, true};
    ck_assert(gradcheck("bmm a a^T", fwd_bmm, &f, (Tensor *[]){a, a}, 1, GRADCHECK_DEFAULTS));
    test_tensor_free(a);
}
END_TEST

static float *bmm_run(Tensor *a, Tensor *b, BmmFlags f, const float *dy, int threads)
{
    set_threads(threads);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    a->grad = b->grad = NULL;
    Tensor *y = op_bmm(&g, a, b, f.ta, f.tb);
    graph_backward_from(&g, y, dy);
    float *res = malloc((y->numel + a->numel + b->numel) * sizeof *res);
    memcpy(res, y->data, y->numel * sizeof *res);
    memcpy(res + y->numel, a->grad, a->numel * sizeof *res);
    memcpy(res + y->numel + a->numel, b->grad, b->numel * sizeof *res);
    a->grad = b->grad = NULL;
    graph_free(&g);
    return res;
}

START_TEST(test_bmm_forward_and_gradients_same_bits_for_1_and_2_threads)
{
    /* batched (per-batch sgemm inside an OpenMP loop) and a single batch
     * (threaded OpenBLAS) whose contractions (k for C, n for dA, m for dB)
     * exceed OpenBLAS's k-block without being multiples of 32 */
    static const BmmCase cases[] = {{1, {6, 0}, 40, 33, 50}, {0, {0, 0}, 460, 500, 470}};
    for (int ci = 0; ci < 2; ci++)
        for (int t = 0; t < 4; t++) {
            BmmFlags f = {t & 1, (t >> 1) & 1};
            const BmmCase *c = &cases[ci];
            Tensor *a, *b;
            bmm_make(c, f, 400 + t, &a, &b);
            size_t batch = c->nlead ? (size_t)c->lead[0] : 1, ny = batch * c->m * c->n;
            size_t ntot = ny + a->numel + b->numel;
            float *dy = malloc(ny * sizeof *dy);
            test_fill_uniform(dy, ny, 401, -1, 1);
            float *r1 = bmm_run(a, b, f, dy, 1), *r2 = bmm_run(a, b, f, dy, 2);
            ck_assert_msg(memcmp(r1, r2, ntot * sizeof *r1) == 0, "bmm case %d ta=%d tb=%d differs", ci, f.ta,
                          f.tb);
            free(r1), free(r2), free(dy);
            test_tensor_free(a);
            test_tensor_free(b);
        }
}
END_TEST

/* ------------------------------------------------------------ shape errors */

START_TEST(test_linear_aborts_on_in_dim_mismatch)
{
    Tensor *x = test_tensor(2, (int[]){3, 8}, false), *W = test_tensor(2, (int[]){4, 9}, false);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_linear(&g, x, W, NULL);
}
END_TEST

START_TEST(test_linear_aborts_on_bias_size_mismatch)
{
    Tensor *x = test_tensor(2, (int[]){3, 8}, false), *W = test_tensor(2, (int[]){4, 8}, false);
    Tensor *b = test_tensor(1, (int[]){5}, false);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_linear(&g, x, W, b);
}
END_TEST

START_TEST(test_bmm_aborts_on_inner_dim_mismatch)
{
    Tensor *a = test_tensor(3, (int[]){2, 3, 8}, false), *b = test_tensor(3, (int[]){2, 7, 4}, false);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_bmm(&g, a, b, false, false);
}
END_TEST

START_TEST(test_bmm_aborts_on_batch_dim_mismatch)
{
    Tensor *a = test_tensor(3, (int[]){2, 3, 8}, false), *b = test_tensor(3, (int[]){3, 8, 4}, false);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_bmm(&g, a, b, false, false);
}
END_TEST

Suite *suite_linear(void)
{
    Suite *s = suite_create("linear");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_linear_forward_matches_double_reference);
    tcase_add_test(tc, test_linear_gradients_of_x_W_b_match_finite_differences);
    tcase_add_test(tc, test_linear_gradient_only_for_some_inputs);
    tcase_add_test(tc, test_linear_forward_and_gradients_same_bits_for_1_and_2_threads);
    tcase_add_test(tc, test_bmm_forward_matches_double_reference_all_transposes);
    tcase_add_test(tc, test_bmm_gradients_of_a_and_b_match_finite_differences_all_transposes);
    tcase_add_test(tc, test_bmm_same_input_twice_accumulates_gradient);
    tcase_add_test(tc, test_bmm_forward_and_gradients_same_bits_for_1_and_2_threads);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_set_timeout(te, 60);
    tcase_add_test_raise_signal(te, test_linear_aborts_on_in_dim_mismatch, SIGABRT);
    tcase_add_test_raise_signal(te, test_linear_aborts_on_bias_size_mismatch, SIGABRT);
    tcase_add_test_raise_signal(te, test_bmm_aborts_on_inner_dim_mismatch, SIGABRT);
    tcase_add_test_raise_signal(te, test_bmm_aborts_on_batch_dim_mismatch, SIGABRT);
    suite_add_tcase(s, te);
    return s;
}
