/* ListOps as a Task: the `dataset:` keys (LRA generator flag names) and
 * padded classification batches.
 *
 * Data: the test set is the first num_test_samples distinct accepted
 * candidates of the test stream rng_derive_key(seed, RNG_DATA, 1); the
 * training set the first num_train_samples distinct ones of the train
 * stream rng_derive_key(seed, RNG_DATA, 0) that are not test samples.
 * Training reads the fixed set in a fresh random order every epoch (epoch
 * e's order is a Fisher-Yates shuffle from its own stream, as for MQAR);
 * the example sequence runs on across epoch boundaries, so batch k holds
 * positions k*B .. k*B+B-1 of the concatenated epoch orders.
 *
 * A sequence is the expression's tokens followed by <eos> (the reference
 * loader appends it), so its length is the expression length + 1 <=
 * max_length.  A batch pads with <pad> = 0 to its longest sequence: L of
 * the batch is that maximum, mask (B, L) is 1 at valid positions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/rng.h"
#include "listops.h"
#include "epoch_order.h"
#include "listops_task.h"


typedef struct ListopsTask {
    Task base;
    ListopsParams p;
    uint64_t seed;
    ListopsDataset train, test;
    EpochOrder order;  /* training order */
    int32_t *idx;      /* (max batch) sample indices of the batch being built */
    int idx_cap;
} ListopsTask;

void listops_task_keys_register(ConfigSchema *s)
{
    ListopsParams d = listops_default_params();
    config_schema_add_int(s, "dataset.num_train_samples", 96000, 0);
    config_schema_add_int(s, "dataset.num_test_samples", 2000, 0);
    config_schema_add_int(s, "dataset.max_depth", d.max_depth, 0);
    config_schema_add_int(s, "dataset.max_args", d.max_args, 0);
    config_schema_add_int(s, "dataset.min_length", d.min_length, 0);
    config_schema_add_int(s, "dataset.max_length", d.max_length, 0);
}

/* Samples idx[0..B-1] of d, each + <eos>, padded to the longest. */
static void fill_batch(const ListopsTask *t, const ListopsDataset *d, const int32_t *idx, int B, TaskBatch *out)
{
    int L = 0;
    for (int b = 0; b < B; b++) {
        int len = listops_sample_len(d, idx[b]) + 1;
        if (len > L) L = len;
    }
    if (B > out->cap_B || L > t->base.seq_len) {
        fprintf(stderr, "seqeig: internal error: ListOps batch %d x %d exceeds its buffers\n", B, L);
        abort();
    }
    for (int b = 0; b < B; b++) {
        const uint8_t *src = listops_sample(d, idx[b]);
        const int len = listops_sample_len(d, idx[b]);
        int32_t *tok = out->tokens + (size_t)b * L;
        float *m = out->mask_buf + (size_t)b * L;
        for (int i = 0; i < len; i++) tok[i] = src[i];
        tok[len] = LISTOPS_EOS;
        for (int i = len + 1; i < L; i++) tok[i] = LISTOPS_PAD;
        for (int i = 0; i < L; i++) m[i] = i <= len ? 1.0f : 0.0f;
        out->targets[b] = d->labels[idx[b]];
    }
    out->B = B;
    out->L = L;
    out->mask = out->mask_buf;
    out->rows = NULL;
    out->n_rows = B;
}

static int32_t *batch_indices(ListopsTask *t, int B)
{
    if (B > t->idx_cap) {
        int32_t *ni = realloc(t->idx, (size_t)B * sizeof *ni);
        if (!ni) {
            fprintf(stderr, "seqeig: out of memory for a ListOps batch of %d\n", B);
            abort();
        }
        t->idx = ni;
        t->idx_cap = B;
    }
    return t->idx;
}

static void listops_train_batch(Task *base, int64_t step, int B, TaskBatch *out)
{
    ListopsTask *t = base->impl;
    int32_t *idx = batch_indices(t, B);
    for (int b = 0; b < B; b++) idx[b] = epoch_order_at(&t->order, step * (int64_t)B + b);
    fill_batch(t, &t->train, idx, B, out);
}

