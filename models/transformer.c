/* Transformer backbone (see transformer.h). */
#include "transformer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/init.h"
#include "../src/ops.h"
#include "../src/rng.h"
#include "attention.h"
#include "encoder.h"

#define LN_EPS 1e-5f

typedef struct Block {
    AttentionLayer attn;
    Param *wz_w, *wz_b;                                /* use_gate */
    Param *enc_w, *enc_b, *dec_w, *dec_b;              /* mixer mlp */
    Param *norm_w, *norm_b;                            /* the block's one LayerNorm */
} Block;

typedef struct Transformer {
    Encoder enc;
    Block *blocks;
    Param *norm_w, *norm_b;                            /* final LayerNorm */
    Param *dec_w;                                      /* LM head (no bias) */
    Param *cls_enc_w, *cls_enc_b, *cls_dec_w, *cls_dec_b; /* classifier MLP (mixer_dim > 0) */
} Transformer;

static Param *declare(ParamSet *ps, const char *name, int ndim, int s0, int s1, char *err,
                      size_t errlen)
{
    int shape[2] = {s0, s1};
    Param *p = paramset_add(ps, name, ndim, shape);
    if (!p && err && errlen) snprintf(err, errlen, "cannot declare parameter %s", name);
    return p;
}

static int transformer_create(Model *m, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    const TransformerOptions *o = transformer_options(c);
    const int d = c->hidden_dim, mdim = o->mixer_dim;
    ParamSet *ps = &m->params;
    m->impl = NULL;
    Transformer *t = calloc(1, sizeof *t);
    Block *blocks = t ? calloc((size_t)c->num_layers, sizeof *blocks) : NULL;
    if (!blocks) {
        free(t);
        if (err && errlen) snprintf(err, errlen, "out of memory creating the %s model", model_name(c));
        return -1;
    }
    t->blocks = blocks;
    char name[PARAM_NAME_MAX];
#define DECL(dst, nd, s0, s1, ...)                                  \
    do {                                                            \
        snprintf(name, sizeof name, __VA_ARGS__);                   \
        if (!((dst) = declare(ps, name, nd, s0, s1, err, errlen))) goto fail; \
    } while (0)

    if (encoder_declare(&t->enc, ps, c, o->max_pos_embed, err, errlen)) goto fail;
    for (int i = 0; i < c->num_layers; i++) {
        Block *bl = &blocks[i];
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%d.attention.", i);
        if (attention_declare(&bl->attn, ps, c, prefix, err, errlen)) goto fail;
        if (o->use_gate) {
            DECL(bl->wz_w, 2, d, d, "layers.%d.Wz.weight", i);
            DECL(bl->wz_b, 1, d, 0, "layers.%d.Wz.bias", i);
        }
        if (o->mixer == MIXER_MLP) {
            DECL(bl->enc_w, 2, mdim, d, "layers.%d.mixer.encoder.weight", i);
            DECL(bl->enc_b, 1, mdim, 0, "layers.%d.mixer.encoder.bias", i);
            DECL(bl->dec_w, 2, d, mdim, "layers.%d.mixer.decoder.weight", i);
            DECL(bl->dec_b, 1, d, 0, "layers.%d.mixer.decoder.bias", i);
        }
        DECL(bl->norm_w, 1, d, 0, "layers.%d.norm.weight", i);
        DECL(bl->norm_b, 1, d, 0, "layers.%d.norm.bias", i);
    }
    DECL(t->norm_w, 1, d, 0, "norm.weight");
    DECL(t->norm_b, 1, d, 0, "norm.bias");
    if (c->head == HEAD_LM) {
        DECL(t->dec_w, 2, c->output_dim, d, "decoder.weight");
    } else if (mdim > 0) {
        DECL(t->cls_enc_w, 2, mdim, d, "classifier.encoder.weight");
        DECL(t->cls_enc_b, 1, mdim, 0, "classifier.encoder.bias");
        DECL(t->cls_dec_w, 2, c->output_dim, mdim, "classifier.decoder.weight");
        DECL(t->cls_dec_b, 1, c->output_dim, 0, "classifier.decoder.bias");
    }
#undef DECL
    if (paramset_finalize(ps)) {
        if (err && errlen) snprintf(err, errlen, "out of memory allocating %zu parameters", paramset_count(ps));
        goto fail;
    }
    m->impl = t;
    return 0;
fail:
    free(blocks);
    free(t);
    return -1;
}

static void transformer_free(Model *m)
{
    Transformer *t = m->impl;
    if (!t) return;
    free(t->blocks);
    free(t);
    m->impl = NULL;
}

