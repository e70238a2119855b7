/* The trainer (docs/training.md): AdamW + global-norm clipping + warmup/cosine
 * schedule, evaluation on the full test set every `train.eval_every`
 * steps, early stop, eigenvalue spectra at init / every evaluation / the
 * end, and the run file (app/runfile.h) written after every evaluation.
 *
 * It drives any model through models/model.h and any task through
 * tasks/task.h; it knows no particular model or task.
 *
 * Resuming: everything a step depends on (data, dropout masks, learning
 * rate) is a function of (seed, step), and the run file's checkpoint holds
 * the parameters, the AdamW moments and the loss accumulator, so a resumed
 * run continues bit-identically to an uninterrupted one (same threads). */
#ifndef SEQEIG_TRAIN_H
#define SEQEIG_TRAIN_H

#include <stdbool.h>

#include "../src/config.h"

/* Exit codes of the CLI (and return values of train_run). */
#define EXIT_OK 0
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130

typedef struct TrainOptions {
    const char *out;      /* run file path */
    int threads;          /* as resolved by threads_set */
    bool resume;          /* continue an unfinished run at `out` (fresh start if none) */
    bool force;           /* replace whatever is at `out` */
    bool quiet;           /* no progress output */
    long long max_steps;  /* stop (as if interrupted) after this many steps in this session; < 0: no limit (tests) */
} TrainOptions;

/* Register train.* and spectra.* keys (plus the top-level names of the
 * reference configs: `seed` sets train.seed, `save` is ignored). */
void train_keys_register(ConfigSchema *s);

/* The schema of a run config: train, spectra, dataset (every task) and
 * model keys. */
void run_schema_build(ConfigSchema *s);

/* Train as configured.  Returns one of the exit codes above; messages go
 * to stderr. */
int train_run(const Config *c, const TrainOptions *o);

#endif
