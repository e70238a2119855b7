/* Differentiable ops.  Each returns a new activation tensor in the step
 * arena and, when an input requires grad, records a hand-written backward
 * on the tape (see graph.h).  Shapes are checked; a mismatch is a
 * programming error and aborts with the op name and the shapes.
 *
 * Conventions: "rows" are all leading dimensions flattened, "cols" the last
 * dimension.  Weights use PyTorch layouts (Linear weight is (out, in)).
 * Integer inputs (token ids, labels, row indices) are plain int32 arrays
 * that must stay valid until backward has run.
 *
 * One file per op family under src/ops/; each keeps a scalar kernel and,
 * when built with AVX2+FMA, a vector kernel (src/ops/kernels.h). */
#ifndef SEQEIG_OPS_H
#define SEQEIG_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "graph.h"

#define IGNORE_INDEX (-100)

/* ---- element-wise arithmetic (ops/arith.c) ---- */
Tensor *op_add(Graph *g, Tensor *a, Tensor *b);             /* same shapes */
Tensor *op_mul(Graph *g, Tensor *a, Tensor *b);             /* same shapes */
Tensor *op_scale(Graph *g, Tensor *x, float s);             /* s * x */
Tensor *op_add_scalar(Graph *g, Tensor *x, float c);        /* x + c */

/* ---- activations (ops/activation.c) ---- */
Tensor *op_exp(Graph *g, Tensor *x);
Tensor *op_gelu(Graph *g, Tensor *x);                       /* exact: 0.5 x (1 + erf(x/sqrt2)) */
Tensor *op_silu(Graph *g, Tensor *x);                       /* x * sigmoid(x) */
Tensor *op_elu(Graph *g, Tensor *x);                        /* alpha = 1 */
Tensor *op_softplus(Graph *g, Tensor *x);                   /* log(1+e^x); x > 20 -> x (PyTorch) */
Tensor *op_sigmoid(Graph *g, Tensor *x);
Tensor *op_relu(Graph *g, Tensor *x);
/* s * (elu(x[..., c0:c0+C]) + 1): the linear-attention feature map on a
 * column window of x, the values of op_scale(op_add_scalar(op_elu(
 * op_slice_cols(x, c0, C)), 1), s) (no scale op when s = 1) without the
 * copies and intermediate tensors. */
Tensor *op_elu1_cols(Graph *g, Tensor *x, int c0, int C, float s);

/* ---- linear algebra (ops/linear.c), OpenBLAS sgemm ---- */
/* y[..., out] = x[..., in] W^T + b, W (out, in), b (out) or NULL. */
Tensor *op_linear(Graph *g, Tensor *x, Tensor *W, Tensor *b);
/* Batched matrix product over all leading dims: a (..., m, k) (or
 * (..., k, m) if ta), b (..., k, n) (or (..., n, k) if tb) -> (..., m, n).
 * Leading dims of a and b must match. */
Tensor *op_bmm(Graph *g, Tensor *a, Tensor *b, bool ta, bool tb);

/* ---- normalisation and probabilities ---- */
/* Layer norm over the last dim (ops/layernorm.c); gamma, beta (cols). */
Tensor *op_layernorm(Graph *g, Tensor *x, Tensor *gamma, Tensor *beta, float eps);
/* Softmax over the last dim (ops/softmax.c). */
Tensor *op_softmax(Graph *g, Tensor *x);

typedef struct XentStats {
    int n_valid;     /* rows whose label != IGNORE_INDEX */
    int n_correct;   /* of those, rows whose argmax equals the label */
    double loss_sum; /* sum of per-row losses (float64) */
} XentStats;
/* Fused log-softmax + negative log-likelihood (ops/cross_entropy.c).
 * logits (N, V), labels (N) with IGNORE_INDEX rows skipped.  Returns a
 * 1-element tensor: mean loss over valid rows (0 if none).  `stats` may be
 * NULL.  Feed it only the labelled rows (op_gather_rows) to skip the
 * vocabulary-sized work elsewhere. */
Tensor *op_cross_entropy(Graph *g, Tensor *logits, const int32_t *labels, XentStats *stats);

/* ---- indexing (ops/index.c) ---- */
/* Embedding lookup: W (V, d), ids of shape `shape` (ndim <= 3) -> shape + (d). */
Tensor *op_embedding(Graph *g, Tensor *W, const int32_t *ids, int ndim, const int *shape);
/* Select rows of x viewed as (rows, cols): out (n, cols), out[i] = x[rows[i]]. */
Tensor *op_gather_rows(Graph *g, Tensor *x, const int32_t *rows, int n);
/* Mean over time: x (B, L, d) -> (B, d).  mask (B, L) of 0/1 or NULL; with a
 * mask the mean runs over positions with mask 1 only. */
Tensor *op_mean_time(Graph *g, Tensor *x, const float *mask);
/* Copy of columns [start, start+len) of the last dim. */
Tensor *op_slice_cols(Graph *g, Tensor *x, int start, int len);

/* ---- broadcasting (ops/broadcast.c) ---- */
/* x (rows, C) with a vector v (C) broadcast over rows: x + v, x * v. */
Tensor *op_add_cols(Graph *g, Tensor *x, Tensor *v);
Tensor *op_mul_cols(Graph *g, Tensor *x, Tensor *v);
/* Per-head scaling: x (rows, H*P), s (rows, H) or s (H) (broadcast over
 * rows); y[r, h*P + p] = x[r, h*P + p] * s[r, h].  H = s's last dim. */
Tensor *op_mul_heads(Graph *g, Tensor *x, Tensor *s);

/* ---- sequence ops ---- */
/* Causal depthwise conv along time (ops/conv1d.c): x (B, L, C), w with C*K
 * elements laid out (C, K) (PyTorch (C, 1, K)), b (C) or NULL.
 * y[b,t,c] = b[c] + sum_j w[c,j] x[b, t-K+1+j, c] (zero before t=0). */
Tensor *op_conv1d_causal(Graph *g, Tensor *x, Tensor *w, Tensor *b);
/* SiLU of the causal conv of the column window [c0, c0 + C) of x (B, L,
 * cols) (ops/conv1d.c): the values of op_silu(op_conv1d_causal(
 * op_slice_cols(x, c0, C), w, b)) with no slice copy and no stored conv
 * output (the backward recomputes it); w C*K elements, b (C) or NULL. */
Tensor *op_conv1d_silu(Graph *g, Tensor *x, int c0, int C, Tensor *w, Tensor *b);
/* The same with the output channels split into n_parts (1..4) tensors
 * outs[p] (B, L, widths[p]), C = sum of widths: the values of op_slice_cols
 * on op_conv1d_silu's output, without the copies. */
void op_conv1d_silu_split(Graph *g, Tensor *x, int c0, int n_parts, const int *widths, Tensor *w, Tensor *b,
                          Tensor **outs);
/* GLU (ops/glu.c): u (..., 2d) = [a | b] -> a * sigmoid(b), (..., d). */
Tensor *op_glu(Graph *g, Tensor *u);
/* Inverted dropout (ops/dropout.c): identity when !g->training or p == 0.
 * The mask is a pure function of (dropout seed, step, op index in step,
 * element), so it is regenerated in backward and never stored. */
Tensor *op_dropout(Graph *g, Tensor *x, float p);

/* Abort with "seqeig: <op>: <what>" and the shapes involved. */
_Noreturn void op_shape_error(const char *op, const char *what, const Tensor *a, const Tensor *b);

#endif
