/* libFuzzer target: the run-file reader (app/runfile.c over app/h5util.c
 * and libhdf5) on arbitrary bytes.
 *
 * Each input is written to a temporary file and read as `seqeig info`,
 * `seqeig spectra` and `--resume` read a run file: runfile_peek (root
 * attributes), runfile_load without a checkpoint, and, when that succeeds,
 * the stored config (/config/yaml) with the run schema, the model it
 * describes and runfile_load again with that model's parameters (the
 * checkpoint).  Models larger than FUZZ_MAX_PARAMS floats are not built, so
 * that a mutated hidden_dim costs no gigabytes.  Every result must be a
 * return value: no crash, no leak, no undefined behaviour, and no HDF5
 * object left open (printed on stdout, then abort).  Leaks inside libhdf5
 * itself on damaged object headers are suppressed (fuzz/lsan.supp).  Built and run
 * by `make fuzz` (fuzz/README.md). */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../app/runfile.h"
#include "../app/train.h"
#include "../models/model.h"
#include "../src/config.h"

#define FUZZ_MAX_PARAMS ((size_t)1 << 22)

static ConfigSchema schema;
static char path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void remove_file(void) { unlink(path); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/seqeig-fuzz-runfile-%d.h5", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    atexit(remove_file);
    run_schema_build(&schema);
    return 0;
}

/* A rough upper bound of a model's floats from its shared sizes (the
 * family's own widths, e.g. an MLP, are a small multiple of d). */
static bool small_model(const ModelConfig *mc)
{
    const int dims[] = {mc->vocab_size, mc->input_dim, mc->output_dim, mc->hidden_dim, mc->state_dim,
                        mc->num_heads, mc->num_layers};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        if (dims[i] < 0 || dims[i] > (1 << 16)) return false;
    const size_t d = (size_t)mc->hidden_dim;
    const size_t per_layer = d * (8 * d + 4 * (size_t)mc->state_dim + 64);
    const size_t io = d * ((size_t)mc->vocab_size + (size_t)mc->input_dim + (size_t)mc->output_dim + 1);
    return per_layer * (size_t)mc->num_layers + io < FUZZ_MAX_PARAMS;
}

static void load_checkpoint(const RunFile *r)
{
    Config c;
    ModelConfig mc;
    Model m;
    char err[2048];
    if (config_load_yaml_text(&c, &schema, r->config_yaml, "fuzz.h5:/config/yaml", err, sizeof err) == 0 &&
        model_keys_to_config(&c, &mc, err, sizeof err) == 0 &&
        small_model(&mc) && model_create(&m, &mc, err, sizeof err) == 0) {
        if (m.params.total < FUZZ_MAX_PARAMS) {
            RunFile ck;
            runfile_load(&ck, path, &m.params, NULL, NULL, err, sizeof err);
            runfile_free(&ck);
        }
        model_free(&m);
    }
    config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            perror(path);
            abort();
        }
        done += (size_t)n;
    }
    close(fd);
    RunFile r;
    char err[2048];
    runfile_peek(&r, path, err, sizeof err);
    runfile_free(&r);
    if (runfile_load(&r, path, NULL, NULL, NULL, err, sizeof err) == 0 && r.config_yaml) load_checkpoint(&r);
    runfile_free(&r);
    /* every path, failed ones included, closes what it opened */
    const ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        printf("fuzz_runfile: %zd HDF5 objects still open after reading\n", open_ids);
        fflush(stdout);
        abort();
    }
    return 0;
}
