/* Eigenvalue statistics: bins, percentages, mean and std (spectra.h). */
#include <math.h>

#include "spectra.h"

const double spectra_thresholds[SPECTRA_NTHRESH] = {0.1, 0.5, 0.9, 1.0, 10.0, 100.0};

void spectra_bins_of(double r, int flags[SPECTRA_NBINS])
{
    const double *th = spectra_thresholds;
    flags[0] = r >= 0.0 && r <= th[0];
    for (int k = 1; k < SPECTRA_NTHRESH; k++) flags[k] = r >= th[k - 1] && r <= th[k];
    flags[SPECTRA_NBINS - 1] = r > th[SPECTRA_NTHRESH - 1];
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
