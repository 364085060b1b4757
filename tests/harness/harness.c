/* harness.c - see harness.h. Test-only code: it may block, and it fails the running test with
 * cr_assert_fail() instead of returning errors. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* pipe2, close_range */
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "broker.h"
#include "clock.h"
#include "mem.h"
#include "rds.h"

extern char **environ;

#define HN_STOP_TIMEOUT_MS 20000
#define HN_READY_TIMEOUT_MS 15000
#define HN_START_TRIES 3

/* ==== small utilities ================================================================== */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A growing NUL-terminated byte buffer (HTTP bodies, command output). */
struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Read a whole file into a NUL-terminated malloc'd buffer; NULL when unreadable. */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

const char *hn_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        cr_assert_fail("environment variable %s is not set: run the integration tests "
                       "through tests/harness/run-integ.sh (make integ)",
                       name);
    return v;
}

int hn_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = 0;
    if (fd < 0)
        cr_assert_fail("socket: %s", strerror(errno));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    int e = errno;
    close(fd);
    if (!port)
        cr_assert_fail("cannot bind 127.0.0.1:0: %s", strerror(e));
    return port;
}

/* ==== processes ======================================================================== */

/* Every live struct hn_proc, so that a test that fails half-way (Criterion leaves the test
 * function by longjmp or exit) does not add LeakSanitizer noise about them to its report. */
#define HN_MAX_PROCS 256
static struct hn_proc *procs[HN_MAX_PROCS];

static void procs_add(struct hn_proc *p)
{
    for (size_t i = 0; i < HN_MAX_PROCS; i++) {
        if (!procs[i]) {
            procs[i] = p;
            return;
        }
    }
}

static void procs_del(struct hn_proc *p)
{
    for (size_t i = 0; i < HN_MAX_PROCS; i++)
        if (procs[i] == p)
            procs[i] = NULL;
}

/* Exit status as the shell reports it: the code, or 128 + signal. */
static int decode_status(int ws)
{
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws))
        return 128 + WTERMSIG(ws);
    return 255;
}

/* Field 22 of /proc/PID/stat, the start time, so that lib.sh's stop_pids can tell our
 * process from a later one that reuses the PID. 0 when unreadable. */
static unsigned long long proc_starttime(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long st = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    for (int field = 2; field < 22 && p; field++) {
        p = strchr(p + 1, ' ');
    }
    if (p)
        st = strtoull(p + 1, NULL, 10);
    return st;
}

/* Resolve a bare program name: $CONVEYOR_TEST_BIN/name, then PATH. Returns malloc'd path. */
static char *resolve_prog(const char *prog)
{
    if (strchr(prog, '/'))
        return xstrdup(prog);
    const char *bin = getenv("CONVEYOR_TEST_BIN");
    if (bin && *bin) {
        char *p = xasprintf("%s/%s", bin, prog);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
    }
    const char *path = getenv("PATH");
    if (path) {
        char *dup = xstrdup(path), *save = NULL;
        for (char *d = strtok_r(dup, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            char *p = xasprintf("%s/%s", d, prog);
            if (access(p, X_OK) == 0) {
                free(dup);
                return p;
            }
            free(p);
        }
        free(dup);
    }
    return xstrdup(prog);   /* execve fails and says so */
}

static size_t name_len(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* environ with the extra entries applied in order (later ones win; a bare NAME removes).
 * The strings are borrowed; free only the array. */
static char **build_env(const char *const extra[])
{
    size_t n = 0, cap;
    while (environ[n])
        n++;
    size_t nextra = 0;
    while (extra && extra[nextra])
        nextra++;
    cap = n + nextra + 1;
    char **env = xcalloc(cap, sizeof(*env));
    memcpy(env, environ, n * sizeof(*env));
    /* execve() takes char *const[]: the strings are only read, so casting const away is safe. */
    for (size_t i = 0; i < nextra; i++) {
        const char *kv = extra[i];
        size_t nl = name_len(kv);
        size_t j;
        for (j = 0; j < n; j++)
            if (name_len(env[j]) == nl && strncmp(env[j], kv, nl) == 0)
                break;
        if (!strchr(kv, '=')) {
            if (j < n) {
                memmove(&env[j], &env[j + 1], (n - j - 1) * sizeof(*env));
                n--;
            }
            continue;
        }
        env[j] = (char *)kv;
        if (j == n)
            n++;
    }
    env[n] = NULL;
    return env;
}

/* Append the decimal digits of v to buf at *o (async-signal-safe, for the child). */
static void put_uint(char *buf, size_t cap, size_t *o, unsigned long v)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k > 0 && *o + 1 < cap)
        buf[(*o)++] = tmp[--k];
    buf[*o] = '\0';
}

static void put_str(char *buf, size_t cap, size_t *o, const char *s)
{
    while (*s && *o + 1 < cap)
        buf[(*o)++] = *s++;
    buf[*o] = '\0';
}

