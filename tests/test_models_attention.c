/* Transformer backbone with softmax / linear / norm attention
 * (docs/parameters.md, docs/eigenvalues.md): parameter names and shapes,
 * initialisation, forward and spectra against an independent float64
 * reference, gradients of every parameter through the cross-entropy loss,
 * dropout, thread-count determinism and the configuration checks. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/attention.h"
#include "../models/model.h"
#include "../models/transformer.h"
#include "../src/init.h"
#include "../src/ops.h"
#include "../src/threads.h"
#include "testutil.h"

/* ------------------------------------------------------------ variants */

typedef struct Variant {
    const char *name;
    AttentionKind kind;
    int dim_conv, max_pos;
    bool gate;
    NormFn norm_fn;
    ApproxFn approx;
    bool offset, scale_B;
    MixerKind mixer;
    HeadKind head;
    int mixer_dim;
} Variant;

static const char *const KIND_NAMES[] = {"sm-attention", "lin-attention", "norm-attention"};

#define NF NORM_FN_SOFTPLUS
static const Variant VARIANTS[] = {
    {"sm", ATTENTION_SOFTMAX, 0, 16, false, NF, APPROX_NONE, false, false, MIXER_NONE, HEAD_LM, 0},
    {"sm+conv", ATTENTION_SOFTMAX, 4, 16, false, NF, APPROX_NONE, false, false, MIXER_NONE, HEAD_LM, 0},
    {"lin", ATTENTION_LINEAR, 0, 16, false, NF, APPROX_NONE, false, false, MIXER_NONE, HEAD_LM, 0},
    {"lin+conv", ATTENTION_LINEAR, 4, 0, false, NF, APPROX_NONE, false, false, MIXER_NONE, HEAD_LM, 0},
    {"lin+gate", ATTENTION_LINEAR, 0, 16, true, NF, APPROX_NONE, false, false, MIXER_NONE, HEAD_LM, 0},
    {"norm softplus elu conv (MQAR)", ATTENTION_NORM, 4, 0, false, NORM_FN_SOFTPLUS, APPROX_ELU, true,
     true, MIXER_NONE, HEAD_LM, 0},
    {"norm exp", ATTENTION_NORM, 4, 0, false, NORM_FN_EXP, APPROX_ELU, true, true, MIXER_NONE, HEAD_LM, 0},
    {"norm elu", ATTENTION_NORM, 4, 0, false, NORM_FN_ELU, APPROX_ELU, true, true, MIXER_NONE, HEAD_LM, 0},
    {"norm sigmoid", ATTENTION_NORM, 4, 0, false, NORM_FN_SIGMOID, APPROX_ELU, true, true, MIXER_NONE,
     HEAD_LM, 0},
    {"norm approx none no conv", ATTENTION_NORM, 0, 0, false, NORM_FN_SOFTPLUS, APPROX_NONE, true, true,
     MIXER_NONE, HEAD_LM, 0},
    {"norm+gate", ATTENTION_NORM, 0, 0, true, NORM_FN_SOFTPLUS, APPROX_NONE, true, true, MIXER_NONE,
     HEAD_LM, 0},
    {"norm no offset no scale_B", ATTENTION_NORM, 4, 0, false, NORM_FN_SOFTPLUS, APPROX_ELU, false, false,
     MIXER_NONE, HEAD_LM, 0},
    {"sm+mlp+classifier", ATTENTION_SOFTMAX, 0, 16, false, NF, APPROX_NONE, false, false, MIXER_MLP,
     HEAD_CLASSIFIER, 12},
    {"norm+classifier without MLP", ATTENTION_NORM, 4, 0, true, NORM_FN_SOFTPLUS, APPROX_ELU, true, true,
     MIXER_NONE, HEAD_CLASSIFIER, 0},
};
#define N_VARIANTS ((int)(sizeof VARIANTS / sizeof VARIANTS[0]))

enum { TB = 2, TL = 7, TD = 8, TDQK = 8, TH = 2, TV = 11, TLAYERS = 2, TCLASSES = 5 };

static ModelConfig variant_config(const Variant *v)
{
    ModelConfig c;
    model_config_defaults(&c, KIND_NAMES[v->kind]);
    c.vocab_size = TV;
    c.hidden_dim = TD;
    c.state_dim = TDQK;
    c.num_heads = TH;
    c.num_layers = TLAYERS;
    c.dropout = 0.0f;
    c.head = v->head;
    c.output_dim = v->head == HEAD_LM ? TV : (v->mixer_dim > 0 ? TCLASSES : TD);
    transformer_options(&c)->mixer_dim = v->mixer_dim;
    transformer_options(&c)->max_pos_embed = v->max_pos;
    transformer_options(&c)->mixer = v->mixer;
    transformer_options(&c)->use_gate = v->gate;
    transformer_options(&c)->dim_conv = v->dim_conv;
    transformer_options(&c)->norm_fn = v->norm_fn;
    transformer_options(&c)->approx_fn = v->approx;
    transformer_options(&c)->scale_B = v->scale_B;
    transformer_options(&c)->offset = v->offset;
    return c;
}

static void create_model(Model *m, const ModelConfig *c, uint64_t seed)
{
    char err[256] = "";
    ck_assert_msg(model_create(m, c, err, sizeof err) == 0, "model_create: %s", err);
    model_init(m, seed);
}

/* A batch and its labels: LM rows spread over both sequences, or one class
 * per sequence with the second sequence padded after 4 valid tokens. */
typedef struct TestBatch {
    ModelBatch b;
    int32_t *tokens, *rows, *labels;
    float *mask;
} TestBatch;

static void make_batch(TestBatch *tb, const ModelConfig *c, int B, int L, bool all_rows, uint64_t seed)
{
    memset(tb, 0, sizeof *tb);
    Rng r;
    rng_init(&r, rng_derive_key(seed, 77, 0));
    tb->tokens = malloc(sizeof(int32_t) * B * L);
    for (int i = 0; i < B * L; i++) tb->tokens[i] = (int32_t)rng_below(&r, (uint64_t)c->vocab_size);
    tb->b = (ModelBatch){.B = B, .L = L, .tokens = tb->tokens};
    if (c->head == HEAD_LM) {
        int n = 0;
        tb->rows = malloc(sizeof(int32_t) * B * L);
        for (int i = 0; i < B * L; i++)
            if (all_rows || i % 3 != 1) tb->rows[n++] = i;
        tb->labels = malloc(sizeof(int32_t) * n);
        for (int i = 0; i < n; i++) tb->labels[i] = (int32_t)rng_below(&r, (uint64_t)c->output_dim);
        tb->b.rows = all_rows ? NULL : tb->rows;
        tb->b.n_rows = all_rows ? B * L : n;
    } else {
        tb->labels = malloc(sizeof(int32_t) * B);
        for (int b = 0; b < B; b++) tb->labels[b] = (int32_t)rng_below(&r, (uint64_t)c->output_dim);
        tb->mask = malloc(sizeof(float) * B * L);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < L; t++) tb->mask[b * L + t] = (b % 2 == 1 && t >= 4) ? 0.0f : 1.0f;
        tb->b.mask = tb->mask;
    }
}