/* Every parameter in declaration order from one stream (docs/parameters.md). */
static void transformer_init(Model *m, uint64_t seed)
{
    const ModelConfig *c = &m->cfg;
    Transformer *t = m->impl;
    Rng r;
    rng_init(&r, rng_derive_key(seed, RNG_INIT, 0));
    encoder_init(&t->enc, &r);
    for (int i = 0; i < c->num_layers; i++) {
        Block *bl = &t->blocks[i];
        attention_init(&bl->attn, c, &r);
        if (bl->wz_w) {
            init_xavier_uniform(bl->wz_w, &r, 0.1);
            init_param_constant(bl->wz_b, 1.0f);
        }
        if (bl->enc_w) {
            init_linear_default(bl->enc_w, bl->enc_b, &r);
            init_linear_default(bl->dec_w, bl->dec_b, &r);
        }
        init_param_constant(bl->norm_w, 1.0f);
        init_param_constant(bl->norm_b, 0.0f);
    }
    init_param_constant(t->norm_w, 1.0f);
    init_param_constant(t->norm_b, 0.0f);
    if (t->dec_w) init_linear_default(t->dec_w, NULL, &r);
    if (t->cls_enc_w) {
        init_linear_default(t->cls_enc_w, t->cls_enc_b, &r);
        init_linear_default(t->cls_dec_w, t->cls_dec_b, &r);
    }
}

static Tensor *layer_norm(Graph *g, Tensor *x, Param *w, Param *b)
{
    return op_layernorm(g, x, &w->t, &b->t, LN_EPS);
}

static Tensor *block_forward(const Block *bl, const ModelConfig *c, Graph *g, Tensor *x, double *eig,
                             size_t eig_bstride)
{
    const float p = c->dropout;
    const TransformerOptions *o = transformer_options(c);
    Tensor *z = bl->wz_w ? op_linear(g, x, &bl->wz_w->t, &bl->wz_b->t) : NULL;
    Tensor *att = attention_forward(&bl->attn, c, g, layer_norm(g, x, bl->norm_w, bl->norm_b), eig,
                                    eig_bstride);
    Tensor *h = op_add(g, x, op_dropout(g, att, p));
    Tensor *y;
    if (o->mixer == MIXER_NONE) {
        y = layer_norm(g, h, bl->norm_w, bl->norm_b); /* no second residual */
    } else {
        Tensor *u = op_linear(g, layer_norm(g, h, bl->norm_w, bl->norm_b), &bl->enc_w->t, &bl->enc_b->t);
        u = op_dropout(g, op_gelu(g, u), p);
        u = op_linear(g, u, &bl->dec_w->t, &bl->dec_b->t);
        y = op_add(g, h, op_dropout(g, u, p));
    }
    if (z) y = op_mul(g, y, op_silu(g, z)); /* gates the whole residual stream */
    return y;
}

static Tensor *transformer_forward(Model *m, Graph *g, const ModelBatch *bt, double *eig)
{
    const ModelConfig *c = &m->cfg;
    const TransformerOptions *o = transformer_options(c);
    Transformer *t = m->impl;
    const int B = bt->B, L = bt->L, d = c->hidden_dim;
    if (o->max_pos_embed > 0 && L > o->max_pos_embed) {
        fprintf(stderr, "seqeig: internal error: sequence length %d exceeds max_pos_embed %d "
                        "(model_check_length must reject it)\n", L, o->max_pos_embed);
        abort();
    }
    Tensor *x = op_dropout(g, encoder_forward(&t->enc, g, bt), c->dropout);

    const int T = L - 1;
    const size_t eig_bstride = (size_t)c->num_layers * c->num_heads * (T > 0 ? T : 0);
    for (int i = 0; i < c->num_layers; i++) {
        double *ei = eig ? eig + (size_t)i * c->num_heads * (T > 0 ? T : 0) : NULL;
        x = block_forward(&t->blocks[i], c, g, x, ei, eig_bstride);
    }

    if (c->head == HEAD_LM) {
        /* LayerNorm is row-wise, so normalising only the rows that need
         * logits equals normalising everything and gathering afterwards,
         * and skips the work on the other rows. */
        const int shape2[2] = {B * L, d};
        Tensor *rows = bt->rows ? op_gather_rows(g, x, bt->rows, bt->n_rows) : tensor_reshape(g, x, 2, shape2);
        return op_linear(g, layer_norm(g, rows, t->norm_w, t->norm_b), &t->dec_w->t, NULL);
    }
    Tensor *pooled = op_mean_time(g, layer_norm(g, x, t->norm_w, t->norm_b), bt->mask);
    if (!t->cls_enc_w) return pooled;
    Tensor *u = op_relu(g, op_linear(g, pooled, &t->cls_enc_w->t, &t->cls_enc_b->t));
    return op_linear(g, u, &t->cls_dec_w->t, &t->cls_dec_b->t);
}

