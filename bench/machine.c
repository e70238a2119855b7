/* Machine limits the kernels are compared against: OpenBLAS sgemm
 * GFLOP/s with 1 and 2 threads, and memory bandwidth (STREAM-style copy
 * and triad over arrays much larger than the caches).
 * Prints "limit <name> <value> <unit>" lines that bench/run.sh collects.
 * `machine --blas-kernel` prints only the OpenBLAS kernel seqeig pins
 * (threads_pin_blas_kernel), so that the PyTorch runs use the same one. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/threads.h"
#include "benchutil.h"

static double sgemm_gflops(int m, int n, int k)
{
    float *a = bench_alloc((size_t)m * k), *b = bench_alloc((size_t)k * n), *c = bench_alloc((size_t)m * n);
    double t;
    int reps = (double)m * n * k > 1e9 ? 5 : 20;
    BENCH_MEDIAN(reps, t, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n));
    free(a), free(b), free(c);
    return 2.0 * m * n * k / t * 1e-9;
}

static void copy_kernel(float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = b[i];
}

static void triad_kernel(float *a, const float *b, const float *c, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = b[i] + 0.5f * c[i];
}

static double bandwidth_gbs(int triad)
{
    size_t n = (size_t)64 << 20; /* 256 MiB per array */
    float *a = bench_alloc(n), *b = bench_alloc(n), *c = bench_alloc(n);
    double t;
    if (triad)
        BENCH_MEDIAN(5, t, triad_kernel(a, b, c, n));
    else
        BENCH_MEDIAN(5, t, copy_kernel(a, b, n));
    free(a), free(b), free(c);
    double bytes = (triad ? 3.0 : 2.0) * (double)n * sizeof(float);
    return bytes / t * 1e-9;
}

char *openblas_get_corename(void);

int main(int argc, char **argv)
{
    threads_pin_blas_kernel(argv);
    if (argc == 2 && strcmp(argv[1], "--blas-kernel") == 0) {
        const char *pinned = getenv("OPENBLAS_CORETYPE");
        printf("%s\n", pinned ? pinned : openblas_get_corename());
        return 0;
    }
    printf("# machine limits (OpenBLAS kernel %s)\n", openblas_get_corename());
    for (int th = 1; th <= 2; th++) {
        threads_set(th);
        printf("limit sgemm_1024_t%d %.1f GFLOP/s\n", th, sgemm_gflops(1024, 1024, 1024));
        printf("limit sgemm_4096x128x128_t%d %.1f GFLOP/s\n", th, sgemm_gflops(4096, 128, 128));
        printf("limit copy_t%d %.1f GB/s\n", th, bandwidth_gbs(0));
        printf("limit triad_t%d %.1f GB/s\n", th, bandwidth_gbs(1));
        fflush(stdout);
    }
    return 0;
}
