/* Epoch orders of a finite training set, shared by the tasks.
 *
 * The examples of a training set of n are read as one continuous stream
 * of epochs: position p is example order_e[p mod n] of epoch e = p / n,
 * where epoch e's order is a Fisher-Yates shuffle from its own stream
 * rng_derive_key(seed, RNG_DATA, 2^32 + e).  A position's example is thus a
 * pure function of (seed, p): batches straddle epochs, every batch is full,
 * and a resumed run sees the same data.  The two most recent orders are
 * cached. */
#ifndef SEQEIG_EPOCH_ORDER_H
#define SEQEIG_EPOCH_ORDER_H

#include <stdint.h>

typedef struct EpochOrder {
    int n;
    uint64_t seed;
    int32_t *order[2];
    int64_t epoch[2];
} EpochOrder;

/* 0, or -1 when out of memory. */
int epoch_order_init(EpochOrder *o, int n, uint64_t run_seed);
void epoch_order_free(EpochOrder *o);
/* Example (index into 0..n-1) at position `pos` of the concatenated epoch orders. */
int32_t epoch_order_at(EpochOrder *o, int64_t pos);

/* Fisher-Yates shuffle of o[0..n) from the Philox stream `key`. */
void shuffle_indices(int32_t *o, int n, uint64_t key);

#endif
