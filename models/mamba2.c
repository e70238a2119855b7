/* The Mamba-2 family: parameters, initialisation, forward pass built from
 * engine ops (backward comes from the tape), dsf and paper spectra, config
 * keys.  See mamba2.h for the equations and the parameter table. */
#include "mamba2.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/init.h"
#include "../src/ops.h"
#include "../src/ops/ssd.h"
#include "../src/rng.h"
#include "encoder.h"
#include "paper_math.h"

#define MAMBA2_LN_EPS 1e-5f

typedef struct Mamba2Layer {
    Param *in_proj_w;          /* (d + 2N + n_dt, d) */
    Param *dt_bias;            /* (H) */
    Param *A_log;              /* (H), Mamba-2 only */
    Param *A;                  /* (H), pseudo-LTI only */
    Param *D;                  /* (H) */
    Param *conv_w, *conv_b;    /* (C, 1, K), (C); NULL when conv_dim == 0 */
    Param *out_proj_w;         /* (d, d) */
    Param *glu_w, *glu_b;      /* (2d, d), (2d); NULL without glu */
    Param *norm_w, *norm_b;    /* (d), (d) */
} Mamba2Layer;

typedef struct Mamba2Impl {
    Encoder enc;               /* token embedding (no positions) or Linear input */
    Param *dec_w, *dec_b;      /* (output_dim, d), (output_dim) */
    int n_layers;
    Mamba2Layer layer[];
} Mamba2Impl;

/* ------------------------------------------------------------ creation */

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static Param *add(ParamSet *ps, int *ok, const char *name, int ndim, const int *shape)
{
    Param *p = paramset_add(ps, name, ndim, shape);
    if (!p) *ok = 0;
    return p;
}

static int mamba2_create(Model *m, char *err, size_t errlen)
{
    m->impl = NULL;
    const ModelConfig *c = &m->cfg;
    const Mamba2Options *o = mamba2_options(c);
    const int d = c->hidden_dim, N = c->state_dim, H = c->num_heads, K = o->conv_dim;
    const int n_dt = o->pseudo_lti ? 1 : H, C = d + 2 * N;

    Mamba2Impl *im = calloc(1, sizeof *im + (size_t)c->num_layers * sizeof(Mamba2Layer));
    if (!im) return fail(err, errlen, "out of memory");
    im->n_layers = c->num_layers;
    ParamSet *ps = &m->params;
    int ok = 1;
    char name[PARAM_NAME_MAX];

    if (encoder_declare(&im->enc, ps, c, 0, err, errlen)) {
        free(im);
        return -1;
    }
    for (int i = 0; i < c->num_layers && ok; i++) {
        Mamba2Layer *l = &im->layer[i];
#define NAME(suffix) (snprintf(name, sizeof name, "blocks.%d.%s", i, suffix), name)
        l->in_proj_w = add(ps, &ok, NAME("mamba.in_proj.weight"), 2, (int[]){C + n_dt, d});
        l->dt_bias = add(ps, &ok, NAME("mamba.dt_bias"), 1, (int[]){H});
        if (o->pseudo_lti) {
            l->D = add(ps, &ok, NAME("mamba.D"), 1, (int[]){H});
            l->A = add(ps, &ok, NAME("mamba.A"), 1, (int[]){H});
        } else {
            l->A_log = add(ps, &ok, NAME("mamba.A_log"), 1, (int[]){H});
            l->D = add(ps, &ok, NAME("mamba.D"), 1, (int[]){H});
        }
        if (K > 0) {
            l->conv_w = add(ps, &ok, NAME("mamba.conv1d.weight"), 3, (int[]){C, 1, K});
            l->conv_b = add(ps, &ok, NAME("mamba.conv1d.bias"), 1, (int[]){C});
        }
        l->out_proj_w = add(ps, &ok, NAME("mamba.out_proj.weight"), 2, (int[]){d, d});
        if (o->glu) {
            l->glu_w = add(ps, &ok, NAME("glu.linear.weight"), 2, (int[]){2 * d, d});
            l->glu_b = add(ps, &ok, NAME("glu.linear.bias"), 1, (int[]){2 * d});
        }
        l->norm_w = add(ps, &ok, NAME("norm.weight"), 1, (int[]){d});
        l->norm_b = add(ps, &ok, NAME("norm.bias"), 1, (int[]){d});
#undef NAME
    }
    if (ok) {
        im->dec_w = add(ps, &ok, "decoder.weight", 2, (int[]){c->output_dim, d});
        im->dec_b = add(ps, &ok, "decoder.bias", 1, (int[]){c->output_dim});
    }
    if (!ok) {
        free(im);
        return fail(err, errlen, "Mamba-2: could not declare the parameters");
    }
    if (paramset_finalize(ps)) {
        free(im);
        return fail(err, errlen, "out of memory allocating the Mamba-2 parameters");
    }
    m->impl = im;
    return 0;
}

