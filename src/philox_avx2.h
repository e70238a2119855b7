/* Philox4x32-10 (src/rng.h) on 16 counters at once with AVX2, bit for bit
 * the scalar philox4x32_10: shared by the dropout kernels
 * (src/ops/dropout.c, consecutive counters; src/ops/attn_dropout.c, counters
 * of arbitrary tile elements).
 *
 * Counter j (j < 16) is {w0[j], w1[j], step, op}; the 16 are run as two
 * interleaved 8-lane states so the independent chains overlap their
 * multiply latencies.  out[q] (q < 8) receives words 0..3 of counters 2q
 * and 2q+1 in order, i.e. the 64 words in counter order: word i of the
 * result is word (i mod 4) of counter i / 4. */
#ifndef SEQEIG_PHILOX_AVX2_H
#define SEQEIG_PHILOX_AVX2_H

#include <stdint.h>

#include "simd.h"

#if SIMD_AVX2
/* Philox4x32-10 constants (Salmon et al., SC'11), as in src/rng.c. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Low and high 32 bits of the 8 lane products a * m. */
static inline void philox_mulhilo8(__m256i a, __m256i m, __m256i *lo, __m256i *hi)
{
    const __m256i even = _mm256_mul_epu32(a, m);                       /* lanes 0, 2, 4, 6 */
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m); /* lanes 1, 3, 5, 7 */
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* Words c0..c3 of 8 counters (lane j = counter j) into counter order:
 * e[0] = counters 0, 1; e[1] = 2, 3; e[2] = 4, 5; e[3] = 6, 7. */
static inline void philox_counter_order8(__m256i c0, __m256i c1, __m256i c2, __m256i c3, __m256i e[4])
{
    const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
    const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2); /* counters 0 | 4 */
    const __m256i u1 = _mm256_unpackhi_epi64(t0, t2); /* counters 1 | 5 */
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3); /* counters 2 | 6 */
    const __m256i u3 = _mm256_unpackhi_epi64(t1, t3); /* counters 3 | 7 */
    e[0] = _mm256_permute2x128_si256(u0, u1, 0x20);
    e[1] = _mm256_permute2x128_si256(u2, u3, 0x20);
    e[2] = _mm256_permute2x128_si256(u0, u1, 0x31);
    e[3] = _mm256_permute2x128_si256(u2, u3, 0x31);
}

/* Counters 0..7 have low words a_w0 and high words a_w1, counters 8..15
 * b_w0 and b_w1 (see the top of the file). */
static inline void philox16_avx2(__m256i a_w0, __m256i a_w1, __m256i b_w0, __m256i b_w1, uint32_t step,
                                 uint32_t op, const uint32_t key[2], __m256i out[8])
{
    __m256i a0 = a_w0, a1 = a_w1, b0 = b_w0, b1 = b_w1;
    __m256i a2 = _mm256_set1_epi32((int)step), b2 = a2;
    __m256i a3 = _mm256_set1_epi32((int)op), b3 = a3;
    __m256i k0 = _mm256_set1_epi32((int)key[0]), k1 = _mm256_set1_epi32((int)key[1]);
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    const __m256i w0 = _mm256_set1_epi32((int)PHILOX_W0), w1 = _mm256_set1_epi32((int)PHILOX_W1);
    for (int round = 0; round < 10; round++) {
        __m256i alo0, ahi0, alo1, ahi1, blo0, bhi0, blo1, bhi1;
        philox_mulhilo8(a0, m0, &alo0, &ahi0);
        philox_mulhilo8(b0, m0, &blo0, &bhi0);
        philox_mulhilo8(a2, m1, &alo1, &ahi1);
        philox_mulhilo8(b2, m1, &blo1, &bhi1);
        a0 = _mm256_xor_si256(_mm256_xor_si256(ahi1, a1), k0);
        b0 = _mm256_xor_si256(_mm256_xor_si256(bhi1, b1), k0);
        a1 = alo1, b1 = blo1;
        a2 = _mm256_xor_si256(_mm256_xor_si256(ahi0, a3), k1);
        b2 = _mm256_xor_si256(_mm256_xor_si256(bhi0, b3), k1);
        a3 = alo0, b3 = blo0;
        k0 = _mm256_add_epi32(k0, w0);
        k1 = _mm256_add_epi32(k1, w1);
    }
    philox_counter_order8(a0, a1, a2, a3, out);
    philox_counter_order8(b0, b1, b2, b3, out + 4);
}
#endif

#endif
