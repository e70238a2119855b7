/* ListOps (tasks/listops.h, tasks/listops_task.c): the evaluator on
 * hand-written expressions and against a sorting reference, the LRA tree
 * rules on generated samples, de-duplication, determinism, and the Task's
 * padded batches, epoch order and key errors. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config.h"
#include "../src/rng.h"
#include "../app/train.h"
#include "../tasks/listops.h"
#include "../tasks/task.h"
#include "testutil.h"

static int eval_text(const char *text)
{
    uint8_t t[256];
    int n = listops_parse(text, t, 256);
    ck_assert_msg(n >= 0, "cannot parse '%s'", text);
    return listops_eval(t, n);
}

#define EXPECT_VALUE(text, v) ck_assert_msg(eval_text(text) == (v), "%s = %d, want %d", text, eval_text(text), v)

START_TEST(test_listops_eval_each_operator)
{
    EXPECT_VALUE("7", 7);
    EXPECT_VALUE("[MIN 3 1 4 ]", 1);
    EXPECT_VALUE("[MAX 3 1 4 ]", 4);
    EXPECT_VALUE("[MED 3 1 4 ]", 3);
    EXPECT_VALUE("[SM 3 1 4 ]", 8);
    EXPECT_VALUE("[MIN 9 9 ]", 9);
    EXPECT_VALUE("[MAX 0 0 0 ]", 0);
}
END_TEST

START_TEST(test_listops_eval_median_odd_and_even_counts)
{
    /* odd: the middle of the sorted arguments */
    EXPECT_VALUE("[MED 9 0 5 1 7 ]", 5);
    EXPECT_VALUE("[MED 2 2 8 ]", 2);
    /* even: int(np.median) = mean of the two middle values, truncated */
    EXPECT_VALUE("[MED 1 2 ]", 1);
    EXPECT_VALUE("[MED 0 9 ]", 4);
    EXPECT_VALUE("[MED 8 9 ]", 8);
    EXPECT_VALUE("[MED 5 5 ]", 5);
    EXPECT_VALUE("[MED 9 0 3 7 ]", 5);
    EXPECT_VALUE("[MED 1 2 3 6 ]", 2);
    EXPECT_VALUE("[MED 0 0 9 9 ]", 4);
}
END_TEST

START_TEST(test_listops_eval_sum_mod_wraps_around)
{
    EXPECT_VALUE("[SM 5 5 ]", 0);
    EXPECT_VALUE("[SM 9 9 9 ]", 7);
    EXPECT_VALUE("[SM 9 9 9 9 9 9 9 9 9 9 9 9 ]", 8);
    EXPECT_VALUE("[SM 0 0 ]", 0);
}
END_TEST

START_TEST(test_listops_eval_nesting)
{
    EXPECT_VALUE("[MAX 2 9 [MIN 4 7 ] 0 ]", 9);
    EXPECT_VALUE("[SM [MAX 1 8 ] [MED 3 3 9 ] 5 ]", 6);
    EXPECT_VALUE("[MIN [MAX [SM 7 8 ] 2 ] 9 ]", 5);
    /* the LRA paper's example: [MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ] = 5 */
    EXPECT_VALUE("[MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]", 5);
    /* an inner result feeds the outer median */
    EXPECT_VALUE("[MED [SM 9 9 ] [MIN 3 4 ] 0 1 ]", 2);
    /* trailing <eos> and padding are allowed */
    EXPECT_VALUE("[SM 1 2 ] <eos> <pad> <pad>", 3);
}
END_TEST

START_TEST(test_listops_eval_rejects_malformed)
{
    EXPECT_VALUE("[MIN ]", -1);
    EXPECT_VALUE("[MIN 1 2", -1);
    EXPECT_VALUE("1 2", -1);
    EXPECT_VALUE("]", -1);
    EXPECT_VALUE("<eos> 1", -1);
    EXPECT_VALUE("[MIN 1 ] 3", -1);
    EXPECT_VALUE("[MAX 1 <pad> 2 ]", -1);
    EXPECT_VALUE("", -1);
    uint8_t t[8];
    ck_assert_int_eq(listops_parse("[FIRST 1 2 ]", t, 8), -1);
    ck_assert_int_eq(listops_parse("[SM 1 2 ]", t, 3), -1); /* overflow */
    /* nesting beyond the evaluator's stack */
    uint8_t deep[2 * LISTOPS_DEPTH_LIMIT + 4];
    int n = 0;
    for (int i = 0; i <= LISTOPS_DEPTH_LIMIT; i++) deep[n++] = LISTOPS_MAX;
    deep[n++] = LISTOPS_DIGIT0;
    ck_assert_int_eq(listops_eval(deep, n), -1);
}
END_TEST

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Random flat argument lists against a sort-based reference (np.median in
 * double, then truncated). */
