/*
 * master.c: the master process.  It binds the listeners, maps the shared
 * memory, forks the workers and then only supervises them.
 *
 * The master runs no event loop and installs no signal handlers: it
 * blocks the signals it cares about and takes them one at a time with
 * sigtimedwait(), so nothing runs in signal context.  A worker that dies
 * is reaped, its registry entries are freed (its connections died with
 * it), its counters are folded into the retired block and a new worker is
 * forked into the same slot, with a growing delay if workers keep dying
 * young.  A worker that exits with status 2 hit a fatal error that a
 * respawn would only repeat; it is not respawned.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relay/channel.h"
#include "relay/log.h"
#include "relay/master.h"
#include "relay/metrics.h"
#include "relay/net.h"
#include "relay/registry.h"
#include "relay/shm.h"
#include "relay/util.h"
#include "relay/worker.h"

#define RELAY_MASTER_DEFAULT_CONNS  100000
#define RELAY_MASTER_FD_RESERVE     64
#define RELAY_MASTER_YOUNG_MS       1000
#define RELAY_MASTER_BACKOFF_MAX_MS 10000
#define RELAY_MASTER_BACKLOG        4096

/*
 * Workers live in slots.  nworkers accept positions each have one
 * SO_REUSEPORT listener, kept open by the master so that a respawned or
 * reloaded worker takes it over with whatever connections wait in its
 * queue.  A reload starts a new generation of workers in free slots and
 * retires the old ones, which keep their connections until those end.
 */
struct relay_master {
    struct relay_config *cfg;
    int argc;
    char **argv;
    struct relay_shm *shm;
    int nworkers;
    int listen_fd[RELAY_WORKERS_MAX];           /* per accept position */
    int metrics_fd;
    int chan_recv[RELAY_WORKERS_MAX];           /* per slot */
    int chan_send[RELAY_WORKERS_MAX];
    int life[2];
    int position[RELAY_WORKERS_MAX];            /* slot's accept position */
    int active[RELAY_WORKERS_MAX];              /* accepting, respawned */
    uint64_t respawn_at[RELAY_WORKERS_MAX];     /* 0: none pending */
    int young_deaths[RELAY_WORKERS_MAX];
    int fatal[RELAY_WORKERS_MAX];
    int stopping;
    uint64_t repairs_seen;              /* lock repairs already logged */
};


/*
 * Raise the soft descriptor limit to the hard one and size the connection
 * cap to it.  Returns 0, or -1 with err filled (exit 2).
 */
static int
relay_master_size_limits(struct relay_master *m, char *err, size_t errlen)
{
    struct relay_config *cfg = m->cfg;
    struct rlimit rl;
    long avail;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = 1024;
    }

    /*
     * A worker may own every server-id, so the cap must fit one process,
     * next to its listeners, log and one handoff socket per slot.
     */
    avail = (long)rl.rlim_cur - RELAY_MASTER_FD_RESERVE - RELAY_WORKERS_MAX;
    if (avail < 1) {
        avail = 1;
    }

    if (cfg->max_connections_explicit) {
        if (cfg->max_connections <= 0) {
            snprintf(err, errlen, "--max-connections %ld: must be > 0",
                     cfg->max_connections);
            return -1;
        }
        if (cfg->max_connections > avail) {
            snprintf(err, errlen, "--max-connections %ld: exceeds what the "
                     "file-descriptor limit allows (RLIMIT_NOFILE %lu leaves "
                     "room for %ld)", cfg->max_connections,
                     (unsigned long)rl.rlim_cur, avail);
            return -1;
        }
        return 0;
    }

    cfg->max_connections = RELAY_MASTER_DEFAULT_CONNS < avail
                           ? RELAY_MASTER_DEFAULT_CONNS : avail;

    return 0;
}


static int
relay_master_drop_privileges(const char *user)
{
    struct passwd *pw;

    pw = getpwnam(user);
    if (pw == NULL) {
        errno = ENOENT;
        return -1;
    }
    if (setgroups(0, NULL) == -1 && geteuid() == 0) {
        return -1;
    }
    if (setgid(pw->pw_gid) == -1 || initgroups(pw->pw_name, pw->pw_gid) == -1
        || setuid(pw->pw_uid) == -1)
    {
        return -1;
    }

    return 0;
}