static void write_pidfile(const struct hn_proc *p)
{
    FILE *f = fopen(p->pid_path, "w");
    if (!f)
        return;   /* only a safety net for run-integ.sh: no reason to fail the test */
    fprintf(f, "%d\n%llu\n", (int)p->pid, proc_starttime(p->pid));
    fclose(f);
}

struct hn_proc *hn_spawn(const char *name, const char *const argv[],
                         const char *const extra_env[])
{
    const char *dir = hn_env("CONVEYOR_TEST_DIR");
    struct hn_proc *p = xcalloc(1, sizeof(*p));
    char log_prefix[448], log_child[480];
    int pfd[2], err = 0;
    pid_t parent = getpid();

    cr_assert(argv && argv[0], "hn_spawn(%s): empty argv", name);
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(log_prefix, sizeof(log_prefix), "%s/%s-", dir, name);
    char *pids_dir = xasprintf("%s/pids", dir);
    mkdir(pids_dir, 0755);
    free(pids_dir);
    char *prog = resolve_prog(argv[0]);
    char **env = build_env(extra_env);
    if (pipe2(pfd, O_CLOEXEC) != 0)
        cr_assert_fail("pipe2: %s", strerror(errno));
    fflush(NULL);

    pid_t pid = fork();
    if (pid < 0)
        cr_assert_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Child: async-signal-safe calls only until execve. */
        size_t o = 0;
        sigset_t none;
        close(pfd[0]);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* die with the test, even when it crashes */
        if (getppid() != parent)
            _exit(127);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        put_str(log_child, sizeof(log_child), &o, log_prefix);
        put_uint(log_child, sizeof(log_child), &o, (unsigned long)getpid());
        put_str(log_child, sizeof(log_child), &o, ".log");
        int lfd = open(log_child, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nfd = open("/dev/null", O_RDONLY);
        if (lfd < 0 || nfd < 0 || dup2(nfd, 0) < 0 || dup2(lfd, 1) < 0 || dup2(lfd, 2) < 0) {
            err = errno;
            (void)!write(pfd[1], &err, sizeof(err));
            _exit(127);
        }
        /* Close everything inherited (curl and libpq sockets, Criterion's pipes) except
         * the CLOEXEC status pipe, which execve closes. */
        if (pfd[1] > 3)
            close_range(3, (unsigned)pfd[1] - 1, 0);
        close_range((unsigned)pfd[1] + 1, ~0U, 0);
        execve(prog, (char *const *)argv, env);
        err = errno;
        (void)!write(pfd[1], &err, sizeof(err));
        _exit(127);
    }

    close(pfd[1]);
    ssize_t n;
    do {
        n = read(pfd[0], &err, sizeof(err));
    } while (n < 0 && errno == EINTR);
    close(pfd[0]);
    free(env);
    p->pid = pid;
    snprintf(p->log_path, sizeof(p->log_path), "%s%d.log", log_prefix, (int)pid);
    snprintf(p->pid_path, sizeof(p->pid_path), "%s/pids/%s-%d.pid", dir, name, (int)pid);
    if (n > 0) {
        int ws;
        waitpid(pid, &ws, 0);
        char msg[512];
        snprintf(msg, sizeof(msg), "hn_spawn(%s): cannot run %s: %s", name, prog, strerror(err));
        free(prog);
        free(p);
        cr_assert_fail("%s", msg);
    }
    free(prog);
    write_pidfile(p);
    procs_add(p);
    return p;
}

static void mark_reaped(struct hn_proc *p, int ws)
{
    p->reaped = 1;
    p->status = decode_status(ws);
    unlink(p->pid_path);
}

int hn_alive(struct hn_proc *p)
{
    int ws;
    if (p->reaped)
        return 0;
    pid_t r = waitpid(p->pid, &ws, WNOHANG);
    if (r == p->pid) {
        mark_reaped(p, ws);
        return 0;
    }
    if (r < 0 && errno == ECHILD) {   /* not ours any more: treat as gone */
        p->reaped = 1;
        p->status = 255;
        unlink(p->pid_path);
        return 0;
    }
    return 1;
}

int hn_wait_exit(struct hn_proc *p, int timeout_ms, int *status)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (!hn_alive(p)) {
            if (status)
                *status = p->status;
            return 1;
        }
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

void hn_kill9(struct hn_proc *p)
{
    if (!p || p->reaped)
        return;
    kill(-p->pid, SIGKILL);   /* its process group: hn_spawn made it the leader */
    kill(p->pid, SIGKILL);
    int ws;
    while (waitpid(p->pid, &ws, 0) < 0 && errno == EINTR) {
    }
    mark_reaped(p, ws);
    p->killed = 1;
}

int hn_stop(struct hn_proc *p, int sig, int timeout_ms)
{
    if (!hn_alive(p))
        return p->status;
    kill(p->pid, sig);
    if (hn_wait_exit(p, timeout_ms, NULL))
        return p->status;
    cr_log_error("%s (pid %d) still running %d ms after signal %d: SIGKILL", p->name,
                 (int)p->pid, timeout_ms, sig);
    hn_kill9(p);
    p->killed = 0;   /* it was meant to stop by itself: the caller sees 137 */
    return p->status;
}

