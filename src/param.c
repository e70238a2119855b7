#include "param.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARAM_ALIGN_FLOATS 16 /* 64 bytes: every parameter starts on a cache line */

void paramset_init(ParamSet *ps) { memset(ps, 0, sizeof *ps); }

void paramset_free(ParamSet *ps)
{
    for (int i = 0; i < ps->n; i++) free(ps->items[i]);
    free(ps->items);
    free(ps->index);
    free(ps->data);
    free(ps->grad);
    memset(ps, 0, sizeof *ps);
}

/* FNV-1a of a name. */
static size_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (size_t)(h ^ (h >> 32));
}

/* Slot of `name` in the index: where it is, or the empty slot it would take. */
static size_t index_slot(const ParamSet *ps, const char *name)
{
    const size_t mask = (size_t)ps->index_cap - 1;
    size_t i = name_hash(name) & mask;
    while (ps->index[i] >= 0 && strcmp(ps->items[ps->index[i]]->name, name) != 0) i = (i + 1) & mask;
    return i;
}

/* Rebuild the index with room for `need` names at load <= 1/2.  0 or -1. */
static int index_grow(ParamSet *ps, int need)
{
    int cap = 64;
    while (cap < 2 * need) {
        if (cap > (1 << 29)) return -1;
        cap *= 2;
    }
    if (cap <= ps->index_cap) return 0;
    int *idx = malloc((size_t)cap * sizeof *idx);
    if (!idx) return -1;
    for (int i = 0; i < cap; i++) idx[i] = -1;
    free(ps->index);
    ps->index = idx;
    ps->index_cap = cap;
    for (int k = 0; k < ps->n; k++) ps->index[index_slot(ps, ps->items[k]->name)] = k;
    return 0;
}

Param *paramset_find(const ParamSet *ps, const char *name)
{
    if (!ps->index) return NULL;
    const int k = ps->index[index_slot(ps, name)];
    return k >= 0 ? ps->items[k] : NULL;
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
    if (index_grow(ps, ps->n + 1)) {
        free(p);
        return NULL;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    p->t.requires_grad = true;
    ps->index[index_slot(ps, p->name)] = ps->n;
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
