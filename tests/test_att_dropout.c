/* Attention dropout (model.att_dropout): the tile mask kernel against
 * rng_uniform_at, the fused softmax attention with dropout against a plain
 * double-precision reference over the full (B, H, L, L) matrix, gradients,
 * thread counts, the p = 0 / evaluation paths, the keep fraction, and the
 * config key. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops/attn_dropout.h"
#include "../src/ops/attn_softmax.h"
#include "../models/transformer.h"
#include "../src/ops.h"
#include "../src/rng.h"
#include "testutil.h"

enum { SEED = 987654321 };

/* The multiplier of element i as the spec says: keep iff u_i >= p. */
static float ref_mult(uint64_t key, uint32_t step, uint32_t op, float p, uint64_t i)
{
    return rng_uniform_at(key, step, op, i) >= p ? 1.0f / (1.0f - p) : 0.0f;
}

/* ------------------------------------------------------------ mask kernel */

/* Every multiplier of a tile equals ref_mult of its index (visible columns)
 * or 0 (masked columns), for the scalar and the dispatched kernel, and the
 * AVX2 kernel gives the scalar's bits: row starts at every residue mod 4,
 * rows longer than one counter batch, counters past 2^32 (high word) and a
 * run of counters crossing 2^32. */
START_TEST(test_mask_kernel_matches_rng_uniform_at)
{
    const struct {
        uint64_t i0, row_step;
        int nq, nk, diag;
    } cases[] = {
        {0, 64, 64, 64, 1000},       /* a full off-diagonal tile */
        {5, 77, 13, 45, 0},          /* diagonal tile, odd strides */
        {3, 130, 64, 64, -20},       /* rows with no visible column */
        {1, 1, 7, 1, 0},             /* one column */
        {2, 1300, 3, 1300, 5000},    /* rows longer than a counter batch */
        {(1ull << 36) + 7, 999, 20, 40, 30},          /* high counter word */
        {(4ull << 32) - 130, 61, 9, 61, 100},          /* counters crossing 2^32 */
    };
    const AttnDropout drs[] = {{SEED, 17, 3, 0.1f}, {0xFFFFFFFF00000001ull, 0xABCDEF01u, 0, 0.5f},
                               {12345, 0, 7, 0.9f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (size_t di = 0; di < sizeof drs / sizeof drs[0]; di++) {
            const AttnDropout *dr = &drs[di];
            const int nq = cases[ci].nq, nk = cases[ci].nk, ldm = nk + 3;
            float *ms = malloc((size_t)nq * ldm * 4), *md = malloc((size_t)nq * ldm * 4);
            for (int i = 0; i < nq * ldm; i++) ms[i] = md[i] = -7.0f; /* padding must stay */
            attn_drop_mult_scalar(dr, cases[ci].i0, cases[ci].row_step, nq, nk, cases[ci].diag, ms, ldm);
            attn_drop_mult(dr, cases[ci].i0, cases[ci].row_step, nq, nk, cases[ci].diag, md, ldm);
            for (int r = 0; r < nq; r++)
                for (int c = 0; c < ldm; c++) {
                    float want = -7.0f;
                    if (c < nk)
                        want = c <= r + cases[ci].diag
                                   ? ref_mult(dr->key, dr->step, dr->op, dr->p,
                                              cases[ci].i0 + (uint64_t)r * cases[ci].row_step + (uint64_t)c)
                                   : 0.0f;
                    ck_assert_msg(ms[r * ldm + c] == want, "case %zu/%zu scalar (%d, %d): %g vs %g", ci, di,
                                  r, c, ms[r * ldm + c], want);
                }
            ck_assert_msg(memcmp(ms, md, (size_t)nq * ldm * 4) == 0, "case %zu/%zu: dispatched != scalar", ci, di);
#if SIMD_AVX2
            for (int i = 0; i < nq * ldm; i++) md[i] = -7.0f;
            attn_drop_mult_avx2(dr, cases[ci].i0, cases[ci].row_step, nq, nk, cases[ci].diag, md, ldm);
            ck_assert_msg(memcmp(ms, md, (size_t)nq * ldm * 4) == 0, "case %zu/%zu: AVX2 != scalar", ci, di);
#endif
            free(ms), free(md);
        }
}
END_TEST

/* ------------------------------------------------------- double reference */

typedef struct Shape {
    int B, L, H, dk, dv;
} Shape;

typedef struct Drop {
    uint64_t key;
    uint32_t step, op;
    float p;
} Drop;

/* M_ts of head bh (0 for s > t). */
static double mult_at(const Drop *d, const Shape *s, int bh, int t, int u)
{
    const uint64_t i = (((uint64_t)bh * s->L + t) * s->L) + u;
    return (double)ref_mult(d->key, d->step, d->op, d->p, i);
}

/* A (un-dropped softmax) of row t of head (b, h) into P[0..t]. */
static void ref_probs(const Shape *s, const float *q, const float *k, double scale, int b, int h, int t,
                      double *P)
{
    const int L = s->L, dk = s->dk, ldq = s->H * dk;
    const float *qt = q + ((size_t)b * L + t) * ldq + h * dk;
    double m = -INFINITY, z = 0;
    for (int u = 0; u <= t; u++) {
        const float *ku = k + ((size_t)b * L + u) * ldq + h * dk;
        double acc = 0;
        for (int j = 0; j < dk; j++) acc += (double)qt[j] * ku[j];
        P[u] = scale * acc;
        if (P[u] > m) m = P[u];
    }
    for (int u = 0; u <= t; u++) z += (P[u] = exp(P[u] - m));
    for (int u = 0; u <= t; u++) P[u] /= z;
}

/* y = (A o M) v, and the gradients of sum(y * dy) (dy may be NULL), all in
 * double.  D_t is computed as sum_s A_ts dA_ts, not as dy_t . y_t. */
static void ref_attn(const Shape *s, const Drop *dr, const float *q, const float *k, const float *v,
                     const float *dy, double scale, double *y, double *gq, double *gk, double *gv)
{
    const int L = s->L, H = s->H, dk = s->dk, dv = s->dv, ldq = H * dk, ldv = H * dv;
    const size_t nq = (size_t)s->B * L * ldq, nv = (size_t)s->B * L * ldv;
    if (dy) memset(gq, 0, nq * sizeof *gq), memset(gk, 0, nq * sizeof *gk), memset(gv, 0, nv * sizeof *gv);
    double *P = malloc((size_t)L * sizeof *P), *M = malloc((size_t)L * sizeof *M);
    double *dA = malloc((size_t)L * sizeof *dA);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < L; t++) {
                const size_t rq = ((size_t)b * L + t) * ldq + h * dk, rv = ((size_t)b * L + t) * ldv + h * dv;
                ref_probs(s, q, k, scale, b, h, t, P);
                for (int u = 0; u <= t; u++) M[u] = mult_at(dr, s, b * H + h, t, u);
                for (int j = 0; j < dv; j++) {
                    double acc = 0;
                    for (int u = 0; u <= t; u++) acc += P[u] * M[u] * v[((size_t)b * L + u) * ldv + h * dv + j];
                    y[rv + j] = acc;
                }
                if (!dy) continue;
                double D = 0;
                for (int u = 0; u <= t; u++) {
                    double acc = 0;
                    for (int j = 0; j < dv; j++) acc += (double)dy[rv + j] * v[((size_t)b * L + u) * ldv + h * dv + j];
                    dA[u] = M[u] * acc;
                    D += P[u] * dA[u];
                }
                for (int u = 0; u <= t; u++) {
                    const size_t uq = ((size_t)b * L + u) * ldq + h * dk, uv = ((size_t)b * L + u) * ldv + h * dv;
                    const double ds = scale * P[u] * (dA[u] - D);
                    for (int j = 0; j < dk; j++) {
                        gq[rq + j] += ds * k[uq + j];
                        gk[uq + j] += ds * q[rq + j];
                    }
                    for (int j = 0; j < dv; j++) gv[uv + j] += P[u] * M[u] * dy[rv + j];
                }
            }
    free(P), free(M), free(dA);
}

static double max_abs(const double *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* |a - ref| <= rel * (max|ref| + |ref_i|) */
static void assert_close_to_ref(const float *a, const double *ref, size_t n, double rel, const char *label)
{
    float *rf = malloc(n * sizeof *rf);
    for (size_t i = 0; i < n; i++) rf[i] = (float)ref[i];
    ck_assert_msg(test_close_ratio(a, rf, n, rel * max_abs(ref, n) + 1e-30, rel, label) <= 1.0, "%s not close",
                  label);
    free(rf);
}

typedef struct Inputs {
    Shape s;
    Tensor *q, *k, *v;
} Inputs;

static Inputs make_inputs(Shape s, uint64_t seed)
{
    Inputs in = {.s = s};
    in.q = test_tensor(3, (int[]){s.B, s.L, s.H * s.dk}, true);
    in.k = test_tensor(3, (int[]){s.B, s.L, s.H * s.dk}, true);
    in.v = test_tensor(3, (int[]){s.B, s.L, s.H * s.dv}, true);
    test_fill_uniform(in.q->data, in.q->numel, seed, -1, 1);
    test_fill_uniform(in.k->data, in.k->numel, seed + 1, -1, 1);
    test_fill_uniform(in.v->data, in.v->numel, seed + 2, -1, 1);
    return in;
}

static void free_inputs(Inputs *in) { test_tensor_free(in->q), test_tensor_free(in->k), test_tensor_free(in->v); }

static float scale_of(const Shape *s) { return 1.0f / sqrtf((float)s->dk); }

/* ------------------------------------------------------------ forward */

/* Forward with p > 0 in training against the double reference, the mask
 * drawn with rng_uniform_at at index ((b*H + h)*L + t)*L + s with the op
 * index the graph hands out (1 here: an op_dropout runs first).  Shapes:
 * L = 1, L below / above / not a multiple of the 64-row tile, dk != dv. */
START_TEST(test_forward_with_dropout_matches_double_reference)
{
    static const Shape shapes[] = {{1, 1, 1, 1, 1}, {2, 7, 2, 3, 5},   {2, 77, 1, 8, 3},
                                   {1, 130, 3, 16, 8}, {1, 200, 2, 5, 13}, {1, 64, 2, 32, 32}};
    const float ps[] = {0.1f, 0.5f};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (size_t pi = 0; pi < 2; pi++) {
            const Shape s = shapes[i];
            const float p = ps[pi];
            Inputs in = make_inputs(s, 100 + 3 * i);
            const size_t ny = in.v->numel, ne = (size_t)s.B * s.H * s.L;
            double *yref = malloc(ny * sizeof *yref), *eta = malloc(ne * sizeof *eta);
            const uint64_t step = 41 + i;
            const Drop dr = {SEED, (uint32_t)step, 1, p};
            ref_attn(&s, &dr, in.q->data, in.k->data, in.v->data, NULL, scale_of(&s), yref, NULL, NULL, NULL);

            Graph g;
            graph_init(&g, 0, SEED);
            graph_begin(&g, step, true, false);
            Tensor *x = test_tensor(1, (int[]){3}, false);
            test_fill_uniform(x->data, 3, 1, -1, 1);
            op_dropout(&g, x, 0.5f); /* takes index 0 */
            Tensor *y = op_causal_softmax_attn(&g, in.q, in.k, in.v, s.H, scale_of(&s), p, eta);
            ck_assert_int_eq((int)g.n_dropout, 2);
            ck_assert_int_eq((int)g.n_entries, 0);
            /* y sums <= L float32 products of probabilities with v in [-1, 1] */
            assert_close_to_ref(y->data, yref, ny, 4e-6, "dropout forward");
            /* log_eta ignores the mask: the same as without dropout */
            double *eta0 = malloc(ne * sizeof *eta0);
            graph_begin(&g, step, false, false);
            op_causal_softmax_attn(&g, in.q, in.k, in.v, s.H, scale_of(&s), 0.0f, eta0);
            ck_assert(memcmp(eta, eta0, ne * sizeof *eta) == 0);
            free(eta0);
            test_tensor_free(x);
            graph_free(&g);
            free(yref), free(eta);
            free_inputs(&in);
        }
}
END_TEST

/* The op's mask read off directly: with q = k = 0 every probability is
 * 1/(t+1), and with v = I (dv = L) y[b, t, h*L + s] = M_ts / (t+1).  Every
 * element is checked against rng_uniform_at, and the kept fraction of the
 * B*H*L(L+1)/2 visible elements is 1-p within 6 binomial standard
 * deviations. */
START_TEST(test_mask_read_off_the_output_and_keep_fraction)
{
    const int B = 2, H = 2, L = 300;
    const float ps[] = {0.1f, 0.3f};
    Tensor *q = test_tensor(3, (int[]){B, L, H}, false), *v = test_tensor(3, (int[]){B, L, H * L}, false);
    memset(q->data, 0, q->numel * 4);
    memset(v->data, 0, v->numel * 4);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < L; t++) v->data[((size_t)b * L + t) * H * L + (size_t)h * L + t] = 1.0f;
    for (int pi = 0; pi < 2; pi++) {
        const float p = ps[pi], sc = 1.0f / (1.0f - p);
        Graph g;
        graph_init(&g, 0, SEED + pi);
        graph_begin(&g, 1000 + pi, true, false);
        Tensor *y = op_causal_softmax_attn(&g, q, q, v, H, 1.0f, p, NULL);
        long kept = 0, total = 0;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < L; t++)
                    for (int s = 0; s < L; s++) {
                        const float got = y->data[((size_t)b * L + t) * H * L + (size_t)h * L + s];
                        if (s > t) {
                            ck_assert_float_eq(got, 0.0f);
                            continue;
                        }
                        const uint64_t i = (((uint64_t)b * H + h) * L + t) * L + s;
                        const bool keep = rng_uniform_at(SEED + pi, 1000 + pi, 0, i) >= p;
                        if (keep)
                            ck_assert_msg(fabsf(got - sc / (float)(t + 1)) <= 1e-6f * sc, "(%d %d %d %d)", b, h, t, s);
                        else
                            ck_assert_msg(got == 0.0f, "(%d %d %d %d) dropped but %g", b, h, t, s, got);
                        kept += keep, total++;
                    }
        const double mean = (double)total * (1.0 - p), sd = sqrt((double)total * p * (1.0 - p));
        ck_assert_msg(fabs((double)kept - mean) <= 6.0 * sd, "p %g: kept %ld of %ld, expected %.0f +- %.0f", p,
                      kept, total, mean, 6 * sd);
        graph_free(&g);
    }
    test_tensor_free(q), test_tensor_free(v);
}
END_TEST

