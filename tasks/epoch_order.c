/* Epoch orders of a finite training set (epoch_order.h). */
#include <stdlib.h>
#include <string.h>

#include "../src/rng.h"
#include "epoch_order.h"

#define EPOCH_STREAM(e) ((UINT64_C(1) << 32) + (uint64_t)(e))

void shuffle_indices(int32_t *o, int n, uint64_t key)
{
    Rng r;
    rng_init(&r, key);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        int32_t tmp = o[i];
        o[i] = o[j];
        o[j] = tmp;
    }
}

int epoch_order_init(EpochOrder *o, int n, uint64_t run_seed)
{
    memset(o, 0, sizeof *o);
    o->n = n;
    o->seed = run_seed;
    o->epoch[0] = o->epoch[1] = -1;
    o->order[0] = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    o->order[1] = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!o->order[0] || !o->order[1]) {
        epoch_order_free(o);
        return -1;
    }
    return 0;
}

void epoch_order_free(EpochOrder *o)
{
    free(o->order[0]);
    free(o->order[1]);
    memset(o, 0, sizeof *o);
}

int32_t epoch_order_at(EpochOrder *o, int64_t pos)
{
    const int64_t e = pos / o->n;
    int s;
    if (o->epoch[0] == e)
        s = 0;
    else if (o->epoch[1] == e)
        s = 1;
    else {
        /* Replace the older slot. */
        s = o->epoch[0] < o->epoch[1] ? 0 : 1;
        for (int i = 0; i < o->n; i++) o->order[s][i] = i;
        shuffle_indices(o->order[s], o->n, rng_derive_key(o->seed, RNG_DATA, EPOCH_STREAM(e)));
        o->epoch[s] = e;
    }
    return o->order[s][pos % o->n];
}
