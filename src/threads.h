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

#endif