/* ----------------------------------------------------------- backward */

START_TEST(test_backward_with_dropout_matches_double_reference)
{
    static const Shape shapes[] = {{2, 130, 2, 16, 8}, {1, 70, 1, 5, 9}};
    for (size_t i = 0; i < 2; i++) {
        const Shape s = shapes[i];
        const float p = 0.2f;
        Inputs in = make_inputs(s, 200 + i);
        const size_t nq = in.q->numel, nv = in.v->numel;
        double *y = malloc(nv * sizeof *y), *gq = malloc(nq * sizeof *gq), *gk = malloc(nq * sizeof *gk);
        double *gv = malloc(nv * sizeof *gv);
        float *dy = malloc(nv * sizeof *dy);
        test_fill_uniform(dy, nv, 9 + i, -1, 1);
        const Drop dr = {SEED, 5, 0, p};
        ref_attn(&s, &dr, in.q->data, in.k->data, in.v->data, dy, scale_of(&s), y, gq, gk, gv);
        /* all inputs, then v alone and q alone (the backward's branches) */
        const int masks[] = {7, 4, 1};
        for (int mi = 0; mi < 3; mi++) {
            const int mask = masks[mi];
            in.q->requires_grad = mask & 1, in.k->requires_grad = (mask >> 1) & 1, in.v->requires_grad = mask >> 2;
            in.q->grad = in.k->grad = in.v->grad = NULL;
            Graph g;
            graph_init(&g, 0, SEED);
            graph_begin(&g, 5, true, true);
            Tensor *out = op_causal_softmax_attn(&g, in.q, in.k, in.v, s.H, scale_of(&s), p, NULL);
            graph_backward_from(&g, out, dy);
            /* float32 sums over <= 130 keys of terms up to 1/(1-p): 1e-5 of
             * the largest gradient, as without dropout */
            if (mask & 1) assert_close_to_ref(in.q->grad, gq, nq, 1e-5, "dropout dq");
            if (mask & 2) assert_close_to_ref(in.k->grad, gk, nq, 1e-5, "dropout dk");
            if (mask & 4) assert_close_to_ref(in.v->grad, gv, nv, 1e-5, "dropout dv");
            in.q->grad = in.k->grad = in.v->grad = NULL;
            graph_free(&g);
        }
        free(y), free(gq), free(gk), free(gv), free(dy);
        free_inputs(&in);
    }
}
END_TEST

