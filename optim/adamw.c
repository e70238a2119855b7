#include "adamw.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops/parallel.h"

/* ---------------------------------------------------------------- kernels */

void k_adamw_scalar(float *p, const float *g, float *m, float *v, size_t n, const AdamWCoeffs *c)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i] * c->decay;
        float mi = fmaf(c->one_minus_beta1, gi, m[i] * c->beta1);
        float vi = fmaf(c->one_minus_beta2 * gi, gi, v[i] * c->beta2);
        float denom = sqrtf(vi) / c->bc2_sqrt + c->eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + (c->neg_step_size * mi) / denom;
    }
}

#if SIMD_AVX2
static inline void adamw_vec(float *p, const float *g, float *m, float *v, __m256i mask,
                             bool masked, const AdamWCoeffs *c)
{
    const __m256 decay = _mm256_set1_ps(c->decay);
    const __m256 b1 = _mm256_set1_ps(c->beta1), omb1 = _mm256_set1_ps(c->one_minus_beta1);
    const __m256 b2 = _mm256_set1_ps(c->beta2), omb2 = _mm256_set1_ps(c->one_minus_beta2);
    const __m256 bc2s = _mm256_set1_ps(c->bc2_sqrt), eps = _mm256_set1_ps(c->eps);
    const __m256 nss = _mm256_set1_ps(c->neg_step_size);
    __m256 vp, vg, vm, vv;
    if (masked) {
        vp = _mm256_maskload_ps(p, mask), vg = _mm256_maskload_ps(g, mask);
        vm = _mm256_maskload_ps(m, mask), vv = _mm256_maskload_ps(v, mask);
    } else {
        vp = _mm256_loadu_ps(p), vg = _mm256_loadu_ps(g);
        vm = _mm256_loadu_ps(m), vv = _mm256_loadu_ps(v);
    }
    vp = _mm256_mul_ps(vp, decay);
    vm = _mm256_fmadd_ps(omb1, vg, _mm256_mul_ps(vm, b1));
    vv = _mm256_fmadd_ps(_mm256_mul_ps(omb2, vg), vg, _mm256_mul_ps(vv, b2));
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), bc2s), eps);
    vp = _mm256_add_ps(vp, _mm256_div_ps(_mm256_mul_ps(nss, vm), denom));
    if (masked) {
        _mm256_maskstore_ps(p, mask, vp);
        _mm256_maskstore_ps(m, mask, vm);
        _mm256_maskstore_ps(v, mask, vv);
    } else {
        _mm256_storeu_ps(p, vp);
        _mm256_storeu_ps(m, vm);
        _mm256_storeu_ps(v, vv);
    }
}

static void adamw_block(float *p, const float *g, float *m, float *v, size_t n, const AdamWCoeffs *c)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) adamw_vec(p + i, g + i, m + i, v + i, _mm256_setzero_si256(), false, c);
    if (i < n) adamw_vec(p + i, g + i, m + i, v + i, simd_tail_mask(n - i), true, c);
}

void k_adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, const AdamWCoeffs *c)
{
    PARALLEL_BLOCKS(n, adamw_block(p + off, g + off, m + off, v + off, len, c));
}
#endif

void k_adamw(float *p, const float *g, float *m, float *v, size_t n, const AdamWCoeffs *c)
{
#if SIMD_AVX2
    k_adamw_avx2(p, g, m, v, n, c);
#else
    PARALLEL_BLOCKS(n, k_adamw_scalar(p + off, g + off, m + off, v + off, len, c));
#endif
}

/* -------------------------------------------------------------- optimizer */

AdamWCoeffs adamw_coeffs(const AdamWConfig *cfg, double lr, int64_t t)
{
    /* As torch: Python-double scalars, rounded to float where they meet a tensor. */
    double bias_correction1 = 1.0 - pow(cfg->beta1, (double)t);
    double bias_correction2 = 1.0 - pow(cfg->beta2, (double)t);
    double step_size = lr / bias_correction1;
    return (AdamWCoeffs){
        .decay = (float)(1.0 - lr * cfg->weight_decay),
        .beta1 = (float)cfg->beta1,
        .one_minus_beta1 = (float)(1.0 - cfg->beta1),
        .beta2 = (float)cfg->beta2,
        .one_minus_beta2 = (float)(1.0 - cfg->beta2),
        .bc2_sqrt = (float)sqrt(bias_correction2),
        .eps = (float)cfg->eps,
        .neg_step_size = (float)-step_size,
    };
}

int adamw_init(AdamW *opt, size_t n, AdamWConfig cfg)
{
    memset(opt, 0, sizeof *opt);
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    void *m = NULL, *v = NULL;
    if (posix_memalign(&m, 64, bytes) || posix_memalign(&v, 64, bytes)) {
        free(m);
        fprintf(stderr, "seqeig: out of memory allocating AdamW state for %zu parameters\n", n);
        return -1;
    }
    memset(m, 0, bytes);
    memset(v, 0, bytes);
    opt->cfg = cfg;
    opt->m = m;
    opt->v = v;
    opt->n = n;
    opt->t = 0;
    return 0;
}

int adamw_init_params(AdamW *opt, const ParamSet *ps, AdamWConfig cfg)
{
    return adamw_init(opt, ps->total, cfg);
}

void adamw_free(AdamW *opt)
{
    free(opt->m);
    free(opt->v);
    memset(opt, 0, sizeof *opt);
}

void adamw_step(AdamW *opt, float *p, const float *g, double lr)
{
    opt->t++;
    AdamWCoeffs c = adamw_coeffs(&opt->cfg, lr, opt->t);
    k_adamw(p, g, opt->m, opt->v, opt->n, &c);
}

void adamw_step_params(AdamW *opt, ParamSet *ps, double lr)
{
    if (ps->total != opt->n) {
        fprintf(stderr, "seqeig: internal error: AdamW state has %zu floats, parameters %zu\n",
                opt->n, ps->total);
        abort();
    }
    adamw_step(opt, ps->data, ps->grad, lr);
}

int adamw_set_state(AdamW *opt, const float *m, const float *v, size_t n, int64_t t)
{
    if (n != opt->n || t < 0) return -1;
    memcpy(opt->m, m, n * sizeof(float));
    memcpy(opt->v, v, n * sizeof(float));
    opt->t = t;
    return 0;
}
