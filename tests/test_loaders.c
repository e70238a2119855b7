/* The loaders of user-provided data (tasks/cifar.h, tasks/imdb.h): tiny
 * files in the real formats in a temporary directory, read through the
 * Task interface; the grayscale and vocabulary rules; error messages. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/config.h"
#include "../app/train.h"
#include "../tasks/cifar.h"
#include "../tasks/imdb.h"
#include "../tasks/seqcls.h"
#include "../tasks/task.h"
#include "testutil.h"

/* ---------- temporary files ---------- */

static char tmp_root[64];

static void make_root(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/seqeig_test_loaders_XXXXXX");
    ck_assert(mkdtemp(tmp_root) != NULL);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_root(void) { nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* root/rel, creating the parent directories. */
static const char *path_of(const char *rel)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp_root, rel);
    for (char *s = p + strlen(tmp_root) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0700);
            *s = '/';
        }
    return p;
}

static void write_bytes(const char *rel, const void *data, size_t n)
{
    FILE *f = fopen(path_of(rel), "wb");
    ck_assert(f != NULL);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_text(const char *rel, const char *text) { write_bytes(rel, text, strlen(text)); }

/* ---------- tasks from configs ---------- */

typedef struct Made {
    ConfigSchema s;
    Config c;
    Task *t;
    char err[1024];
} Made;

/* Task from YAML text plus data_dir (relative to the temp root, or absolute
 * when it starts with '/', or none when NULL). */
static Task *make(Made *m, const char *yaml, const char *data_dir, uint64_t seed)
{
    run_schema_build(&m->s);
    int rc = config_load_yaml_text(&m->c, &m->s, yaml, "test.yaml", m->err, sizeof m->err);
    ck_assert_msg(rc == 0, "%s", m->err);
    if (data_dir) {
        char set[700];
        if (data_dir[0] == '/')
            snprintf(set, sizeof set, "dataset.data_dir=%s", data_dir);
        else
            snprintf(set, sizeof set, "dataset.data_dir=%s/%s", tmp_root, data_dir);
        ck_assert_msg(config_set_override(&m->c, set, m->err, sizeof m->err) == 0, "%s", m->err);
    }
    m->t = task_create(&m->c, seed, m->err, sizeof m->err);
    return m->t;
}

static void unmake(Made *m)
{
    task_free(m->t);
    config_free(&m->c);
    config_schema_free(&m->s);
}

/* make() must fail with a message containing `want`. */
static void expect_error(const char *yaml, const char *data_dir, const char *want)
{
    Made m;
    Task *t = make(&m, yaml, data_dir, 1);
    ck_assert_msg(t == NULL, "expected an error containing '%s'", want);
    ck_assert_msg(strstr(m.err, want) != NULL, "error '%s' lacks '%s'", m.err, want);
    unmake(&m);
}

/* ---------- CIFAR-10 ---------- */

#define CIFAR_YAML "dataset:\n  _name_: cifar\n  grayscale: True\n  tokenize: True\n"

/* Pixel p of record r of file f: a pattern that reaches every byte value. */
static uint8_t px(int f, int r, int ch, int p) { return (uint8_t)(p * (7 + 2 * ch) + 31 * r + 101 * f + 53 * ch); }

static int rec_label(int f, int r) { return (3 * f + r) % 10; }

/* Binary batch file f (0-4 training, 5 test) with n records. */
static void write_cifar_file(const char *dir, int f, int n)
{
    uint8_t *buf = malloc((size_t)n * CIFAR_RECORD);
    for (int r = 0; r < n; r++) {
        uint8_t *rec = buf + (size_t)r * CIFAR_RECORD;
        rec[0] = (uint8_t)rec_label(f, r);
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < CIFAR_PIXELS; p++) rec[1 + ch * CIFAR_PIXELS + p] = px(f, r, ch, p);
    }
    char rel[128];
    if (f < 5)
        snprintf(rel, sizeof rel, "%s/data_batch_%d.bin", dir, f + 1);
    else
        snprintf(rel, sizeof rel, "%s/test_batch.bin", dir);
    write_bytes(rel, buf, (size_t)n * CIFAR_RECORD);
    free(buf);
}

