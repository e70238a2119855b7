/* Vectorised transcendental functions for the AVX2 kernels (8 floats).
 * Accuracy targets: within a few float32 ulp of the libm function the
 * scalar kernels use, so AVX2 and scalar paths agree to ~1e-6 relative. */
#ifndef SEQEIG_SIMD_MATH_H
#define SEQEIG_SIMD_MATH_H

#include "simd.h"

#if SIMD_AVX2
/* e^x.  Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-6
 * polynomial for e^r, then scale by 2^n (split in two factors so n = 128
 * does not overflow the exponent field).  Matches expf within a few ulp up
 * to the true overflow at ln(FLT_MAX) = 88.7228 (+inf above), returns
 * exactly 0 below -87.3365 (where expf would be denormal), propagates NaN. */
static inline __m256 v8_exp(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.72283905206835f);
    const __m256 lo = _mm256_set1_ps(-87.3365478515625f);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    p = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    p = _mm256_andnot_ps(under, p);
    p = _mm256_blendv_ps(p, _mm256_set1_ps(__builtin_inff()), over);
    return _mm256_blendv_ps(p, x, nan);
}

/* 1/d to ~1 ulp: the hardware estimate (12 bits) refined by one Newton
 * step, r' = r (2 - d r); cheaper than vdivps where a divide would limit
 * throughput.  Valid for finite nonzero d (inf gives 0, 0 gives NaN). */
static inline __m256 v8_recip(__m256 d)
{
    __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

/* e^x - 1 without cancellation near 0: a degree-7 Taylor polynomial for
 * |x| < 0.35 (truncation below 2e-8 relative), e^x - 1 elsewhere (where
 * the subtraction loses less than 2 bits). */
static inline __m256 v8_expm1(__m256 x)
{
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, x), x, x);
    __m256 small = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(0.35f), _CMP_LT_OQ);
    return _mm256_blendv_ps(_mm256_sub_ps(v8_exp(x), _mm256_set1_ps(1.0f)), p, small);
}

/* 1 / (1 + e^-x), saturating cleanly to 0 and 1. */
static inline __m256 v8_sigmoid(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = v8_exp(_mm256_xor_ps(x, _mm256_set1_ps(-0.0f))); /* e^-x; +inf -> 0 */
    return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

/* erfc(x) with relative error below ~1.2e-7 over the whole real line:
 * erfc(|x|) = t exp(-x^2 + P(t)), t = 1 / (1 + |x|/2), P a degree-9
 * polynomial (a Chebyshev fit published by Press et al., Numerical Recipes
 * 6.2); erfc(-x) = 2 - erfc(x). */
static inline __m256 v8_erfc(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    __m256 t = v8_recip(_mm256_fmadd_ps(_mm256_set1_ps(0.5f), ax, one)); /* d >= 1 */
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    __m256 e = _mm256_mul_ps(t, v8_exp(_mm256_fnmadd_ps(ax, ax, p)));
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(e, _mm256_sub_ps(_mm256_set1_ps(2.0f), e), neg);
}
#endif

#endif
