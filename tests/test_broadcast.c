#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops.h"
#include "../src/ops/k_seq.h"
#include "testutil.h"

#define U32 0x1.0p-24

static Tensor *fwd_add_cols(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_add_cols(g, in[0], in[1]); }
static Tensor *fwd_mul_cols(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_mul_cols(g, in[0], in[1]); }
static Tensor *fwd_mul_heads(Graph *g, Tensor **in, void *ctx) { (void)ctx; return op_mul_heads(g, in[0], in[1]); }

/* x shapes (B, L, C): rows 1 .. 10, C = 1, 7, 8, 9, 33 */
static const int col_shapes[][3] = {{1, 1, 1}, {1, 3, 7}, {2, 2, 8}, {2, 5, 9}, {1, 4, 33}};

START_TEST(test_add_and_mul_cols_forward_match_plain_loops)
{
    Graph g;
    graph_init(&g, 0, 1);
    for (size_t s = 0; s < sizeof col_shapes / sizeof col_shapes[0]; s++) {
        const int C = col_shapes[s][2];
        Tensor *x = test_tensor(3, col_shapes[s], false), *v = test_tensor(1, &C, false);
        test_fill_uniform(x->data, x->numel, 60 + s, -2, 2);
        test_fill_uniform(v->data, v->numel, 70 + s, -2, 2);
        graph_begin(&g, 0, false, false);
        Tensor *ya = op_add_cols(&g, x, v), *ym = op_mul_cols(&g, x, v);
        ck_assert(tensor_same_shape(ya, x) && tensor_same_shape(ym, x));
        /* one rounding per element, as the plain loop: identical */
        for (size_t i = 0; i < x->numel; i++) {
            ck_assert_float_eq(ya->data[i], x->data[i] + v->data[i % C]);
            ck_assert_float_eq(ym->data[i], x->data[i] * v->data[i % C]);
        }
        test_tensor_free(x), test_tensor_free(v);
    }
    graph_free(&g);
}
END_TEST

START_TEST(test_add_and_mul_cols_gradients_match_finite_differences)
{
    for (size_t s = 0; s < sizeof col_shapes / sizeof col_shapes[0]; s++) {
        const int C = col_shapes[s][2];
        Tensor *x = test_tensor(3, col_shapes[s], true), *v = test_tensor(1, &C, true);
        test_fill_uniform(x->data, x->numel, 80 + s, -2, 2);
        test_fill_uniform(v->data, v->numel, 90 + s, -2, 2);
        ck_assert(gradcheck("add_cols", fwd_add_cols, NULL, (Tensor *[]){x, v}, 2, GRADCHECK_DEFAULTS));
        ck_assert(gradcheck("mul_cols", fwd_mul_cols, NULL, (Tensor *[]){x, v}, 2, GRADCHECK_DEFAULTS));
        test_tensor_free(x), test_tensor_free(v);
    }
}
END_TEST

/* (rows, H, P): P = 1, 5, 8, 11; H = 1, 2, 3 */
static const int head_cases[][3] = {{1, 1, 1}, {3, 2, 5}, {4, 3, 8}, {2, 3, 11}, {5, 1, 9}};

START_TEST(test_mul_heads_forward_matches_plain_loops)
{
    Graph g;
    graph_init(&g, 0, 1);
    for (size_t k = 0; k < sizeof head_cases / sizeof head_cases[0]; k++)
        for (int per_row = 0; per_row < 2; per_row++) {
            const int R = head_cases[k][0], H = head_cases[k][1], P = head_cases[k][2];
            Tensor *x = test_tensor(2, (int[]){R, H * P}, false);
            Tensor *s = per_row ? test_tensor(2, (int[]){R, H}, false) : test_tensor(1, &H, false);
            test_fill_uniform(x->data, x->numel, 100 + k, -2, 2);
            test_fill_uniform(s->data, s->numel, 110 + k, -2, 2);
            graph_begin(&g, 0, false, false);
            Tensor *y = op_mul_heads(&g, x, s);
            for (int r = 0; r < R; r++)
                for (int h = 0; h < H; h++)
                    for (int p = 0; p < P; p++) {
                        size_t i = (size_t)r * H * P + (size_t)h * P + p;
                        ck_assert_float_eq(y->data[i], x->data[i] * s->data[per_row ? r * H + h : h]);
                    }
            test_tensor_free(x), test_tensor_free(s);
        }
    graph_free(&g);
}
END_TEST

