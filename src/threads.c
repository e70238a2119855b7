#include "threads.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

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

/* OpenBLAS kernel name for this CPU's vector instruction set, or NULL. */
static const char *blas_coretype_for_cpu(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void threads_pin_blas_kernel(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) return; /* the user's (or our earlier exec's) choice */
    const char *want = blas_coretype_for_cpu();
    if (!want) return;
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
    if (strcasecmp(openblas_get_corename(), want) == 0) return; /* already that kernel */
    execv("/proc/self/exe", argv); /* returns only on failure: go on with the loaded kernel */
}
