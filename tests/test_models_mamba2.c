/* Mamba-2 model (models/mamba2.c): parameter names and shapes,
 * initialisation (docs/parameters.md, Mamba-2), forward pass against an
 * independent float64 reference written out below (explicit per-step
 * recurrence), gradients of every parameter through the cross-entropy
 * loss, dsf spectra, dropout, and thread-count independence. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/mamba2.h"
#include "../src/ops.h"
#include "testutil.h"

/* ------------------------------------------------------------ configs */

enum { B_ = 2, L_ = 7, D_ = 8, N_ = 8, H_ = 2, K_ = 4, V_ = 11, NL_ = 2 };

typedef enum { VAR_PRENORM_GLU, VAR_POSTNORM, VAR_NO_GLU, VAR_LTI, VAR_CLASSIFIER, VAR_NO_CONV } Variant;
static const char *variant_name[] = {"prenorm+glu", "postnorm", "no glu", "pseudo-LTI", "classifier",
                                     "no conv"};
#define N_VARIANTS 6

/* Every field set explicitly (no model_config_defaults). */
static ModelConfig make_cfg(Variant v)
{
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.family = &mamba2_family;
    c.vocab_size = V_;
    c.output_dim = V_;
    c.hidden_dim = D_;
    c.state_dim = N_;
    c.num_heads = H_;
    c.num_layers = NL_;
    c.dropout = 0.0f;
    c.head = HEAD_LM;
    Mamba2Options *o = mamba2_options(&c);
    o->conv_dim = K_;
    o->glu = true;
    o->prenorm = true;
    o->pseudo_lti = false;
    switch (v) {
    case VAR_PRENORM_GLU: break;
    case VAR_POSTNORM: o->prenorm = false; break;
    case VAR_NO_GLU: o->glu = false; break;
    case VAR_LTI: o->pseudo_lti = true; break;
    case VAR_CLASSIFIER:
        c.head = HEAD_CLASSIFIER;
        c.output_dim = 3;
        o->prenorm = false;
        break;
    case VAR_NO_CONV: o->conv_dim = 0; break;
    }
    return c;
}

static void model_make(Model *m, const ModelConfig *c, uint64_t seed)
{
    char err[256] = "";
    int rc = model_create(m, c, err, sizeof err);
    ck_assert_msg(rc == 0, "model_create: %s", err);
    model_init(m, seed);
}

static void model_release(Model *m) { model_free(m); }

static float *param(const Model *m, const char *name)
{
    Param *p = paramset_find(&m->params, name);
    ck_assert_msg(p != NULL, "no parameter %s", name);
    return p->t.data;
}

static float *lparam(const Model *m, int layer, const char *suffix)
{
    char name[PARAM_NAME_MAX];
    snprintf(name, sizeof name, "blocks.%d.%s", layer, suffix);
    return paramset_find(&m->params, name) ? param(m, name) : NULL;
}

/* Move every parameter away from its init so that every path matters in
 * the comparisons: decays well inside (0, 1), Delta of order 1, random D,
 * LayerNorm affine not 1/0. */
static void perturb_params(Model *m, uint64_t seed)
{
    for (int i = 0; i < m->params.n; i++) {
        Param *p = m->params.items[i];
        const char *nm = p->name;
        size_t n = p->t.numel;
        uint64_t s = seed * 1000 + (uint64_t)i;
        if (strstr(nm, "norm.weight"))
            test_fill_uniform(p->t.data, n, s, 0.6f, 1.4f);
        else if (strstr(nm, "dt_bias"))
            test_fill_uniform(p->t.data, n, s, -1.0f, 0.5f);
        else if (strstr(nm, "A_log"))
            test_fill_uniform(p->t.data, n, s, -1.0f, 0.5f);
        else if (strstr(nm, "mamba.A"))
            test_fill_uniform(p->t.data, n, s, -2.0f, 1.0f);
        else if (strstr(nm, "mamba.D"))
            test_fill_uniform(p->t.data, n, s, -1.0f, 1.5f);
        else if (strstr(nm, "word_embeddings"))
            test_fill_uniform(p->t.data, n, s, -1.5f, 1.5f);
        else
            test_fill_uniform(p->t.data, n, s, -0.6f, 0.6f);
    }
}

/* ------------------------------------------------------------ batch */

typedef struct TestBatch {
    int32_t tokens[B_ * L_];
    float mask[B_ * L_];
    int32_t rows[B_ * L_];
    int32_t labels[B_ * L_];
    ModelBatch mb;
} TestBatch;

/* LM head: a subset of rows (every position if all_rows); classifier:
 * sequence 0 full, sequence 1 padded after 4 steps. */
static void make_batch(TestBatch *tb, const ModelConfig *c, uint64_t seed, bool all_rows)
{
    Rng r;
    rng_init(&r, rng_derive_key(seed, 77, 0));
    for (int i = 0; i < B_ * L_; i++) tb->tokens[i] = (int32_t)rng_below(&r, (uint64_t)c->vocab_size);
    memset(&tb->mb, 0, sizeof tb->mb);
    tb->mb.B = B_;
    tb->mb.L = L_;
    tb->mb.tokens = tb->tokens;
    if (c->head == HEAD_CLASSIFIER) {
        for (int t = 0; t < L_; t++) {
            tb->mask[t] = 1.0f;
            tb->mask[L_ + t] = t < 4 ? 1.0f : 0.0f;
        }
        tb->mb.mask = tb->mask;
        for (int b = 0; b < B_; b++) tb->labels[b] = (int32_t)rng_below(&r, (uint64_t)c->output_dim);
        return;
    }
    int n = 0;
    for (int i = 0; i < B_ * L_; i++)
        if (all_rows || i % 3 != 1) tb->rows[n++] = i;
    for (int i = 0; i < n; i++) tb->labels[i] = (int32_t)rng_below(&r, (uint64_t)c->output_dim);
    tb->mb.rows = all_rows ? NULL : tb->rows;
    tb->mb.n_rows = n;
}

