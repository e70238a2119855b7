/* AdamW over the flat buffers of a ParamSet (decoupled weight decay,
 * Loshchilov & Hutter), reproducing torch.optim.AdamW (PyTorch 1.13,
 * amsgrad=False, maximize=False, single-tensor path) float op for float op.
 *
 * One update, step t = 1, 2, ... (t counts updates done, after increment):
 *
 *     p  = p * (1 - lr*wd)                               (weight decay first)
 *     m  = fma(1-b1, g, m*b1)                            m.mul_(b1).add_(g, alpha=1-b1)
 *     v  = fma((1-b2)*g, g, v*b2)                        v.mul_(b2).addcmul_(g, g, value=1-b2)
 *     denom = sqrt(v) / sqrt(1 - b2^t) + eps
 *     p  = p + (-(lr / (1 - b1^t)) * m) / denom          p.addcdiv_(m, denom, value=-step_size)
 *
 * Scalars (1 - lr*wd, lr/(1-b1^t), sqrt(1-b2^t), ...) are computed in double
 * as Python does and rounded to float once, as torch does when it applies
 * a Python number to a float32 tensor.  The two fused multiply-adds are
 * what torch's AVX2 CPU kernels execute (the add-with-alpha kernel calls
 * fmadd; addcmul is contracted by the compiler); with them the update is
 * bit-identical to torch on this machine (see tests/test_adamw.c).  The
 * scalar kernel uses fmaf() for the same two operations, so the scalar and
 * AVX2 kernels agree bit for bit as well.
 *
 * Weight decay applies to ALL parameters (as in the reference study).
 * Work is split in fixed blocks (src/ops/parallel.h); every element goes
 * through identical arithmetic, so the result is the same for any thread
 * count.  The padding floats between parameters (zero data and grad) stay
 * exactly zero. */
#ifndef SEQEIG_ADAMW_H
#define SEQEIG_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include "../src/param.h"
#include "../src/simd.h"

typedef struct AdamWConfig {
    double beta1, beta2, eps, weight_decay;
} AdamWConfig;

/* The defaults of torch.optim.AdamW (run configs set weight_decay explicitly). */
#define ADAMW_DEFAULTS ((AdamWConfig){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01})

/* Optimizer state.  A checkpoint saves m[0..n), v[0..n) and t and restores
 * them with adamw_set_state (or by writing the fields directly): the next
 * update is then bit-identical to an uninterrupted run. */
typedef struct AdamW {
    AdamWConfig cfg;
    float *m;      /* first moment (exp_avg), n floats, 64-byte aligned, owned */
    float *v;      /* second moment (exp_avg_sq), same layout */
    size_t n;      /* = ParamSet.total (flat layout incl. padding) */
    int64_t t;     /* updates done so far (torch state['step']) */
} AdamW;

/* The float coefficients of update number t (1-based) at learning rate lr. */
typedef struct AdamWCoeffs {
    float decay;            /* 1 - lr*wd */
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float bc2_sqrt;         /* sqrt(1 - beta2^t) */
    float eps;
    float neg_step_size;    /* -lr / (1 - beta1^t) */
} AdamWCoeffs;

/* Allocate zeroed state for n floats (t = 0).  Returns 0, or -1 (message on
 * stderr) when out of memory. */
int adamw_init(AdamW *opt, size_t n, AdamWConfig cfg);
/* Same for the flat buffers of a finalized ParamSet. */
int adamw_init_params(AdamW *opt, const ParamSet *ps, AdamWConfig cfg);
void adamw_free(AdamW *opt);

/* One update of p[0..n) with gradients g[0..n) (opt->n floats), learning rate lr. */
void adamw_step(AdamW *opt, float *p, const float *g, double lr);
/* One update of every parameter of ps (ps->total must equal opt->n). */
void adamw_step_params(AdamW *opt, ParamSet *ps, double lr);

/* Restore state saved from an optimizer of the same size: copies m and v
 * (n floats each) and sets t.  Returns 0, or -1 if n != opt->n or t < 0. */
int adamw_set_state(AdamW *opt, const float *m, const float *v, size_t n, int64_t t);

AdamWCoeffs adamw_coeffs(const AdamWConfig *cfg, double lr, int64_t t);

/* Kernels: one update of n elements with precomputed coefficients. */
void k_adamw(float *p, const float *g, float *m, float *v, size_t n, const AdamWCoeffs *c);
void k_adamw_scalar(float *p, const float *g, float *m, float *v, size_t n, const AdamWCoeffs *c);
#if SIMD_AVX2
void k_adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, const AdamWCoeffs *c);
#endif

#endif