static int
relay_master_write_pid(const char *path)
{
    char buf[32];
    int fd, n;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        return -1;
    }
    n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (write(fd, buf, (size_t)n) != n) {
        close(fd);
        return -1;
    }

    return close(fd);
}


static void
relay_master_spawn(struct relay_master *m, int slot)
{
    struct relay_worker_init init;
    struct relay_worker_shm *ws = &m->shm->workers[slot];
    pid_t pid;
    char sl[16], pidbuf[16];
    int i;

    ws->gen++;
    m->fatal[slot] = 0;
    pid = fork();
    if (pid == -1) {
        relay_log(RELAY_LOG_ALERT, "fork_failed", "err", strerror(errno),
                  NULL);
        m->respawn_at[slot] = relay_util_now_ms() + 1000;
        return;
    }

    if (pid == 0) {
        /*
         * Signals stay blocked until the worker's loop has its handlers:
         * one sent in between (a reload's SIGWINCH, a SIGUSR1) then waits
         * instead of being lost or killing the new worker.
         */
        for (i = 0; i < RELAY_WORKERS_MAX; i++) {
            if (i < m->nworkers && i != m->position[slot]) {
                close(m->listen_fd[i]);
            }
            if (i != slot) {
                close(m->chan_recv[i]);
            }
        }
        close(m->life[1]);

        memset(&init, 0, sizeof(init));
        init.slot = slot;
        init.gen = ws->gen;
        init.cfg = m->cfg;
        init.shm = m->shm;
        init.listen_fd = m->listen_fd[m->position[slot]];
        init.metrics_fd = m->metrics_fd;
        init.channel_fd = m->chan_recv[slot];
        init.channel_send = m->chan_send;
        init.master_fd = m->life[0];
        _exit(relay_worker_run(&init));
    }

    ws->pid = pid;
    ws->started_ms = relay_util_now_ms();
    m->respawn_at[slot] = 0;
    snprintf(sl, sizeof(sl), "%d", slot);
    snprintf(pidbuf, sizeof(pidbuf), "%ld", (long)pid);
    relay_log(RELAY_LOG_NOTICE, "worker_spawned", "worker", sl, "pid", pidbuf,
              NULL);
}


static void
relay_master_reap(struct relay_master *m)
{
    struct relay_worker_shm *ws;
    char sl[16], pidbuf[16], why[64];
    uint64_t now, delay;
    pid_t pid;
    int status, slot, freed;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (slot = 0; slot < RELAY_WORKERS_MAX; slot++) {
            if (m->shm->workers[slot].pid == pid) {
                break;
            }
        }
        if (slot == RELAY_WORKERS_MAX) {
            continue;
        }
        ws = &m->shm->workers[slot];
        ws->pid = 0;

        freed = relay_registry_free_worker(relay_shm_registry(m->shm), slot);
        relay_metrics_retire(m->shm, slot);

        if (WIFSIGNALED(status)) {
            snprintf(why, sizeof(why), "killed by signal %d",
                     WTERMSIG(status));
        } else {
            snprintf(why, sizeof(why), "exit status %d",
                     WEXITSTATUS(status));
        }
        snprintf(sl, sizeof(sl), "%d", slot);
        snprintf(pidbuf, sizeof(pidbuf), "%ld", (long)pid);
        relay_log(m->stopping || (WIFEXITED(status)
                                  && WEXITSTATUS(status) == 0)
                  ? RELAY_LOG_NOTICE : RELAY_LOG_ALERT,
                  "worker_exited", "worker", sl, "pid", pidbuf, "err", why,
                  NULL);
        (void)freed;

        if (m->stopping || !m->active[slot]) {
            continue;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
            m->fatal[slot] = 1;
            relay_log(RELAY_LOG_ALERT, "worker_fatal", "worker", sl, NULL);
            continue;
        }

        now = relay_util_now_ms();
        if (now - ws->started_ms < RELAY_MASTER_YOUNG_MS) {
            m->young_deaths[slot]++;
        } else {
            m->young_deaths[slot] = 0;
        }
        delay = 0;
        if (m->young_deaths[slot] > 0) {
            delay = 100u << (m->young_deaths[slot] < 7
                             ? m->young_deaths[slot] : 7);
            if (delay > RELAY_MASTER_BACKOFF_MAX_MS) {
                delay = RELAY_MASTER_BACKOFF_MAX_MS;
            }
        }
        ws->restarts++;
        m->respawn_at[slot] = now + delay + 1;
    }
}


