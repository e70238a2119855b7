/* One writer per run file: an exclusive lock held for the life of a run.
 *
 * The lock is flock(2) on "<run file>.lock" beside the run file (the
 * symlink-resolved target), holding the owner's pid for messages.  The
 * kernel drops the lock when its process ends, however it ends, so a
 * lock file left by a crash is stale by construction: the next run takes
 * it over.  A released lock removes its file. */
#ifndef SEQEIG_RUNLOCK_H
#define SEQEIG_RUNLOCK_H

#include <stddef.h>

typedef struct RunLock {
    int fd;            /* -1: not held */
    char path[4104];
} RunLock;

/* Take the lock of the run file `target`.  Returns 0; 1 when another
 * process holds it (err names its pid); -1 on another failure (err says
 * why). */
int runlock_acquire(RunLock *l, const char *target, char *err, size_t errlen);
/* Release (and remove) a held lock; a lock not held is left alone. */
void runlock_release(RunLock *l);

#endif
