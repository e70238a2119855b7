/* IMDb, character level, from the user's aclImdb directory (imdb.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imdb.h"

#define IMDB_LAYOUT "expected aclImdb/{train,test}/{neg,pos}/NAME.txt, one review per file"
#define UNICODE_MAX 0x110000u

void imdb_task_keys_register(ConfigSchema *s)
{
    static const char *const LEVELS[] = {"char", "word", NULL};
    config_schema_add_int(s, "dataset.l_max", 4096, 0);
    config_schema_add_int(s, "dataset.min_freq", 15, 0);
    config_schema_add_enum(s, "dataset.level", "char", LEVELS, 0);
    config_schema_add_bool(s, "dataset.append_eos", true, 0);
    config_schema_add_bool(s, "dataset.append_bos", false, 0);
    config_schema_add_int(s, "dataset.n_workers", 4, CONFIG_IGNORED);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Sorted *.txt names in dir; at least one. */
static int list_txt(const char *dir, char ***names_out, int *n_out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open: %s (%s)", dir, strerror(errno), IMDB_LAYOUT);
        return -1;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".txt") != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    const bool oom = e != NULL;
    closedir(d);
    if (oom) {
        free_names(names, n);
        snprintf(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    if (n == 0) {
        free(names);
        snprintf(err, errlen, "%s: no .txt files (%s)", dir, IMDB_LAYOUT);
        return -1;
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    *names_out = names;
    *n_out = n;
    return 0;
}

/* The whole of one review file: a regular file (a symlink to one is
 * followed) of at most IMDB_MAX_REVIEW_BYTES.  Opened without blocking and
 * checked on the open descriptor, so a FIFO, a device or a directory named
 * *.txt is refused at once instead of blocking or reading without end; a
 * file that grows past the bound while it is read is refused too. */
static int read_all(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen)
{
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file (a review must be a regular file or a symlink to one)", path);
        close(fd);
        return -1;
    }
    if (st.st_size > IMDB_MAX_REVIEW_BYTES) {
        snprintf(err, errlen, "%s: %lld bytes, larger than the limit of %d bytes per review", path,
                 (long long)st.st_size, IMDB_MAX_REVIEW_BYTES);
        close(fd);
        return -1;
    }
    /* Room for one byte past the bound: reading it means the file grew. */
    const size_t cap = (size_t)st.st_size + 1;
    unsigned char *b = malloc(cap);
    size_t n = 0;
    int rc = 0;
    if (!b) {
        snprintf(err, errlen, "%s: out of memory", path);
        rc = -1;
    }
    while (rc == 0 && n < cap) {
        const ssize_t got = read(fd, b + n, cap - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
            rc = -1;
        } else if (got == 0) {
            break;
        } else {
            n += (size_t)got;
        }
    }
    if (rc == 0 && n > (size_t)st.st_size) {
        snprintf(err, errlen, "%s: grew while it was read (more than its %lld bytes)", path, (long long)st.st_size);
        rc = -1;
    }
    close(fd);
    if (rc) {
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Strict UTF-8 (as Python's decode("utf-8")): code points of s[0..n) into
 * cp (room for n).  Returns the count, or -1 - (byte offset of the first
 * invalid sequence). */
static long utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    long k = 0;
    size_t i = 0;
    while (i < n) {
        const unsigned c = s[i];
        uint32_t v;
        int extra;
        uint32_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c < 0x80) {
            cp[k++] = c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            v = c & 0x1F;
            extra = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            v = c & 0x0F;
            extra = 2;
            if (c == 0xE0) lo = 0xA0; /* no overlong forms */
            if (c == 0xED) hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            v = c & 0x07;
            extra = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F; /* <= U+10FFFF */
        } else {
            return -1 - (long)i;
        }
        if (i + (size_t)extra >= n) return -1 - (long)i; /* truncated */
        for (int j = 1; j <= extra; j++) {
            const unsigned t = s[i + (size_t)j];
            const unsigned l = j == 1 ? lo : 0x80, h = j == 1 ? hi : 0xBF;
            if (t < l || t > h) return -1 - (long)i;
            v = (v << 6) | (t & 0x3F);
        }
        cp[k++] = v;
        i += (size_t)extra + 1;
    }
    return k;
}

/* One review: its first `keep` code points into *cp (grown as needed). */
typedef struct Reader {
    unsigned char *bytes;
    uint32_t *cp;
    size_t cp_cap;
} Reader;

static long read_review(Reader *r, const char *path, int keep, char *err, size_t errlen)
{
    size_t n;
    free(r->bytes);
    r->bytes = NULL;
    if (read_all(path, &r->bytes, &n, err, errlen)) return -1;
    if (n + 1 > r->cp_cap) {
        uint32_t *cp = realloc(r->cp, (n + 1) * sizeof *cp);
        if (!cp) {
            snprintf(err, errlen, "%s: out of memory", path);
            return -1;
        }
        r->cp = cp;
        r->cp_cap = n + 1;
    }
    long k = utf8_decode(r->bytes, n, r->cp);
    if (k < 0) {
        snprintf(err, errlen, "%s: invalid UTF-8 at byte %ld", path, -1 - k);
        return -1;
    }
    return k < keep ? k : keep;
}

/* The four class folders of a split: neg (label 0) first, then pos. */
static const char *const CLASS_DIRS[2] = {"neg", "pos"};

typedef struct SplitFiles {
    char **names[2];
    int n[2];
} SplitFiles;

static void split_files_free(SplitFiles *f)
{
    for (int k = 0; k < 2; k++) free_names(f->names[k], f->n[k]);
    memset(f, 0, sizeof *f);
}

static int list_split(const char *root, const char *split, SplitFiles *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    char dir[4400];
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/%s/%s", root, split, CLASS_DIRS[k]);
        if (list_txt(dir, &f->names[k], &f->n[k], err, errlen)) {
            split_files_free(f);
            return -1;
        }
    }
    return 0;
}

typedef struct VocabEntry {
    uint32_t cp;
    uint64_t count;
} VocabEntry;

static int cmp_vocab(const void *a, const void *b)
{
    const VocabEntry *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->cp > y->cp) - (x->cp < y->cp);
}

