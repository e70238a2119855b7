/* Indexing ops: embedding, gather_rows, mean_time, slice_cols.  Forwards
 * against plain loops, gradients against finite differences, the
 * scatter-add backward against a sequential token-order reference for 1
 * and 2 threads, and the bounds checks. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "testutil.h"

static void fill_ids(int32_t *ids, size_t n, int limit, uint64_t seed)
{
    float *u = malloc(n * sizeof *u);
    test_fill_uniform(u, n, seed, 0, 1);
    for (size_t i = 0; i < n; i++) {
        ids[i] = (int32_t)(u[i] * (float)limit);
        if (ids[i] >= limit) ids[i] = limit - 1;
    }
    free(u);
}

/* -------------------------------------------------------------- embedding */

typedef struct EmbCtx {
    const int32_t *ids;
    int ndim;
    int shape[3];
} EmbCtx;

static Tensor *fwd_embedding(Graph *g, Tensor **in, void *ctx)
{
    const EmbCtx *c = ctx;
    return op_embedding(g, in[0], c->ids, c->ndim, c->shape);
}

START_TEST(test_embedding_forward_copies_rows_for_1_2_3_dim_ids)
{
    static const EmbCtx shapes[] = {{NULL, 1, {1, 0, 0}}, {NULL, 1, {9, 0, 0}}, {NULL, 2, {3, 7, 0}},
                                    {NULL, 3, {2, 1, 17}}};
    static const int dims[] = {1, 7, 9, 17};
    for (int si = 0; si < 4; si++) {
        EmbCtx c = shapes[si];
        int V = 5 + si, d = dims[si];
        size_t n = 1;
        for (int i = 0; i < c.ndim; i++) n *= (size_t)c.shape[i];
        int32_t *ids = malloc(n * sizeof *ids);
        fill_ids(ids, n, V, 10 + si);
        c.ids = ids;
        Tensor *W = test_tensor(2, (int[]){V, d}, true);
        test_fill_uniform(W->data, W->numel, 20 + si, -1, 1);
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        Tensor *y = fwd_embedding(&g, &W, &c);
        ck_assert_int_eq(y->ndim, c.ndim + 1);
        for (int i = 0; i < c.ndim; i++) ck_assert_int_eq(y->shape[i], c.shape[i]);
        ck_assert_int_eq(y->shape[c.ndim], d);
        for (size_t t = 0; t < n; t++)
            ck_assert(memcmp(y->data + t * d, W->data + (size_t)ids[t] * d, (size_t)d * sizeof(float)) == 0);
        graph_free(&g);
        test_tensor_free(W);
        free(ids);
    }
}
END_TEST

START_TEST(test_embedding_gradient_of_W_with_repeated_ids_matches_finite_differences)
{
    /* 7 vocab rows, 3*9 tokens: rows repeat; row 6 never occurs (grad 0) */
    static const int dims[] = {1, 7, 9, 17};
    for (int di = 0; di < 4; di++) {
        int32_t ids[27];
        fill_ids(ids, 27, 6, 30 + di);
        EmbCtx c = {ids, 2, {3, 9, 0}};
        Tensor *W = test_tensor(2, (int[]){7, dims[di]}, true);
        test_fill_uniform(W->data, W->numel, 40 + di, -1, 1);
        ck_assert(gradcheck("embedding", fwd_embedding, &c, &W, 1, GRADCHECK_DEFAULTS));
        test_tensor_free(W);
    }
}
END_TEST

/* Run embedding forward + backward from dy with `threads` threads; returns
 * a malloc'ed copy of dW. */
static float *embedding_dW(Tensor *W, const int32_t *ids, int n, const float *dy, int threads)
{
    omp_set_num_threads(threads);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    W->grad = NULL;
    Tensor *y = op_embedding(&g, W, ids, 1, &n);
    graph_backward_from(&g, y, dy);
    float *dW = malloc(W->numel * sizeof *dW);
    memcpy(dW, W->grad, W->numel * sizeof *dW);
    W->grad = NULL;
    graph_free(&g);
    return dW;
}

