#include "tensor.h"

#include <stdio.h>

bool tensor_set_shape(Tensor *t, int ndim, const int *shape)
{
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS) return false;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return false;
        t->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    for (int i = ndim; i < TENSOR_MAX_DIMS; i++) t->shape[i] = 1;
    t->ndim = ndim;
    t->numel = n;
    return true;
}

bool tensor_same_shape(const Tensor *a, const Tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *tensor_shape_str(const Tensor *t, char *buf, size_t n)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "(");
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %d" : "%d", t->shape[i]);
    if (off < n) snprintf(buf + off, n - off, ")");
    return buf;
}