static int n_logit_rows(const ModelConfig *c, const ModelBatch *mb)
{
    return c->head == HEAD_CLASSIFIER ? mb->B : (mb->rows ? mb->n_rows : mb->B * mb->L);
}

/* ------------------------------------------------------------ float64 reference */

static double sp(double x) { return x > 20 ? x : log1p(exp(x)); }
static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

static void ref_layernorm(const double *x, double *y, const float *w, const float *b, int rows, int d)
{
    for (int r = 0; r < rows; r++) {
        double mu = 0, var = 0;
        for (int k = 0; k < d; k++) mu += x[r * d + k];
        mu /= d;
        for (int k = 0; k < d; k++) var += (x[r * d + k] - mu) * (x[r * d + k] - mu);
        var /= d;
        double inv = 1.0 / sqrt(var + 1e-5);
        for (int k = 0; k < d; k++) y[r * d + k] = (x[r * d + k] - mu) * inv * w[k] + b[k];
    }
}

/* y (rows, out) = x (rows, in) W^T + b */
static void ref_linear(const double *x, const float *W, const float *b, double *y, int rows, int in,
                       int out)
{
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < in; k++) s += x[r * in + k] * W[o * in + k];
            y[r * out + o] = s;
        }
}

/* The whole model in float64 from the float parameters.  logits: rows as
 * the C model returns them.  log_eig (B, layers, H, L): log of the dsf
 * eigenvalue, Delta a (or -softplus(A)). */
static void ref_forward(const Model *m, const ModelBatch *mb, double *logits, double *log_eig)
{
    const ModelConfig *c = &m->cfg;
    const int Bn = mb->B, L = mb->L, d = c->hidden_dim, N = c->state_dim, H = c->num_heads;
    const int P = d / H, C = d + 2 * N, K = mamba2_options(c)->conv_dim, ndt = mamba2_options(c)->pseudo_lti ? 1 : H;
    const int rows = Bn * L, Din = C + ndt;
    double *x = malloc(sizeof(double) * rows * d), *u = malloc(sizeof(double) * rows * d);
    double *proj = malloc(sizeof(double) * rows * Din), *xbc = malloc(sizeof(double) * rows * C);
    double *delta = malloc(sizeof(double) * rows * H), *y = malloc(sizeof(double) * rows * d);
    double *o = malloc(sizeof(double) * rows * d), *ab = malloc(sizeof(double) * rows * 2 * d);
    double *S = malloc(sizeof(double) * P * N);
    const float *E = param(m, "encoder.word_embeddings.weight");
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < d; k++) x[r * d + k] = E[mb->tokens[r] * d + k];

    for (int i = 0; i < c->num_layers; i++) {
        const float *nw = lparam(m, i, "norm.weight"), *nb = lparam(m, i, "norm.bias");
        if (mamba2_options(c)->prenorm)
            ref_layernorm(x, u, nw, nb, rows, d);
        else
            memcpy(u, x, sizeof(double) * rows * d);
        ref_linear(u, lparam(m, i, "mamba.in_proj.weight"), NULL, proj, rows, d, Din);
        const float *dtb = lparam(m, i, "mamba.dt_bias");
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < H; h++)
                delta[r * H + h] = sp(proj[r * Din + C + (mamba2_options(c)->pseudo_lti ? 0 : h)] + dtb[h]);
        const float *cw = lparam(m, i, "mamba.conv1d.weight"), *cb = lparam(m, i, "mamba.conv1d.bias");
        for (int b = 0; b < Bn; b++)
            for (int t = 0; t < L; t++)
                for (int ch = 0; ch < C; ch++) {
                    double v;
                    if (K > 0) {
                        v = cb[ch];
                        for (int j = 0; j < K; j++) {
                            int ts = t - K + 1 + j;
                            if (ts >= 0) v += cw[ch * K + j] * proj[(b * L + ts) * Din + ch];
                        }
                        v = v * sig(v);
                    } else {
                        v = proj[(b * L + t) * Din + ch];
                    }
                    xbc[(b * L + t) * C + ch] = v;
                }
        const float *Dp = lparam(m, i, "mamba.D");
        const float *Alog = lparam(m, i, "mamba.A_log"), *Alti = lparam(m, i, "mamba.A");
        for (int b = 0; b < Bn; b++)
            for (int h = 0; h < H; h++) {
                memset(S, 0, sizeof(double) * P * N);
                for (int t = 0; t < L; t++) {
                    const int r = b * L + t;
                    const double *xs = xbc + r * C + h * P, *Bm = xbc + r * C + d, *Cm = xbc + r * C + d + N;
                    double la = mamba2_options(c)->pseudo_lti ? -sp(Alti[h]) : -delta[r * H + h] * exp((double)Alog[h]);
                    if (log_eig) log_eig[(((size_t)b * c->num_layers + i) * H + h) * L + t] = la;
                    for (int p = 0; p < P; p++)
                        for (int n = 0; n < N; n++) {
                            double in = mamba2_options(c)->pseudo_lti
                                            ? xs[p] * Bm[n] * delta[r * H + n / (N / H)]
                                            : delta[r * H + h] * xs[p] * Bm[n];
                            S[p * N + n] = exp(la) * S[p * N + n] + in;
                        }
                    for (int p = 0; p < P; p++) {
                        double acc = Dp[h] * xs[p];
                        for (int n = 0; n < N; n++) acc += S[p * N + n] * Cm[n];
                        y[r * d + h * P + p] = acc;
                    }
                }
            }
        ref_linear(y, lparam(m, i, "mamba.out_proj.weight"), NULL, o, rows, d, d);
        for (int k = 0; k < rows * d; k++) o[k] = 0.5 * o[k] * (1.0 + erf(o[k] / sqrt(2.0)));
        if (mamba2_options(c)->glu) {
            ref_linear(o, lparam(m, i, "glu.linear.weight"), lparam(m, i, "glu.linear.bias"), ab, rows, d,
                       2 * d);
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < d; k++) o[r * d + k] = ab[r * 2 * d + k] * sig(ab[r * 2 * d + d + k]);
        }
        for (int k = 0; k < rows * d; k++) x[k] += o[k];
        if (!mamba2_options(c)->prenorm) {
            ref_layernorm(x, u, nw, nb, rows, d);
            memcpy(x, u, sizeof(double) * rows * d);
        }
    }

    const float *W = param(m, "decoder.weight"), *bias = param(m, "decoder.bias");
    if (c->head == HEAD_CLASSIFIER) {
        double *pool = calloc((size_t)Bn * d, sizeof(double));
        for (int b = 0; b < Bn; b++) {
            double cnt = 0;
            for (int t = 0; t < L; t++) {
                double w = mb->mask ? mb->mask[b * L + t] : 1.0;
                cnt += w;
                for (int k = 0; k < d; k++) pool[b * d + k] += w * x[(b * L + t) * d + k];
            }
            for (int k = 0; k < d; k++) pool[b * d + k] /= cnt;
        }
        ref_linear(pool, W, bias, logits, Bn, d, c->output_dim);
        free(pool);
    } else {
        int n = mb->rows ? mb->n_rows : rows;
        for (int i = 0; i < n; i++) {
            int r = mb->rows ? mb->rows[i] : i;
            ref_linear(x + (size_t)r * d, W, bias, logits + (size_t)i * c->output_dim, 1, d, c->output_dim);
        }
    }
    free(x), free(u), free(proj), free(xbc), free(delta), free(y), free(o), free(ab), free(S);
}

