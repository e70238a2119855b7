/* One thread count for OpenMP and OpenBLAS.
 *
 * seqeig links the OpenMP build of OpenBLAS (see the Makefile), which runs
 * its GEMMs on the same libgomp thread pool as our own kernels instead of
 * keeping a pool of pthreads of its own.  The two therefore never compete
 * for the cores: a cblas_sgemm called between our parallel loops uses the
 * same n threads, and one called inside a parallel region runs on the
 * calling thread alone.  (With the pthread build, OpenBLAS's own threads
 * spinning next to OpenMP's oversubscribe the cores: on a 2-core machine
 * GEMMs issued between or inside OpenMP loops ran 2-3x slower.)
 * threads_set keeps both libraries' counts equal so this holds whatever
 * the environment said (OPENBLAS_NUM_THREADS included).
 *
 * Call from the main thread, outside any parallel region.  Note that a
 * process which has run an OpenMP region must not fork and use OpenMP in
 * the child (Check's test runner forks; see tests/test_main.c). */
#ifndef SEQEIG_THREADS_H
#define SEQEIG_THREADS_H

/* Set the thread count of OpenMP (omp_set_num_threads) and OpenBLAS
 * (openblas_set_num_threads) to n; n <= 0 means the first value of
 * OMP_NUM_THREADS if it is a positive integer, else all cores
 * (omp_get_num_procs).  Returns the count now in force. */
int threads_set(int n);

/* The thread count in force (omp_get_max_threads). */
int threads_get(void);

/* Pin OpenBLAS's kernel to the instruction set of this CPU, for speed and
 * for results that do not depend on how OpenBLAS names the CPU model.
 *
 * OpenBLAS chooses its kernel once, when the library loads, from the CPU
 * model number; a model it does not know (e.g. a newer Xeon than the
 * Debian build) falls back to its SSE3 "Prescott" kernel, which is several
 * times slower and whose threaded sgemm is not bit-identical across thread
 * counts.  OPENBLAS_CORETYPE overrides the choice but is only read at load
 * time, so when it is unset this sets it from the CPU's features
 * (AVX-512 F/BW/DQ/VL: SkylakeX, AVX2 + FMA: Haswell) and, if the loaded
 * kernel differs, re-executes the program (argv, via /proc/self/exe) once.
 * A value the user set is kept.  Call first thing in main, before any
 * thread or OpenMP region exists; returns only if no re-exec happened. */
void threads_pin_blas_kernel(char **argv);

#endif
