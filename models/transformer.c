/* Transformer backbone (see transformer.h). */
#include "transformer.h"

#include <stdio.h>
#include <stdlib.h>

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

int transformer_create(Model *m, char *err, size_t errlen)
{
    const ModelConfig *c = &m->cfg;
    const int d = c->hidden_dim, mdim = c->mixer_dim;
    ParamSet *ps = &m->params;
    m->impl = NULL;
    Transformer *t = calloc(1, sizeof *t);
    Block *blocks = t ? calloc((size_t)c->num_layers, sizeof *blocks) : NULL;
    if (!blocks) {
        free(t);
        if (err && errlen) snprintf(err, errlen, "out of memory creating the %s model", model_kind_name(c->kind));
        return -1;
    }
    t->blocks = blocks;
    char name[PARAM_NAME_MAX];
#define DECL(dst, nd, s0, s1, ...)                                  \
    do {                                                            \
        snprintf(name, sizeof name, __VA_ARGS__);                   \
        if (!((dst) = declare(ps, name, nd, s0, s1, err, errlen))) goto fail; \
    } while (0)

    if (encoder_declare(&t->enc, ps, c, c->max_pos_embed, err, errlen)) goto fail;
    for (int i = 0; i < c->num_layers; i++) {
        Block *bl = &blocks[i];
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%d.attention.", i);
        if (attention_declare(&bl->attn, ps, c, prefix, err, errlen)) goto fail;
        if (c->use_gate) {
            DECL(bl->wz_w, 2, d, d, "layers.%d.Wz.weight", i);
            DECL(bl->wz_b, 1, d, 0, "layers.%d.Wz.bias", i);
        }
        if (c->mixer == MIXER_MLP) {
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

void transformer_free(Model *m)
{
    Transformer *t = m->impl;
    if (!t) return;
    free(t->blocks);
    free(t);
    m->impl = NULL;
}

/* Every parameter in declaration order from one stream (docs/parameters.md). */
void transformer_init(Model *m, uint64_t seed)
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
    Tensor *z = bl->wz_w ? op_linear(g, x, &bl->wz_w->t, &bl->wz_b->t) : NULL;
    Tensor *att = attention_forward(&bl->attn, c, g, layer_norm(g, x, bl->norm_w, bl->norm_b), eig,
                                    eig_bstride);
    Tensor *h = op_add(g, x, op_dropout(g, att, p));
    Tensor *y;
    if (c->mixer == MIXER_NONE) {
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

Tensor *transformer_forward(Model *m, Graph *g, const ModelBatch *bt, double *eig)
{
    const ModelConfig *c = &m->cfg;
    Transformer *t = m->impl;
    const int B = bt->B, L = bt->L, d = c->hidden_dim;
    if (c->max_pos_embed > 0 && L > c->max_pos_embed) {
        fprintf(stderr, "seqeig: internal error: sequence length %d exceeds max_pos_embed %d "
                        "(model_check_length must reject it)\n", L, c->max_pos_embed);
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