START_TEST(test_listops_eval_matches_sorting_reference)
{
    Rng r;
    rng_init(&r, 77);
    for (int it = 0; it < 2000; it++) {
        int n = 1 + (int)rng_below(&r, 12), a[12], s[12], sum = 0;
        for (int i = 0; i < n; i++) sum += a[i] = (int)rng_below(&r, 10);
        memcpy(s, a, sizeof a);
        qsort(s, (size_t)n, sizeof(int), cmp_int);
        double med = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
        const int want[4] = {s[0], s[n - 1], (int)med, sum % 10};
        for (int op = 0; op < 4; op++) {
            uint8_t t[16];
            int k = 0;
            t[k++] = (uint8_t)(LISTOPS_MIN + op);
            for (int i = 0; i < n; i++) t[k++] = (uint8_t)(LISTOPS_DIGIT0 + a[i]);
            t[k++] = LISTOPS_CLOSE;
            ck_assert_int_eq(listops_eval(t, k), want[op]);
        }
    }
}
END_TEST

/* Walks an expression independently of listops_eval: node depths, argument
 * counts; returns the deepest operator depth seen and fills an argument
 * count histogram. */
static int check_tree(const uint8_t *t, int len, const ListopsParams *p, int *argc_hist)
{
    int args[LISTOPS_DEPTH_LIMIT], sp = 0, deepest = 0;
    for (int i = 0; i < len; i++) {
        int tok = t[i];
        if (tok >= LISTOPS_MIN && tok <= LISTOPS_SM) {
            ck_assert_msg(sp + 1 < p->max_depth, "operator at depth %d, max_depth %d", sp + 1, p->max_depth);
            if (sp) args[sp - 1]++;
            args[sp++] = 0;
            if (sp > deepest) deepest = sp;
        } else if (tok >= LISTOPS_DIGIT0 && tok < LISTOPS_DIGIT0 + 10) {
            ck_assert(sp + 1 <= p->max_depth);
            if (sp) args[sp - 1]++;
            else ck_assert_int_eq(len, 1);
        } else {
            ck_assert_int_eq(tok, LISTOPS_CLOSE);
            ck_assert_int_gt(sp, 0);
            int n = args[--sp];
            ck_assert_msg(n >= 2 && n <= p->max_args, "operator with %d arguments", n);
            argc_hist[n]++;
        }
        if (sp == 0) ck_assert_int_eq(i, len - 1);
    }
    ck_assert_int_eq(sp, 0);
    return deepest;
}

START_TEST(test_listops_samples_follow_the_tree_rules)
{
    const ListopsParams ps[2] = {{.max_depth = 5, .max_args = 4, .min_length = 20, .max_length = 90},
                                 {.max_depth = 10, .max_args = 10, .min_length = 100, .max_length = 400}};
    for (int k = 0; k < 2; k++) {
        const ListopsParams *p = &ps[k];
        ListopsDataset d;
        char err[512];
        ck_assert_int_eq(listops_dataset_generate(&d, p, 11, 400, NULL, "t", err, sizeof err), 0);
        ck_assert_int_eq(d.n, 400);
        int hist[16] = {0}, deepest = 0, maxlen = 0, labels[10] = {0};
        for (int i = 0; i < d.n; i++) {
            const int len = listops_sample_len(&d, i);
            ck_assert_msg(len > p->min_length && len < p->max_length, "length %d", len);
            int dd = check_tree(listops_sample(&d, i), len, p, hist);
            if (dd > deepest) deepest = dd;
            if (len > maxlen) maxlen = len;
            ck_assert_int_eq(d.labels[i], listops_eval(listops_sample(&d, i), len));
            labels[d.labels[i]]++;
        }
        ck_assert_int_eq(d.max_len, maxlen);
        /* the limits are reached, not just respected */
        ck_assert_int_eq(deepest, p->max_depth - 1);
        ck_assert_int_gt(hist[2], 0);
        ck_assert_int_gt(hist[p->max_args], 0);
        for (int v = 0; v < 10; v++) ck_assert_int_gt(labels[v], 0);
        listops_dataset_free(&d);
    }
}
END_TEST