static void mamba2_free(Model *m)
{
    free(m->impl);
    m->impl = NULL;
}

/* ------------------------------------------------------------ init */

/* dt_bias = softplus^-1(dt), dt = max(1e-4, exp(U(log 1e-3, log 1e-1))),
 * one rng_uniform per head, computed in double. */
static void init_dt_bias(Param *p, Rng *r)
{
    const double lo = log(1e-3), hi = log(1e-1);
    for (size_t i = 0; i < p->t.numel; i++) {
        double dt = exp(rng_uniform(r) * (hi - lo) + lo);
        if (dt < 1e-4) dt = 1e-4;
        p->t.data[i] = (float)(dt + log(-expm1(-dt)));
    }
}

/* A ~ U(1, 16) (rounded to float, as the reference draws it in float32),
 * A_log = log A. */
static void init_A_log(Param *p, Rng *r)
{
    for (size_t i = 0; i < p->t.numel; i++) {
        float A = (float)(1.0 + 15.0 * rng_uniform(r));
        p->t.data[i] = (float)log((double)A);
    }
}

static void mamba2_init(Model *m, uint64_t seed)
{
    Mamba2Impl *im = m->impl;
    Rng r;
    rng_init(&r, rng_derive_key(seed, RNG_INIT, 0));
    encoder_init(&im->enc, &r);
    for (int i = 0; i < im->n_layers; i++) {
        Mamba2Layer *l = &im->layer[i];
        init_linear_default(l->in_proj_w, NULL, &r);
        init_dt_bias(l->dt_bias, &r);
        if (mamba2_options(&m->cfg)->pseudo_lti) {
            init_param_constant(l->D, 1.0f);
            init_param_uniform(l->A, &r, -8.0, -2.0);
        } else {
            init_A_log(l->A_log, &r);
            init_param_constant(l->D, 1.0f);
        }
        if (l->conv_w) init_linear_default(l->conv_w, l->conv_b, &r);
        init_linear_default(l->out_proj_w, NULL, &r);
        if (l->glu_w) init_linear_default(l->glu_w, l->glu_b, &r);
        init_param_constant(l->norm_w, 1.0f);
        init_param_constant(l->norm_b, 0.0f);
    }
    init_linear_default(im->dec_w, im->dec_b, &r);
}

/* ------------------------------------------------------------ forward */

static Tensor *filled(Graph *g, int ndim, const int *shape, float v)
{
    Tensor *t = tensor_new(g, ndim, shape);
    for (size_t i = 0; i < t->numel; i++) t->data[i] = v;
    return t;
}

/* softplus in double, stable for any sign */
static double softplus_d(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }

/* The SSD layer on u (B, L, d).  eig: NULL or this layer's slice base of
 * the (B, layers, H, L) spectra array, with `eig_stride_b` doubles between
 * batch entries. */
