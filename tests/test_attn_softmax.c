/* Fused causal softmax attention against a plain double-precision reference
 * that builds the full score matrix. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops/attn_softmax.h"
#include "../src/ops.h"
#include "testutil.h"

typedef struct Shape {
    int B, L, H, dk, dv;
} Shape;

/* ---------------------------------------------------------------- reference */

/* y (B, L, H*dv) and log_eta (B, H, L), both double. */
static void ref_forward(const Shape *s, const float *q, const float *k, const float *v, double scale,
                        double *y, double *log_eta)
{
    const int L = s->L, H = s->H, dk = s->dk, dv = s->dv, ldq = H * dk, ldv = H * dv;
    double *S = malloc((size_t)L * sizeof *S);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < L; t++) {
                const float *qt = q + ((size_t)b * L + t) * ldq + h * dk;
                double m = -INFINITY;
                for (int u = 0; u <= t; u++) {
                    const float *ku = k + ((size_t)b * L + u) * ldq + h * dk;
                    double acc = 0;
                    for (int j = 0; j < dk; j++) acc += (double)qt[j] * ku[j];
                    S[u] = scale * acc;
                    if (S[u] > m) m = S[u];
                }
                double z = 0;
                for (int u = 0; u <= t; u++) z += exp(S[u] - m);
                double *yt = y + ((size_t)b * L + t) * ldv + h * dv;
                for (int j = 0; j < dv; j++) {
                    double acc = 0;
                    for (int u = 0; u <= t; u++)
                        acc += exp(S[u] - m) / z * v[((size_t)b * L + u) * ldv + h * dv + j];
                    yt[j] = acc;
                }
                if (log_eta) log_eta[((size_t)b * H + h) * L + t] = m + log(z);
            }
    free(S);
}

/* Gradients (double) of sum(y * dy) with respect to q, k, v. */
static void ref_backward(const Shape *s, const float *q, const float *k, const float *v,
                         const float *dy, double scale, double *gq, double *gk, double *gv)
{
    const int L = s->L, H = s->H, dk = s->dk, dv = s->dv, ldq = H * dk, ldv = H * dv;
    const size_t nq = (size_t)s->B * L * ldq, nv = (size_t)s->B * L * ldv;
    memset(gq, 0, nq * sizeof *gq), memset(gk, 0, nq * sizeof *gk), memset(gv, 0, nv * sizeof *gv);
    double *P = malloc((size_t)L * sizeof *P), *dP = malloc((size_t)L * sizeof *dP);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < L; t++) {
                const size_t rq = ((size_t)b * L + t) * ldq + h * dk, rv = ((size_t)b * L + t) * ldv + h * dv;
                double m = -INFINITY, z = 0, D = 0;
                for (int u = 0; u <= t; u++) {
                    double acc = 0;
                    for (int j = 0; j < dk; j++) acc += (double)q[rq + j] * k[((size_t)b * L + u) * ldq + h * dk + j];
                    P[u] = scale * acc;
                    if (P[u] > m) m = P[u];
                }
                for (int u = 0; u <= t; u++) z += (P[u] = exp(P[u] - m));
                for (int u = 0; u <= t; u++) {
                    P[u] /= z;
                    double acc = 0;
                    for (int j = 0; j < dv; j++) acc += (double)dy[rv + j] * v[((size_t)b * L + u) * ldv + h * dv + j];
                    dP[u] = acc;
                    D += P[u] * acc;
                }
                for (int u = 0; u <= t; u++) {
                    const size_t uq = ((size_t)b * L + u) * ldq + h * dk, uv = ((size_t)b * L + u) * ldv + h * dv;
                    const double ds = scale * P[u] * (dP[u] - D);
                    for (int j = 0; j < dk; j++) {
                        gq[rq + j] += ds * k[uq + j];
                        gk[uq + j] += ds * q[rq + j];
                    }
                    for (int j = 0; j < dv; j++) gv[uv + j] += P[u] * dy[rv + j];
                }
            }
    free(P), free(dP);
}

static float *to_float(const double *x, size_t n)
{
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}