void hn_proc_free(struct hn_proc *p)
{
    if (!p)
        return;
    if (!p->reaped)
        hn_kill9(p);
    procs_del(p);
    free(p);
}

int hn_log_has(const struct hn_proc *p, const char *needle)
{
    char *text = read_file(p->log_path, NULL);
    int found = text && strstr(text, needle) != NULL;
    free(text);
    return found;
}

struct log_wait {
    const struct hn_proc *p;
    const char *needle;
};

static int log_found(void *arg)
{
    const struct log_wait *w = arg;
    return hn_log_has(w->p, w->needle);
}

int hn_wait_log(const struct hn_proc *p, const char *needle, int timeout_ms)
{
    struct log_wait w = { p, needle };
    return hn_wait_until(log_found, &w, timeout_ms, 50);
}

int hn_log_has_sanitizer_report(const struct hn_proc *p)
{
    static const char *const marks[] = { "ERROR: AddressSanitizer", "runtime error:",
                                         "ERROR: LeakSanitizer" };
    char *text = read_file(p->log_path, NULL);
    int found = 0;
    for (size_t i = 0; text && i < sizeof(marks) / sizeof(marks[0]); i++)
        if (strstr(text, marks[i]))
            found = 1;
    free(text);
    return found;
}

void hn_log_tail(const struct hn_proc *p, int lines)
{
    size_t len = 0;
    char *text = read_file(p->log_path, &len);
    if (!text) {
        fprintf(stderr, "----- %s (pid %d): no log at %s -----\n", p->name, (int)p->pid,
                p->log_path);
        return;
    }
    size_t start = len;
    int seen = 0;
    while (start > 0) {
        if (text[start - 1] == '\n' && start != len && ++seen >= lines)
            break;
        start--;
    }
    fprintf(stderr, "----- last %d lines of %s (%s, pid %d) -----\n%s%s----- end -----\n",
            lines, p->log_path, p->name, (int)p->pid, text + start,
            len && text[len - 1] != '\n' ? "\n" : "");
    free(text);
}

/* ==== commands run to completion ========================================================= */

/* fork and execve argv with fds 0, 1, 2 from fd[0..2] (the child closes every other fd);
 * pty_slave >= 0: the child makes it its controlling terminal first. */
static pid_t run_child(const char *const argv[], const char *const extra_env[], const int fd[3],
                       int pty_slave)
{
    char *prog = resolve_prog(argv[0]);
    char **env = build_env(extra_env);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        cr_assert_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        sigset_t none;
        if (pty_slave >= 0) {
            setsid();
            ioctl(pty_slave, TIOCSCTTY, 0);
        } else {
            setpgid(0, 0);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        for (int i = 0; i < 3; i++)
            if (dup2(fd[i], i) < 0)
                _exit(127);
        close_range(3, ~0U, 0);
        execve(prog, (char *const *)argv, env);
        _exit(127);
    }
    free(prog);
    free(env);
    return pid;
}

/* Wait for pid; kill its group and fail the test after deadline. */
static int run_reap(pid_t pid, long long deadline, const char *name)
{
    int ws;
    for (;;) {
        pid_t r = waitpid(pid, &ws, WNOHANG);
        if (r == pid)
            return decode_status(ws);
        if (r < 0 && errno != EINTR)
            cr_assert_fail("waitpid(%s): %s", name, strerror(errno));
        if (now_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            cr_assert_fail("%s: still running at its deadline: killed", name);
        }
        sleep_ms(5);
    }
}

static void run_check(const struct hn_run *r, const char *name)
{
    static const char *const marks[] = { "ERROR: AddressSanitizer", "runtime error:",
                                         "ERROR: LeakSanitizer" };
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        cr_assert(!strstr(r->err, marks[i]) && !strstr(r->out, marks[i]),
                  "%s: sanitizer report:\n%s%s", name, r->out, r->err);
}