/* 2 records per training file (10), 3 test records. */
static void write_cifar(const char *dir)
{
    for (int f = 0; f < 5; f++) write_cifar_file(dir, f, 2);
    write_cifar_file(dir, 5, 3);
}

/* PIL's RGB -> L, written out from its definition (ITU-R 601-2 weights
 * scaled by 2^16, +0.5 for rounding). */
static int pil_l(int r, int g, int b) { return (r * 19595 + g * 38470 + b * 7471 + 32768) >> 16; }

START_TEST(test_cifar_gray_is_pil_convert_l)
{
    /* Hand-computed: 0.299*255 = 76.2, 0.587*255 = 149.7, 0.114*255 = 29.1. */
    ck_assert_int_eq(cifar_gray(255, 0, 0), 76);
    ck_assert_int_eq(cifar_gray(0, 255, 0), 150);
    ck_assert_int_eq(cifar_gray(0, 0, 255), 29);
    ck_assert_int_eq(cifar_gray(255, 255, 255), 255);
    ck_assert_int_eq(cifar_gray(0, 0, 0), 0);
    ck_assert_int_eq(cifar_gray(10, 20, 30), 18); /* 18.15 */
    /* Every colour: within 1/2 of the exact luma, plus the fixed-point slack
     * 255 * sum |w - round(w 2^16) / 2^16| < 3e-3. */
    for (int r = 0; r < 256; r += 3)
        for (int g = 0; g < 256; g++)
            for (int b = 0; b < 256; b++) {
                int v = cifar_gray((uint8_t)r, (uint8_t)g, (uint8_t)b);
                double exact = 0.299 * r + 0.587 * g + 0.114 * b;
                ck_assert(v >= 0 && v <= 255);
                if (v - exact > 0.5 + 3e-3 || exact - v > 0.5 + 3e-3)
                    ck_abort_msg("gray(%d,%d,%d) = %d, luma %.4f", r, g, b, v, exact);
            }
    /* The reference then runs ToTensor (x / 255 in float) and
     * (x * 255).long(): that gives the byte back for every value. */
    for (int v = 0; v < 256; v++) {
        volatile float q = (float)v / 255.0f;
        volatile float back = q * 255.0f;
        ck_assert_int_eq((long)back, v);
    }
}
END_TEST

START_TEST(test_cifar_batches_are_gray_pixels_and_labels)
{
    make_root();
    write_cifar("c");
    Made m;
    Task *t = make(&m, CIFAR_YAML "  val_split: 0\n", "c", 3);
    ck_assert_msg(t != NULL, "%s", m.err);
    ck_assert_str_eq(t->name, "cifar");
    ck_assert_int_eq(t->seq_len, 1024);
    ck_assert_int_eq(t->vocab, 256);
    ck_assert_int_eq(t->num_outputs, 10);
    ck_assert(t->classification);
    ck_assert_int_eq(t->n_test, 3);
    ck_assert_int_eq(t->n_train, 10);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 4, t->seq_len, 0), 0);
    /* Test records 1..2 in file order. */
    t->test_batch(t, 1, 2, &b);
    ck_assert_int_eq(b.B, 2);
    ck_assert_int_eq(b.L, 1024);
    ck_assert(b.mask == NULL);
    ck_assert(b.rows == NULL);
    ck_assert_int_eq(b.n_rows, 2);
    for (int i = 0; i < 2; i++) {
        int r = 1 + i;
        ck_assert_int_eq(b.targets[i], rec_label(5, r));
        for (int p = 0; p < 1024; p++)
            ck_assert_int_eq(b.tokens[i * 1024 + p], pil_l(px(5, r, 0, p), px(5, r, 1, p), px(5, r, 2, p)));
    }
    /* Training examples are records of the five training files. */
    t->train_batch(t, 0, 4, &b);
    ck_assert(b.mask == NULL && b.rows == NULL);
    for (int i = 0; i < 4; i++) {
        int hit = 0;
        for (int f = 0; f < 5; f++)
            for (int r = 0; r < 2; r++)
                if (b.tokens[i * 1024 + 5] == pil_l(px(f, r, 0, 5), px(f, r, 1, 5), px(f, r, 2, 5)) &&
                    b.tokens[i * 1024 + 700] == pil_l(px(f, r, 0, 700), px(f, r, 1, 700), px(f, r, 2, 700))) {
                    ck_assert_int_eq(b.targets[i], rec_label(f, r));
                    hit = 1;
                }
        ck_assert_msg(hit, "training row %d is no record", i);
    }
    task_batch_free(&b);
    unmake(&m);
    remove_root();
}
END_TEST