START_TEST(test_mul_heads_gradients_match_finite_differences)
{
    for (size_t k = 0; k < sizeof head_cases / sizeof head_cases[0]; k++)
        for (int per_row = 0; per_row < 2; per_row++) {
            const int R = head_cases[k][0], H = head_cases[k][1], P = head_cases[k][2];
            /* x as (2, R, H*P)-like 3-D tensor to exercise flattened rows */
            Tensor *x = test_tensor(3, (int[]){1, R, H * P}, true);
            Tensor *s = per_row ? test_tensor(3, (int[]){1, R, H}, true) : test_tensor(1, &H, true);
            test_fill_uniform(x->data, x->numel, 120 + k, -2, 2);
            test_fill_uniform(s->data, s->numel, 130 + k, -2, 2);
            ck_assert(gradcheck("mul_heads", fwd_mul_heads, NULL, (Tensor *[]){x, s}, 2, GRADCHECK_DEFAULTS));
            test_tensor_free(x), test_tensor_free(s);
        }
}
END_TEST

START_TEST(test_mul_heads_mismatched_heads_abort)
{
    Tensor *x = test_tensor(2, (int[]){2, 10}, false), *s = test_tensor(1, (int[]){3}, false);
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, false);
    op_mul_heads(&g, x, s); /* 10 % 3 != 0: must abort */
}
END_TEST

/* |got - ref| <= (SEQ_ROW_BLOCK + nblk + 2 + extra) u sum|terms|: worst
 * case of a blocked float sum (plus the rounding of the accumulation into
 * the output, and `extra` roundings per term made before the row sum). */
static void check_column_sums(const float *got, const double *ref, const double *sum_abs, size_t C,
                              size_t rows, int extra, const char *what)
{
    double nblk = (double)((rows + SEQ_ROW_BLOCK - 1) / SEQ_ROW_BLOCK);
    for (size_t c = 0; c < C; c++) {
        double bound = (SEQ_ROW_BLOCK + nblk + 2 + extra) * U32 * sum_abs[c];
        ck_assert_msg(fabs((double)got[c] - ref[c]) <= bound, "%s[%zu]: %.9g vs %.9g (bound %.3g)", what,
                      c, got[c], ref[c], bound);
    }
}

START_TEST(test_broadcast_operand_gradients_match_double_sums)
{
    /* 1000 rows: 16 row blocks; C = 13 (channel tail) */
    const int R = 1000, C = 13, H = 3, P = 5;
    Tensor *x = test_tensor(2, (int[]){R, C}, true), *v = test_tensor(1, &C, true);
    Tensor *xh = test_tensor(2, (int[]){R, H * P}, true), *s = test_tensor(1, &H, true);
    test_fill_uniform(x->data, x->numel, 140, -1, 1);
    test_fill_uniform(v->data, v->numel, 141, -1, 1);
    test_fill_uniform(xh->data, xh->numel, 142, -1, 1);
    test_fill_uniform(s->data, s->numel, 143, -1, 1);
    float *dy = malloc((size_t)R * C * 4), *dyh = malloc((size_t)R * H * P * 4);
    test_fill_uniform(dy, (size_t)R * C, 144, -1, 1);
    test_fill_uniform(dyh, (size_t)R * H * P, 145, -1, 1);
    double ref[13], sabs[13];
    Graph g;
    graph_init(&g, 0, 1);

    for (int op = 0; op < 2; op++) { /* add_cols, mul_cols */
        graph_begin(&g, 0, false, true);
        Tensor *y = op == 0 ? op_add_cols(&g, x, v) : op_mul_cols(&g, x, v);
        graph_backward_from(&g, y, dy);
        for (int c = 0; c < C; c++) {
            ref[c] = sabs[c] = 0;
            for (int r = 0; r < R; r++) {
                double t = (double)dy[r * C + c] * (op == 0 ? 1.0 : x->data[r * C + c]);
                ref[c] += t, sabs[c] += fabs(t);
            }
        }
        check_column_sums(v->grad, ref, sabs, C, R, 1, op == 0 ? "add_cols dv" : "mul_cols dv");
        x->grad = v->grad = NULL;
    }

    graph_begin(&g, 0, false, true);
    graph_backward_from(&g, op_mul_heads(&g, xh, s), dyh);
    for (int h = 0; h < H; h++) {
        ref[h] = sabs[h] = 0;
        for (int r = 0; r < R; r++)
            for (int p = 0; p < P; p++) {
                size_t i = (size_t)r * H * P + (size_t)h * P + p;
                ref[h] += (double)dyh[i] * xh->data[i], sabs[h] += fabs((double)dyh[i] * xh->data[i]);
            }
    }
    /* each row's head dot (P terms) rounds up to P times before the row sum */
    check_column_sums(s->grad, ref, sabs, H, R, P, "mul_heads ds (broadcast)");
    xh->grad = s->grad = NULL;

    graph_free(&g);
    free(dy), free(dyh);
    test_tensor_free(x), test_tensor_free(v), test_tensor_free(xh), test_tensor_free(s);
}
END_TEST