struct hn_run *hn_run(const char *const argv[], const char *const extra_env[], const char *in,
                      size_t in_len, int timeout_ms)
{
    int pin[2], pout[2], perr[2];
    struct buf out = { 0 }, err = { 0 };
    long long deadline = now_ms() + timeout_ms;
    cr_assert(argv && argv[0], "hn_run: empty argv");
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC))
        cr_assert_fail("pipe2: %s", strerror(errno));
    int fd[3] = { pin[0], pout[1], perr[1] };
    if (!in) {
        close(pin[0]);
        close(pin[1]);
        pin[1] = -1;
        fd[0] = pin[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    pid_t pid = run_child(argv, extra_env, fd, -1);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    if (pin[1] >= 0)
        fcntl(pin[1], F_SETFL, O_NONBLOCK);
    size_t in_off = 0;
    if (pin[1] >= 0 && in_len == 0) {
        close(pin[1]);
        pin[1] = -1;
    }
    int open_fds = 2;
    while (open_fds > 0) {
        struct pollfd p[3] = { { pout[0], POLLIN, 0 }, { perr[0], POLLIN, 0 },
                               { pin[1], POLLOUT, 0 } };
        int np = pin[1] >= 0 ? 3 : 2;
        long long left = deadline - now_ms();
        if (left <= 0)
            break;
        if (poll(p, (nfds_t)np, (int)(left < 1000 ? left : 1000)) < 0 && errno != EINTR)
            cr_assert_fail("poll: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[65536];
            ssize_t n = read(p[i].fd, buf, sizeof(buf));
            if (n > 0) {
                buf_add(i == 0 ? &out : &err, buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(p[i].fd);
                if (i == 0)
                    pout[0] = -1;
                else
                    perr[0] = -1;
                open_fds--;
            }
        }
        if (np == 3 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(pin[1], in + in_off, in_len - in_off);
            if (n > 0)
                in_off += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || in_off == in_len) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
    }
    for (int f = 0; f < 3; f++) {
        int x = f == 0 ? pout[0] : f == 1 ? perr[0] : pin[1];
        if (x >= 0)
            close(x);
    }
    struct hn_run *r = xcalloc(1, sizeof(*r));
    r->status = run_reap(pid, deadline, argv[0]);
    buf_add(&out, "", 0);
    buf_add(&err, "", 0);
    r->out = out.p;
    r->out_len = out.len;
    r->err = err.p;
    run_check(r, argv[0]);
    return r;
}

struct hn_run *hn_run_pty(const char *const argv[], const char *const extra_env[],
                          const char *in, int timeout_ms)
{
    int master, slave;
    struct buf out = { 0 };
    long long deadline = now_ms() + timeout_ms;
    struct winsize ws = { 40, 120, 0, 0 };
    cr_assert(argv && argv[0], "hn_run_pty: empty argv");
    if (openpty(&master, &slave, NULL, NULL, &ws) != 0)
        cr_assert_fail("openpty: %s", strerror(errno));
    fcntl(master, F_SETFD, FD_CLOEXEC);
    int fd[3] = { slave, slave, slave };
    pid_t pid = run_child(argv, extra_env, fd, slave);
    close(slave);
    /* typed ahead: the terminal keeps it until the program reads */
    if (in && write(master, in, strlen(in)) != (ssize_t)strlen(in))
        cr_assert_fail("write to the pty: %s", strerror(errno));
    for (;;) {
        struct pollfd p = { master, POLLIN, 0 };
        long long left = deadline - now_ms();
        if (left <= 0)
            break;
        if (poll(&p, 1, (int)(left < 1000 ? left : 1000)) < 0 && errno != EINTR)
            cr_assert_fail("poll: %s", strerror(errno));
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        char buf[65536];
        ssize_t n = read(master, buf, sizeof(buf));
        if (n > 0)
            buf_add(&out, buf, (size_t)n);
        else if (n == 0 || errno != EINTR)
            break;        /* EIO: every holder of the slave has closed it */
    }
    close(master);
    struct hn_run *r = xcalloc(1, sizeof(*r));
    r->status = run_reap(pid, deadline, argv[0]);
    buf_add(&out, "", 0);
    r->out = out.p;
    r->out_len = out.len;
    r->err = xstrdup("");
    run_check(r, argv[0]);
    return r;
}

void hn_run_free(struct hn_run *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    free(r);
}

/* ==== HTTP ============================================================================= */

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    buf_add(arg, data, size * nmemb);
    return size * nmemb;
}

static void curl_once(void)
{
    static int done;
    if (!done) {
        curl_global_init(CURL_GLOBAL_ALL);
        done = 1;
    }
}

struct hn_resp *hn_http(const char *method, const char *url, const char *const headers[],
                        const char *body, size_t len, int timeout_ms)
{
    struct hn_resp *r = xcalloc(1, sizeof(*r));
    struct buf b = { 0 }, h = { 0 };
    struct curl_slist *hl = NULL;
    int has_ctype = 0;
    long code = 0;

    curl_once();
    CURL *c = curl_easy_init();
    cr_assert(c != NULL, "curl_easy_init failed");
    for (size_t i = 0; headers && headers[i]; i++) {
        if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
            has_ctype = 1;
        hl = curl_slist_append(hl, headers[i]);
    }
    if (body && !has_ctype)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");   /* no 100-continue round trip */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 5000));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    else if (!r->err[0])
        snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(cc));
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    buf_add(&b, "", 0);
    buf_add(&h, "", 0);
    r->status = (int)code;
    r->body = b.p;
    r->len = b.len;
    r->headers = h.p;
    return r;
}

void hn_resp_free(struct hn_resp *r)
{
    if (!r)
        return;
    free(r->body);
    free(r->headers);
    free(r);
}

char *hn_resp_header(const struct hn_resp *r, const char *name)
{
    size_t nl = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = end;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            return xstrndup(v, (size_t)(e - v));
        }
        line = *end ? end + 2 : end;
    }
    return NULL;
}