/*
 * A process that died holding a shared lock leaves it to be repaired by
 * the next locker, which may not log under the lock; the master notices
 * the repair counters move and says so once.
 */
static void
relay_master_check_repairs(struct relay_master *m)
{
    uint64_t n;
    char buf[32];

    n = __atomic_load_n(&relay_shm_registry(m->shm)->repairs,
                        __ATOMIC_RELAXED)
        + __atomic_load_n(&relay_shm_ratelimit(m->shm)->repairs,
                          __ATOMIC_RELAXED);
    if (n == m->repairs_seen) {
        return;
    }
    snprintf(buf, sizeof(buf), "%llu repairs in all",
             (unsigned long long)n);
    relay_log(RELAY_LOG_ALERT, "shared_lock_repaired", "err", buf, NULL);
    m->repairs_seen = n;
}


static int
relay_master_alive(struct relay_master *m)
{
    int i, n = 0;

    for (i = 0; i < RELAY_WORKERS_MAX; i++) {
        if (m->shm->workers[i].pid != 0) {
            n++;
        }
    }

    return n;
}


static void
relay_master_signal_all(struct relay_master *m, int sig)
{
    int i;

    for (i = 0; i < RELAY_WORKERS_MAX; i++) {
        if (m->shm->workers[i].pid != 0) {
            kill(m->shm->workers[i].pid, sig);
        }
    }
}


/* SIGTERM to every worker, wait out the drain, then cut what is left. */
static void
relay_master_stop(struct relay_master *m, sigset_t *set)
{
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    siginfo_t info;
    uint64_t deadline;

    m->stopping = 1;
    relay_log(RELAY_LOG_NOTICE, "master_stopping", NULL);
    relay_master_signal_all(m, SIGTERM);

    deadline = relay_util_now_ms() + m->cfg->drain_ms + 2000;
    while (relay_master_alive(m) > 0) {
        if (relay_util_now_ms() >= deadline) {
            relay_log(RELAY_LOG_WARN, "drain_overrun", NULL);
            relay_master_signal_all(m, SIGKILL);
            deadline = UINT64_MAX;
        }
        (void)sigtimedwait(set, &info, &ts);
        relay_master_reap(m);
    }
}


/*
 * SIGHUP: read the configuration again; if it is valid, start a new
 * generation of workers with it and retire the old one.  Settings that
 * only a restart can change keep their old values.
 */
