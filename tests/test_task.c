/* The MQAR Task (tasks/task.h): batches from a run config, epoch order,
 * fresh examples, labelled rows; and the run-config schema (reference
 * top-level keys). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "../src/config.h"
#include "../src/rng.h"
#include "../app/train.h"
#include "../tasks/mqar.h"
#include "../tasks/task.h"
#include "testutil.h"

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/seqeig_test_task_XXXXXX");
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* A task from YAML text (schema and config are returned for freeing). */
static Task *make_task(const char *yaml, ConfigSchema *s, Config *c)
{
    run_schema_build(s);
    char err[512];
    char *path = write_tmp(yaml);
    int rc = config_load_yaml(c, s, path, err, sizeof err);
    unlink(path);
    ck_assert_msg(rc == 0, "%s", err);
    Task *t = task_create(c, 5, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    return t;
}

#define SMALL_MQAR "dataset:\n  input_seq_length: 16\n  num_kv_pairs: 2\n  vocab_size: 32\n"

START_TEST(test_task_rows_are_the_labelled_positions)
{
    ConfigSchema s;
    Config c;
    Task *t = make_task(SMALL_MQAR "  num_train_examples: 0\n  num_test_examples: 10\n", &s, &c);
    ck_assert_int_eq(t->seq_len, 16);
    ck_assert_int_eq(t->vocab, 32);
    ck_assert_int_eq(t->n_test, 10);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 4, 16, 0), 0);
    t->train_batch(t, 3, 4, &b);
    ck_assert_int_eq(b.n_rows, 4 * 2); /* K labelled positions per sequence */
    /* Each row points at a query token whose target is the value after that key. */
    for (int r = 0; r < b.n_rows; r++) {
        int bi = b.rows[r] / 16, pos = b.rows[r] % 16;
        ck_assert(r == 0 || b.rows[r] > b.rows[r - 1]);
        const int32_t *seq = b.tokens + bi * 16;
        int found = 0;
        for (int j = 0; j < 2; j++)
            if (seq[2 * j] == seq[pos]) {
                ck_assert_int_eq(b.targets[r], seq[2 * j + 1]);
                found = 1;
            }
        ck_assert(found);
    }
    /* Fresh examples: batch k is examples k*B.. of the train stream. */
    int32_t in[16], lab[16];
    MqarParams p = mqar_default_params(32, 16, 2, 0);
    mqar_generate_example(&p, rng_derive_key(5, RNG_DATA, 0), 3 * 4 + 1, in, lab);
    ck_assert_mem_eq(in, b.tokens + 16, sizeof in);
    task_batch_free(&b);
    task_free(t);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

START_TEST(test_task_finite_set_visits_each_example_once_per_epoch)
{
    ConfigSchema s;
    Config c;
    /* 10 examples, batch 4: epochs straddle batches. */
    Task *t = make_task(SMALL_MQAR "  num_train_examples: 10\n  num_test_examples: 4\n", &s, &c);
    MqarDataset ref;
    MqarParams p = mqar_default_params(32, 16, 2, 10);
    char err[256];
    ck_assert_int_eq(mqar_dataset_generate(&ref, &p, rng_derive_key(5, RNG_DATA, 0), 0, 10, err, sizeof err), 0);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 4, 16, 0), 0);
    int seen[3][10] = {{0}};
    for (int k = 0; k < 7; k++) { /* 28 examples: epochs 0, 1 full, 2 partly */
        t->train_batch(t, k, 4, &b);
        for (int i = 0; i < 4; i++) {
            int pos = k * 4 + i, hit = -1;
            for (int e = 0; e < 10; e++)
                if (memcmp(ref.inputs + e * 16, b.tokens + i * 16, 16 * sizeof(int32_t)) == 0) hit = e;
            ck_assert_msg(hit >= 0, "batch %d row %d is not a training example", k, i);
            seen[pos / 10][hit]++;
        }
    }
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[e][i], 1);
    /* Orders differ between epochs, and a step's batch does not depend on history. */
    TaskBatch b2;
    ck_assert_int_eq(task_batch_alloc(&b2, 4, 16, 0), 0);
    t->train_batch(t, 5, 4, &b2);
    t->train_batch(t, 0, 4, &b);
    t->train_batch(t, 5, 4, &b);
    ck_assert_mem_eq(b.tokens, b2.tokens, 4 * 16 * sizeof(int32_t));
    mqar_dataset_free(&ref);
    task_batch_free(&b);
    task_batch_free(&b2);
    task_free(t);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

START_TEST(test_task_test_set_is_the_test_stream)
{
    ConfigSchema s;
    Config c;
    Task *t = make_task(SMALL_MQAR "  num_test_examples: 6\n  num_train_examples: 0\n", &s, &c);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 3, 16, 0), 0);
    t->test_batch(t, 3, 3, &b);
    int32_t in[16], lab[16];
    MqarParams p = mqar_default_params(32, 16, 2, 0);
    mqar_generate_example(&p, rng_derive_key(5, RNG_DATA, 1), 4, in, lab);
    ck_assert_mem_eq(in, b.tokens + 16, sizeof in);
    ck_assert_int_eq(b.n_rows, 6);
    task_batch_free(&b);
    task_free(t);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

START_TEST(test_task_bad_sizes_name_the_key)
{
    ConfigSchema s;
    run_schema_build(&s);
    Config c;
    char err[512];
    char *path = write_tmp(SMALL_MQAR "  num_test_examples: 0\n");
    ck_assert_int_eq(config_load_yaml(&c, &s, path, err, sizeof err), 0);
    unlink(path);
    ck_assert(task_create(&c, 1, err, sizeof err) == NULL);
    ck_assert_msg(strstr(err, "dataset.num_test_examples = 0") != NULL, "%s", err);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

START_TEST(test_run_schema_top_level_seed_and_save)
{
    ConfigSchema s;
    run_schema_build(&s);
    Config c;
    char err[512];
    char *path = write_tmp("seed: 2929\nsave: \"./x\"\nmodel:\n  use_flash: True\n");
    ck_assert_int_eq(config_load_yaml(&c, &s, path, err, sizeof err), 0);
    unlink(path);
    ck_assert_int_eq(config_int(&c, "train.seed"), 2929);
    config_free(&c);
    path = write_tmp("seed: abc\n");
    ck_assert_int_eq(config_load_yaml(&c, &s, path, err, sizeof err), -1);
    unlink(path);
    ck_assert_msg(strstr(err, ":1: seed (sets train.seed): expected an integer") != NULL, "%s", err);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

Suite *suite_task(void)
{
    Suite *s = suite_create("task");
    TCase *tc = tcase_create("mqar_task");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_task_rows_are_the_labelled_positions);
    tcase_add_test(tc, test_task_finite_set_visits_each_example_once_per_epoch);
    tcase_add_test(tc, test_task_test_set_is_the_test_stream);
    tcase_add_test(tc, test_task_bad_sizes_name_the_key);
    tcase_add_test(tc, test_run_schema_top_level_seed_and_save);
    suite_add_tcase(s, tc);
    return s;
}
