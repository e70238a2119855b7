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
/* Philox4x32-10 constants (Salmon et al., SC'11), as in src/rng.c. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* 32x32 -> 64-bit products of the 8 lanes of a with the constant m. */
static inline void v8_mulhilo(__m256i a, __m256i m, __m256i *lo, __m256i *hi)
{
    __m256i even = _mm256_mul_epu32(a, m);                         /* lanes 0,2,4,6 */
    __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);   /* lanes 1,3,5,7 */
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* 4 x 8 (word, counter) -> element order: counter k's 4 words are
 * elements 4k .. 4k+3, so e[q] receives the words of counters 2q, 2q+1. */
static inline void philox8_to_elements(__m256i c0, __m256i c1, __m256i c2, __m256i c3, __m256i e[4])
{
    __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
    __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2); /* counters 0 | 4 */
    __m256i u1 = _mm256_unpackhi_epi64(t0, t2); /* counters 1 | 5 */
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3); /* counters 2 | 6 */
    __m256i u3 = _mm256_unpackhi_epi64(t1, t3); /* counters 3 | 7 */
    e[0] = _mm256_permute2x128_si256(u0, u1, 0x20);
    e[1] = _mm256_permute2x128_si256(u2, u3, 0x20);
    e[2] = _mm256_permute2x128_si256(u0, u1, 0x31);
    e[3] = _mm256_permute2x128_si256(u2, u3, 0x31);
}

/* Philox blocks for the 16 counters blk0 .. blk0+15 (words 2, 3 = step,
 * op) as two interleaved 8-lane states (independent chains overlap their
 * multiply latencies).  blk0 must be a multiple of 16, so the low counter
 * word never wraps inside the group.  e[q] holds the words of elements
 * 4*blk0 + 8q .. 4*blk0 + 8q + 7 (q < 8). */
static inline void philox16(uint64_t blk0, uint32_t step, uint32_t op, const uint32_t key[2],
                            __m256i e[8])
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i a0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)blk0), idx);
    __m256i b0 = _mm256_add_epi32(a0, _mm256_set1_epi32(8));
    __m256i a1 = _mm256_set1_epi32((int)(uint32_t)(blk0 >> 32)), b1 = a1;
    __m256i a2 = _mm256_set1_epi32((int)step), b2 = a2;
    __m256i a3 = _mm256_set1_epi32((int)op), b3 = a3;
    __m256i k0 = _mm256_set1_epi32((int)key[0]), k1 = _mm256_set1_epi32((int)key[1]);
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    const __m256i w0 = _mm256_set1_epi32((int)PHILOX_W0), w1 = _mm256_set1_epi32((int)PHILOX_W1);
    for (int round = 0; round < 10; round++) {
        __m256i alo0, ahi0, alo1, ahi1, blo0, bhi0, blo1, bhi1;
        v8_mulhilo(a0, m0, &alo0, &ahi0);
        v8_mulhilo(b0, m0, &blo0, &bhi0);
        v8_mulhilo(a2, m1, &alo1, &ahi1);
        v8_mulhilo(b2, m1, &blo1, &bhi1);
        a0 = _mm256_xor_si256(_mm256_xor_si256(ahi1, a1), k0);
        b0 = _mm256_xor_si256(_mm256_xor_si256(bhi1, b1), k0);
        a1 = alo1, b1 = blo1;
        a2 = _mm256_xor_si256(_mm256_xor_si256(ahi0, a3), k1);
        b2 = _mm256_xor_si256(_mm256_xor_si256(bhi0, b3), k1);
        a3 = alo0, b3 = blo0;
        k0 = _mm256_add_epi32(k0, w0);
        k1 = _mm256_add_epi32(k1, w1);
    }
    philox8_to_elements(a0, a1, a2, a3, e);
    philox8_to_elements(b0, b1, b2, b3, e + 4);
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