/* ------------------------------------------------------------ helpers */

/* Copy of the forward's logits (float) and, optionally, eig. */
static float *run_forward(Model *m, const ModelBatch *mb, bool training, uint64_t step,
                          double *eig, size_t *n_out)
{
    Graph g;
    graph_init(&g, 0, 555);
    graph_begin(&g, step, training, false);
    Tensor *y = model_forward(m, &g, mb, eig);
    float *out = malloc(sizeof(float) * y->numel);
    memcpy(out, y->data, sizeof(float) * y->numel);
    if (n_out) *n_out = y->numel;
    graph_free(&g);
    return out;
}

static double max_logit_error(const float *a, const double *ref, size_t n)
{
    double e = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs(a[i] - ref[i]));
        scale = fmax(scale, fabs(ref[i]));
    }
    return e / fmax(scale, 1.0);
}

/* ------------------------------------------------------------ tests: structure */

typedef struct Expect {
    const char *name;
    int ndim, shape[3];
} Expect;

static void check_names(Variant v, const Expect *want, int n)
{
    ModelConfig c = make_cfg(v);
    Model m;
    model_make(&m, &c, 1);
    ck_assert_msg(m.params.n == n, "%s: %d parameters, expected %d", variant_name[v], m.params.n, n);
    for (int i = 0; i < n; i++) {
        const Param *p = m.params.items[i];
        ck_assert_msg(strcmp(p->name, want[i].name) == 0, "%s: parameter %d is %s, expected %s",
                      variant_name[v], i, p->name, want[i].name);
        ck_assert_msg(p->t.ndim == want[i].ndim, "%s: ndim of %s", variant_name[v], p->name);
        for (int k = 0; k < want[i].ndim; k++)
            ck_assert_msg(p->t.shape[k] == want[i].shape[k], "%s: shape of %s dim %d is %d, expected %d",
                          variant_name[v], p->name, k, p->t.shape[k], want[i].shape[k]);
    }
    model_release(&m);
}

