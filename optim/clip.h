/* Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_, L2).
 *
 * The norm is computed in double in a fixed order, so it has the same bits
 * for any thread count and for the scalar and AVX2 builds:
 *   - the array is cut into blocks of clip_block_len(n) floats (a multiple
 *     of 8 that depends on n only, at most CLIP_MAX_BLOCKS blocks);
 *   - inside a block, lane j (0..7) sums the squares of elements i = j mod 8
 *     in index order (float*float is exact in double, so FMA or not gives
 *     the same result); the 8 lanes are added in lane order;
 *   - block sums are added in block order, then sqrt.
 * Blocks run in parallel; each block's partial lands in its own slot. */
#ifndef SEQEIG_CLIP_H
#define SEQEIG_CLIP_H

#include <stddef.h>

#include "../src/param.h"
#include "../src/simd.h"

#define CLIP_BLOCK_MIN 8192
#define CLIP_MAX_BLOCKS 512

/* L2 norm of g[0..n). */
double clip_global_norm(const float *g, size_t n);

/* Scale g[0..n) in place so that its L2 norm is at most max_norm (> 0):
 * coef = (float)(max_norm / (norm + 1e-6)); if coef < 1, g *= coef.
 * As in torch, which multiplies by min(coef, 1), this also scales (by a
 * factor within 1e-6 of 1) when norm lies in (max_norm - 1e-6, max_norm].
 * Returns the norm before clipping (inf or NaN if a gradient is; with an
 * infinite norm the gradients become 0 or NaN, as in torch: check it). */
double clip_grad_norm(float *g, size_t n, double max_norm);
/* The same over all gradients of a ParamSet (padding is zero). */
double clip_grad_norm_params(ParamSet *ps, double max_norm);

/* Block length used for n elements (exposed for tests). */
size_t clip_block_len(size_t n);

/* Kernels: sum of squares of one block (fixed lane order, see above). */
double k_sumsq_scalar(const float *g, size_t n);
#if SIMD_AVX2
double k_sumsq_avx2(const float *g, size_t n);
#endif

#endif