cJSON *hn_json(const struct hn_resp *r)
{
    return cJSON_ParseWithLength(r->body, r->len);
}

int hn_wait_http_ok(const char *url, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        struct hn_resp *r = hn_http("GET", url, NULL, NULL, 0, 1000);
        int ok = r->status == 200;
        hn_resp_free(r);
        if (ok)
            return 1;
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(50);
    }
}

const char *hn_test_key(void)
{
    return "test-key-all";
}

const char *hn_test_key_scoped(void)
{
    return "test-key-noop";
}

void hn_sha256_hex(const char *s, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    cr_assert(EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL) == 1 && n == 32,
              "EVP_Digest(sha256) failed");
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ==== waiting ========================================================================== */

int hn_wait_until(int (*pred)(void *), void *arg, int timeout_ms, int poll_ms)
{
    long long deadline = now_ms() + timeout_ms;
    if (poll_ms <= 0)
        poll_ms = 20;
    for (;;) {
        if (pred(arg))
            return 1;
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(poll_ms);
    }
}

/* ==== PostgreSQL ======================================================================= */

static PGconn *pg_open(void)
{
    PGconn *c = PQconnectdb(hn_env("CONVEYOR_PG_DSN"));
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQfinish(c);
        cr_assert_fail("cannot connect to PostgreSQL (CONVEYOR_PG_DSN): %s", msg);
    }
    return c;
}

char *hn_psql_scalar(const char *sql)
{
    PGconn *c = pg_open();
    PGresult *res = PQexec(c, sql);
    char *out = NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQclear(res);
        PQfinish(c);
        cr_assert_fail("SQL failed: %s\n  %s", sql, msg);
    }
    if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
        out = xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
    return out;
}

long long hn_psql_int(const char *sql)
{
    char *v = hn_psql_scalar(sql), *end = NULL;
    cr_assert(v != NULL, "SQL gave no value: %s", sql);
    errno = 0;
    long long n = strtoll(v, &end, 10);
    int ok = errno == 0 && end != v && *end == '\0';
    char copy[64];
    snprintf(copy, sizeof(copy), "%s", v);
    free(v);
    cr_assert(ok, "SQL gave '%s', not a whole number: %s", copy, sql);
    return n;
}

void hn_psql_exec(const char *sql)
{
    PGconn *c = pg_open();
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQclear(res);
        PQfinish(c);
        cr_assert_fail("SQL failed: %s\n  %s", sql, msg);
    }
    PQclear(res);
    PQfinish(c);
}

