/* Eigenvalue statistics (app/spectra.c) and the "paper" eigenvalue method
 * (models/attention_paper.c and the paper section of models/mamba2.c).
 *
 * spectra.c: bins closed at both ends (a threshold value counts twice,
 * except 100, whose upper neighbour is the open bin > 100), +inf in bin 6,
 * negatives and NaN in no bin, percentages, mean and population std
 * against hand-computed numbers, NaN detection, array layout.
 *
 * model_spectra_paper: hand-computed cases in float64 for every layer kind
 * with weights set so that each block's output is known (softmax with the
 * quirky masked normaliser, linear and norm attention with the 2e-23
 * substitution, Mamba-2 values rounded to exactly 1 in float32, the
 * pseudo-LTI constant); finite output for every variant in training and
 * evaluation mode; no parameter or gradient changed, no tape recorded;
 * bit-identical for 1 and 2 threads; the per-block hooks reproduce
 * model_forward bit for bit.  The full procedure is also compared with an
 * independent PyTorch implementation (tests/oracle/compare_paper.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/mamba2.h"
#include "../models/model.h"
#include "../models/transformer.h"
#include "../src/ops.h"
#include "../app/spectra.h"
#include "../src/threads.h"
#include "testutil.h"

/* ================================================================ spectra.c */

static void expect_bins(double r, const int *want, const char *what)
{
    int f[SPECTRA_NBINS];
    spectra_bins_of(r, f);
    for (int k = 0; k < SPECTRA_NBINS; k++)
        ck_assert_msg(f[k] == want[k], "%s (r = %.17g): bin %d is %d, expected %d", what, r, k, f[k], want[k]);
}

START_TEST(test_bins_closed_at_both_ends_threshold_counts_twice)
{
    ck_assert(spectra_thresholds[0] == 0.1 && spectra_thresholds[1] == 0.5 && spectra_thresholds[2] == 0.9 &&
              spectra_thresholds[3] == 1.0 && spectra_thresholds[4] == 10.0 && spectra_thresholds[5] == 100.0);
    expect_bins(0.0, (int[]){1, 0, 0, 0, 0, 0, 0}, "0");
    expect_bins(-0.0, (int[]){1, 0, 0, 0, 0, 0, 0}, "-0");
    expect_bins(0.1, (int[]){1, 1, 0, 0, 0, 0, 0}, "0.1");
    expect_bins(0.5, (int[]){0, 1, 1, 0, 0, 0, 0}, "0.5");
    expect_bins(0.9, (int[]){0, 0, 1, 1, 0, 0, 0}, "0.9");
    expect_bins(1.0, (int[]){0, 0, 0, 1, 1, 0, 0}, "1");
    expect_bins(10.0, (int[]){0, 0, 0, 0, 1, 1, 0}, "10");
    /* 100 closes bin 5; bin 6 is r > 100 */
    expect_bins(100.0, (int[]){0, 0, 0, 0, 0, 1, 0}, "100");
    /* one ulp either side of each threshold: exactly one bin */
    for (int k = 0; k < SPECTRA_NTHRESH; k++) {
        double th = spectra_thresholds[k];
        int below[SPECTRA_NBINS] = {0}, above[SPECTRA_NBINS] = {0};
        below[k] = 1;
        above[k + 1] = 1;
        expect_bins(nextafter(th, 0.0), below, "just below a threshold");
        expect_bins(nextafter(th, INFINITY), above, "just above a threshold");
    }
    expect_bins(0.3, (int[]){0, 1, 0, 0, 0, 0, 0}, "0.3");
    expect_bins(5e22, (int[]){0, 0, 0, 0, 0, 0, 1}, "5e22");
}
END_TEST

START_TEST(test_bins_inf_in_last_negative_and_nan_in_none)
{
    expect_bins(INFINITY, (int[]){0, 0, 0, 0, 0, 0, 1}, "+inf");
    expect_bins(-1e-300, (int[]){0, 0, 0, 0, 0, 0, 0}, "tiny negative");
    expect_bins(-2.0, (int[]){0, 0, 0, 0, 0, 0, 0}, "-2");
    expect_bins(-INFINITY, (int[]){0, 0, 0, 0, 0, 0, 0}, "-inf");
    expect_bins(NAN, (int[]){0, 0, 0, 0, 0, 0, 0}, "NaN");
    expect_bins(4.9e-324, (int[]){1, 0, 0, 0, 0, 0, 0}, "subnormal");
}
END_TEST

/* 2 samples x 1 layer x 2 heads x T = 4 steps, counted by hand. */
START_TEST(test_percent_by_hand_with_double_counting)
{
    const double eig[] = {
        /* s0 h0 */ 0.1, 0.95, 1.0, INFINITY,   /* bins 0,1 | 3 | 3,4 | 6  */
        /* s0 h1 */ 0.0, 0.0, 0.0, 0.0,         /* bin 0 x4                */
        /* s1 h0 */ 0.05, 2.0, 100.0, -1.0,     /* 0 | 4 | 5 | none        */
        /* s1 h1 */ 0.5, 0.7, 10.0, 200.0,      /* 1,2 | 2 | 4,5 | 6       */
    };
    double pct[2 * 2 * SPECTRA_NBINS];
    spectra_percent(eig, 2, 1, 2, 4, pct);
    const double want[2 * 2 * SPECTRA_NBINS] = {
        25, 25, 0, 50, 25, 0, 25,   /* sums to 150: 0.1 and 1 are counted twice */
        100, 0, 0, 0, 0, 0, 0,
        25, 0, 0, 0, 25, 25, 0,     /* the negative value is in no bin: sums to 75 */
        0, 25, 50, 0, 25, 25, 25,
    };
    for (int i = 0; i < 2 * 2 * SPECTRA_NBINS; i++)
        ck_assert_msg(pct[i] == want[i], "pct[%d] = %.17g, expected %g", i, pct[i], want[i]);

    /* T = 3: thirds, within one rounding of 100 * n / 3 */
    const double e3[] = {0.2, 0.3, 20.0};
    double p3[SPECTRA_NBINS];
    spectra_percent(e3, 1, 1, 1, 3, p3);
    ck_assert(fabs(p3[1] - 200.0 / 3.0) <= 1e-13 && fabs(p3[5] - 100.0 / 3.0) <= 1e-13);
    ck_assert(p3[0] == 0 && p3[2] == 0 && p3[3] == 0 && p3[4] == 0 && p3[6] == 0);
}
END_TEST