START_TEST(test_embedding_backward_sums_in_token_order_same_bits_for_1_and_2_threads)
{
    /* 3000 tokens over 50 rows (about 60 repeats each), d = 33: above the
     * parallel threshold, so 2 threads split the vocabulary */
    const int V = 50, d = 33, n = 3000;
    Tensor *W = test_tensor(2, (int[]){V, d}, true);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    fill_ids(ids, (size_t)n, V, 50);
    float *dy = malloc((size_t)n * d * sizeof *dy);
    test_fill_uniform(dy, (size_t)n * d, 51, -1, 1);
    /* the defined result: each row sums its tokens' gradients in token order, in float */
    float *ref = calloc((size_t)V * d, sizeof *ref);
    for (int t = 0; t < n; t++)
        for (int j = 0; j < d; j++) ref[(size_t)ids[t] * d + j] += dy[(size_t)t * d + j];
    float *d1 = embedding_dW(W, ids, n, dy, 1), *d2 = embedding_dW(W, ids, n, dy, 2);
    ck_assert_int_eq(omp_get_max_threads(), 2);
    ck_assert_msg(memcmp(d1, ref, (size_t)V * d * sizeof *ref) == 0, "1 thread: not the token-order sum");
    ck_assert_msg(memcmp(d2, ref, (size_t)V * d * sizeof *ref) == 0, "2 threads: not the token-order sum");
    free(ref), free(d1), free(d2), free(dy), free(ids);
    test_tensor_free(W);
}
END_TEST

START_TEST(test_embedding_aborts_on_id_equal_to_vocab_size)
{
    Tensor *W = test_tensor(2, (int[]){5, 3}, false);
    int32_t ids[3] = {0, 5, 1};
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_embedding(&g, W, ids, 1, (int[]){3});
}
END_TEST

START_TEST(test_embedding_aborts_on_negative_id)
{
    Tensor *W = test_tensor(2, (int[]){5, 3}, false);
    int32_t ids[2] = {-1, 0};
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_embedding(&g, W, ids, 1, (int[]){2});
}
END_TEST

/* ------------------------------------------------------------ gather_rows */

typedef struct GatherCtx {
    const int32_t *rows;
    int n;
} GatherCtx;

static Tensor *fwd_gather(Graph *g, Tensor **in, void *ctx)
{
    const GatherCtx *c = ctx;
    return op_gather_rows(g, in[0], c->rows, c->n);
}

START_TEST(test_gather_rows_forward_and_gradient_with_repeated_rows)
{
    static const int xs[][3] = {{1, 1, 1}, {2, 3, 7}, {1, 9, 9}, {3, 5, 17}};
    for (int si = 0; si < 4; si++) {
        Tensor *x = test_tensor(3, xs[si], true);
        test_fill_uniform(x->data, x->numel, 60 + si, -1, 1);
        const int R = xs[si][0] * xs[si][1], cols = xs[si][2];
        const int n = 2 * R + 1; /* more picks than rows: some repeat */
        int32_t *rows = malloc((size_t)n * sizeof *rows);
        fill_ids(rows, (size_t)n, R, 70 + si);
        rows[n - 1] = rows[0]; /* at least one repeat even when R = 1 */
        GatherCtx c = {rows, n};
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        Tensor *y = fwd_gather(&g, &x, &c);
        ck_assert_int_eq(y->ndim, 2);
        ck_assert_int_eq(y->shape[0], n);
        ck_assert_int_eq(y->shape[1], cols);
        for (int i = 0; i < n; i++)
            ck_assert(memcmp(y->data + (size_t)i * cols, x->data + (size_t)rows[i] * cols,
                             (size_t)cols * sizeof(float)) == 0);
        graph_free(&g);
        ck_assert(gradcheck("gather_rows", fwd_gather, &c, &x, 1, GRADCHECK_DEFAULTS));
        free(rows);
        test_tensor_free(x);
    }
}
END_TEST

START_TEST(test_gather_rows_aborts_on_row_out_of_range)
{
    Tensor *x = test_tensor(3, (int[]){2, 3, 4}, false);
    int32_t rows[2] = {5, 6};
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_gather_rows(&g, x, rows, 2);
}
END_TEST

/* -------------------------------------------------------------- mean_time */

static Tensor *fwd_mean_time(Graph *g, Tensor **in, void *ctx)
{
    return op_mean_time(g, in[0], (const float *)ctx);
}

/* mask (B, L): row b keeps positions t with (t + b) % 3 != 0, except that
 * row 1 (if any) is fully masked */
static float *make_mask(int B, int L)
{
    float *m = malloc((size_t)B * L * sizeof *m);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) m[b * L + t] = (b == 1 || (t + b) % 3 == 0) ? 0.0f : 1.0f;
    if (B > 1 || L > 1) return m;
    m[0] = 1.0f; /* 1x1: one valid position */
    return m;
}

