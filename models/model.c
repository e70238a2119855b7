/* Model entry points: dispatch to the transformer family (transformer.c,
 * attention.c) or to Mamba-2 (mamba2.c).  See model.h. */
#include "model.h"

#include <stdio.h>
#include <string.h>

#include "mamba2.h"
#include "transformer.h"

int model_create(Model *m, const ModelConfig *cfg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    paramset_init(&m->params);
    if (model_config_check(cfg, err, errlen)) return -1;
    int rc = cfg->kind == MODEL_MAMBA2 ? mamba2_create(m, err, errlen) : transformer_create(m, err, errlen);
    if (rc) {
        paramset_free(&m->params);
        m->impl = NULL;
        return -1;
    }
    return 0;
}

void model_free(Model *m)
{
    if (m->impl) {
        if (m->cfg.kind == MODEL_MAMBA2)
            mamba2_free(m);
        else
            transformer_free(m);
    }
    m->impl = NULL;
    paramset_free(&m->params);
}

void model_init(Model *m, uint64_t seed)
{
    if (m->cfg.kind == MODEL_MAMBA2)
        mamba2_init(m, seed);
    else
        transformer_init(m, seed);
}

Tensor *model_forward(Model *m, Graph *g, const ModelBatch *batch, double *eig)
{
    if (m->cfg.kind == MODEL_MAMBA2) return mamba2_forward(m, g, batch, eig);
    return transformer_forward(m, g, batch, eig);
}

Tensor *model_encode(Model *m, Graph *g, const ModelBatch *batch)
{
    if (m->cfg.kind == MODEL_MAMBA2) return mamba2_encode(m, g, batch);
    return transformer_encode(m, g, batch);
}

int spectra_method_parse(const char *name)
{
    if (strcmp(name, "dsf") == 0) return SPECTRA_DSF;
    if (strcmp(name, "paper") == 0) return SPECTRA_PAPER;
    return -1;
}

/* Step index of spectra passes: outside the range of training steps, so a
 * method that runs dropout draws masks no training step uses. */
#define SPECTRA_STEP UINT64_C(0xFFFFFFFF)

void model_spectra(Model *m, Graph *g, const ModelBatch *batch, SpectraMethod method, bool init, double *eig)
{
    if (method == SPECTRA_PAPER) {
        /* The reference analyses its fresh model without model.eval(). */
        graph_begin(g, SPECTRA_STEP, init, false);
        model_spectra_paper(m, g, batch, eig);
        return;
    }
    graph_begin(g, SPECTRA_STEP, false, false); /* dsf: the model as it runs in evaluation */
    (void)init;
    model_forward(m, g, batch, eig);
}

int model_spectra_T(const Model *m, int L)
{
    if (m->cfg.kind == MODEL_MAMBA2) return L;
    return L > 1 ? L - 1 : 0;
}

void model_spectra_valid_steps(const Model *m, const float *mask, int S, int L, int *n_valid)
{
    for (int i = 0; i < S; i++) {
        int n = 0;
        while (n < L && mask[(size_t)i * L + n] != 0.0f) n++;
        n_valid[i] = model_spectra_T(m, n);
    }
}

int model_check_length(const Model *m, int L, char *err, size_t errlen)
{
    if (L < 1) {
        if (err && errlen) snprintf(err, errlen, "sequence length %d: must be >= 1", L);
        return -1;
    }
    if (m->cfg.kind != MODEL_MAMBA2 && m->cfg.max_pos_embed > 0 && L > m->cfg.max_pos_embed) {
        if (err && errlen)
            snprintf(err, errlen, "max_pos_embed = %d is smaller than the sequence length %d",
                     m->cfg.max_pos_embed, L);
        return -1;
    }
    return 0;
}