START_TEST(test_mamba2_parameter_names_and_shapes_follow_the_reference_state_dict)
{
    /* d=8, N=8, H=2, K=4, V=11, C = d + 2N = 24 */
    const Expect glu[] = {
        {"encoder.word_embeddings.weight", 2, {11, 8}},
        {"blocks.0.mamba.in_proj.weight", 2, {26, 8}},
        {"blocks.0.mamba.dt_bias", 1, {2}},
        {"blocks.0.mamba.A_log", 1, {2}},
        {"blocks.0.mamba.D", 1, {2}},
        {"blocks.0.mamba.conv1d.weight", 3, {24, 1, 4}},
        {"blocks.0.mamba.conv1d.bias", 1, {24}},
        {"blocks.0.mamba.out_proj.weight", 2, {8, 8}},
        {"blocks.0.glu.linear.weight", 2, {16, 8}},
        {"blocks.0.glu.linear.bias", 1, {16}},
        {"blocks.0.norm.weight", 1, {8}},
        {"blocks.0.norm.bias", 1, {8}},
        {"blocks.1.mamba.in_proj.weight", 2, {26, 8}},
        {"blocks.1.mamba.dt_bias", 1, {2}},
        {"blocks.1.mamba.A_log", 1, {2}},
        {"blocks.1.mamba.D", 1, {2}},
        {"blocks.1.mamba.conv1d.weight", 3, {24, 1, 4}},
        {"blocks.1.mamba.conv1d.bias", 1, {24}},
        {"blocks.1.mamba.out_proj.weight", 2, {8, 8}},
        {"blocks.1.glu.linear.weight", 2, {16, 8}},
        {"blocks.1.glu.linear.bias", 1, {16}},
        {"blocks.1.norm.weight", 1, {8}},
        {"blocks.1.norm.bias", 1, {8}},
        {"decoder.weight", 2, {11, 8}},
        {"decoder.bias", 1, {11}},
    };
    check_names(VAR_PRENORM_GLU, glu, 25);
    check_names(VAR_POSTNORM, glu, 25);

    const Expect lti[] = {
        {"encoder.word_embeddings.weight", 2, {11, 8}},
        {"blocks.0.mamba.in_proj.weight", 2, {25, 8}},
        {"blocks.0.mamba.dt_bias", 1, {2}},
        {"blocks.0.mamba.D", 1, {2}},
        {"blocks.0.mamba.A", 1, {2}},
        {"blocks.0.mamba.conv1d.weight", 3, {24, 1, 4}},
        {"blocks.0.mamba.conv1d.bias", 1, {24}},
        {"blocks.0.mamba.out_proj.weight", 2, {8, 8}},
        {"blocks.0.glu.linear.weight", 2, {16, 8}},
        {"blocks.0.glu.linear.bias", 1, {16}},
        {"blocks.0.norm.weight", 1, {8}},
        {"blocks.0.norm.bias", 1, {8}},
        {"blocks.1.mamba.in_proj.weight", 2, {25, 8}},
        {"blocks.1.mamba.dt_bias", 1, {2}},
        {"blocks.1.mamba.D", 1, {2}},
        {"blocks.1.mamba.A", 1, {2}},
        {"blocks.1.mamba.conv1d.weight", 3, {24, 1, 4}},
        {"blocks.1.mamba.conv1d.bias", 1, {24}},
        {"blocks.1.mamba.out_proj.weight", 2, {8, 8}},
        {"blocks.1.glu.linear.weight", 2, {16, 8}},
        {"blocks.1.glu.linear.bias", 1, {16}},
        {"blocks.1.norm.weight", 1, {8}},
        {"blocks.1.norm.bias", 1, {8}},
        {"decoder.weight", 2, {11, 8}},
        {"decoder.bias", 1, {11}},
    };
    check_names(VAR_LTI, lti, 25);

    const Expect noglu[] = {
        {"encoder.word_embeddings.weight", 2, {11, 8}},
        {"blocks.0.mamba.in_proj.weight", 2, {26, 8}},
        {"blocks.0.mamba.dt_bias", 1, {2}},
        {"blocks.0.mamba.A_log", 1, {2}},
        {"blocks.0.mamba.D", 1, {2}},
        {"blocks.0.mamba.conv1d.weight", 3, {24, 1, 4}},
        {"blocks.0.mamba.conv1d.bias", 1, {24}},
        {"blocks.0.mamba.out_proj.weight", 2, {8, 8}},
        {"blocks.0.norm.weight", 1, {8}},
        {"blocks.0.norm.bias", 1, {8}},
        {"blocks.1.mamba.in_proj.weight", 2, {26, 8}},
        {"blocks.1.mamba.dt_bias", 1, {2}},
        {"blocks.1.mamba.A_log", 1, {2}},
        {"blocks.1.mamba.D", 1, {2}},
        {"blocks.1.mamba.conv1d.weight", 3, {24, 1, 4}},
        {"blocks.1.mamba.conv1d.bias", 1, {24}},
        {"blocks.1.mamba.out_proj.weight", 2, {8, 8}},
        {"blocks.1.norm.weight", 1, {8}},
        {"blocks.1.norm.bias", 1, {8}},
        {"decoder.weight", 2, {11, 8}},
        {"decoder.bias", 1, {11}},
    };
    check_names(VAR_NO_GLU, noglu, 21);

    const Expect cls_tail[] = {{"decoder.weight", 2, {3, 8}}, {"decoder.bias", 1, {3}}};
    ModelConfig c = make_cfg(VAR_CLASSIFIER);
    Model m;
    model_make(&m, &c, 1);
    ck_assert_int_eq(m.params.n, 25);
    for (int i = 0; i < 2; i++) {
        const Param *p = m.params.items[23 + i];
        ck_assert_str_eq(p->name, cls_tail[i].name);
        ck_assert_int_eq(p->t.shape[0], cls_tail[i].shape[0]);
    }
    model_release(&m);

    /* conv_dim 0: no conv parameters at all */
    c = make_cfg(VAR_NO_CONV);
    model_make(&m, &c, 1);
    ck_assert_int_eq(m.params.n, 21);
    ck_assert_ptr_null(paramset_find(&m.params, "blocks.0.mamba.conv1d.weight"));
    model_release(&m);
}
END_TEST

START_TEST(test_mamba2_create_rejects_inconsistent_configs_naming_the_key)
{
    const char *keys[] = {"num_heads", "state_dim", "num_layers", "dropout", "conv_dim"};
    for (int k = 0; k < 5; k++) {
        ModelConfig c = make_cfg(VAR_PRENORM_GLU);
        switch (k) {
        case 0: c.num_heads = 3; break;                   /* 3 does not divide d = 8 */
        case 1: mamba2_options(&c)->pseudo_lti = true, c.state_dim = 5; break; /* N % H != 0 with pseudo-LTI */
        case 2: c.num_layers = 0; break;
        case 3: c.dropout = 1.0f; break;
        case 4: mamba2_options(&c)->conv_dim = -1; break;
        }
        Model m;
        char err[256] = "";
        ck_assert_int_eq(model_create(&m, &c, err, sizeof err), -1);
        ck_assert_ptr_null(m.impl);
        ck_assert_msg(strstr(err, keys[k]) != NULL, "message '%s' should name %s", err, keys[k]);
        model_free(&m);
    }
}
END_TEST

/* ------------------------------------------------------------ tests: init */