static void free_batch(TestBatch *tb)
{
    free(tb->tokens);
    free(tb->rows);
    free(tb->labels);
    free(tb->mask);
}

/* ------------------------------------------------ float64 reference model */

static const float *prm(const Model *m, const char *fmt, ...)
{
    char name[PARAM_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    Param *p = paramset_find(&m->params, name);
    ck_assert_msg(p != NULL, "parameter %s missing", name);
    return p->t.data;
}

static double *dalloc(size_t n)
{
    double *x = calloc(n ? n : 1, sizeof(double));
    ck_assert(x);
    return x;
}

static void r_linear(const double *x, size_t rows, int in, const float *W, const float *b, int out, double *y)
{
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++) s += x[r * in + i] * (double)W[(size_t)o * in + i];
            y[r * out + o] = s;
        }
}

static void r_layernorm(const double *x, size_t rows, int d, const float *w, const float *b, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        double mu = 0.0, var = 0.0;
        for (int i = 0; i < d; i++) mu += x[r * d + i];
        mu /= d;
        for (int i = 0; i < d; i++) var += (x[r * d + i] - mu) * (x[r * d + i] - mu);
        var /= d;
        for (int i = 0; i < d; i++) y[r * d + i] = (x[r * d + i] - mu) / sqrt(var + 1e-5) * w[i] + b[i];
    }
}

static double r_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double r_silu(double x) { return x * r_sigmoid(x); }
static double r_elu1(double x) { return (x > 0.0 ? x : expm1(x)) + 1.0; }
static double r_gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double r_normfn(NormFn f, double x)
{
    switch (f) {
    case NORM_FN_EXP: return exp(x);
    case NORM_FN_ELU: return x > 0.0 ? x : expm1(x);
    case NORM_FN_SOFTPLUS: return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));
    case NORM_FN_SIGMOID: return r_sigmoid(x);
    }
    return NAN;
}

/* One attention layer on u (B, L, d).  le/sc: (B, layers, H, L-1) log
 * eigenvalue x - y and its scale 1 + |x| + |y|. */
static void r_attention(const Model *m, int layer, const double *u, int B, int L, double *out, double *le,
                        double *sc)
{
    const ModelConfig *c = &m->cfg;
    const int d = c->hidden_dim, dqk = c->state_dim, H = c->num_heads, dh = dqk / H, dv = d / H;
    const int T = L - 1, nl = c->num_layers;
    const bool norm = transformer_options(c)->attention == ATTENTION_NORM;
    const int np = norm ? d + 2 * dqk + H : 2 * dqk + d, nconv = d + 2 * dqk;
    const char *pw = norm ? "layers.%d.attention.Wvqkn.weight" : "layers.%d.attention.Wqkv.weight";
    const char *pb = norm ? "layers.%d.attention.Wvqkn.bias" : "layers.%d.attention.Wqkv.bias";
    const size_t BL = (size_t)B * L;
    double *p = dalloc(BL * np), *y = dalloc(BL * d);
    r_linear(u, BL, d, prm(m, pw, layer), prm(m, pb, layer), np, p);
    if (transformer_options(c)->dim_conv > 0) {
        const int K = transformer_options(c)->dim_conv;
        const float *w = prm(m, "layers.%d.attention.conv1d.weight", layer);
        const float *bc = prm(m, "layers.%d.attention.conv1d.bias", layer);
        double *q = dalloc(BL * np);
        memcpy(q, p, sizeof(double) * BL * np);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < L; t++)
                for (int ch = 0; ch < nconv; ch++) {
                    double s = bc[ch];
                    for (int j = 0; j < K; j++) {
                        int ts = t - (K - 1) + j;
                        if (ts >= 0) s += (double)w[ch * K + j] * p[((size_t)b * L + ts) * np + ch];
                    }
                    q[((size_t)b * L + t) * np + ch] = r_silu(s);
                }
        free(p);
        p = q;
    }
    /* column offsets of q, k, v in p */
    const int oq = norm ? d : 0, ok = norm ? d + dqk : dqk, ov = norm ? 0 : 2 * dqk;
    const bool phi = transformer_options(c)->attention == ATTENTION_LINEAR || (norm && transformer_options(c)->approx_fn == APPROX_ELU);
    const double ck = norm ? (transformer_options(c)->scale_B ? 1.0 / sqrt((double)dh) : 1.0) : 1.0;
    const float *off = (norm && transformer_options(c)->offset) ? prm(m, "layers.%d.attention.inner_attn.offset", layer) : NULL;
    double *A = dalloc(L), *lg = dalloc(L);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            for (int t = 0; t < L; t++) {
                const double *qt = p + ((size_t)b * L + t) * np + oq + h * dh;
                double mx = -INFINITY, sum = 0.0;
                for (int s = 0; s <= t; s++) {
                    const double *ks = p + ((size_t)b * L + s) * np + ok + h * dh;
                    double dot = 0.0;
                    for (int e = 0; e < dh; e++)
                        dot += (phi ? r_elu1(qt[e]) : qt[e]) * (phi ? r_elu1(ks[e]) : ks[e]);
                    if (transformer_options(c)->attention == ATTENTION_SOFTMAX) dot /= sqrt((double)dh);
                    A[s] = dot * ck;
                    if (A[s] > mx) mx = A[s];
                }
                if (transformer_options(c)->attention == ATTENTION_SOFTMAX) {
                    for (int s = 0; s <= t; s++) sum += exp(A[s] - mx);
                    for (int s = 0; s <= t; s++) A[s] = exp(A[s] - mx) / sum;
                    lg[t] = mx + log(sum);
                } else if (transformer_options(c)->attention == ATTENTION_LINEAR) {
                    for (int s = 0; s <= t; s++) sum += A[s];
                    for (int s = 0; s <= t; s++) A[s] /= sum;
                    lg[t] = log(sum);
                } else {
                    double a = p[((size_t)b * L + t) * np + d + 2 * dqk + h] + (off ? off[h] : 0.0);
                    double mt = exp(-r_normfn(transformer_options(c)->norm_fn, a));
                    for (int s = 0; s <= t; s++) A[s] *= mt;
                    lg[t] = r_normfn(transformer_options(c)->norm_fn, a);
                }
                for (int e = 0; e < dv; e++) {
                    double s_ = 0.0;
                    for (int s = 0; s <= t; s++) s_ += A[s] * p[((size_t)b * L + s) * np + ov + h * dv + e];
                    y[((size_t)b * L + t) * d + h * dv + e] = s_;
                }
            }
            for (int t = 1; t < L; t++) {
                size_t o = (((size_t)b * nl + layer) * H + h) * T + (t - 1);
                /* sm, lin: log eta_{t-1} - log eta_t; norm: f(a_{t-1}) - f(a_t) */
                le[o] = lg[t - 1] - lg[t];
                sc[o] = 1.0 + fabs(lg[t - 1]) + fabs(lg[t]);
            }
        }
    r_linear(y, BL, d, prm(m, "layers.%d.attention.out_proj.weight", layer),
             prm(m, "layers.%d.attention.out_proj.bias", layer), d, out);
    free(A);
    free(lg);
    free(p);
    free(y);
}