START_TEST(test_mean_time_forward_matches_double_reference_with_and_without_mask)
{
    static const int xs[][3] = {{1, 1, 1}, {2, 7, 9}, {3, 9, 17}, {1, 17, 7}};
    for (int si = 0; si < 4; si++)
        for (int masked = 0; masked < 2; masked++) {
            const int B = xs[si][0], L = xs[si][1], d = xs[si][2];
            Tensor *x = test_tensor(3, xs[si], false);
            test_fill_uniform(x->data, x->numel, 80 + si, -1, 1);
            float *mask = masked ? make_mask(B, L) : NULL;
            Graph g;
            graph_init(&g, 0, 1);
            graph_begin(&g, 0, false, false);
            Tensor *y = op_mean_time(&g, x, mask);
            ck_assert_int_eq(y->ndim, 2);
            ck_assert_int_eq(y->shape[0], B);
            ck_assert_int_eq(y->shape[1], d);
            float *ref = malloc((size_t)B * d * sizeof *ref);
            for (int b = 0; b < B; b++)
                for (int j = 0; j < d; j++) {
                    double s = 0;
                    int cnt = 0;
                    for (int t = 0; t < L; t++)
                        if (!mask || mask[b * L + t] != 0.0f) s += x->data[((size_t)b * L + t) * d + j], cnt++;
                    ref[b * d + j] = cnt ? (float)(s / cnt) : 0.0f;
                }
            ck_assert_close(y->data, ref, (size_t)B * d, 1e-6, 1e-6, "mean_time forward");
            free(ref);
            free(mask);
            graph_free(&g);
            test_tensor_free(x);
        }
}
END_TEST

START_TEST(test_mean_time_gradient_matches_finite_differences_with_and_without_mask)
{
    static const int xs[][3] = {{1, 1, 1}, {2, 7, 9}, {3, 9, 17}, {1, 17, 7}};
    for (int si = 0; si < 4; si++)
        for (int masked = 0; masked < 2; masked++) {
            Tensor *x = test_tensor(3, xs[si], true);
            test_fill_uniform(x->data, x->numel, 90 + si, -1, 1);
            float *mask = masked ? make_mask(xs[si][0], xs[si][1]) : NULL;
            ck_assert(gradcheck(masked ? "mean_time masked" : "mean_time", fwd_mean_time, mask, &x, 1,
                                GRADCHECK_DEFAULTS));
            free(mask);
            test_tensor_free(x);
        }
}
END_TEST

START_TEST(test_mean_time_fully_masked_row_gives_zero_and_no_gradient)
{
    const int B = 3, L = 7, d = 9;
    Tensor *x = test_tensor(3, (int[]){B, L, d}, true);
    test_fill_uniform(x->data, x->numel, 99, -1, 1);
    float *mask = make_mask(B, L); /* row 1 fully masked */
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    Tensor *y = op_mean_time(&g, x, mask);
    float *dy = malloc((size_t)B * d * sizeof *dy);
    for (int i = 0; i < B * d; i++) dy[i] = 1.0f;
    graph_backward_from(&g, y, dy);
    for (int j = 0; j < d; j++) ck_assert_float_eq(y->data[1 * d + j], 0.0f);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) {
            int cnt = 0;
            for (int u = 0; u < L; u++) cnt += mask[b * L + u] != 0.0f;
            float expect = mask[b * L + t] != 0.0f ? 1.0f / (float)cnt : 0.0f;
            for (int j = 0; j < d; j++)
                ck_assert_float_eq_tol(x->grad[((size_t)b * L + t) * d + j], expect, 1e-7f);
        }
    free(dy);
    free(mask);
    x->grad = NULL;
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

/* ------------------------------------------------------------- slice_cols */

typedef struct SliceCtx {
    int start, len;
} SliceCtx;

static Tensor *fwd_slice(Graph *g, Tensor **in, void *ctx)
{
    const SliceCtx *c = ctx;
    return op_slice_cols(g, in[0], c->start, c->len);
}

START_TEST(test_slice_cols_forward_and_gradient)
{
    static const int xs[][3] = {{1, 1, 1}, {2, 3, 7}, {1, 9, 9}, {3, 5, 17}};
    static const SliceCtx sl[] = {{0, 1}, {2, 5}, {8, 1}, {3, 9}};
    for (int si = 0; si < 4; si++) {
        Tensor *x = test_tensor(3, xs[si], true);
        test_fill_uniform(x->data, x->numel, 110 + si, -1, 1);
        SliceCtx c = sl[si];
        Graph g;
        graph_init(&g, 0, 1);
        graph_begin(&g, 0, false, false);
        Tensor *y = fwd_slice(&g, &x, &c);
        ck_assert_int_eq(y->ndim, 3);
        ck_assert_int_eq(y->shape[0], xs[si][0]);
        ck_assert_int_eq(y->shape[1], xs[si][1]);
        ck_assert_int_eq(y->shape[2], c.len);
        const int cols = xs[si][2];
        for (size_t r = 0; r < tensor_rows(x); r++)
            for (int j = 0; j < c.len; j++) ck_assert_float_eq(y->data[r * c.len + j], x->data[r * cols + c.start + j]);
        graph_free(&g);
        ck_assert(gradcheck("slice_cols", fwd_slice, &c, &x, 1, GRADCHECK_DEFAULTS));
        test_tensor_free(x);
    }
}
END_TEST