START_TEST(test_broadcast_avx2_matches_scalar)
{
#if SIMD_AVX2
    const size_t rows_list[] = {1, 7, 150};
    for (size_t ri = 0; ri < 3; ri++)
        for (size_t C = 1; C < 40; C += 4) {
            const size_t R = rows_list[ri], n = R * C;
            float *x = malloc(n * 4), *b = malloc(n * 4), *v = malloc(C * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4);
            float *o1 = calloc(C, 4), *o2 = calloc(C, 4), *work = malloc(k_colsum_prod_work_floats(R, C) * 4);
            test_fill_uniform(x, n, C, -1, 1);
            test_fill_uniform(b, n, C + 1, -1, 1);
            test_fill_uniform(v, C, C + 2, -1, 1);
            k_add_cols_scalar(x, v, y1, R, C);
            k_add_cols_avx2(x, v, y2, R, C);
            ck_assert_close(y2, y1, n, 0, 0, "add_cols avx2");
            k_mul_cols_scalar(x, v, y1, R, C);
            k_mul_cols_avx2(x, v, y2, R, C);
            ck_assert_close(y2, y1, n, 0, 0, "mul_cols avx2");
            memcpy(y2, b, n * 4), memcpy(y1, b, n * 4);
            k_mul_cols_acc_scalar(x, v, y1, R, C);
            k_mul_cols_acc_avx2(x, v, y2, R, C);
            ck_assert_close(y2, y1, n, 2 * 2 * U32, 0, "mul_cols_acc avx2"); /* |b + x v| <= 2, FMA */
            k_colsum_prod_acc_scalar(x, NULL, o1, work, R, C);
            k_colsum_prod_acc_avx2(x, NULL, o2, work, R, C);
            ck_assert_close(o2, o1, C, 0, 0, "colsum avx2 (adds in the same order: identical)");
            k_colsum_prod_acc_scalar(x, b, o1, work, R, C);
            k_colsum_prod_acc_avx2(x, b, o2, work, R, C);
            /* same order, FMA saves one rounding per term: <= 2 R u R */
            ck_assert_close(o2, o1, C, 2.0 * R * U32 * R, 0, "colsum_dot avx2");
            free(x), free(b), free(v), free(y1), free(y2), free(o1), free(o2), free(work);
        }
    for (size_t k = 0; k < sizeof head_cases / sizeof head_cases[0]; k++)
        for (int per_row = 0; per_row < 2; per_row++) {
            const size_t R = (size_t)head_cases[k][0] + 2, H = (size_t)head_cases[k][1], P = (size_t)head_cases[k][2];
            const size_t n = R * H * P;
            float *x = malloc(n * 4), *dy = malloc(n * 4), *s = malloc(R * H * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4);
            float *o1 = malloc(R * H * 4), *o2 = malloc(R * H * 4);
            test_fill_uniform(x, n, 200 + k, -1, 1);
            test_fill_uniform(dy, n, 210 + k, -1, 1);
            test_fill_uniform(s, R * H, 220 + k, -1, 1);
            k_mul_heads_scalar(x, s, y1, R, H, P, per_row);
            k_mul_heads_avx2(x, s, y2, R, H, P, per_row);
            ck_assert_close(y2, y1, n, 0, 0, "mul_heads avx2");
            memcpy(y1, dy, n * 4), memcpy(y2, dy, n * 4);
            k_mul_heads_acc_scalar(x, s, y1, R, H, P, per_row);
            k_mul_heads_acc_avx2(x, s, y2, R, H, P, per_row);
            ck_assert_close(y2, y1, n, 2 * 2 * U32, 0, "mul_heads_acc avx2");
            memcpy(o1, s, R * H * 4), memcpy(o2, s, R * H * 4);
            k_heads_dot_acc_scalar(x, dy, o1, R, H, P);
            k_heads_dot_acc_avx2(x, dy, o2, R, H, P);
            /* P + 1 terms of size <= 1, summed in different orders */
            ck_assert_close(o2, o1, R * H, 2.0 * (P + 1) * U32 * (P + 1), 0, "heads_dot avx2");
            free(x), free(dy), free(s), free(y1), free(y2), free(o1), free(o2);
        }
#endif
}
END_TEST