/* Whole model in float64 (dropout 0).  logits: (n_rows or B, output_dim). */
static void r_forward(const Model *m, const ModelBatch *bt, double *logits, double *le, double *sc)
{
    const ModelConfig *c = &m->cfg;
    const int B = bt->B, L = bt->L, d = c->hidden_dim, md = transformer_options(c)->mixer_dim;
    const size_t BL = (size_t)B * L;
    double *x = dalloc(BL * d), *u = dalloc(BL * d), *att = dalloc(BL * d), *h = dalloc(BL * d);
    double *y = dalloc(BL * d), *z = dalloc(BL * d), *e1 = dalloc(BL * (md > 0 ? md : 1));
    const float *we = prm(m, "encoder.word_embeddings.weight");
    for (size_t i = 0; i < BL; i++)
        for (int j = 0; j < d; j++) {
            x[i * d + j] = we[(size_t)bt->tokens[i] * d + j];
            if (transformer_options(c)->max_pos_embed > 0) x[i * d + j] += prm(m, "encoder.position_embeddings.weight")[(i % L) * d + j];
        }
    for (int l = 0; l < c->num_layers; l++) {
        const float *nw = prm(m, "layers.%d.norm.weight", l), *nb = prm(m, "layers.%d.norm.bias", l);
        r_layernorm(x, BL, d, nw, nb, u);
        r_attention(m, l, u, B, L, att, le, sc);
        for (size_t i = 0; i < BL * d; i++) h[i] = x[i] + att[i];
        r_layernorm(h, BL, d, nw, nb, y);
        if (transformer_options(c)->mixer == MIXER_MLP) {
            r_linear(y, BL, d, prm(m, "layers.%d.mixer.encoder.weight", l), prm(m, "layers.%d.mixer.encoder.bias", l),
                     md, e1);
            for (size_t i = 0; i < BL * md; i++) e1[i] = r_gelu(e1[i]);
            r_linear(e1, BL, md, prm(m, "layers.%d.mixer.decoder.weight", l),
                     prm(m, "layers.%d.mixer.decoder.bias", l), d, y);
            for (size_t i = 0; i < BL * d; i++) y[i] += h[i];
        }
        if (transformer_options(c)->use_gate) {
            r_linear(x, BL, d, prm(m, "layers.%d.Wz.weight", l), prm(m, "layers.%d.Wz.bias", l), d, z);
            for (size_t i = 0; i < BL * d; i++) y[i] *= r_silu(z[i]);
        }
        memcpy(x, y, sizeof(double) * BL * d);
    }
    r_layernorm(x, BL, d, prm(m, "norm.weight"), prm(m, "norm.bias"), u);
    if (c->head == HEAD_LM) {
        for (int r = 0; r < bt->n_rows; r++) {
            size_t row = bt->rows ? (size_t)bt->rows[r] : (size_t)r;
            r_linear(u + row * d, 1, d, prm(m, "decoder.weight"), NULL, c->output_dim, logits + (size_t)r * c->output_dim);
        }
    } else {
        double *pool = dalloc((size_t)B * d);
        for (int b = 0; b < B; b++) {
            double cnt = 0.0;
            for (int t = 0; t < L; t++) {
                double w = bt->mask ? bt->mask[b * L + t] : 1.0;
                cnt += w;
                for (int j = 0; j < d; j++) pool[b * d + j] += w * u[((size_t)b * L + t) * d + j];
            }
            for (int j = 0; j < d; j++) pool[b * d + j] /= cnt;
        }
        if (md > 0) {
            double *hid = dalloc((size_t)B * md);
            r_linear(pool, B, d, prm(m, "classifier.encoder.weight"), prm(m, "classifier.encoder.bias"), md, hid);
            for (int i = 0; i < B * md; i++) hid[i] = hid[i] > 0.0 ? hid[i] : 0.0;
            r_linear(hid, B, md, prm(m, "classifier.decoder.weight"), prm(m, "classifier.decoder.bias"), c->output_dim,
                     logits);
            free(hid);
        } else {
            memcpy(logits, pool, sizeof(double) * B * d);
        }
        free(pool);
    }
    free(x), free(u), free(att), free(h), free(y), free(z), free(e1);
}

/* ------------------------------------------------------------- helpers */

static int n_out_rows(const Model *m, const ModelBatch *b) { return m->cfg.head == HEAD_LM ? b->n_rows : b->B; }

/* Forward (and optionally backward through the cross entropy into the
 * ParamSet's flat gradient).  Returns the logits copied out (malloc). */
static float *run(Model *m, const TestBatch *tb, bool training, bool backward, uint64_t step, double *eig,
                  float *loss_out)
{
    Graph g;
    ck_assert(graph_init(&g, 1 << 22, 4321) == 0);
    graph_begin(&g, step, training, backward);
    Tensor *lg = model_forward(m, &g, &tb->b, eig);
    ck_assert_int_eq(lg->ndim, 2);
    ck_assert_int_eq(lg->shape[0], n_out_rows(m, &tb->b));
    ck_assert_int_eq(lg->shape[1], m->cfg.output_dim);
    float *out = malloc(lg->numel * sizeof(float));
    memcpy(out, lg->data, lg->numel * sizeof(float));
    if (backward || loss_out) {
        Tensor *loss = op_cross_entropy(&g, lg, tb->labels, NULL);
        if (loss_out) *loss_out = loss->data[0];
        if (backward) {
            paramset_zero_grad(&m->params);
            graph_backward(&g, loss);
        }
    }
    graph_free(&g);
    return out;
}

/* Compare C spectra with the reference log-eigenvalues: |log eig - le| <=
 * tol * sc on finite values; a saturated 0 / +inf must be a reference
 * value beyond the float64 exp range (within the tolerance). */
static void check_spectra(const char *label, const double *eig, const double *le, const double *sc, size_t n,
                          double tol)
{
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(!isnan(eig[i]) && eig[i] >= 0.0, "%s: eig[%zu] = %g", label, i, eig[i]);
        if (eig[i] == 0.0)
            ck_assert_msg(le[i] <= -745.0 + tol * sc[i], "%s: eig[%zu] = 0 but log ref %g", label, i, le[i]);
        else if (isinf(eig[i]))
            ck_assert_msg(le[i] >= 709.0 - tol * sc[i], "%s: eig[%zu] = inf but log ref %g", label, i, le[i]);
        else
            ck_assert_msg(fabs(log(eig[i]) - le[i]) <= tol * sc[i], "%s: eig[%zu] = %.9g, ref exp(%.9g) (scale %g)",
                          label, i, eig[i], le[i], sc[i]);
    }
}