START_TEST(test_mamba2_init_follows_spec_3_5)
{
    /* larger model for the statistics: d = 64, H = 8, N = 16, V = 300 */
    for (int lti = 0; lti <= 1; lti++) {
        ModelConfig c = make_cfg(lti ? VAR_LTI : VAR_PRENORM_GLU);
        c.hidden_dim = 64, c.num_heads = 8, c.state_dim = 16, c.vocab_size = 300, c.output_dim = 300;
        c.num_layers = 3;
        Model m;
        model_make(&m, &c, 1919);
        int n_heads_total = 0;
        double dt_min = 1, dt_max = 0;
        for (int i = 0; i < m.params.n; i++) {
            const Param *p = m.params.items[i];
            const char *nm = p->name;
            const float *v = p->t.data;
            const size_t n = p->t.numel;
            if (strstr(nm, "word_embeddings")) {
                double s = 0, s2 = 0;
                for (size_t k = 0; k < n; k++) s += v[k], s2 += (double)v[k] * v[k];
                double mean = s / n, sd = sqrt(s2 / n - mean * mean);
                ck_assert_msg(fabs(mean) < 0.02 && fabs(sd - 1) < 0.02, "embedding N(0,1): mean %g sd %g",
                              mean, sd);
            } else if (strstr(nm, "norm.weight") || strstr(nm, "mamba.D")) {
                for (size_t k = 0; k < n; k++) ck_assert_float_eq(v[k], 1.0f);
            } else if (strstr(nm, "norm.bias")) {
                for (size_t k = 0; k < n; k++) ck_assert_float_eq(v[k], 0.0f);
            } else if (strstr(nm, "A_log")) {
                for (size_t k = 0; k < n; k++)
                    ck_assert_msg(v[k] >= 0.0f && v[k] <= (float)log(16.0), "A_log %g", v[k]);
            } else if (strstr(nm, "mamba.A")) {
                for (size_t k = 0; k < n; k++) ck_assert_msg(v[k] >= -8.0f && v[k] < -2.0f, "A %g", v[k]);
            } else if (strstr(nm, "dt_bias")) {
                for (size_t k = 0; k < n; k++) {
                    double dt = log1p(exp((double)v[k]));   /* softplus maps back to dt */
                    ck_assert_msg(dt >= 1e-3 * (1 - 1e-5) && dt <= 1e-1 * (1 + 1e-5), "dt %g", dt);
                    dt_min = fmin(dt_min, dt), dt_max = fmax(dt_max, dt);
                    n_heads_total++;
                }
            } else {
                /* Linear / conv: U(+-1/sqrt(fan_in)), fan_in = last dim (conv: K) */
                const int fan_in = p->t.ndim == 3 ? p->t.shape[2]
                                   : p->t.ndim == 2 ? p->t.shape[1]
                                                    : 0;
                int fi = fan_in;
                if (p->t.ndim == 1) { /* a bias: the fan of its weight (declared just before) */
                    const Param *w = m.params.items[i - 1];
                    fi = w->t.ndim == 3 ? w->t.shape[2] : w->t.shape[1];
                }
                double bound = 1.0 / sqrt((double)fi), vmax = 0;
                for (size_t k = 0; k < n; k++) {
                    ck_assert_msg(fabs(v[k]) <= bound, "%s: %g outside +-%g", nm, v[k], bound);
                    vmax = fmax(vmax, fabs(v[k]));
                }
                if (n >= 64) /* spread over the range, not a narrower one */
                    ck_assert_msg(vmax > 0.8 * bound, "%s: max |w| %g for bound %g", nm, vmax, bound);
            }
        }
        ck_assert_int_eq(n_heads_total, 24);
        /* log-uniform over two decades: 24 draws span most of it */
        ck_assert_msg(dt_min < 5e-3 && dt_max > 2e-2, "dt range %g..%g", dt_min, dt_max);
        model_release(&m);
    }
}
END_TEST

START_TEST(test_mamba2_init_depends_only_on_the_seed)
{
    ModelConfig c = make_cfg(VAR_PRENORM_GLU);
    Model a, b, z;
    model_make(&a, &c, 2222);
    model_make(&b, &c, 2222);
    model_make(&z, &c, 2929);
    ck_assert_int_eq(memcmp(a.params.data, b.params.data, sizeof(float) * a.params.total), 0);
    for (int i = 0; i < a.params.n; i++) {
        const Param *p = a.params.items[i];
        if (strstr(p->name, "norm.") || strstr(p->name, "mamba.D")) continue; /* constants */
        ck_assert_msg(memcmp(p->t.data, z.params.items[i]->t.data, sizeof(float) * p->t.numel) != 0,
                      "%s is the same for two seeds", p->name);
    }
    model_release(&a), model_release(&b), model_release(&z);
}
END_TEST

/* ------------------------------------------------------------ tests: forward */

START_TEST(test_mamba2_forward_matches_float64_reference)
{
    for (int v = 0; v < N_VARIANTS; v++)
        for (int perturbed = 0; perturbed <= 1; perturbed++)
            for (int all_rows = 0; all_rows <= 1; all_rows++) {
                ModelConfig c = make_cfg((Variant)v);
                if (c.head == HEAD_CLASSIFIER && all_rows) continue;
                Model m;
                model_make(&m, &c, 1717);
                if (perturbed) perturb_params(&m, 3 + v);
                TestBatch tb;
                make_batch(&tb, &c, 10 + v, all_rows);
                size_t n;
                float *y = run_forward(&m, &tb.mb, false, 0, NULL, &n);
                ck_assert_int_eq((int)n, n_logit_rows(&c, &tb.mb) * c.output_dim);
                double *ref = malloc(sizeof(double) * n);
                ref_forward(&m, &tb.mb, ref, NULL);
                double e = max_logit_error(y, ref, n);
                ck_assert_msg(e < 2e-5, "%s%s%s: logits differ from the float64 reference by %g",
                              variant_name[v], perturbed ? " (perturbed)" : "", all_rows ? " (all rows)" : "",
                              e);
                free(y), free(ref);
                model_release(&m);
            }
}
END_TEST

