/* Runs every Check suite.  Suites are found by the Makefile, which lists
 * each `Suite *suite_<name>(void)` defined under tests/ into
 * build/.../test_suites.h.  The runner itself never enters an OpenMP
 * region: gcc's OpenMP does not survive the fork Check does per test. */
#include "../src/threads.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define SUITE(name) Suite *name(void);
#include "test_suites.h"
#undef SUITE

int main(int argc, char **argv)
{
    threads_pin_blas_kernel(argv); /* before any OpenMP region (and any fork) */
    SRunner *sr = NULL;
#define SUITE(name)                                    \
    if (!sr) sr = srunner_create(name());              \
    else srunner_add_suite(sr, name());
#include "test_suites.h"
#undef SUITE
    /* optional filter: test_seqeig SUITE_NAME runs one suite (CK_RUN_SUITE works too) */
    const char *only = argc > 1 ? argv[1] : NULL;
    srunner_run(sr, only, NULL, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