/* --------------------------------------------------------------- tests */

/* Expected (name, shape) list in declaration order, written out from the
 * reference state_dict (docs/parameters.md). */
typedef struct Expect {
    char name[PARAM_NAME_MAX];
    int ndim, shape[3];
} Expect;

static int expect_params(const ModelConfig *c, Expect *ex)
{
    const int d = c->hidden_dim, q = c->state_dim, H = c->num_heads, md = transformer_options(c)->mixer_dim;
    const bool norm = transformer_options(c)->attention == ATTENTION_NORM;
    int n = 0;
#define E(nd, s0, s1, s2, ...)                                              \
    do {                                                                    \
        snprintf(ex[n].name, PARAM_NAME_MAX, __VA_ARGS__);                  \
        ex[n].ndim = nd, ex[n].shape[0] = s0, ex[n].shape[1] = s1, ex[n].shape[2] = s2; \
        n++;                                                                \
    } while (0)
    E(2, c->vocab_size, d, 0, "encoder.word_embeddings.weight");
    if (transformer_options(c)->max_pos_embed) E(2, transformer_options(c)->max_pos_embed, d, 0, "encoder.position_embeddings.weight");
    for (int i = 0; i < c->num_layers; i++) {
        if (norm) {
            E(2, d + 2 * q + H, d, 0, "layers.%d.attention.Wvqkn.weight", i);
            E(1, d + 2 * q + H, 0, 0, "layers.%d.attention.Wvqkn.bias", i);
        } else {
            E(2, 2 * q + d, d, 0, "layers.%d.attention.Wqkv.weight", i);
            E(1, 2 * q + d, 0, 0, "layers.%d.attention.Wqkv.bias", i);
        }
        if (transformer_options(c)->dim_conv) {
            E(3, d + 2 * q, 1, transformer_options(c)->dim_conv, "layers.%d.attention.conv1d.weight", i);
            E(1, d + 2 * q, 0, 0, "layers.%d.attention.conv1d.bias", i);
        }
        if (norm && transformer_options(c)->offset) E(1, H, 0, 0, "layers.%d.attention.inner_attn.offset", i);
        E(2, d, d, 0, "layers.%d.attention.out_proj.weight", i);
        E(1, d, 0, 0, "layers.%d.attention.out_proj.bias", i);
        if (transformer_options(c)->use_gate) {
            E(2, d, d, 0, "layers.%d.Wz.weight", i);
            E(1, d, 0, 0, "layers.%d.Wz.bias", i);
        }
        if (transformer_options(c)->mixer == MIXER_MLP) {
            E(2, md, d, 0, "layers.%d.mixer.encoder.weight", i);
            E(1, md, 0, 0, "layers.%d.mixer.encoder.bias", i);
            E(2, d, md, 0, "layers.%d.mixer.decoder.weight", i);
            E(1, d, 0, 0, "layers.%d.mixer.decoder.bias", i);
        }
        E(1, d, 0, 0, "layers.%d.norm.weight", i);
        E(1, d, 0, 0, "layers.%d.norm.bias", i);
    }
    E(1, d, 0, 0, "norm.weight");
    E(1, d, 0, 0, "norm.bias");
    if (c->head == HEAD_LM) {
        E(2, c->output_dim, d, 0, "decoder.weight");
    } else if (md > 0) {
        E(2, md, d, 0, "classifier.encoder.weight");
        E(1, md, 0, 0, "classifier.encoder.bias");
        E(2, c->output_dim, md, 0, "classifier.decoder.weight");
        E(1, c->output_dim, 0, 0, "classifier.decoder.bias");
    }
#undef E
    return n;
}

START_TEST(test_parameter_names_and_shapes_match_reference_state_dict)
{
    for (int v = 0; v < N_VARIANTS; v++) {
        ModelConfig c = variant_config(&VARIANTS[v]);
        Model m;
        create_model(&m, &c, 1);
        Expect ex[128];
        int n = expect_params(&c, ex);
        ck_assert_msg(m.params.n == n, "%s: %d parameters, expected %d", VARIANTS[v].name, m.params.n, n);
        for (int i = 0; i < n; i++) {
            const Param *p = m.params.items[i];
            ck_assert_msg(strcmp(p->name, ex[i].name) == 0, "%s: parameter %d is %s, expected %s", VARIANTS[v].name,
                          i, p->name, ex[i].name);
            ck_assert_msg(p->t.ndim == ex[i].ndim, "%s: %s ndim", VARIANTS[v].name, p->name);
            for (int k = 0; k < ex[i].ndim; k++)
                ck_assert_msg(p->t.shape[k] == ex[i].shape[k], "%s: %s dim %d is %d, expected %d", VARIANTS[v].name,
                              p->name, k, p->t.shape[k], ex[i].shape[k]);
        }
        model_free(&m);
    }
}
END_TEST

/* Re-draw every parameter from a fresh init stream, walking the ParamSet
 * in declaration order and choosing the initialiser from the name alone:
 * the result must equal model_init bit for bit.  This pins both the
 * initialiser of every parameter and the stream order. */
static void reinit_by_name(Model *m, uint64_t seed)
{
    Rng r;
    rng_init(&r, rng_derive_key(seed, RNG_INIT, 0));
    ParamSet *ps = &m->params;
    for (int i = 0; i < ps->n; i++) {
        Param *p = ps->items[i];
        const char *nm = p->name;
        size_t len = strlen(nm);
#define ENDS(s) (len >= strlen(s) && strcmp(nm + len - strlen(s), s) == 0)
        if (ENDS("embeddings.weight"))
            init_param_normal(p, &r, 0.0, 1.0);
        else if (ENDS("norm.weight"))
            init_param_constant(p, 1.0f);
        else if (ENDS("norm.bias"))
            init_param_constant(p, 0.0f);
        else if (ENDS("Wz.weight"))
            init_xavier_uniform(p, &r, 0.1);
        else if (ENDS("Wz.bias"))
            init_param_constant(p, 1.0f);
        else if (ENDS("inner_attn.offset"))
            init_param_linspace(p, 4.0, 9.0);
        else if (ENDS(".weight")) {
            /* Linear / depthwise Conv1d: weight, then its bias if declared next */
            Param *b = NULL;
            if (i + 1 < ps->n && strncmp(ps->items[i + 1]->name, nm, len - 6) == 0 &&
                strcmp(ps->items[i + 1]->name + len - 6, "bias") == 0)
                b = ps->items[++i];
            ck_assert(init_linear_default(p, b, &r) == 0);
        } else
            ck_abort_msg("no initialiser known for %s", nm);
#undef ENDS
    }
}

