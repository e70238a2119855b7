/* The model's input layer (see encoder.h). */
#include "encoder.h"

#include <stdio.h>
#include <stdlib.h>

#include "../src/init.h"
#include "../src/ops.h"

static Param *declare(ParamSet *ps, const char *name, int ndim, int s0, int s1, char *err, size_t errlen)
{
    Param *p = paramset_add(ps, name, ndim, (int[]){s0, s1});
    if (!p && err && errlen) snprintf(err, errlen, "cannot declare parameter %s", name);
    return p;
}

int encoder_declare(Encoder *e, ParamSet *ps, const ModelConfig *c, int positions, char *err, size_t errlen)
{
    *e = (Encoder){0};
    const int d = c->hidden_dim;
    if (c->input_dim > 0) {
        if (!(e->lin_w = declare(ps, "encoder.weight", 2, d, c->input_dim, err, errlen))) return -1;
        if (!(e->lin_b = declare(ps, "encoder.bias", 1, d, 0, err, errlen))) return -1;
        return 0;
    }
    if (!(e->word_emb = declare(ps, "encoder.word_embeddings.weight", 2, c->vocab_size, d, err, errlen)))
        return -1;
    if (positions > 0 &&
        !(e->pos_emb = declare(ps, "encoder.position_embeddings.weight", 2, positions, d, err, errlen)))
        return -1;
    return 0;
}

void encoder_init(const Encoder *e, Rng *r)
{
    if (e->lin_w) {
        init_linear_default(e->lin_w, e->lin_b, r);
        return;
    }
    init_param_normal(e->word_emb, r, 0.0, 1.0);
    if (e->pos_emb) init_param_normal(e->pos_emb, r, 0.0, 1.0);
}

Tensor *encoder_forward(const Encoder *e, Graph *g, const ModelBatch *bt)
{
    const int B = bt->B, L = bt->L;
    if (e->lin_w) {
        if (!bt->features) {
            fprintf(stderr, "seqeig: internal error: a model with a Linear input layer got a batch without features\n");
            abort();
        }
        const int shape[3] = {B, L, e->lin_w->t.shape[1]};
        /* The wrapped features are read only (no gradient flows into them). */
        Tensor *f = tensor_wrap(g, (float *)bt->features, 3, shape);
        return op_linear(g, f, &e->lin_w->t, &e->lin_b->t);
    }
    const int shape_bl[2] = {B, L};
    Tensor *x = op_embedding(g, &e->word_emb->t, bt->tokens, 2, shape_bl);
    if (e->pos_emb) {
        int32_t *pos = graph_scratch(g, (size_t)B * L * sizeof *pos); /* lives until backward */
        for (int b = 0; b < B; b++)
            for (int s = 0; s < L; s++) pos[(size_t)b * L + s] = s;
        x = op_add(g, x, op_embedding(g, &e->pos_emb->t, pos, 2, shape_bl));
    }
    return x;
}