/* Without a length window (every tree kept), node statistics are LRA's:
 * operators at 25% of the nodes above max_depth, 2..max_args arguments,
 * uniform operators and digits. */
START_TEST(test_listops_candidate_distribution)
{
    const ListopsParams p = {.max_depth = 4, .max_args = 6, .min_length = 0, .max_length = 1 << 20};
    uint8_t *t = malloc((size_t)p.max_length);
    long ops = 0, upper_digits = 0, digits = 0, op_kind[4] = {0}, digit_val[10] = {0}, args = 0;
    int hist[16] = {0};
    for (uint64_t i = 0; i < 20000; i++) {
        int len = listops_generate_candidate(&p, 5, i, t);
        ck_assert_int_gt(len, 0);
        check_tree(t, len, &p, hist);
        int sp = 0;
        for (int j = 0; j < len; j++) {
            if (t[j] >= LISTOPS_MIN && t[j] <= LISTOPS_SM) {
                ops++;
                op_kind[t[j] - LISTOPS_MIN]++;
                sp++;
            } else if (t[j] == LISTOPS_CLOSE) {
                sp--;
            } else {
                digits++;
                digit_val[t[j] - LISTOPS_DIGIT0]++;
                if (sp + 1 < p.max_depth) upper_digits++;
            }
        }
    }
    for (int n = 2; n <= p.max_args; n++) args += (long)n * hist[n];
    double op_frac = (double)ops / (double)(ops + upper_digits);
    ck_assert_msg(op_frac > 0.24 && op_frac < 0.26, "operator fraction %.4f", op_frac);
    double mean_args = (double)args / (double)ops;
    ck_assert_msg(mean_args > 3.9 && mean_args < 4.1, "mean argument count %.3f (want 4)", mean_args);
    for (int k = 0; k < 4; k++) ck_assert_msg(fabs(op_kind[k] / (double)ops - 0.25) < 0.02, "operator %d", k);
    for (int v = 0; v < 10; v++) ck_assert_msg(fabs(digit_val[v] / (double)digits - 0.1) < 0.01, "digit %d", v);
    free(t);
}
END_TEST

/* Stopping early when a tree gets too long rejects exactly the trees whose
 * full length is >= max_length and leaves the others unchanged. */
START_TEST(test_listops_early_rejection_is_exact)
{
    ListopsParams wide = {.max_depth = 10, .max_args = 10, .min_length = 0, .max_length = 1 << 22};
    ListopsParams cut = wide;
    cut.max_length = 60;
    cut.min_length = 8;
    uint8_t *a = malloc((size_t)wide.max_length), b[60];
    int kept = 0, cut_long = 0;
    for (uint64_t i = 0; i < 3000; i++) {
        int la = listops_generate_candidate(&wide, 9, i, a);
        int lb = listops_generate_candidate(&cut, 9, i, b);
        ck_assert_int_gt(la, 0);
        if (la > 8 && la < 60) {
            ck_assert_int_eq(lb, la);
            ck_assert_mem_eq(a, b, (size_t)la);
            kept++;
        } else {
            ck_assert_int_eq(lb, 0);
            cut_long += la >= 60;
        }
    }
    ck_assert_int_gt(kept, 100);
    ck_assert_int_gt(cut_long, 100);
    free(a);
}
END_TEST

static int count_duplicates(const ListopsDataset *x, const ListopsDataset *y)
{
    int dup = 0;
    for (int i = 0; i < x->n; i++)
        for (int j = (x == y ? i + 1 : 0); j < y->n; j++)
            dup += listops_sample_len(x, i) == listops_sample_len(y, j) &&
                   !memcmp(listops_sample(x, i), listops_sample(y, j), (size_t)listops_sample_len(x, i));
    return dup;
}

