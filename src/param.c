#include "param.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARAM_ALIGN_FLOATS 16 /* 64 bytes: every parameter starts on a cache line */

void paramset_init(ParamSet *ps) { memset(ps, 0, sizeof *ps); }

void paramset_free(ParamSet *ps)
{
    for (int i = 0; i < ps->n; i++) free(ps->items[i]);
    free(ps->items);
    free(ps->data);
    free(ps->grad);
    memset(ps, 0, sizeof *ps);
}

Param *paramset_find(const ParamSet *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->items[i]->name, name) == 0) return ps->items[i];
    return NULL;
}

Param *paramset_add(ParamSet *ps, const char *name, int ndim, const int *shape)
{
    if (ps->finalized) {
        fprintf(stderr, "seqeig: internal error: parameter '%s' added after finalize\n", name);
        return NULL;
    }
    if (strlen(name) >= PARAM_NAME_MAX || paramset_find(ps, name)) {
        fprintf(stderr, "seqeig: internal error: bad or duplicate parameter name '%s'\n", name);
        return NULL;
    }
    Param *p = calloc(1, sizeof *p);
    if (!p || !tensor_set_shape(&p->t, ndim, shape)) {
        fprintf(stderr, "seqeig: internal error: bad shape for parameter '%s'\n", name);
        free(p);
        return NULL;
    }
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 32;
        Param **items = realloc(ps->items, (size_t)cap * sizeof *items);
        if (!items) {
            free(p);
            return NULL;
        }
        ps->items = items;
        ps->cap = cap;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    p->t.requires_grad = true;
    ps->items[ps->n++] = p;
    return p;
}

int paramset_finalize(ParamSet *ps)
{
    size_t total = 0;
    for (int i = 0; i < ps->n; i++) {
        ps->items[i]->offset = total;
        total += (ps->items[i]->t.numel + PARAM_ALIGN_FLOATS - 1) / PARAM_ALIGN_FLOATS *
                 PARAM_ALIGN_FLOATS;
    }
    if (total == 0) total = PARAM_ALIGN_FLOATS;
    void *d = NULL, *g = NULL;
    if (posix_memalign(&d, 64, total * sizeof(float)) ||
        posix_memalign(&g, 64, total * sizeof(float))) {
        free(d);
        fprintf(stderr, "seqeig: out of memory allocating %zu parameters\n", total);
        return -1;
    }
    memset(d, 0, total * sizeof(float));
    memset(g, 0, total * sizeof(float));
    ps->data = d;
    ps->grad = g;
    ps->total = total;
    for (int i = 0; i < ps->n; i++) {
        Param *p = ps->items[i];
        p->t.data = ps->data + p->offset;
        p->t.grad = ps->grad + p->offset;
    }
    ps->finalized = 1;
    return 0;
}

void paramset_zero_grad(ParamSet *ps) { memset(ps->grad, 0, ps->total * sizeof(float)); }

size_t paramset_count(const ParamSet *ps)
{
    size_t n = 0;
    for (int i = 0; i < ps->n; i++) n += ps->items[i]->t.numel;
    return n;
}