static double max_abs(const double *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* Close to a double reference: |a - ref| <= rel * (max|ref| + |ref_i|). */
static void assert_close_to_ref(const float *a, const double *ref, size_t n, double rel, const char *label)
{
    float *rf = to_float(ref, n);
    double scale = max_abs(ref, n);
    ck_assert_msg(test_close_ratio(a, rf, n, rel * scale + 1e-30, rel, label) <= 1.0, "%s not close", label);
    free(rf);
}

typedef struct Inputs {
    Shape s;
    Tensor *q, *k, *v;
} Inputs;

static Inputs make_inputs(Shape s, uint64_t seed, float qmag)
{
    Inputs in = {.s = s};
    in.q = test_tensor(3, (int[]){s.B, s.L, s.H * s.dk}, true);
    in.k = test_tensor(3, (int[]){s.B, s.L, s.H * s.dk}, true);
    in.v = test_tensor(3, (int[]){s.B, s.L, s.H * s.dv}, true);
    test_fill_uniform(in.q->data, in.q->numel, seed, -qmag, qmag);
    test_fill_uniform(in.k->data, in.k->numel, seed + 1, -1, 1);
    test_fill_uniform(in.v->data, in.v->numel, seed + 2, -1, 1);
    return in;
}

static void free_inputs(Inputs *in)
{
    test_tensor_free(in->q), test_tensor_free(in->k), test_tensor_free(in->v);
}

static float scale_of(const Shape *s) { return 1.0f / sqrtf((float)s->dk); }

/* ------------------------------------------------------------------ forward */

static const Shape fwd_shapes[] = {
    {1, 1, 1, 1, 1},  {2, 7, 2, 3, 5},    {2, 77, 1, 8, 3},  {1, 130, 3, 16, 8},
    {2, 64, 1, 64, 64}, {1, 200, 2, 5, 13}, {1, 129, 1, 9, 17},
};

START_TEST(test_forward_and_log_eta_match_double_reference)
{
    for (size_t i = 0; i < sizeof fwd_shapes / sizeof fwd_shapes[0]; i++) {
        const Shape s = fwd_shapes[i];
        Inputs in = make_inputs(s, 10 + 3 * i, 1.0f);
        const size_t ny = in.v->numel, ne = (size_t)s.B * s.H * s.L;
        double *yref = malloc(ny * sizeof *yref), *eref = malloc(ne * sizeof *eref);
        double *eta = malloc(ne * sizeof *eta);
        ref_forward(&s, in.q->data, in.k->data, in.v->data, scale_of(&s), yref, eref);

        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        Tensor *y = op_causal_softmax_attn(&g, in.q, in.k, in.v, s.H, scale_of(&s), 0.0f, eta);
        ck_assert_int_eq(y->ndim, 3);
        ck_assert_int_eq(y->shape[2], s.H * s.dv);
        ck_assert_int_eq((int)g.n_entries, 0); /* grad disabled: nothing recorded */
        /* y is an average of values in [-1, 1] with float32 weights: a few ulp */
        assert_close_to_ref(y->data, yref, ny, 2e-6, "attn forward");
        for (size_t j = 0; j < ne; j++)
            ck_assert_msg(fabs(eta[j] - eref[j]) <= 1e-6 * (1 + fabs(eref[j])),
                          "log_eta[%zu] %.9g vs %.9g", j, eta[j], eref[j]);
        graph_free(&g);
        free(yref), free(eref), free(eta);
        free_inputs(&in);
    }
}
END_TEST

START_TEST(test_large_scores_stay_finite_and_match_reference)
{
    /* q scaled by 50: scores up to ~ +-200, far beyond exp's float range
     * without the running max */
    const Shape s = {2, 100, 2, 16, 8};
    Inputs in = make_inputs(s, 77, 50.0f);
    const size_t nq = in.q->numel, nv = in.v->numel, ne = (size_t)s.B * s.H * s.L;
    double *yref = malloc(nv * sizeof *yref), *eref = malloc(ne * sizeof *eref), *eta = malloc(ne * sizeof *eta);
    double *gq = malloc(nq * sizeof *gq), *gk = malloc(nq * sizeof *gk), *gv = malloc(nv * sizeof *gv);
    float *dy = malloc(nv * sizeof *dy);
    test_fill_uniform(dy, nv, 5, -1, 1);
    ref_forward(&s, in.q->data, in.k->data, in.v->data, scale_of(&s), yref, eref);
    ref_backward(&s, in.q->data, in.k->data, in.v->data, dy, scale_of(&s), gq, gk, gv);

    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, true, true);
    Tensor *y = op_causal_softmax_attn(&g, in.q, in.k, in.v, s.H, scale_of(&s), 0.0f, eta);
    graph_backward_from(&g, y, dy);
    for (size_t j = 0; j < nv; j++) ck_assert(isfinite(y->data[j]) && isfinite(in.v->grad[j]));
    for (size_t j = 0; j < nq; j++) ck_assert(isfinite(in.q->grad[j]) && isfinite(in.k->grad[j]));
    /* float32 scores of size |S| carry an absolute error ~ |S| 2^-24 that
     * becomes a relative error of the probabilities: ~1e-5 here */
    assert_close_to_ref(y->data, yref, nv, 1e-4, "large forward");
    /* a float32 dot product of dk terms bounded by Smax = scale * dk * 50 is
     * off by up to ~dk 2^-24 Smax, and so is the log-sum-exp */
    const double smax = scale_of(&s) * s.dk * 50.0, eta_tol = s.dk * 0x1p-24 * smax;
    for (size_t j = 0; j < ne; j++)
        ck_assert_msg(isfinite(eta[j]) && fabs(eta[j] - eref[j]) <= eta_tol + 1e-6 * (1 + fabs(eref[j])),
                      "log_eta[%zu] %.9g vs %.9g", j, eta[j], eref[j]);
    assert_close_to_ref(in.q->grad, gq, nq, 1e-4, "large dq");
    assert_close_to_ref(in.k->grad, gk, nq, 1e-4, "large dk");
    assert_close_to_ref(in.v->grad, gv, nv, 1e-4, "large dv");
    graph_free(&g);
    free(yref), free(eref), free(eta), free(gq), free(gk), free(gv), free(dy);
    free_inputs(&in);
}
END_TEST