/* A window with only ~4400 distinct trees (lengths 1, 4, 5): without
 * de-duplication 200 + 2000 draws would repeat many. */
START_TEST(test_listops_no_duplicates_within_and_across_sets)
{
    ListopsParams p = {.max_depth = 10, .max_args = 3, .min_length = 0, .max_length = 6};
    ListopsDataset te, tr;
    char err[512];
    ck_assert_int_eq(listops_dataset_generate(&te, &p, 1, 200, NULL, "test", err, sizeof err), 0);
    ck_assert_int_eq(listops_dataset_generate(&tr, &p, 2, 2000, &te, "train", err, sizeof err), 0);
    ck_assert_int_eq(count_duplicates(&te, &te), 0);
    ck_assert_int_eq(count_duplicates(&tr, &tr), 0);
    ck_assert_int_eq(count_duplicates(&tr, &te), 0);
    /* the same stream without the exclusion does hit test samples (so the
     * check above can fail) */
    ListopsDataset tr2;
    ck_assert_int_eq(listops_dataset_generate(&tr2, &p, 2, 2000, NULL, "train", err, sizeof err), 0);
    ck_assert_int_gt(count_duplicates(&tr2, &te), 0);
    listops_dataset_free(&te);
    listops_dataset_free(&tr);
    listops_dataset_free(&tr2);
}
END_TEST

START_TEST(test_listops_too_few_distinct_trees_is_an_error)
{
    ListopsParams p = {.max_depth = 10, .max_args = 10, .min_length = 0, .max_length = 2}; /* digits only */
    ListopsDataset d;
    char err[512];
    ck_assert_int_eq(listops_dataset_generate(&d, &p, 1, 10, NULL, "test", err, sizeof err), 0);
    listops_dataset_free(&d);
    ck_assert_int_eq(listops_dataset_generate(&d, &p, 1, 11, NULL, "test", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "found only 10 of 11 distinct test expressions") != NULL, "%s", err);
    ck_assert(d.tokens == NULL && d.n == 0);
}
END_TEST

static int same_dataset(const ListopsDataset *a, const ListopsDataset *b)
{
    return a->n == b->n && !memcmp(a->offset, b->offset, ((size_t)a->n + 1) * sizeof *a->offset) &&
           !memcmp(a->tokens, b->tokens, (size_t)a->offset[a->n]) &&
           !memcmp(a->labels, b->labels, (size_t)a->n * sizeof *a->labels);
}

START_TEST(test_listops_generation_is_deterministic_for_any_thread_count)
{
    ListopsParams p = {.max_depth = 10, .max_args = 10, .min_length = 30, .max_length = 300};
    ListopsDataset a, b, c;
    char err[512];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    ck_assert_int_eq(listops_dataset_generate(&a, &p, 42, 1500, NULL, "t", err, sizeof err), 0);
    omp_set_num_threads(2);
    ck_assert_int_eq(listops_dataset_generate(&b, &p, 42, 1500, NULL, "t", err, sizeof err), 0);
    omp_set_num_threads(saved);
    ck_assert(same_dataset(&a, &b));
    ck_assert_int_eq(listops_dataset_generate(&c, &p, 43, 1500, NULL, "t", err, sizeof err), 0);
    ck_assert(!same_dataset(&a, &c));
    /* sample 0 is the first accepted candidate of the stream */
    uint8_t t[300];
    uint64_t i = 0;
    int len;
    while ((len = listops_generate_candidate(&p, 42, i, t)) == 0) i++;
    ck_assert_int_eq(len, listops_sample_len(&a, 0));
    ck_assert_mem_eq(t, listops_sample(&a, 0), (size_t)len);
    listops_dataset_free(&a);
    listops_dataset_free(&b);
    listops_dataset_free(&c);
}
END_TEST

/* ---- the Task -------------------------------------------------------- */

static Task *make_task(const char *yaml, uint64_t seed, ConfigSchema *s, Config *c, char *err, size_t n)
{
    run_schema_build(s);
    int rc = config_load_yaml_text(c, s, yaml, "test.yaml", err, n);
    ck_assert_msg(rc == 0, "%s", err);
    return task_create(c, seed, err, n);
}