typedef struct Ctx {
    int H;
    float scale, p;
} Ctx;

static Tensor *fwd_attn(Graph *g, Tensor **in, void *ctx)
{
    const Ctx *c = ctx;
    return op_causal_softmax_attn(g, in[0], in[1], in[2], c->H, c->scale, c->p, NULL);
}

static Tensor *fwd_attn_qkv(Graph *g, Tensor **in, void *ctx)
{
    const Ctx *c = ctx;
    const int w = in[0]->shape[2], dqk = (w - 1) / 3; /* [q | k | v | 1 extra column] */
    return op_causal_softmax_attn_qkv(g, in[0], dqk, dqk, c->H, c->scale, c->p, NULL);
}

/* Central differences in training mode: gradcheck runs every pass at the
 * same (seed, step, op index), so the mask is fixed. */
START_TEST(test_gradients_with_dropout_match_finite_differences)
{
    const struct {
        Shape s;
        size_t max_probe;
    } cases[] = {
        {{2, 7, 2, 3, 5}, 0},
        {{2, 1, 2, 3, 5}, 0},
        {{1, 77, 1, 2, 3}, 60},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const Shape s = cases[i].s;
        Inputs in = make_inputs(s, 300 + i);
        Ctx c = {s.H, scale_of(&s), 0.3f};
        GradcheckOpts o = GRADCHECK_DEFAULTS;
        o.max_probe = cases[i].max_probe;
        o.training = true;
        ck_assert(gradcheck("attn dropout", fwd_attn, &c, (Tensor *[]){in.q, in.k, in.v}, 3, o));
        free_inputs(&in);
    }
    Tensor *qkv = test_tensor(3, (int[]){2, 9, 3 * 4 + 1}, true);
    test_fill_uniform(qkv->data, qkv->numel, 310, -1, 1);
    Ctx c = {2, 1.0f / sqrtf(2.0f), 0.3f};
    GradcheckOpts o = GRADCHECK_DEFAULTS;
    o.training = true;
    ck_assert(gradcheck("attn qkv dropout", fwd_attn_qkv, &c, &qkv, 1, o));
    test_tensor_free(qkv);
}
END_TEST