static void
relay_master_reload(struct relay_master *m)
{
    struct relay_config *next;
    char err[512];
    int free_slots[RELAY_WORKERS_MAX];
    int i, k, nfree = 0;

    relay_log(RELAY_LOG_NOTICE, "reloading", NULL);

    next = malloc(sizeof(*next));
    if (next == NULL) {
        relay_log(RELAY_LOG_ERR, "reload_failed", "err", "out of memory",
                  NULL);
        return;
    }
    relay_config_defaults(next);
    if (relay_config_parse_args(next, m->argc, m->argv, err, sizeof(err))
        != RELAY_CONFIG_OK)
    {
        relay_log(RELAY_LOG_ERR, "reload_failed", "err", err, NULL);
        free(next);
        return;
    }

    for (i = 0; i < RELAY_WORKERS_MAX; i++) {
        if (m->shm->workers[i].pid == 0 && !m->active[i]) {
            free_slots[nfree++] = i;
        }
    }
    if (nfree < m->nworkers) {
        relay_log(RELAY_LOG_ERR, "reload_failed", "err",
                  "too many retiring workers; try again later", NULL);
        free(next);
        return;
    }

    /* what needs a restart: sockets, slots, identity, shared sizes */
    if (strcmp(next->insecure_listen.text, m->cfg->insecure_listen.text) != 0
        || strcmp(next->metrics_listen.text, m->cfg->metrics_listen.text)
           != 0
        || next->workers != m->cfg->workers
        || next->max_servers != m->cfg->max_servers
        || strcmp(next->user, m->cfg->user) != 0
        || strcmp(next->pid_file, m->cfg->pid_file) != 0)
    {
        relay_log(RELAY_LOG_WARN, "reload_needs_restart", "err",
                  "listeners, workers, max-servers, user and pid-file "
                  "change only on restart", NULL);
    }
    next->insecure_listen = m->cfg->insecure_listen;
    next->metrics_listen = m->cfg->metrics_listen;
    next->workers = m->cfg->workers;
    next->max_servers = m->cfg->max_servers;
    memcpy(next->user, m->cfg->user, sizeof(next->user));
    memcpy(next->pid_file, m->cfg->pid_file, sizeof(next->pid_file));
    if (!next->max_connections_explicit) {
        next->max_connections = m->cfg->max_connections;
    }

    if (strcmp(next->log_file, m->cfg->log_file) != 0
        || next->log_level != m->cfg->log_level)
    {
        if (relay_log_open(next->log_file, next->log_level) == -1) {
            relay_log(RELAY_LOG_ERR, "reload_failed", "err", strerror(errno),
                      "path", next->log_file, NULL);
            free(next);
            return;
        }
    }

    /* the old generation's workers keep their own copy of the old cfg */
    *m->cfg = *next;
    free(next);
    m->shm->max_connections = m->cfg->max_connections;

    for (i = 0; i < RELAY_WORKERS_MAX; i++) {
        if (m->active[i]) {
            m->active[i] = 0;
            m->respawn_at[i] = 0;
            if (m->shm->workers[i].pid != 0) {
                kill(m->shm->workers[i].pid, SIGWINCH);
            }
        }
    }
    for (k = 0; k < m->nworkers; k++) {
        i = free_slots[k];
        m->active[i] = 1;
        m->position[i] = k;
        m->young_deaths[i] = 0;
        relay_master_spawn(m, i);
    }

    relay_log(RELAY_LOG_NOTICE, "reloaded", NULL);
}


static int
relay_master_bind(struct relay_master *m)
{
    int i;

    for (i = 0; i < m->nworkers; i++) {
        m->listen_fd[i] = relay_net_listen(&m->cfg->insecure_listen, 1,
                                           RELAY_MASTER_BACKLOG);
        if (m->listen_fd[i] == -1) {
            relay_log(RELAY_LOG_ALERT, "listen_failed", "err",
                      strerror(errno), "path", m->cfg->insecure_listen.text,
                      NULL);
            return -1;
        }
    }

    m->metrics_fd = -1;
    if (m->cfg->metrics_listen.set) {
        m->metrics_fd = relay_net_listen(&m->cfg->metrics_listen, 0, 128);
        if (m->metrics_fd == -1) {
            relay_log(RELAY_LOG_ALERT, "listen_failed", "err",
                      strerror(errno), "path", m->cfg->metrics_listen.text,
                      NULL);
            return -1;
        }
    }

    return 0;
}


