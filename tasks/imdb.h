/* IMDb sentiment (LRA "Text", character level) from the user's copy of the
 * Large Movie Review Dataset (aclImdb_v1.tar.gz): nothing is downloaded.
 *
 * Layout: dataset.data_dir/aclImdb/{train,test}/{neg,pos}/NAME.txt (or
 * data_dir pointing at aclImdb itself), one review per file, UTF-8.  Other
 * entries (train/unsup, *.feat, urls_*.txt, ...) are not read.  Each split
 * is its neg files (label 0) then its pos files (label 1), each in byte
 * order of the file names.  A review file must be a regular file (or a
 * symlink to one) of at most IMDB_MAX_REVIEW_BYTES: a FIFO, device or
 * directory named *.txt, or a larger file, is an error naming it (never a
 * hang or an unbounded read).
 *
 * Tokens as the reference (dataloaders/lra.py, torchtext vocabulary):
 * - a review is its sequence of Unicode characters (code points; Python's
 *   list(text)), cut to its first l_max - append_bos - append_eos;
 * - vocabulary, built on the training split (all of it, before any
 *   validation split) from those cut reviews: the specials <pad> = 0,
 *   <unk> = 1, [<bos> = 2 when append_bos], <eos>, then every character
 *   seen at least min_freq times, by decreasing count, ties by increasing
 *   code point; any other character is <unk>;
 * - sequence = [<bos>] + characters + [<eos>];
 * - batches pad with <pad> to their longest sequence, with a mask.
 *
 * Keys (reference names and defaults): dataset.data_dir, dataset.l_max
 * (4096), dataset.min_freq (15), dataset.level (char; word is not
 * implemented), dataset.append_eos (true), dataset.append_bos (false),
 * dataset.val_split (-1 = 0), dataset.seed (42, the split seed),
 * dataset.n_workers (ignored). */
#ifndef SEQEIG_IMDB_H
#define SEQEIG_IMDB_H

#include <stdbool.h>
#include <stdint.h>

#include "seqcls.h"
#include "task.h"

#define IMDB_PAD 0
#define IMDB_UNK 1
/* Per review file; the reviews of aclImdb are at most ~14 kB. */
#define IMDB_MAX_REVIEW_BYTES (1 << 20)

typedef struct ImdbParams {
    int l_max;
    int min_freq;
    bool append_bos, append_eos;
} ImdbParams;

typedef struct ImdbData {
    SeqSet train, test;   /* width 2 */
    int vocab;            /* specials + characters */
    int n_special;        /* 3, or 4 with <bos> */
    int bos, eos;         /* token ids, -1 if not used */
    uint32_t *chars;      /* code point of token n_special + i, i < vocab - n_special */
} ImdbData;

/* Read the layout under `dir` (data_dir or the aclImdb directory itself).
 * Errors name the path and the expected layout. */
int imdb_load(const char *dir, const ImdbParams *p, ImdbData *out, char *err, size_t errlen);
void imdb_data_free(ImdbData *d);

void imdb_task_keys_register(ConfigSchema *s);
Task *imdb_task_create(const Config *c, uint64_t seed, char *err, size_t errlen);

#endif
