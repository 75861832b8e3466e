/*
 * shmlock.c: robust process-shared mutexes, and their repair when a
 * holder died.
 *
 * Shared by the registry and the rate-limit table; each supplies its own
 * repair function, which must only restore its table and never log.
 */

#include "config.h"

#include <errno.h>

#include "relay/shmlock.h"


int
relay_shmlock_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    int rc;

    rc = pthread_mutexattr_init(&attr);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0) {
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    }
    if (rc == 0) {
        rc = pthread_mutex_init(m, &attr);
    }
    (void)pthread_mutexattr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        return -1;
    }

    return 0;
}


int
relay_shmlock_acquire(pthread_mutex_t *m, void (*repair)(void *), void *arg)
{
    int rc;

    rc = pthread_mutex_lock(m);
    if (rc == 0) {
        return 0;
    }
    if (rc != EOWNERDEAD) {
        errno = rc;
        return -1;
    }

    repair(arg);

    rc = pthread_mutex_consistent(m);
    if (rc != 0) {
        (void)pthread_mutex_unlock(m);
        errno = rc;
        return -1;
    }

    return 1;
}
