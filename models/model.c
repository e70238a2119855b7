/* Model entry points: the family's hooks behind one interface (model.h). */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int model_create(Model *m, const ModelConfig *cfg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    paramset_init(&m->params);
    if (model_config_check(cfg, err, errlen)) return -1;
    if (cfg->family->create(m, err, errlen)) {
        paramset_free(&m->params);
        m->impl = NULL;
        return -1;
    }
    return 0;
}

void model_free(Model *m)
{
    if (m->impl) m->cfg.family->free(m);
    m->impl = NULL;
    paramset_free(&m->params);
}

void model_init(Model *m, uint64_t seed) { m->cfg.family->init(m, seed); }

Tensor *model_forward(Model *m, Graph *g, const ModelBatch *batch, double *eig)
{
    return m->cfg.family->forward(m, g, batch, eig);
}

SpectraShape model_spectra_shape(const Model *m, int L) { return m->cfg.family->spectra_shape(&m->cfg, L); }

int model_spectra_T(const Model *m, int L) { return model_spectra_shape(m, L).steps; }

void model_spectra_paper(Model *m, Graph *g, const ModelBatch *batch, double *eig)
{
    char err[160];
    if (model_check_length(m, batch->L, err, sizeof err)) {
        fprintf(stderr, "seqeig: internal error: paper spectra: %s\n", err);
        abort();
    }
    const bool grad = g->grad_enabled;
    g->grad_enabled = false; /* no tape, whatever the caller's graph says */
    m->cfg.family->spectra_paper(m, g, batch, eig);
    g->grad_enabled = grad;
}

/* Step index of spectra passes: outside the range of training steps, so a
 * method that runs dropout draws masks no training step uses. */
#define SPECTRA_STEP UINT64_C(0xFFFFFFFF)

void model_eigenvalues(Model *m, Graph *g, const ModelBatch *batch, SpectraMethod method, bool init, double *eig)
{
    if (method == SPECTRA_PAPER) {
        /* The reference analyses its fresh model without model.eval(). */
        graph_begin(g, SPECTRA_STEP, init, false);
        model_spectra_paper(m, g, batch, eig);
        return;
    }
    graph_begin(g, SPECTRA_STEP, false, false); /* dsf: the model as it runs in evaluation */
    model_forward(m, g, batch, eig);
}

int model_check_length(const Model *m, int L, char *err, size_t errlen)
{
    if (L < 1) {
        if (err && errlen) snprintf(err, errlen, "sequence length %d: must be >= 1", L);
        return -1;
    }
    const ModelFamily *f = m->cfg.family;
    return f->check_length ? f->check_length(&m->cfg, L, err, errlen) : 0;
}
