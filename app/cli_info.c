/* `seqeig info RUN.h5`: a readable summary of a run file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runfile.h"
#include "spectra.h"

static void info_usage(FILE *f)
{
    fprintf(f,
            "usage: seqeig info RUN.h5 [--config | --status]\n"
            "\n"
            "Print a summary of a run file: identity, status, progress, the evaluations,\n"
            "and the bin percentages of the spectra at init and at the end.\n"
            "\n"
            "options:\n"
            "  --config   print the run's resolved configuration (YAML) only\n"
            "  --status   print the status word only (running, completed, stopped_early, failed)\n"
            "  --help     this message\n");
}

static void print_bins(const RunFile *r, const char *what, const double *mean, const double *std)
{
    char title[160];
    snprintf(title, sizeof title, "\n%s (percent of steps per bin, mean +- std over %d samples):", what, r->samples);
    spectra_print_table(stdout, title, mean, std, r->layers, r->heads);
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    bool only_config = false, only_status = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            info_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--config") == 0) {
            only_config = true;
        } else if (strcmp(argv[i], "--status") == 0) {
            only_status = true;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "seqeig info: unknown option '%s' (see seqeig info --help)\n", argv[i]);
            return 2;
        } else if (path) {
            fprintf(stderr, "seqeig info: one run file at a time (got '%s' and '%s')\n", path, argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "seqeig info: which run file? (usage: seqeig info RUN.h5)\n");
        return 2;
    }
    RunFile r;
    char err[1200];
    if (only_status) {
        int rc = runfile_peek(&r, path, err, sizeof err);
        if (rc == 0) printf("%s\n", r.status);
        else fprintf(stderr, "seqeig: %s\n", err);
        runfile_free(&r);
        return rc ? 2 : 0;
    }
    if (runfile_load(&r, path, NULL, NULL, NULL, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s\n", err);
        runfile_free(&r);
        return 2;
    }
    if (only_config) {
        fputs(r.config_yaml, stdout);
        runfile_free(&r);
        return 0;
    }
    printf("%s\n", path);
    printf("  task %s, model %s, seed %lld\n", r.task, r.model, (long long)r.seed);
    printf("  status %s at step %lld of %lld", r.status, (long long)r.step, (long long)r.total_steps);
    if (strcmp(r.status, "running") == 0) printf(" (unfinished: continue with seqeig train --resume)");
    printf("\n");
    if (r.error[0]) printf("  error: %s\n", r.error);
    printf("  training time %.1f s, %lld threads, written by seqeig %s\n", r.wall_s, (long long)r.threads,
           r.version);
    printf("  created %s, updated %s\n", r.created, r.updated);
    if (r.n_eval) {
        size_t best = 0;
        for (size_t i = 1; i < r.n_eval; i++)
            if (r.eval_test_acc[i] > r.eval_test_acc[best]) best = i;
        printf("\nevaluations: %zu (best test_acc %.4f at step %lld)\n", r.n_eval, r.eval_test_acc[best],
               (long long)r.eval_step[best]);
        printf("  %8s %11s %10s %9s %10s %9s\n", "step", "train_loss", "test_loss", "test_acc", "lr", "wall_s");
        size_t from = r.n_eval > 10 ? r.n_eval - 10 : 0;
        if (from) printf("  %8s\n", "...");
        for (size_t i = from; i < r.n_eval; i++)
            printf("  %8lld %11.4f %10.4f %9.4f %10.3g %9.1f\n", (long long)r.eval_step[i], r.eval_train_loss[i],
                   r.eval_test_loss[i], r.eval_test_acc[i], r.eval_lr[i], r.eval_wall[i]);
    } else {
        printf("\nno evaluation yet\n");
    }
    printf("\nspectra: method %s, %d samples, %d layers, %d heads, %d steps per sequence\n", r.method, r.samples,
           r.layers, r.heads, r.T);
    if (r.init.present) print_bins(&r, "init", r.init.mean, r.init.std);
    if (r.final.present) {
        print_bins(&r, "final", r.final.mean, r.final.std);
    } else if (r.n_hist) {
        size_t last = (r.n_hist - 1) * (size_t)r.layers * r.heads * SPECTRA_NBINS;
        print_bins(&r, "latest evaluation", r.hist_mean + last, r.hist_std + last);
    }
    runfile_free(&r);
    return 0;
}
