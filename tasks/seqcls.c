/* Fixed sets of labelled sequences for classification tasks (seqcls.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/rng.h"
#include "seqcls.h"

#define SEQCLS_SPLIT_STREAM (UINT64_C(2) << 32)

int seqset_init(SeqSet *s, int width, int64_t cap_tokens, int cap_n)
{
    memset(s, 0, sizeof *s);
    s->width = width;
    s->off = malloc(((size_t)cap_n + 1) * sizeof *s->off);
    s->tok = malloc((size_t)(cap_tokens > 0 ? cap_tokens : 1) * (size_t)width);
    s->labels = malloc((size_t)(cap_n > 0 ? cap_n : 1) * sizeof *s->labels);
    if (!s->off || !s->tok || !s->labels) {
        seqset_free(s);
        return -1;
    }
    s->off[0] = 0;
    s->cap_tokens = cap_tokens > 0 ? cap_tokens : 1;
    s->cap_n = cap_n > 0 ? cap_n : 1;
    return 0;
}

int seqset_push(SeqSet *s, const int32_t *tokens, int len, int32_t label)
{
    if (s->n == s->cap_n) {
        int cap = s->cap_n * 2;
        int64_t *off = realloc(s->off, ((size_t)cap + 1) * sizeof *off);
        if (off) s->off = off;
        int32_t *lab = realloc(s->labels, (size_t)cap * sizeof *lab);
        if (lab) s->labels = lab;
        if (!off || !lab) return -1;
        s->cap_n = cap;
    }
    const int64_t o = s->off[s->n];
    if (o + len > s->cap_tokens) {
        int64_t cap = s->cap_tokens * 2 > o + len ? s->cap_tokens * 2 : o + len;
        void *tok = realloc(s->tok, (size_t)cap * (size_t)s->width);
        if (!tok) return -1;
        s->tok = tok;
        s->cap_tokens = cap;
    }
    if (s->width == 1) {
        uint8_t *d = (uint8_t *)s->tok + o;
        for (int i = 0; i < len; i++) d[i] = (uint8_t)tokens[i];
    } else {
        uint16_t *d = (uint16_t *)s->tok + o;
        for (int i = 0; i < len; i++) d[i] = (uint16_t)tokens[i];
    }
    s->labels[s->n] = label;
    s->off[++s->n] = o + len;
    if (len > s->max_len) s->max_len = len;
    return 0;
}

void seqset_free(SeqSet *s)
{
    free(s->off);
    free(s->tok);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

void seqcls_keys_register(ConfigSchema *s)
{
    /* Reference defaults differ per task (cifar 0.1, imdb 0): -1 = that default. */
    config_schema_add_double(s, "dataset.val_split", -1.0, 0);
    config_schema_add_int(s, "dataset.seed", 42, 0);
}