START_TEST(test_init_follows_declaration_order_with_the_specified_initialisers)
{
    for (int v = 0; v < N_VARIANTS; v++) {
        ModelConfig c = variant_config(&VARIANTS[v]);
        Model m;
        create_model(&m, &c, 1919);
        size_t n = m.params.total;
        float *a = malloc(n * sizeof(float));
        memcpy(a, m.params.data, n * sizeof(float));
        reinit_by_name(&m, 1919);
        ck_assert_msg(memcmp(a, m.params.data, n * sizeof(float)) == 0, "%s: init differs", VARIANTS[v].name);
        model_init(&m, 1919); /* deterministic */
        ck_assert(memcmp(a, m.params.data, n * sizeof(float)) == 0);
        model_init(&m, 2222); /* another seed, other values */
        ck_assert(memcmp(a, m.params.data, n * sizeof(float)) != 0);
        free(a);
        model_free(&m);
    }
}
END_TEST

static void check_uniform_param(const Model *m, const char *name, double bound)
{
    Param *p = paramset_find(&m->params, name);
    ck_assert_msg(p != NULL, "%s missing", name);
    float mx = 0.0f;
    for (size_t i = 0; i < p->t.numel; i++) {
        ck_assert_msg(fabsf(p->t.data[i]) <= (float)bound, "%s[%zu] = %g outside +-%g", name, i, p->t.data[i], bound);
        mx = fmaxf(mx, fabsf(p->t.data[i]));
    }
    /* n draws all below 0.75 bound: probability 0.75^n (n >= 32 here: < 1e-4) */
    ck_assert_msg(mx > 0.75f * (float)bound, "%s: max |w| %g does not use the range +-%g", name, mx, bound);
}

static void check_const_param(const Model *m, const char *name, float value)
{
    Param *p = paramset_find(&m->params, name);
    ck_assert_msg(p != NULL, "%s missing", name);
    for (size_t i = 0; i < p->t.numel; i++) ck_assert_msg(p->t.data[i] == value, "%s[%zu] = %g", name, i, p->t.data[i]);
}

START_TEST(test_init_statistics_bounds_constants_and_offsets)
{
    /* norm attention with everything: conv, gate, mlp mixer, classifier MLP,
     * 4 heads; a larger vocabulary for the embedding moments */
    ModelConfig c;
    model_config_defaults(&c, KIND_NAMES[ATTENTION_NORM]);
    transformer_options(&c)->dim_conv = 4;
    c.vocab_size = 2000, c.hidden_dim = 16, c.state_dim = 16, c.num_heads = 4, c.num_layers = 2;
    transformer_options(&c)->use_gate = true, transformer_options(&c)->mixer = MIXER_MLP, transformer_options(&c)->mixer_dim = 24, c.head = HEAD_CLASSIFIER, c.output_dim = 10;
    Model m;
    create_model(&m, &c, 7);
    const double d = 16, K = 4;
    for (int i = 0; i < 2; i++) {
        char nm[PARAM_NAME_MAX];
#define NM(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)
        check_uniform_param(&m, NM("layers.%d.attention.Wvqkn.weight", i), 1 / sqrt(d));
        check_uniform_param(&m, NM("layers.%d.attention.Wvqkn.bias", i), 1 / sqrt(d));
        check_uniform_param(&m, NM("layers.%d.attention.conv1d.weight", i), 1 / sqrt(K));
        check_uniform_param(&m, NM("layers.%d.attention.conv1d.bias", i), 1 / sqrt(K));
        check_uniform_param(&m, NM("layers.%d.attention.out_proj.weight", i), 1 / sqrt(d));
        check_uniform_param(&m, NM("layers.%d.Wz.weight", i), 0.1 * sqrt(6.0 / (2 * d)));
        check_const_param(&m, NM("layers.%d.Wz.bias", i), 1.0f);
        check_uniform_param(&m, NM("layers.%d.mixer.encoder.weight", i), 1 / sqrt(d));
        check_uniform_param(&m, NM("layers.%d.mixer.decoder.weight", i), 1 / sqrt(24.0));
        check_const_param(&m, NM("layers.%d.norm.weight", i), 1.0f);
        check_const_param(&m, NM("layers.%d.norm.bias", i), 0.0f);
        const float *o = paramset_find(&m.params, NM("layers.%d.attention.inner_attn.offset", i))->t.data;
        /* torch.linspace(4, 9, 4) in float32 */
        ck_assert(o[0] == 4.0f && o[1] == 5.6666665f && o[2] == 7.3333335f && o[3] == 9.0f);
#undef NM
    }
    check_const_param(&m, "norm.weight", 1.0f);
    check_const_param(&m, "norm.bias", 0.0f);
    check_uniform_param(&m, "classifier.encoder.weight", 1 / sqrt(d));
    check_uniform_param(&m, "classifier.decoder.weight", 1 / sqrt(24.0));
    check_uniform_param(&m, "classifier.decoder.bias", 1 / sqrt(24.0));
    /* Embedding N(0,1): mean and variance within 5 standard errors */
    Param *e = paramset_find(&m.params, "encoder.word_embeddings.weight");
    double s = 0, s2 = 0, n = (double)e->t.numel;
    for (size_t i = 0; i < e->t.numel; i++) s += e->t.data[i], s2 += (double)e->t.data[i] * e->t.data[i];
    double mean = s / n, var = s2 / n - mean * mean;
    ck_assert_double_eq_tol(mean, 0.0, 5 / sqrt(n));
    ck_assert_double_eq_tol(var, 1.0, 5 * sqrt(2.0 / n));
    model_free(&m);

    /* one head: offset_init "exp" gives 4.0 */
    model_config_defaults(&c, KIND_NAMES[ATTENTION_NORM]);
    transformer_options(&c)->dim_conv = 4;
    c.vocab_size = 5, c.output_dim = 5, c.hidden_dim = 4, c.state_dim = 4, c.num_layers = 1;
    create_model(&m, &c, 7);
    check_const_param(&m, "layers.0.attention.inner_attn.offset", 4.0f);
    model_free(&m);
}
END_TEST

/* Forward logits and every layer's spectra against the float64 reference.
 * Tolerances: the C model runs in float32 (rounding 6e-8 per op, a few
 * dozen ops deep); measured worst logit error 2e-7 of the largest logit, so
 * 5e-6 leaves a margin of 25 for other kernels' rounding while any
 * modelling error (a wrong channel, scale or order) shows at the 1e-2 level.
 * Spectra: log eigenvalues within 4e-6 * (1 + |x| + |y|) (x, y the
 * log-domain values; for norm_fn exp they are ~exp(9) and the float32
 * a = n + o_h alone moves f(a) by ~1e-3); measured worst 4e-7. */