#define SMALL_LISTOPS                                                                                   \
    "dataset:\n  _name_: listops\n  min_length: 10\n  max_length: 80\n  max_depth: 6\n  max_args: 5\n" \
    "  num_test_samples: 7\n"

START_TEST(test_listops_task_padded_batches)
{
    ConfigSchema s;
    Config c;
    char err[512];
    Task *t = make_task(SMALL_LISTOPS "  num_train_samples: 50\n", 3, &s, &c, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_str_eq(t->name, "listops");
    ck_assert(t->classification);
    ck_assert_int_eq(t->seq_len, 80);
    ck_assert_int_eq(t->vocab, 18);
    ck_assert_int_eq(t->num_outputs, 10);
    ck_assert_int_eq(t->n_test, 7);
    ck_assert_int_eq(t->n_train, 50);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 6, t->seq_len, 0), 0);
    ck_assert(b.mask == NULL);
    int saw_padding = 0;
    for (int step = 0; step < 4; step++) {
        t->train_batch(t, step, 6, &b);
        ck_assert_int_eq(b.B, 6);
        ck_assert_int_eq(b.n_rows, 6);
        ck_assert(b.rows == NULL);
        ck_assert(b.mask != NULL);
        int longest = 0;
        for (int i = 0; i < 6; i++) {
            const int32_t *tok = b.tokens + (size_t)i * b.L;
            const float *m = b.mask + (size_t)i * b.L;
            int valid = 0;
            while (valid < b.L && m[valid] == 1.0f) valid++;
            for (int j = valid; j < b.L; j++) {
                ck_assert(m[j] == 0.0f);
                ck_assert_int_eq(tok[j], LISTOPS_PAD);
            }
            saw_padding |= valid < b.L;
            if (valid > longest) longest = valid;
            ck_assert_int_eq(tok[valid - 1], LISTOPS_EOS);
            ck_assert(valid - 1 > 10 && valid - 1 < 80);
            uint8_t e[80];
            for (int j = 0; j < valid - 1; j++) {
                ck_assert(tok[j] > LISTOPS_EOS && tok[j] < LISTOPS_VOCAB);
                e[j] = (uint8_t)tok[j];
            }
            ck_assert_int_eq(b.targets[i], listops_eval(e, valid - 1));
        }
        ck_assert_int_eq(b.L, longest); /* L is the batch maximum */
    }
    ck_assert(saw_padding);
    /* test batches: the test set in order, also padded to their maximum */
    t->test_batch(t, 2, 5, &b);
    ck_assert_int_eq(b.B, 5);
    ck_assert_int_eq(b.n_rows, 5);
    ListopsDataset ref;
    ListopsParams p = {.max_depth = 6, .max_args = 5, .min_length = 10, .max_length = 80};
    ck_assert_int_eq(listops_dataset_generate(&ref, &p, rng_derive_key(3, RNG_DATA, 1), 7, NULL, "t", err, sizeof err),
                     0);
    int longest = 0;
    for (int i = 0; i < 5; i++) {
        int len = listops_sample_len(&ref, 2 + i);
        if (len + 1 > longest) longest = len + 1;
        for (int j = 0; j < len; j++) ck_assert_int_eq(b.tokens[(size_t)i * b.L + j], listops_sample(&ref, 2 + i)[j]);
        ck_assert_int_eq(b.targets[i], ref.labels[2 + i]);
    }
    ck_assert_int_eq(b.L, longest);
    listops_dataset_free(&ref);
    task_batch_free(&b);
    task_free(t);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

/* The row a padded batch row came from, by its expression. */
static int find_sample(const ListopsDataset *d, const int32_t *row)
{
    int hit = -1;
    for (int e = 0; e < d->n; e++) {
        int len = listops_sample_len(d, e), same = row[len] == LISTOPS_EOS;
        for (int j = 0; j < len && same; j++) same = row[j] == listops_sample(d, e)[j];
        if (same) hit = e;
    }
    return hit;
}