int seqcls_val_split(const Config *c, double task_default, double *out, char *err, size_t errlen)
{
    double v = config_double(c, "dataset.val_split");
    if (v == -1.0) v = task_default;
    if (!(v >= 0.0 && v < 1.0))
        return config_key_error(c, "dataset.val_split", err, errlen,
                                "dataset.val_split = %g: must be in [0, 1) (or -1 for the task's default)", v);
    *out = v;
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int seqcls_split(int n, double val_split, uint64_t split_seed, int32_t **idx)
{
    int32_t *o = malloc((size_t)(n > 0 ? n : 1) * sizeof *o);
    if (!o) return -1;
    for (int i = 0; i < n; i++) o[i] = i;
    int keep = n;
    if (val_split > 0.0) {
        keep = (int)((double)n * (1.0 - val_split));
        shuffle_indices(o, n, rng_derive_key(split_seed, RNG_DATA, SEQCLS_SPLIT_STREAM));
        qsort(o, (size_t)keep, sizeof *o, cmp_i32);
    }
    *idx = o;
    return keep;
}

void seqcls_fill(const SeqSet *s, const int32_t *idx, int B, int32_t pad, int max_L, TaskBatch *out)
{
    int L = 0;
    bool ragged = false;
    for (int b = 0; b < B; b++) {
        int len = seqset_len(s, idx[b]);
        if (b > 0 && len != L) ragged = true;
        if (len > L) L = len;
    }
    if (B > out->cap_B || L > max_L) {
        fprintf(stderr, "seqeig: internal error: batch %d x %d exceeds its buffers (%d x %d)\n", B, L, out->cap_B,
                max_L);
        abort();
    }
    /* Targets first: idx may live in out->scratch, never in targets. */
    for (int b = 0; b < B; b++) out->targets[b] = s->labels[idx[b]];
    for (int b = 0; b < B; b++) {
        const int len = seqset_len(s, idx[b]);
        const int64_t o = s->off[idx[b]];
        int32_t *tok = out->tokens + (size_t)b * L;
        if (s->width == 1) {
            const uint8_t *src = (const uint8_t *)s->tok + o;
            for (int i = 0; i < len; i++) tok[i] = src[i];
        } else {
            const uint16_t *src = (const uint16_t *)s->tok + o;
            for (int i = 0; i < len; i++) tok[i] = src[i];
        }
        for (int i = len; i < L; i++) tok[i] = pad;
        if (ragged) {
            float *m = out->mask_buf + (size_t)b * L;
            for (int i = 0; i < L; i++) m[i] = i < len ? 1.0f : 0.0f;
        }
    }
    out->B = B;
    out->L = L;
    out->mask = ragged ? out->mask_buf : NULL;
    out->rows = NULL;
    out->n_rows = B;
}

typedef struct SeqclsTask {
    Task base;
    SeqSet train, test;
    int32_t *train_idx;
    EpochOrder order;
    int32_t pad;
    float *feature_of_token;   /* (vocab, input_dim) or NULL: token inputs */
} SeqclsTask;

/* The float inputs of a filled batch: each valid token's row of the table,
 * zeros at padded positions. */
static void fill_features(const SeqclsTask *t, TaskBatch *out)
{
    const int F = t->base.input_dim;
    const size_t n = (size_t)out->B * out->L;
    for (size_t i = 0; i < n; i++) {
        float *f = out->features + i * F;
        const bool pad = out->mask && out->mask[i] == 0.0f;
        for (int k = 0; k < F; k++) f[k] = pad ? 0.0f : t->feature_of_token[(size_t)out->tokens[i] * F + k];
    }
}

static void seqcls_train_batch(Task *base, int64_t step, int B, TaskBatch *out)
{
    SeqclsTask *t = base->impl;
    int32_t *idx = out->scratch;
    for (int b = 0; b < B; b++) idx[b] = t->train_idx[epoch_order_at(&t->order, step * (int64_t)B + b)];
    seqcls_fill(&t->train, idx, B, t->pad, base->seq_len, out);
    if (t->feature_of_token) fill_features(t, out);
}

static void seqcls_test_batch(Task *base, int first, int n, TaskBatch *out)
{
    SeqclsTask *t = base->impl;
    int32_t *idx = out->scratch;
    if (first < 0 || n < 0 || first + n > t->test.n) {
        fprintf(stderr, "seqeig: internal error: test examples %d..%d of %d\n", first, first + n - 1, t->test.n);
        abort();
    }
    for (int b = 0; b < n; b++) idx[b] = first + b;
    seqcls_fill(&t->test, idx, n, t->pad, base->seq_len, out);
    if (t->feature_of_token) fill_features(t, out);
}

static void seqcls_destroy(Task *base)
{
    SeqclsTask *t = base->impl;
    seqset_free(&t->train);
    seqset_free(&t->test);
    free(t->train_idx);
    free(t->feature_of_token);
    epoch_order_free(&t->order);
    free(t);
}

Task *seqcls_task_create(const char *name, SeqSet *train, SeqSet *test, int32_t *train_idx, int n_train,
                         int vocab, int num_outputs, int32_t pad, uint64_t run_seed, char *err, size_t errlen)
{
    SeqclsTask *t = calloc(1, sizeof *t);
    if (!t || epoch_order_init(&t->order, n_train, run_seed)) {
        snprintf(err, errlen, "%s: out of memory", name);
        free(t);
        seqset_free(train);
        seqset_free(test);
        free(train_idx);
        return NULL;
    }
    t->train = *train;
    t->test = *test;
    t->train_idx = train_idx;
    t->pad = pad;
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    t->base = (Task){.name = name,
                     .seq_len = t->train.max_len > t->test.max_len ? t->train.max_len : t->test.max_len,
                     .vocab = vocab,
                     .num_outputs = num_outputs,
                     .classification = true,
                     .n_test = t->test.n,
                     .n_train = n_train,
                     .train_batch = seqcls_train_batch,
                     .test_batch = seqcls_test_batch,
                     .destroy = seqcls_destroy,
                     .impl = t};
    return &t->base;
}

int seqcls_set_features(Task *task, int input_dim, const float *feature_of_token)
{
    SeqclsTask *t = task->impl;
    const size_t n = (size_t)task->vocab * (size_t)input_dim;
    float *table = malloc(n * sizeof *table);
    if (!table) return -1;
    memcpy(table, feature_of_token, n * sizeof *table);
    free(t->feature_of_token);
    t->feature_of_token = table;
    task->input_dim = input_dim;
    return 0;
}