const char *hn_sql_id(const char *sql_fmt, const char *id)
{
    static char sql[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(sql, sizeof(sql), sql_fmt, id);
#pragma GCC diagnostic pop
    return sql;
}

struct txn_wait {
    const char *txn;
    const char *status;
};

static int txn_is(void *arg)
{
    struct txn_wait *w = arg;
    char *s = hn_psql_scalar(
        hn_sql_id("SELECT status FROM transactions WHERE transaction_id='%s'", w->txn));
    int ok = s && strcmp(s, w->status) == 0;
    free(s);
    return ok;
}

void hn_wait_txn(const char *txn, const char *status, int timeout_ms)
{
    struct txn_wait w = { txn, status };
    cr_assert(hn_wait_until(txn_is, &w, timeout_ms, 20), "transaction %s never reached %s",
              txn, status);
}

static void on_published(void *arg, enum cv_rc rc, const char *const *ids, const int *dup,
                         size_t n)
{
    (void)ids;
    (void)dup;
    (void)n;
    *(enum cv_rc *)arg = rc;
}

void hn_publish_activation(struct broker *b, const char *id, const char *payload_txn,
                           long long user, long long offer, int max_attempts, char out[37])
{
    struct job *j = job_new("activation");
    char payload[200];
    if (id)
        snprintf(j->id, sizeof(j->id), "%s", id);
    snprintf(payload, sizeof(payload),
             "{\"transaction_id\":\"%s\",\"user_id\":%lld,\"offer_id\":%lld}",
             payload_txn ? payload_txn : j->id, user, offer);
    job_set_payload(j, payload, strlen(payload));
    j->max_attempts = max_attempts;
    j->created_ms = clock_wall_ms();
    job_traceparent_new(j->traceparent);
    enum cv_rc rc = CV_ERR_INTERNAL;
    broker_publish(b, &j, 1, 60, on_published, &rc);
    cr_assert_eq(rc, CV_OK, "publish: %s", cv_rc_str(rc));
    snprintf(out, UUID_STR_LEN, "%s", j->id);
    job_free(j);
}

void hn_pg_outage(int on)
{
    const char *keys[] = { "dbname", "dbname", NULL };
    const char *vals[] = { hn_env("CONVEYOR_PG_DSN"), "postgres", NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    cr_assert(PQstatus(c) == CONNECTION_OK, "cannot reach the postgres database: %s",
              PQerrorMessage(c));
    const char *sql = on ? "ALTER DATABASE conveyor ALLOW_CONNECTIONS false;"
                           "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = 'conveyor' AND pid <> pg_backend_pid()"
                         : "ALTER DATABASE conveyor ALLOW_CONNECTIONS true";
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "outage %d: %s", on, msg);
}

/* ==== clean slate ====================================================================== */

void hn_flush_redis(void)
{
    struct rds *r = rds_connect(hn_env("CONVEYOR_REDIS_URL"), 2000);
    cr_assert(r != NULL, "cannot connect to Redis at %s", getenv("CONVEYOR_REDIS_URL"));
    struct rds_reply *rep = rds_cmdf(r, "FLUSHALL");
    int ok = rep && rds_reply_type(rep) == RDS_STATUS;
    rds_reply_free(rep);
    rds_free(r);
    cr_assert(ok, "FLUSHALL failed");
}

void hn_reset_db(void)
{
    hn_pg_outage(0);   /* a test that failed mid-outage must not break the next one */
    hn_psql_exec("TRUNCATE transactions, user_offers RESTART IDENTITY CASCADE;"
                 "UPDATE accounts SET balance = 1000");
}

/* ==== Redis outages ==================================================================== */

static pid_t redis_pid(void)
{
    char *path = xasprintf("%s/redis.pid", hn_env("CONVEYOR_TEST_REDIS_DIR"));
    char *text = read_file(path, NULL);
    pid_t pid = text ? (pid_t)atoi(text) : 0;
    free(text);
    free(path);
    return pid;
}

/* 1 while pid exists and is not a zombie (redis is not our child: we cannot reap it). */
static int pid_running(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z';
}

void hn_redis_kill(int sig)
{
    pid_t pid = redis_pid();
    cr_assert(pid > 0 && pid_running(pid), "the test redis-server is not running");
    kill(pid, sig);
    long long deadline = now_ms() + 15000;
    while (pid_running(pid)) {
        cr_assert(now_ms() < deadline, "redis-server (pid %d) did not exit after signal %d",
                  (int)pid, sig);
        sleep_ms(10);
    }
}

void hn_redis_start(void)
{
    const char *lib = hn_env("CONVEYOR_TEST_LIB");
    const char *dir = hn_env("CONVEYOR_TEST_REDIS_DIR");
    const char *port = hn_env("CONVEYOR_TEST_REDIS_PORT");
    const char *const argv[] = { "bash", lib, "start_redis", dir, port, NULL };
    struct hn_proc *p = hn_spawn("redis-start", argv, NULL);
    int status = -1;
    int done = hn_wait_exit(p, 20000, &status);
    if (!done || status != 0) {
        hn_log_tail(p, 30);
        hn_proc_free(p);
        cr_assert_fail("restarting redis-server on port %s failed", port);
    }
    hn_proc_free(p);
}

/* ==== the Conveyor stack =============================================================== */

/* base entries, then the caller's extra entries: a NULL-terminated array (strings borrowed). */
static const char **env_join(const char *const base[], const char *const extra[])
{
    size_t nb = 0, ne = 0;
    while (base && base[nb])
        nb++;
    while (extra && extra[ne])
        ne++;
    const char **out = xcalloc(nb + ne + 1, sizeof(*out));
    if (nb)   /* base may be NULL (no pipeline): memcpy must not see a NULL source */
        memcpy(out, base, nb * sizeof(*out));
    if (ne)
        memcpy(out + nb, extra, ne * sizeof(*out));
    return out;
}

char **hn_pipeline_env(int sim_port, int api_port)
{
    static const char *const ups[][2] = {
        { "MIRAKL", "mirakl" }, { "TIPSA", "tipsa" },   { "SEUR", "seur" },
        { "CORREOS_EXPRESS", "cex" }, { "ONTIME", "ontime" }, { "MELI", "meli" },
    };
    char *path = xasprintf("%s/../deploy/demo.env", hn_env("CONVEYOR_MIGRATIONS"));
    char *text = read_file(path, NULL);
    if (!text) {
        char msg[600];
        snprintf(msg, sizeof(msg), "cannot read %s", path);
        free(path);
        cr_assert_fail("%s", msg);
    }
    free(path);
    size_t n = 0, cap = 64;
    char **env = xcalloc(cap, sizeof(*env));
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (!len || line[0] == '#' || !strchr(line, '='))
            continue;
        if (n + 1 >= cap - 8) {
            cap *= 2;
            env = xrealloc(env, cap * sizeof(*env));
        }
        env[n++] = xstrdup(line);
    }
    free(text);
    for (size_t i = 0; sim_port > 0 && i < sizeof(ups) / sizeof(ups[0]); i++)
        env[n++] = xasprintf("CONVEYOR_UPSTREAMS_%s_URL=http://127.0.0.1:%d/%s", ups[i][0],
                             sim_port, ups[i][1]);
    if (api_port > 0)
        env[n++] = xasprintf("CONVEYOR_SIM_WEBHOOK_URL=http://127.0.0.1:%d", api_port);
    env[n] = NULL;
    return env;
}

