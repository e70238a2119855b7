/* `seqeig spectra RUN.h5`: recompute the spectra of a run from its
 * checkpoint (init: the model re-initialised from the run's seed; final:
 * the checkpoint's weights) on the run's own analysis batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../models/model.h"
#include "cli.h"
#include "cli_args.h"
#include "../src/graph.h"
#include "../src/rng.h"
#include "runfile.h"
#include "spectra.h"
#include "../src/threads.h"
#include "train.h"

static void spectra_usage(FILE *f)
{
    fprintf(f,
            "usage: seqeig spectra RUN.h5 [--method dsf|paper] [--out FILE.h5] [--force] [--threads N]\n"
            "\n"
            "Recompute the eigenvalue spectra of a run from its checkpoint, on the run's own\n"
            "analysis batch (/spectra/inputs): 'init' from the model re-initialised with the\n"
            "run's seed, 'final' from the checkpoint's weights (the last saved step if the run\n"
            "is unfinished).  Prints the bin percentages; the run file is not modified.\n"
            "\n"
            "options:\n"
            "  --method M     dsf (default: the tensors the layers use) or paper (the reference\n"
            "                 analysis script's procedure, quirks included); docs/eigenvalues.md\n"
            "  --out FILE.h5  also write them to a spectra file (the /spectra layout of a run\n"
            "                 file, root attribute format = \"seqeig-spectra\")\n"
            "  --force        replace an existing --out file\n"
            "  --threads N    threads (default: OMP_NUM_THREADS, else all cores)\n"
            "  --help         this message\n");
}

static void print_table(const RunFile *r, const char *what, const RunSpectrum *s)
{
    char title[160];
    snprintf(title, sizeof title, "%s (method %s; percent of steps per bin, mean +- std over %d samples)", what,
             r->method, r->samples);
    spectra_print_table(stdout, title, s->mean, s->std, r->layers, r->heads);
}

/* Eigenvalues and statistics of the current weights into s. */
static int fill(SpectraMeter *meter, Model *m, Graph *g, bool init, RunSpectrum *s)
{
    char err[200];
    if (spectra_measure(meter, m, g, init, s->eig, s->mean, s->std, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s\n", err);
        return -1;
    }
    s->present = true;
    return 0;
}

int cmd_spectra(int argc, char **argv)
{
    const char *path = NULL, *out = NULL, *method_name = "dsf";
    bool force = false;
    long long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            spectra_usage(stdout);
            return 0;
        } else if (strcmp(a, "--method") == 0 || strcmp(a, "--out") == 0 || strcmp(a, "--threads") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "seqeig spectra: %s needs a value (see seqeig spectra --help)\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (a[2] == 'm') method_name = v;
            else if (a[2] == 'o') out = v;
            else if (cli_parse_int(v, 1, 1024, &threads)) {
                fprintf(stderr, "seqeig spectra: --threads '%s': expected an integer in [1, 1024]\n", v);
                return 2;
            }
        } else if (strcmp(a, "--force") == 0) {
            force = true;
        } else if (a[0] == '-') {
            fprintf(stderr, "seqeig spectra: unknown option '%s' (see seqeig spectra --help)\n", a);
            return 2;
        } else if (path) {
            fprintf(stderr, "seqeig spectra: one run file at a time (got '%s' and '%s')\n", path, a);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        fprintf(stderr, "seqeig spectra: which run file? (usage: seqeig spectra RUN.h5 [--method M])\n");
        return 2;
    }
    const int method = spectra_method_parse(method_name);
    if (method < 0) {
        fprintf(stderr, "seqeig spectra: --method '%s': unknown method (allowed: dsf, paper)\n", method_name);
        return 2;
    }
    if (out && (!*out || strlen(out) > 4000)) {
        fprintf(stderr, "seqeig spectra: --out '%.60s%s': %s\n", out, strlen(out) > 60 ? "..." : "",
                *out ? "a path longer than 4000 characters" : "needs a file name");
        return 2;
    }
    if (out && !force && access(out, F_OK) == 0) {
        fprintf(stderr, "seqeig spectra: %s exists; refusing to overwrite it (--force replaces it)\n", out);
        return 2;
    }
    threads_set((int)threads);

    RunFile r;
    char err[1200];
    int rc = 2;
    if (runfile_load(&r, path, NULL, NULL, NULL, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s\n", err);
        runfile_free(&r);
        return 2;
    }
    ConfigSchema schema;
    run_schema_build(&schema);
    Config c;
    char label[1100];
    snprintf(label, sizeof label, "%s:/config/yaml", path);
    ModelConfig mc;
    Model m;
    bool have_model = false, have_graph = false, have_meter = false;
    Graph g;
    SpectraMeter meter;
    if (config_load_yaml_text(&c, &schema, r.config_yaml, label, err, sizeof err) ||
        model_keys_to_config(&c, &mc, err, sizeof err) || model_create(&m, &mc, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s: the run's configuration does not build a model: %s\n", path, err);
        goto done;
    }
    have_model = true;
    if (r.samples == 0 || model_spectra_T(&m, r.L) != r.T) {
        fprintf(stderr, "seqeig: %s: no usable analysis batch in /spectra/inputs\n", path);
        goto done;
    }
    if (mc.input_dim != r.input_dim) {
        if (mc.input_dim == 0)
            fprintf(stderr, "seqeig: %s: the model reads tokens but the file has /spectra/features\n", path);
        else
            fprintf(stderr, "seqeig: %s: the model reads %d float features per position but /spectra/features %s\n",
                    path, mc.input_dim, r.features ? "has another width" : "is missing");
        goto done;
    }
    if (mc.input_dim == 0) /* the embedding would stop the program on a token outside the vocabulary */
        for (size_t i = 0; i < (size_t)r.samples * r.L; i++)
            if (r.inputs[i] < 0 || r.inputs[i] >= mc.vocab_size) {
                fprintf(stderr,
                        "seqeig: %s: /spectra/inputs holds token %d (sample %zu, position %zu), outside the model's "
                        "vocabulary of %d\n",
                        path, (int)r.inputs[i], i / (size_t)r.L, i % (size_t)r.L, mc.vocab_size);
                goto done;
            }
    rc = 1;
    if (graph_init(&g, (size_t)64 << 20, rng_derive_key((uint64_t)r.seed, RNG_DROPOUT, 0))) goto done;
    have_graph = true;
    snprintf(r.method, sizeof r.method, "%s", method_name);
    const ModelBatch mb = {.B = r.samples, .L = r.L, .tokens = r.inputs, .features = r.features, .mask = r.mask};
    if (spectra_meter_init(&meter, &m, (SpectraMethod)method, &mb)) goto done;
    have_meter = true;
    model_init(&m, (uint64_t)r.seed);
    if (fill(&meter, &m, &g, true, &r.init)) goto done;
    RunFile ck;
    if (runfile_load(&ck, path, &m.params, NULL, NULL, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s\n", err);
        runfile_free(&ck);
        rc = 2;
        goto done;
    }
    runfile_free(&ck);
    if (fill(&meter, &m, &g, false, &r.final)) goto done;
    printf("%s: %s on %s, seed %lld, checkpoint at step %lld (%s)\n\n", path, r.model, r.task, (long long)r.seed,
           (long long)r.step, r.status);
    print_table(&r, "init", &r.init);
    printf("\n");
    print_table(&r, "final", &r.final);
    if (out) {
        r.n_hist = 0; /* history belongs to the training-time method */
        if (runfile_save_spectra(&r, out, path, err, sizeof err)) {
            fprintf(stderr, "seqeig: %s\n", err);
            goto done;
        }
        printf("\nwritten to %s\n", out);
    }
    rc = 0;
done:
    if (have_meter) spectra_meter_free(&meter);
    if (have_graph) graph_free(&g);
    if (have_model) model_free(&m);
    config_free(&c);
    config_schema_free(&schema);
    runfile_free(&r);
    return rc;
}
