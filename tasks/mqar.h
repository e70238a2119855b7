/* MQAR (multi-query associative recall) generator, docs/tasks.md, MQAR.
 *
 * Example `index` of the stream `key` is a pure function of (key, index):
 * each example has its own Philox stream rng_derive_key(key, 0, index), so
 * datasets can be generated in parallel (bit-identical for any thread
 * count), regenerated on demand, and fresh examples are a new index range.
 * Train and test must use distinct stream keys; the caller uses
 *   train: rng_derive_key(data_seed, RNG_DATA, 0)
 *   test:  rng_derive_key(data_seed, RNG_DATA, 1). */
#ifndef SEQEIG_MQAR_H
#define SEQEIG_MQAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MQAR_IGNORE (-100)

typedef struct MqarParams {
    int vocab;               /* V */
    int seq_len;             /* L */
    int num_kv_pairs;        /* K */
    double power_a;          /* default 0.01 */
    bool random_non_queries; /* default true */
    int num_examples;
} MqarParams;

/* Defaults: power_a 0.01, random_non_queries true. */
MqarParams mqar_default_params(int vocab, int seq_len, int num_kv_pairs, int num_examples);

/* 0 if valid; else -1 and a message naming the offending parameter in err. */
int mqar_validate(const MqarParams *p, char *err, size_t errlen);

/* Fill inputs[L] and labels[L] (labels MQAR_IGNORE except K query positions). */
void mqar_generate_example(const MqarParams *p, uint64_t key, uint64_t index,
                           int32_t *inputs, int32_t *labels);

/* Write the positions with label != MQAR_IGNORE (ascending) into out_rows;
 * returns their count. out_rows must hold L entries (K suffice for MQAR). */
int mqar_label_positions(const int32_t *labels, int L, int32_t *out_rows);

typedef struct MqarDataset {
    int n, L;
    int32_t *inputs;  /* (n, L) */
    int32_t *labels;  /* (n, L) */
} MqarDataset;

/* Generate examples first_index .. first_index+n-1 of stream key.
 * Returns 0, or -1 on invalid params / allocation failure (err filled). */
int mqar_dataset_generate(MqarDataset *d, const MqarParams *p, uint64_t key,
                          uint64_t first_index, int n, char *err, size_t errlen);
void mqar_dataset_free(MqarDataset *d);

#endif
