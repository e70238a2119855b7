/* Shared helpers for the Check suites: random tensors, comparisons and the
 * central-difference gradient check every op is tested with. */
#ifndef SEQEIG_TESTUTIL_H
#define SEQEIG_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../src/graph.h"
#include "../src/rng.h"

/* A tensor with its own malloc'ed data (freed by test_tensor_free). */
Tensor *test_tensor(int ndim, const int *shape, bool requires_grad);
void test_tensor_free(Tensor *t);
/* Fill with U(lo, hi) from a stream keyed by `seed`. */
void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);

/* max_i |a_i - b_i| / (atol + rtol |b_i|) ; <= 1 means "close".  Prints the
 * worst index when the result exceeds 1 and `label` is not NULL. */
double test_close_ratio(const float *a, const float *b, size_t n, double atol, double rtol,
                        const char *label);
#define ck_assert_close(a, b, n, atol, rtol, label) \
    ck_assert_msg(test_close_ratio(a, b, n, atol, rtol, label) <= 1.0, "%s not close", label)

/* Gradient check.  `forward` builds the op under test from `inputs` and
 * returns its output y.  With a fixed random weighting R, the scalar
 * loss = sum(y * R) is differentiated two ways: the tape (analytic) and
 * central differences (loss(x+eps) - loss(x-eps)) / 2 eps, accumulated in
 * float64, for every element of every input with requires_grad (at most
 * `max_probe` elements per input, spread evenly; 0 = all).  Passes when
 * |analytic - numeric| <= atol + rtol * |numeric| everywhere. */
typedef Tensor *(*GradcheckForward)(Graph *g, Tensor **inputs, void *ctx);
typedef struct GradcheckOpts {
    double eps, atol, rtol;
    size_t max_probe;
    bool training;       /* graph->training during the check (dropout) */
} GradcheckOpts;
#define GRADCHECK_DEFAULTS ((GradcheckOpts){.eps = 1e-2, .atol = 2e-3, .rtol = 1e-2, .max_probe = 0})
bool gradcheck(const char *label, GradcheckForward forward, void *ctx, Tensor **inputs,
               int n_inputs, GradcheckOpts opts);

#endif
