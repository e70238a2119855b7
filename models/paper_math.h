/* float32 helpers of the "paper" spectra method (docs/eigenvalues.md),
 * shared by the families' replicas of the reference analysis script.
 * They follow PyTorch's CPU definitions: elu(x) = x > 0 ? x : expm1(x);
 * softplus(x) = x > 20 ? x : log1p(exp(x)); sigmoid(x) = 1 / (1 + exp(-x)). */
#ifndef SEQEIG_MODELS_PAPER_MATH_H
#define SEQEIG_MODELS_PAPER_MATH_H

#include <math.h>

#include "../src/graph.h"
#include "../src/param.h"

/* the script's replacement for a zero normaliser (linear and norm attention) */
#define PAPER_ZERO_SUBST 2e-23

static inline float paper_elu(float x) { return x > 0.0f ? x : expm1f(x); }
static inline float paper_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static inline float paper_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* numpy.nan_to_num on float64: NaN -> 0, +-inf -> +-DBL_MAX */
static inline double paper_nan_to_num(double v)
{
    if (isnan(v)) return 0.0;
    if (isinf(v)) return v > 0 ? 1.7976931348623157e308 : -1.7976931348623157e308;
    return v;
}

/* Rows [row0, row0 + n) of a Linear (W (out, in), b (out) or NULL) applied
 * to x: x W[rows]^T + b[rows], without copying the weights. */
Tensor *paper_linear_rows(Graph *g, Tensor *x, const Param *W, const Param *b, int row0, int n);

#endif
