/* The run file (docs/hdf5-format.md): everything a run records,
 * held in memory and written as a whole.
 *
 * runfile_save writes the complete file to "<path>.tmp", flushes it to
 * disk and renames it over <path>, so the file on disk is always a
 * complete run file (from before or after the write) and no HDF5 lock is
 * held between writes: h5py can read it while the run goes and after a
 * kill.  runfile_load reads a file back for --resume, `seqeig info` and
 * `seqeig spectra`. */
#ifndef SEQEIG_RUNFILE_H
#define SEQEIG_RUNFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../src/config.h"
#include "h5util.h"
#include "../src/param.h"

#define RUNFILE_FORMAT "seqeig-run"
#define RUNFILE_FORMAT_VERSION 1

/* Bounds a file's sizes must respect to be read (larger ones are damage):
 * steps of a run, one dimension of a spectra array, and its elements. */
#define RUNFILE_MAX_STEPS (INT64_C(1) << 40)
#define RUNFILE_MAX_DIM (1 << 24)
#define RUNFILE_MAX_ELEMENTS (INT64_C(1) << 32)

typedef struct RunSpectrum {
    bool present;
    double *eig;            /* (samples, layers, heads, T) */
    double *mean, *std;     /* (layers, heads, 7) */
} RunSpectrum;

typedef struct RunFile {
    /* root attributes */
    char task[32], model[32], status[16], created[32], updated[32];
    char error[256];
    char version[32];       /* seqeig_version of the file (on load) */
    int64_t seed, threads, step, total_steps;
    double wall_s;

    /* /config */
    char *config_yaml;            /* owned */
    const Config *config;         /* for the per-key attributes when saving (not owned; may be NULL on load) */

    /* /metrics/eval and /metrics/train */
    size_t n_eval, cap_eval;
    int64_t *eval_step;
    double *eval_train_loss, *eval_test_loss, *eval_test_acc, *eval_lr, *eval_wall;
    size_t n_train, cap_train;
    int64_t *train_step;
    double *train_loss, *train_lr, *train_grad_norm;

    /* /spectra */
    char method[8];
    int samples, layers, heads, T, L;
    int32_t *inputs;              /* (samples, L) */
    float *mask;                  /* (samples, L) validity of padded inputs, or NULL (none padded) */
    int input_dim;                /* > 0: the model read float features */
    float *features;              /* (samples, L, input_dim) those features, or NULL (token inputs) */
    RunSpectrum init, final;
    size_t n_hist, cap_hist;      /* == n_eval */
    int64_t *hist_step;
    double *hist_mean, *hist_std; /* (n_hist, layers, heads, 7) */

    /* /checkpoint (attributes; parameters and moments are passed to save/load) */
    double loss_sum;
    int64_t loss_count;
    int64_t opt_step;
} RunFile;

void runfile_init(RunFile *r);
void runfile_free(RunFile *r);

/* Shapes of the spectra; allocates inputs and the init/final arrays. */
int runfile_set_spectra_shape(RunFile *r, const char *method, int samples, int layers, int heads,
                              int T, int L);

/* Append rows (grow as needed).  Return 0, or -1 when out of memory. */
int runfile_add_eval(RunFile *r, int64_t step, double train_loss, double test_loss, double test_acc,
                     double lr, double wall_s, const double *pct_mean, const double *pct_std);
int runfile_add_train(RunFile *r, int64_t step, double loss, double lr, double grad_norm);

/* Current UTC time as ISO 8601 into buf. */
void runfile_utc_now(char *buf, size_t n);

/* Write the whole file atomically (see above).  `ps` and the AdamW moments
 * m, v (ps->total floats each, flat ParamSet layout; NULL to omit the
 * optimizer) form the checkpoint. */
int runfile_save(RunFile *r, const char *path, const ParamSet *ps, const float *m, const float *v,
                 char *err, size_t errlen);

/* Where a file written "to path" goes: path itself, or the file a symlink
 * at path points to (so the link stays and its target is updated).  A
 * directory, device, FIFO or socket is never replaced: -1 + message.
 * target gets the path (n bytes); 0 on success. */
int runfile_write_target(const char *path, char *target, size_t n, char *err, size_t errlen);

/* A spectra-only file (`seqeig spectra --out`): root attributes format =
 * "seqeig-spectra", source (the run file), task, model, seed, step, and
 * the /spectra group of a run file (without history if n_hist = 0). */
#define RUNFILE_SPECTRA_FORMAT "seqeig-spectra"
int runfile_save_spectra(RunFile *r, const char *path, const char *source, char *err, size_t errlen);

/* Read a run file.  With ps non-NULL, the checkpoint parameters are read
 * into ps (every parameter must be present with its shape), and with m, v
 * non-NULL the AdamW moments too.  Returns 0, or -1 with a message. */
int runfile_load(RunFile *r, const char *path, ParamSet *ps, float *m, float *v, char *err,
                 size_t errlen);

/* Only the root attributes (status, step, ...): cheap check of a path.
 * Returns 0, or -1 (err says why: missing, not HDF5, not a run file). */
int runfile_peek(RunFile *r, const char *path, char *err, size_t errlen);

#endif