/* Index of the training record (f*2 + r) whose sequence is row i of b. */
static int which_record(const TaskBatch *b, int i)
{
    for (int f = 0; f < 5; f++)
        for (int r = 0; r < 2; r++) {
            int ok = 1;
            for (int p = 0; p < 1024 && ok; p += 97)
                ok = b->tokens[i * 1024 + p] == pil_l(px(f, r, 0, p), px(f, r, 1, p), px(f, r, 2, p));
            if (ok) return f * 2 + r;
        }
    return -1;
}

/* tokenize: false (the reference default): the batch also carries the
 * normalised gray value of every pixel for a Linear(1, d) input layer. */
START_TEST(test_cifar_float_inputs_are_normalised_gray_pixels)
{
    make_root();
    write_cifar("c");
    Made m;
    Task *t = make(&m, "dataset:\n  _name_: cifar\n  grayscale: True\n  val_split: 0\n", "c", 3);
    ck_assert_msg(t != NULL, "%s", m.err);
    ck_assert_int_eq(t->input_dim, 1);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 4, t->seq_len, t->input_dim), 0);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0)
            t->test_batch(t, 0, 3, &b);
        else
            t->train_batch(t, 2, 4, &b);
        ck_assert(b.features != NULL);
        for (int i = 0; i < b.B * 1024; i++) {
            const int32_t v = b.tokens[i];
            ck_assert(v >= 0 && v < 256);
            /* (v/255 - 122.6/255) / (61.0/255) = (v - 122.6) / 61 in exact arithmetic */
            const double want = ((double)v - 122.6) / 61.0;
            ck_assert_msg(fabs(b.features[i] - want) <= 4e-7 * (1.0 + fabs(want)), "pixel %d = %d: %.9g, want %.9g",
                          i, v, (double)b.features[i], want);
        }
    }
    /* Both ends of the range, as torch computes them in float32. */
    ck_assert_float_eq_tol(cifar_feature(0), -2.0098362f, 1e-6f);
    ck_assert_float_eq_tol(cifar_feature(255), 2.1704919f, 1e-6f);
    task_batch_free(&b);
    unmake(&m);
    remove_root();
}
END_TEST

START_TEST(test_cifar_epochs_visit_each_training_image_once)
{
    make_root();
    write_cifar("c");
    Made m;
    Task *t = make(&m, CIFAR_YAML "  val_split: 0.0\n", "c", 9);
    ck_assert_msg(t != NULL, "%s", m.err);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 4, 1024, 0), 0);
    int seen[2][10] = {{0}}, order[2][10];
    for (int k = 0; k < 5; k++) { /* 20 positions = 2 epochs of 10 */
        t->train_batch(t, k, 4, &b);
        for (int i = 0; i < 4; i++) {
            int pos = k * 4 + i, e = which_record(&b, i);
            ck_assert(e >= 0);
            seen[pos / 10][e]++;
            order[pos / 10][pos % 10] = e;
        }
    }
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[e][i], 1);
    ck_assert_msg(memcmp(order[0], order[1], sizeof order[0]) != 0, "epochs 0 and 1 have the same order");
    task_batch_free(&b);
    unmake(&m);
    remove_root();
}
END_TEST

