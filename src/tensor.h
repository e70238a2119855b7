/* Dense float32 tensors, row-major, up to TENSOR_MAX_DIMS dimensions.
 *
 * A Tensor never owns its memory: activations point into the step arena
 * (see graph.h), parameters into the flat buffers of a ParamSet.  `grad`
 * stays NULL until a backward pass needs it.  A reshape view shares data
 * with its `base` and forwards gradient requests to it. */
#ifndef SEQEIG_TENSOR_H
#define SEQEIG_TENSOR_H

#include <stdbool.h>
#include <stddef.h>

#define TENSOR_MAX_DIMS 4

typedef struct Tensor {
    float *data;
    float *grad;             /* same shape as data, or NULL */
    struct Tensor *base;     /* non-NULL for reshape views */
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    size_t numel;
    bool requires_grad;      /* gradient flows into this tensor */
} Tensor;

/* Fill shape/ndim/numel; returns false if ndim or a dimension is invalid. */
bool tensor_set_shape(Tensor *t, int ndim, const int *shape);

/* Size of the last dimension, and the number of rows (all other dims). */
static inline int tensor_cols(const Tensor *t) { return t->shape[t->ndim - 1]; }
static inline size_t tensor_rows(const Tensor *t) { return t->numel / (size_t)t->shape[t->ndim - 1]; }

bool tensor_same_shape(const Tensor *a, const Tensor *b);

/* "(2, 7, 8)" into buf; returns buf. */
const char *tensor_shape_str(const Tensor *t, char *buf, size_t n);

#endif
