/* ctl_term.c - the terminal: progress bars, questions, Ctrl-C.
 *
 * Nothing here writes to stdout: stdout carries the command's result, which
 * may go to a pipe or a file while the bar and the questions go to the
 * operator's terminal on stderr. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctl.h"

#define BAR_WIDTH 30
#define REDRAW_MS 100

int ctl_isatty(int fd)
{
    return isatty(fd) == 1;
}

/* ---- progress --------------------------------------------------------------- */

static void draw(const struct ctl_progress *p)
{
    if (p->total > 0) {
        long long done = p->done < p->total ? p->done : p->total;
        int fill = (int)(done * BAR_WIDTH / p->total);
        char bar[BAR_WIDTH + 1];
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(BAR_WIDTH - fill));
        bar[BAR_WIDTH] = '\0';
        fprintf(stderr, "\r%s [%s] %3lld%% %lld/%lld", p->what, bar, done * 100 / p->total,
                p->done, p->total);
    } else {
        fprintf(stderr, "\r%s %lld", p->what, p->done);
    }
    fflush(stderr);
}

void ctl_progress_start(struct ctl_progress *p, const char *what, long long total)
{
    memset(p, 0, sizeof(*p));
    p->on = ctl_isatty(STDERR_FILENO);
    p->what = what;
    p->total = total;
}

void ctl_progress_set(struct ctl_progress *p, long long done)
{
    p->done = done;
    if (!p->on)
        return;
    int64_t now = clock_mono_ms();
    if (now - p->drawn_ms < REDRAW_MS)
        return;
    p->drawn_ms = now;
    draw(p);
}

void ctl_progress_end(struct ctl_progress *p)
{
    if (!p->on)
        return;
    draw(p);
    fputc('\n', stderr);
    p->on = 0;
}

/* ---- questions ---------------------------------------------------------------- */

int ctl_confirm(const char *fmt, ...)
{
    char line[64];
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" [y/N] ", stderr);
    fflush(stderr);
    if (!fgets(line, sizeof(line), stdin))
        return 0;
    line[strcspn(line, "\r\n")] = '\0';
    return strcmp(line, "y") == 0 || strcmp(line, "Y") == 0 || strcmp(line, "yes") == 0;
}

/* ---- Ctrl-C ------------------------------------------------------------------ */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

void ctl_catch_interrupt(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;              /* no SA_RESTART: a sleep returns at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int ctl_interrupted(void)
{
    return interrupted != 0;
}

void ctl_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (!interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
