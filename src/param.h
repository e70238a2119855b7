/* Trainable parameters: named tensors in one flat float32 allocation.
 *
 * Models declare parameters with paramset_add (name + shape), then call
 * paramset_finalize once, which allocates the flat `data` and `grad`
 * buffers and points every Param's tensor into them.  The flat layout lets
 * the optimizer, gradient clipping and checkpointing run as plain loops. */
#ifndef SEQEIG_PARAM_H
#define SEQEIG_PARAM_H

#include <stddef.h>

#include "tensor.h"

#define PARAM_NAME_MAX 96

typedef struct Param {
    char name[PARAM_NAME_MAX];
    Tensor t;          /* data/grad point into the ParamSet's flat buffers */
    size_t offset;     /* element offset in the flat buffers */
} Param;

typedef struct ParamSet {
    Param **items;
    int n, cap;
    int *index;        /* open-addressing hash of names -> item, index_cap slots (-1 empty) */
    int index_cap;
    float *data;       /* flat values, 64-byte aligned */
    float *grad;       /* flat gradients, same layout */
    size_t total;      /* floats in the flat buffers (with alignment padding) */
    int finalized;
} ParamSet;

void paramset_init(ParamSet *ps);
void paramset_free(ParamSet *ps);

/* Declare a parameter; returns NULL (and prints why) on a duplicate name or
 * bad shape.  Pointers stay valid for the lifetime of the set. */
Param *paramset_add(ParamSet *ps, const char *name, int ndim, const int *shape);

/* Allocate the flat buffers (zeroed); no paramset_add afterwards. */
int paramset_finalize(ParamSet *ps);

/* The parameter named `name`, or NULL; constant time (hashed names). */
Param *paramset_find(const ParamSet *ps, const char *name);
void paramset_zero_grad(ParamSet *ps);
/* Number of real parameters (no padding). */
size_t paramset_count(const ParamSet *ps);

#endif
