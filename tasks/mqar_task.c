/* MQAR as a Task: the `dataset:` keys of the reference MQAR configs plus
 * seqeig's own (vocabulary, set sizes), and step-indexed batches.
 *
 * Training data: with dataset.num_train_examples = N > 0, a fixed set of N
 * examples (train stream, indices 0..N-1) read in a fresh random order
 * every epoch; the sequence of examples runs on across epoch boundaries,
 * so every batch is full and batch k holds positions k*B .. k*B+B-1 of the
 * concatenated epoch orders (epoch e's order is a Fisher-Yates shuffle
 * from its own stream).  With N = 0 every step draws B fresh examples:
 * batch k is examples k*B .. k*B+B-1 of the train stream, never repeated,
 * so the model cannot memorise the training set.
 * Test data: examples 0..n_test-1 of the test stream. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/rng.h"
#include "mqar.h"
#include "epoch_order.h"
#include "mqar_task.h"


typedef struct MqarTask {
    Task base;
    MqarParams p;
    uint64_t seed, train_key, test_key;
    MqarDataset train;   /* n = 0 when examples are fresh every step */
    MqarDataset test;
    EpochOrder order;    /* training order (finite set) */
} MqarTask;

void mqar_task_keys_register(ConfigSchema *s)
{
    config_schema_add_int(s, "dataset.input_seq_length", 512, 0);
    config_schema_add_int(s, "dataset.num_kv_pairs", 64, 0);
    config_schema_add_int(s, "dataset.vocab_size", 8192, 0);
    config_schema_add_int(s, "dataset.num_train_examples", 100000, 0);
    config_schema_add_int(s, "dataset.num_test_examples", 3000, 0);
    config_schema_add_double(s, "dataset.power_a", 0.01, 0);
    config_schema_add_bool(s, "dataset.random_non_queries", true, 0);
}

/* rows/targets from labels (B, L), in (b, t) order. */
static void collect_rows(const int32_t *labels, int B, int L, TaskBatch *out)
{
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L; i++) {
            int32_t y = labels[(size_t)b * L + i];
            if (y == MQAR_IGNORE) continue;
            out->rows[n] = b * L + i;
            out->targets[n++] = y;
        }
    out->n_rows = n;
    out->B = B;
    out->L = L;
}

static void mqar_train_batch(Task *base, int64_t step, int B, TaskBatch *out)
{
    MqarTask *t = base->impl;
    const int L = t->p.seq_len;
    if (B > out->cap_B) {
        fprintf(stderr, "seqeig: internal error: MQAR batch of %d exceeds its buffers\n", B);
        abort();
    }
    if (t->train.n == 0) {
        const uint64_t first = (uint64_t)step * (uint64_t)B;
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++)
            mqar_generate_example(&t->p, t->train_key, first + (uint64_t)b, out->tokens + (size_t)b * L,
                                  out->scratch + (size_t)b * L);
        collect_rows(out->scratch, B, L, out);
        return;
    }
    for (int b = 0; b < B; b++) {
        int64_t pos = step * (int64_t)B + b;
        int32_t ex = epoch_order_at(&t->order, pos);
        memcpy(out->tokens + (size_t)b * L, t->train.inputs + (size_t)ex * L, (size_t)L * sizeof(int32_t));
        memcpy(out->scratch + (size_t)b * L, t->train.labels + (size_t)ex * L, (size_t)L * sizeof(int32_t));
    }
    collect_rows(out->scratch, B, L, out);
}

static void mqar_test_batch(Task *base, int first, int n, TaskBatch *out)
{
    MqarTask *t = base->impl;
    const int L = t->p.seq_len;
    memcpy(out->tokens, t->test.inputs + (size_t)first * L, (size_t)n * L * sizeof(int32_t));
    collect_rows(t->test.labels + (size_t)first * L, n, L, out);
}

static void mqar_destroy(Task *base)
{
    MqarTask *t = base->impl;
    mqar_dataset_free(&t->train);
    mqar_dataset_free(&t->test);
    epoch_order_free(&t->order);
    free(t);
}

Task *mqar_task_create(const Config *c, uint64_t seed, char *err, size_t errlen)
{
    MqarTask *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->base.impl = t; /* mqar_destroy reaches t through it on the failure paths below */
    char msg[256];
    int n_train = config_int(c, "dataset.num_train_examples");
    int n_test = config_int(c, "dataset.num_test_examples");
    t->p = mqar_default_params(config_int(c, "dataset.vocab_size"), config_int(c, "dataset.input_seq_length"),
                               config_int(c, "dataset.num_kv_pairs"), n_train);
    t->p.power_a = config_double(c, "dataset.power_a");
    t->p.random_non_queries = config_bool(c, "dataset.random_non_queries");
    if (mqar_validate(&t->p, msg, sizeof msg) != 0) {
        /* mqar names its fields; map them to the config keys. */
        snprintf(err, errlen, "dataset (input_seq_length %d, num_kv_pairs %d, vocab_size %d): %s",
                 t->p.seq_len, t->p.num_kv_pairs, t->p.vocab, msg);
        free(t);
        return NULL;
    }
    if (n_train < 0) {
        config_key_error(c, "dataset.num_train_examples", err, errlen,
                         "dataset.num_train_examples = %d: must be >= 0 (0 = fresh examples every step)", n_train);
        free(t);
        return NULL;
    }
    if (n_test <= 0) {
        config_key_error(c, "dataset.num_test_examples", err, errlen, "dataset.num_test_examples = %d: must be > 0",
                         n_test);
        free(t);
        return NULL;
    }
    t->seed = seed;
    t->train_key = rng_derive_key(seed, RNG_DATA, 0);
    t->test_key = rng_derive_key(seed, RNG_DATA, 1);
    if (mqar_dataset_generate(&t->test, &t->p, t->test_key, 0, n_test, msg, sizeof msg) != 0 ||
        (n_train > 0 && mqar_dataset_generate(&t->train, &t->p, t->train_key, 0, n_train, msg, sizeof msg) != 0)) {
        snprintf(err, errlen, "MQAR data: %s", msg);
        mqar_destroy(&t->base);
        return NULL;
    }
    if (n_train > 0 && epoch_order_init(&t->order, n_train, seed)) {
        snprintf(err, errlen, "out of memory for the MQAR epoch order");
        mqar_destroy(&t->base);
        return NULL;
    }
    t->base = (Task){.name = "mqar",
                     .seq_len = t->p.seq_len,
                     .vocab = t->p.vocab,
                     .num_outputs = t->p.vocab,
                     .classification = false,
                     .n_test = n_test,
                     .n_train = n_train,
                     .train_batch = mqar_train_batch,
                     .test_batch = mqar_test_batch,
                     .destroy = mqar_destroy,
                     .impl = t};
    return &t->base;
}
