#include "mqar.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/rng.h"

MqarParams mqar_default_params(int vocab, int seq_len, int num_kv_pairs, int num_examples)
{
    MqarParams p = {vocab, seq_len, num_kv_pairs, 0.01, true, num_examples};
    return p;
}

static int fail(char *err, size_t n, const char *msg)
{
    if (err && n) snprintf(err, n, "%s", msg);
    return -1;
}

int mqar_validate(const MqarParams *p, char *err, size_t n)
{
    if (p->seq_len < 2) return fail(err, n, "seq_len must be >= 2");
    if (p->seq_len % 2) return fail(err, n, "seq_len must be even");
    if (p->vocab <= p->seq_len) return fail(err, n, "vocab must be > seq_len");
    if (p->num_kv_pairs < 1) return fail(err, n, "num_kv_pairs must be >= 1");
    if ((long)4 * p->num_kv_pairs > p->seq_len)
        return fail(err, n, "num_kv_pairs: 4*num_kv_pairs must be <= seq_len");
    if (!(p->power_a > 0) || !isfinite(p->power_a)) return fail(err, n, "power_a must be > 0 and finite");
    if (p->num_examples < 0) return fail(err, n, "num_examples must be >= 0");
    return 0;
}

/* K distinct integers from [lo, lo+range) by rejection (range >= 2K here). */
static void draw_distinct(Rng *r, int K, int lo, int range, int32_t *out)
{
    for (int i = 0; i < K; i++) {
        for (;;) {
            int32_t c = lo + (int32_t)rng_below(r, (uint64_t)range);
            int dup = 0;
            for (int j = 0; j < i; j++) dup |= out[j] == c;
            if (!dup) { out[i] = c; break; }
        }
    }
}

void mqar_generate_example(const MqarParams *p, uint64_t key, uint64_t index,
                           int32_t *inputs, int32_t *labels)
{
    const int V = p->vocab, L = p->seq_len, K = p->num_kv_pairs;
    const int space = (L - 2 * K) / 2;
    Rng r;
    rng_init(&r, rng_derive_key(key, 0, index));
    int32_t *keys = malloc(sizeof(int32_t) * (size_t)K * 2);
    double *w = malloc(sizeof(double) * (size_t)space);
    if (!keys || !w) { fprintf(stderr, "mqar: out of memory\n"); abort(); }
    int32_t *vals = keys + K;
    draw_distinct(&r, K, 1, V / 2 - 1, keys);
    draw_distinct(&r, K, V / 2, V - V / 2, vals);

    for (int t = 0; t < L; t++) { inputs[t] = 0; labels[t] = MQAR_IGNORE; }
    for (int j = 0; j < K; j++) { inputs[2 * j] = keys[j]; inputs[2 * j + 1] = vals[j]; }

    /* gap weights a (g+1)^(a-1); sequential draws from the remaining mass */
    const double a = p->power_a;
    double total = 0;
    for (int g = 0; g < space; g++) { w[g] = a * pow(g + 1.0, a - 1.0); total += w[g]; }
    for (int j = 0; j < K; j++) {
        double u = rng_uniform(&r) * total, acc = 0;
        int pick = -1, last = -1;
        for (int g = 0; g < space; g++) {
            if (w[g] == 0) continue;
            last = g;
            acc += w[g];
            if (u < acc) { pick = g; break; }
        }
        if (pick < 0) pick = last; /* rounding at the top end */
        total -= w[pick];
        w[pick] = 0;
        /* sequence position 2K + 2g holds key j; label (shifted by one) there is value j */
        int pos = 2 * K + 2 * pick;
        inputs[pos] = keys[j];
        labels[pos] = vals[j];
        /* recompute total exactly to avoid drift */
        total = 0;
        for (int g = 0; g < space; g++) total += w[g];
    }
    if (p->random_non_queries)
        for (int t = 0; t < L; t++)
            if (inputs[t] == 0) inputs[t] = (int32_t)rng_below(&r, (uint64_t)V);
    free(keys);
    free(w);
}

int mqar_label_positions(const int32_t *labels, int L, int32_t *out_rows)
{
    int n = 0;
    for (int t = 0; t < L; t++)
        if (labels[t] != MQAR_IGNORE) out_rows[n++] = t;
    return n;
}

int mqar_dataset_generate(MqarDataset *d, const MqarParams *p, uint64_t key,
                          uint64_t first_index, int n, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    if (mqar_validate(p, err, errlen)) return -1;
    if (n < 0) return fail(err, errlen, "n must be >= 0");
    const int L = p->seq_len;
    size_t total = (size_t)n * (size_t)L;
    d->inputs = malloc(sizeof(int32_t) * (total ? total : 1));
    d->labels = malloc(sizeof(int32_t) * (total ? total : 1));
    if (!d->inputs || !d->labels) {
        mqar_dataset_free(d);
        if (err && errlen)
            snprintf(err, errlen, "out of memory: %d sequences of %d tokens need %.1f GiB (inputs and labels)", n, L,
                     2.0 * sizeof(int32_t) * (double)total / (1024.0 * 1024.0 * 1024.0));
        return -1;
    }
    d->n = n;
    d->L = L;
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        mqar_generate_example(p, key, first_index + (uint64_t)i,
                              d->inputs + (size_t)i * L, d->labels + (size_t)i * L);
    return 0;
}

void mqar_dataset_free(MqarDataset *d)
{
    free(d->inputs);
    free(d->labels);
    d->inputs = d->labels = NULL;
    d->n = 0;
}
