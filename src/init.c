#include "init.h"

#include <math.h>
#include <stdio.h>

void init_uniform(float *x, size_t n, Rng *r, double lo, double hi)
{
    const float hi_f = (float)hi, lo_f = (float)lo;
    const float below_hi = nextafterf(hi_f, lo_f);
    for (size_t i = 0; i < n; i++) {
        float y = (float)(lo + (hi - lo) * rng_uniform(r));
        x[i] = y >= hi_f && hi_f > lo_f ? below_hi : y;
    }
}

void init_normal(float *x, size_t n, Rng *r, double mean, double std)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + std * rng_normal(r));
}

void init_constant(float *x, size_t n, float value)
{
    for (size_t i = 0; i < n; i++) x[i] = value;
}

/* torch.linspace (float32, CPU): step = (end - start) / (n - 1) in float;
 * element i < n/2 is start + step*i, the others end - step*(n-1-i).  Its
 * vectorised loop handles chunks of 16 as two 8-lane vectors, each from a
 * base computed for the vector's first index with the formula above and
 * lanes base + l*step (not fused); the remaining < 16 elements go through
 * the scalar formula, which the compiler fuses into an FMA. */
void init_linspace(float *x, size_t n, double start, double end)
{
    if (n == 0) return;
    const float a = (float)start, b = (float)end;
    if (n == 1) {
        x[0] = a;
        return;
    }
    const float step = (b - a) / (float)(n - 1);
    const size_t half = n / 2;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t j = i; j < i + 16; j += 8) {
            float base = j < half ? fmaf(step, (float)j, a) : fmaf(-step, (float)(n - 1 - j), b);
            x[j] = base;
            for (int l = 1; l < 8; l++) {
                float ls = (float)l * step;
                x[j + l] = base + ls;
            }
        }
    for (; i < n; i++) x[i] = i < half ? fmaf(step, (float)i, a) : fmaf(-step, (float)(n - 1 - i), b);
}

int init_fans(const Tensor *w, size_t *fan_in, size_t *fan_out)
{
    if (w->ndim < 2) return -1;
    size_t receptive = w->numel / ((size_t)w->shape[0] * (size_t)w->shape[1]);
    *fan_in = (size_t)w->shape[1] * receptive;
    *fan_out = (size_t)w->shape[0] * receptive;
    return 0;
}

int init_linear_default(Param *weight, Param *bias, Rng *r)
{
    size_t fan_in, fan_out;
    if (init_fans(&weight->t, &fan_in, &fan_out) != 0) {
        fprintf(stderr, "seqeig: internal error: init of '%s': weight needs >= 2 dims\n", weight->name);
        return -1;
    }
    if (bias && bias->t.numel != (size_t)weight->t.shape[0]) {
        fprintf(stderr, "seqeig: internal error: bias '%s' has %zu elements, weight '%s' %d rows\n",
                bias->name, bias->t.numel, weight->name, weight->t.shape[0]);
        return -1;
    }
    /* kaiming_uniform(a = sqrt(5)): gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in) */
    double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
    init_uniform(weight->t.data, weight->t.numel, r, -bound, bound);
    if (bias) init_uniform(bias->t.data, bias->t.numel, r, -bound, bound);
    return 0;
}

int init_xavier_uniform(Param *weight, Rng *r, double gain)
{
    size_t fan_in, fan_out;
    if (init_fans(&weight->t, &fan_in, &fan_out) != 0) {
        fprintf(stderr, "seqeig: internal error: init of '%s': weight needs >= 2 dims\n", weight->name);
        return -1;
    }
    double bound = gain * sqrt(6.0 / (double)(fan_in + fan_out));
    init_uniform(weight->t.data, weight->t.numel, r, -bound, bound);
    return 0;
}