/* dv of add_cols and mul_cols, dx of mul_cols, ds of broadcast mul_heads with `threads` threads */
static float *broadcast_grads_threads(int threads, Tensor *x, Tensor *v, Tensor *xh, Tensor *s,
                                      const float *dy)
{
    omp_set_num_threads(threads);
    ck_assert_int_eq(omp_get_max_threads(), threads);
    const size_t C = v->numel, H = s->numel;
    float *out = malloc((2 * C + x->numel + H) * 4), *p = out;
    Graph g;
    graph_init(&g, 0, 1);
    graph_begin(&g, 0, false, true);
    graph_backward_from(&g, op_add_cols(&g, x, v), dy);
    memcpy(p, v->grad, C * 4), p += C;
    x->grad = v->grad = NULL;
    graph_begin(&g, 0, false, true);
    graph_backward_from(&g, op_mul_cols(&g, x, v), dy);
    memcpy(p, v->grad, C * 4), p += C;
    memcpy(p, x->grad, x->numel * 4), p += x->numel;
    x->grad = v->grad = NULL;
    graph_begin(&g, 0, false, true);
    graph_backward_from(&g, op_mul_heads(&g, xh, s), dy);
    memcpy(p, s->grad, H * 4);
    xh->grad = s->grad = NULL;
    graph_free(&g);
    return out;
}

START_TEST(test_broadcast_sums_bit_identical_for_1_and_2_threads)
{
    const int R = 1100, C = 72, H = 4; /* R*C = 79200 >= KERNEL_PAR_MIN */
    ck_assert((size_t)R * C >= KERNEL_PAR_MIN);
    Tensor *x = test_tensor(2, (int[]){R, C}, true), *v = test_tensor(1, &C, true);
    Tensor *xh = test_tensor(2, (int[]){R, C}, true), *s = test_tensor(1, &H, true);
    test_fill_uniform(x->data, x->numel, 150, -1, 1);
    test_fill_uniform(v->data, v->numel, 151, -1, 1);
    test_fill_uniform(xh->data, xh->numel, 152, -1, 1);
    test_fill_uniform(s->data, s->numel, 153, -1, 1);
    float *dy = malloc((size_t)R * C * 4);
    test_fill_uniform(dy, (size_t)R * C, 154, -1, 1);
    float *r1 = broadcast_grads_threads(1, x, v, xh, s, dy), *r2 = broadcast_grads_threads(2, x, v, xh, s, dy);
    ck_assert_msg(memcmp(r1, r2, (2 * (size_t)C + x->numel + H) * 4) == 0,
                  "broadcast gradients differ between 1 and 2 threads");
    free(r1), free(r2), free(dy);
    test_tensor_free(x), test_tensor_free(v), test_tensor_free(xh), test_tensor_free(s);
}
END_TEST

Suite *suite_broadcast(void)
{
    Suite *s = suite_create("broadcast");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_add_and_mul_cols_forward_match_plain_loops);
    tcase_add_test(tc, test_add_and_mul_cols_gradients_match_finite_differences);
    tcase_add_test(tc, test_mul_heads_forward_matches_plain_loops);
    tcase_add_test(tc, test_mul_heads_gradients_match_finite_differences);
    tcase_add_test_raise_signal(tc, test_mul_heads_mismatched_heads_abort, SIGABRT);
    tcase_add_test(tc, test_broadcast_operand_gradients_match_double_sums);
    tcase_add_test(tc, test_broadcast_avx2_matches_scalar);
    tcase_add_test(tc, test_broadcast_sums_bit_identical_for_1_and_2_threads);
    suite_add_tcase(s, tc);
    return s;
}
