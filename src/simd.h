/* Thin layer over AVX2+FMA intrinsics.
 *
 * SIMD_AVX2 is 1 when the compiler targets AVX2 and FMA (the default
 * -march=x86-64-v3 build) and 0 otherwise (make ARCH=generic), in which case
 * only the scalar kernels are compiled.
 *
 * Loops over n elements handle the tail with masked loads/stores
 * (simd_tail_mask) so that every element goes through the same vector
 * arithmetic whatever the split of the array between threads: results are
 * then bit-identical for any thread count. */
#ifndef SEQEIG_SIMD_H
#define SEQEIG_SIMD_H

#include <stddef.h>

#if defined(__AVX2__) && defined(__FMA__)
#define SIMD_AVX2 1
#include <immintrin.h>

/* Lane mask with the first n (0..8) lanes set. */
static inline __m256i simd_tail_mask(size_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

static inline float simd_hsum(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline float simd_hmax(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_max_ps(lo, hi);
    lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
#else
#define SIMD_AVX2 0
#endif

#endif