START_TEST(test_forward_and_spectra_match_float64_reference)
{
    for (int v = 0; v < N_VARIANTS; v++) {
        const Variant *var = &VARIANTS[v];
        ModelConfig c = variant_config(var);
        Model m;
        create_model(&m, &c, 1000 + v);
        TestBatch tb;
        make_batch(&tb, &c, TB, TL, false, 5 + v);
        const int T = model_spectra_T(&m, TL);
        ck_assert_int_eq(T, TL - 1);
        const size_t ne = (size_t)TB * TLAYERS * TH * T;
        double *eig = malloc((ne + 8) * sizeof(double));
        for (size_t i = 0; i < ne + 8; i++) eig[i] = -7.0; /* sentinel: must all be overwritten, guard kept */
        float *lg = run(&m, &tb, false, false, 0, eig, NULL);
        for (size_t i = ne; i < ne + 8; i++) ck_assert(eig[i] == -7.0);

        int nr = n_out_rows(&m, &tb.b);
        double *ref = dalloc((size_t)nr * c.output_dim), *le = dalloc(ne), *sc = dalloc(ne);
        r_forward(&m, &tb.b, ref, le, sc);
        double mx = 0;
        for (int i = 0; i < nr * c.output_dim; i++) mx = fmax(mx, fabs(ref[i]));
        for (int i = 0; i < nr * c.output_dim; i++)
            ck_assert_msg(fabs(lg[i] - ref[i]) <= 5e-6 * mx, "%s: logit %d: %.8g vs ref %.8g", var->name, i, lg[i],
                          ref[i]);
        check_spectra(var->name, eig, le, sc, ne, 4e-6);
        free(eig), free(lg), free(ref), free(le), free(sc);
        free_batch(&tb);
        model_free(&m);
    }
}
END_TEST

/* norm_fn exp at init saturates: with offsets linspace(4, 9, H) the head
 * with o = 9 has f(a) ~ 8e3, so consecutive differences of n give
 * eigenvalues exp(+-hundreds..thousands): exactly 0 or +inf in float64,
 * kept as such, never NaN. */
START_TEST(test_norm_exp_spectra_saturate_to_zero_and_inf_not_nan)
{
    ModelConfig c = variant_config(&VARIANTS[6]);
    ck_assert(transformer_options(&c)->norm_fn == NORM_FN_EXP);
    int n0 = 0, ninf = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        Model m;
        create_model(&m, &c, seed);
        TestBatch tb;
        make_batch(&tb, &c, TB, 24, true, seed);
        const size_t ne = (size_t)TB * TLAYERS * TH * 23;
        double *eig = malloc(ne * sizeof(double));
        free(run(&m, &tb, false, false, 0, eig, NULL));
        for (size_t i = 0; i < ne; i++) {
            ck_assert(!isnan(eig[i]) && eig[i] >= 0.0);
            n0 += eig[i] == 0.0;
            ninf += isinf(eig[i]);
        }
        free(eig);
        free_batch(&tb);
        model_free(&m);
    }
    ck_assert_msg(n0 > 0 && ninf > 0, "expected saturated eigenvalues: %d zeros, %d infs", n0, ninf);
}
END_TEST

START_TEST(test_attention_norm_fn_float64)
{
    ck_assert_double_eq_tol(attention_norm_fn(NORM_FN_SOFTPLUS, 800.0), 800.0, 1e-12);
    ck_assert_double_eq_tol(attention_norm_fn(NORM_FN_SOFTPLUS, -800.0), 0.0, 1e-300);
    ck_assert_double_eq_tol(attention_norm_fn(NORM_FN_SOFTPLUS, 0.0), log(2.0), 1e-15);
    ck_assert_double_eq_tol(attention_norm_fn(NORM_FN_SIGMOID, -800.0), 0.0, 1e-300);
    ck_assert_double_eq_tol(attention_norm_fn(NORM_FN_SIGMOID, 2.0), 1.0 / (1.0 + exp(-2.0)), 1e-15);
    ck_assert_double_eq_tol(attention_norm_fn(NORM_FN_ELU, -1.5), expm1(-1.5), 1e-15);
    ck_assert_double_eq(attention_norm_fn(NORM_FN_ELU, 3.0), 3.0);
    ck_assert(isinf(attention_norm_fn(NORM_FN_EXP, 800.0)));
}
END_TEST

typedef struct GcCtx {
    Model *m;
    const TestBatch *tb;
} GcCtx;

static Tensor *gc_loss(Graph *g, Tensor **in, void *ctx)
{
    (void)in;
    GcCtx *c = ctx;
    Tensor *lg = model_forward(c->m, g, &c->tb->b, NULL);
    return op_cross_entropy(g, lg, c->tb->labels, NULL);
}

/* Every element of every parameter of the whole model, through the
 * cross-entropy loss.  eps 3e-3 (smaller than the engine default 1e-2, so a
 * perturbation rarely crosses a ReLU kink of the classifier head; with 1e-2
 * one such crossing was seen); atol 5e-5 instead of the default 2e-3, which
 * would pass most of these small gradients blindly: the measured noise of
 * the central differences stays below 2e-5 for all variants. */
START_TEST(test_gradients_of_every_parameter_match_finite_differences)
{
    const GradcheckOpts o = {.eps = 3e-3, .atol = 5e-5, .rtol = 1e-2, .max_probe = 0};
    for (int v = 0; v < N_VARIANTS; v++) {
        ModelConfig c = variant_config(&VARIANTS[v]);
        Model m;
        create_model(&m, &c, 300 + v);
        TestBatch tb;
        make_batch(&tb, &c, TB, TL, false, 40 + v);

        /* every parameter takes part: nonzero gradient somewhere */
        free(run(&m, &tb, true, true, 0, NULL, NULL));
        for (int i = 0; i < m.params.n; i++) {
            const Param *p = m.params.items[i];
            double s = 0;
            for (size_t k = 0; k < p->t.numel; k++) s += fabs(p->t.grad[k]);
            ck_assert_msg(s > 0, "%s: %s gets no gradient", VARIANTS[v].name, p->name);
        }

        Tensor **in = malloc(sizeof(Tensor *) * m.params.n);
        for (int i = 0; i < m.params.n; i++) in[i] = &m.params.items[i]->t;
        GcCtx ctx = {&m, &tb};
        ck_assert_msg(gradcheck(VARIANTS[v].name, gc_loss, &ctx, in, m.params.n, o), "%s", VARIANTS[v].name);
        free(in);
        free_batch(&tb);
        model_free(&m);
    }
}
END_TEST

/* The LM head on selected rows equals the same rows of the full output
 * (final LN is row-wise). */
START_TEST(test_lm_rows_equal_rows_of_full_output)
{
    ModelConfig c = variant_config(&VARIANTS[5]);
    Model m;
    create_model(&m, &c, 3);
    TestBatch sel, all;
    make_batch(&sel, &c, TB, TL, false, 9);
    make_batch(&all, &c, TB, TL, true, 9);
    ck_assert(memcmp(sel.tokens, all.tokens, sizeof(int32_t) * TB * TL) == 0);
    float *a = run(&m, &sel, false, false, 0, NULL, NULL), *b = run(&m, &all, false, false, 0, NULL, NULL);
    for (int r = 0; r < sel.b.n_rows; r++)
        ck_assert_close(a + (size_t)r * TV, b + (size_t)sel.rows[r] * TV, TV, 1e-6, 1e-6, "row");
    free(a), free(b);
    free_batch(&sel), free_batch(&all);
    model_free(&m);
}
END_TEST