static Tensor *fwd_two_slices(Graph *g, Tensor **in, void *ctx)
{
    (void)ctx;
    /* overlapping slices of the same x, summed: gradients accumulate */
    return op_add(g, op_slice_cols(g, in[0], 1, 6), op_slice_cols(g, in[0], 3, 6));
}

START_TEST(test_slice_cols_two_overlapping_slices_accumulate_gradient)
{
    Tensor *x = test_tensor(2, (int[]){5, 9}, true);
    test_fill_uniform(x->data, x->numel, 120, -1, 1);
    ck_assert(gradcheck("two slices", fwd_two_slices, NULL, &x, 1, GRADCHECK_DEFAULTS));
    test_tensor_free(x);
}
END_TEST

/* The first slice backward writes x's whole fresh gradient (zeros outside
 * its columns): run in an arena left full of NaN by an earlier step. */
START_TEST(test_slice_cols_fresh_gradient_is_zero_outside_the_slice)
{
    enum { R = 6, C = 11, START = 3, LEN = 5 };
    Tensor *x = test_tensor(2, (int[]){R, C}, true);
    test_fill_uniform(x->data, x->numel, 121, -1, 1);
    Graph g;
    graph_init(&g, 1 << 16, 1);
    graph_begin(&g, 0, false, true);
    float *junk = graph_scratch(&g, (1 << 16) - 1024);
    for (size_t i = 0; i < ((1 << 16) - 1024) / 4; i++) junk[i] = NAN;
    graph_begin(&g, 1, false, true);
    x->grad = NULL;
    Tensor *y = op_slice_cols(&g, x, START, LEN);
    float dy[R * LEN];
    test_fill_uniform(dy, R * LEN, 122, -1, 1);
    graph_backward_from(&g, y, dy);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float want = c >= START && c < START + LEN ? dy[r * LEN + c - START] : 0.0f;
            ck_assert_float_eq(x->grad[r * C + c], want);
        }
    x->grad = NULL;
    graph_free(&g);
    test_tensor_free(x);
}
END_TEST

START_TEST(test_slice_cols_aborts_past_last_column)
{
    Tensor *x = test_tensor(2, (int[]){2, 9}, false);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_slice_cols(&g, x, 5, 5);
}
END_TEST

START_TEST(test_slice_cols_aborts_on_negative_start)
{
    Tensor *x = test_tensor(2, (int[]){2, 9}, false);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_slice_cols(&g, x, -1, 3);
}
END_TEST

Suite *suite_index(void)
{
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_embedding_forward_copies_rows_for_1_2_3_dim_ids);
    tcase_add_test(tc, test_embedding_gradient_of_W_with_repeated_ids_matches_finite_differences);
    tcase_add_test(tc, test_embedding_backward_sums_in_token_order_same_bits_for_1_and_2_threads);
    tcase_add_test(tc, test_gather_rows_forward_and_gradient_with_repeated_rows);
    tcase_add_test(tc, test_mean_time_forward_matches_double_reference_with_and_without_mask);
    tcase_add_test(tc, test_mean_time_gradient_matches_finite_differences_with_and_without_mask);
    tcase_add_test(tc, test_mean_time_fully_masked_row_gives_zero_and_no_gradient);
    tcase_add_test(tc, test_slice_cols_forward_and_gradient);
    tcase_add_test(tc, test_slice_cols_two_overlapping_slices_accumulate_gradient);
    tcase_add_test(tc, test_slice_cols_fresh_gradient_is_zero_outside_the_slice);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_set_timeout(te, 60);
    tcase_add_test_raise_signal(te, test_embedding_aborts_on_id_equal_to_vocab_size, SIGABRT);
    tcase_add_test_raise_signal(te, test_embedding_aborts_on_negative_id, SIGABRT);
    tcase_add_test_raise_signal(te, test_gather_rows_aborts_on_row_out_of_range, SIGABRT);
    tcase_add_test_raise_signal(te, test_slice_cols_aborts_past_last_column, SIGABRT);
    tcase_add_test_raise_signal(te, test_slice_cols_aborts_on_negative_start, SIGABRT);
    suite_add_tcase(s, te);
    return s;
}
