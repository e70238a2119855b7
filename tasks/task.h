/* Tasks as the trainer sees them: a source of training batches indexed by
 * step, a fixed test set, and the sizes the model must match.
 *
 * Every batch is a pure function of (config, seed, step) or of the test
 * index range, so a run resumed at step k sees exactly the batches an
 * uninterrupted run sees, and no data state needs checkpointing.
 *
 * Sequence-to-sequence tasks (MQAR) label some positions: a batch lists
 * them as flat indices b*L + t (`rows`) with their targets, so the model
 * computes logits and loss only there.  Classification tasks label whole
 * sequences: rows == NULL and one target per sequence (n_rows = B); padded
 * ones (ListOps) set L to the batch's longest sequence and mask (B, L). */
#ifndef SEQEIG_TASK_H
#define SEQEIG_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../src/config.h"

typedef struct TaskBatch {
    int B, L;
    int32_t *tokens;   /* (B, L) */
    float *features;   /* (B, L, input_dim) float inputs of a task with input_dim > 0, else NULL */
    float *mask;       /* (B, L) validity, or NULL when every position is valid */
    float *mask_buf;   /* (cap_B, L) storage; a padded task sets mask = mask_buf */
    int32_t *rows;     /* flat labelled positions, ascending; NULL for classification */
    int32_t *rows_buf; /* (cap_B, L) storage rows starts out pointing at */
    int32_t *targets;  /* per row (or per sequence for classification) */
    int n_rows;        /* entries in rows / targets */
    int32_t *scratch;  /* (cap_B, L) for the task's own use (e.g. per-position labels) */
    int cap_B;         /* allocation, in sequences */
} TaskBatch;

typedef struct Task Task;
struct Task {
    const char *name;      /* "mqar" */
    int seq_len;           /* L of every sequence (the maximum, if padded) */
    int vocab;             /* input tokens lie in [0, vocab) */
    int input_dim;         /* 0: the model reads tokens; > 0: it reads `features` (float
                              values per position, e.g. normalised pixels), tokens are
                              still filled as the raw record of the input */
    const char *input_kind_key; /* the dataset key that switches between token and float inputs
                              (e.g. "dataset.tokenize"), for messages; NULL if there is none */
    int num_outputs;       /* classes the output layer must provide */
    bool classification;   /* one label per sequence */
    int n_test;            /* test examples */
    int n_train;           /* training examples per epoch (finite set); 0 = fresh every step */
    /* Training batch of optimizer step `step` (0-based), B sequences. */
    void (*train_batch)(Task *t, int64_t step, int B, TaskBatch *out);
    /* Test examples first .. first+n-1. */
    void (*test_batch)(Task *t, int first, int n, TaskBatch *out);
    void (*destroy)(Task *t);
    void *impl;
};

/* Register the `dataset:` keys of every task (reference key names). */
void task_keys_register(ConfigSchema *s);

/* Build the task named by dataset._name_ for `seed` (data streams derive
 * from it).  Generates the test set (and a finite training set) now, with
 * progress on stderr if that takes long.  Returns NULL with a message
 * naming the key in err. */
Task *task_create(const Config *c, uint64_t seed, char *err, size_t errlen);
void task_free(Task *t);

/* Buffers for batches of up to cap_B sequences of length L, with room for
 * input_dim float features per position when input_dim > 0. */
int task_batch_alloc(TaskBatch *b, int cap_B, int L, int input_dim);
void task_batch_free(TaskBatch *b);

#endif