/* ----------------------------------------------------------------- backward */

typedef struct Ctx {
    int H;
    float scale;
} Ctx;

static Tensor *fwd_attn(Graph *g, Tensor **in, void *ctx)
{
    const Ctx *c = ctx;
    return op_causal_softmax_attn(g, in[0], in[1], in[2], c->H, c->scale, 0.0f, NULL);
}

/* q and k are the same tensor: the two roles' gradients must add up */
static Tensor *fwd_attn_shared_qk(Graph *g, Tensor **in, void *ctx)
{
    const Ctx *c = ctx;
    return op_causal_softmax_attn(g, in[0], in[0], in[1], c->H, c->scale, 0.0f, NULL);
}

START_TEST(test_gradients_match_finite_differences)
{
    const struct {
        Shape s;
        size_t max_probe;
    } cases[] = {
        {{2, 7, 2, 3, 5}, 0},
        {{2, 1, 2, 3, 5}, 0},  /* L = 1: y = v, dq = dk = 0 */
        {{1, 77, 1, 2, 3}, 60}, /* two query and key blocks, the second partial */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const Shape s = cases[i].s;
        Inputs in = make_inputs(s, 40 + i, 1.0f);
        Ctx c = {s.H, scale_of(&s)};
        GradcheckOpts o = GRADCHECK_DEFAULTS;
        o.max_probe = cases[i].max_probe;
        ck_assert(gradcheck("attn", fwd_attn, &c, (Tensor *[]){in.q, in.k, in.v}, 3, o));
        free_inputs(&in);
    }
}
END_TEST

START_TEST(test_shared_q_and_k_gradients_accumulate)
{
    const Shape s = {2, 9, 1, 4, 3};
    Inputs in = make_inputs(s, 50, 1.0f);
    Ctx c = {s.H, scale_of(&s)};
    ck_assert(gradcheck("attn q=k", fwd_attn_shared_qk, &c, (Tensor *[]){in.q, in.v}, 2, GRADCHECK_DEFAULTS));
    free_inputs(&in);
}
END_TEST