/* Classifier pooling uses the valid positions only, and the model is
 * causal: changing the tokens in the padded tail changes nothing. */
START_TEST(test_classifier_ignores_padded_positions)
{
    for (int v = 12; v <= 13; v++) {
        ModelConfig c = variant_config(&VARIANTS[v]);
        ck_assert(c.head == HEAD_CLASSIFIER);
        Model m;
        create_model(&m, &c, 11);
        TestBatch tb;
        make_batch(&tb, &c, TB, TL, true, 12);
        float *a = run(&m, &tb, false, false, 0, NULL, NULL);
        for (int t = 4; t < TL; t++) tb.tokens[1 * TL + t] = (tb.tokens[1 * TL + t] + 3) % TV;
        float *b = run(&m, &tb, false, false, 0, NULL, NULL);
        ck_assert_close(a, b, (size_t)TB * c.output_dim, 1e-6, 1e-6, VARIANTS[v].name);
        /* ... while changing a valid token does change the output */
        tb.tokens[1 * TL + 2] = (tb.tokens[1 * TL + 2] + 1) % TV;
        float *d = run(&m, &tb, false, false, 0, NULL, NULL);
        ck_assert(memcmp(b + c.output_dim, d + c.output_dim, sizeof(float) * c.output_dim) != 0);
        free(a), free(b), free(d);
        free_batch(&tb);
        model_free(&m);
    }
}
END_TEST

/* Dropout (embeddings, attention output, MLP) is active in training only. */
START_TEST(test_dropout_changes_training_output_but_not_eval_output)
{
    const int vs[] = {0, 5, 12};
    for (int k = 0; k < 3; k++) {
        ModelConfig c = variant_config(&VARIANTS[vs[k]]);
        Model m0, m1;
        create_model(&m0, &c, 5);
        c.dropout = 0.3f;
        create_model(&m1, &c, 5);
        TestBatch tb;
        make_batch(&tb, &c, TB, TL, true, 6);
        size_t n = (size_t)n_out_rows(&m0, &tb.b) * c.output_dim;
        float *e0 = run(&m0, &tb, false, false, 0, NULL, NULL), *e1 = run(&m1, &tb, false, false, 0, NULL, NULL);
        float *t0 = run(&m0, &tb, true, false, 0, NULL, NULL), *t1 = run(&m1, &tb, true, false, 0, NULL, NULL);
        float *t1b = run(&m1, &tb, true, false, 1, NULL, NULL);
        ck_assert(memcmp(e0, e1, n * sizeof(float)) == 0); /* eval: dropout is the identity */
        ck_assert(memcmp(e0, t0, n * sizeof(float)) == 0); /* p = 0: identity in training too */
        ck_assert(memcmp(e1, t1, n * sizeof(float)) != 0); /* p > 0 in training: changed */
        ck_assert(memcmp(t1, t1b, n * sizeof(float)) != 0); /* another step, another mask */
        free(e0), free(e1), free(t0), free(t1), free(t1b);
        free_batch(&tb);
        model_free(&m0), model_free(&m1);
    }
}
END_TEST

/* Attention dropout (att_dropout: softmax on the probabilities, linear and
 * norm on the attention output) is active in training only, and
 * att_dropout = 0 changes nothing, in training either. */
START_TEST(test_att_dropout_changes_training_output_but_not_eval_output)
{
    const int vs[] = {0, 1, 2, 5, 9};
    for (int k = 0; k < 5; k++) {
        ModelConfig c = variant_config(&VARIANTS[vs[k]]);
        Model m0, m1;
        create_model(&m0, &c, 5);
        transformer_options(&c)->att_dropout = 0.3f;
        create_model(&m1, &c, 5);
        TestBatch tb;
        make_batch(&tb, &c, TB, TL, true, 6);
        const size_t n = (size_t)n_out_rows(&m0, &tb.b) * c.output_dim;
        float *e0 = run(&m0, &tb, false, false, 0, NULL, NULL), *e1 = run(&m1, &tb, false, false, 0, NULL, NULL);
        float *t0 = run(&m0, &tb, true, false, 0, NULL, NULL), *t1 = run(&m1, &tb, true, false, 0, NULL, NULL);
        float *t1b = run(&m1, &tb, true, false, 1, NULL, NULL);
        const char *nm = VARIANTS[vs[k]].name;
        ck_assert_msg(memcmp(e0, e1, n * sizeof(float)) == 0, "%s: eval changed", nm);
        ck_assert_msg(memcmp(e0, t0, n * sizeof(float)) == 0, "%s: att_dropout 0 changed training", nm);
        ck_assert_msg(memcmp(e1, t1, n * sizeof(float)) != 0, "%s: training unchanged", nm);
        ck_assert_msg(memcmp(t1, t1b, n * sizeof(float)) != 0, "%s: same mask in another step", nm);
        free(e0), free(e1), free(t0), free(t1), free(t1b);
        free_batch(&tb);
        model_free(&m0), model_free(&m1);
    }
}
END_TEST

/* Every parameter gradient through the whole model in training mode with
 * att_dropout > 0 (and the other dropout 0): gradcheck runs all passes at
 * the same step, so the masks are fixed.  Tolerances as in the test
 * without dropout. */
START_TEST(test_gradients_with_att_dropout_match_finite_differences)
{
    const GradcheckOpts o = {.eps = 3e-3, .atol = 5e-5, .rtol = 1e-2, .max_probe = 0, .training = true};
    const int vs[] = {0, 2, 5};
    for (int k = 0; k < 3; k++) {
        ModelConfig c = variant_config(&VARIANTS[vs[k]]);
        transformer_options(&c)->att_dropout = 0.3f;
        Model m;
        create_model(&m, &c, 700 + k);
        TestBatch tb;
        make_batch(&tb, &c, TB, TL, false, 70 + k);
        Tensor **in = malloc(sizeof(Tensor *) * m.params.n);
        for (int i = 0; i < m.params.n; i++) in[i] = &m.params.items[i]->t;
        GcCtx ctx = {&m, &tb};
        ck_assert_msg(gradcheck(VARIANTS[vs[k]].name, gc_loss, &ctx, in, m.params.n, o), "%s", VARIANTS[vs[k]].name);
        free(in);
        free_batch(&tb);
        model_free(&m);
    }
}
END_TEST

/* Forward, loss, spectra and every parameter gradient are bit-identical
 * with 1 and 2 threads (training mode with dropout and attention dropout,
 * sizes that split into several linear-attention chunks and softmax
 * tiles). */