START_TEST(test_listops_task_epochs_visit_each_example_once)
{
    ConfigSchema s;
    Config c;
    char err[512];
    Task *t = make_task(SMALL_LISTOPS "  num_train_samples: 10\n", 3, &s, &c, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    /* the training set: the train stream without the test samples */
    ListopsParams p = {.max_depth = 6, .max_args = 5, .min_length = 10, .max_length = 80};
    ListopsDataset te, tr;
    ck_assert_int_eq(listops_dataset_generate(&te, &p, rng_derive_key(3, RNG_DATA, 1), 7, NULL, "t", err, sizeof err),
                     0);
    ck_assert_int_eq(listops_dataset_generate(&tr, &p, rng_derive_key(3, RNG_DATA, 0), 10, &te, "t", err, sizeof err),
                     0);
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 4, t->seq_len, 0), 0);
    int seen[3][10] = {{0}}, order[3][10];
    for (int k = 0; k < 7; k++) { /* 28 examples: epochs 0, 1 full, 2 partly */
        t->train_batch(t, k, 4, &b);
        for (int i = 0; i < 4; i++) {
            int pos = k * 4 + i, hit = find_sample(&tr, b.tokens + (size_t)i * b.L);
            ck_assert_msg(hit >= 0, "batch %d row %d is not a training example", k, i);
            ck_assert_int_eq(b.targets[i], tr.labels[hit]);
            seen[pos / 10][hit]++;
            order[pos / 10][pos % 10] = hit;
        }
    }
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[e][i], 1);
    ck_assert(memcmp(order[0], order[1], sizeof order[0]) != 0);
    /* a step's batch does not depend on the batches drawn before it */
    TaskBatch b2;
    ck_assert_int_eq(task_batch_alloc(&b2, 4, t->seq_len, 0), 0);
    t->train_batch(t, 5, 4, &b2);
    t->train_batch(t, 0, 4, &b);
    t->train_batch(t, 5, 4, &b);
    ck_assert_int_eq(b.L, b2.L);
    ck_assert_mem_eq(b.tokens, b2.tokens, (size_t)4 * b.L * sizeof(int32_t));
    ck_assert_mem_eq(b.targets, b2.targets, 4 * sizeof(int32_t));
    listops_dataset_free(&te);
    listops_dataset_free(&tr);
    task_batch_free(&b);
    task_batch_free(&b2);
    task_free(t);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

START_TEST(test_listops_task_same_seed_same_data)
{
    ConfigSchema s1, s2, s3;
    Config c1, c2, c3;
    char err[512];
    Task *a = make_task(SMALL_LISTOPS "  num_train_samples: 30\n", 8, &s1, &c1, err, sizeof err);
    Task *b = make_task(SMALL_LISTOPS "  num_train_samples: 30\n", 8, &s2, &c2, err, sizeof err);
    Task *d = make_task(SMALL_LISTOPS "  num_train_samples: 30\n", 9, &s3, &c3, err, sizeof err);
    ck_assert(a && b && d);
    TaskBatch x, y, z;
    ck_assert_int_eq(task_batch_alloc(&x, 7, 80, 0), 0);
    ck_assert_int_eq(task_batch_alloc(&y, 7, 80, 0), 0);
    ck_assert_int_eq(task_batch_alloc(&z, 7, 80, 0), 0);
    a->train_batch(a, 6, 7, &x);
    b->train_batch(b, 6, 7, &y);
    d->train_batch(d, 6, 7, &z);
    ck_assert_int_eq(x.L, y.L);
    ck_assert_mem_eq(x.tokens, y.tokens, (size_t)7 * x.L * sizeof(int32_t));
    ck_assert(x.L != z.L || memcmp(x.tokens, z.tokens, (size_t)7 * x.L * sizeof(int32_t)) != 0);
    a->test_batch(a, 0, 7, &x);
    b->test_batch(b, 0, 7, &y);
    ck_assert_int_eq(x.L, y.L);
    ck_assert_mem_eq(x.tokens, y.tokens, (size_t)7 * x.L * sizeof(int32_t));
    ck_assert_mem_eq(x.targets, y.targets, 7 * sizeof(int32_t));
    task_batch_free(&x);
    task_batch_free(&y);
    task_batch_free(&z);
    task_free(a);
    task_free(b);
    task_free(d);
    config_free(&c1);
    config_free(&c2);
    config_free(&c3);
    config_schema_free(&s1);
    config_schema_free(&s2);
    config_schema_free(&s3);
}
END_TEST