START_TEST(test_backward_matches_double_reference)
{
    const Shape s = {2, 130, 2, 16, 8};
    Inputs in = make_inputs(s, 60, 1.0f);
    const size_t nq = in.q->numel, nv = in.v->numel;
    double *gq = malloc(nq * sizeof *gq), *gk = malloc(nq * sizeof *gk), *gv = malloc(nv * sizeof *gv);
    float *dy = malloc(nv * sizeof *dy);
    test_fill_uniform(dy, nv, 6, -1, 1);
    ref_backward(&s, in.q->data, in.k->data, in.v->data, dy, scale_of(&s), gq, gk, gv);
    /* all inputs, then each alone: gradients of the others stay NULL */
    for (int mask = 7; mask >= 1; mask = mask == 7 ? 4 : mask >> 1) {
        in.q->requires_grad = mask & 1, in.k->requires_grad = (mask >> 1) & 1, in.v->requires_grad = mask >> 2;
        in.q->grad = in.k->grad = in.v->grad = NULL;
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, true, true);
        Tensor *y = op_causal_softmax_attn(&g, in.q, in.k, in.v, s.H, scale_of(&s), 0.0f, NULL);
        graph_backward_from(&g, y, dy);
        ck_assert((in.q->grad != NULL) == (mask & 1));
        ck_assert((in.k->grad != NULL) == ((mask >> 1) & 1));
        ck_assert((in.v->grad != NULL) == (mask >> 2));
        /* float32 sums over <= 130 keys of O(1) terms: ~1e-6 of the largest
         * gradient, 1e-5 leaves a margin */
        if (in.q->grad) assert_close_to_ref(in.q->grad, gq, nq, 1e-5, "dq");
        if (in.k->grad) assert_close_to_ref(in.k->grad, gk, nq, 1e-5, "dk");
        if (in.v->grad) assert_close_to_ref(in.v->grad, gv, nv, 1e-5, "dv");
        graph_free(&g);
    }
    free(gq), free(gk), free(gv), free(dy);
    free_inputs(&in);
}
END_TEST

/* One forward + backward with `threads` OpenMP threads; copies out y,
 * log_eta and the three gradients. */
static void run_with_threads(Inputs *in, int threads, const float *dy, float *y, double *eta,
                             float *gq, float *gk, float *gv)
{
    const Shape s = in->s;
    omp_set_num_threads(threads);
    in->q->grad = in->k->grad = in->v->grad = NULL;
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, true, true);
    Tensor *out = op_causal_softmax_attn(&g, in->q, in->k, in->v, s.H, scale_of(&s), 0.0f, eta);
    graph_backward_from(&g, out, dy);
    memcpy(y, out->data, out->numel * sizeof *y);
    memcpy(gq, in->q->grad, in->q->numel * sizeof *gq);
    memcpy(gk, in->k->grad, in->k->numel * sizeof *gk);
    memcpy(gv, in->v->grad, in->v->numel * sizeof *gv);
    graph_free(&g);
    in->q->grad = in->k->grad = in->v->grad = NULL;
}

