/* `seqeig train`: parse flags, resolve the config, run the trainer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cli_args.h"
#include "../models/model.h"
#include "../src/config.h"
#include "../src/threads.h"
#include "train.h"

static void train_usage(FILE *f)
{
    fprintf(f,
            "usage: seqeig train --config FILE.yaml [options]\n"
            "\n"
            "Train the model of FILE.yaml on its task and write the run file.\n"
            "\n"
            "options:\n"
            "  --config FILE      YAML config with dataset:, train:, model: (and spectra:) sections\n"
            "  --seed N           run seed (overrides train.seed / top-level seed:)\n"
            "  --out FILE.h5      run file (default results/<task>/<model>/seed<N>.h5)\n"
            "  --set KEY=VALUE    override one config key, e.g. --set train.lr=1e-3 (repeatable)\n"
            "  --threads N        threads (default: OMP_NUM_THREADS, else all cores)\n"
            "  --resume           continue the unfinished run in --out (a finished run is left\n"
            "                     as is; no file: start a new run)\n"
            "  --force            replace whatever is in --out (also a finished run)\n"
            "  --max-steps N      stop after N steps of this session, saving a resumable checkpoint\n"
            "  --quiet            no progress output\n"
            "  --help             this message\n"
            "\n"
            "The run file is rewritten atomically after every evaluation, so it can be read\n"
            "while training runs; Ctrl-C saves a checkpoint that --resume continues from.\n");
}

/* mkdir -p of the directory part of path. */
static int make_parent_dirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return 0;
}

/* Whether the config file set any key of `section` (an empty file, or one
 * without the section, would otherwise train on defaults alone). */
static bool file_sets_section(const Config *c, const char *section)
{
    const size_t n = strlen(section);
    for (int i = 0; i < config_count(c); i++) {
        const ConfigItem it = config_item(c, i);
        if (it.source == CONFIG_FROM_FILE && strncmp(it.key, section, n) == 0 && it.key[n] == '.') return true;
    }
    return false;
}

int cmd_train(int argc, char **argv)
{
    const char *config_path = NULL, *out = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    long long seed = -1, threads = 0, max_steps = -1;
    TrainOptions o = {0};
    int rc = 2;
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has_val = i + 1 < argc;
#define NEED_VALUE()                                                         \
    do {                                                                     \
        if (!has_val) {                                                      \
            fprintf(stderr, "seqeig train: %s needs a value (see seqeig train --help)\n", a); \
            goto done;                                                       \
        }                                                                    \
    } while (0)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            train_usage(stdout);
            rc = 0;
            goto done;
        } else if (strcmp(a, "--config") == 0) {
            NEED_VALUE();
            config_path = argv[++i];
        } else if (strcmp(a, "--out") == 0) {
            NEED_VALUE();
            out = argv[++i];
        } else if (strcmp(a, "--set") == 0) {
            NEED_VALUE();
            sets[n_sets++] = argv[++i];
        } else if (strcmp(a, "--seed") == 0) {
            NEED_VALUE();
            if (cli_parse_int(argv[++i], 0, 2147483647LL, &seed)) {
                fprintf(stderr, "seqeig train: --seed '%s': expected an integer in [0, 2147483647]\n", argv[i]);
                goto done;
            }
        } else if (strcmp(a, "--threads") == 0) {
            NEED_VALUE();
            if (cli_parse_int(argv[++i], 1, 1024, &threads)) {
                fprintf(stderr, "seqeig train: --threads '%s': expected an integer in [1, 1024]\n", argv[i]);
                goto done;
            }
        } else if (strcmp(a, "--max-steps") == 0) {
            NEED_VALUE();
            if (cli_parse_int(argv[++i], 1, 1LL << 40, &max_steps)) {
                fprintf(stderr, "seqeig train: --max-steps '%s': expected a positive integer\n", argv[i]);
                goto done;
            }
        } else if (strcmp(a, "--resume") == 0) {
            o.resume = true;
        } else if (strcmp(a, "--force") == 0) {
            o.force = true;
        } else if (strcmp(a, "--quiet") == 0) {
            o.quiet = true;
        } else {
            fprintf(stderr, "seqeig train: unknown option '%s' (see seqeig train --help)\n", a);
            goto done;
        }
#undef NEED_VALUE
    }
    if (!config_path) {
        fprintf(stderr, "seqeig train: --config FILE.yaml is required (see seqeig train --help)\n");
        goto done;
    }
    if (out && (!*out || strlen(out) > 4000)) {
        fprintf(stderr, "seqeig train: --out '%.60s%s': %s\n", out, strlen(out) > 60 ? "..." : "",
                *out ? "a path longer than 4000 characters" : "needs a file name");
        goto done;
    }
    if (o.resume && o.force) {
        fprintf(stderr, "seqeig train: --resume and --force exclude each other\n");
        goto done;
    }

    ConfigSchema schema;
    run_schema_build(&schema);
    Config c;
    char err[1024];
    if (config_load_yaml(&c, &schema, config_path, err, sizeof err)) {
        fprintf(stderr, "seqeig: %s\n", err);
        goto free_config;
    }
    for (const char *const *sec = (const char *const[]){"dataset", "model", NULL}; *sec; sec++)
        if (!file_sets_section(&c, *sec)) {
            fprintf(stderr,
                    "seqeig: %s: no %s: section with keys; a run config names its dataset: and model: (and train:) "
                    "settings, e.g. experiments/mqar/small/mamba2.yaml\n",
                    config_path, *sec);
            goto free_config;
        }
    for (int k = 0; k < n_sets; k++)
        if (config_set_override(&c, sets[k], err, sizeof err)) {
            fprintf(stderr, "seqeig: %s\n", err);
            goto free_config;
        }
    if (seed >= 0) {
        char buf[64];
        snprintf(buf, sizeof buf, "train.seed=%lld", seed);
        if (config_set_override(&c, buf, err, sizeof err)) {
            fprintf(stderr, "seqeig: %s\n", err);
            goto free_config;
        }
    }
    char default_out[512];
    if (!out) {
        ModelConfig mc;
        if (model_keys_to_config(&c, &mc, err, sizeof err)) {
            fprintf(stderr, "seqeig: %s\n", err);
            goto free_config;
        }
        snprintf(default_out, sizeof default_out, "results/%s/%s/seed%d.h5", config_str(&c, "dataset._name_"),
                 model_name(&mc), config_int(&c, "train.seed"));
        out = default_out;
    }
    if (make_parent_dirs(out)) {
        fprintf(stderr, "seqeig: cannot create the directory of %s: %s\n", out, strerror(errno));
        rc = 1;
        goto free_config;
    }
    o.out = out;
    o.threads = threads_set((int)threads);
    o.max_steps = max_steps;
    rc = train_run(&c, &o);
free_config:
    config_free(&c);
    config_schema_free(&schema);
done:
    free(sets);
    return rc;
}
