/* Spectra: measuring the eigenvalues of a model (method dsf or paper),
 * checking them, counting the valid steps of padded inputs, binning and
 * statistics, in one place for the trainer and `seqeig spectra`
 * (docs/eigenvalues.md).
 *
 * Eigenvalue arrays have the model's SpectraShape (models/model.h,
 * docs/eigenvalues.md "Two shapes"):
 *   per step  float64 (samples S, layers Ly, heads H, steps T) in row-major
 *             order, as models hand them out; the radius r of an eigenvalue
 *             is its value (all are real and >= 0);
 *   LTI       float64 (layers Ly, systems H, N, 2): N complex eigenvalues
 *             (re, im) per layer and system, no sample axis; the radius is
 *             |lambda|, and each value also has a phase (phase bins below).
 *
 * Seven bins with the reference thresholds [0.1, 0.5, 0.9, 1, 10, 100]:
 *   0: 0 <= r <= 0.1    1: 0.1 <= r <= 0.5   2: 0.5 <= r <= 0.9
 *   3: 0.9 <= r <= 1    4: 1 <= r <= 10      5: 10 <= r <= 100    6: r > 100
 * closed at both ends as the reference analysis script codes them, so a
 * value exactly on a threshold counts in both neighbouring bins; +inf
 * counts in bin 6, a negative value in none.  A NaN eigenvalue is a bug:
 * spectra_check_finite_or_inf reports it.
 *
 * Per (sample, layer, head) the percentage of the T steps in each bin;
 * then the mean and the population standard deviation (ddof 0) over the
 * samples, each of shape (Ly, H, 7).  Sums run in a fixed order. */
#ifndef SEQEIG_SPECTRA_H
#define SEQEIG_SPECTRA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "../models/model.h"

#define SPECTRA_NBINS 7
#define SPECTRA_NTHRESH 6

extern const double spectra_thresholds[SPECTRA_NTHRESH];

/* Which bins r falls in: flags[k] = 1 if r is in bin k (0, 1 or 2 bins). */
void spectra_bins_of(double r, int flags[SPECTRA_NBINS]);

/* pct (S, Ly, H, 7): percentage of steps per bin. */
void spectra_percent(const double *eig, int S, int Ly, int H, int T, double *pct);

/* The same when sample s has only its first n_valid[s] (<= T) steps
 * valid (padded sequences); a sample with no valid step gets 0 in every
 * bin.  n_valid == NULL means all T. */
void spectra_percent_valid(const double *eig, int S, int Ly, int H, int T, const int *n_valid, double *pct);

/* Phase bins of complex eigenvalues, thresholds [1, 10, 45, 90, 180]
 * degrees, phase = atan2(im, re) in (-180, 180]: 0: [0, 1], 1: [1, 10],
 * 2: [10, 45], 3: [45, 90], 4: [90, 180], 5: > 180 (never filled: the
 * reference's last bin); closed at both ends like the radius bins, a
 * negative phase (the conjugate half) in none. */
#define SPECTRA_NPHASE_BINS 6
#define SPECTRA_NPHASE_THRESH 5
extern const double spectra_phase_thresholds[SPECTRA_NPHASE_THRESH];
void spectra_phase_bins_of(double degrees, int flags[SPECTRA_NPHASE_BINS]);

/* LTI spectra eig (Ly, H, N, 2): per (layer, system) the percentage of its
 * N eigenvalues in each radius bin, radius_pct (Ly, H, 7), and, if
 * phase_pct is non-NULL, in each phase bin, phase_pct (Ly, H, 6). */
void spectra_percent_complex(const double *eig, int Ly, int H, int N, double *radius_pct, double *phase_pct);

/* mean, std (Ly, H, 7) over the S samples of pct (S, Ly, H, 7). */
void spectra_percent_stats(const double *pct, int S, int Ly, int H, double *mean, double *std);

/* Print mean +- std (Ly, H, 7) as a table, one row per layer/head,
 * under the line `title` (labels of the 7 bins as column heads). */
void spectra_print_table(FILE *f, const char *title, const double *mean, const double *std, int Ly, int H);

/* Index of the first NaN in eig[0..n), or -1 if there is none. */
long spectra_find_nan(const double *eig, size_t n);

/* ------------------------------------------------------------ measuring */

/* "dsf" / "paper" -> SpectraMethod; -1 for an unknown name. */
int spectra_method_parse(const char *name);
/* The method names, NULL-terminated (for the spectra.method config key). */
extern const char *const spectra_method_names[];

/* What one analysis needs besides the model: the batch the eigenvalues
 * are computed on, the method, the shape, and which steps count. */
typedef struct SpectraMeter {
    SpectraMethod method;
    ModelBatch batch;        /* the analysis batch (not owned) */
    SpectraShape shape;      /* of batch.L */
    int samples;             /* batch.B (per step); 1 for input-independent (LTI) spectra */
    /* Padded inputs: the valid steps of each sample.  Method dsf bins only
     * those; method paper keeps the reference's time axis, pads included
     * (n_valid NULL). */
    int *n_valid;
    double *pct;             /* (samples, layers, systems, 7) work space */
} SpectraMeter;

/* Set up a meter for model m on `batch` (held by the caller for the
 * meter's life).  Returns 0, or -1 when out of memory. */
int spectra_meter_init(SpectraMeter *s, const Model *m, SpectraMethod method, const ModelBatch *batch);
void spectra_meter_free(SpectraMeter *s);
/* Elements of the eigenvalue array and of each bin statistic. */
size_t spectra_meter_eig_count(const SpectraMeter *s);
size_t spectra_meter_bin_count(const SpectraMeter *s);

/* Eigenvalues of m's current weights on the meter's batch into eig, their
 * bin percentages' mean and std over the samples into mean, std (layers,
 * systems, 7); LTI spectra: the percentages over the N eigenvalues of each
 * system into mean, std 0 (input-independent: nothing varies).  `init` selects the reference's init-time setting where the
 * method has one (model_eigenvalues).  Returns 0, or -1 with a message
 * when an eigenvalue is NaN (a bug, never a result). */
int spectra_measure(SpectraMeter *s, Model *m, Graph *g, bool init, double *eig, double *mean, double *std,
                    char *err, size_t errlen);

#endif