START_TEST(test_results_bit_identical_for_1_2_3_threads)
{
    const Shape s = {1, 150, 3, 16, 24}; /* B*H = 3: uneven split over 2 threads */
    Inputs in = make_inputs(s, 70, 1.0f);
    const size_t nq = in.q->numel, nv = in.v->numel, ne = (size_t)s.B * s.H * s.L;
    float *dy = malloc(nv * sizeof *dy);
    test_fill_uniform(dy, nv, 7, -1, 1);
    float *y[3], *gq[3], *gk[3], *gv[3];
    double *eta[3];
    for (int t = 0; t < 3; t++) {
        y[t] = malloc(nv * 4), gv[t] = malloc(nv * 4), gq[t] = malloc(nq * 4), gk[t] = malloc(nq * 4);
        eta[t] = malloc(ne * 8);
        run_with_threads(&in, t + 1, dy, y[t], eta[t], gq[t], gk[t], gv[t]);
    }
    for (int t = 1; t < 3; t++) {
        ck_assert_msg(memcmp(y[0], y[t], nv * 4) == 0, "y differs with %d threads", t + 1);
        ck_assert_msg(memcmp(eta[0], eta[t], ne * 8) == 0, "log_eta differs with %d threads", t + 1);
        ck_assert_msg(memcmp(gq[0], gq[t], nq * 4) == 0, "dq differs with %d threads", t + 1);
        ck_assert_msg(memcmp(gk[0], gk[t], nq * 4) == 0, "dk differs with %d threads", t + 1);
        ck_assert_msg(memcmp(gv[0], gv[t], nv * 4) == 0, "dv differs with %d threads", t + 1);
    }
    for (int t = 0; t < 3; t++) free(y[t]), free(gq[t]), free(gk[t]), free(gv[t]), free(eta[t]);
    free(dy);
    free_inputs(&in);
}
END_TEST

/* ------------------------------------------------------------------ kernels */

/* ------------------------------------------------------------ packed q|k|v */

/* Packed form vs the op on the three slices: the same bits for y, log_eta
 * and a fresh gradient of the packed tensor (extra columns get zeros).  Runs in
 * an arena left full of NaN by an earlier step, so a gradient element the
 * packed backward forgets to write shows up; `also_slice` adds a later
 * consumer of qkv so the packed backward accumulates into an existing
 * gradient. */
static void run_packed(Shape s, int extra, int packed, int also_slice, const float *p0, const float *dy,
                       float *y, double *eta, float *grad)
{
    const int dqk = s.H * s.dk, dv = s.H * s.dv, W = 2 * dqk + dv + extra;
    Tensor *qkv = test_tensor(3, (int[]){s.B, s.L, W}, true);
    memcpy(qkv->data, p0, qkv->numel * 4);
    Graph g;
    graph_init(&g, 1 << 22, 1);
    graph_begin(&g, 0, false, true);
    float *junk = graph_scratch(&g, (1 << 22) - 4096);
    for (size_t i = 0; i < ((1 << 22) - 4096) / 4; i++) junk[i] = NAN;
    graph_begin(&g, 1, false, true);
    const float sc = scale_of(&s);
    Tensor *out;
    if (packed) {
        out = op_causal_softmax_attn_qkv(&g, qkv, dqk, dv, s.H, sc, 0.0f, eta);
    } else {
        Tensor *q = op_slice_cols(&g, qkv, 0, dqk), *k = op_slice_cols(&g, qkv, dqk, dqk);
        Tensor *v = op_slice_cols(&g, qkv, 2 * dqk, dv);
        out = op_causal_softmax_attn(&g, q, k, v, s.H, sc, 0.0f, eta);
    }
    if (also_slice) out = op_add(&g, out, op_slice_cols(&g, qkv, dqk, dv));
    memcpy(y, out->data, out->numel * 4);
    graph_backward_from(&g, out, dy);
    memcpy(grad, qkv->grad, qkv->numel * 4);
    qkv->grad = NULL;
    graph_free(&g);
    test_tensor_free(qkv);
}

