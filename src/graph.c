#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int graph_init(Graph *g, size_t arena_bytes, uint64_t dropout_seed)
{
    memset(g, 0, sizeof *g);
    arena_init(&g->arena, arena_bytes);
    g->dropout_seed = dropout_seed;
    g->grad_enabled = true;
    return 0;
}

void graph_free(Graph *g) { arena_free(&g->arena); }

void graph_begin(Graph *g, uint64_t step, bool training, bool grad_enabled)
{
    arena_reset(&g->arena);
    g->tape = NULL;
    g->n_entries = 0;
    g->step = step;
    g->training = training;
    g->grad_enabled = grad_enabled;
    g->n_dropout = 0;
}

static Tensor *tensor_header(Graph *g, int ndim, const int *shape)
{
    Tensor *t = arena_alloc(&g->arena, sizeof *t);
    memset(t, 0, sizeof *t);
    if (!tensor_set_shape(t, ndim, shape)) {
        fprintf(stderr, "seqeig: internal error: invalid tensor shape (ndim %d)\n", ndim);
        abort();
    }
    return t;
}

Tensor *tensor_new(Graph *g, int ndim, const int *shape)
{
    Tensor *t = tensor_header(g, ndim, shape);
    t->data = arena_alloc(&g->arena, t->numel * sizeof(float));
    return t;
}

Tensor *tensor_zeros(Graph *g, int ndim, const int *shape)
{
    Tensor *t = tensor_header(g, ndim, shape);
    t->data = arena_calloc(&g->arena, t->numel * sizeof(float));
    return t;
}

Tensor *tensor_new_like(Graph *g, const Tensor *x) { return tensor_new(g, x->ndim, x->shape); }

Tensor *tensor_wrap(Graph *g, float *data, int ndim, const int *shape)
{
    Tensor *t = tensor_header(g, ndim, shape);
    t->data = data;
    return t;
}

Tensor *tensor_reshape(Graph *g, Tensor *x, int ndim, const int *shape)
{
    Tensor *t = tensor_header(g, ndim, shape);
    if (t->numel != x->numel) {
        fprintf(stderr, "seqeig: internal error: reshape changes element count (%zu -> %zu)\n",
                x->numel, t->numel);
        abort();
    }
    t->data = x->data;
    t->base = x->base ? x->base : x;
    t->requires_grad = x->requires_grad;
    t->grad = t->base->grad;
    return t;
}

void *graph_scratch(Graph *g, size_t bytes) { return arena_alloc(&g->arena, bytes); }

bool graph_wants_grad(const Graph *g, const Tensor *a, const Tensor *b, const Tensor *c,
                      const Tensor *d)
{
    if (!g->grad_enabled) return false;
    return (a && a->requires_grad) || (b && b->requires_grad) || (c && c->requires_grad) ||
           (d && d->requires_grad);
}

TapeEntry *graph_record(Graph *g, const char *name, BackwardFn fn, Tensor *out, Tensor *a,
                        Tensor *b, Tensor *c, Tensor *d)
{
    TapeEntry *e = arena_calloc(&g->arena, sizeof *e);
    e->backward = fn;
    e->name = name;
    e->out = out;
    e->in[0] = a;
    e->in[1] = b;
    e->in[2] = c;
    e->in[3] = d;
    e->prev = g->tape;
    g->tape = e;
    g->n_entries++;
    out->requires_grad = true;
    return e;
}

float *tensor_grad(Graph *g, Tensor *t)
{
    if (!t || !t->requires_grad) return NULL;
    if (t->grad) return t->grad;
    if (t->base) {
        t->grad = tensor_grad(g, t->base);
        return t->grad;
    }
    t->grad = arena_calloc(&g->arena, t->numel * sizeof(float));
    return t->grad;
}

float *tensor_grad_fresh(Graph *g, Tensor *t, bool *fresh)
{
    *fresh = false;
    if (!t || !t->requires_grad) return NULL;
    Tensor *owner = t->base ? t->base : t;
    if (!owner->grad) {
        owner->grad = arena_alloc(&g->arena, owner->numel * sizeof(float));
        *fresh = true;
    }
    t->grad = owner->grad;
    return t->grad;
}

bool tensor_grad_adopt(Graph *g, Tensor *t, float *buf)
{
    (void)g;
    if (!t || !t->requires_grad) return false;
    Tensor *owner = t->base ? t->base : t;
    if (owner->grad) return false;
    owner->grad = buf;
    t->grad = buf;
    return true;
}

static void run_tape(Graph *g, TapeObserver observe, void *ctx)
{
    for (TapeEntry *e = g->tape; e; e = e->prev) {
        /* an output nobody differentiated has no gradient to pass on */
        Tensor *o = e->out;
        if (!o->grad && !(o->base && o->base->grad)) continue;
        if (observe) observe(ctx, e, false);
        tensor_grad(g, o);
        e->backward(g, e);
        if (observe) observe(ctx, e, true);
    }
}

void graph_backward(Graph *g, Tensor *loss) { graph_backward_observed(g, loss, NULL, NULL); }

void graph_backward_observed(Graph *g, Tensor *loss, TapeObserver observe, void *ctx)
{
    if (loss->numel != 1) {
        fprintf(stderr, "seqeig: internal error: backward from a non-scalar tensor\n");
        abort();
    }
    float *dl = tensor_grad(g, loss);
    if (!dl) return; /* nothing in the graph needs a gradient */
    dl[0] += 1.0f;
    run_tape(g, observe, ctx);
}

void graph_backward_from(Graph *g, Tensor *out, const float *dout)
{
    float *d = tensor_grad(g, out);
    if (!d) return;
    for (size_t i = 0; i < out->numel; i++) d[i] += dout[i];
    run_tape(g, NULL, NULL);
}