void imdb_data_free(ImdbData *d)
{
    seqset_free(&d->train);
    seqset_free(&d->test);
    free(d->chars);
    memset(d, 0, sizeof *d);
}

/* Tokens of every review of a split into s. */
static int encode_split(const char *root, const char *split, const SplitFiles *f, const ImdbParams *p,
                        const ImdbData *d, const int32_t *map, Reader *r, SeqSet *s, char *err, size_t errlen)
{
    const int keep = p->l_max - (int)p->append_bos - (int)p->append_eos;
    int32_t *tok = malloc((size_t)p->l_max * sizeof *tok);
    if (!tok) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char path[4600];
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++)
        for (int i = 0; i < f->n[k] && rc == 0; i++) {
            snprintf(path, sizeof path, "%s/%s/%s/%s", root, split, CLASS_DIRS[k], f->names[k][i]);
            long m = read_review(r, path, keep, err, errlen);
            if (m < 0) {
                rc = -1;
                break;
            }
            int len = 0;
            if (p->append_bos) tok[len++] = d->bos;
            for (long j = 0; j < m; j++) tok[len++] = map[r->cp[j]];
            if (p->append_eos) tok[len++] = d->eos;
            if (len == 0) {
                snprintf(err, errlen, "%s: empty review (and dataset.append_eos is false)", path);
                rc = -1;
            } else if (seqset_push(s, tok, len, k)) {
                snprintf(err, errlen, "out of memory");
                rc = -1;
            }
        }
    free(tok);
    return rc;
}

