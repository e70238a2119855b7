/* One training/eval step: the activation arena plus the autograd tape.
 *
 * Ops (src/ops/) allocate their outputs with tensor_new and, when any input
 * needs a gradient, append a TapeEntry holding a hand-written backward
 * function.  graph_backward walks the tape in reverse; every backward
 * *accumulates* (+=) into its inputs' gradients, so a tensor used twice
 * receives the sum (a backward that is first to reach a gradient may store
 * instead, see tensor_grad_fresh and tensor_grad_adopt).  Nothing is
 * recorded when grad is disabled (evaluation, spectra), which makes the
 * tape free there. */
#ifndef SEQEIG_GRAPH_H
#define SEQEIG_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "tensor.h"

#define TAPE_MAX_INPUTS 4

struct Graph;
typedef struct TapeEntry TapeEntry;
typedef void (*BackwardFn)(struct Graph *g, TapeEntry *e);

struct TapeEntry {
    BackwardFn backward;
    const char *name;                 /* op name, for debugging */
    Tensor *out;
    Tensor *in[TAPE_MAX_INPUTS];      /* unused slots are NULL */
    void *ctx;                        /* op-specific saved state (arena memory) */
    int iarg[4];                      /* small integer arguments */
    float farg[4];                    /* small float arguments */
    TapeEntry *prev;
};

typedef struct Graph {
    Arena arena;
    TapeEntry *tape;          /* last entry; entries link backwards */
    size_t n_entries;
    bool grad_enabled;        /* record a tape */
    bool training;            /* dropout active */
    uint64_t dropout_seed;    /* key of the dropout stream */
    uint64_t step;            /* step index, part of the dropout counter */
    uint32_t n_dropout;       /* dropout ops issued in this step */
} Graph;

int graph_init(Graph *g, size_t arena_bytes, uint64_t dropout_seed);
void graph_free(Graph *g);

/* Start a step: forget all activations and the tape. */
void graph_begin(Graph *g, uint64_t step, bool training, bool grad_enabled);

/* New uninitialised / zeroed activation tensor in the arena. */
Tensor *tensor_new(Graph *g, int ndim, const int *shape);
Tensor *tensor_zeros(Graph *g, int ndim, const int *shape);
Tensor *tensor_new_like(Graph *g, const Tensor *x);
/* Wrap existing memory (not owned) as a tensor without gradient. */
Tensor *tensor_wrap(Graph *g, float *data, int ndim, const int *shape);
/* View with a new shape and the same number of elements. */
Tensor *tensor_reshape(Graph *g, Tensor *x, int ndim, const int *shape);

/* Scratch memory valid until the next graph_begin. */
void *graph_scratch(Graph *g, size_t bytes);

/* Whether an op with these inputs must be recorded (NULLs are ignored). */
bool graph_wants_grad(const Graph *g, const Tensor *a, const Tensor *b, const Tensor *c,
                      const Tensor *d);

/* Append a tape entry; marks `out` as requiring grad. */
TapeEntry *graph_record(Graph *g, const char *name, BackwardFn fn, Tensor *out, Tensor *a,
                        Tensor *b, Tensor *c, Tensor *d);

/* Gradient buffer of t (zero-filled on first request). NULL if t does not
 * require grad, so backward functions can skip inputs that need nothing. */
float *tensor_grad(Graph *g, Tensor *t);

/* Gradient buffer of t for a backward that can STORE its contribution:
 * when t has no gradient yet, the buffer is allocated without zero-filling
 * and *fresh is set to true: the caller must then write every element
 * (y = v instead of y += v; same values as accumulating into zeros, without
 * the zero-fill pass and the extra read).  Otherwise the existing buffer is
 * returned, *fresh = false, and the caller accumulates.  NULL (and *fresh =
 * false) if t does not require grad. */
float *tensor_grad_fresh(Graph *g, Tensor *t, bool *fresh);

/* Give t the buffer `buf` (t->numel floats) as its gradient if t requires
 * grad and has none yet; returns whether it did.  For backwards whose
 * gradient is the identity (add, add_scalar): `buf` is the op's output
 * gradient, which nothing reads after that backward, so no copy is made. */
bool tensor_grad_adopt(Graph *g, Tensor *t, float *buf);

/* d(loss)/d(loss) = 1 for a 1-element tensor, then run the tape backwards. */
void graph_backward(Graph *g, Tensor *loss);
/* graph_backward, calling observe(ctx, e, false) before and
 * observe(ctx, e, true) after every tape entry whose backward runs (for
 * profilers: bench/model_step.c --profile). */
typedef void (*TapeObserver)(void *ctx, const TapeEntry *e, bool after);
void graph_backward_observed(Graph *g, Tensor *loss, TapeObserver observe, void *ctx);
/* Seed out's gradient with `dout` (out->numel floats) and run the tape
 * backwards; used by gradient checks of ops with non-scalar outputs. */
void graph_backward_from(Graph *g, Tensor *out, const float *dout);

#endif
