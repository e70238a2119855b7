/* Dropout masks on tiles of the softmax-attention probability matrix.
 *
 * The fused softmax attention (attn_softmax.h) never stores the (B, H, L, L)
 * probability matrix A, so its dropout mask is generated tile by tile, in
 * the forward and again in the backward.  Element i of the flattened matrix,
 * i = ((b*H + h)*L + t)*L + s, is kept iff
 *
 *     rng_uniform_at(key, step, op, i) >= p          (src/rng.h)
 *
 * i.e. the mask op_dropout (src/ops/dropout.c) would draw for a (B, H, L, L)
 * tensor with the same (key, step, op): word i mod 4 of the Philox4x32-10
 * block with counter {i/4 (64 bits, low word first), step, op}, turned into a
 * 24-bit uniform.  Kept elements are scaled by 1/(1-p).  The mask is a pure
 * function of these numbers: no thread count or tiling changes it. */
#ifndef SEQEIG_ATTN_DROPOUT_H
#define SEQEIG_ATTN_DROPOUT_H

#include <stdint.h>

#include "../simd.h"

typedef struct AttnDropout {
    uint64_t key;   /* g->dropout_seed */
    uint32_t step;  /* g->step (low 32 bits) */
    uint32_t op;    /* dropout-op index within the step (g->n_dropout) */
    float p;        /* drop probability, 0 < p < 1 */
} AttnDropout;

/* Dropout multipliers of an nq x nk tile: for r < nq and c < nk,
 *
 *     mult[r*ldm + c] = keep(i0 + r*row_step + c) ? 1/(1-p) : 0
 *
 * for the columns c <= r + diag (the causally visible ones, as in the tile
 * kernels of attn_softmax.h); the other columns get 0 without drawing.
 * 1/(1-p) is the float 1.0f / (1.0f - p), as op_dropout's.  The scalar and
 * AVX2 versions give identical bits. */
void attn_drop_mult(const AttnDropout *dr, uint64_t i0, uint64_t row_step, int nq, int nk, int diag,
                    float *mult, int ldm);
void attn_drop_mult_scalar(const AttnDropout *dr, uint64_t i0, uint64_t row_step, int nq, int nk,
                           int diag, float *mult, int ldm);
#if SIMD_AVX2
void attn_drop_mult_avx2(const AttnDropout *dr, uint64_t i0, uint64_t row_step, int nq, int nk,
                         int diag, float *mult, int ldm);
#endif

#endif
