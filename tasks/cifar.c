/* Sequential CIFAR-10 from the user's binary batches (cifar.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cifar.h"

#define CIFAR_LAYOUT                                                                                       \
    "expected the CIFAR-10 binary version: data_batch_1.bin .. data_batch_5.bin and test_batch.bin, " \
    "records of 1 label byte + 3072 pixel bytes"

void cifar_task_keys_register(ConfigSchema *s)
{
    /* Reference defaults (dataloaders/basic.py); its configs set grayscale. */
    config_schema_add_bool(s, "dataset.grayscale", false, 0);
    config_schema_add_bool(s, "dataset.tokenize", false, 0);
    config_schema_add_bool(s, "dataset.augment", false, 0);
}

int cifar_read_file(const char *path, SeqSet *s, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s: cannot open: %s (%s)", path, strerror(errno), CIFAR_LAYOUT);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size % CIFAR_RECORD != 0) {
        snprintf(err, errlen, "%s: %lld bytes, expected a positive multiple of %d (CIFAR-10 binary records: "
                 "1 label byte + 3072 pixel bytes)", path, (long long)st.st_size, CIFAR_RECORD);
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    const long n = (long)(st.st_size / CIFAR_RECORD);
    uint8_t rec[CIFAR_RECORD];
    int32_t seq[CIFAR_PIXELS];
    int rc = 0;
    for (long i = 0; i < n && rc == 0; i++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            snprintf(err, errlen, "%s: read error in record %ld: %s", path, i,
                     ferror(f) ? strerror(errno) : "unexpected end of file");
            rc = -1;
        } else if (rec[0] >= CIFAR_CLASSES) {
            snprintf(err, errlen, "%s: record %ld has label %d, expected 0-9 (%s)", path, i, rec[0], CIFAR_LAYOUT);
            rc = -1;
        } else {
            const uint8_t *r = rec + 1, *g = r + CIFAR_PIXELS, *b = g + CIFAR_PIXELS;
            for (int p = 0; p < CIFAR_PIXELS; p++) seq[p] = cifar_gray(r[p], g[p], b[p]);
            if (seqset_push(s, seq, CIFAR_PIXELS, rec[0])) {
                snprintf(err, errlen, "%s: out of memory", path);
                rc = -1;
            }
        }
    }
    fclose(f);
    return rc;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Size in records of a file, for reserving (0 if unknown). */
static int64_t file_records(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)(st.st_size / CIFAR_RECORD) : 0;
}

Task *cifar_task_create(const Config *c, uint64_t seed, char *err, size_t errlen)
{
#define KEY_FAIL(key, ...)                                 \
    do {                                                   \
        config_key_error(c, key, err, errlen, __VA_ARGS__); \
        return NULL;                                       \
    } while (0)
    if (!config_bool(c, "dataset.grayscale"))
        KEY_FAIL("dataset.grayscale", "dataset.grayscale = false: RGB CIFAR-10 (3 values per pixel) is not "
                 "implemented yet; set dataset.grayscale: true");
    if (config_bool(c, "dataset.augment"))
        KEY_FAIL("dataset.augment", "dataset.augment = true: augmentation is not implemented (the reference "
                 "configs do not use it)");
    double val_split;
    if (seqcls_val_split(c, 0.1, &val_split, err, errlen)) return NULL;
    const char *dir = config_str(c, "dataset.data_dir");
    if (!dir[0])
        KEY_FAIL("dataset.data_dir", "dataset.data_dir is empty: set it to your copy of CIFAR-10 (%s), e.g. "
                 "--set dataset.data_dir=/path/to/cifar-10-batches-bin", CIFAR_LAYOUT);
    if (!is_dir(dir)) KEY_FAIL("dataset.data_dir", "dataset.data_dir = '%s': not a directory (%s)", dir, CIFAR_LAYOUT);
#undef KEY_FAIL

    /* The directory itself, or the one the archive unpacks to inside it. */
    char base[4200], path[4400];
    snprintf(base, sizeof base, "%s", dir);
    snprintf(path, sizeof path, "%s/data_batch_1.bin", base);
    if (!is_file(path)) {
        snprintf(base, sizeof base, "%s/cifar-10-batches-bin", dir);
        if (!is_dir(base)) snprintf(base, sizeof base, "%s", dir);
    }
    static const char *const TRAIN_FILES[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                              "data_batch_4.bin", "data_batch_5.bin"};
    int64_t n_train_rec = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", base, TRAIN_FILES[i]);
        n_train_rec += file_records(path);
    }
    snprintf(path, sizeof path, "%s/test_batch.bin", base);
    int64_t n_test_rec = file_records(path);
    SeqSet train, test;
    if (seqset_init(&train, 1, n_train_rec * CIFAR_PIXELS, (int)n_train_rec) ||
        seqset_init(&test, 1, n_test_rec * CIFAR_PIXELS, (int)n_test_rec)) {
        seqset_free(&train);
        snprintf(err, errlen, "CIFAR-10: out of memory");
        return NULL;
    }
    char msg[4600];
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++) {
        snprintf(path, sizeof path, "%s/%s", base, TRAIN_FILES[i]);
        rc = cifar_read_file(path, &train, msg, sizeof msg);
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/test_batch.bin", base);
        rc = cifar_read_file(path, &test, msg, sizeof msg);
    }
    int32_t *idx = NULL;
    int n_train = 0;
    if (rc == 0) {
        n_train = seqcls_split(train.n, val_split, (uint64_t)config_int(c, "dataset.seed"), &idx);
        if (n_train < 0) {
            snprintf(msg, sizeof msg, "out of memory");
            rc = -1;
        } else if (n_train == 0) {
            snprintf(msg, sizeof msg, "no training images left after dataset.val_split = %g of %d", val_split,
                     train.n);
            rc = -1;
        }
    }
    if (rc) {
        snprintf(err, errlen, "CIFAR-10: %s", msg);
        seqset_free(&train);
        seqset_free(&test);
        free(idx);
        return NULL;
    }
    Task *t = seqcls_task_create("cifar", &train, &test, idx, n_train, 256, CIFAR_CLASSES, 0, seed, err, errlen);
    if (t) t->input_kind_key = "dataset.tokenize"; /* true: pixel tokens, false: normalised gray floats */
    if (t && !config_bool(c, "dataset.tokenize")) {
        float table[256];
        for (int v = 0; v < 256; v++) table[v] = cifar_feature(v);
        if (seqcls_set_features(t, 1, table)) {
            task_free(t);
            snprintf(err, errlen, "CIFAR-10: out of memory");
            return NULL;
        }
    }
    return t;
}