START_TEST(test_cifar_default_val_split_holds_out_a_tenth)
{
    make_root();
    write_cifar("c");
    Made m;
    Task *t = make(&m, CIFAR_YAML, "c", 9); /* val_split -1 = the reference 0.1 */
    ck_assert_msg(t != NULL, "%s", m.err);
    ck_assert_int_eq(t->n_train, 9);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 3, 1024, 0), 0);
    int seen[10] = {0};
    for (int k = 0; k < 3; k++) { /* one epoch */
        t->train_batch(t, k, 3, &b);
        for (int i = 0; i < 3; i++) seen[which_record(&b, i)]++;
    }
    int32_t *idx;
    ck_assert_int_eq(seqcls_split(10, 0.1, 42, &idx), 9);
    int held = idx[9]; /* the held-out record (split seed dataset.seed = 42) */
    for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], i == held ? 0 : 1);
    free(idx);
    task_batch_free(&b);
    unmake(&m);
    remove_root();
}
END_TEST

START_TEST(test_cifar_batches_are_deterministic)
{
    make_root();
    write_cifar("c");
    Made m1, m2, m3;
    Task *t1 = make(&m1, CIFAR_YAML, "c", 4), *t2 = make(&m2, CIFAR_YAML, "c", 4), *t3 = make(&m3, CIFAR_YAML, "c", 5);
    ck_assert(t1 && t2 && t3);
    TaskBatch a, b, c;
    ck_assert_int_eq(task_batch_alloc(&a, 6, 1024, 0), 0);
    ck_assert_int_eq(task_batch_alloc(&b, 6, 1024, 0), 0);
    ck_assert_int_eq(task_batch_alloc(&c, 6, 1024, 0), 0);
    t1->train_batch(t1, 0, 6, &a); /* history must not matter */
    t1->train_batch(t1, 7, 6, &a);
    t2->train_batch(t2, 7, 6, &b);
    ck_assert_mem_eq(a.tokens, b.tokens, 6 * 1024 * sizeof(int32_t));
    ck_assert_mem_eq(a.targets, b.targets, 6 * sizeof(int32_t));
    /* Another run seed, another order (the same pool of images). */
    int differ = 0;
    for (int k = 0; k < 3 && !differ; k++) {
        t2->train_batch(t2, k, 6, &b);
        t3->train_batch(t3, k, 6, &c);
        differ = memcmp(b.tokens, c.tokens, 6 * 1024 * sizeof(int32_t)) != 0;
    }
    ck_assert(differ);
    task_batch_free(&a);
    task_batch_free(&b);
    task_batch_free(&c);
    unmake(&m1);
    unmake(&m2);
    unmake(&m3);
    remove_root();
}
END_TEST

START_TEST(test_cifar_archive_subdirectory_is_found)
{
    make_root();
    write_cifar("c/cifar-10-batches-bin");
    Made m;
    Task *t = make(&m, CIFAR_YAML, "c", 1);
    ck_assert_msg(t != NULL, "%s", m.err);
    ck_assert_int_eq(t->n_test, 3);
    unmake(&m);
    remove_root();
}
END_TEST