START_TEST(test_packed_qkv_same_bits_as_three_slices)
{
    static const Shape shapes[] = {{1, 1, 1, 1, 1}, {2, 7, 2, 3, 5}, {2, 77, 1, 8, 3}, {1, 130, 2, 16, 8}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int mode = 0; mode < 4; mode++) {
            const Shape s = shapes[i];
            const int extra = mode & 1 ? 3 : 0, also_slice = mode >> 1;
            const size_t rows = (size_t)s.B * s.L, W = 2 * (size_t)s.H * s.dk + (size_t)s.H * s.dv + extra;
            const size_t ny = rows * s.H * s.dv, ne = (size_t)s.B * s.H * s.L;
            float *p0 = malloc(rows * W * 4), *dy = malloc(ny * 4);
            test_fill_uniform(p0, rows * W, 60 + i, -1, 1);
            test_fill_uniform(dy, ny, 70 + i, -1, 1);
            float *y1 = malloc(ny * 4), *y2 = malloc(ny * 4), *g1 = malloc(rows * W * 4), *g2 = malloc(rows * W * 4);
            double *e1 = malloc(ne * 8), *e2 = malloc(ne * 8);
            run_packed(s, extra, 0, also_slice, p0, dy, y1, e1, g1);
            run_packed(s, extra, 1, also_slice, p0, dy, y2, e2, g2);
            ck_assert_msg(memcmp(y1, y2, ny * 4) == 0, "y, shape %zu mode %d", i, mode);
            ck_assert_msg(memcmp(e1, e2, ne * 8) == 0, "log_eta, shape %zu mode %d", i, mode);
            if (!also_slice) {
                for (size_t j = 0; j < rows * W; j++)
                    ck_assert_msg(memcmp(&g1[j], &g2[j], 4) == 0, "grad, shape %zu mode %d element %zu: %g vs %g",
                                  i, mode, j, g1[j], g2[j]);
            } else {
                /* accumulating into an existing gradient adds the per-block
                 * terms to it one by one instead of to their own sum first:
                 * a few roundings of values of size <= ~10 */
                ck_assert_close(g2, g1, rows * W, 1e-5, 1e-6, "packed grad, accumulated");
            }
            free(p0), free(dy), free(y1), free(y2), free(g1), free(g2), free(e1), free(e2);
        }
}
END_TEST

START_TEST(test_packed_qkv_bit_identical_for_1_and_2_threads)
{
    const Shape s = {3, 130, 2, 8, 8};
    const size_t rows = (size_t)s.B * s.L, W = 2 * 16 + 16, ny = rows * 16, ne = (size_t)s.B * s.H * s.L;
    float *p0 = malloc(rows * W * 4), *dy = malloc(ny * 4);
    test_fill_uniform(p0, rows * W, 80, -1, 1);
    test_fill_uniform(dy, ny, 81, -1, 1);
    float *y1 = malloc(ny * 4), *y2 = malloc(ny * 4), *g1 = malloc(rows * W * 4), *g2 = malloc(rows * W * 4);
    double *e1 = malloc(ne * 8), *e2 = malloc(ne * 8);
    omp_set_num_threads(1);
    run_packed(s, 0, 1, 0, p0, dy, y1, e1, g1);
    omp_set_num_threads(2);
    run_packed(s, 0, 1, 0, p0, dy, y2, e2, g2);
    ck_assert(memcmp(y1, y2, ny * 4) == 0 && memcmp(g1, g2, rows * W * 4) == 0 && memcmp(e1, e2, ne * 8) == 0);
    free(p0), free(dy), free(y1), free(y2), free(g1), free(g2), free(e1), free(e2);
}
END_TEST

