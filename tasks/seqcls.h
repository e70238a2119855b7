/* Fixed sets of labelled token sequences, for the classification tasks read
 * from the user's files (cifar, imdb): storage, the train/validation split,
 * per-epoch training order and padded batches.
 *
 * Batches: B sequences padded with token `pad` to the longest of them (L
 * of the batch); mask (B, L) is 1 at valid positions, or NULL when every
 * sequence of the batch has length L; rows = NULL, one target per
 * sequence (n_rows = B).
 *
 * Training order: the (fixed) training set is read in a fresh random order
 * every epoch; the sequence of examples runs on across epoch boundaries, so
 * batch k holds positions k*B .. k*B+B-1 of the concatenated epoch orders.
 * Epoch e's order is a Fisher-Yates shuffle from the stream
 * rng_derive_key(run seed, RNG_DATA, (1 << 32) + e), as for MQAR. */
#ifndef SEQEIG_SEQCLS_H
#define SEQEIG_SEQCLS_H

#include <stdint.h>

#include "epoch_order.h"
#include "task.h"

/* n sequences, concatenated; tokens are 8-bit (width 1) or 16-bit (width 2). */
typedef struct SeqSet {
    int n;
    int width;
    int64_t *off;     /* (n + 1) offsets into tok, in tokens */
    void *tok;
    int32_t *labels;  /* (n) */
    int max_len;
    int64_t cap_tokens;
    int cap_n;
} SeqSet;

/* Empty set with initial room for `cap_tokens` tokens and `cap_n` sequences. */
int seqset_init(SeqSet *s, int width, int64_t cap_tokens, int cap_n);
/* Append one sequence (tokens must fit the width); grows as needed.
 * Returns -1 when out of memory. */
int seqset_push(SeqSet *s, const int32_t *tokens, int len, int32_t label);
void seqset_free(SeqSet *s);
static inline int seqset_len(const SeqSet *s, int i) { return (int)(s->off[i + 1] - s->off[i]); }

/* The keys the loaders share: dataset.val_split, dataset.seed. */
void seqcls_keys_register(ConfigSchema *s);

/* dataset.val_split for a task whose reference default is `task_default`
 * (the registered default -1 stands for it).  Returns -1 with a message if
 * it is outside [0, 1). */
int seqcls_val_split(const Config *c, double task_default, double *out, char *err, size_t errlen);

/* Indices (ascending) of the training part when a fraction val_split of
 * the n examples is held out: the first floor(n (1 - val_split)) entries
 * of a random permutation from rng_derive_key(split_seed, RNG_DATA,
 * 2 << 32), sorted.  The held-out part is not used (as in the reference).
 * Returns the count, or -1 (out of memory); *idx is malloc'ed. */
int seqcls_split(int n, double val_split, uint64_t split_seed, int32_t **idx);

/* Batch of sequences idx[0..B-1] of s, padded with `pad`; out was
 * allocated for cap_B sequences of max_L >= s->max_len tokens.  idx may
 * point into out->scratch. */
void seqcls_fill(const SeqSet *s, const int32_t *idx, int B, int32_t pad, int max_L, TaskBatch *out);

/* A classification Task over fixed sets: takes ownership of train, test
 * and train_idx (the n_train training examples, indices into train) even
 * on failure.  seq_len = the longest sequence of either set.  Returns NULL
 * (out of memory) with a message in err. */
Task *seqcls_task_create(const char *name, SeqSet *train, SeqSet *test, int32_t *train_idx, int n_train,
                         int vocab, int num_outputs, int32_t pad, uint64_t run_seed, char *err, size_t errlen);

/* Make a seqcls task give float inputs: every batch also carries
 * features (B, L, input_dim), the row of feature_of_token (vocab,
 * input_dim; copied) of each valid token and zeros at padded positions;
 * sets task->input_dim.  Returns -1 when out of memory. */
int seqcls_set_features(Task *task, int input_dim, const float *feature_of_token);

#endif
