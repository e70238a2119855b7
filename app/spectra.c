/* Spectra: measuring, bins, percentages, mean and std (spectra.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spectra.h"

const double spectra_thresholds[SPECTRA_NTHRESH] = {0.1, 0.5, 0.9, 1.0, 10.0, 100.0};

void spectra_bins_of(double r, int flags[SPECTRA_NBINS])
{
    const double *th = spectra_thresholds;
    flags[0] = r >= 0.0 && r <= th[0];
    for (int k = 1; k < SPECTRA_NTHRESH; k++) flags[k] = r >= th[k - 1] && r <= th[k];
    flags[SPECTRA_NBINS - 1] = r > th[SPECTRA_NTHRESH - 1];
}

const double spectra_phase_thresholds[SPECTRA_NPHASE_THRESH] = {1.0, 10.0, 45.0, 90.0, 180.0};

void spectra_phase_bins_of(double deg, int flags[SPECTRA_NPHASE_BINS])
{
    const double *th = spectra_phase_thresholds;
    flags[0] = deg >= 0.0 && deg <= th[0];
    for (int k = 1; k < SPECTRA_NPHASE_THRESH; k++) flags[k] = deg >= th[k - 1] && deg <= th[k];
    flags[SPECTRA_NPHASE_BINS - 1] = deg > th[SPECTRA_NPHASE_THRESH - 1];
}

void spectra_percent_complex(const double *eig, int Ly, int H, int N, double *radius_pct, double *phase_pct)
{
    const double to_deg = 180.0 / 3.14159265358979323846;
    for (size_t s = 0; s < (size_t)Ly * H; s++) {
        int rc[SPECTRA_NBINS] = {0}, pc[SPECTRA_NPHASE_BINS] = {0};
        for (int j = 0; j < N; j++) {
            const double re = eig[(s * N + j) * 2], im = eig[(s * N + j) * 2 + 1];
            int f[SPECTRA_NBINS], g[SPECTRA_NPHASE_BINS];
            spectra_bins_of(hypot(re, im), f);
            spectra_phase_bins_of(atan2(im, re) * to_deg, g);
            for (int k = 0; k < SPECTRA_NBINS; k++) rc[k] += f[k];
            for (int k = 0; k < SPECTRA_NPHASE_BINS; k++) pc[k] += g[k];
        }
        for (int k = 0; k < SPECTRA_NBINS; k++) radius_pct[s * SPECTRA_NBINS + k] = N > 0 ? 100.0 * rc[k] / N : 0.0;
        if (phase_pct)
            for (int k = 0; k < SPECTRA_NPHASE_BINS; k++)
                phase_pct[s * SPECTRA_NPHASE_BINS + k] = N > 0 ? 100.0 * pc[k] / N : 0.0;
    }
}

void spectra_percent(const double *eig, int S, int Ly, int H, int T, double *pct)
{
    spectra_percent_valid(eig, S, Ly, H, T, NULL, pct);
}

void spectra_percent_valid(const double *eig, int S, int Ly, int H, int T, const int *n_valid, double *pct)
{
    size_t series = (size_t)S * (size_t)Ly * (size_t)H, per_sample = (size_t)Ly * (size_t)H;
    for (size_t s = 0; s < series; s++) {
        const double *e = eig + s * (size_t)T;
        int n = n_valid ? n_valid[s / per_sample] : T;
        if (n > T) n = T;
        int count[SPECTRA_NBINS] = {0};
        for (int t = 0; t < n; t++) {
            int f[SPECTRA_NBINS];
            spectra_bins_of(e[t], f);
            for (int k = 0; k < SPECTRA_NBINS; k++) count[k] += f[k];
        }
        for (int k = 0; k < SPECTRA_NBINS; k++)
            pct[s * SPECTRA_NBINS + (size_t)k] = n > 0 ? 100.0 * count[k] / n : 0.0;
    }
}

void spectra_percent_stats(const double *pct, int S, int Ly, int H, double *mean, double *std)
{
    size_t per = (size_t)Ly * (size_t)H * SPECTRA_NBINS;
    for (size_t j = 0; j < per; j++) {
        double sum = 0.0;
        for (int s = 0; s < S; s++) sum += pct[(size_t)s * per + j];
        double mu = S > 0 ? sum / S : 0.0;
        double ss = 0.0;
        for (int s = 0; s < S; s++) {
            double d = pct[(size_t)s * per + j] - mu;
            ss += d * d;
        }
        mean[j] = mu;
        std[j] = S > 0 ? sqrt(ss / S) : 0.0;
    }
}

long spectra_find_nan(const double *eig, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(eig[i])) return (long)i;
    return -1;
}

void spectra_print_table(FILE *f, const char *title, const double *mean, const double *std, int Ly, int H)
{
    static const char *const labels[SPECTRA_NBINS] = {"[0,.1]", "[.1,.5]", "[.5,.9]", "[.9,1]",
                                                      "[1,10]", "[10,100]", ">100"};
    fprintf(f, "%s\n  %-12s", title, "layer/head");
    for (int k = 0; k < SPECTRA_NBINS; k++) fprintf(f, " %13s", labels[k]);
    fprintf(f, "\n");
    for (int l = 0; l < Ly; l++)
        for (int h = 0; h < H; h++) {
            fprintf(f, "  %5d/%-6d", l, h);
            for (int k = 0; k < SPECTRA_NBINS; k++) {
                size_t i = ((size_t)l * H + h) * SPECTRA_NBINS + k;
                fprintf(f, " %6.1f+-%5.1f", mean[i], std[i]);
            }
            fprintf(f, "\n");
        }
}

/* ------------------------------------------------------------ measuring */