START_TEST(test_cifar_errors_name_path_and_expectation)
{
    make_root();
    expect_error(CIFAR_YAML, NULL, "dataset.data_dir is empty");
    expect_error(CIFAR_YAML, "nope", "not a directory (expected the CIFAR-10 binary version");
    write_cifar("c");
    expect_error("dataset:\n  _name_: cifar\n  tokenize: True\n", "c", "dataset.grayscale = false: RGB");
    expect_error(CIFAR_YAML "  augment: True\n", "c", "dataset.augment = true");
    expect_error(CIFAR_YAML "  val_split: 1.0\n", "c", "dataset.val_split = 1: must be in [0, 1)");
    char want[512];
    /* A missing file. */
    unlink(path_of("c/data_batch_3.bin"));
    snprintf(want, sizeof want, "CIFAR-10: %s/c/data_batch_3.bin: cannot open: No such file or directory", tmp_root);
    expect_error(CIFAR_YAML, "c", want);
    /* A size that is no multiple of 3073, and an empty file. */
    write_cifar_file("c", 2, 2);
    FILE *f = fopen(path_of("c/data_batch_3.bin"), "ab");
    fputs("xyz", f);
    fclose(f);
    snprintf(want, sizeof want, "%s/c/data_batch_3.bin: 6149 bytes, expected a positive multiple of 3073", tmp_root);
    expect_error(CIFAR_YAML, "c", want);
    write_bytes("c/test_batch.bin", "", 0);
    write_cifar_file("c", 2, 2);
    snprintf(want, sizeof want, "%s/c/test_batch.bin: 0 bytes, expected a positive multiple of 3073", tmp_root);
    expect_error(CIFAR_YAML, "c", want);
    /* A label outside 0-9. */
    write_cifar_file("c", 5, 3);
    uint8_t rec[CIFAR_RECORD] = {10};
    write_bytes("c/data_batch_1.bin", rec, sizeof rec);
    expect_error(CIFAR_YAML, "c", "data_batch_1.bin: record 0 has label 10, expected 0-9");
    remove_root();
}
END_TEST

/* ---------- IMDb ---------- */

#define IMDB_BASE "dataset:\n  _name_: imdb\n  l_max: 6\n"
#define IMDB_YAML IMDB_BASE "  min_freq: 2\n"

/* Counts after cutting to l_max - 1 = 5 characters (train only):
 * c 5 (the rest of 1_2.txt, incl. the z, is cut), a 4, b 3, d 2, e-acute 2,
 * space 1.  min_freq 2: <pad> <unk> <eos> c a b d e-acute = 0..7; d and
 * e-acute tie and d has the lower code point (e-acute is seen first). */