/* ------------------------------------------- paths, packing and threads */

typedef struct Run {
    float *y, *gq, *gk, *gv;
    double *eta;
    uint32_t n_dropout;
} Run;

static Run run_attn(Inputs *in, const float *dy, bool training, float p, uint64_t step)
{
    const Shape s = in->s;
    Run r = {malloc(in->v->numel * 4), malloc(in->q->numel * 4), malloc(in->k->numel * 4),
             malloc(in->v->numel * 4), malloc((size_t)s.B * s.H * s.L * 8), 0};
    in->q->grad = in->k->grad = in->v->grad = NULL;
    Graph g;
    graph_init(&g, 0, SEED);
    graph_begin(&g, step, training, true);
    Tensor *out = op_causal_softmax_attn(&g, in->q, in->k, in->v, s.H, scale_of(&s), p, r.eta);
    r.n_dropout = g.n_dropout;
    graph_backward_from(&g, out, dy);
    memcpy(r.y, out->data, in->v->numel * 4);
    memcpy(r.gq, in->q->grad, in->q->numel * 4);
    memcpy(r.gk, in->k->grad, in->k->numel * 4);
    memcpy(r.gv, in->v->grad, in->v->numel * 4);
    in->q->grad = in->k->grad = in->v->grad = NULL;
    graph_free(&g);
    return r;
}

