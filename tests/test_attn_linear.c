#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops/attn_linear.h"
#include "../src/simd.h"
#include "testutil.h"

/* ------------------------------------------------------------ references */

typedef struct Shape {
    int B, L, H, dk, dv;
} Shape;

/* Explicit recurrence in float64: S_t = S_{t-1} + k_t v_t^T, z_t = z_{t-1} + k_t,
 * y_t = q_t^T S_t (/ q_t . z_t).  Also returns log den (B, H, L) when
 * normalising, and per element the magnitude sum_{s<=t} |q_t.k_s| |v_s| / |den_t|
 * that bounds float32 rounding of the chunked sums. */
static void ref_forward(const Shape *s, const float *q, const float *k, const float *v, bool normalize,
                        double *y, double *log_den, double *mag)
{
    const int Hk = s->H * s->dk, Hv = s->H * s->dv;
    double *S = calloc((size_t)s->dk * s->dv, sizeof *S), *z = calloc((size_t)s->dk, sizeof *z);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++) {
            memset(S, 0, (size_t)s->dk * s->dv * sizeof *S);
            memset(z, 0, (size_t)s->dk * sizeof *z);
            for (int t = 0; t < s->L; t++) {
                const float *qt = q + ((size_t)b * s->L + t) * Hk + h * s->dk;
                const float *kt = k + ((size_t)b * s->L + t) * Hk + h * s->dk;
                const float *vt = v + ((size_t)b * s->L + t) * Hv + h * s->dv;
                for (int i = 0; i < s->dk; i++) {
                    z[i] += kt[i];
                    for (int j = 0; j < s->dv; j++) S[i * s->dv + j] += (double)kt[i] * vt[j];
                }
                double den = 1.0;
                if (normalize) {
                    den = 0.0;
                    for (int i = 0; i < s->dk; i++) den += (double)qt[i] * z[i];
                    log_den[((size_t)b * s->H + h) * s->L + t] = log(den);
                }
                for (int j = 0; j < s->dv; j++) {
                    double num = 0.0, m = 0.0;
                    for (int i = 0; i < s->dk; i++) num += (double)qt[i] * S[i * s->dv + j];
                    for (int u = 0; u <= t; u++) {
                        const float *ku = k + ((size_t)b * s->L + u) * Hk + h * s->dk;
                        double a = 0.0;
                        for (int i = 0; i < s->dk; i++) a += (double)qt[i] * ku[i];
                        m += fabs(a) * fabs((double)v[((size_t)b * s->L + u) * Hv + h * s->dv + j]);
                    }
                    size_t o = ((size_t)b * s->L + t) * Hv + h * s->dv + j;
                    y[o] = num / den;
                    mag[o] = m / fabs(den);
                }
            }
        }
    free(S);
    free(z);
}

/* Naive O(L^2) backward in float64 from the quadratic form
 * y_t = sum_{s<=t} a_ts v_s / den_t, a_ts = q_t . k_s:
 * w_t = dy_t / den_t, c_t = -(w_t . y_t) (normalize; else w = dy, c = 0),
 * da_ts = w_t . v_s + c_t, dq_t = sum_s da_ts k_s, dk_s = sum_t da_ts q_t,
 * dv_s = sum_t a_ts w_t. */
static void ref_backward(const Shape *s, const float *q, const float *k, const float *v, bool normalize,
                         const float *dy, double *dq, double *dk, double *dv)
{
    const int Hk = s->H * s->dk, Hv = s->H * s->dv, dk_ = s->dk, dv_ = s->dv;
    memset(dq, 0, sizeof(double) * s->B * s->L * Hk);
    memset(dk, 0, sizeof(double) * s->B * s->L * Hk);
    memset(dv, 0, sizeof(double) * s->B * s->L * Hv);
    double *a = malloc(sizeof(double) * s->L), *w = malloc(sizeof(double) * dv_),
           *yt = malloc(sizeof(double) * dv_);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++)
            for (int t = 0; t < s->L; t++) {
                const size_t rq = ((size_t)b * s->L + t) * Hk + h * dk_;
                const size_t rv = ((size_t)b * s->L + t) * Hv + h * dv_;
                double den = 0.0;
                for (int u = 0; u <= t; u++) {
                    const size_t ru = ((size_t)b * s->L + u) * Hk + h * dk_;
                    a[u] = 0.0;
                    for (int i = 0; i < dk_; i++) a[u] += (double)q[rq + i] * k[ru + i];
                    den += a[u];
                }
                if (!normalize) den = 1.0;
                double c = 0.0;
                for (int j = 0; j < dv_; j++) {
                    yt[j] = 0.0;
                    for (int u = 0; u <= t; u++)
                        yt[j] += a[u] * v[((size_t)b * s->L + u) * Hv + h * dv_ + j];
                    yt[j] /= den;
                    w[j] = dy[rv + j] / den;
                    if (normalize) c -= w[j] * yt[j];
                }
                for (int u = 0; u <= t; u++) {
                    const size_t ru = ((size_t)b * s->L + u) * Hk + h * dk_;
                    const size_t rvu = ((size_t)b * s->L + u) * Hv + h * dv_;
                    double da = c;
                    for (int j = 0; j < dv_; j++) da += w[j] * v[rvu + j];
                    for (int i = 0; i < dk_; i++) {
                        dq[rq + i] += da * k[ru + i];
                        dk[ru + i] += da * q[rq + i];
                    }
                    for (int j = 0; j < dv_; j++) dv[rvu + j] += a[u] * w[j];
                }
            }
    free(a);
    free(w);
    free(yt);
}

