/* End-to-end check of the engine: a small MLP classifier (linear, layer
 * norm, GELU, dropout, linear, cross entropy) trained with AdamW, gradient
 * clipping and a warmup+cosine schedule.  It must learn, and the run must
 * be bit-reproducible for the same seed and across thread counts. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../optim/adamw.h"
#include "../optim/clip.h"
#include "../optim/schedule.h"
#include "../src/init.h"
#include "../src/ops.h"
#include "../src/param.h"
#include "../src/rng.h"
#include "../src/threads.h"
#include "testutil.h"

enum { N_EX = 1024, D_IN = 24, D_HID = 96, N_CLS = 5, STEPS = 50 };

typedef struct {
    ParamSet ps;
    Param *w1, *b1, *g1, *be1, *w2, *b2;
} Mlp;

static void mlp_create(Mlp *m, uint64_t seed)
{
    paramset_init(&m->ps);
    m->w1 = paramset_add(&m->ps, "fc1.weight", 2, (int[]){D_HID, D_IN});
    m->b1 = paramset_add(&m->ps, "fc1.bias", 1, (int[]){D_HID});
    m->g1 = paramset_add(&m->ps, "norm.weight", 1, (int[]){D_HID});
    m->be1 = paramset_add(&m->ps, "norm.bias", 1, (int[]){D_HID});
    m->w2 = paramset_add(&m->ps, "fc2.weight", 2, (int[]){N_CLS, D_HID});
    m->b2 = paramset_add(&m->ps, "fc2.bias", 1, (int[]){N_CLS});
    ck_assert_int_eq(paramset_finalize(&m->ps), 0);
    Rng r;
    rng_init(&r, rng_derive_key(seed, RNG_INIT, 0));
    ck_assert_int_eq(init_linear_default(m->w1, m->b1, &r), 0);
    init_param_constant(m->g1, 1.0f);
    init_param_constant(m->be1, 0.0f);
    ck_assert_int_eq(init_linear_default(m->w2, m->b2, &r), 0);
}

/* A learnable task: labels from a fixed random linear teacher. */
static void make_data(float *x, int32_t *y)
{
    Rng r;
    rng_init(&r, rng_derive_key(7, RNG_DATA, 0));
    float teacher[N_CLS * D_IN];
    for (int i = 0; i < N_CLS * D_IN; i++) teacher[i] = (float)rng_normal(&r);
    for (int n = 0; n < N_EX; n++) {
        int best = 0;
        double best_v = -1e30;
        for (int i = 0; i < D_IN; i++) x[n * D_IN + i] = (float)rng_normal(&r);
        for (int c = 0; c < N_CLS; c++) {
            double v = 0;
            for (int i = 0; i < D_IN; i++) v += teacher[c * D_IN + i] * x[n * D_IN + i];
            if (v > best_v) best_v = v, best = c;
        }
        y[n] = best;
    }
}

/* Trains STEPS steps; returns the flat weights (caller frees) and the
 * first and last loss. */
static float *train(int threads, double *first_loss, double *last_loss)
{
    threads_set(threads);
    float *x = malloc(sizeof(float) * N_EX * D_IN);
    int32_t *y = malloc(sizeof(int32_t) * N_EX);
    make_data(x, y);
    Mlp m;
    mlp_create(&m, 1919);
    AdamW opt;
    AdamWConfig cfg = ADAMW_DEFAULTS;
    cfg.weight_decay = 0.1;
    ck_assert_int_eq(adamw_init_params(&opt, &m.ps, cfg), 0);
    LrSchedule sched = lr_schedule_constant(1e-2);
    sched.warmup = 5;
    sched.cosine = true;
    sched.total = STEPS;
    Graph g;
    graph_init(&g, 0, rng_derive_key(1919, RNG_DROPOUT, 0));
    for (int step = 0; step < STEPS; step++) {
        graph_begin(&g, (uint64_t)step, true, true);
        paramset_zero_grad(&m.ps);
        Tensor *xt = tensor_wrap(&g, x, 2, (int[]){N_EX, D_IN});
        Tensor *h = op_linear(&g, xt, &m.w1->t, &m.b1->t);
        h = op_layernorm(&g, h, &m.g1->t, &m.be1->t, 1e-5f);
        h = op_gelu(&g, h);
        h = op_dropout(&g, h, 0.1f);
        Tensor *logits = op_linear(&g, h, &m.w2->t, &m.b2->t);
        XentStats st;
        Tensor *loss = op_cross_entropy(&g, logits, y, &st);
        graph_backward(&g, loss);
        clip_grad_norm_params(&m.ps, 1.0);
        adamw_step_params(&opt, &m.ps, lr_at(&sched, step));
        if (step == 0) *first_loss = loss->data[0];
        *last_loss = loss->data[0];
    }
    float *w = malloc(m.ps.total * sizeof(float));
    memcpy(w, m.ps.data, m.ps.total * sizeof(float));
    graph_free(&g);
    adamw_free(&opt);
    paramset_free(&m.ps);
    free(x);
    free(y);
    return w;
}

static size_t weights_total(void)
{
    Mlp m;
    mlp_create(&m, 1);
    size_t n = m.ps.total;
    paramset_free(&m.ps);
    return n;
}

START_TEST(test_mlp_training_reduces_loss)
{
    double l0, l1;
    free(train(2, &l0, &l1));
    /* chance level is log(5) = 1.61; a working step brings it well below */
    ck_assert_msg(l0 > 1.2, "first loss %g", l0);
    ck_assert_msg(l1 < 0.5 * l0, "loss went from %g to %g", l0, l1);
}
END_TEST

START_TEST(test_mlp_training_is_bit_reproducible)
{
    double a0, a1, b0, b1;
    float *wa = train(2, &a0, &a1), *wb = train(2, &b0, &b1);
    ck_assert(memcmp(wa, wb, weights_total() * sizeof(float)) == 0);
    ck_assert(a1 == b1);
    free(wa);
    free(wb);
}
END_TEST

START_TEST(test_mlp_training_same_bits_for_one_and_two_threads)
{
    double a0, a1, b0, b1;
    float *wa = train(1, &a0, &a1), *wb = train(2, &b0, &b1);
    ck_assert(memcmp(wa, wb, weights_total() * sizeof(float)) == 0);
    ck_assert(a1 == b1);
    free(wa);
    free(wb);
}
END_TEST

Suite *suite_training(void)
{
    Suite *s = suite_create("training");
    TCase *tc = tcase_create("mlp");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_mlp_training_reduces_loss);
    tcase_add_test(tc, test_mlp_training_is_bit_reproducible);
    tcase_add_test(tc, test_mlp_training_same_bits_for_one_and_two_threads);
    suite_add_tcase(s, tc);
    return s;
}