START_TEST(test_forward_backward_bit_identical_for_1_and_2_threads)
{
    const int vs[] = {1, 4, 5, 12};
    for (int k = 0; k < 4; k++) {
        ModelConfig c = variant_config(&VARIANTS[vs[k]]);
        c.hidden_dim = 16, c.state_dim = 16, c.dropout = 0.1f, transformer_options(&c)->max_pos_embed = transformer_options(&c)->max_pos_embed ? 100 : 0;
        transformer_options(&c)->att_dropout = 0.1f;
        if (c.head == HEAD_CLASSIFIER && transformer_options(&c)->mixer_dim == 0) c.output_dim = 16;
        const int B = 3, L = 90;
        Model m;
        create_model(&m, &c, 21);
        TestBatch tb;
        make_batch(&tb, &c, B, L, false, 22);
        const size_t ne = (size_t)B * c.num_layers * c.num_heads * (L - 1), n = (size_t)n_out_rows(&m, &tb.b) * c.output_dim;
        double *eig[2];
        float *lg[2], *grad[2], loss[2];
        for (int r = 0; r < 2; r++) {
            threads_set(r + 1);
            eig[r] = malloc(ne * sizeof(double));
            lg[r] = run(&m, &tb, true, true, 3, eig[r], &loss[r]);
            grad[r] = malloc(m.params.total * sizeof(float));
            memcpy(grad[r], m.params.grad, m.params.total * sizeof(float));
        }
        const char *nm = VARIANTS[vs[k]].name;
        ck_assert_msg(memcmp(lg[0], lg[1], n * sizeof(float)) == 0, "%s: logits", nm);
        ck_assert_msg(loss[0] == loss[1], "%s: loss", nm);
        ck_assert_msg(memcmp(eig[0], eig[1], ne * sizeof(double)) == 0, "%s: spectra", nm);
        ck_assert_msg(memcmp(grad[0], grad[1], m.params.total * sizeof(float)) == 0, "%s: gradients", nm);
        for (int r = 0; r < 2; r++) free(eig[r]), free(lg[r]), free(grad[r]);
        free_batch(&tb);
        model_free(&m);
    }
}
END_TEST

static void expect_config_error(const ModelConfig *c, const char *key)
{
    char err[256] = "";
    ck_assert_int_eq(model_config_check(c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, key) != NULL, "error '%s' does not name %s", err, key);
    Model m;
    char err2[256] = "";
    ck_assert_int_eq(model_create(&m, c, err2, sizeof err2), -1);
    ck_assert_str_eq(err, err2);
}

START_TEST(test_config_check_errors_name_the_key)
{
    ModelConfig c;
    for (int k = ATTENTION_SOFTMAX; k <= ATTENTION_NORM; k++) {
        model_config_defaults(&c, KIND_NAMES[k]);
        char err[256];
        ck_assert_int_eq(model_config_check(&c, err, sizeof err), 0);
    }
    model_config_defaults(&c, KIND_NAMES[ATTENTION_SOFTMAX]);
    c.num_heads = 4, c.state_dim = 6, c.hidden_dim = 8;
    expect_config_error(&c, "state_dim");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_NORM]);
    c.num_heads = 3;
    expect_config_error(&c, "hidden_dim");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_LINEAR]);
    transformer_options(&c)->mixer = MIXER_MLP, transformer_options(&c)->mixer_dim = 0;
    expect_config_error(&c, "mixer_dim");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_SOFTMAX]);
    c.head = HEAD_CLASSIFIER, transformer_options(&c)->mixer_dim = 0, c.output_dim = 10;
    expect_config_error(&c, "output_dim");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_SOFTMAX]);
    c.dropout = 1.0f;
    expect_config_error(&c, "dropout");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_LINEAR]);
    transformer_options(&c)->att_dropout = -0.1f;
    expect_config_error(&c, "att_dropout");
    transformer_options(&c)->att_dropout = 1.0f;
    expect_config_error(&c, "att_dropout");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_LINEAR]);
    c.num_layers = 0;
    expect_config_error(&c, "num_layers");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_NORM]);
    transformer_options(&c)->dim_conv = -1;
    expect_config_error(&c, "dim_conv");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_SOFTMAX]);
    c.vocab_size = 0;
    expect_config_error(&c, "vocab_size");
    model_config_defaults(&c, KIND_NAMES[ATTENTION_NORM]);
    transformer_options(&c)->norm_fn = (NormFn)9;
    expect_config_error(&c, "norm_fn");

    /* sequence longer than the learned positions */
    model_config_defaults(&c, KIND_NAMES[ATTENTION_SOFTMAX]);
    c.vocab_size = c.output_dim = 10, c.hidden_dim = c.state_dim = 8, transformer_options(&c)->max_pos_embed = 16;
    Model m;
    create_model(&m, &c, 1);
    char err[256] = "";
    ck_assert_int_eq(model_check_length(&m, 16, err, sizeof err), 0);
    ck_assert_int_eq(model_check_length(&m, 17, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "max_pos_embed") != NULL, "%s", err);
    model_free(&m);
    for (int k = ATTENTION_SOFTMAX; k <= ATTENTION_NORM; k++) {
        model_config_defaults(&c, KIND_NAMES[k]);
        ck_assert_str_eq(model_name(&c), KIND_NAMES[k]);
        ck_assert(c.family == &transformer_family && transformer_options(&c)->attention == (AttentionKind)k);
    }
    model_config_defaults(&c, "mamba2");
    ck_assert_str_eq(model_name(&c), "mamba2");
}
END_TEST

Suite *suite_models_attention(void)
{
    Suite *s = suite_create("models_attention");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300); /* whole-model finite differences: ~30 s alone, slower on a busy machine */
    tcase_add_test(tc, test_parameter_names_and_shapes_match_reference_state_dict);
    tcase_add_test(tc, test_init_follows_declaration_order_with_the_specified_initialisers);
    tcase_add_test(tc, test_init_statistics_bounds_constants_and_offsets);
    tcase_add_test(tc, test_forward_and_spectra_match_float64_reference);
    tcase_add_test(tc, test_norm_exp_spectra_saturate_to_zero_and_inf_not_nan);
    tcase_add_test(tc, test_attention_norm_fn_float64);
    tcase_add_test(tc, test_gradients_of_every_parameter_match_finite_differences);
    tcase_add_test(tc, test_lm_rows_equal_rows_of_full_output);
    tcase_add_test(tc, test_classifier_ignores_padded_positions);
    tcase_add_test(tc, test_dropout_changes_training_output_but_not_eval_output);
    tcase_add_test(tc, test_att_dropout_changes_training_output_but_not_eval_output);
    tcase_add_test(tc, test_gradients_with_att_dropout_match_finite_differences);
    tcase_add_test(tc, test_forward_backward_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_config_check_errors_name_the_key);
    suite_add_tcase(s, tc);
    return s;
}