static void free_run(Run *r) { free(r->y), free(r->gq), free(r->gk), free(r->gv), free(r->eta); }

static bool same_run(const Run *a, const Run *b, const Inputs *in)
{
    const size_t ne = (size_t)in->s.B * in->s.H * in->s.L;
    return memcmp(a->y, b->y, in->v->numel * 4) == 0 && memcmp(a->gq, b->gq, in->q->numel * 4) == 0 &&
           memcmp(a->gk, b->gk, in->k->numel * 4) == 0 && memcmp(a->gv, b->gv, in->v->numel * 4) == 0 &&
           memcmp(a->eta, b->eta, ne * 8) == 0;
}

/* p = 0 in training and p > 0 in evaluation are the plain attention bit for
 * bit (forward, log_eta, backward) and take no dropout index; p > 0 in
 * training changes y and takes one; another step draws another mask. */
START_TEST(test_p0_and_eval_are_bit_identical_to_plain_attention)
{
    const Shape s = {2, 130, 2, 16, 8};
    Inputs in = make_inputs(s, 400);
    float *dy = malloc(in.v->numel * 4);
    test_fill_uniform(dy, in.v->numel, 401, -1, 1);
    Run plain = run_attn(&in, dy, false, 0.0f, 3);
    Run p0 = run_attn(&in, dy, true, 0.0f, 3), ev = run_attn(&in, dy, false, 0.25f, 3);
    Run dr = run_attn(&in, dy, true, 0.25f, 3), dr2 = run_attn(&in, dy, true, 0.25f, 4);
    ck_assert(same_run(&plain, &p0, &in) && p0.n_dropout == 0);
    ck_assert(same_run(&plain, &ev, &in) && ev.n_dropout == 0);
    ck_assert_int_eq((int)dr.n_dropout, 1);
    ck_assert(memcmp(plain.y, dr.y, in.v->numel * 4) != 0);
    ck_assert(memcmp(plain.eta, dr.eta, (size_t)s.B * s.H * s.L * 8) == 0);
    ck_assert(memcmp(dr.y, dr2.y, in.v->numel * 4) != 0);
    free_run(&plain), free_run(&p0), free_run(&ev), free_run(&dr), free_run(&dr2);
    free(dy);
    free_inputs(&in);
}
END_TEST