void hn_env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

static void fail_start(struct hn_proc *p, const char *what)
{
    hn_log_tail(p, 40);
    char msg[sizeof(p->name) + sizeof(p->log_path) + 128];
    snprintf(msg, sizeof(msg), "%s did not come up: %s (log %s)", p->name, what, p->log_path);
    hn_proc_free(p);
    cr_assert_fail("%s", msg);
}

/* Poll until GET url is 200 or p exits. 1 = ready, 0 = exited (caller may retry); a process
 * that runs but never answers fails the test. */
static int wait_ready(struct hn_proc *p, const char *url)
{
    long long deadline = now_ms() + HN_READY_TIMEOUT_MS;
    for (;;) {
        struct hn_resp *r = hn_http("GET", url, NULL, NULL, 0, 1000);
        int ok = r->status == 200;
        hn_resp_free(r);
        if (ok)
            return 1;
        if (!hn_alive(p))
            return 0;
        if (now_ms() >= deadline)
            fail_start(p, "GET /health gave no 200 in time");
        sleep_ms(20);
    }
}

/* The port conveyor-sim wrote to port_file (it binds port 0, so there is no port race), or 0
 * when the file is not there yet. */
static int read_port_file(const char *path)
{
    char *text = read_file(path, NULL);
    int port = text ? atoi(text) : 0;
    free(text);
    return port > 0 && port < 65536 ? port : 0;
}

static void start_sim(struct hn_stack *st, int api_port)
{
    const char *dir = hn_env("CONVEYOR_TEST_DIR");
    char **pipe = st->opts.pipeline ? hn_pipeline_env(0, api_port) : NULL;
    const char **env = env_join((const char *const *)pipe, st->opts.sim_env);
    for (int attempt = 1;; attempt++) {
        char url[96];
        char *port_file = xasprintf("%s/sim-%d-%d.port", dir, (int)getpid(), attempt);
        const char *const argv[] = { "conveyor-sim", "--port", "0", "--port-file", port_file,
                                     NULL };
        unlink(port_file);
        struct hn_proc *p = hn_spawn("sim", argv, env);
        long long deadline = now_ms() + HN_READY_TIMEOUT_MS;
        int port = read_port_file(port_file);
        while (!port && hn_alive(p) && now_ms() < deadline) {
            sleep_ms(10);
            port = read_port_file(port_file);
        }
        free(port_file);
        if (!port && hn_alive(p))
            fail_start(p, "no port in its --port-file in time");
        int ready = 0;
        if (port) {
            snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", port);
            ready = wait_ready(p, url);
        }
        if (ready) {
            st->sim = p;
            st->sim_port = port;
            snprintf(st->sim_url, sizeof(st->sim_url), "http://127.0.0.1:%d", port);
            free(env);
            hn_env_free(pipe);
            return;
        }
        if (attempt >= HN_START_TRIES) {
            free(env);
            hn_env_free(pipe);
            fail_start(p, "it exited");
        }
        hn_proc_free(p);
    }
}

/* Start the API on a free port, or on fixed_port (> 0: the sim already sends its webhooks
 * there, so losing that port's race fails the test instead of moving on). */
static void start_api(struct hn_stack *st, int fixed_port)
{
    char keys[256], all_sha[65], noop_sha[65];
    hn_sha256_hex(hn_test_key(), all_sha);
    hn_sha256_hex(hn_test_key_scoped(), noop_sha);
    snprintf(keys, sizeof(keys), "CONVEYOR_API_KEYS=test-all:%s:*,test-noop:%s:noop", all_sha,
             noop_sha);
    for (int attempt = 1;; attempt++) {
        int port = fixed_port > 0 ? fixed_port : hn_free_port();
        char port_env[48], url[96];
        snprintf(port_env, sizeof(port_env), "CONVEYOR_HTTP_PORT=%d", port);
        const char *const argv[] = { "conveyor-api", NULL };
        const char *const base[] = { port_env, "CONVEYOR_HTTP_BIND=127.0.0.1", keys, NULL };
        const char **pipe = env_join((const char *const *)st->pipe_env, st->opts.api_env);
        const char **env = env_join(base, pipe);
        struct hn_proc *p = hn_spawn("api", argv, env);
        free(env);
        free(pipe);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", port);
        if (wait_ready(p, url)) {
            st->api = p;
            st->api_port = port;
            snprintf(st->api_url, sizeof(st->api_url), "http://127.0.0.1:%d", port);
            return;
        }
        if (attempt >= HN_START_TRIES || fixed_port > 0)
            fail_start(p, "it exited");
        hn_proc_free(p);
    }
}