static Tensor *ssd_layer(const Model *m, const Mamba2Layer *l, Graph *g, Tensor *u, double *eig,
                         size_t eig_stride_b)
{
    const ModelConfig *c = &m->cfg;
    const int Bn = u->shape[0], L = u->shape[1];
    const int d = c->hidden_dim, N = c->state_dim, H = c->num_heads, C = d + 2 * N;
    const bool lti = mamba2_options(c)->pseudo_lti;

    Tensor *zx = op_linear(g, u, &l->in_proj_w->t, NULL);          /* (B, L, C + n_dt) */
    Tensor *xBC = l->conv_w ? NULL : op_slice_cols(g, zx, 0, C); /* the conv reads zx */
    Tensor *dt = op_slice_cols(g, zx, C, lti ? 1 : H);
    if (lti) {
        /* broadcast the single dt channel to the H heads: ones (., H) * dt (., 1), exact */
        Tensor *ones = filled(g, 3, (int[]){Bn, L, H}, 1.0f);
        dt = op_mul_heads(g, ones, dt);
    }
    Tensor *delta = op_softplus(g, op_add_cols(g, dt, &l->dt_bias->t));   /* (B, L, H) */

    Tensor *xbc[3]; /* x, B, C: the conv writes them apart (no slice copies) */
    if (l->conv_w)
        op_conv1d_silu_split(g, zx, 0, 3, (int[]){d, N, N}, &l->conv_w->t, &l->conv_b->t, xbc);
    else
        xbc[0] = op_slice_cols(g, xBC, 0, d), xbc[1] = op_slice_cols(g, xBC, d, N), xbc[2] = op_slice_cols(g, xBC, d + N, N);
    Tensor *x = xbc[0], *Bm = xbc[1], *Cm = xbc[2];

    Tensor *y;
    if (!lti) {
        Tensor *a = op_scale(g, op_exp(g, &l->A_log->t), -1.0f);    /* a_h = -exp(A_log_h) */
        Tensor *log_a = op_mul_cols(g, delta, a);                   /* Delta_t^h a_h */
        y = op_ssd_scan(g, op_mul_heads(g, x, delta), Bm, Cm, log_a, H);
    } else {
        Tensor *na = op_scale(g, op_softplus(g, &l->A->t), -1.0f);  /* -softplus(A_h) */
        Tensor *log_a = op_add_cols(g, tensor_zeros(g, 3, (int[]){Bn, L, H}), na);
        /* block j of N/H entries of B times Delta^j */
        y = op_ssd_scan(g, x, op_mul_heads(g, Bm, delta), Cm, log_a, H);
    }
    y = op_add(g, y, op_mul_heads(g, x, &l->D->t));

    if (eig) {
        if (!lti) {
            const float *A_log = l->A_log->t.data;
            for (int b = 0; b < Bn; b++)
                for (int h = 0; h < H; h++) {
                    const double ea = exp((double)A_log[h]);
                    double *e = eig + (size_t)b * eig_stride_b + (size_t)h * L;
                    const float *dl = delta->data + (size_t)b * L * H + h;
                    for (int t = 0; t < L; t++) e[t] = exp(-(double)dl[(size_t)t * H] * ea);
                }
        } else {
            const float *A = l->A->t.data;
            for (int b = 0; b < Bn; b++)
                for (int h = 0; h < H; h++) {
                    const double v = exp(-softplus_d((double)A[h]));
                    double *e = eig + (size_t)b * eig_stride_b + (size_t)h * L;
                    for (int t = 0; t < L; t++) e[t] = v;
                }
        }
    }
    return op_linear(g, y, &l->out_proj_w->t, NULL);
}

static Tensor *mamba2_forward(Model *m, Graph *g, const ModelBatch *b, double *eig)
{
    Mamba2Impl *im = m->impl;
    const ModelConfig *c = &m->cfg;
    const bool prenorm = mamba2_options(c)->prenorm;
    const int Bn = b->B, L = b->L, d = c->hidden_dim;
    const size_t eig_stride_b = (size_t)im->n_layers * c->num_heads * L;

    Tensor *x = encoder_forward(&im->enc, g, b);   /* (B, L, d), no encoder dropout (reference) */
    for (int i = 0; i < im->n_layers; i++) {
        const Mamba2Layer *l = &im->layer[i];
        Tensor *u = prenorm ? op_layernorm(g, x, &l->norm_w->t, &l->norm_b->t, MAMBA2_LN_EPS) : x;
        double *eig_l = eig ? eig + (size_t)i * c->num_heads * L : NULL;
        Tensor *h = ssd_layer(m, l, g, u, eig_l, eig_stride_b);
        h = op_dropout(g, op_gelu(g, h), c->dropout);
        if (l->glu_w) h = op_glu(g, op_linear(g, h, &l->glu_w->t, &l->glu_b->t));
        h = op_dropout(g, h, c->dropout);
        x = op_add(g, x, h);
        if (!prenorm) x = op_layernorm(g, x, &l->norm_w->t, &l->norm_b->t, MAMBA2_LN_EPS);
    }

    if (c->head == HEAD_CLASSIFIER) {
        Tensor *pooled = op_mean_time(g, x, b->mask);                        /* (B, d) */
        return op_linear(g, pooled, &im->dec_w->t, &im->dec_b->t);
    }
    Tensor *rows = b->rows ? op_gather_rows(g, x, b->rows, b->n_rows)
                           : tensor_reshape(g, x, 2, (int[]){Bn * L, d});
    return op_linear(g, rows, &im->dec_w->t, &im->dec_b->t);
}

