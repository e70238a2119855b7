#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/rng.h"
#include "../tasks/mqar.h"
#include "testutil.h"

/* Checks one example's structure; returns via ck_assert. gaps_out gets K gaps (may be NULL). */
static void check_example(const MqarParams *p, const int32_t *in, const int32_t *lab, int *gaps_out)
{
    const int V = p->vocab, L = p->seq_len, K = p->num_kv_pairs;
    for (int j = 0; j < K; j++) {
        int32_t k = in[2 * j], v = in[2 * j + 1];
        ck_assert(k >= 1 && k <= V / 2 - 1);
        ck_assert(v >= V / 2 && v <= V - 1);
        for (int i = 0; i < j; i++) { ck_assert(in[2 * i] != k); ck_assert(in[2 * i + 1] != v); }
        ck_assert_int_eq(lab[2 * j], MQAR_IGNORE);
        ck_assert_int_eq(lab[2 * j + 1], MQAR_IGNORE);
    }
    int32_t rows[512];
    int n = mqar_label_positions(lab, L, rows);
    ck_assert_int_eq(n, K);
    for (int r = 0; r < n; r++) {
        int t = rows[r];
        ck_assert(t >= 2 * K && (t - 2 * K) % 2 == 0 && t < L);
        int found = -1;
        for (int j = 0; j < K; j++) if (in[2 * j] == in[t]) found = j;
        ck_assert_msg(found >= 0, "query token at %d is not a key", t);
        ck_assert_int_eq(lab[t], in[2 * found + 1]);
        if (gaps_out) gaps_out[r] = (t - 2 * K) / 2;
    }
}

START_TEST(test_mqar_examples_structure_keys_values_queries)
{
    int cfg[][3] = {{64, 32, 8}, {100, 64, 4}, {8192, 512, 64}, {11, 10, 1}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        MqarParams p = mqar_default_params(cfg[c][0], cfg[c][1], cfg[c][2], 0);
        ck_assert_int_eq(mqar_validate(&p, NULL, 0), 0);
        int32_t in[512], lab[512];
        for (uint64_t i = 0; i < 50; i++) {
            mqar_generate_example(&p, 77, i, in, lab);
            check_example(&p, in, lab, NULL);
            for (int t = 0; t < p.seq_len; t++) ck_assert(in[t] >= 0 && in[t] < p.vocab);
        }
    }
}
END_TEST

START_TEST(test_mqar_no_random_fill_leaves_zeros_only_off_queries)
{
    MqarParams p = mqar_default_params(100, 64, 4, 0);
    p.random_non_queries = false;
    int32_t in[64], lab[64];
    mqar_generate_example(&p, 5, 3, in, lab);
    check_example(&p, in, lab, NULL);
    int zeros = 0;
    for (int t = 0; t < 64; t++) {
        if (t >= 8 && lab[t] == MQAR_IGNORE) { ck_assert_int_eq(in[t], 0); zeros++; }
    }
    ck_assert_int_eq(zeros, 64 - 8 - 4);
    p.random_non_queries = true;
    mqar_generate_example(&p, 5, 3, in, lab);
    int z2 = 0;
    for (int t = 8; t < 64; t++) z2 += in[t] == 0;
    ck_assert_int_lt(z2, 5); /* 52 uniform tokens from 100: P(>=5 zeros) tiny */
}
END_TEST

START_TEST(test_mqar_deterministic_in_key_and_index)
{
    MqarParams p = mqar_default_params(100, 64, 4, 0);
    int32_t a[64], la[64], b[64], lb[64];
    mqar_generate_example(&p, 9, 12, a, la);
    mqar_generate_example(&p, 9, 12, b, lb);
    ck_assert(!memcmp(a, b, sizeof a) && !memcmp(la, lb, sizeof la));
    mqar_generate_example(&p, 9, 13, b, lb);
    ck_assert(memcmp(a, b, sizeof a));
    mqar_generate_example(&p, 10, 12, b, lb);
    ck_assert(memcmp(a, b, sizeof a));
}
END_TEST