/* Layout (S, Ly, H, T) -> (S, Ly, H, 7): each series lands at its own slot. */
START_TEST(test_percent_layout_samples_layers_heads)
{
    const int S = 2, Ly = 3, H = 2, T = 5;
    double eig[2 * 3 * 2 * 5], pct[2 * 3 * 2 * SPECTRA_NBINS];
    /* series (s, l, h) is constant, in bin (s + l + h) % 6 (closed values avoided) */
    const double value_in_bin[6] = {0.05, 0.3, 0.7, 0.95, 5.0, 50.0};
    for (int s = 0; s < S; s++)
        for (int l = 0; l < Ly; l++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                    eig[(((size_t)s * Ly + l) * H + h) * T + t] = value_in_bin[(s + l + h) % 6];
    spectra_percent(eig, S, Ly, H, T, pct);
    for (int s = 0; s < S; s++)
        for (int l = 0; l < Ly; l++)
            for (int h = 0; h < H; h++)
                for (int k = 0; k < SPECTRA_NBINS; k++) {
                    double want = k == (s + l + h) % 6 ? 100.0 : 0.0;
                    ck_assert(pct[(((size_t)s * Ly + l) * H + h) * SPECTRA_NBINS + k] == want);
                }
}
END_TEST

/* mean and population std (ddof 0) over samples, by hand. */
START_TEST(test_percent_stats_population_std_by_hand)
{
    /* S = 3 samples, 1 layer, 1 head: bin 0 percentages 0, 50, 100; bin 3: 25, 25, 25;
     * bin 6: 0, 0, 75 */
    double pct[3 * SPECTRA_NBINS] = {0};
    pct[0 * 7 + 0] = 0, pct[1 * 7 + 0] = 50, pct[2 * 7 + 0] = 100;
    pct[0 * 7 + 3] = 25, pct[1 * 7 + 3] = 25, pct[2 * 7 + 3] = 25;
    pct[2 * 7 + 6] = 75;
    double mean[SPECTRA_NBINS], std[SPECTRA_NBINS];
    spectra_percent_stats(pct, 3, 1, 1, mean, std);
    ck_assert(mean[0] == 50.0 && mean[3] == 25.0 && mean[6] == 25.0 && mean[1] == 0.0);
    /* population: sqrt((50^2 + 0 + 50^2) / 3) = 40.8248...; the sample std (ddof 1) would be 50 */
    ck_assert(fabs(std[0] - sqrt(5000.0 / 3.0)) <= 1e-12);
    ck_assert(std[3] == 0.0 && std[1] == 0.0);
    ck_assert(fabs(std[6] - sqrt((625.0 + 625.0 + 2500.0) / 3.0)) <= 1e-12);

    /* a single sample: std 0, mean = the sample */
    spectra_percent_stats(pct + 14, 1, 1, 1, mean, std);
    ck_assert(mean[0] == 100 && mean[6] == 75 && std[0] == 0 && std[6] == 0);
}
END_TEST

START_TEST(test_find_nan)
{
    double e[6] = {0.0, INFINITY, 1.0, 5e-324, -1.0, 2.0};
    ck_assert_int_eq(spectra_find_nan(e, 6), -1);
    e[4] = NAN;
    ck_assert_int_eq(spectra_find_nan(e, 6), 4);
    e[1] = -NAN;
    ck_assert_int_eq(spectra_find_nan(e, 6), 1);
    ck_assert_int_eq(spectra_find_nan(e, 1), -1);
    ck_assert_int_eq(spectra_find_nan(e, 0), -1);
}
END_TEST

/* Phase bins: thresholds 1, 10, 45, 90, 180 degrees closed at both ends,
 * > 180 never reached, negative phases in none. */
START_TEST(test_phase_bins_closed_at_both_ends_negative_in_none)
{
    int f[SPECTRA_NPHASE_BINS];
    const struct { double deg; int want[SPECTRA_NPHASE_BINS]; } cases[] = {
        {0.0, {1, 0, 0, 0, 0, 0}},   {0.5, {1, 0, 0, 0, 0, 0}}, {1.0, {1, 1, 0, 0, 0, 0}},
        {10.0, {0, 1, 1, 0, 0, 0}},  {45.0, {0, 0, 1, 1, 0, 0}}, {90.0, {0, 0, 0, 1, 1, 0}},
        {180.0, {0, 0, 0, 0, 1, 0}}, {135.0, {0, 0, 0, 0, 1, 0}}, {-0.5, {0, 0, 0, 0, 0, 0}},
        {-180.0 + 1e-9, {0, 0, 0, 0, 0, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        spectra_phase_bins_of(cases[c].deg, f);
        for (int k = 0; k < SPECTRA_NPHASE_BINS; k++)
            ck_assert_msg(f[k] == cases[c].want[k], "phase %g: bin %d is %d", cases[c].deg, k, f[k]);
    }
}
END_TEST

/* Complex LTI eigenvalues (layers, systems, N, 2): radius |z| and phase
 * atan2(im, re) per (layer, system) over its N values, by hand. */
START_TEST(test_percent_complex_radius_and_phase_by_hand)
{
    /* layer 0 system 0: 0.95 at 0.5 deg, 0.95 at -0.5 deg (conjugate),
     *                   0.3 at 30 deg, 2.0 at 100 deg
     * layer 0 system 1: four times 1.0 at 0 deg (radius 1 and phase 0 count
     *                   in two radius bins and one phase bin) */
    const double pi = 3.14159265358979323846;
    const double rt[8][2] = {{0.95, 0.5}, {0.95, -0.5}, {0.3, 30}, {2.0, 100}, {1, 0}, {1, 0}, {1, 0}, {1, 0}};
    double eig[16];
    for (int j = 0; j < 8; j++) {
        eig[2 * j] = rt[j][0] * cos(rt[j][1] * pi / 180);
        eig[2 * j + 1] = rt[j][0] * sin(rt[j][1] * pi / 180);
    }
    eig[8 + 1] = eig[10 + 1] = eig[12 + 1] = eig[14 + 1] = 0.0; /* exactly real */
    double rp[2 * SPECTRA_NBINS], pp[2 * SPECTRA_NPHASE_BINS];
    spectra_percent_complex(eig, 1, 2, 4, rp, pp);
    const double want_r0[SPECTRA_NBINS] = {0, 25, 0, 50, 25, 0, 0};
    const double want_p0[SPECTRA_NPHASE_BINS] = {25, 0, 25, 0, 25, 0};
    const double want_r1[SPECTRA_NBINS] = {0, 0, 0, 100, 100, 0, 0};
    const double want_p1[SPECTRA_NPHASE_BINS] = {100, 0, 0, 0, 0, 0};
    for (int k = 0; k < SPECTRA_NBINS; k++) {
        ck_assert_msg(rp[k] == want_r0[k], "radius bin %d of system 0: %g", k, rp[k]);
        ck_assert_msg(rp[SPECTRA_NBINS + k] == want_r1[k], "radius bin %d of system 1: %g", k, rp[SPECTRA_NBINS + k]);
    }
    for (int k = 0; k < SPECTRA_NPHASE_BINS; k++) {
        ck_assert_msg(pp[k] == want_p0[k], "phase bin %d of system 0: %g", k, pp[k]);
        ck_assert_msg(pp[SPECTRA_NPHASE_BINS + k] == want_p1[k], "phase bin %d of system 1: %g", k,
                      pp[SPECTRA_NPHASE_BINS + k]);
    }
}
END_TEST

/* An input-independent (LTI) family plugs into the spectra module through
 * the family interface alone: a test family whose eigenvalues are N
 * complex values per (layer, channel), written by its forward hook.  The
 * meter sizes them without a sample axis and bins them over N with std 0. */
enum { LTI_LAYERS = 2, LTI_CHANNELS = 3, LTI_N = 4 };

static void lti_keys(ConfigSchema *s) { (void)s; }
static int lti_from_config(const Config *c, ModelConfig *mc, char *err, size_t errlen)
{
    (void)c, (void)mc, (void)err, (void)errlen;
    return 0;
}
static const char *lti_name(const ModelConfig *mc)
{
    (void)mc;
    return "test-lti";
}
static int lti_check(const ModelConfig *mc, char *err, size_t errlen)
{
    (void)mc, (void)err, (void)errlen;
    return 0;
}
static int lti_create(Model *m, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    m->impl = &m->params; /* nothing of its own; non-NULL marks "created" */
    return paramset_finalize(&m->params);
}
static void lti_free(Model *m) { m->impl = NULL; }
static void lti_init(Model *m, uint64_t seed) { (void)m, (void)seed; }
/* lambda_j of (layer l, channel c) = r_j e^{i theta_c}: r = 0.3, 0.6, 0.7, 0.95 (away from
 * the thresholds, which rounding of cos/sin could move across), theta = 20 (c + 1) degrees */
static Tensor *lti_forward(Model *m, Graph *g, const ModelBatch *b, double *eig)
{
    (void)m, (void)g, (void)b;
    if (!eig) return NULL;
    for (int l = 0; l < LTI_LAYERS; l++)
        for (int c = 0; c < LTI_CHANNELS; c++)
            for (int j = 0; j < LTI_N; j++) {
                static const double radius[LTI_N] = {0.3, 0.6, 0.7, 0.95};
                const double r = radius[j], th = 20.0 * (c + 1) * 3.14159265358979323846 / 180;
                double *z = eig + (((size_t)l * LTI_CHANNELS + c) * LTI_N + j) * 2;
                z[0] = r * cos(th), z[1] = r * sin(th);
            }
    return NULL;
}
static void lti_paper(Model *m, Graph *g, const ModelBatch *b, double *eig) { lti_forward(m, g, b, eig); }
static SpectraShape lti_shape(const ModelConfig *mc, int L)
{
    (void)mc, (void)L;
    return (SpectraShape){.kind = SPECTRA_LTI, .layers = LTI_LAYERS, .systems = LTI_CHANNELS, .steps = LTI_N,
                          .complex = true};
}
static const char *const LTI_NAMES[] = {"test-lti", NULL};
static const ModelFamily lti_family = {
    .layer = "test-lti", .names = LTI_NAMES, .register_keys = lti_keys, .from_config = lti_from_config,
    .name = lti_name, .check = lti_check, .create = lti_create, .free = lti_free, .init = lti_init,
    .forward = lti_forward, .spectra_paper = lti_paper, .spectra_shape = lti_shape,
};

START_TEST(test_lti_family_spectra_have_no_sample_axis_and_bin_over_N)
{
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.family = &lti_family;
    c.vocab_size = c.output_dim = 4, c.hidden_dim = 3, c.state_dim = LTI_N, c.num_heads = 1;
    c.num_layers = LTI_LAYERS;
    Model m;
    char err[200] = "";
    ck_assert_msg(model_create(&m, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(model_name(&m.cfg), "test-lti");
    int32_t tok[2 * 5] = {0};
    const float mask[2 * 5] = {1, 1, 1, 0, 0, 1, 1, 1, 1, 1}; /* padding plays no part */
    ModelBatch b = {.B = 2, .L = 5, .tokens = tok, .mask = mask};
    for (int method = SPECTRA_DSF; method <= SPECTRA_PAPER; method++) {
        SpectraMeter s;
        ck_assert_int_eq(spectra_meter_init(&s, &m, (SpectraMethod)method, &b), 0);
        ck_assert_int_eq(s.samples, 1);
        ck_assert_ptr_null(s.n_valid);
        ck_assert_uint_eq(spectra_meter_eig_count(&s), (size_t)LTI_LAYERS * LTI_CHANNELS * LTI_N * 2);
        ck_assert_uint_eq(spectra_meter_bin_count(&s), (size_t)LTI_LAYERS * LTI_CHANNELS * SPECTRA_NBINS);
        double eig[LTI_LAYERS * LTI_CHANNELS * LTI_N * 2], mean[LTI_LAYERS * LTI_CHANNELS * SPECTRA_NBINS],
            std[LTI_LAYERS * LTI_CHANNELS * SPECTRA_NBINS];
        Graph g;
        ck_assert(graph_init(&g, 0, 1) == 0);
        ck_assert_msg(spectra_measure(&s, &m, &g, true, eig, mean, std, err, sizeof err) == 0, "%s", err);
        /* radii 0.3 in [0.1,0.5], 0.6 and 0.7 in [0.5,0.9], 0.95 in [0.9,1] */
        const double want[SPECTRA_NBINS] = {0, 25, 50, 25, 0, 0, 0};
        for (int sys = 0; sys < LTI_LAYERS * LTI_CHANNELS; sys++)
            for (int k = 0; k < SPECTRA_NBINS; k++) {
                ck_assert_msg(fabs(mean[sys * SPECTRA_NBINS + k] - want[k]) < 1e-12, "system %d bin %d: %g", sys, k,
                              mean[sys * SPECTRA_NBINS + k]);
                ck_assert(std[sys * SPECTRA_NBINS + k] == 0.0);
            }
        graph_free(&g);
        spectra_meter_free(&s);
    }
    model_free(&m);
}
END_TEST

/* ==================================================== model_spectra_paper */

static ModelConfig base_cfg(const char *name)
{
    ModelConfig c;
    model_config_defaults(&c, name);
    c.vocab_size = 7, c.output_dim = 7, c.hidden_dim = 4, c.state_dim = 4, c.num_heads = 1, c.num_layers = 1;
    c.dropout = 0.0f, c.head = HEAD_LM;
    if (c.family == &transformer_family) {
        TransformerOptions *o = transformer_options(&c);
        o->mixer = MIXER_NONE, o->mixer_dim = 0, o->max_pos_embed = 0, o->use_gate = false, o->dim_conv = 0;
    } else {
        Mamba2Options *o = mamba2_options(&c);
        o->conv_dim = 4, o->glu = true, o->prenorm = true, o->pseudo_lti = false;
    }
    return c;
}

static void make_model(Model *m, const ModelConfig *c, uint64_t seed)
{
    char err[256] = "";
    ck_assert_msg(model_create(m, c, err, sizeof err) == 0, "model_create: %s", err);
    model_init(m, seed);
}

static Param *P(Model *m, const char *name)
{
    Param *p = paramset_find(&m->params, name);
    ck_assert_msg(p != NULL, "no parameter %s", name);
    return p;
}

static void fill(Param *p, float v)
{
    for (size_t i = 0; i < p->t.numel; i++) p->t.data[i] = v;
}

/* run model_spectra_paper in evaluation mode into a new array */
static double *paper(Model *m, const int32_t *tokens, int B, int L, bool training)
{
    Graph g;
    ck_assert(graph_init(&g, 0, 99) == 0);
    graph_begin(&g, 3, training, false);
    ModelBatch b = {.B = B, .L = L, .tokens = tokens};
    size_t n = (size_t)B * m->cfg.num_layers * m->cfg.num_heads * model_spectra_T(m, L);
    double *e = malloc((n ? n : 1) * sizeof *e);
    model_spectra_paper(m, &g, &b, e);
    graph_free(&g);
    return e;
}

static double *dsf(Model *m, const int32_t *tokens, int B, int L)
{
    Graph g;
    ck_assert(graph_init(&g, 0, 99) == 0);
    graph_begin(&g, 3, false, false);
    ModelBatch b = {.B = B, .L = L, .tokens = tokens};
    size_t n = (size_t)B * m->cfg.num_layers * m->cfg.num_heads * model_spectra_T(m, L);
    double *e = malloc((n ? n : 1) * sizeof *e);
    model_forward(m, &g, &b, e);
    graph_free(&g);
    return e;
}

/* Embedding rows with mean 0 and variance 1, so LN(e) = e / sqrt(1 + 1e-5). */
static const double EMB[5][4] = {
    {1, 1, -1, -1}, {1, -1, 1, -1}, {1.4142135623730951, 0, -1.4142135623730951, 0},
    {-1, 1, 1, -1}, {0.5, -1.5, 1.5, -0.5},
};

/* A one-block transformer whose block output is LN(embedding): out_proj = 0
 * so h = x, and mixer none gives y = LN(h) (LayerNorm weight 1, bias 0). */
static void transparent_block(Model *m)
{
    float *e = P(m, "encoder.word_embeddings.weight")->t.data;
    for (int v = 0; v < 5; v++)
        for (int j = 0; j < 4; j++) e[v * 4 + j] = (float)(EMB[v][j] * (1.0 + 0.05 * v)); /* var != 1 for v > 0 */
    fill(P(m, "layers.0.attention.out_proj.weight"), 0.0f);
    fill(P(m, "layers.0.attention.out_proj.bias"), 0.0f);
}

/* LN(e_v) in float64 (eps 1e-5, biased variance). */
static void ln_ref(int v, double y[4])
{
    double x[4], mu = 0, var = 0;
    for (int j = 0; j < 4; j++) x[j] = (double)(float)(EMB[v][j] * (1.0 + 0.05 * v)), mu += x[j] / 4;
    for (int j = 0; j < 4; j++) var += (x[j] - mu) * (x[j] - mu) / 4;
    for (int j = 0; j < 4; j++) y[j] = (x[j] - mu) / sqrt(var + 1e-5);
}

static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

/* Softmax, one layer, one head, dh = 4: q = y, k = sign * y (Wq = I,
 * Wk = sign I, no bias).  The reference script's normaliser of row t
 * (T = L steps, 0-based, no 1/sqrt(dh)) is
 *     eta_t = sum_{s<=t} exp(S_ts) + (L-1-t) exp(m_t),  m_t = max(0, max_{s<=t} S_ts) (t < L-1)
 * (the masked entries are 0 in the scores and in the repeated max, so each
 * gives exp(0 - 0) = 1 after the shift, i.e. exp(m_t) before it), and
 * eig_t = eta_t / eta_{t+1}.  Computed here in float64 from LN(e). */
START_TEST(test_softmax_paper_matches_quirky_normaliser_by_hand)
{
    for (int sign = 1; sign >= -1; sign -= 2) {
        ModelConfig c = base_cfg("sm-attention");
        Model m;
        make_model(&m, &c, 5);
        transparent_block(&m);
        float *W = P(&m, "layers.0.attention.Wqkv.weight")->t.data; /* (12, 4): q rows 0-3, k rows 4-7 */
        memset(W, 0, 12 * 4 * sizeof *W);
        for (int j = 0; j < 4; j++) W[j * 4 + j] = 1.0f, W[(4 + j) * 4 + j] = (float)sign;
        fill(P(&m, "layers.0.attention.Wqkv.bias"), 0.0f);

        enum { L = 6 };
        const int32_t tok[L] = {0, 1, 2, 3, 4, 1};
        double y[L][4], eta[L];
        for (int t = 0; t < L; t++) ln_ref(tok[t], y[t]);
        for (int t = 0; t < L; t++) {
            double S[L], mx = t < L - 1 ? 0.0 : -INFINITY;
            for (int s = 0; s <= t; s++) {
                S[s] = 0;
                for (int j = 0; j < 4; j++) S[s] += y[t][j] * sign * y[s][j];
                mx = fmax(mx, S[s]);
            }
            eta[t] = (L - 1 - t) * exp(mx);
            for (int s = 0; s <= t; s++) eta[t] += exp(S[s]);
        }
        double *e = paper(&m, tok, 1, L, false), *d = dsf(&m, tok, 1, L);
        double max_dsf_diff = 0;
        for (int t = 0; t < L - 1; t++) {
            double want = eta[t] / eta[t + 1];
            /* float32 scores: |dS| ~ 1e-7 * sum|q||k| ~ 4e-7, times the two rows */
            ck_assert_msg(rel(e[t], want) <= 2e-6, "sign %d t %d: paper %.10g, by hand %.10g", sign, t, e[t], want);
            max_dsf_diff = fmax(max_dsf_diff, rel(e[t], d[t]));
        }
        /* the quirks matter here: dsf (1/sqrt(dh), causal mask, LN of the block input) differs */
        ck_assert_msg(max_dsf_diff > 0.05, "paper and dsf agree (%g): quirks not exercised", max_dsf_diff);
        free(e), free(d);
        model_free(&m);
    }
}
END_TEST

/* The same normaliser with two heads (dh = 2 each) and L = 1, 2: heads use
 * their own channel blocks; L = 1 gives no attention eigenvalue. */
START_TEST(test_softmax_paper_two_heads_and_short_sequences)
{
    ModelConfig c = base_cfg("sm-attention");
    c.num_heads = 2;
    Model m;
    make_model(&m, &c, 6);
    transparent_block(&m);
    float *W = P(&m, "layers.0.attention.Wqkv.weight")->t.data;
    memset(W, 0, 12 * 4 * sizeof *W);
    for (int j = 0; j < 4; j++) W[j * 4 + j] = 1.0f, W[(4 + j) * 4 + j] = 2.0f;  /* k = 2 y */
    fill(P(&m, "layers.0.attention.Wqkv.bias"), 0.0f);
    const int32_t tok[2] = {3, 4};
    double y[2][4];
    ln_ref(3, y[0]), ln_ref(4, y[1]);
    double *e = paper(&m, tok, 1, 2, false);
    for (int h = 0; h < 2; h++) {
        double S00 = 0, S10 = 0, S11 = 0;
        for (int j = 2 * h; j < 2 * h + 2; j++)
            S00 += 2 * y[0][j] * y[0][j], S10 += 2 * y[1][j] * y[0][j], S11 += 2 * y[1][j] * y[1][j];
        double eta0 = exp(S00) + exp(fmax(0.0, S00)); /* one masked entry in row 0 */
        double eta1 = exp(S10) + exp(S11);            /* last row: no mask */
        ck_assert_msg(rel(e[h], eta0 / eta1) <= 2e-6, "head %d: %.10g vs %.10g", h, e[h], eta0 / eta1);
    }
    free(e);
    double *e1 = paper(&m, tok, 1, 1, false); /* T = 0: writes nothing, must not crash */
    free(e1);
    model_free(&m);
}
END_TEST

/* Linear attention: phi(q) = elu(q) + 1 = 0 exactly in float32 when q <=
 * -104 (expm1 rounds to -1), so nu_t = 0 -> 2e-23 and eig = 1 exactly;
 * otherwise eig_t = nu_t / nu_{t+1}, nu_t = phi(q_t) . sum_{s<=t} phi(k_s). */
START_TEST(test_linear_paper_by_hand_and_zero_normaliser)
{
    ModelConfig c = base_cfg("lin-attention");
    Model m;
    make_model(&m, &c, 7);
    transparent_block(&m);
    float *W = P(&m, "layers.0.attention.Wqkv.weight")->t.data, *bq = P(&m, "layers.0.attention.Wqkv.bias")->t.data;
    memset(W, 0, 12 * 4 * sizeof *W);
    for (int j = 0; j < 4; j++) W[j * 4 + j] = 1.0f, W[(4 + j) * 4 + j] = -1.0f;
    memset(bq, 0, 12 * sizeof *bq);
    enum { L = 5 };
    const int32_t tok[L] = {4, 0, 2, 1, 3};
    double y[L][4], nu[L];
    for (int t = 0; t < L; t++) ln_ref(tok[t], y[t]);
    for (int t = 0; t < L; t++) {
        nu[t] = 0;
        for (int s = 0; s <= t; s++)
            for (int j = 0; j < 4; j++) {
                double q = y[t][j], k = -y[s][j];
                nu[t] += (q > 0 ? q + 1 : exp(q)) * (k > 0 ? k + 1 : exp(k));
            }
    }
    double *e = paper(&m, tok, 1, L, false);
    for (int t = 0; t < L - 1; t++)
        ck_assert_msg(rel(e[t], nu[t] / nu[t + 1]) <= 2e-6, "t %d: %.10g vs %.10g", t, e[t], nu[t] / nu[t + 1]);
    free(e);

    /* q = -200 everywhere: phi(q) = 0, every nu is 0 -> 2e-23, eig exactly 1 */
    for (int j = 0; j < 4; j++) W[j * 4 + j] = 0.0f, bq[j] = -200.0f;
    e = paper(&m, tok, 1, L, false);
    for (int t = 0; t < L - 1; t++) ck_assert_msg(e[t] == 1.0, "t %d: %.17g", t, e[t]);
    double pct[SPECTRA_NBINS];
    spectra_percent(e, 1, 1, 1, L - 1, pct);
    ck_assert(pct[3] == 100.0 && pct[4] == 100.0); /* exactly 1: counted in [0.9,1] and [1,10] */
    free(e);
    model_free(&m);
}
END_TEST

/* Norm attention with a = n + o, n = 200 * y_0 (one row of Wvqkn), f =
 * softplus: y_0 > 0 gives m = exp(-~200) = 0 in float32 -> 2e-23, y_0 < 0
 * gives f = 0 (float32) and m = 1.  eig_t = m_{t+1} / m_t is then exactly
 * 1, 2e-23 or 1 / 2e-23.  Then moderate n: eig = exp(f(a_t) - f(a_{t+1}))
 * up to float32 rounding. */
START_TEST(test_norm_paper_zero_substitution_and_by_hand)
{
    ModelConfig c = base_cfg("norm-attention");
    transformer_options(&c)->norm_fn = NORM_FN_SOFTPLUS, transformer_options(&c)->offset = true, transformer_options(&c)->approx_fn = APPROX_ELU, transformer_options(&c)->scale_B = true, transformer_options(&c)->dim_conv = 4;
    Model m;
    make_model(&m, &c, 8);
    transparent_block(&m);
    float *W = P(&m, "layers.0.attention.Wvqkn.weight")->t.data, *bn = P(&m, "layers.0.attention.Wvqkn.bias")->t.data;
    const int nrow = 4 + 2 * 4; /* [v | q | k | n]: n is row 12 */
    for (int j = 0; j < 4; j++) W[nrow * 4 + j] = j == 0 ? 200.0f : 0.0f;
    bn[nrow] = 0.0f;
    P(&m, "layers.0.attention.inner_attn.offset")->t.data[0] = 0.5f;
    enum { L = 6 };
    const int32_t tok[L] = {0, 3, 3, 1, 3, 0}; /* y_0 > 0, < 0, < 0, > 0, < 0, > 0 */
    double *e = paper(&m, tok, 1, L, false);
    const double want[L - 1] = {1.0 / 2e-23, 1.0, 2e-23, 1.0 / 2e-23, 2e-23};
    for (int t = 0; t < L - 1; t++) ck_assert_msg(e[t] == want[t], "t %d: %.17g, expected %.17g", t, e[t], want[t]);
    free(e);

    /* moderate: n = 0.7 y_0 + 0.3 y_1 + 0.1; softplus in float64 */
    W[nrow * 4 + 0] = 0.7f, W[nrow * 4 + 1] = 0.3f, bn[nrow] = 0.1f;
    const int32_t tok2[L] = {4, 2, 0, 1, 3, 4};
    e = paper(&m, tok2, 1, L, false);
    double f[L];
    for (int t = 0; t < L; t++) {
        double y[4];
        ln_ref(tok2[t], y);
        double a = (double)0.7f * y[0] + (double)0.3f * y[1] + (double)0.1f + 0.5;
        f[t] = log1p(exp(a));
    }
    for (int t = 0; t < L - 1; t++)
        ck_assert_msg(rel(e[t], exp(f[t] - f[t + 1])) <= 1e-6, "t %d: %.10g vs %.10g", t, e[t], exp(f[t] - f[t + 1]));
    free(e);
    model_free(&m);
}
END_TEST

/* norm_fn exp with the offsets of 4 heads (4 .. 9): exp(-exp(n + o))
 * underflows in float32 for almost every step, both sides become 2e-23 and
 * the eigenvalue is exactly 1 (the reference's "nearly all 1" spectra). */
START_TEST(test_norm_exp_paper_mostly_exactly_one)
{
    ModelConfig c = base_cfg("norm-attention");
    transformer_options(&c)->norm_fn = NORM_FN_EXP, transformer_options(&c)->offset = true, c.num_heads = 4, c.hidden_dim = 8, c.state_dim = 8;
    c.num_layers = 2;
    Model m;
    make_model(&m, &c, 9);
    enum { B = 2, L = 30 };
    int32_t tok[B * L];
    for (int i = 0; i < B * L; i++) tok[i] = (i * 5 + 3) % c.vocab_size;
    double *e = paper(&m, tok, B, L, false);
    const size_t n = (size_t)B * 2 * 4 * (L - 1);
    size_t ones = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert(!isnan(e[i]) && e[i] >= 0);
        ones += e[i] == 1.0;
    }
    /* heads 1..3 (offsets >= 5.67): exp(-exp(a)) = 0 whenever a > 4.64 */
    ck_assert_msg(ones >= n / 2, "only %zu of %zu eigenvalues are exactly 1", ones, n);
    free(e);
    model_free(&m);
}
END_TEST

/* Mamba-2: in_proj's dt rows set to 0, so Delta = softplus(dt_bias) for
 * every step; eig = exp(Delta * -exp(A_log)) in float32.  With dt_bias =
 * -30 the product is -9.4e-14 and float32 exp gives exactly 1.0 (dsf,
 * in float64, gives 1 - 9.4e-14): counted in both [0.9, 1] and [1, 10]. */
START_TEST(test_mamba2_paper_float32_rounds_to_one)
{
    ModelConfig c = base_cfg("mamba2");
    c.num_heads = 2, c.hidden_dim = 4, c.state_dim = 4;
    Model m;
    make_model(&m, &c, 10);
    float *W = P(&m, "blocks.0.mamba.in_proj.weight")->t.data; /* (4 + 8 + 2, 4) */
    memset(W + (size_t)12 * 4, 0, 2 * 4 * sizeof *W);
    float *bias = P(&m, "blocks.0.mamba.dt_bias")->t.data, *A_log = P(&m, "blocks.0.mamba.A_log")->t.data;
    bias[0] = -30.0f, A_log[0] = 0.0f; /* head 0: rounds to 1 */
    bias[1] = 0.25f, A_log[1] = 1.5f;  /* head 1: exp(-softplus(0.25) e^1.5) */
    enum { B = 2, L = 5 };
    int32_t tok[B * L];
    for (int i = 0; i < B * L; i++) tok[i] = i % 7;
    double *e = paper(&m, tok, B, L, false), *d = dsf(&m, tok, B, L);
    const double h1 = exp(-log1p(exp((double)0.25f)) * exp((double)1.5f));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) {
            const size_t i0 = (size_t)b * 2 * L + t, i1 = i0 + L;
            ck_assert_msg(e[i0] == 1.0, "head 0: %.17g", e[i0]);
            ck_assert_msg(d[i0] < 1.0, "dsf head 0: %.17g", d[i0]);
            ck_assert_msg(rel(e[i1], h1) <= 2e-6, "head 1: %.10g vs %.10g", e[i1], h1);
            ck_assert(e[i1] == (double)(float)e[i1]); /* a float32 value */
        }
    double pct[B * 2 * SPECTRA_NBINS], pd[B * 2 * SPECTRA_NBINS];
    spectra_percent(e, B, 1, 2, L, pct);
    spectra_percent(d, B, 1, 2, L, pd);
    ck_assert(pct[3] == 100 && pct[4] == 100 && pd[3] == 100 && pd[4] == 0);
    free(e), free(d);
    model_free(&m);
}
END_TEST

/* Pseudo-LTI: exp(-softplus(A_h)) in float32, the same for every sample and
 * step, whatever the input; A = -2 and -8 bound the init range. */
START_TEST(test_pseudo_lti_paper_constant)
{
    ModelConfig c = base_cfg("mamba2");
    mamba2_options(&c)->pseudo_lti = true, c.num_heads = 2, c.num_layers = 2;
    Model m;
    make_model(&m, &c, 11);
    P(&m, "blocks.0.mamba.A")->t.data[0] = -2.0f, P(&m, "blocks.0.mamba.A")->t.data[1] = -8.0f;
    P(&m, "blocks.1.mamba.A")->t.data[0] = 0.5f, P(&m, "blocks.1.mamba.A")->t.data[1] = -3.25f;
    const float A[2][2] = {{-2.0f, -8.0f}, {0.5f, -3.25f}};
    enum { B = 3, L = 4 };
    int32_t tok[B * L];
    for (int i = 0; i < B * L; i++) tok[i] = (i * 3) % 7;
    double *e = paper(&m, tok, B, L, true);
    for (int b = 0; b < B; b++)
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 2; h++) {
                const double want = exp(-log1p(exp((double)A[l][h])));
                for (int t = 0; t < L; t++) {
                    const double v = e[(((size_t)b * 2 + l) * 2 + h) * L + t];
                    ck_assert_msg(rel(v, want) <= 3e-7, "l %d h %d: %.10g vs %.10g", l, h, v, want);
                    ck_assert(v == e[((size_t)l * 2 + h) * L]); /* constant over b, t */
                    ck_assert(v == (double)(float)v);           /* computed in float32 */
                }
            }
    ck_assert(fabs(e[0] - 0.8807970779778823) < 1e-7 && fabs(e[L] - 0.9996646498695336) < 1e-7);
    free(e);
    model_free(&m);
}
END_TEST

/* ------------------------------------------------------- every variant */

typedef struct PVariant {
    const char *name;
    ModelConfig c;
} PVariant;

static int paper_variants(PVariant *v)
{
    int n = 0;
    ModelConfig c;
#define ADD(nm) v[n++] = (PVariant){nm, c}
    c = base_cfg("sm-attention"), c.hidden_dim = 8, c.state_dim = 8, c.num_heads = 2, c.num_layers = 2;
    transformer_options(&c)->max_pos_embed = 40;
    ADD("sm heads 2 pos");
    transformer_options(&c)->dim_conv = 4, transformer_options(&c)->use_gate = true, transformer_options(&c)->mixer = MIXER_MLP, transformer_options(&c)->mixer_dim = 12, transformer_options(&c)->max_pos_embed = 0;
    ADD("sm conv gate mlp");
    c = base_cfg("lin-attention"), c.hidden_dim = 8, c.state_dim = 8, c.num_heads = 2, c.num_layers = 2;
    ADD("lin heads 2");
    transformer_options(&c)->dim_conv = 4, transformer_options(&c)->use_gate = true, transformer_options(&c)->mixer = MIXER_MLP, transformer_options(&c)->mixer_dim = 6;
    ADD("lin conv gate mlp");
    const NormFn fns[4] = {NORM_FN_EXP, NORM_FN_ELU, NORM_FN_SOFTPLUS, NORM_FN_SIGMOID};
    const char *fnn[4] = {"norm exp", "norm elu", "norm softplus", "norm sigmoid"};
    for (int f = 0; f < 4; f++) {
        c = base_cfg("norm-attention"), c.hidden_dim = 8, c.state_dim = 8, c.num_heads = f % 2 ? 2 : 4;
        c.num_layers = 2, transformer_options(&c)->norm_fn = fns[f], transformer_options(&c)->approx_fn = f % 2 ? APPROX_ELU : APPROX_NONE;
        transformer_options(&c)->offset = f != 3, transformer_options(&c)->scale_B = f != 1, transformer_options(&c)->dim_conv = f < 2 ? 4 : 0, transformer_options(&c)->use_gate = f == 2;
        transformer_options(&c)->mixer = f == 1 ? MIXER_MLP : MIXER_NONE, transformer_options(&c)->mixer_dim = 10;
        ADD(fnn[f]);
    }
    c = base_cfg("mamba2"), c.hidden_dim = 8, c.state_dim = 8, c.num_heads = 2, c.num_layers = 2;
    ADD("mamba2 prenorm glu");
    mamba2_options(&c)->prenorm = false;
    ADD("mamba2 postnorm");
    mamba2_options(&c)->glu = false, mamba2_options(&c)->conv_dim = 0;
    ADD("mamba2 postnorm noglu noconv");
    mamba2_options(&c)->prenorm = true, mamba2_options(&c)->glu = true, mamba2_options(&c)->conv_dim = 4, mamba2_options(&c)->pseudo_lti = true;
    ADD("mamba2 pseudo-LTI");
#undef ADD
    return n;
}

/* Every variant, at init and with dropout active (training mode, as for init
 * spectra): finite or exact saturated values, >= 0, never NaN; deterministic
 * for a given step; with dropout the blocks' outputs (so the spectra) change. */
START_TEST(test_paper_every_variant_finite_nonnegative)
{
    PVariant v[16];
    const int nv = paper_variants(v);
    for (int k = 0; k < nv; k++) {
        ModelConfig c = v[k].c;
        c.dropout = 0.3f;
        Model m;
        make_model(&m, &c, 100 + (uint64_t)k);
        enum { B = 3, L = 17 };
        int32_t tok[B * L];
        for (int i = 0; i < B * L; i++) tok[i] = (i * 13 + k) % c.vocab_size;
        const size_t n = (size_t)B * c.num_layers * c.num_heads * model_spectra_T(&m, L);
        double *ev = paper(&m, tok, B, L, false), *et = paper(&m, tok, B, L, true), *et2 = paper(&m, tok, B, L, true);
        ck_assert_msg(spectra_find_nan(ev, n) < 0 && spectra_find_nan(et, n) < 0, "%s: NaN", v[k].name);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(ev[i] >= 0 && et[i] >= 0 && isfinite(ev[i]) && isfinite(et[i]),
                          "%s: eig[%zu] = %g / %g", v[k].name, i, ev[i], et[i]);
        ck_assert_msg(memcmp(et, et2, n * sizeof *et) == 0, "%s: not deterministic", v[k].name);
        const bool dropout_matters = c.family != &mamba2_family || !mamba2_options(&c)->pseudo_lti;
        ck_assert_msg((memcmp(ev, et, n * sizeof *ev) != 0) == dropout_matters,
                      "%s: dropout %s the spectra", v[k].name, dropout_matters ? "does not change" : "changes");
        free(ev), free(et), free(et2);
        model_free(&m);
    }
}
END_TEST

/* No parameter, no gradient changed; nothing recorded on the tape even when
 * the caller's graph has gradients enabled, and that flag is restored. */
START_TEST(test_paper_changes_no_parameter_and_records_no_tape)
{
    PVariant v[16];
    const int nv = paper_variants(v);
    for (int k = 0; k < nv; k++) {
        ModelConfig c = v[k].c;
        c.dropout = 0.1f;
        Model m;
        make_model(&m, &c, 200 + (uint64_t)k);
        for (size_t i = 0; i < m.params.total; i++) m.params.grad[i] = (float)i * 0.25f;
        float *data = malloc(m.params.total * sizeof *data), *grad = malloc(m.params.total * sizeof *grad);
        memcpy(data, m.params.data, m.params.total * sizeof *data);
        memcpy(grad, m.params.grad, m.params.total * sizeof *grad);
        enum { B = 2, L = 9 };
        int32_t tok[B * L];
        for (int i = 0; i < B * L; i++) tok[i] = (i * 3 + 1) % c.vocab_size;
        Graph g;
        ck_assert(graph_init(&g, 0, 5) == 0);
        graph_begin(&g, 0, true, true);
        ModelBatch b = {.B = B, .L = L, .tokens = tok};
        double *e = malloc((size_t)B * c.num_layers * c.num_heads * L * sizeof *e);
        model_spectra_paper(&m, &g, &b, e);
        ck_assert_msg(g.tape == NULL && g.n_entries == 0, "%s: %zu tape entries", v[k].name, g.n_entries);
        ck_assert(g.grad_enabled);
        ck_assert_msg(memcmp(data, m.params.data, m.params.total * sizeof *data) == 0, "%s: parameters changed",
                      v[k].name);
        ck_assert_msg(memcmp(grad, m.params.grad, m.params.total * sizeof *grad) == 0, "%s: gradients changed",
                      v[k].name);
        graph_free(&g);
        free(e), free(data), free(grad);
        model_free(&m);
    }
}
END_TEST

/* Bit-identical spectra for 1 and 2 threads (sequences long enough that
 * the (sample, head) pairs split between threads unevenly). */
START_TEST(test_paper_bit_identical_for_1_and_2_threads)
{
    PVariant v[16];
    const int nv = paper_variants(v);
    for (int k = 0; k < nv; k++) {
        ModelConfig c = v[k].c;
        c.dropout = 0.1f;
        if (c.family == &transformer_family && transformer_options(&c)->max_pos_embed) transformer_options(&c)->max_pos_embed = 70;
        Model m;
        make_model(&m, &c, 300 + (uint64_t)k);
        enum { B = 3, L = 70 };
        int32_t tok[B * L];
        for (int i = 0; i < B * L; i++) tok[i] = (i * 7 + 2) % c.vocab_size;
        const size_t n = (size_t)B * c.num_layers * c.num_heads * model_spectra_T(&m, L);
        threads_set(1);
        double *e1 = paper(&m, tok, B, L, true);
        threads_set(2);
        double *e2 = paper(&m, tok, B, L, true);
        ck_assert_msg(memcmp(e1, e2, n * sizeof *e1) == 0, "%s: 1 vs 2 threads differ", v[k].name);
        free(e1), free(e2);
        model_free(&m);
    }
}
END_TEST

/* The hooks transformer_block_forward / mamba2_block_forward, chained from
 * the embedding and followed by the model's head, reproduce model_forward's
 * logits bit for bit (so the paper method sees the very block outputs of
 * the forward pass). */
START_TEST(test_block_hooks_reproduce_model_forward)
{
    PVariant v[16];
    const int nv = paper_variants(v);
    for (int k = 0; k < nv; k++) {
        ModelConfig c = v[k].c;
        Model m;
        make_model(&m, &c, 400 + (uint64_t)k);
        enum { B = 2, L = 11 };
        int32_t tok[B * L];
        for (int i = 0; i < B * L; i++) tok[i] = (i * 5 + 4) % c.vocab_size;
        Graph g;
        ck_assert(graph_init(&g, 0, 5) == 0);
        graph_begin(&g, 0, false, false);
        ModelBatch b = {.B = B, .L = L, .tokens = tok};
        Tensor *ref = model_forward(&m, &g, &b, NULL);
        const int shape[2] = {B, L}, d = c.hidden_dim;
        Tensor *x = op_embedding(&g, &P(&m, "encoder.word_embeddings.weight")->t, tok, 2, shape);
        if (c.family == &transformer_family && transformer_options(&c)->max_pos_embed > 0) {
            int32_t pos[B * L];
            for (int i = 0; i < B * L; i++) pos[i] = i % L;
            x = op_add(&g, x, op_embedding(&g, &P(&m, "encoder.position_embeddings.weight")->t, pos, 2, shape));
        }
        for (int i = 0; i < c.num_layers; i++)
            x = c.family == &mamba2_family ? mamba2_block_forward(&m, &g, i, x) : transformer_block_forward(&m, &g, i, x);
        Tensor *rows = tensor_reshape(&g, x, 2, (int[]){B * L, d}), *lg;
        if (c.family == &mamba2_family)
            lg = op_linear(&g, rows, &P(&m, "decoder.weight")->t, &P(&m, "decoder.bias")->t);
        else
            lg = op_linear(&g, op_layernorm(&g, rows, &P(&m, "norm.weight")->t, &P(&m, "norm.bias")->t, 1e-5f),
                           &P(&m, "decoder.weight")->t, NULL);
        ck_assert(lg->numel == ref->numel);
        ck_assert_msg(memcmp(lg->data, ref->data, lg->numel * sizeof(float)) == 0, "%s: hooks != model_forward",
                      v[k].name);
        graph_free(&g);
        model_free(&m);
    }
}
END_TEST

START_TEST(test_percent_valid_counts_only_the_valid_prefix)
{
    /* 2 samples x 1 layer x 2 heads x T 4; sample 0 has 2 valid steps, sample 1 none. */
    const double eig[16] = {0.05, 0.95, 50.0, 50.0, 0.3, 0.3, 0.3, 0.3,
                            0.05, 0.05, 0.05, 0.05, 0.7, 0.7, 0.7, 0.7};
    const int n_valid[2] = {2, 0};
    double pct[2 * 2 * SPECTRA_NBINS];
    spectra_percent_valid(eig, 2, 1, 2, 4, n_valid, pct);
    ck_assert_double_eq(pct[0], 50.0);                      /* 0.05 of 2 steps */
    ck_assert_double_eq(pct[3], 50.0);                      /* 0.95 */
    ck_assert_double_eq(pct[5], 0.0);                       /* the padded 50s do not count */
    ck_assert_double_eq(pct[SPECTRA_NBINS + 1], 100.0);     /* head 1: 0.3, 0.3 */
    for (int k = 0; k < 2 * SPECTRA_NBINS; k++) ck_assert_double_eq(pct[2 * SPECTRA_NBINS + k], 0.0);
    double all[2 * 2 * SPECTRA_NBINS], ref[2 * 2 * SPECTRA_NBINS];
    spectra_percent_valid(eig, 2, 1, 2, 4, NULL, all);
    spectra_percent(eig, 2, 1, 2, 4, ref);
    ck_assert_mem_eq(all, ref, sizeof all);
    ck_assert_double_eq(all[5], 50.0);                      /* without a mask the pads count */
}
END_TEST

Suite *suite_spectra(void)
{
    Suite *s = suite_create("spectra");
    TCase *tc = tcase_create("statistics");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bins_closed_at_both_ends_threshold_counts_twice);
    tcase_add_test(tc, test_percent_valid_counts_only_the_valid_prefix);
    tcase_add_test(tc, test_bins_inf_in_last_negative_and_nan_in_none);
    tcase_add_test(tc, test_percent_by_hand_with_double_counting);
    tcase_add_test(tc, test_percent_layout_samples_layers_heads);
    tcase_add_test(tc, test_percent_stats_population_std_by_hand);
    tcase_add_test(tc, test_find_nan);
    tcase_add_test(tc, test_phase_bins_closed_at_both_ends_negative_in_none);
    tcase_add_test(tc, test_percent_complex_radius_and_phase_by_hand);
    tcase_add_test(tc, test_lti_family_spectra_have_no_sample_axis_and_bin_over_N);
    suite_add_tcase(s, tc);
    tc = tcase_create("paper");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_softmax_paper_matches_quirky_normaliser_by_hand);
    tcase_add_test(tc, test_softmax_paper_two_heads_and_short_sequences);
    tcase_add_test(tc, test_linear_paper_by_hand_and_zero_normaliser);
    tcase_add_test(tc, test_norm_paper_zero_substitution_and_by_hand);
    tcase_add_test(tc, test_norm_exp_paper_mostly_exactly_one);
    tcase_add_test(tc, test_mamba2_paper_float32_rounds_to_one);
    tcase_add_test(tc, test_pseudo_lti_paper_constant);
    tcase_add_test(tc, test_paper_every_variant_finite_nonnegative);
    tcase_add_test(tc, test_paper_changes_no_parameter_and_records_no_tape);
    tcase_add_test(tc, test_paper_bit_identical_for_1_and_2_threads);
    tcase_add_test(tc, test_block_hooks_reproduce_model_forward);
    suite_add_tcase(s, tc);
    return s;
}
