/* libFuzzer target: the config loader (src/config.c) on arbitrary text,
 * with the schema of a run config (every task's and model's keys).
 *
 * Input: the bytes as YAML text (cut at the first NUL, as a C string).
 * Beyond "no crash, no leak, no undefined behaviour" it checks one
 * property: a config that loads is written back (config_to_yaml) as YAML
 * that loads again to the same values of every key that is not ignored
 * (what run files and `seqeig info --config` rely on); a failure of it is printed on stdout (make fuzz
 * closes the target's stderr, where the notices of ignored keys go) and
 * aborts.  Built and run by `make fuzz` (fuzz/README.md). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../app/train.h"
#include "../src/config.h"

static ConfigSchema schema;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    run_schema_build(&schema);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    Config c;
    char err[2048];
    if (config_load_yaml_text(&c, &schema, text, "fuzz.yaml", err, sizeof err) == 0) {
        char *yaml = config_to_yaml(&c);
        Config again;
        if (config_load_yaml_text(&again, &schema, yaml, "fuzz-out.yaml", err, sizeof err) != 0) {
            printf("fuzz_config: the written config does not load again: %s\n--- written:\n%s\n", err, yaml);
            fflush(stdout);
            abort();
        }
        for (int i = 0; i < config_count(&c); i++) {
            if (config_item(&c, i).ignored) continue; /* written as a comment only */
            char *a = config_value_text_alloc(&c, i), *b = config_value_text_alloc(&again, i);
            if (strcmp(a, b) != 0) {
                printf("fuzz_config: %s is '%s' but '%s' after writing and reading back\n", config_item(&c, i).key,
                       a, b);
                fflush(stdout);
                abort();
            }
            free(a);
            free(b);
        }
        config_free(&again);
        free(yaml);
    }
    config_free(&c);
    free(text);
    return 0;
}