Tensor *mamba2_encode(Model *m, Graph *g, const ModelBatch *b)
{
    const Mamba2Impl *im = m->impl;
    return encoder_forward(&im->enc, g, b);
}

Tensor *mamba2_block_forward(Model *m, Graph *g, int i, Tensor *x)
{
    Mamba2Impl *im = m->impl;
    const ModelConfig *c = &m->cfg;
    const bool prenorm = mamba2_options(c)->prenorm;
    const Mamba2Layer *l = &im->layer[i];
    /* the same ops in the same order as the loop in mamba2_forward (a test
     * checks that chaining this reproduces model_forward bit for bit) */
    Tensor *u = prenorm ? op_layernorm(g, x, &l->norm_w->t, &l->norm_b->t, MAMBA2_LN_EPS) : x;
    Tensor *h = ssd_layer(m, l, g, u, NULL, 0);
    h = op_dropout(g, op_gelu(g, h), c->dropout);
    if (l->glu_w) h = op_glu(g, op_linear(g, h, &l->glu_w->t, &l->glu_b->t));
    h = op_dropout(g, h, c->dropout);
    x = op_add(g, x, h);
    if (!prenorm) x = op_layernorm(g, x, &l->norm_w->t, &l->norm_b->t, MAMBA2_LN_EPS);
    return x;
}

/* ------------------------------------------------------------ paper spectra */

/* Mamba-2 layer i by the reference script (docs/eigenvalues.md) from its
 * block's output x: eig = exp(softplus(dt + dt_bias) * -exp(A_log)), all
 * float32 (values within float32 rounding of 1 are exactly 1). */
static void paper_eig_layer(const Mamba2Layer *l, const ModelConfig *c, Graph *g, Tensor *x, double *eig,
                            size_t bstride)
{
    const int B = x->shape[0], L = x->shape[1], H = c->num_heads;
    const int row0 = c->hidden_dim + 2 * c->state_dim; /* [x | B | C | dt] */
    Tensor *dt = paper_linear_rows(g, x, l->in_proj_w, NULL, row0, H);
    const float *bias = l->dt_bias->t.data, *A_log = l->A_log->t.data;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float a = -expf(A_log[h]);
            double *e = eig + (size_t)b * bstride + (size_t)h * L;
            for (int t = 0; t < L; t++) {
                const float delta = paper_softplus(dt->data[((size_t)b * L + t) * H + h] + bias[h]);
                e[t] = (double)expf(delta * a);
            }
        }
}

/* Pseudo-LTI layer: exp(-softplus(A_h)) for every (b, t), float32 (the
 * script's exp(beta * A) with beta = 1); no forward needed. */
static void paper_eig_lti_layer(const Mamba2Layer *l, int B, int L, int H, double *eig, size_t bstride)
{
    const float *A = l->A->t.data;
    for (int h = 0; h < H; h++) {
        const double v = (double)expf(-paper_softplus(A[h]));
        for (int b = 0; b < B; b++) {
            double *e = eig + (size_t)b * bstride + (size_t)h * L;
            for (int t = 0; t < L; t++) e[t] = v;
        }
    }
}

static void mamba2_spectra_paper(Model *m, Graph *g, const ModelBatch *b, double *eig)
{
    const ModelConfig *c = &m->cfg;
    Mamba2Impl *im = m->impl;
    const int B = b->B, L = b->L, H = c->num_heads;
    const size_t bstride = (size_t)c->num_layers * H * L;
    if (mamba2_options(c)->pseudo_lti) { /* input-independent */
        for (int i = 0; i < c->num_layers; i++) paper_eig_lti_layer(&im->layer[i], B, L, H, eig + (size_t)i * H * L, bstride);
        return;
    }
    Tensor *x = mamba2_encode(m, g, b); /* the script's encoder(X): no dropout */
    for (int i = 0; i < c->num_layers; i++) {
        x = mamba2_block_forward(m, g, i, x);
        paper_eig_layer(&im->layer[i], c, g, x, eig + (size_t)i * H * L, bstride);
    }
}