/* ---------------------------------------------------------------- helpers */

typedef struct Inputs {
    Tensor *q, *k, *v;
} Inputs;

/* q, k positive like elu+1 outputs (denominators > 0), v of both signs. */
static Inputs make_inputs(const Shape *s, uint64_t seed, bool grad)
{
    Inputs in;
    in.q = test_tensor(3, (int[]){s->B, s->L, s->H * s->dk}, grad);
    in.k = test_tensor(3, (int[]){s->B, s->L, s->H * s->dk}, grad);
    in.v = test_tensor(3, (int[]){s->B, s->L, s->H * s->dv}, grad);
    test_fill_uniform(in.q->data, in.q->numel, seed, 0.05f, 2.0f);
    test_fill_uniform(in.k->data, in.k->numel, seed + 1, 0.05f, 2.0f);
    test_fill_uniform(in.v->data, in.v->numel, seed + 2, -1.0f, 1.0f);
    return in;
}

static void free_inputs(Inputs *in)
{
    test_tensor_free(in->q);
    test_tensor_free(in->k);
    test_tensor_free(in->v);
}

typedef struct FwdCtx {
    int H, chunk;
    bool normalize;
} FwdCtx;

static Tensor *fwd_qkv(Graph *g, Tensor **in, void *vctx)
{
    const FwdCtx *c = vctx;
    return op_causal_linear_attn_chunked(g, in[0], in[1], in[2], c->H, c->normalize, NULL, c->chunk);
}

/* k = q: the same tensor feeds two slots, so its gradients must add up. */
static Tensor *fwd_shared_qk(Graph *g, Tensor **in, void *vctx)
{
    const FwdCtx *c = vctx;
    return op_causal_linear_attn_chunked(g, in[0], in[0], in[1], c->H, c->normalize, NULL, c->chunk);
}

/* ------------------------------------------------------------------ tests */

static void check_forward(const Shape *s, bool normalize, int chunk, uint64_t seed)
{
    Inputs in = make_inputs(s, seed, false);
    const size_t ny = (size_t)s->B * s->L * s->H * s->dv, nl = (size_t)s->B * s->H * s->L;
    double *ry = malloc(ny * sizeof *ry), *mag = malloc(ny * sizeof *mag);
    double *rl = malloc(nl * sizeof *rl), *le = malloc(nl * sizeof *le);
    ref_forward(s, in.q->data, in.k->data, in.v->data, normalize, ry, rl, mag);
    for (size_t i = 0; i < nl; i++) le[i] = NAN;

    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    Tensor *y = op_causal_linear_attn_chunked(&g, in.q, in.k, in.v, s->H, normalize, le, chunk);
    ck_assert_int_eq(y->ndim, 3);
    ck_assert_int_eq(y->shape[2], s->H * s->dv);
    /* float32 sums of up to dk + C products, each rounding relative 6e-8 of
     * the running magnitude: 1e-5 of the absolute-value sum bounds it */
    for (size_t i = 0; i < ny; i++) {
        double err = fabs((double)y->data[i] - ry[i]);
        ck_assert_msg(err <= 1e-5 * mag[i] + 1e-30, "B%d L%d H%d dk%d dv%d norm%d C%d: y[%zu] %.9g vs %.9g",
                      s->B, s->L, s->H, s->dk, s->dv, normalize, chunk, i, y->data[i], ry[i]);
    }
    if (normalize)
        for (size_t i = 0; i < nl; i++)
            ck_assert_msg(fabs(le[i] - rl[i]) <= 1e-5, "log_eta[%zu] %.9g vs %.9g", i, le[i], rl[i]);
    else
        for (size_t i = 0; i < nl; i++) ck_assert_msg(isnan(le[i]), "log_eta written without normalize");
    graph_free(&g);
    free(ry), free(mag), free(rl), free(le);
    free_inputs(&in);
}