static void expect_key_error(const char *yaml, const char *want)
{
    ConfigSchema s;
    Config c;
    char err[1024];
    Task *t = make_task(yaml, 1, &s, &c, err, sizeof err);
    ck_assert_msg(t == NULL, "accepted: %s", yaml);
    ck_assert_msg(strstr(err, want) != NULL, "'%s' not in '%s'", want, err);
    config_free(&c);
    config_schema_free(&s);
}

START_TEST(test_listops_task_key_errors_name_the_key)
{
    expect_key_error("dataset:\n  _name_: listops\n  max_depth: 0\n", "test.yaml:3: dataset.max_depth = 0");
    expect_key_error("dataset:\n  _name_: listops\n  max_args: 1\n", "dataset.max_args = 1");
    expect_key_error("dataset:\n  _name_: listops\n  min_length: -1\n", "dataset.min_length = -1");
    expect_key_error("dataset:\n  _name_: listops\n  min_length: 50\n  max_length: 51\n",
                     "dataset.max_length = 51: must be >= min_length + 2");
    expect_key_error("dataset:\n  _name_: listops\n  num_train_samples: 0\n", "dataset.num_train_samples = 0");
    expect_key_error("dataset:\n  _name_: listops\n  num_test_samples: -3\n", "dataset.num_test_samples = -3");
    /* a window too narrow for the sizes asked for */
    expect_key_error("dataset:\n  _name_: listops\n  min_length: 0\n  max_length: 2\n  num_test_samples: 11\n",
                     "dataset.min_length 0, dataset.max_length 2");
}
END_TEST

START_TEST(test_task_n_train_reports_the_epoch_size)
{
    ConfigSchema s;
    Config c;
    char err[512];
    Task *t = make_task("dataset:\n  input_seq_length: 16\n  num_kv_pairs: 2\n  vocab_size: 32\n"
                        "  num_train_examples: 0\n  num_test_examples: 4\n",
                        1, &s, &c, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_int_eq(t->n_train, 0); /* fresh examples every step */
    TaskBatch b;
    ck_assert_int_eq(task_batch_alloc(&b, 2, 16, 0), 0);
    t->train_batch(t, 0, 2, &b);
    ck_assert(b.mask == NULL); /* MQAR batches stay unmasked */
    task_batch_free(&b);
    task_free(t);
    config_free(&c);
    config_schema_free(&s);
    t = make_task("dataset:\n  input_seq_length: 16\n  num_kv_pairs: 2\n  vocab_size: 32\n"
                  "  num_train_examples: 12\n  num_test_examples: 4\n",
                  1, &s, &c, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_int_eq(t->n_train, 12);
    task_free(t);
    config_free(&c);
    config_schema_free(&s);
}
END_TEST

Suite *suite_listops(void)
{
    Suite *s = suite_create("listops");
    TCase *tc = tcase_create("generator");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_listops_eval_each_operator);
    tcase_add_test(tc, test_listops_eval_median_odd_and_even_counts);
    tcase_add_test(tc, test_listops_eval_sum_mod_wraps_around);
    tcase_add_test(tc, test_listops_eval_nesting);
    tcase_add_test(tc, test_listops_eval_rejects_malformed);
    tcase_add_test(tc, test_listops_eval_matches_sorting_reference);
    tcase_add_test(tc, test_listops_samples_follow_the_tree_rules);
    tcase_add_test(tc, test_listops_candidate_distribution);
    tcase_add_test(tc, test_listops_early_rejection_is_exact);
    tcase_add_test(tc, test_listops_no_duplicates_within_and_across_sets);
    tcase_add_test(tc, test_listops_too_few_distinct_trees_is_an_error);
    tcase_add_test(tc, test_listops_generation_is_deterministic_for_any_thread_count);
    suite_add_tcase(s, tc);
    tc = tcase_create("task");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_listops_task_padded_batches);
    tcase_add_test(tc, test_listops_task_epochs_visit_each_example_once);
    tcase_add_test(tc, test_listops_task_same_seed_same_data);
    tcase_add_test(tc, test_listops_task_key_errors_name_the_key);
    tcase_add_test(tc, test_task_n_train_reports_the_epoch_size);
    suite_add_tcase(s, tc);
    return s;
}
