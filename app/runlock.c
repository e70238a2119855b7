/* One writer per run file (runlock.h). */
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The pid written in a held lock file, or 0. */
static long holder_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1) pid = 0;
        fclose(f);
    }
    return pid;
}

int runlock_acquire(RunLock *l, const char *target, char *err, size_t errlen)
{
    l->fd = -1;
    if (snprintf(l->path, sizeof l->path, "%s.lock", target) >= (int)sizeof l->path) {
        snprintf(err, errlen, "%.200s...: path too long for its lock file", target);
        return -1;
    }
    /* A releasing owner unlinks the file: if the file we locked is no longer
     * the one at the path, lock again (a few times at most). */
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "%s: cannot create the lock file: %s", l->path, strerror(errno));
            return -1;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int e = errno;
            close(fd);
            if (e != EWOULDBLOCK) {
                snprintf(err, errlen, "%s: cannot lock: %s", l->path, strerror(e));
                return -1;
            }
            const long pid = holder_pid(l->path);
            if (pid > 0)
                snprintf(err, errlen, "another seqeig (pid %ld) is writing %s; wait for it or stop it first", pid,
                         target);
            else
                snprintf(err, errlen, "another seqeig is writing %s (lock %s)", target, l->path);
            return 1;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(l->path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
            char pid[32];
            const int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)n) != n) {
                /* the lock holds without the pid; messages then name the lock file */
            }
            l->fd = fd;
            return 0;
        }
        close(fd); /* the file was removed or replaced meanwhile */
    }
    snprintf(err, errlen, "%s: the lock file keeps changing; is another seqeig starting and stopping?", l->path);
    return -1;
}

void runlock_release(RunLock *l)
{
    if (l->fd < 0) return;
    unlink(l->path); /* while still held: a waiting process then sees the inode change */
    close(l->fd);
    l->fd = -1;
}
