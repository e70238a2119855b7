#include "clip.h"

#include <math.h>

#include "../src/ops/parallel.h"

/* ---------------------------------------------------------------- kernels */

static double sum_lanes(const double acc[8])
{
    double s = 0.0;
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

double k_sumsq_scalar(const float *g, size_t n)
{
    double acc[8] = {0};
    for (size_t i = 0; i < n; i++) {
        double x = g[i];
        acc[i & 7] += x * x;
    }
    return sum_lanes(acc);
}

#if SIMD_AVX2
double k_sumsq_avx2(const float *g, size_t n)
{
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    size_t i = 0;
    for (; i < n; i += 8) {
        __m256 x = i + 8 <= n ? _mm256_loadu_ps(g + i) : _mm256_maskload_ps(g + i, simd_tail_mask(n - i));
        __m256d xl = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
        __m256d xh = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
        lo = _mm256_fmadd_pd(xl, xl, lo); /* the product is exact: same as mul + add */
        hi = _mm256_fmadd_pd(xh, xh, hi);
    }
    double acc[8];
    _mm256_storeu_pd(acc, lo);
    _mm256_storeu_pd(acc + 4, hi);
    return sum_lanes(acc);
}
#define SUMSQ k_sumsq_avx2
#else
#define SUMSQ k_sumsq_scalar
#endif

/* ----------------------------------------------------------------- public */

size_t clip_block_len(size_t n)
{
    size_t len = (n + CLIP_MAX_BLOCKS - 1) / CLIP_MAX_BLOCKS;
    len = (len + 7) / 8 * 8;
    return len < CLIP_BLOCK_MIN ? CLIP_BLOCK_MIN : len;
}

double clip_global_norm(const float *g, size_t n)
{
    if (n == 0) return 0.0;
    const size_t bl = clip_block_len(n);
    const size_t nb = (n + bl - 1) / bl;
    double partial[CLIP_MAX_BLOCKS];
#pragma omp parallel for schedule(static) if (n >= KERNEL_PAR_MIN)
    for (size_t b = 0; b < nb; b++) {
        size_t off = b * bl;
        size_t len = n - off < bl ? n - off : bl;
        partial[b] = SUMSQ(g + off, len);
    }
    double s = 0.0;
    for (size_t b = 0; b < nb; b++) s += partial[b];
    return sqrt(s);
}

double clip_grad_norm(float *g, size_t n, double max_norm)
{
    double norm = clip_global_norm(g, n);
    float coef = (float)(max_norm / (norm + 1e-6));
    if (coef < 1.0f) {
#pragma omp parallel for schedule(static) if (n >= KERNEL_PAR_MIN)
        for (size_t i = 0; i < n; i++) g[i] *= coef;
    }
    return norm;
}

double clip_grad_norm_params(ParamSet *ps, double max_norm)
{
    return clip_grad_norm(ps->grad, ps->total, max_norm);
}
