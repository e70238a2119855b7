#include "threads.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

/* First entry of OMP_NUM_THREADS ("4" or "4,2") if a positive integer, else 0. */
static int env_threads(void)
{
    const char *s = getenv("OMP_NUM_THREADS");
    if (!s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || (*end != '\0' && *end != ',') || v <= 0 || v > 4096) return 0;
    return (int)v;
}

int threads_set(int n)
{
    if (n <= 0) n = env_threads();
    if (n <= 0) n = omp_get_num_procs();
    if (n <= 0) n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return omp_get_max_threads();
}

int threads_get(void) { return omp_get_max_threads(); }