Tensor *transformer_encode(Model *m, Graph *g, const ModelBatch *b)
{
    const Transformer *t = m->impl;
    return encoder_forward(&t->enc, g, b);
}

Tensor *transformer_block_forward(Model *m, Graph *g, int i, Tensor *x)
{
    Transformer *t = m->impl;
    return block_forward(&t->blocks[i], &m->cfg, g, x, NULL, 0);
}

/* ------------------------------------------------------------ paper spectra */

/* The reference script's loop (docs/eigenvalues.md): the input layer
 * without dropout, then block by block, each layer's eigenvalues from its
 * block's output. */
static void transformer_spectra_paper(Model *m, Graph *g, const ModelBatch *b, double *eig)
{
    const ModelConfig *c = &m->cfg;
    Transformer *t = m->impl;
    const int L = b->L, H = c->num_heads, T = L > 1 ? L - 1 : 0;
    const size_t bstride = (size_t)c->num_layers * H * T;
    Tensor *x = transformer_encode(m, g, b);
    for (int i = 0; i < c->num_layers; i++) {
        x = transformer_block_forward(m, g, i, x);
        attention_paper_eig(&t->blocks[i].attn, c, g, x, eig + (size_t)i * H * T, bstride);
    }
}

/* ------------------------------------------------------------ configuration */

static const char *const ATTENTION_FNS[] = {"sm-attention", "lin-attention", "norm-attention", NULL};
static const char *const NORM_FNS[] = {"exp", "elu", "softplus", "sigmoid", NULL};
static const char *const APPROX_FNS[] = {"none", "elu", NULL};
static const char *const MIXERS[] = {"none", "mlp", NULL};
static const char *const OFFSET_INITS[] = {"exp", NULL};
static const char *const MODES[] = {"attention", NULL};

/* The variant key (attention_fn) and the input key (embedding) are
 * registered from the family's names and float_input_key (model_config.c). */
static void transformer_register_keys(ConfigSchema *s)
{
    config_schema_add_double(s, "model.att_dropout", 0.0, 0);
    config_schema_add_int(s, "model.max_pos_embed", 0, 0);
    config_schema_add_enum(s, "model.mixer", "none", MIXERS, 0);
    config_schema_add_int(s, "model.mixer_dim", 128, 0);
    config_schema_add_bool(s, "model.use_gate", false, 0);
    config_schema_add_int(s, "model.dim_conv", 0, 0);
    config_schema_add_enum(s, "model.norm_fn", "softplus", NORM_FNS, 0);
    config_schema_add_enum(s, "model.approx_fn", "elu", APPROX_FNS, 0);
    config_schema_add_bool(s, "model.scale_B", true, 0);
    config_schema_add_bool(s, "model.offset", true, 0);
    config_schema_add_enum(s, "model.offset_init", "exp", OFFSET_INITS, 0);
    config_schema_add_bool(s, "model.learn_A", false, 0);
    config_schema_add_enum(s, "model.mode", "attention", MODES, 0);
}

static int index_of(const char *const *list, const char *v)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], v) == 0) return i;
    return -1;
}

static int transformer_from_config(const Config *c, ModelConfig *mc, char *err, size_t errlen)
{
    TransformerOptions *o = transformer_options(mc);
    /* The other family's input-layer key set to false would be silently
     * ignored by the reference; refuse it. */
    if (!config_bool(c, "model.token_embedding"))
        return config_key_error(c, "model.token_embedding", err, errlen,
                                "model.token_embedding = false has no effect on a transformer model; its input "
                                "layer is chosen by model.embedding");
    if (config_bool(c, "model.learn_A"))
        return config_key_error(c, "model.learn_A", err, errlen,
                                "model.learn_A = true: norm attention with a learned A is not implemented");
    if (!config_bool(c, "model.embedding")) {
        mc->input_dim = config_int(c, "model.input_dim");
        if (mc->input_dim <= 0)
            return config_key_error(c, "model.input_dim", err, errlen,
                                    "model.input_dim = %d: float inputs need at least one feature per position",
                                    mc->input_dim);
    }
    o->attention = (AttentionKind)index_of(ATTENTION_FNS, config_str(c, "model.attention_fn"));
    o->att_dropout = (float)config_double(c, "model.att_dropout");
    o->mixer = (MixerKind)index_of(MIXERS, config_str(c, "model.mixer"));
    /* mixer_dim sizes the MLP and the classifier MLP; the reference LM head
     * has no MLP, so it only matters when used. */
    o->mixer_dim = (o->mixer == MIXER_MLP || mc->head == HEAD_CLASSIFIER) ? config_int(c, "model.mixer_dim") : 0;
    o->max_pos_embed = config_int(c, "model.max_pos_embed");
    o->use_gate = config_bool(c, "model.use_gate");
    o->dim_conv = config_int(c, "model.dim_conv");
    o->norm_fn = (NormFn)index_of(NORM_FNS, config_str(c, "model.norm_fn"));
    o->approx_fn = (ApproxFn)index_of(APPROX_FNS, config_str(c, "model.approx_fn"));
    o->scale_B = config_bool(c, "model.scale_B");
    o->offset = config_bool(c, "model.offset");
    return 0;
}