START_TEST(test_tile_kernels_avx2_match_scalar)
{
#if SIMD_AVX2
    const int nq = 13, lds = 45;
    const int nks[] = {1, 7, 8, 9, 16, 33, 40};
    const int diags[] = {-5, 0, 3, 100};
    float *s1 = malloc(nq * lds * 4), *s2 = malloc(nq * lds * 4);
    for (size_t a = 0; a < sizeof nks / sizeof nks[0]; a++)
        for (size_t b = 0; b < sizeof diags / sizeof diags[0]; b++) {
            const int nk = nks[a], diag = diags[b];
            float m1[13], l1[13], al1[13], m2[13], l2[13], al2[13], lse[13];
            test_fill_uniform(s1, nq * lds, a * 10 + b, -8, 8);
            memcpy(s2, s1, nq * lds * 4);
            /* second tile of a row: previous max and sum in place */
            test_fill_uniform(m1, nq, 900 + a, -2, 6);
            test_fill_uniform(l1, nq, 901 + a, 1, 5);
            memcpy(m2, m1, sizeof m1), memcpy(l2, l1, sizeof l1);
            attn_sm_fwd_tile_scalar(s1, lds, nq, nk, diag, m1, l1, al1);
            attn_sm_fwd_tile_avx2(s2, lds, nq, nk, diag, m2, l2, al2);
            for (int r = 0; r < nq; r++) {
                ck_assert_close(s2 + r * lds, s1 + r * lds, nk, 1e-6, 1e-5, "fwd tile p");
                /* columns past nk are untouched */
                ck_assert_close(s2 + r * lds + nk, s1 + r * lds + nk, lds - nk, 0, 0, "fwd tile pad");
            }
            ck_assert_close(m2, m1, nq, 0, 0, "fwd tile m");
            ck_assert_close(l2, l1, nq, 1e-6, 1e-5, "fwd tile l");
            ck_assert_close(al2, al1, nq, 0, 0, "fwd tile alpha");

            test_fill_uniform(s1, nq * lds, 50 + a * 10 + b, -8, 8);
            memcpy(s2, s1, nq * lds * 4);
            test_fill_uniform(lse, nq, 7 + a, 5, 9);
            attn_sm_bwd_probs_scalar(s1, lds, nq, nk, diag, lse);
            attn_sm_bwd_probs_avx2(s2, lds, nq, nk, diag, lse);
            ck_assert_close(s2, s1, nq * lds, 1e-7, 1e-5, "bwd probs");

            /* transpose of an nq x nk block (exact: must be identical) */
            float *t1 = calloc(nk * 16, 4), *t2 = calloc(nk * 16, 4);
            attn_sm_transpose_scalar(s1, lds, nq, nk, t1, 16);
            attn_sm_transpose_avx2(s1, lds, nq, nk, t2, 16);
            for (int r = 0; r < nq; r++)
                for (int c = 0; c < nk; c++) ck_assert_float_eq(t1[c * 16 + r], s1[r * lds + c]);
            ck_assert_close(t2, t1, nk * 16, 0, 0, "transpose");
            free(t1), free(t2);

            float d1[13], d2[13];
            attn_sm_rowdot_scalar(s1, lds, s2, lds, nq, nk, d1);
            attn_sm_rowdot_avx2(s1, lds, s2, lds, nq, nk, d2);
            ck_assert_close(d2, d1, nq, 1e-6, 1e-5, "rowdot");
        }
    free(s1), free(s2);
#endif
}
END_TEST

START_TEST(test_fwd_tile_masks_causally)
{
    /* a tile with diag = 2: row r sees columns c <= r + 2 */
    const int nq = 4, nk = 8;
    float s[4 * 8], m[4], l[4], al[4];
    for (int i = 0; i < nq * nk; i++) s[i] = 0.5f * (float)(i % 5);
    for (int r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0;
    attn_sm_fwd_tile(s, nk, nq, nk, 2, m, l, al);
    for (int r = 0; r < nq; r++) {
        double sum = 0;
        for (int c = 0; c < nk; c++) {
            if (c > r + 2) ck_assert_float_eq(s[r * nk + c], 0.0f);
            else ck_assert(s[r * nk + c] > 0);
            sum += s[r * nk + c];
        }
        ck_assert_float_eq_tol((float)sum, l[r], 1e-6f);
        ck_assert_float_eq(al[r], 0.0f); /* first tile: previous max was -inf */
    }
}
END_TEST

Suite *suite_attn_softmax(void)
{
    Suite *s = suite_create("attn_softmax");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_forward_and_log_eta_match_double_reference);
    tcase_add_test(tc, test_large_scores_stay_finite_and_match_reference);
    tcase_add_test(tc, test_gradients_match_finite_differences);
    tcase_add_test(tc, test_shared_q_and_k_gradients_accumulate);
    tcase_add_test(tc, test_backward_matches_double_reference);
    tcase_add_test(tc, test_results_bit_identical_for_1_2_3_threads);
    tcase_add_test(tc, test_packed_qkv_same_bits_as_three_slices);
    tcase_add_test(tc, test_packed_qkv_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_tile_kernels_avx2_match_scalar);
    tcase_add_test(tc, test_fwd_tile_masks_causally);
    suite_add_tcase(s, tc);
    return s;
}