START_TEST(test_dropout_bit_identical_for_1_and_2_threads)
{
    const Shape s = {1, 150, 3, 16, 24}; /* B*H = 3: uneven split over 2 threads */
    Inputs in = make_inputs(s, 500);
    float *dy = malloc(in.v->numel * 4);
    test_fill_uniform(dy, in.v->numel, 501, -1, 1);
    omp_set_num_threads(1);
    Run a = run_attn(&in, dy, true, 0.1f, 9);
    omp_set_num_threads(2);
    Run b = run_attn(&in, dy, true, 0.1f, 9);
    ck_assert(same_run(&a, &b, &in));
    free_run(&a), free_run(&b);
    free(dy);
    free_inputs(&in);
}
END_TEST

/* The packed form draws the same mask as the op on the three slices. */
START_TEST(test_packed_qkv_dropout_same_bits_as_three_slices)
{
    const Shape s = {2, 77, 2, 8, 4};
    const int dqk = s.H * s.dk, dv = s.H * s.dv, W = 2 * dqk + dv + 2;
    const size_t rows = (size_t)s.B * s.L, ny = rows * dv;
    Tensor *qkv = test_tensor(3, (int[]){s.B, s.L, W}, true);
    test_fill_uniform(qkv->data, qkv->numel, 600, -1, 1);
    float *dy = malloc(ny * 4), *y[2], *gr[2];
    test_fill_uniform(dy, ny, 601, -1, 1);
    for (int packed = 0; packed < 2; packed++) {
        Graph g;
        graph_init(&g, 0, SEED);
        graph_begin(&g, 2, true, true);
        Tensor *out;
        if (packed) {
            out = op_causal_softmax_attn_qkv(&g, qkv, dqk, dv, s.H, scale_of(&s), 0.15f, NULL);
        } else {
            Tensor *q = op_slice_cols(&g, qkv, 0, dqk), *k = op_slice_cols(&g, qkv, dqk, dqk);
            Tensor *v = op_slice_cols(&g, qkv, 2 * dqk, dv);
            out = op_causal_softmax_attn(&g, q, k, v, s.H, scale_of(&s), 0.15f, NULL);
        }
        graph_backward_from(&g, out, dy);
        y[packed] = malloc(ny * 4), gr[packed] = malloc(qkv->numel * 4);
        memcpy(y[packed], out->data, ny * 4);
        memcpy(gr[packed], qkv->grad, qkv->numel * 4);
        qkv->grad = NULL;
        graph_free(&g);
    }
    ck_assert(memcmp(y[0], y[1], ny * 4) == 0);
    ck_assert(memcmp(gr[0], gr[1], qkv->numel * 4) == 0);
    free(y[0]), free(y[1]), free(gr[0]), free(gr[1]), free(dy);
    test_tensor_free(qkv);
}
END_TEST

