/* ListOps generator, evaluator and tokens (listops.h). */
#include "listops.h"

#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/rng.h"

static const char *const TOKEN_TEXT[LISTOPS_VOCAB] = {
    "<pad>", "<unk>", "<eos>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    "[MIN", "[MAX", "[MED", "[SM", "]",
};

ListopsParams listops_default_params(void)
{
    return (ListopsParams){.max_depth = 10, .max_args = 10, .min_length = 500, .max_length = 2000};
}

int listops_validate(const ListopsParams *p, char *err, size_t n)
{
    const char *msg = NULL;
    char buf[160];
    if (p->max_depth < 1 || p->max_depth > LISTOPS_DEPTH_LIMIT) {
        snprintf(buf, sizeof buf, "max_depth = %d: must be in 1..%d", p->max_depth, LISTOPS_DEPTH_LIMIT);
        msg = buf;
    } else if (p->max_args < 2 || p->max_args > 1000) {
        snprintf(buf, sizeof buf, "max_args = %d: must be in 2..1000", p->max_args);
        msg = buf;
    } else if (p->min_length < 0) {
        snprintf(buf, sizeof buf, "min_length = %d: must be >= 0", p->min_length);
        msg = buf;
    } else if (p->max_length < p->min_length + 2 || p->max_length > (1 << 24)) {
        snprintf(buf, sizeof buf,
                 "max_length = %d: must be >= min_length + 2 = %d (lengths are strictly between them) and <= %d",
                 p->max_length, p->min_length + 2, 1 << 24);
        msg = buf;
    }
    if (!msg) return 0;
    if (err && n) snprintf(err, n, "%s", msg);
    return -1;
}

int listops_generate_candidate(const ListopsParams *p, uint64_t key, uint64_t index, uint8_t *tokens)
{
    Rng r;
    rng_init(&r, rng_derive_key(key, 0, index));
    /* remaining[k]: arguments still to draw for the open operator at depth
     * k+1; sp open operators, so the next node has depth sp + 1.  Every open
     * operator will still emit one ']', hence the final length is at least
     * len + sp: once that reaches max_length the tree is rejected. */
    int remaining[LISTOPS_DEPTH_LIMIT];
    int sp = 0, len = 0;
    const int maxlen = p->max_length;
    for (;;) {
        if (sp + 1 < p->max_depth && rng_uniform(&r) <= LISTOPS_OP_P) {
            int nargs = 2 + (int)rng_below(&r, (uint64_t)(p->max_args - 1));
            tokens[len++] = (uint8_t)(LISTOPS_MIN + (int)rng_below(&r, 4));
            remaining[sp++] = nargs;
            if (len + sp >= maxlen) return 0;
            continue;
        }
        tokens[len++] = (uint8_t)(LISTOPS_DIGIT0 + (int)rng_below(&r, 10));
        if (len + sp >= maxlen) return 0;
        /* Close every operator whose last argument this completed. */
        while (sp > 0 && --remaining[sp - 1] == 0) {
            tokens[len++] = LISTOPS_CLOSE;
            sp--;
        }
        if (sp == 0) break;
    }
    return len > p->min_length && len < maxlen ? len : 0;
}

/* k-th smallest (0-based) of a multiset of digits given as counts. */
static int kth_digit(const int cnt[10], int k)
{
    for (int v = 0; v < 10; v++) {
        if (k < cnt[v]) return v;
        k -= cnt[v];
    }
    return 9; /* unreachable for k < total */
}

static int apply_op(int op, const int cnt[10], int nargs)
{
    switch (op) {
    case LISTOPS_MIN:
        return kth_digit(cnt, 0);
    case LISTOPS_MAX:
        return kth_digit(cnt, nargs - 1);
    case LISTOPS_MED:
        if (nargs % 2) return kth_digit(cnt, nargs / 2);
        /* int(np.median): mean of the two middle values, truncated (>= 0). */
        return (kth_digit(cnt, nargs / 2 - 1) + kth_digit(cnt, nargs / 2)) / 2;
    default: { /* LISTOPS_SM */
        int64_t s = 0;
        for (int v = 1; v < 10; v++) s += (int64_t)v * cnt[v];
        return (int)(s % 10);
    }
    }
}

int listops_eval(const uint8_t *t, int n)
{
    struct {
        int op, nargs, cnt[10];
    } st[LISTOPS_DEPTH_LIMIT];
    int sp = 0, result = -1;
    for (int i = 0; i < n; i++) {
        int tok = t[i], v;
        if (result >= 0) { /* expression complete: only <eos>/<pad> may follow */
            if (tok != LISTOPS_EOS && tok != LISTOPS_PAD) return -1;
            continue;
        }
        if (tok >= LISTOPS_DIGIT0 && tok < LISTOPS_DIGIT0 + 10) {
            v = tok - LISTOPS_DIGIT0;
        } else if (tok >= LISTOPS_MIN && tok <= LISTOPS_SM) {
            if (sp == LISTOPS_DEPTH_LIMIT) return -1;
            st[sp].op = tok;
            st[sp].nargs = 0;
            memset(st[sp].cnt, 0, sizeof st[sp].cnt);
            sp++;
            continue;
        } else if (tok == LISTOPS_CLOSE) {
            if (sp == 0 || st[sp - 1].nargs == 0) return -1;
            sp--;
            v = apply_op(st[sp].op, st[sp].cnt, st[sp].nargs);
        } else {
            return -1;
        }
        if (sp == 0) {
            result = v;
        } else {
            st[sp - 1].cnt[v]++;
            st[sp - 1].nargs++;
        }
    }
    return result;
}

int listops_parse(const char *text, uint8_t *out, int cap)
{
    int n = 0;
    const char *s = text;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\n') s++;
        if (!*s) return n;
        const char *e = s;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n') e++;
        size_t w = (size_t)(e - s);
        int id = -1;
        for (int k = 0; k < LISTOPS_VOCAB; k++)
            if (strlen(TOKEN_TEXT[k]) == w && memcmp(TOKEN_TEXT[k], s, w) == 0) id = k;
        if (id < 0 || n == cap) return -1;
        out[n++] = (uint8_t)id;
        s = e;
    }
}

/* ---- distinct sample sets -------------------------------------------- */

static uint64_t hash_tokens(const uint8_t *t, int len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)len;
    for (int i = 0; i < len; i++) {
        h ^= t[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

/* Open-addressing set of token sequences stored in datasets: slot values
 * are ids, id < n_ex naming sample id of the excluded set, else sample
 * id - n_ex of the set under construction. */
typedef struct SeqSet {
    size_t mask;
    int32_t *id;      /* -1 empty */
    uint64_t *hash;
    const ListopsDataset *ex, *own;
    int n_ex;
} SeqSet;

static const uint8_t *seqset_tokens(const SeqSet *s, int32_t id, int *len)
{
    const ListopsDataset *d = id < s->n_ex ? s->ex : s->own;
    int i = id < s->n_ex ? id : id - s->n_ex;
    *len = listops_sample_len(d, i);
    return listops_sample(d, i);
}

/* True if present; otherwise inserts `new_id` (which must then be stored). */
static bool seqset_find_or_insert(SeqSet *s, const uint8_t *t, int len, uint64_t h, int32_t new_id)
{
    size_t k = (size_t)h & s->mask;
    while (s->id[k] >= 0) {
        if (s->hash[k] == h) {
            int l2;
            const uint8_t *t2 = seqset_tokens(s, s->id[k], &l2);
            if (l2 == len && memcmp(t2, t, (size_t)len) == 0) return true;
        }
        k = (k + 1) & s->mask;
    }
    s->id[k] = new_id;
    s->hash[k] = h;
    return false;
}

void listops_dataset_free(ListopsDataset *d)
{
    free(d->tokens);
    free(d->offset);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

#define LISTOPS_CHUNK 512 /* candidates generated per parallel round */

int listops_dataset_generate(ListopsDataset *d, const ListopsParams *p, uint64_t key, int n,
                             const ListopsDataset *exclude, const char *label, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    if (listops_validate(p, err, errlen)) return -1;
    if (n < 0) {
        snprintf(err, errlen, "sample count %d: must be >= 0", n);
        return -1;
    }
    const int n_ex = exclude ? exclude->n : 0;
    size_t slots = 16;
    while (slots < 2 * ((size_t)n + (size_t)n_ex)) slots *= 2;
    const size_t stride = (size_t)p->max_length;
    size_t tok_cap = (size_t)n * (size_t)(p->min_length + 1) + stride;
    SeqSet set = {.mask = slots - 1, .ex = exclude, .own = d, .n_ex = n_ex};
    set.id = malloc(slots * sizeof *set.id);
    set.hash = malloc(slots * sizeof *set.hash);
    uint8_t *buf = malloc((size_t)LISTOPS_CHUNK * stride);
    int *lens = malloc(LISTOPS_CHUNK * sizeof *lens);
    d->offset = malloc(((size_t)n + 1) * sizeof *d->offset);
    d->labels = malloc(((size_t)n + 1) * sizeof *d->labels);
    d->tokens = malloc(tok_cap);
    int rc = -1;
    if (!set.id || !set.hash || !buf || !lens || !d->offset || !d->labels || !d->tokens) {
        snprintf(err, errlen, "out of memory for %d ListOps samples", n);
        goto done;
    }
    memset(set.id, 0xff, slots * sizeof *set.id);
    for (int i = 0; i < n_ex; i++) {
        const uint8_t *t = listops_sample(exclude, i);
        int len = listops_sample_len(exclude, i);
        seqset_find_or_insert(&set, t, len, hash_tokens(t, len), i);
    }
    const bool verbose = n >= 20000;
    const time_t t0 = time(NULL);
    if (verbose) fprintf(stderr, "listops: generating %d %s samples ...\n", n, label ? label : "");
    d->offset[0] = 0;
    uint64_t next = 0;
    int64_t misses = 0;
    while (d->n < n) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < LISTOPS_CHUNK; c++)
            lens[c] = listops_generate_candidate(p, key, next + (uint64_t)c, buf + (size_t)c * stride);
        /* Accept in candidate order: the result does not depend on threads. */
        for (int c = 0; c < LISTOPS_CHUNK && d->n < n; c++) {
            misses++;
            const int len = lens[c];
            if (len == 0) continue;
            const uint8_t *t = buf + (size_t)c * stride;
            if (seqset_find_or_insert(&set, t, len, hash_tokens(t, len), n_ex + d->n)) continue;
            int64_t at = d->offset[d->n];
            if ((size_t)at + (size_t)len > tok_cap) {
                size_t nc = tok_cap * 2 + (size_t)len;
                uint8_t *nt = realloc(d->tokens, nc);
                if (!nt) {
                    snprintf(err, errlen, "out of memory for %d ListOps samples", n);
                    goto done;
                }
                d->tokens = nt;
                tok_cap = nc;
            }
            memcpy(d->tokens + at, t, (size_t)len);
            int v = listops_eval(t, len);
            if (v < 0) {
                fprintf(stderr, "listops: internal error: generated expression does not evaluate\n");
                abort();
            }
            d->labels[d->n] = v;
            d->offset[d->n + 1] = at + len;
            if (len > d->max_len) d->max_len = len;
            d->n++;
            misses = 0;
        }
        if (misses >= LISTOPS_MAX_MISSES) {
            snprintf(err, errlen,
                     "found only %d of %d distinct %s expressions with %d < length < %d, max_depth %d, max_args %d "
                     "(%d candidates in a row brought no new one): widen the length window or ask for fewer samples",
                     d->n, n, label ? label : "", p->min_length, p->max_length, p->max_depth, p->max_args,
                     LISTOPS_MAX_MISSES);
            goto done;
        }
        next += LISTOPS_CHUNK;
    }
    if (verbose)
        fprintf(stderr, "listops: %d %s samples from %llu candidates in %.0f s\n", n, label ? label : "",
                (unsigned long long)next, difftime(time(NULL), t0));
    rc = 0;
done:
    free(set.id);
    free(set.hash);
    free(buf);
    free(lens);
    if (rc) listops_dataset_free(d);
    return rc;
}
