#include <math.h>
#include <string.h>

#include "../optim/schedule.h"
#include "testutil.h"

/* Expected values are worked out by hand in the comments; cos(pi/4) =
 * sqrt(2)/2, cos(pi/5) = (1 + sqrt 5)/4.  Double rounding only: 1e-15 relative. */
#define ASSERT_LR(s, k, want) \
    ck_assert_double_eq_tol(lr_at((s), (k)), (want), 1e-15 * fabs(want) + 1e-30)

START_TEST(test_constant_schedule_is_flat)
{
    LrSchedule s = lr_schedule_constant(1e-3);
    for (int64_t k = 0; k < 5000; k += 97) ck_assert(lr_at(&s, k) == 1e-3);
    ck_assert_double_eq(s.eta_min, 5e-6);
}
END_TEST

START_TEST(test_linear_warmup_edges)
{
    LrSchedule s = lr_schedule_constant(0.01);
    s.warmup = 4;
    ASSERT_LR(&s, 0, 0.0025); /* (0+1)/4 */
    ASSERT_LR(&s, 1, 0.005);
    ASSERT_LR(&s, 2, 0.0075);
    ck_assert(lr_at(&s, 3) == 0.01); /* (3+1)/4 = 1: the full rate at step W-1 */
    ck_assert(lr_at(&s, 4) == 0.01);
    ck_assert(lr_at(&s, 1000) == 0.01);
    s.warmup = 1; /* W = 1 is no warmup at all */
    ck_assert(lr_at(&s, 0) == 0.01);
}
END_TEST

START_TEST(test_cosine_start_middle_end)
{
    LrSchedule s = lr_schedule_constant(1e-3);
    s.cosine = true;
    s.total = 100;
    ASSERT_LR(&s, 0, 1e-3);                            /* cos 0 = 1 */
    ASSERT_LR(&s, 25, 5e-6 + 9.95e-4 * (1 + M_SQRT1_2) / 2); /* 8.542856236e-4 */
    ASSERT_LR(&s, 25, 8.542856236403073e-4);
    ASSERT_LR(&s, 50, (1e-3 + 5e-6) / 2);              /* cos(pi/2) = 0: the midpoint */
    ASSERT_LR(&s, 99, 5e-6 + 9.95e-4 * (1 + cos(M_PI * 0.99)) / 2);
    ck_assert(lr_at(&s, 99) > 5e-6 && lr_at(&s, 99) < 5e-6 + 1e-6);
    ASSERT_LR(&s, 100, 5e-6);                          /* cos pi = -1: eta_min */
    ASSERT_LR(&s, 250, 5e-6);                          /* held at eta_min after T */
    /* strictly decreasing over [0, T] */
    for (int64_t k = 1; k <= 100; k++) ck_assert(lr_at(&s, k) < lr_at(&s, k - 1));
}
END_TEST

START_TEST(test_warmup_times_cosine)
{
    LrSchedule s = lr_schedule_constant(1e-3);
    s.cosine = true;
    s.total = 100;
    s.warmup = 10;
    ASSERT_LR(&s, 0, 1e-4);                     /* 1/10 * lr (cos part = lr at k = 0) */
    /* k = 4: 5/10 * (5e-6 + 9.95e-4 (1 + cos(0.04 pi)) / 2), cos(0.04 pi) = 0.99211470131 */
    ASSERT_LR(&s, 4, 4.980385319519764e-4);
    /* k = 9: warmup factor reaches 1, pure cosine */
    ASSERT_LR(&s, 9, 5e-6 + 9.95e-4 * (1 + cos(M_PI * 9 / 100)) / 2);
    ASSERT_LR(&s, 50, (1e-3 + 5e-6) / 2);
}
END_TEST

START_TEST(test_epoch_schedule_is_constant_within_an_epoch)
{
    LrSchedule s = lr_schedule_constant(1e-2);
    s.unit = LR_PER_EPOCH;
    s.steps_per_epoch = 10;
    s.warmup = 2;
    s.cosine = true;
    s.total = 5;
    s.eta_min = 0.0;
    for (int64_t k = 0; k < 10; k++) ASSERT_LR(&s, k, 5e-3); /* epoch 0: 1/2 * lr */
    /* epoch 1: warmup done, lr (1 + cos(pi/5)) / 2, cos(pi/5) = 0.80901699437 */
    for (int64_t k = 10; k < 20; k++) ASSERT_LR(&s, k, 9.045084971874737e-3);
    ASSERT_LR(&s, 20, 1e-2 * (1 + cos(2 * M_PI / 5)) / 2);
    ck_assert(lr_at(&s, 50) == 0.0); /* epoch 5 = T: eta_min */
    ck_assert(lr_at(&s, 10) == lr_at_unit(&s, 1));
}
END_TEST

START_TEST(test_schedule_check_names_bad_settings)
{
    char err[160];
    LrSchedule s = lr_schedule_constant(1e-3);
    ck_assert_int_eq(lr_schedule_check(&s, err, sizeof err), 0);
    s.cosine = true;
    ck_assert_int_eq(lr_schedule_check(&s, err, sizeof err), -1); /* total = 0 */
    ck_assert_msg(strstr(err, "total"), "%s", err);
    s.total = 10;
    ck_assert_int_eq(lr_schedule_check(&s, err, sizeof err), 0);
    s.warmup = -1;
    ck_assert_int_eq(lr_schedule_check(&s, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "warmup"), "%s", err);
    s.warmup = 0;
    s.unit = LR_PER_EPOCH;
    ck_assert_int_eq(lr_schedule_check(&s, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "steps_per_epoch"), "%s", err);
    s.steps_per_epoch = 3;
    ck_assert_int_eq(lr_schedule_check(&s, err, sizeof err), 0);
    s.lr = -1.0;
    ck_assert_int_eq(lr_schedule_check(&s, err, sizeof err), -1);
    s.lr = NAN;
    ck_assert_int_eq(lr_schedule_check(&s, err, sizeof err), -1);
}
END_TEST

Suite *suite_schedule(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_constant_schedule_is_flat);
    tcase_add_test(tc, test_linear_warmup_edges);
    tcase_add_test(tc, test_cosine_start_middle_end);
    tcase_add_test(tc, test_warmup_times_cosine);
    tcase_add_test(tc, test_epoch_schedule_is_constant_within_an_epoch);
    tcase_add_test(tc, test_schedule_check_names_bad_settings);
    suite_add_tcase(s, tc);
    return s;
}