int
relay_master_run(struct relay_config *cfg, int argc, char **argv)
{
    struct relay_master m;
    struct timespec ts;
    siginfo_t info;
    sigset_t set, workers_only;
    uint64_t now, next;
    char err[512];
    long n;
    int i, sig;

    memset(&m, 0, sizeof(m));
    m.cfg = cfg;
    m.argc = argc;
    m.argv = argv;

    n = cfg->workers;
    if (n <= 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
    }
    if (n < 1) {
        n = 1;
    }
    if (n > RELAY_WORKERS_MAX) {
        n = RELAY_WORKERS_MAX;
    }
    m.nworkers = (int)n;

    if (relay_master_size_limits(&m, err, sizeof(err)) == -1) {
        fprintf(stderr, "pyrycode-relay: %s\n", err);
        return 2;
    }
    if (cfg->production && geteuid() == 0 && cfg->user[0] == '\0') {
        fprintf(stderr, "pyrycode-relay: PYRYCODE_RELAY_PRODUCTION=1: "
                "refusing to run as root (set --user)\n");
        return 2;
    }
    if (cfg->check_only) {
        printf("pyrycode-relay: configuration ok\n");
        return 0;
    }

    if (relay_log_open(cfg->log_file, cfg->log_level) == -1) {
        fprintf(stderr, "pyrycode-relay: --log-file %s: %s\n", cfg->log_file,
                strerror(errno));
        return 1;
    }

    if (relay_master_bind(&m) == -1) {
        return 1;
    }

    m.shm = relay_shm_create((uint32_t)m.nworkers, (uint32_t)cfg->max_servers,
                             cfg->max_connections);
    if (m.shm == NULL) {
        relay_log(RELAY_LOG_ALERT, "shm_failed", "err", strerror(errno),
                  NULL);
        return 1;
    }
    for (i = 0; i < RELAY_WORKERS_MAX; i++) {
        int sv[2];

        if (relay_channel_pair(sv) == -1) {
            relay_log(RELAY_LOG_ALERT, "socketpair_failed", "err",
                      strerror(errno), NULL);
            return 1;
        }
        m.chan_recv[i] = sv[0];
        m.chan_send[i] = sv[1];
    }
    if (pipe2(m.life, O_CLOEXEC) == -1) {
        relay_log(RELAY_LOG_ALERT, "pipe_failed", "err", strerror(errno),
                  NULL);
        return 1;
    }

    if (cfg->pid_file[0] != '\0' && relay_master_write_pid(cfg->pid_file)
        == -1)
    {
        relay_log(RELAY_LOG_ALERT, "pid_file_failed", "err", strerror(errno),
                  "path", cfg->pid_file, NULL);
        return 1;
    }
    if (cfg->user[0] != '\0'
        && relay_master_drop_privileges(cfg->user) == -1)
    {
        relay_log(RELAY_LOG_ALERT, "drop_privileges_failed", "err",
                  strerror(errno), NULL);
        return 1;
    }
    if (cfg->production && geteuid() == 0) {
        relay_log(RELAY_LOG_ALERT, "still_root", "err",
                  "PYRYCODE_RELAY_PRODUCTION=1 refuses to run as root", NULL);
        return 2;
    }

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGQUIT);
    sigprocmask(SIG_BLOCK, &set, NULL);

    /* only for workers; blocked so that a new worker inherits them held */
    sigemptyset(&workers_only);
    sigaddset(&workers_only, SIGWINCH);
    sigaddset(&workers_only, SIGUSR2);
    sigprocmask(SIG_BLOCK, &workers_only, NULL);

    relay_log(RELAY_LOG_NOTICE, "master_started", NULL);
    for (i = 0; i < m.nworkers; i++) {
        m.active[i] = 1;
        m.position[i] = i;
        relay_master_spawn(&m, i);
    }

    for (;;) {
        now = relay_util_now_ms();
        next = now + 1000;
        for (i = 0; i < RELAY_WORKERS_MAX; i++) {
            if (m.respawn_at[i] != 0 && m.respawn_at[i] <= now) {
                relay_master_spawn(&m, i);
            }
            if (m.respawn_at[i] != 0 && m.respawn_at[i] < next) {
                next = m.respawn_at[i];
            }
        }
        next = next > now ? next - now : 1;
        ts.tv_sec = (time_t)(next / 1000);
        ts.tv_nsec = (long)(next % 1000) * 1000000;

        sig = sigtimedwait(&set, &info, &ts);
        relay_master_check_repairs(&m);
        if (sig == -1) {
            continue;
        }

        switch (sig) {
        case SIGCHLD:
            relay_master_reap(&m);
            for (i = 0; i < RELAY_WORKERS_MAX; i++) {
                if (m.active[i] && !m.fatal[i]) {
                    break;
                }
            }
            if (i == RELAY_WORKERS_MAX) {
                relay_log(RELAY_LOG_ALERT, "all_workers_fatal", NULL);
                relay_master_stop(&m, &set);
                return 1;
            }
            break;
        case SIGTERM:
        case SIGINT:
            relay_master_stop(&m, &set);
            if (cfg->pid_file[0] != '\0') {
                unlink(cfg->pid_file);
            }
            relay_log(RELAY_LOG_NOTICE, "master_exiting", NULL);
            return 0;
        case SIGQUIT:
            relay_master_signal_all(&m, SIGKILL);
            if (cfg->pid_file[0] != '\0') {
                unlink(cfg->pid_file);
            }
            return 0;
        case SIGUSR1:
            if (relay_log_reopen() == -1) {
                relay_log(RELAY_LOG_ERR, "log_reopen_failed", "err",
                          strerror(errno), NULL);
            }
            relay_master_signal_all(&m, SIGUSR1);
            break;
        case SIGHUP:
            relay_master_reload(&m);
            break;
        default:
            break;
        }
    }
}