/* ----------------------------------------------------------------- config */

static int load_model_config(const char *yaml, ModelConfig *mc, char *err, size_t errlen)
{
    ConfigSchema s;
    config_schema_init(&s);
    model_keys_register(&s);
    Config c;
    int rc = config_load_yaml_text(&c, &s, yaml, "test.yaml", err, errlen);
    if (rc == 0) {
        rc = model_keys_to_config(&c, mc, err, errlen);
        config_free(&c);
    }
    config_schema_free(&s);
    return rc;
}

START_TEST(test_config_att_dropout_loads_and_is_range_checked)
{
    ModelConfig mc;
    char err[512] = "";
    ck_assert_msg(load_model_config("model:\n  att_dropout: 0.1\n", &mc, err, sizeof err) == 0, "%s", err);
    ck_assert(transformer_options(&mc)->att_dropout == 0.1f);
    ck_assert_msg(load_model_config("model:\n  layer: mamba\n  att_dropout: 0.2\n", &mc, err, sizeof err) == 0,
                  "%s", err);
    ck_assert(load_model_config("model:\n  hidden_dim: 64\n", &mc, err, sizeof err) == 0);
    ck_assert(transformer_options(&mc)->att_dropout == 0.0f);
    const char *bad[] = {"model:\n  att_dropout: 1.0\n", "model:\n  att_dropout: -0.1\n"};
    for (int i = 0; i < 2; i++) {
        err[0] = '\0';
        ck_assert_int_eq(load_model_config(bad[i], &mc, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "att_dropout") && strstr(err, "[0, 1)"), "'%s'", err);
    }
}
END_TEST

Suite *suite_att_dropout(void)
{
    Suite *s = suite_create("att_dropout");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mask_kernel_matches_rng_uniform_at);
    tcase_add_test(tc, test_forward_with_dropout_matches_double_reference);
    tcase_add_test(tc, test_mask_read_off_the_output_and_keep_fraction);
    tcase_add_test(tc, test_backward_with_dropout_matches_double_reference);
    tcase_add_test(tc, test_gradients_with_dropout_match_finite_differences);
    tcase_add_test(tc, test_p0_and_eval_are_bit_identical_to_plain_attention);
    tcase_add_test(tc, test_dropout_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_packed_qkv_dropout_same_bits_as_three_slices);
    tcase_add_test(tc, test_config_att_dropout_loads_and_is_range_checked);
    suite_add_tcase(s, tc);
    return s;
}
