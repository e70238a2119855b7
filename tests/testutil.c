#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Tensor *test_tensor(int ndim, const int *shape, bool requires_grad)
{
    Tensor *t = calloc(1, sizeof *t);
    ck_assert(t && tensor_set_shape(t, ndim, shape));
    t->data = calloc(t->numel, sizeof(float));
    ck_assert(t->data);
    t->requires_grad = requires_grad;
    return t;
}

void test_tensor_free(Tensor *t)
{
    if (!t) return;
    free(t->data);
    free(t);
}

void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    Rng r;
    rng_init(&r, rng_derive_key(seed, 99, 0));
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)rng_uniform(&r);
}

double test_close_ratio(const float *a, const float *b, size_t n, double atol, double rtol,
                        const char *label)
{
    double worst = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double r;
        if (a[i] == b[i] || (isnan(a[i]) && isnan(b[i])))
            r = 0.0;
        else if (isnan(a[i]) || isnan(b[i]) || isinf(a[i]) || isinf(b[i]))
            r = INFINITY;
        else
            r = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (r > worst) worst = r, wi = i;
    }
    if (worst > 1.0 && label)
        fprintf(stderr, "%s: worst at %zu: %.9g vs %.9g (ratio %.3g)\n", label, wi, a[wi], b[wi], worst);
    return worst;
}

static double weighted_loss(Graph *g, GradcheckForward f, void *ctx, Tensor **in, const float *R,
                            size_t *n_out, bool training)
{
    graph_begin(g, 0, training, false);
    Tensor *y = f(g, in, ctx);
    double s = 0.0;
    for (size_t i = 0; i < y->numel; i++) s += (double)y->data[i] * R[i];
    if (n_out) *n_out = y->numel;
    return s;
}

bool gradcheck(const char *label, GradcheckForward forward, void *ctx, Tensor **inputs,
               int n_inputs, GradcheckOpts o)
{
    if (n_inputs <= 0) return false;
    Graph g;
    graph_init(&g, 1 << 20, 1234);

    /* analytic pass */
    graph_begin(&g, 0, o.training, true);
    for (int k = 0; k < n_inputs; k++) inputs[k]->grad = NULL;
    Tensor *y = forward(&g, inputs, ctx);
    size_t ny = y->numel;
    float *R = malloc(ny * sizeof *R);
    test_fill_uniform(R, ny, 4242, -1.0f, 1.0f);
    graph_backward_from(&g, y, R);
    float **analytic = calloc((size_t)n_inputs, sizeof *analytic);
    for (int k = 0; k < n_inputs; k++) {
        if (!inputs[k]->requires_grad) continue;
        analytic[k] = calloc(inputs[k]->numel, sizeof(float));
        if (inputs[k]->grad) memcpy(analytic[k], inputs[k]->grad, inputs[k]->numel * sizeof(float));
    }

    bool ok = true;
    for (int k = 0; k < n_inputs && ok; k++) {
        Tensor *x = inputs[k];
        if (!x->requires_grad) continue;
        size_t n = x->numel, stride = 1;
        if (o.max_probe && n > o.max_probe) stride = (n + o.max_probe - 1) / o.max_probe;
        for (size_t i = 0; i < n; i += stride) {
            float saved = x->data[i];
            x->data[i] = saved + (float)o.eps;
            double lp = weighted_loss(&g, forward, ctx, inputs, R, NULL, o.training);
            x->data[i] = saved - (float)o.eps;
            double lm = weighted_loss(&g, forward, ctx, inputs, R, NULL, o.training);
            x->data[i] = saved;
            /* the perturbation actually applied, after float rounding */
            double h = ((double)(saved + (float)o.eps) - (double)(saved - (float)o.eps));
            double num = (lp - lm) / h;
            double an = analytic[k][i];
            if (fabs(an - num) > o.atol + o.rtol * fabs(num) || isnan(an)) {
                fprintf(stderr, "%s: input %d element %zu: analytic %.7g numeric %.7g\n", label, k, i,
                        an, num);
                ok = false;
                break;
            }
        }
    }
    for (int k = 0; k < n_inputs; k++) {
        free(analytic[k]);
        inputs[k]->grad = NULL;
    }
    free(analytic);
    free(R);
    graph_free(&g);
    return ok;
}