static void write_imdb(const char *dir)
{
    char rel[256];
#define W(split, cls, name, text)                                               \
    snprintf(rel, sizeof rel, "%s/%s/%s/%s", dir, split, cls, name);            \
    write_text(rel, text)
    W("train", "neg", "0_1.txt", "aaab");
    W("train", "neg", "1_2.txt", "ccccccccz");
    W("train", "neg", "notes.md", "zzzzzzzzzz"); /* not a review */
    W("train", "pos", "10_8.txt", "abdd");
    W("train", "pos", "0_9.txt", "b\xc3\xa9 \xc3\xa9");
    W("test", "neg", "5_1.txt", "zxa");
    W("test", "pos", "3_7.txt", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
#undef W
    snprintf(rel, sizeof rel, "%s/train/unsup/0_0.txt", dir); /* not read */
    write_text(rel, "zzzzzzzz");
}

START_TEST(test_imdb_vocabulary_is_by_count_then_code_point)
{
    make_root();
    write_imdb("i/aclImdb");
    ImdbParams p = {.l_max = 6, .min_freq = 2, .append_eos = true};
    ImdbData d;
    char err[1024];
    ck_assert_msg(imdb_load(path_of("i"), &p, &d, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(d.n_special, 3);
    ck_assert_int_eq(d.eos, 2);
    ck_assert_int_eq(d.bos, -1);
    ck_assert_int_eq(d.vocab, 8);
    const uint32_t want[5] = {'c', 'a', 'b', 'd', 0xE9};
    ck_assert_mem_eq(d.chars, want, sizeof want);
    imdb_data_free(&d);
    /* min_freq 3 drops d and e-acute; min_freq 1 adds the space (count 1) last. */
    p.min_freq = 3;
    ck_assert_msg(imdb_load(path_of("i"), &p, &d, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(d.vocab, 6);
    imdb_data_free(&d);
    p.min_freq = 1;
    ck_assert_msg(imdb_load(path_of("i"), &p, &d, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(d.vocab, 9);
    ck_assert_uint_eq(d.chars[5], ' ');
    imdb_data_free(&d);
    remove_root();
}
END_TEST

START_TEST(test_imdb_tokens_truncation_eos_labels_and_padding)
{
    make_root();
    write_imdb("i/aclImdb");
    Made m;
    Task *t = make(&m, IMDB_YAML, "i", 2);
    ck_assert_msg(t != NULL, "%s", m.err);
    ck_assert_str_eq(t->name, "imdb");
    ck_assert_int_eq(t->vocab, 8);
    ck_assert_int_eq(t->num_outputs, 2);
    ck_assert(t->classification);
    ck_assert_int_eq(t->seq_len, 6); /* l_max: 5 characters + <eos> */
    ck_assert_int_eq(t->n_test, 2);
    ck_assert_int_eq(t->n_train, 4);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 4, t->seq_len, 0), 0);
    /* Test split: neg/5_1 "zxa" (z, x unknown), pos/3_7 six e-acute cut to five. */
    t->test_batch(t, 0, 2, &b);
    ck_assert_int_eq(b.B, 2);
    ck_assert_int_eq(b.L, 6);
    const int32_t tok[12] = {1, 1, 4, 2, 0, 0, 7, 7, 7, 7, 7, 2};
    const float mask[12] = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};
    ck_assert_mem_eq(b.tokens, tok, sizeof tok);
    ck_assert(b.mask != NULL);
    ck_assert_mem_eq(b.mask, mask, sizeof mask);
    ck_assert(b.rows == NULL);
    ck_assert_int_eq(b.n_rows, 2);
    ck_assert_int_eq(b.targets[0], 0);
    ck_assert_int_eq(b.targets[1], 1);
    /* One example alone: L is its own length. */
    t->test_batch(t, 0, 1, &b);
    ck_assert_int_eq(b.L, 4);
    ck_assert(b.mask == NULL);
    ck_assert_mem_eq(b.tokens, tok, 4 * sizeof(int32_t));
    /* Training split, in file order neg (0_1, 1_2) then pos (0_9, 10_8). */
    const int32_t train[4][6] = {{4, 4, 4, 5, 2, -1}, {3, 3, 3, 3, 3, 2}, {5, 7, 1, 7, 2, -1}, {4, 5, 6, 6, 2, -1}};
    const int train_len[4] = {5, 6, 5, 5}, train_label[4] = {0, 0, 1, 1};
    int seen[4] = {0};
    for (int k = 0; k < 2; k++) { /* batch 2, one epoch */
        t->train_batch(t, k, 2, &b);
        for (int i = 0; i < 2; i++) {
            int hit = -1;
            for (int e = 0; e < 4; e++)
                if (memcmp(b.tokens + i * b.L, train[e], (size_t)train_len[e] * sizeof(int32_t)) == 0) hit = e;
            ck_assert_msg(hit >= 0, "training row %d of step %d is no review", i, k);
            seen[hit]++;
            ck_assert_int_eq(b.targets[i], train_label[hit]);
            for (int j = 0; j < b.L; j++) {
                ck_assert_int_eq(b.tokens[i * b.L + j] == 0, j >= train_len[hit]);
                if (b.mask) ck_assert(b.mask[i * b.L + j] == (j < train_len[hit] ? 1.0f : 0.0f));
            }
        }
    }
    for (int e = 0; e < 4; e++) ck_assert_int_eq(seen[e], 1);
    task_batch_free(&b);
    unmake(&m);
    remove_root();
}
END_TEST

START_TEST(test_imdb_bos_and_layout_variants)
{
    make_root();
    write_imdb("i/aclImdb");
    /* data_dir may be aclImdb itself; append_bos puts <bos> = 2 first and <eos> = 3 last. */
    Made m;
    Task *t = make(&m, IMDB_BASE "  append_bos: True\n  min_freq: 1\n", "i/aclImdb", 2);
    ck_assert_msg(t != NULL, "%s", m.err);
    ck_assert_int_eq(t->seq_len, 6);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 2, t->seq_len, 0), 0);
    t->test_batch(t, 0, 2, &b);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(b.tokens[i * b.L], 2);
    /* "zxa" -> <bos> z x a <eos>: z and x never occur in the cut training text. */
    ck_assert_int_eq(b.tokens[1], 1);
    ck_assert_int_eq(b.tokens[2], 1);
    ck_assert_int_eq(b.tokens[4], 3);
    ck_assert_int_eq(b.tokens[b.L + 5], 3); /* 4 e-acute kept + <bos> + <eos> = 6 */
    task_batch_free(&b);
    unmake(&m);
    remove_root();
}
END_TEST

START_TEST(test_imdb_batches_are_deterministic)
{
    make_root();
    write_imdb("i/aclImdb");
    Made m1, m2;
    Task *t1 = make(&m1, IMDB_YAML, "i", 8), *t2 = make(&m2, IMDB_YAML, "i", 8);
    ck_assert(t1 && t2);
    TaskBatch a, b;
    ck_assert_int_eq(task_batch_alloc(&a, 3, 6, 0), 0);
    ck_assert_int_eq(task_batch_alloc(&b, 3, 6, 0), 0);
    t1->train_batch(t1, 5, 3, &a);
    t2->train_batch(t2, 0, 3, &b);
    t2->train_batch(t2, 5, 3, &b);
    ck_assert_int_eq(a.L, b.L);
    ck_assert_mem_eq(a.tokens, b.tokens, (size_t)3 * a.L * sizeof(int32_t));
    ck_assert_mem_eq(a.targets, b.targets, 3 * sizeof(int32_t));
    task_batch_free(&a);
    task_batch_free(&b);
    unmake(&m1);
    unmake(&m2);
    remove_root();
}
END_TEST

START_TEST(test_imdb_errors_name_path_and_expectation)
{
    make_root();
    char want[600];
    expect_error(IMDB_YAML, NULL, "dataset.data_dir is empty");
    expect_error(IMDB_YAML, "nope", "not a directory (expected aclImdb/{train,test}/{neg,pos}/NAME.txt");
    write_imdb("i/aclImdb");
    expect_error(IMDB_YAML "  level: word\n", "i", "dataset.level = word: word-level IMDb");
    expect_error(IMDB_BASE "  min_freq: 0\n", "i", "dataset.min_freq = 0: must be >= 1");
    expect_error("dataset:\n  _name_: imdb\n  l_max: 1\n  append_bos: True\n", "i",
                 "dataset.l_max = 1: must exceed the 2 special token(s)");
    /* Invalid UTF-8 (a lone continuation byte at offset 2). */
    write_text("i/aclImdb/test/pos/9_9.txt", "ab\x80");
    snprintf(want, sizeof want, "IMDb: %s/i/aclImdb/test/pos/9_9.txt: invalid UTF-8 at byte 2", tmp_root);
    expect_error(IMDB_YAML, "i", want);
    unlink(path_of("i/aclImdb/test/pos/9_9.txt"));
    /* A class folder without reviews, then without the folder. */
    unlink(path_of("i/aclImdb/test/pos/3_7.txt"));
    snprintf(want, sizeof want, "IMDb: %s/i/aclImdb/test/pos: no .txt files (expected aclImdb/", tmp_root);
    expect_error(IMDB_YAML, "i", want);
    rmdir(path_of("i/aclImdb/test/pos"));
    snprintf(want, sizeof want, "IMDb: %s/i/aclImdb/test/pos: cannot open: No such file or directory", tmp_root);
    expect_error(IMDB_YAML, "i", want);
    /* No split folder at all. */
    snprintf(want, sizeof want, "IMDb: %s/j/train: no such directory", tmp_root);
    write_text("j/readme.txt", "x");
    expect_error(IMDB_YAML, "j", want);
    remove_root();
}
END_TEST

START_TEST(test_utf8_decoding_matches_python_strictness)
{
    make_root();
    /* Valid: 1-4 byte forms, up to U+10FFFF; each file is one character
     * repeated twice so that min_freq 2 keeps it. */
    struct {
        const char *bytes;
        uint32_t cp;
    } ok[] = {{"\x7f", 0x7F}, {"\xc2\x80", 0x80}, {"\xe0\xa0\x80", 0x800}, {"\xed\x9f\xbf", 0xD7FF},
              {"\xf0\x90\x80\x80", 0x10000}, {"\xf4\x8f\xbf\xbf", 0x10FFFF}};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        char text[16];
        snprintf(text, sizeof text, "%s%s", ok[k].bytes, ok[k].bytes);
        write_text("u/train/neg/a.txt", text);
        write_text("u/train/pos/a.txt", "");
        write_text("u/test/neg/a.txt", "");
        write_text("u/test/pos/a.txt", "");
        ImdbParams p = {.l_max = 8, .min_freq = 2, .append_eos = true};
        ImdbData d;
        char err[1024];
        ck_assert_msg(imdb_load(path_of("u"), &p, &d, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(d.vocab, 4);
        ck_assert_uint_eq(d.chars[0], ok[k].cp);
        ck_assert_int_eq(seqset_len(&d.train, 0), 3);
        ck_assert_int_eq(seqset_len(&d.train, 1), 1); /* empty review: just <eos> */
        imdb_data_free(&d);
    }
    /* Invalid: overlong, surrogate, > U+10FFFF, truncated, stray byte. */
    const char *bad[] = {"\xc0\xaf", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xff"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char text[16];
        snprintf(text, sizeof text, "x%s", bad[k]);
        write_text("u/train/neg/a.txt", text);
        ImdbParams p = {.l_max = 8, .min_freq = 1, .append_eos = true};
        ImdbData d;
        char err[1024];
        ck_assert_int_eq(imdb_load(path_of("u"), &p, &d, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "a.txt: invalid UTF-8 at byte 1") != NULL, "case %zu: %s", k, err);
    }
    remove_root();
}
END_TEST

Suite *suite_loaders(void)
{
    Suite *s = suite_create("loaders");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cifar_gray_is_pil_convert_l);
    tcase_add_test(tc, test_cifar_batches_are_gray_pixels_and_labels);
    tcase_add_test(tc, test_cifar_float_inputs_are_normalised_gray_pixels);
    tcase_add_test(tc, test_cifar_epochs_visit_each_training_image_once);
    tcase_add_test(tc, test_cifar_default_val_split_holds_out_a_tenth);
    tcase_add_test(tc, test_cifar_batches_are_deterministic);
    tcase_add_test(tc, test_cifar_archive_subdirectory_is_found);
    tcase_add_test(tc, test_cifar_errors_name_path_and_expectation);
    tcase_add_test(tc, test_imdb_vocabulary_is_by_count_then_code_point);
    tcase_add_test(tc, test_imdb_tokens_truncation_eos_labels_and_padding);
    tcase_add_test(tc, test_imdb_bos_and_layout_variants);
    tcase_add_test(tc, test_imdb_batches_are_deterministic);
    tcase_add_test(tc, test_imdb_errors_name_path_and_expectation);
    tcase_add_test(tc, test_utf8_decoding_matches_python_strictness);
    suite_add_tcase(s, tc);
    return s;
}