START_TEST(test_mamba2_classifier_ignores_padded_positions)
{
    ModelConfig c = make_cfg(VAR_CLASSIFIER);
    Model m;
    model_make(&m, &c, 1);
    perturb_params(&m, 5);
    TestBatch tb;
    make_batch(&tb, &c, 4, false);
    size_t n;
    float *y0 = run_forward(&m, &tb.mb, false, 0, NULL, &n);
    ck_assert_int_eq((int)n, B_ * 3);
    for (int t = 4; t < L_; t++) tb.tokens[L_ + t] = (tb.tokens[L_ + t] + 1 + t) % V_; /* change pads */
    float *y1 = run_forward(&m, &tb.mb, false, 0, NULL, NULL);
    ck_assert_int_eq(memcmp(y0, y1, sizeof(float) * n), 0);
    /* without a mask the padded steps count: the padded sequence's logits change */
    tb.mb.mask = NULL;
    float *y2 = run_forward(&m, &tb.mb, false, 0, NULL, NULL);
    ck_assert_msg(memcmp(y1 + 3, y2 + 3, sizeof(float) * 3) != 0, "mask had no effect");
    ck_assert_int_eq(memcmp(y1, y2, sizeof(float) * 3), 0); /* the full sequence is unaffected */
    free(y0), free(y1), free(y2);
    model_release(&m);
}
END_TEST

/* ------------------------------------------------------------ tests: gradients */

typedef struct GcCtx {
    Model *m;
    TestBatch *tb;
} GcCtx;

static Tensor *gc_loss(Graph *g, Tensor **inputs, void *ctx)
{
    (void)inputs; /* the inputs are the model's own parameter tensors */
    GcCtx *c = ctx;
    Tensor *logits = model_forward(c->m, g, &c->tb->mb, NULL);
    return op_cross_entropy(g, logits, c->tb->labels, NULL);
}

START_TEST(test_mamba2_every_parameter_gradient_matches_finite_differences)
{
    const Variant vs[] = {VAR_PRENORM_GLU, VAR_POSTNORM, VAR_NO_GLU, VAR_LTI, VAR_CLASSIFIER};
    for (size_t k = 0; k < sizeof vs / sizeof vs[0]; k++) {
        ModelConfig c = make_cfg(vs[k]);
        Model m;
        model_make(&m, &c, 1919);
        perturb_params(&m, 20 + k);
        TestBatch tb;
        make_batch(&tb, &c, 30 + k, false);
        GcCtx ctx = {&m, &tb};
        Tensor **in = malloc(sizeof(Tensor *) * m.params.n);
        for (int i = 0; i < m.params.n; i++) in[i] = &m.params.items[i]->t;
        /* atol tightened from 2e-3 to 5e-4: the gradients here are 1e-3..1,
         * and the float32 loss (O(1)) differenced over 2 eps = 2e-2 carries
         * only ~1e-5 rounding noise.  (The float64 test below is tighter.)
         * gradcheck leaves the parameters' grad pointers NULL: the model is
         * released right after. */
        GradcheckOpts o = GRADCHECK_DEFAULTS;
        o.atol = 5e-4;
        o.max_probe = 24;
        char label[64];
        snprintf(label, sizeof label, "mamba2 %s", variant_name[vs[k]]);
        ck_assert_msg(gradcheck(label, gc_loss, &ctx, in, m.params.n, o), "%s gradient check", label);
        free(in);
        model_release(&m);
    }
}
END_TEST

/* Mean cross entropy of the float64 reference over the labelled rows. */
static double ref_loss(const Model *m, const TestBatch *tb)
{
    const ModelConfig *c = &m->cfg;
    const int n = n_logit_rows(c, &tb->mb), V = c->output_dim;
    double *z = malloc(sizeof(double) * n * V), loss = 0;
    ref_forward(m, &tb->mb, z, NULL);
    for (int i = 0; i < n; i++) {
        double mx = z[i * V];
        for (int k = 1; k < V; k++) mx = fmax(mx, z[i * V + k]);
        double s = 0;
        for (int k = 0; k < V; k++) s += exp(z[i * V + k] - mx);
        loss += mx + log(s) - z[i * V + tb->labels[i]];
    }
    free(z);
    return loss / n;
}

/* Stronger than the float32 check above: the tape's gradient of every
 * element of every parameter against central differences of the float64
 * reference loss.  The differences are taken on the float parameters
 * themselves (step = the perturbation actually applied), so they carry no
 * float32 rounding, only O(eps^2) truncation (~1e-7 here); what remains is
 * the float32 rounding of the tape, ~1e-6 relative to the gradient scale. */
START_TEST(test_mamba2_gradients_match_float64_reference_loss)
{
    const Variant vs[] = {VAR_PRENORM_GLU, VAR_POSTNORM, VAR_NO_GLU, VAR_LTI, VAR_CLASSIFIER, VAR_NO_CONV};
    for (size_t k = 0; k < sizeof vs / sizeof vs[0]; k++) {
        ModelConfig c = make_cfg(vs[k]);
        Model m;
        model_make(&m, &c, 1234);
        perturb_params(&m, 100 + k);
        TestBatch tb;
        make_batch(&tb, &c, 110 + k, false);
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, true);
        paramset_zero_grad(&m.params);
        Tensor *logits = model_forward(&m, &g, &tb.mb, NULL);
        graph_backward(&g, op_cross_entropy(&g, logits, tb.labels, NULL));
        double gscale = 0;
        for (size_t i = 0; i < m.params.total; i++) gscale = fmax(gscale, fabs(m.params.grad[i]));
        for (int i = 0; i < m.params.n; i++) {
            Param *p = m.params.items[i];
            for (size_t e = 0; e < p->t.numel; e++) {
                const float v = p->t.data[e], eps = 1e-3f;
                p->t.data[e] = v + eps;
                double lp = ref_loss(&m, &tb);
                float vp = p->t.data[e];
                p->t.data[e] = v - eps;
                double lm = ref_loss(&m, &tb);
                float vm = p->t.data[e];
                p->t.data[e] = v;
                double num = (lp - lm) / ((double)vp - (double)vm), an = p->t.grad[e];
                double r = fabs(an - num) / (1e-5 * gscale + 1e-3 * fabs(num));
                ck_assert_msg(r <= 1.0, "%s: %s[%zu]: tape %.8g, float64 reference %.8g", variant_name[vs[k]],
                              p->name, e, an, num);
            }
        }
        graph_free(&g);
        model_release(&m);
    }
}
END_TEST

