/* How kernels split work between OpenMP threads.
 *
 * Element-wise loops go in fixed blocks of KERNEL_BLOCK elements (a
 * multiple of 8) and only when there are at least KERNEL_PAR_MIN elements;
 * each block is processed by identical vector code (tails use masked
 * loads), so the result does not depend on the number of threads. */
#ifndef SEQEIG_PARALLEL_H
#define SEQEIG_PARALLEL_H

#include <stddef.h>

#include "../simd.h"

#define KERNEL_BLOCK 4096
#define KERNEL_PAR_MIN 65536

/* Run CALL (which sees `off` and `len`) for every block of [0, n). */
#define PARALLEL_BLOCKS(n, CALL)                                                 \
    do {                                                                         \
        size_t nb_ = ((n) + KERNEL_BLOCK - 1) / KERNEL_BLOCK;                    \
        _Pragma("omp parallel for schedule(static) if ((n) >= KERNEL_PAR_MIN)")  \
        for (size_t blk = 0; blk < nb_; blk++) {                                 \
            size_t off = blk * KERNEL_BLOCK;                                     \
            size_t len = (n) - off < KERNEL_BLOCK ? (n) - off : KERNEL_BLOCK;    \
            CALL;                                                                \
        }                                                                        \
    } while (0)

#endif
