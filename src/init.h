/* Parameter initialisers.
 *
 * Every random initialiser draws from the given Rng stream in row-major
 * element order: element i of the array (or of the Param's tensor) takes
 * the i-th draw, one rng_uniform (two 32-bit words) per uniform element and
 * one rng_normal (two rng_uniform) per normal element; init_linear_default
 * draws the whole weight first, then the bias.  So the values depend only
 * on the stream's key and position, never on threads.  Values are computed
 * in double and rounded to float once.
 *
 * PyTorch conventions for fans (torch.nn.init._calculate_fan_in_and_fan_out):
 * for a weight of shape (out, in, k...) fan_in = in * prod(k), fan_out =
 * out * prod(k).  Weights need at least 2 dimensions. */
#ifndef SEQEIG_INIT_H
#define SEQEIG_INIT_H

#include <stddef.h>

#include "param.h"
#include "rng.h"

/* U(lo, hi), lo < hi: results lie in [lo, hi) as floats (a draw that would
 * round up to hi becomes the float just below it). */
void init_uniform(float *x, size_t n, Rng *r, double lo, double hi);
/* N(mean, std^2) (rng_normal, Box-Muller). */
void init_normal(float *x, size_t n, Rng *r, double mean, double std);
void init_constant(float *x, size_t n, float value);
/* n points from start to end inclusive; n == 1 gives start.  Reproduces
 * torch.linspace in float32 bit for bit (checked for n < 200; torch's CPU
 * kernel fills blocks of 16 from a base with 8-lane arange and the rest with
 * fused multiply-adds, both reproduced here), e.g. linspace(4, 9, 4) =
 * [4, 5.6666665, 7.3333335, 9]. */
void init_linspace(float *x, size_t n, double start, double end);

/* Fans of a weight tensor (see above); -1 if it has fewer than 2 dims. */
int init_fans(const Tensor *w, size_t *fan_in, size_t *fan_out);

/* PyTorch nn.Linear / nn.Conv1d default: weight kaiming_uniform_(a=sqrt(5)),
 * i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), then bias (NULL = none) from
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)).  Returns 0, or -1 (message on stderr)
 * if the weight has < 2 dims or the bias size is not shape[0]. */
int init_linear_default(Param *weight, Param *bias, Rng *r);
/* xavier_uniform_(gain): U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)). */
int init_xavier_uniform(Param *weight, Rng *r, double gain);

/* Param conveniences for the array initialisers. */
static inline void init_param_uniform(Param *p, Rng *r, double lo, double hi)
{
    init_uniform(p->t.data, p->t.numel, r, lo, hi);
}
static inline void init_param_normal(Param *p, Rng *r, double mean, double std)
{
    init_normal(p->t.data, p->t.numel, r, mean, std);
}
static inline void init_param_constant(Param *p, float value) { init_constant(p->t.data, p->t.numel, value); }
static inline void init_param_linspace(Param *p, double start, double end)
{
    init_linspace(p->t.data, p->t.numel, start, end);
}

#endif