/* Every parameter is on the path to the loss: its gradient is non-zero and
 * finite in every variant (a parameter the forward forgot to use would pass
 * the finite-difference check with a zero gradient). */
START_TEST(test_mamba2_every_parameter_gets_a_gradient)
{
    for (int v = 0; v < N_VARIANTS; v++) {
        ModelConfig c = make_cfg((Variant)v);
        Model m;
        model_make(&m, &c, 7);
        perturb_params(&m, 40 + v);
        TestBatch tb;
        make_batch(&tb, &c, 50 + v, false);
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, true);
        paramset_zero_grad(&m.params);
        Tensor *logits = model_forward(&m, &g, &tb.mb, NULL);
        graph_backward(&g, op_cross_entropy(&g, logits, tb.labels, NULL));
        for (int i = 0; i < m.params.n; i++) {
            const Param *p = m.params.items[i];
            double s = 0;
            for (size_t k = 0; k < p->t.numel; k++) s += fabs(p->t.grad[k]);
            ck_assert_msg(s > 1e-6 && isfinite(s), "%s: %s has gradient norm %g", variant_name[v], p->name, s);
        }
        graph_free(&g);
        model_release(&m);
    }
}
END_TEST

/* ------------------------------------------------------------ tests: spectra */

START_TEST(test_mamba2_spectra_match_float64_reference)
{
    const Variant vs[] = {VAR_PRENORM_GLU, VAR_POSTNORM, VAR_LTI, VAR_CLASSIFIER};
    for (size_t k = 0; k < 4; k++) {
        for (int perturbed = 0; perturbed <= 1; perturbed++) {
            ModelConfig c = make_cfg(vs[k]);
            Model m;
            model_make(&m, &c, 2929);
            if (perturbed) perturb_params(&m, 60 + k);
            TestBatch tb;
            make_batch(&tb, &c, 70 + k, false);
            const size_t ne = (size_t)B_ * NL_ * H_ * L_;
            double *eig = malloc(sizeof(double) * ne), *le = malloc(sizeof(double) * ne);
            for (size_t i = 0; i < ne; i++) eig[i] = NAN;
            size_t n;
            float *y = run_forward(&m, &tb.mb, false, 0, eig, &n);
            float *y_noeig = run_forward(&m, &tb.mb, false, 0, NULL, NULL);
            ck_assert_int_eq(memcmp(y, y_noeig, sizeof(float) * n), 0); /* spectra change nothing */
            double *ref = malloc(sizeof(double) * n);
            ref_forward(&m, &tb.mb, ref, le);
            for (size_t i = 0; i < ne; i++) {
                ck_assert_msg(isfinite(eig[i]) && eig[i] > 0 && eig[i] <= 1, "%s: eig[%zu] = %g",
                              variant_name[vs[k]], i, eig[i]);
                /* relative error of lambda, scaled by |Delta a| (float32 Delta) */
                double err = fabs(log(eig[i]) - le[i]);
                ck_assert_msg(err <= 2e-6 * (1 + fabs(le[i])), "%s%s: eig[%zu] log %.12g ref %.12g",
                              variant_name[vs[k]], perturbed ? " (perturbed)" : "", i, log(eig[i]), le[i]);
            }
            free(eig), free(le), free(y), free(y_noeig), free(ref);
            model_release(&m);
        }
    }
}
END_TEST

START_TEST(test_mamba2_pseudo_lti_spectra_are_constant_and_in_init_range)
{
    ModelConfig c = make_cfg(VAR_LTI);
    c.num_heads = 4; /* N = 8 divisible by 4 */
    for (uint64_t seed = 1; seed <= 5; seed++) {
        Model m;
        model_make(&m, &c, seed);
        TestBatch tb;
        make_batch(&tb, &c, seed, true);
        const int H = c.num_heads;
        const size_t ne = (size_t)B_ * NL_ * H * L_;
        double *eig = malloc(sizeof(double) * ne);
        float *y = run_forward(&m, &tb.mb, false, 0, eig, NULL);
        for (int b = 0; b < B_; b++)
            for (int l = 0; l < NL_; l++) {
                const float *A = lparam(&m, l, "mamba.A");
                for (int h = 0; h < H; h++) {
                    double a = (double)A[h];
                    double want = exp(-(log1p(exp(-fabs(a))) + fmax(a, 0.0)));
                    for (int t = 0; t < L_; t++) {
                        double e = eig[(((size_t)b * NL_ + l) * H + h) * L_ + t];
                        ck_assert_msg(e == want, "eig %.17g, exp(-softplus(A)) %.17g", e, want);
                        ck_assert_msg(e > 0.8808 && e < 0.99966, "pseudo-LTI init eig %g", e);
                    }
                }
            }
        free(eig), free(y);
        model_release(&m);
    }
}
END_TEST

START_TEST(test_mamba2_spectra_at_init_lie_in_the_expected_band)
{
    /* exp(-Delta A), Delta = softplus(dt + dt_bias): at init dt_bias alone
     * gives Delta in [1e-3, 1e-1] and A in [1, 16], so the spectra are
     * mostly close to 1 and never outside (0, 1]. */
    ModelConfig c = make_cfg(VAR_PRENORM_GLU);
    Model m;
    model_make(&m, &c, 1);
    TestBatch tb;
    make_batch(&tb, &c, 1, true);
    const size_t ne = (size_t)B_ * NL_ * H_ * L_;
    double *eig = malloc(sizeof(double) * ne);
    float *y = run_forward(&m, &tb.mb, false, 0, eig, NULL);
    int near_one = 0;
    for (size_t i = 0; i < ne; i++) {
        ck_assert(eig[i] > 0 && eig[i] <= 1);
        near_one += eig[i] > 0.5;
    }
    ck_assert_msg(near_one > (int)ne / 2, "only %d of %zu eigenvalues above 0.5 at init", near_one, ne);
    free(eig), free(y);
    model_release(&m);
}
END_TEST