static void listops_test_batch(Task *base, int first, int n, TaskBatch *out)
{
    ListopsTask *t = base->impl;
    if (first < 0 || n < 0 || first + n > t->test.n) {
        fprintf(stderr, "seqeig: internal error: ListOps test examples %d..%d of %d\n", first, first + n - 1,
                t->test.n);
        abort();
    }
    int32_t *idx = batch_indices(t, n);
    for (int b = 0; b < n; b++) idx[b] = first + b;
    fill_batch(t, &t->test, idx, n, out);
}

static void listops_destroy(Task *base)
{
    ListopsTask *t = base->impl;
    listops_dataset_free(&t->train);
    listops_dataset_free(&t->test);
    epoch_order_free(&t->order);
    free(t->idx);
    free(t);
}

/* "<file:line>: dataset.KEY = V: must be ..." from a listops_validate
 * message, which starts with the field name. */
static void key_error(const Config *c, const char *msg, char *err, size_t errlen)
{
    static const char *const FIELDS[] = {"max_depth", "max_args", "min_length", "max_length"};
    char key[64] = "dataset", where[300] = "";
    for (size_t i = 0; i < sizeof FIELDS / sizeof FIELDS[0]; i++) {
        size_t k = strlen(FIELDS[i]);
        if (strncmp(msg, FIELDS[i], k) == 0 && msg[k] == ' ') {
            snprintf(key, sizeof key, "dataset.%s", FIELDS[i]);
            config_where(c, key, where, sizeof where);
            snprintf(err, errlen, "%s: dataset.%s", where, msg);
            return;
        }
    }
    snprintf(err, errlen, "dataset (ListOps): %s", msg);
}

static int count_key(const Config *c, const char *key, int min, char *err, size_t errlen)
{
    int v = config_int(c, key);
    if (v >= min) return 0;
    return config_key_error(c, key, err, errlen, "%s = %d: must be >= %d", key, v, min);
}

Task *listops_task_create(const Config *c, uint64_t seed, char *err, size_t errlen)
{
    char msg[512];
    ListopsParams p = {.max_depth = config_int(c, "dataset.max_depth"),
                       .max_args = config_int(c, "dataset.max_args"),
                       .min_length = config_int(c, "dataset.min_length"),
                       .max_length = config_int(c, "dataset.max_length")};
    if (listops_validate(&p, msg, sizeof msg)) {
        key_error(c, msg, err, errlen);
        return NULL;
    }
    if (count_key(c, "dataset.num_train_samples", 1, err, errlen) ||
        count_key(c, "dataset.num_test_samples", 1, err, errlen))
        return NULL;
    const int n_train = config_int(c, "dataset.num_train_samples");
    const int n_test = config_int(c, "dataset.num_test_samples");
    ListopsTask *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->p = p;
    t->seed = seed;
    t->base.impl = t;
    if (listops_dataset_generate(&t->test, &p, rng_derive_key(seed, RNG_DATA, 1), n_test, NULL, "test", msg,
                                 sizeof msg) ||
        listops_dataset_generate(&t->train, &p, rng_derive_key(seed, RNG_DATA, 0), n_train, &t->test, "train",
                                 msg, sizeof msg)) {
        snprintf(err, errlen, "ListOps data (dataset.min_length %d, dataset.max_length %d, dataset.max_depth %d, "
                 "dataset.max_args %d, dataset.num_test_samples %d, dataset.num_train_samples %d): %s",
                 p.min_length, p.max_length, p.max_depth, p.max_args, n_test, n_train, msg);
        listops_destroy(&t->base);
        return NULL;
    }
    if (epoch_order_init(&t->order, n_train, seed)) {
        snprintf(err, errlen, "out of memory for the ListOps epoch order");
        listops_destroy(&t->base);
        return NULL;
    }
    t->base = (Task){.name = "listops",
                     .seq_len = p.max_length, /* expression < max_length tokens, + <eos> */
                     .vocab = LISTOPS_VOCAB,
                     .num_outputs = LISTOPS_CLASSES,
                     .classification = true,
                     .n_test = n_test,
                     .n_train = n_train,
                     .train_batch = listops_train_batch,
                     .test_batch = listops_test_batch,
                     .destroy = listops_destroy,
                     .impl = t};
    return &t->base;
}