static const Shape fwd_shapes[] = {
    {2, 7, 2, 3, 5}, {1, 1, 1, 1, 1}, {3, 1, 2, 4, 3}, {2, 77, 1, 5, 9},
    {2, 130, 2, 16, 8}, {1, 64, 1, 64, 64}, {1, 65, 3, 8, 17},
};
static const int fwd_chunks[] = {ATTNLIN_CHUNK, 1, 5, 64, 1000};

START_TEST(test_forward_matches_float64_recurrence_both_modes_any_chunk)
{
    for (size_t i = 0; i < sizeof fwd_shapes / sizeof fwd_shapes[0]; i++)
        for (size_t c = 0; c < sizeof fwd_chunks / sizeof fwd_chunks[0]; c++)
            for (int norm = 0; norm < 2; norm++) check_forward(&fwd_shapes[i], norm, fwd_chunks[c], 10 + i);
}
END_TEST

START_TEST(test_default_op_uses_one_chunk_for_short_sequences_else_default_chunk)
{
    ck_assert_int_eq(attnlin_default_chunk(64, 128, 128), 64);
    ck_assert_int_eq(attnlin_default_chunk(96, 128, 128), 96);
    ck_assert_int_eq(attnlin_default_chunk(128, 128, 128), ATTNLIN_CHUNK);
    ck_assert_int_eq(attnlin_default_chunk(128, 64, 64), ATTNLIN_CHUNK);
    ck_assert_int_eq(attnlin_default_chunk(512, 128, 128), ATTNLIN_CHUNK);
    ck_assert_int_eq(attnlin_default_chunk(1024, 16, 128), ATTNLIN_CHUNK);
    const int lengths[] = {40, 77};
    for (int li = 0; li < 2; li++) {
        const Shape s = {2, lengths[li], 2, 5, 3};
        Inputs in = make_inputs(&s, 3, false);
        const size_t nl = (size_t)s.B * s.H * s.L;
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        double *l1 = malloc(sizeof(double) * nl), *l2 = malloc(sizeof(double) * nl);
        Tensor *y1 = op_causal_linear_attn(&g, in.q, in.k, in.v, s.H, true, l1);
        Tensor *y2 = op_causal_linear_attn_chunked(&g, in.q, in.k, in.v, s.H, true, l2,
                                                   attnlin_default_chunk(s.L, s.dk, s.dv));
        ck_assert(memcmp(y1->data, y2->data, y1->numel * sizeof(float)) == 0);
        ck_assert(memcmp(l1, l2, sizeof(double) * nl) == 0);
        graph_free(&g);
        free(l1), free(l2);
        free_inputs(&in);
    }
}
END_TEST

static void check_grad(const Shape *s, bool normalize, int chunk, size_t max_probe, uint64_t seed)
{
    Inputs in = make_inputs(s, seed, true);
    FwdCtx c = {s->H, chunk, normalize};
    GradcheckOpts o = GRADCHECK_DEFAULTS;
    o.max_probe = max_probe;
    /* unnormalised, y is linear in every single input element: central
     * differences have no truncation error and a larger step only lowers the
     * float32 rounding noise of the loss difference */
    if (!normalize) o.eps = 0.1;
    char label[96];
    snprintf(label, sizeof label, "attn_linear B%d L%d H%d dk%d dv%d norm%d C%d", s->B, s->L, s->H,
             s->dk, s->dv, normalize, chunk);
    ck_assert(gradcheck(label, fwd_qkv, &c, (Tensor *[]){in.q, in.k, in.v}, 3, o));
    free_inputs(&in);
}

START_TEST(test_gradients_match_finite_differences_tiny)
{
    const Shape s = {2, 7, 2, 3, 5};
    for (int norm = 0; norm < 2; norm++) {
        check_grad(&s, norm, ATTNLIN_CHUNK, 0, 20);   /* one chunk */
        check_grad(&s, norm, 3, 0, 21);               /* chunks 3, 3, 1 */
        check_grad(&s, norm, 1, 0, 22);               /* one row per chunk */
    }
}
END_TEST

START_TEST(test_gradients_match_finite_differences_length_one)
{
    const Shape s = {3, 1, 2, 3, 5};
    for (int norm = 0; norm < 2; norm++) check_grad(&s, norm, ATTNLIN_CHUNK, 0, 30);
}
END_TEST