int hn_stack_add_worker(struct hn_stack *st)
{
    cr_assert(st->nworkers < HN_MAX_WORKERS, "at most %d workers", HN_MAX_WORKERS);
    char conc[16], act[96], name[32];
    snprintf(conc, sizeof(conc), "%d", st->opts.concurrency > 0 ? st->opts.concurrency : 4);
    snprintf(act, sizeof(act), "CONVEYOR_ACTIVATION_URL=%s", st->sim_url);
    snprintf(name, sizeof(name), "worker%d", st->nworkers + 1);
    const char *types = st->opts.worker_types  ? st->opts.worker_types
                        : st->opts.pipeline ? HN_ORDER_TYPES
                                            : "activation,noop";
    const char *const argv[] = { "conveyor-worker", "--types", types, "--concurrency", conc,
                                 NULL };
    const char *const base[] = { act, NULL };
    const char **pipe = env_join((const char *const *)st->pipe_env, st->opts.worker_env);
    const char **env = env_join(base, pipe);
    struct hn_proc *p = hn_spawn(name, argv, env);
    free(env);
    free(pipe);
    st->workers[st->nworkers] = p;
    return st->nworkers++;
}

void hn_start_stack(struct hn_stack *st, const struct hn_stack_opts *opts)
{
    static const struct hn_stack_opts defaults = { .workers = 1 };
    memset(st, 0, sizeof(*st));
    st->opts = opts ? *opts : defaults;
    cr_assert(st->opts.workers >= 0 && st->opts.workers <= HN_MAX_WORKERS,
              "hn_start_stack: workers must be 0..%d", HN_MAX_WORKERS);
    /* The pipeline's sim posts its webhooks to the API, which starts after it: choose the
     * API's port first. */
    int api_port = st->opts.pipeline && !st->opts.no_api ? hn_free_port() : 0;
    if (!st->opts.no_sim) {
        start_sim(st, api_port);
    } else {
        /* Nothing listens there: activations fail as transient errors. */
        snprintf(st->sim_url, sizeof(st->sim_url), "http://127.0.0.1:%d", hn_free_port());
        st->sim_port = 0;
    }
    if (st->opts.pipeline) {
        int sp = st->sim_port;
        if (!sp)
            sp = atoi(strrchr(st->sim_url, ':') + 1);
        st->pipe_env = hn_pipeline_env(sp, 0);
    }
    if (!st->opts.no_api)
        start_api(st, api_port);
    for (int i = 0; i < st->opts.workers; i++)
        hn_stack_add_worker(st);
    if (st->opts.workers > 0) {
        /* A worker that cannot start (bad config, no Redis) exits at once: say so now. */
        sleep_ms(200);
        for (int i = 0; i < st->nworkers; i++)
            if (!hn_alive(st->workers[i]))
                fail_start(st->workers[i], "it exited");
    }
}

/* Stop one process and check it; returns 1 when it passed. Frees it. */
static int stop_checked(struct hn_proc *p)
{
    if (!p)
        return 1;
    int was_killed = p->killed;
    int status = hn_stop(p, SIGTERM, HN_STOP_TIMEOUT_MS);
    int san = hn_log_has_sanitizer_report(p);
    int ok = !san && (was_killed || status == 0);
    if (!ok) {
        hn_log_tail(p, 60);
        cr_log_error("%s (pid %d): exit status %d%s%s", p->name, (int)p->pid, status,
                     was_killed ? " (killed by the test)" : "",
                     san ? ", sanitizer report in its log" : "");
    }
    hn_proc_free(p);
    return ok;
}

void hn_stop_stack(struct hn_stack *st)
{
    int ok = 1;
    for (int i = 0; i < st->nworkers; i++) {
        if (st->workers[i] && !st->workers[i]->reaped)
            kill(st->workers[i]->pid, SIGTERM);   /* let them drain in parallel */
    }
    for (int i = 0; i < st->nworkers; i++) {
        ok &= stop_checked(st->workers[i]);
        st->workers[i] = NULL;
    }
    st->nworkers = 0;
    ok &= stop_checked(st->api);
    st->api = NULL;
    ok &= stop_checked(st->sim);
    st->sim = NULL;
    hn_env_free(st->pipe_env);
    st->pipe_env = NULL;
    cr_assert(ok, "the stack did not stop cleanly (see the logs above)");
}

/* ==== the simulator's admin endpoints =================================================== */

void hn_sim_config(struct hn_stack *st, const char *json)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/admin/config", st->sim_url);
    struct hn_resp *r = hn_http("POST", url, NULL, json, strlen(json), 5000);
    cr_assert_eq(r->status, 200, "sim admin: %d %s", r->status, r->body);
    hn_resp_free(r);
}

long long hn_sim_stat(struct hn_stack *st, const char *name)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/admin/stats", st->sim_url);
    struct hn_resp *r = hn_http("GET", url, NULL, NULL, 0, 5000);
    cr_assert_eq(r->status, 200);
    cJSON *j = hn_json(r);
    cJSON *v = cJSON_GetObjectItem(j, name);
    cr_assert(cJSON_IsNumber(v), "sim stats has no %s: %s", name, r->body);
    long long n = (long long)v->valuedouble;
    cJSON_Delete(j);
    hn_resp_free(r);
    return n;
}
