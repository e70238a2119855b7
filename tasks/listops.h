/* ListOps (Long Range Arena) generator, evaluator and tokens; docs/tasks.md,
 * ListOps.  The rules of lra_benchmarks/data/listops.py:
 *
 *   - a node at depth d (the root has depth 1) with d < max_depth draws
 *     r ~ U[0, 1); it is an operator if r <= 0.25, else a digit leaf.
 *     Nodes at depth max_depth are always digit leaves.
 *   - a leaf is a uniform digit 0..9; an operator is one of MIN, MAX, MED,
 *     SM (uniform) with randint(2, max_args) (inclusive) arguments.
 *   - length = 1 for a leaf, 2 + sum of the children's lengths for an
 *     operator (its opening and closing tokens): the number of tokens.
 *   - a tree is kept iff min_length < length < max_length (strict).
 *   - MED is int(np.median(args)): the middle of the sorted arguments, and
 *     for an even count the mean of the two middle ones truncated, i.e.
 *     floor((a[n/2-1] + a[n/2]) / 2).  SM is the sum mod 10.
 *   - samples are distinct (LRA keeps a set of trees; a tree and its token
 *     sequence determine each other, so we compare token sequences).
 *
 * Token ids (fixed; LRA's loader builds them from train-set frequencies
 * after the specials, so its ids differ but the vocabulary has the same 18
 * entries): 0 <pad>, 1 <unk> (never produced), 2 <eos>, 3..12 the digits
 * 0..9, 13 [MIN, 14 [MAX, 15 [MED, 16 [SM, 17 ] (the loader's 'X').
 *
 * Candidate tree `index` of stream `key` is a pure function of (key,
 * index): it draws from its own Philox stream rng_derive_key(key, 0,
 * index), so generation is parallel and identical for any thread count. */
#ifndef SEQEIG_LISTOPS_H
#define SEQEIG_LISTOPS_H

#include <stddef.h>
#include <stdint.h>

enum {
    LISTOPS_PAD = 0,
    LISTOPS_UNK = 1,
    LISTOPS_EOS = 2,
    LISTOPS_DIGIT0 = 3, /* digit v is LISTOPS_DIGIT0 + v */
    LISTOPS_MIN = 13,
    LISTOPS_MAX = 14,
    LISTOPS_MED = 15,
    LISTOPS_SM = 16,
    LISTOPS_CLOSE = 17,
    LISTOPS_VOCAB = 18,
};

#define LISTOPS_CLASSES 10
#define LISTOPS_OP_P 0.25        /* LRA's VALUE_P: r <= 0.25 makes an operator */
#define LISTOPS_DEPTH_LIMIT 64   /* largest max_depth accepted (evaluator stack) */

typedef struct ListopsParams {
    int max_depth;   /* LRA 10 */
    int max_args;    /* LRA 10 */
    int min_length;  /* LRA 500 (exclusive) */
    int max_length;  /* LRA 2000 (exclusive) */
} ListopsParams;

/* The LRA values: depth 10, 10 args, 500 < length < 2000. */
ListopsParams listops_default_params(void);

/* 0 if valid; else -1 and a message naming the offending field in err. */
int listops_validate(const ListopsParams *p, char *err, size_t errlen);

/* Candidate `index` of stream `key`: writes its tokens (no EOS) to
 * tokens[0 .. max_length-2] and returns its length if min_length < length
 * < max_length, else returns 0 (rejected; generation stops as soon as the
 * tree is known to be too long, so the cost is O(max_length)). */
int listops_generate_candidate(const ListopsParams *p, uint64_t key, uint64_t index, uint8_t *tokens);

/* Value 0..9 of the expression in tokens[0..n-1], or -1 if the sequence is
 * not one well-formed expression.  After the expression only <eos> and
 * <pad> may follow.  Operators need >= 1 argument; nesting deeper than
 * LISTOPS_DEPTH_LIMIT is rejected. */
int listops_eval(const uint8_t *tokens, int n);

/* Text form, tokens separated by spaces: "[MAX 2 9 [MIN 4 7 ] 0 ]".
 * listops_parse returns the number of tokens written (<= cap) or -1 on an
 * unknown word or overflow; "<eos>"/"<pad>" are accepted. */
int listops_parse(const char *text, uint8_t *out, int cap);

/* A set of distinct samples: expression tokens without EOS, concatenated. */
typedef struct ListopsDataset {
    int n;
    int max_len;      /* longest expression */
    uint8_t *tokens;  /* sample i is tokens[offset[i] .. offset[i+1]-1] */
    int64_t *offset;  /* n + 1 */
    int32_t *labels;  /* n, from listops_eval */
} ListopsDataset;

/* The first n distinct accepted candidates of stream key (in candidate
 * order) that are not samples of `exclude` (NULL for none).  Gives up with
 * an error when LISTOPS_MAX_MISSES candidates in a row bring no new sample
 * (the window admits too few distinct trees).  `label` names the set in
 * progress messages (printed to stderr only for large sets).
 * Returns 0, or -1 with err filled. */
#define LISTOPS_MAX_MISSES (1 << 22)
int listops_dataset_generate(ListopsDataset *d, const ListopsParams *p, uint64_t key, int n,
                             const ListopsDataset *exclude, const char *label, char *err, size_t errlen);
void listops_dataset_free(ListopsDataset *d);

static inline int listops_sample_len(const ListopsDataset *d, int i)
{
    return (int)(d->offset[i + 1] - d->offset[i]);
}
static inline const uint8_t *listops_sample(const ListopsDataset *d, int i)
{
    return d->tokens + d->offset[i];
}

#endif
