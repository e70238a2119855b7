/* Bump allocator for per-step activations.
 *
 * Every tensor created during a forward/backward step lives here and dies
 * when the arena is reset at the start of the next step.  The first steps
 * may overflow the initial block; overflow blocks are malloc'ed and, on the
 * next reset, folded into one block as large as the peak use, so from then
 * on a step performs no malloc at all. */
#ifndef SEQEIG_ARENA_H
#define SEQEIG_ARENA_H

#include <stddef.h>

#define ARENA_ALIGN 64

typedef struct ArenaOverflow ArenaOverflow;

typedef struct Arena {
    char *base;               /* main block, ARENA_ALIGN-aligned */
    size_t cap;               /* bytes in the main block */
    size_t used;              /* bytes handed out from the main block */
    size_t step_total;        /* bytes handed out since the last reset (all blocks) */
    size_t peak;              /* largest step_total seen */
    ArenaOverflow *overflow;  /* blocks allocated when the main block ran out */
    size_t n_growths;         /* how many times an overflow block was needed */
} Arena;

/* Create an arena with an initial main block of `initial_bytes` (may be 0). */
int arena_init(Arena *a, size_t initial_bytes);
void arena_free(Arena *a);

/* Aligned, uninitialised memory valid until the next arena_reset. Aborts
 * with a message if the system is out of memory (there is no sensible
 * recovery in the middle of a step). */
void *arena_alloc(Arena *a, size_t bytes);
/* Same, zero-filled. */
void *arena_calloc(Arena *a, size_t bytes);

/* Forget every allocation; grows the main block to the peak if the last
 * step overflowed. */
void arena_reset(Arena *a);

#endif
