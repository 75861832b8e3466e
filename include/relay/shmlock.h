/*
 * shmlock.h: robust process-shared mutexes for tables in shared memory.
 *
 * A process can be killed while it holds such a lock.  The next locker
 * then gets EOWNERDEAD; this module runs the table's repair function under
 * the lock, marks the mutex consistent and lets the caller go on, so one
 * dead worker never wedges the others.  No logging: the repair is counted
 * by the caller's table and reported by whoever reads the count.
 */

#ifndef RELAY_SHMLOCK_H
#define RELAY_SHMLOCK_H

#include <pthread.h>

/*
 * Initialise m, which lives in MAP_SHARED memory, as a robust
 * process-shared mutex.  Returns 0, or -1 with errno set.
 */
int relay_shmlock_init(pthread_mutex_t *m);

/*
 * Lock m.  If its previous holder died, call repair(arg) with the lock
 * held before returning 1; otherwise return 0.  Returns -1 with errno set
 * if the mutex cannot be locked (it is then not held).
 */
int relay_shmlock_acquire(pthread_mutex_t *m, void (*repair)(void *),
                          void *arg);

#endif