int imdb_load(const char *dir, const ImdbParams *p, ImdbData *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char root[4200], probe[4200];
    snprintf(probe, sizeof probe, "%s/aclImdb", dir);
    snprintf(root, sizeof root, "%s", is_dir(probe) ? probe : dir);
    for (int s = 0; s < 2; s++) {
        char split[4400];
        snprintf(split, sizeof split, "%s/%s", root, s ? "test" : "train");
        if (!is_dir(split)) {
            snprintf(err, errlen, "%s: no such directory (%s, under dataset.data_dir = '%s')", split, IMDB_LAYOUT, dir);
            return -1;
        }
    }
    SplitFiles ftrain, ftest;
    if (list_split(root, "train", &ftrain, err, errlen)) return -1;
    if (list_split(root, "test", &ftest, err, errlen)) {
        split_files_free(&ftrain);
        return -1;
    }
    const int keep = p->l_max - (int)p->append_bos - (int)p->append_eos;
    uint64_t *count = calloc(UNICODE_MAX, sizeof *count);
    int32_t *map = malloc(UNICODE_MAX * sizeof *map);
    VocabEntry *ent = NULL;
    Reader r = {0};
    int rc = 0;
    char path[4600];
    if (!count || !map) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    /* Pass 1: character counts of the (cut) training reviews. */
    for (int k = 0; k < 2 && rc == 0; k++)
        for (int i = 0; i < ftrain.n[k] && rc == 0; i++) {
            snprintf(path, sizeof path, "%s/train/%s/%s", root, CLASS_DIRS[k], ftrain.names[k][i]);
            long m = read_review(&r, path, keep, err, errlen);
            if (m < 0) rc = -1;
            for (long j = 0; j < m; j++) count[r.cp[j]]++;
        }
    if (rc == 0) {
        out->n_special = p->append_bos ? 4 : 3;
        out->bos = p->append_bos ? 2 : -1;
        out->eos = p->append_eos ? out->n_special - 1 : -1;
        int n_chars = 0;
        for (uint32_t c = 0; c < UNICODE_MAX; c++)
            if (count[c] >= (uint64_t)p->min_freq) n_chars++;
        ent = malloc((size_t)(n_chars > 0 ? n_chars : 1) * sizeof *ent);
        out->chars = malloc((size_t)(n_chars > 0 ? n_chars : 1) * sizeof *out->chars);
        if (!ent || !out->chars) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else {
            int j = 0;
            for (uint32_t c = 0; c < UNICODE_MAX; c++)
                if (count[c] >= (uint64_t)p->min_freq) ent[j++] = (VocabEntry){c, count[c]};
            qsort(ent, (size_t)n_chars, sizeof *ent, cmp_vocab);
            for (uint32_t c = 0; c < UNICODE_MAX; c++) map[c] = IMDB_UNK;
            for (j = 0; j < n_chars; j++) {
                out->chars[j] = ent[j].cp;
                map[ent[j].cp] = out->n_special + j;
            }
            out->vocab = out->n_special + n_chars;
            if (out->vocab > 65536) {
                snprintf(err, errlen, "vocabulary of %d tokens exceeds 65536 (raise dataset.min_freq)", out->vocab);
                rc = -1;
            }
        }
    }
    /* Pass 2: tokens. */
    if (rc == 0 && (seqset_init(&out->train, 2, (int64_t)1 << 20, ftrain.n[0] + ftrain.n[1]) ||
                    seqset_init(&out->test, 2, (int64_t)1 << 20, ftest.n[0] + ftest.n[1]))) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc == 0) rc = encode_split(root, "train", &ftrain, p, out, map, &r, &out->train, err, errlen);
    if (rc == 0) rc = encode_split(root, "test", &ftest, p, out, map, &r, &out->test, err, errlen);
    free(r.bytes);
    free(r.cp);
    free(ent);
    free(map);
    free(count);
    split_files_free(&ftrain);
    split_files_free(&ftest);
    if (rc) imdb_data_free(out);
    return rc;
}

Task *imdb_task_create(const Config *c, uint64_t seed, char *err, size_t errlen)
{
#define KEY_FAIL(key, ...)                                 \
    do {                                                   \
        config_key_error(c, key, err, errlen, __VA_ARGS__); \
        return NULL;                                       \
    } while (0)
    ImdbParams p = {.l_max = config_int(c, "dataset.l_max"),
                    .min_freq = config_int(c, "dataset.min_freq"),
                    .append_bos = config_bool(c, "dataset.append_bos"),
                    .append_eos = config_bool(c, "dataset.append_eos")};
    if (strcmp(config_str(c, "dataset.level"), "char") != 0)
        KEY_FAIL("dataset.level", "dataset.level = word: word-level IMDb (spaCy tokenizer) is not implemented; "
                 "use dataset.level: char");
    if (p.l_max <= (int)p.append_bos + (int)p.append_eos)
        KEY_FAIL("dataset.l_max", "dataset.l_max = %d: must exceed the %d special token(s) appended", p.l_max,
                 (int)p.append_bos + (int)p.append_eos);
    if (p.min_freq < 1) KEY_FAIL("dataset.min_freq", "dataset.min_freq = %d: must be >= 1", p.min_freq);
    double val_split;
    if (seqcls_val_split(c, 0.0, &val_split, err, errlen)) return NULL;
    const char *dir = config_str(c, "dataset.data_dir");
    if (!dir[0])
        KEY_FAIL("dataset.data_dir", "dataset.data_dir is empty: set it to the directory holding your copy of "
                 "aclImdb (%s), e.g. --set dataset.data_dir=/path/to/imdb", IMDB_LAYOUT);
    if (!is_dir(dir))
        KEY_FAIL("dataset.data_dir", "dataset.data_dir = '%s': not a directory (%s)", dir, IMDB_LAYOUT);
#undef KEY_FAIL
    ImdbData d;
    char msg[4800];
    if (imdb_load(dir, &p, &d, msg, sizeof msg)) {
        snprintf(err, errlen, "IMDb: %s", msg);
        return NULL;
    }
    int32_t *idx = NULL;
    int n_train = seqcls_split(d.train.n, val_split, (uint64_t)config_int(c, "dataset.seed"), &idx);
    if (n_train <= 0) {
        snprintf(err, errlen, "IMDb: %s", n_train < 0 ? "out of memory" : "no training reviews left after dataset.val_split");
        free(idx);
        imdb_data_free(&d);
        return NULL;
    }
    free(d.chars);
    return seqcls_task_create("imdb", &d.train, &d.test, idx, n_train, d.vocab, 2, IMDB_PAD, seed, err, errlen);
}