/* ------------------------------------------------------------ tests: dropout, threads */

START_TEST(test_mamba2_dropout_changes_training_output_only)
{
    ModelConfig c0 = make_cfg(VAR_PRENORM_GLU), c1 = c0;
    c1.dropout = 0.3f;
    Model m0, m1;
    model_make(&m0, &c0, 11);
    model_make(&m1, &c1, 11);
    TestBatch tb;
    make_batch(&tb, &c0, 12, true);
    size_t n;
    float *eval0 = run_forward(&m0, &tb.mb, false, 0, NULL, &n);
    float *train0 = run_forward(&m0, &tb.mb, true, 0, NULL, NULL);
    float *eval1 = run_forward(&m1, &tb.mb, false, 0, NULL, NULL);
    float *train1 = run_forward(&m1, &tb.mb, true, 0, NULL, NULL);
    float *train1b = run_forward(&m1, &tb.mb, true, 0, NULL, NULL);
    float *train1s = run_forward(&m1, &tb.mb, true, 1, NULL, NULL);
    ck_assert_int_eq(memcmp(eval0, train0, sizeof(float) * n), 0);   /* p = 0: identity */
    ck_assert_int_eq(memcmp(eval0, eval1, sizeof(float) * n), 0);    /* eval: identity */
    ck_assert_int_eq(memcmp(train1, train1b, sizeof(float) * n), 0); /* same step: same mask */
    ck_assert_msg(memcmp(eval1, train1, sizeof(float) * n) != 0, "dropout had no effect in training");
    ck_assert_msg(memcmp(train1, train1s, sizeof(float) * n) != 0, "same mask for two steps");
    /* two dropouts per block (after GELU and after the GLU), none on the
     * embedding: the graph counts the dropout ops it issued */
    for (int glu = 0; glu <= 1; glu++) {
        ModelConfig c = make_cfg(glu ? VAR_PRENORM_GLU : VAR_NO_GLU);
        c.dropout = 0.3f;
        Model m;
        model_make(&m, &c, 1);
        Graph g;
        graph_init(&g, 0, 3);
        graph_begin(&g, 0, true, false);
        model_forward(&m, &g, &tb.mb, NULL);
        ck_assert_int_eq((int)g.n_dropout, 2 * NL_);
        graph_free(&g);
        model_release(&m);
    }
    free(eval0), free(train0), free(eval1), free(train1), free(train1b), free(train1s);
    model_release(&m0), model_release(&m1);
}
END_TEST

START_TEST(test_mamba2_bit_identical_for_1_and_2_threads)
{
    const Variant vs[] = {VAR_PRENORM_GLU, VAR_LTI, VAR_CLASSIFIER};
    for (size_t k = 0; k < 3; k++) {
        ModelConfig c = make_cfg(vs[k]);
        c.dropout = 0.2f;
        Model m;
        model_make(&m, &c, 99);
        perturb_params(&m, 80 + k);
        TestBatch tb;
        make_batch(&tb, &c, 90 + k, false);
        const size_t ne = (size_t)B_ * NL_ * H_ * L_;
        float *logit1 = NULL, *grad1 = malloc(sizeof(float) * m.params.total);
        double eig[2][B_ * NL_ * H_ * L_];
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            Graph g;
            graph_init(&g, 0, 31);
            graph_begin(&g, 5, true, true);
            paramset_zero_grad(&m.params);
            Tensor *logits = model_forward(&m, &g, &tb.mb, eig[threads - 1]);
            graph_backward(&g, op_cross_entropy(&g, logits, tb.labels, NULL));
            if (threads == 1) {
                logit1 = malloc(sizeof(float) * logits->numel);
                memcpy(logit1, logits->data, sizeof(float) * logits->numel);
                memcpy(grad1, m.params.grad, sizeof(float) * m.params.total);
            } else {
                ck_assert_int_eq(memcmp(logit1, logits->data, sizeof(float) * logits->numel), 0);
                ck_assert_msg(memcmp(grad1, m.params.grad, sizeof(float) * m.params.total) == 0,
                              "%s: gradients differ between 1 and 2 threads", variant_name[vs[k]]);
                ck_assert_int_eq(memcmp(eig[0], eig[1], sizeof(double) * ne), 0);
            }
            graph_free(&g);
        }
        free(logit1), free(grad1);
        model_release(&m);
    }
}
END_TEST

Suite *suite_models_mamba2(void)
{
    Suite *s = suite_create("models_mamba2");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300); /* whole-model finite differences on a busy machine */
    tcase_add_test(tc, test_mamba2_parameter_names_and_shapes_follow_the_reference_state_dict);
    tcase_add_test(tc, test_mamba2_create_rejects_inconsistent_configs_naming_the_key);
    tcase_add_test(tc, test_mamba2_init_follows_spec_3_5);
    tcase_add_test(tc, test_mamba2_init_depends_only_on_the_seed);
    tcase_add_test(tc, test_mamba2_forward_matches_float64_reference);
    tcase_add_test(tc, test_mamba2_classifier_ignores_padded_positions);
    tcase_add_test(tc, test_mamba2_every_parameter_gradient_matches_finite_differences);
    tcase_add_test(tc, test_mamba2_gradients_match_float64_reference_loss);
    tcase_add_test(tc, test_mamba2_every_parameter_gets_a_gradient);
    tcase_add_test(tc, test_mamba2_spectra_match_float64_reference);
    tcase_add_test(tc, test_mamba2_pseudo_lti_spectra_are_constant_and_in_init_range);
    tcase_add_test(tc, test_mamba2_spectra_at_init_lie_in_the_expected_band);
    tcase_add_test(tc, test_mamba2_dropout_changes_training_output_only);
    tcase_add_test(tc, test_mamba2_bit_identical_for_1_and_2_threads);
    suite_add_tcase(s, tc);
    return s;
}