static const char *transformer_name(const ModelConfig *mc)
{
    const int k = (int)transformer_options(mc)->attention;
    return k >= 0 && k < 3 ? ATTENTION_FNS[k] : "unknown";
}

#define FAIL(...)                                              \
    do {                                                       \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return -1;                                             \
    } while (0)

static int transformer_check(const ModelConfig *c, char *err, size_t errlen)
{
    const TransformerOptions *o = transformer_options(c);
    const char *kn = transformer_name(c);
    if ((int)o->attention < ATTENTION_SOFTMAX || (int)o->attention > ATTENTION_NORM)
        FAIL("attention_fn: unknown attention kind %d", (int)o->attention);
    if (!(o->att_dropout >= 0.0f && o->att_dropout < 1.0f))
        FAIL("att_dropout = %g: must lie in [0, 1)", (double)o->att_dropout);
    if (o->mixer_dim < 0) FAIL("mixer_dim = %d: must be >= 0", o->mixer_dim);
    if (c->state_dim % c->num_heads != 0)
        FAIL("state_dim = %d is not divisible by num_heads = %d (%s: q/k head width d_qk/H)", c->state_dim,
             c->num_heads, kn);
    if (o->max_pos_embed < 0) FAIL("max_pos_embed = %d: must be >= 0", o->max_pos_embed);
    if (c->input_dim > 0 && o->max_pos_embed > 0)
        FAIL("max_pos_embed = %d: learned positions belong to the token embedding; the Linear input "
             "layer of float inputs (input_dim = %d) has none, as in the reference (set max_pos_embed: 0)",
             o->max_pos_embed, c->input_dim);
    if (o->dim_conv < 0) FAIL("dim_conv = %d: must be >= 0", o->dim_conv);
    if (o->mixer != MIXER_NONE && o->mixer != MIXER_MLP) FAIL("mixer: unknown mixer kind %d", (int)o->mixer);
    if (o->mixer == MIXER_MLP && o->mixer_dim <= 0)
        FAIL("mixer_dim = %d: mixer 'mlp' needs mixer_dim > 0", o->mixer_dim);
    if (c->head == HEAD_CLASSIFIER && o->mixer_dim == 0 && c->output_dim != c->hidden_dim)
        FAIL("output_dim = %d: a classifier head without MLP (mixer_dim 0) outputs the pooled "
             "features, so output_dim must equal hidden_dim = %d",
             c->output_dim, c->hidden_dim);
    if (o->attention == ATTENTION_NORM) {
        if ((int)o->norm_fn < NORM_FN_EXP || (int)o->norm_fn > NORM_FN_SIGMOID)
            FAIL("norm_fn: unknown normalisation function %d", (int)o->norm_fn);
        if (o->approx_fn != APPROX_NONE && o->approx_fn != APPROX_ELU)
            FAIL("approx_fn: unknown feature map %d", (int)o->approx_fn);
    }
    return 0;
}

/* Attention eigenvalues: one per step from t to t+1, per head. */
static SpectraShape transformer_spectra_shape(const ModelConfig *c, int L)
{
    return (SpectraShape){.kind = SPECTRA_PER_STEP, .layers = c->num_layers, .systems = c->num_heads,
                          .steps = L > 1 ? L - 1 : 0, .complex = false};
}

static int transformer_check_length(const ModelConfig *c, int L, char *err, size_t errlen)
{
    const int P = transformer_options(c)->max_pos_embed;
    if (P > 0 && L > P) FAIL("max_pos_embed = %d is smaller than the sequence length %d", P, L);
    return 0;
}

const ModelFamily transformer_family = {
    .layer = "transformer",
    .variant_key = "model.attention_fn",
    .names = ATTENTION_FNS,
    .float_input_key = "model.embedding",
    .register_keys = transformer_register_keys,
    .from_config = transformer_from_config,
    .name = transformer_name,
    .check = transformer_check,
    .create = transformer_create,
    .free = transformer_free,
    .init = transformer_init,
    .forward = transformer_forward,
    .spectra_paper = transformer_spectra_paper,
    .spectra_shape = transformer_spectra_shape,
    .check_length = transformer_check_length,
};
