/* conveyor-kmock - librdkafka's mock Kafka cluster in a process of its own,
 * for the tests and `make up BROKER=kafka` (there is no Kafka server package
 * on this platform; the mock speaks the real protocol over TCP).
 *
 *   conveyor-kmock [-b BROKERS] [-p PARTITIONS] [-o FILE] [-x PREFIX]
 *
 * Starts BROKERS (3) brokers on 127.0.0.1, random ports, and creates the topic
 * <PREFIX>.<type> (PREFIX "conveyor", as broker.topic_prefix) with PARTITIONS
 * (8) partitions for every job type of common/jobtype.c: the mock's own
 * auto-create would give 4. It prints the bootstrap list
 * ("127.0.0.1:p1,127.0.0.1:p2,...") on stdout and writes it to FILE through
 * FILE.tmp and a rename, so a reader polling for FILE never sees half of it.
 * Then it waits for signals:
 *   SIGUSR1          every broker down (tests: "the cluster is down" -> 503)
 *   SIGUSR2          every broker up again
 *   SIGTERM, SIGINT  free the cluster, exit 0
 * State is in memory only: a restart is an empty cluster on new ports.
 * Exit 2 on bad flags, 1 when the cluster or a topic cannot be made.
 *
 * Only kfk.h's kfk_mock_* are used: librdkafka stays behind common/kfk.c. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobtype.h"
#include "kfk.h"
#include "log.h"
#include "mem.h"

struct opts {
    int brokers;
    int partitions;
    const char *file;
    const char *prefix;
};

static void usage(void)
{
    fprintf(stderr, "usage: conveyor-kmock [-b BROKERS 1..16] [-p PARTITIONS 1..1000] [-o FILE]"
                    " [-x PREFIX]\n");
}

/* optarg as a whole number in lo..hi, or -1 after printing why. */
static int int_arg(int flag, const char *s, int lo, int hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "conveyor-kmock: -%c: must be %d..%d (got '%s')\n", flag, lo, hi, s);
        return -1;
    }
    return (int)v;
}

static int parse(int argc, char **argv, struct opts *o)
{
    int ch;
    *o = (struct opts){ 3, 8, NULL, "conveyor" };
    while ((ch = getopt(argc, argv, "b:p:o:x:h")) != -1) {
        switch (ch) {
        case 'b':
            o->brokers = int_arg(ch, optarg, 1, 16);
            break;
        case 'p':
            o->partitions = int_arg(ch, optarg, 1, 1000);
            break;
        case 'o':
            o->file = optarg;
            break;
        case 'x':
            o->prefix = optarg;
            break;
        default:
            usage();
            return -1;
        }
        if (o->brokers < 0 || o->partitions < 0)
            return -1;
    }
    /* broker.topic_prefix's rule (cfg.c): a part of a Kafka topic name */
    size_t n = strlen(o->prefix);
    if (optind != argc || n == 0 || n > 100 ||
        strspn(o->prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n) {
        if (optind == argc)
            fprintf(stderr, "conveyor-kmock: -x: must be 1..100 of A-Z a-z 0-9 . _ -\n");
        usage();
        return -1;
    }
    return 0;
}

/* text and a newline into path, through path.tmp and a rename. 0 or -1 (logged). */
static int write_file(const char *path, const char *text)
{
    int rc = -1, bad;
    char *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        goto out;
    bad = fprintf(f, "%s\n", text) < 0;
    bad |= fclose(f) != 0;        /* f is gone even when fclose fails */
    if (bad || rename(tmp, path) != 0)
        goto out;
    rc = 0;
out:
    if (rc) {
        char b[LOG_STR_MAX];
        LOG_ERROR("kmock.file_failed", "path=%s err=\"%s\"", log_str(b, path), strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct kfk_mock *m = NULL;
    int rc = 1, sig = 0;
    sigset_t sigs;

    log_init("kmock", LOG_LVL_INFO);
    if (parse(argc, argv, &o))
        return 2;
    /* Blocked before the cluster starts, so librdkafka's threads inherit the
     * mask and every one of these reaches the sigwait below. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    m = kfk_mock_new(o.brokers);
    if (!m)
        goto out;
    for (int i = 0; i < JT_N; i++) {
        char *topic = xasprintf("%s.%s", o.prefix, jobtype_at(i)->name);
        int bad = kfk_mock_topic(m, topic, o.partitions);
        free(topic);
        if (bad)
            goto out;
    }
    const char *boot = kfk_mock_bootstraps(m);
    if (o.file && write_file(o.file, boot))
        goto out;
    printf("%s\n", boot);
    fflush(stdout);
    LOG_INFO("kmock.ready", "brokers=%d partitions=%d topics=%d prefix=%s bootstraps=%s",
             o.brokers, o.partitions, JT_N, o.prefix, boot);

    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            break;
        int up = sig == SIGUSR2;
        if (kfk_mock_broker(m, 0, up))
            LOG_ERROR("kmock.brokers_failed", "up=%d", up);
        else
            LOG_INFO(up ? "kmock.brokers_up" : "kmock.brokers_down", "brokers=%d", o.brokers);
    }
    LOG_INFO("kmock.stopping", "signal=%d", sig);
    rc = 0;
out:
    kfk_mock_free(m);
    return rc;
}