START_TEST(test_gradients_match_finite_differences_several_default_chunks)
{
    /* 77 = 32 + 32 + 13: chunks of the default size, the last partial */
    const Shape s = {1, 77, 2, 3, 2};
    for (int norm = 0; norm < 2; norm++) check_grad(&s, norm, ATTNLIN_CHUNK, 60, 40);
}
END_TEST

START_TEST(test_gradients_accumulate_and_skip_inputs_without_grad)
{
    const Shape s = {2, 9, 2, 3, 4};
    for (int norm = 0; norm < 2; norm++) {
        /* k is q: both slots' gradients must be summed */
        Inputs in = make_inputs(&s, 50 + norm, true);
        FwdCtx c = {s.H, 4, norm};
        GradcheckOpts o = GRADCHECK_DEFAULTS;
        ck_assert(gradcheck("attn_linear q=k", fwd_shared_qk, &c, (Tensor *[]){in.q, in.v}, 2, o));
        /* only one input needs a gradient at a time */
        Tensor *all[3] = {in.q, in.k, in.v};
        for (int only = 0; only < 3; only++) {
            for (int j = 0; j < 3; j++) all[j]->requires_grad = j == only;
            ck_assert(gradcheck("attn_linear single input", fwd_qkv, &c, all, 3, o));
        }
        free_inputs(&in);
    }
}
END_TEST

/* Run forward + backward from dy; grads into fresh float arrays. */
static void run_fwd_bwd(const Shape *s, Inputs *in, bool normalize, int chunk, const float *dy,
                        float *y_out, float *dq, float *dk, float *dv, double *log_eta)
{
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    in->q->grad = in->k->grad = in->v->grad = NULL;
    Tensor *y = op_causal_linear_attn_chunked(&g, in->q, in->k, in->v, s->H, normalize, log_eta, chunk);
    graph_backward_from(&g, y, dy);
    memcpy(y_out, y->data, y->numel * sizeof(float));
    memcpy(dq, in->q->grad, in->q->numel * sizeof(float));
    memcpy(dk, in->k->grad, in->k->numel * sizeof(float));
    memcpy(dv, in->v->grad, in->v->numel * sizeof(float));
    in->q->grad = in->k->grad = in->v->grad = NULL;
    graph_free(&g);
}

/* ||a - ref|| / ||ref|| in float64 */
static double rel_err(const float *a, const double *ref, size_t n)
{
    double e = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        e += d * d;
        r += ref[i] * ref[i];
    }
    return sqrt(e / r);
}

START_TEST(test_backward_matches_float64_reference_medium)
{
    const Shape s = {2, 130, 2, 16, 8};
    const int chunks[] = {ATTNLIN_CHUNK, 7, 130};
    for (int norm = 0; norm < 2; norm++)
        for (int ci = 0; ci < 3; ci++) {
            Inputs in = make_inputs(&s, 60 + norm, true);
            const size_t nq = in.q->numel, nv = in.v->numel;
            float *dy = malloc(nv * 4), *y = malloc(nv * 4), *dq = malloc(nq * 4), *dk = malloc(nq * 4),
                  *dv = malloc(nv * 4);
            double *rq = malloc(nq * 8), *rk = malloc(nq * 8), *rv = malloc(nv * 8);
            test_fill_uniform(dy, nv, 70, -1, 1);
            run_fwd_bwd(&s, &in, norm, chunks[ci], dy, y, dq, dk, dv, NULL);
            ref_backward(&s, in.q->data, in.k->data, in.v->data, norm, dy, rq, rk, rv);
            double eq = rel_err(dq, rq, nq), ek = rel_err(dk, rk, nq), ev = rel_err(dv, rv, nv);
            /* float32 sums of ~100-term products: ~1e-6 relative in norm */
            ck_assert_msg(eq < 1e-5 && ek < 1e-5 && ev < 1e-5,
                          "norm%d C%d: relative errors dq %.3g dk %.3g dv %.3g", norm, chunks[ci], eq, ek, ev);
            free(dy), free(y), free(dq), free(dk), free(dv), free(rq), free(rk), free(rv);
            free_inputs(&in);
        }
}
END_TEST