const char *const spectra_method_names[] = {"dsf", "paper", NULL};

int spectra_method_parse(const char *name)
{
    if (strcmp(name, "dsf") == 0) return SPECTRA_DSF;
    if (strcmp(name, "paper") == 0) return SPECTRA_PAPER;
    return -1;
}

int spectra_meter_init(SpectraMeter *s, const Model *m, SpectraMethod method, const ModelBatch *batch)
{
    memset(s, 0, sizeof *s);
    s->method = method;
    s->batch = *batch;
    s->shape = model_spectra_shape(m, batch->L);
    const bool lti = s->shape.kind == SPECTRA_LTI;
    s->samples = lti ? 1 : batch->B;
    s->pct = malloc((spectra_meter_bin_count(s) * (size_t)s->samples + 1) * sizeof(double));
    if (!s->pct) return -1;
    if (batch->mask && method == SPECTRA_DSF && !lti) {
        /* valid positions are a prefix: the steps of each sample's valid part */
        s->n_valid = malloc(((size_t)s->samples + 1) * sizeof(int));
        if (!s->n_valid) return -1;
        const int L = batch->L;
        for (int i = 0; i < s->samples; i++) {
            int n = 0;
            while (n < L && batch->mask[(size_t)i * L + n] != 0.0f) n++;
            s->n_valid[i] = model_spectra_shape(m, n).steps;
        }
    }
    return 0;
}

void spectra_meter_free(SpectraMeter *s)
{
    free(s->n_valid);
    free(s->pct);
    memset(s, 0, sizeof *s);
}

size_t spectra_meter_eig_count(const SpectraMeter *s)
{
    return (size_t)s->samples * s->shape.layers * s->shape.systems * s->shape.steps * (s->shape.complex ? 2 : 1);
}

size_t spectra_meter_bin_count(const SpectraMeter *s)
{
    return (size_t)s->shape.layers * s->shape.systems * SPECTRA_NBINS;
}

int spectra_measure(SpectraMeter *s, Model *m, Graph *g, bool init, double *eig, double *mean, double *std,
                    char *err, size_t errlen)
{
    model_eigenvalues(m, g, &s->batch, s->method, init, eig);
    const long bad = spectra_find_nan(eig, spectra_meter_eig_count(s));
    if (bad >= 0) {
        snprintf(err, errlen, "internal error: NaN eigenvalue (flat index %ld of the spectra)", bad);
        return -1;
    }
    const SpectraShape *sh = &s->shape;
    if (sh->complex) { /* LTI, (layers, systems, N, 2) */
        spectra_percent_complex(eig, sh->layers, sh->systems, sh->steps, mean, NULL);
        memset(std, 0, spectra_meter_bin_count(s) * sizeof(double));
        return 0;
    }
    spectra_percent_valid(eig, s->samples, sh->layers, sh->systems, sh->steps, s->n_valid, s->pct);
    spectra_percent_stats(s->pct, s->samples, sh->layers, sh->systems, mean, std);
    return 0;
}