START_TEST(test_mqar_dataset_thread_count_independent)
{
    MqarParams p = mqar_default_params(100, 64, 4, 37);
    MqarDataset d1, d2;
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    ck_assert_int_eq(mqar_dataset_generate(&d1, &p, 3, 100, 37, NULL, 0), 0);
    omp_set_num_threads(2);
    ck_assert_int_eq(mqar_dataset_generate(&d2, &p, 3, 100, 37, NULL, 0), 0);
    omp_set_num_threads(saved);
    ck_assert(!memcmp(d1.inputs, d2.inputs, sizeof(int32_t) * 37 * 64));
    ck_assert(!memcmp(d1.labels, d2.labels, sizeof(int32_t) * 37 * 64));
    int32_t in[64], lab[64];
    mqar_generate_example(&p, 3, 110, in, lab);
    ck_assert(!memcmp(in, d1.inputs + 10 * 64, sizeof in));
    mqar_dataset_free(&d1);
    mqar_dataset_free(&d2);
}
END_TEST

/* Gap law: the first drawn gap has P(g) = w_g / sum w exactly (no removal yet).
 * Over N=2000 examples (L=64, K=4, space=28), Pearson chi-square of the first gap
 * against that law, pooling tail cells so expected counts are >= 5. With a=0.01
 * the law is ~1/(g+1): P(0) ~ 0.26. Bound: chi2 < 60 for <= 27 dof (the 0.99999
 * quantile of chi2_27 is ~63), so a correct generator essentially never fails,
 * while a uniform gap law gives chi2 in the thousands. */
START_TEST(test_mqar_first_gap_follows_power_law)
{
    MqarParams p = mqar_default_params(100, 64, 4, 0);
    const int space = 28, N = 2000;
    double w[28], tot = 0;
    for (int g = 0; g < space; g++) { w[g] = 0.01 * pow(g + 1.0, -0.99); tot += w[g]; }
    int cnt[28] = {0};
    int32_t in[64], lab[64];
    for (int i = 0; i < N; i++) {
        mqar_generate_example(&p, 42, (uint64_t)i, in, lab);
        /* first drawn gap = the query of key 0 */
        for (int t = 8; t < 64; t += 2)
            if (lab[t] != MQAR_IGNORE && in[t] == in[0]) cnt[(t - 8) / 2]++;
    }
    double chi2 = 0, e_acc = 0, o_acc = 0;
    for (int g = 0; g < space; g++) {
        e_acc += N * w[g] / tot;
        o_acc += cnt[g];
        if (e_acc >= 5 || g == space - 1) {
            chi2 += (o_acc - e_acc) * (o_acc - e_acc) / e_acc;
            e_acc = o_acc = 0;
        }
    }
    ck_assert_msg(chi2 < 60, "chi2 %g", chi2);
    ck_assert_int_gt(cnt[0], cnt[27] * 3);
}
END_TEST

START_TEST(test_mqar_validation_names_parameter)
{
    char err[128];
    MqarParams p = mqar_default_params(100, 63, 4, 1);
    ck_assert_int_eq(mqar_validate(&p, err, sizeof err), -1);
    ck_assert(strstr(err, "seq_len"));
    p = mqar_default_params(64, 64, 4, 1);
    ck_assert_int_eq(mqar_validate(&p, err, sizeof err), -1);
    ck_assert(strstr(err, "vocab"));
    p = mqar_default_params(100, 64, 17, 1);
    ck_assert_int_eq(mqar_validate(&p, err, sizeof err), -1);
    ck_assert(strstr(err, "num_kv_pairs"));
    p = mqar_default_params(100, 64, 0, 1);
    ck_assert_int_eq(mqar_validate(&p, err, sizeof err), -1);
    ck_assert(strstr(err, "num_kv_pairs"));
    p = mqar_default_params(100, 64, 4, 1);
    p.power_a = 0;
    ck_assert_int_eq(mqar_validate(&p, err, sizeof err), -1);
    ck_assert(strstr(err, "power_a"));
    p = mqar_default_params(100, 64, 16, 1);
    ck_assert_int_eq(mqar_validate(&p, err, sizeof err), 0);
}
END_TEST

Suite *suite_mqar(void)
{
    Suite *s = suite_create("mqar");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mqar_examples_structure_keys_values_queries);
    tcase_add_test(tc, test_mqar_no_random_fill_leaves_zeros_only_off_queries);
    tcase_add_test(tc, test_mqar_deterministic_in_key_and_index);
    tcase_add_test(tc, test_mqar_dataset_thread_count_independent);
    tcase_add_test(tc, test_mqar_first_gap_follows_power_law);
    tcase_add_test(tc, test_mqar_validation_names_parameter);
    suite_add_tcase(s, tc);
    return s;
}