/* ------------------------------------------------------------ configuration */

static const char *const VERSIONS[] = {"mamba2", NULL};

/* model.version and model.token_embedding come from the family's names and
 * float_input_key (model_config.c). */
static void mamba2_register_keys(ConfigSchema *s)
{
    config_schema_add_int(s, "model.conv_dim", 4, 0);
    config_schema_add_int(s, "model.expansion", 1, 0);
    config_schema_add_bool(s, "model.glu", true, 0);
    config_schema_add_bool(s, "model.prenorm", true, 0);
    config_schema_add_bool(s, "model.pseudoLTI", false, 0);
}

static int mamba2_from_config(const Config *c, ModelConfig *mc, char *err, size_t errlen)
{
    Mamba2Options *o = mamba2_options(mc);
    /* The other family's input-layer key set to false would be silently
     * ignored by the reference; refuse it. */
    if (!config_bool(c, "model.embedding"))
        return config_key_error(c, "model.embedding", err, errlen,
                                "model.embedding = false has no effect on a Mamba-2 model; its input layer is "
                                "chosen by model.token_embedding");
    if (config_int(c, "model.expansion") != 1)
        return config_key_error(c, "model.expansion", err, errlen,
                                "model.expansion = %d: the reference Mamba-2 block uses expansion 1 only",
                                config_int(c, "model.expansion"));
    if (!config_bool(c, "model.token_embedding")) {
        mc->input_dim = config_int(c, "model.input_dim");
        if (mc->input_dim <= 0)
            return config_key_error(c, "model.input_dim", err, errlen,
                                    "model.input_dim = %d: float inputs need at least one feature per position",
                                    mc->input_dim);
    }
    /* The reference Mamba model classifies whenever it pools (its configs
     * say `pooling: "mean"` without `classifier:`); the transformer reads
     * `classifier`.  The pooling default is "mean", so only an explicitly
     * given pooling counts. */
    const int pi = config_schema_find(c->schema, "model.pooling");
    if (c->source[pi] != CONFIG_FROM_DEFAULT && strcmp(config_str(c, "model.pooling"), "mean") == 0)
        mc->head = HEAD_CLASSIFIER;
    o->conv_dim = config_int(c, "model.conv_dim");
    o->glu = config_bool(c, "model.glu");
    o->prenorm = config_bool(c, "model.prenorm");
    o->pseudo_lti = config_bool(c, "model.pseudoLTI");
    return 0;
}

static const char *mamba2_name(const ModelConfig *mc)
{
    (void)mc;
    return VERSIONS[0];
}

static int mamba2_check(const ModelConfig *c, char *err, size_t errlen)
{
    const Mamba2Options *o = mamba2_options(c);
    if (o->conv_dim < 0) return fail(err, errlen, "conv_dim = %d: must be >= 0", o->conv_dim);
    if (o->pseudo_lti && c->state_dim % c->num_heads != 0)
        return fail(err, errlen,
                    "state_dim = %d is not divisible by num_heads = %d (pseudoLTI splits B into one block per head)",
                    c->state_dim, c->num_heads);
    return 0;
}

/* One eigenvalue per head and time step. */
static SpectraShape mamba2_spectra_shape(const ModelConfig *c, int L)
{
    return (SpectraShape){.kind = SPECTRA_PER_STEP, .layers = c->num_layers, .systems = c->num_heads, .steps = L,
                          .complex = false};
}

const ModelFamily mamba2_family = {
    .layer = "mamba",
    .variant_key = "model.version",
    .names = VERSIONS,
    .float_input_key = "model.token_embedding",
    .register_keys = mamba2_register_keys,
    .from_config = mamba2_from_config,
    .name = mamba2_name,
    .check = mamba2_check,
    .create = mamba2_create,
    .free = mamba2_free,
    .init = mamba2_init,
    .forward = mamba2_forward,
    .spectra_paper = mamba2_spectra_paper,
    .spectra_shape = mamba2_spectra_shape,
    .check_length = NULL,
};
