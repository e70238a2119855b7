/* Deterministic random numbers: Philox4x32-10 (Salmon et al., SC'11).
 *
 * Counter-based: the i-th random word of a stream is a pure function of
 * (key, counter), so streams are independent, can be jumped to any
 * position, and parallel loops draw the same numbers for any thread count.
 * Keys come from the run seed and a purpose (init, data, dropout, ...)
 * through rng_derive_key, never from shared global state. */
#ifndef SEQEIG_RNG_H
#define SEQEIG_RNG_H

#include <stdint.h>

enum RngPurpose {
    RNG_INIT = 1,     /* parameter initialisation */
    RNG_DATA = 2,     /* task data (sub-streams: train, test, ...) */
    RNG_DROPOUT = 3,  /* dropout masks */
};

/* One Philox4x32-10 block: 4 random words for a 128-bit counter and 64-bit key. */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Mix (seed, purpose, index) into a 64-bit key (splitmix64 finaliser). */
uint64_t rng_derive_key(uint64_t seed, uint64_t purpose, uint64_t index);

/* Sequential generator over one stream. */
typedef struct Rng {
    uint32_t key[2];
    uint64_t counter;   /* block index */
    uint32_t buf[4];
    int avail;          /* unused words left in buf */
} Rng;

void rng_init(Rng *r, uint64_t key);
uint32_t rng_u32(Rng *r);
uint64_t rng_u64(Rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(Rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t rng_below(Rng *r, uint64_t n);
/* Standard normal (Box-Muller; uses two uniforms per call, no caching so
 * the stream position is simple to reason about). */
double rng_normal(Rng *r);

/* Stateless: uniform float in [0,1) (24 bits) for element `i` of the
 * stream identified by (key, a, b).  Used by dropout. */
float rng_uniform_at(uint64_t key, uint32_t a, uint32_t b, uint64_t i);

#endif