START_TEST(test_one_and_two_threads_bit_identical)
{
    const Shape s = {3, 130, 2, 16, 8}; /* B*H = 6 (b, h) pairs over the threads */
    for (int norm = 0; norm < 2; norm++) {
        Inputs in = make_inputs(&s, 80 + norm, true);
        const size_t nq = in.q->numel, nv = in.v->numel, nl = (size_t)s.B * s.H * s.L;
        float *dy = malloc(nv * 4);
        test_fill_uniform(dy, nv, 90, -1, 1);
        float *r[2][4];
        double *l[2];
        for (int th = 0; th < 2; th++) {
            r[th][0] = malloc(nv * 4), r[th][1] = malloc(nq * 4), r[th][2] = malloc(nq * 4),
            r[th][3] = malloc(nv * 4);
            l[th] = calloc(nl, 8);
            omp_set_num_threads(th + 1);
            run_fwd_bwd(&s, &in, norm, ATTNLIN_CHUNK, dy, r[th][0], r[th][1], r[th][2], r[th][3],
                        norm ? l[th] : NULL);
        }
        ck_assert_msg(memcmp(r[0][0], r[1][0], nv * 4) == 0, "y differs");
        ck_assert_msg(memcmp(r[0][1], r[1][1], nq * 4) == 0, "dq differs");
        ck_assert_msg(memcmp(r[0][2], r[1][2], nq * 4) == 0, "dk differs");
        ck_assert_msg(memcmp(r[0][3], r[1][3], nv * 4) == 0, "dv differs");
        ck_assert_msg(memcmp(l[0], l[1], nl * 8) == 0, "log_eta differs");
        for (int th = 0; th < 2; th++) {
            for (int j = 0; j < 4; j++) free(r[th][j]);
            free(l[th]);
        }
        free(dy);
        free_inputs(&in);
    }
}
END_TEST

START_TEST(test_kernels_avx2_match_scalar)
{
#if SIMD_AVX2
    for (int dv = 1; dv <= 37; dv += 3) {
        const int n = 5, ldn = dv + 3, ldy = dv + 2;
        float *N = malloc(sizeof(float) * n * ldn), *y1 = calloc((size_t)n * ldy, 4),
              *y2 = calloc((size_t)n * ldy, 4), *d1 = malloc(4 * n), *d2 = malloc(4 * n);
        test_fill_uniform(N, (size_t)n * ldn, dv, 0.1f, 3.0f);
        attnlin_k_normalize_rows_scalar(N, ldn, n, dv, y1, ldy, d1);
        attnlin_k_normalize_rows_avx2(N, ldn, n, dv, y2, ldy, d2);
        /* both are one IEEE division per element; padding must stay untouched */
        ck_assert(memcmp(y1, y2, sizeof(float) * n * ldy) == 0);
        ck_assert(memcmp(d1, d2, sizeof(float) * n) == 0);

        float *dy = malloc(sizeof(float) * n * ldn), *W1 = calloc((size_t)n * ldn, 4),
              *W2 = calloc((size_t)n * ldn, 4);
        test_fill_uniform(dy, (size_t)n * ldn, dv + 50, -1, 1);
        attnlin_k_grad_rows_scalar(dy, ldn, y1, ldy, d1, n, dv, W1, ldn);
        attnlin_k_grad_rows_avx2(dy, ldn, y1, ldy, d1, n, dv, W2, ldn);
        for (int t = 0; t < n; t++) {
            /* quotients exact; the dot product only differs in summation order */
            ck_assert(memcmp(W1 + t * ldn, W2 + t * ldn, sizeof(float) * dv) == 0);
            ck_assert_close(W2 + t * ldn + dv, W1 + t * ldn + dv, 1, 1e-6, 1e-5, "grad_rows dot");
            for (int j = dv + 1; j < ldn; j++) ck_assert(W2[t * ldn + j] == 0.0f);
        }
        free(N), free(y1), free(y2), free(d1), free(d2), free(dy), free(W1), free(W2);
    }
#endif
}
END_TEST

Suite *suite_attn_linear(void)
{
    Suite *s = suite_create("attn_linear");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_forward_matches_float64_recurrence_both_modes_any_chunk);
    tcase_add_test(tc, test_default_op_uses_one_chunk_for_short_sequences_else_default_chunk);
    tcase_add_test(tc, test_gradients_match_finite_differences_tiny);
    tcase_add_test(tc, test_gradients_match_finite_differences_length_one);
    tcase_add_test(tc, test_gradients_match_finite_differences_several_default_chunks);
    tcase_add_test(tc, test_gradients_accumulate_and_skip_inputs_without_grad);
    tcase_add_test(tc, test_backward_matches_float64_reference_medium);
    tcase_add_test(tc, test_one_and_two_threads_bit_identical);
    tcase_add_test(tc, test_kernels_avx2_match_scalar);
    suite_add_tcase(s, tc);
    return s;
}
