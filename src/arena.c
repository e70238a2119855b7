#include "arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ArenaOverflow {
    ArenaOverflow *next;
    void *mem;
};

static size_t round_up(size_t n) { return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1); }

static void *aligned_or_die(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0) bytes = ARENA_ALIGN;
    if (posix_memalign(&p, ARENA_ALIGN, bytes) != 0) {
        fprintf(stderr, "seqeig: out of memory allocating %zu bytes for activations\n", bytes);
        abort();
    }
    return p;
}

int arena_init(Arena *a, size_t initial_bytes)
{
    memset(a, 0, sizeof *a);
    a->cap = round_up(initial_bytes);
    a->base = a->cap ? aligned_or_die(a->cap) : NULL;
    return 0;
}

static void free_overflow(Arena *a)
{
    while (a->overflow) {
        ArenaOverflow *o = a->overflow;
        a->overflow = o->next;
        free(o->mem);
        free(o);
    }
}

void arena_free(Arena *a)
{
    free_overflow(a);
    free(a->base);
    memset(a, 0, sizeof *a);
}

void *arena_alloc(Arena *a, size_t bytes)
{
    size_t n = round_up(bytes ? bytes : 1);
    a->step_total += n;
    if (a->step_total > a->peak) a->peak = a->step_total;
    if (a->used + n <= a->cap) {
        void *p = a->base + a->used;
        a->used += n;
        return p;
    }
    ArenaOverflow *o = malloc(sizeof *o);
    if (!o) {
        fprintf(stderr, "seqeig: out of memory\n");
        abort();
    }
    o->mem = aligned_or_die(n);
    o->next = a->overflow;
    a->overflow = o;
    a->n_growths++;
    return o->mem;
}

void *arena_calloc(Arena *a, size_t bytes)
{
    void *p = arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

void arena_reset(Arena *a)
{
    if (a->overflow) {
        free_overflow(a);
        free(a->base);
        /* a little headroom so a slightly larger step does not overflow again */
        a->cap = round_up(a->peak + a->peak / 8);
        a->base = aligned_or_die(a->cap);
    }
    a->used = 0;
    a->step_total = 0;
}
