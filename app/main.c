/* seqeig command-line entry point: dispatch to the subcommands (cli.h). */
#include "../src/threads.h"
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "version.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: seqeig <command> [options]\n"
            "\n"
            "Train small sequence models on CPU and record the eigenvalue spectra of every\n"
            "layer (docs/eigenvalues.md) next to the training metrics, in one HDF5 run file\n"
            "per run (docs/hdf5-format.md).\n"
            "\n"
            "commands:\n"
            "  train     train a model from a YAML config, writing a run file\n"
            "  info      print a readable summary of a run file\n"
            "  spectra   recompute the spectra of a run from its checkpoint\n"
            "\n"
            "  seqeig <command> --help   options of one command\n"
            "  seqeig --version          print the version\n"
            "\n"
            "exit codes: 0 ok, 1 runtime failure, 2 usage / config / input-file error\n");
}

int main(int argc, char **argv)
{
    threads_pin_blas_kernel(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("seqeig %s\n", SEQEIG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "spectra") == 0) return cmd_spectra(argc - 1, argv + 1);
    fprintf(stderr, "seqeig: unknown command '%s' (commands: train, info, spectra; see seqeig --help)\n", cmd);
    return 2;
}
