/* Small helpers shared by the benchmark programs: wall clock, robust
 * timing (median of repeats) and the table format. */
#ifndef SEQEIG_BENCHUTIL_H
#define SEQEIG_BENCHUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of `reps` runs of `body` (after one warm-up run). */
#define BENCH_MEDIAN(reps, out_seconds, body)                         \
    do {                                                              \
        double t_[64];                                                \
        int r_ = (reps) > 64 ? 64 : (reps);                           \
        { body; }                                                     \
        for (int i_ = 0; i_ < r_; i_++) {                             \
            double t0_ = bench_now();                                 \
            { body; }                                                 \
            t_[i_] = bench_now() - t0_;                               \
        }                                                             \
        qsort(t_, (size_t)r_, sizeof t_[0], bench_cmp_double);        \
        (out_seconds) = t_[r_ / 2];                                   \
    } while (0)

static inline float *bench_alloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n * sizeof(float)) != 0) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    float *f = p;
    for (size_t i = 0; i < n; i++) f[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return f;
}

#endif
