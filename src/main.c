/* seqeig command-line entry point. */
#include <stdio.h>
#include <string.h>

#include "version.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: seqeig <command> [options]\n"
            "\n"
            "seqeig trains small sequence models on CPU and records the eigenvalue\n"
            "spectra of every layer.  This build contains the engine only; the\n"
            "train, spectra and info commands arrive with the model and task layers.\n"
            "\n"
            "options:\n"
            "  --help       this message\n"
            "  --version    print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("seqeig %s\n", SEQEIG_VERSION);
        return 0;
    }
    fprintf(stderr, "seqeig: unknown command '%s' (see seqeig --help)\n", argv[1]);
    return 2;
}
