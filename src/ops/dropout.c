/* Inverted dropout with a regenerated mask.
 *
 * Element i of the op's input is kept iff u_i >= p, where u_i is the 24-bit
 * uniform rng_uniform_at(key, step, op, i) (src/rng.h): word (i mod 4) of
 * the Philox4x32-10 block with counter {i/4, step, op}, so one Philox call
 * serves four consecutive elements.  key = g->dropout_seed, step = g->step
 * (low 32 bits), op = index of the dropout op within the step.  The mask is
 * therefore a pure function of those numbers: backward recomputes it
 * instead of storing it, and any split of the elements between threads
 * gives the same mask.  Kept elements are scaled by 1/(1-p).
 *
 * The AVX2 kernel runs Philox on 16 counters at once (64 elements) and
 * produces bit-for-bit the words of the scalar generator. */
#include <stdio.h>
#include <stdlib.h>

#include "../ops.h"
#include "../philox_avx2.h"
#include "../rng.h"
#include "k_seq.h"

static inline float keep_scale(float p) { return 1.0f / (1.0f - p); }

/* ---------------------------------------------------------------- scalar */

/* Elements [off, off+len) of the tensor; off is a multiple of 4. */
static void dropout_block_scalar(const float *in, float *out, size_t off, size_t len, int acc,
                                 const uint32_t key[2], uint32_t step, uint32_t op, float p)
{
    const float scale = keep_scale(p);
    for (size_t i0 = off; i0 < off + len; i0 += 4) {
        uint64_t blk = i0 >> 2;
        uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), step, op}, w[4];
        philox4x32_10(ctr, key, w);
        for (size_t k = 0; k < 4 && i0 + k < off + len; k++) {
            float u = (float)(w[k] >> 8) * 0x1.0p-24f;
            float v = u >= p ? in[i0 + k] * scale : 0.0f;
            if (acc)
                out[i0 + k] += v;
            else
                out[i0 + k] = v;
        }
    }
}

void k_dropout_fwd_scalar(const float *x, float *y, size_t n, uint64_t key, uint32_t step,
                          uint32_t op, float p)
{
    const uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    PARALLEL_BLOCKS(n, dropout_block_scalar(x, y, off, len, 0, k, step, op, p));
}

void k_dropout_bwd_scalar(const float *dy, float *dx, size_t n, uint64_t key, uint32_t step,
                          uint32_t op, float p)
{
    const uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    PARALLEL_BLOCKS(n, dropout_block_scalar(dy, dx, off, len, 1, k, step, op, p));
}

/* ------------------------------------------------------------------ AVX2 */

#if SIMD_AVX2
/* Philox blocks for the 16 counters blk0 .. blk0+15 (words 2, 3 = step,
 * op).  blk0 must be a multiple of 16, so the low counter word never wraps
 * inside the group.  e[q] holds the words of elements 4*blk0 + 8q ..
 * 4*blk0 + 8q + 7 (q < 8). */
static inline void philox16(uint64_t blk0, uint32_t step, uint32_t op, const uint32_t key[2],
                            __m256i e[8])
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i a0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)blk0), idx);
    const __m256i b0 = _mm256_add_epi32(a0, _mm256_set1_epi32(8));
    const __m256i hi = _mm256_set1_epi32((int)(uint32_t)(blk0 >> 32));
    philox16_avx2(a0, hi, b0, hi, step, op, key, e);
}

_Static_assert(KERNEL_BLOCK % 64 == 0, "dropout AVX2 blocks must start at a multiple of 64 elements");

/* Elements [off, off+len); off is a multiple of 64 (KERNEL_BLOCK is). */
static void dropout_block_avx2(const float *in, float *out, size_t off, size_t len, int acc,
                               const uint32_t key[2], uint32_t step, uint32_t op, float p)
{
    const __m256 vp = _mm256_set1_ps(p), vs = _mm256_set1_ps(keep_scale(p));
    const __m256 inv24 = _mm256_set1_ps(0x1.0p-24f);
    for (size_t i0 = off; i0 < off + len; i0 += 64) {
        __m256i e[8];
        philox16(i0 >> 2, step, op, key, e);
        for (int q = 0; q < 8; q++) {
            size_t i = i0 + 8 * (size_t)q;
            if (i >= off + len) break;
            __m256i m = simd_tail_mask(off + len - i < 8 ? off + len - i : 8);
            __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(e[q], 8)), inv24);
            __m256 keep = _mm256_cmp_ps(u, vp, _CMP_GE_OQ);
            __m256 v = _mm256_and_ps(keep, _mm256_mul_ps(_mm256_maskload_ps(in + i, m), vs));
            if (acc) v = _mm256_add_ps(_mm256_maskload_ps(out + i, m), v);
            _mm256_maskstore_ps(out + i, m, v);
        }
    }
}

void k_dropout_fwd_avx2(const float *x, float *y, size_t n, uint64_t key, uint32_t step,
                        uint32_t op, float p)
{
    const uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    PARALLEL_BLOCKS(n, dropout_block_avx2(x, y, off, len, 0, k, step, op, p));
}

void k_dropout_bwd_avx2(const float *dy, float *dx, size_t n, uint64_t key, uint32_t step,
                        uint32_t op, float p)
{
    const uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    PARALLEL_BLOCKS(n, dropout_block_avx2(dy, dx, off, len, 1, k, step, op, p));
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void k_dropout_fwd(const float *x, float *y, size_t n, uint64_t key, uint32_t step, uint32_t op,
                   float p)
{
    DISPATCH(k_dropout_fwd, x, y, n, key, step, op, p);
}
void k_dropout_bwd(const float *dy, float *dx, size_t n, uint64_t key, uint32_t step,
                   uint32_t op, float p)
{
    DISPATCH(k_dropout_bwd, dy, dx, n, key, step, op, p);
}

/* -------------------------------------------------------------------- op */

typedef struct DropoutCtx {
    uint64_t key;
    uint32_t step, op;
    float p;
} DropoutCtx;

static void dropout_backward(Graph *g, TapeEntry *e)
{
    const DropoutCtx *c = e->ctx;
    float *dx = tensor_grad(g, e->in[0]);
    if (dx) k_dropout_bwd(e->out->grad, dx, e->out->numel, c->key, c->step, c->op, c->p);
}

Tensor *op_dropout(Graph *g, Tensor *x, float p)
{
    if (!(p >= 0.0f && p < 1.0f)) {
        fprintf(stderr, "seqeig: dropout: probability p = %g must be in [0, 1)\n", (double)p);
        abort();
    }
    if (!g->training) return x;
    /* every dropout op in a training step takes an index, even with p = 0,
     * so the masks of later ops do not depend on earlier ops' p */
    const uint32_t op = g->n_dropout++;
    if (p == 0.0f) return x;
    const uint64_t key = g->dropout_seed;
    const uint32_t step = (uint32_t)g->step;
    Tensor *y = tensor_new_like(g, x);
    k_dropout_fwd(x->data, y->data, x->numel, key, step, op, p);
    if (graph_wants_grad(g, x, NULL, NULL, NULL)) {
        TapeEntry *e = graph_record(g, "dropout", dropout_backward, y, x, NULL, NULL, NULL);
        DropoutCtx *c = graph_scratch(g, sizeof *c);
        *c = (DropoutCtx){.key = key, .step = step, .op = op, .p = p};
        e->ctx = c;
    }
    return y;
}
