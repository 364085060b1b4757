/* broker_int.h - what a transport implements; private to common/broker*.c and the
 * transports (rstream.c, kstream.c). Callers include broker.h only and see struct
 * broker as an opaque handle, the way curl keeps struct Curl_ssl in vtls_int.h.
 *
 * A transport embeds struct broker as its first member and fills ops with its
 * functions; broker.c dispatches every broker_* call through it. Each op has
 * the contract of the broker_* function of the same name (broker.h); broker.c
 * has already zeroed the counts out and answered the empty calls (consume of
 * no type or no slot), so an op may assume work to do. */
#ifndef CV_BROKER_INT_H
#define CV_BROKER_INT_H

#include "broker.h"
#include "jstore.h"

struct broker_ops {
    const char *name;
    void (*close)(struct broker *b);
    int (*ready)(struct broker *b);
    void (*publish)(struct broker *, struct job *const *, size_t, int, broker_publish_cb, void *);
    void (*dead_retry)(struct broker *, const char *, broker_done_cb, void *);
    void (*queues)(struct broker *, broker_queues_cb, void *);
    enum cv_rc (*consume)(struct broker *, const char *, const char *const *, size_t, size_t,
                          int, struct job **, size_t *);
    enum cv_rc (*reclaim)(struct broker *, const char *, const char *, int64_t, size_t,
                          struct job **, size_t *);
    enum cv_rc (*settle)(struct broker *, struct job *const *, struct broker_settle *, size_t,
                         int);
    enum cv_rc (*promote)(struct broker *, size_t, size_t *);
    enum cv_rc (*gc_consumers)(struct broker *, int64_t, int64_t, size_t *);
    enum cv_rc (*worker_gone)(struct broker *, const char *);
};

/* The base every transport's struct starts with. broker_open fills transport
 * and caps from its table after the transport's open returns. An op of a
 * capability the transport lacks (reclaim, promote, gc_consumers) may be NULL. */
struct broker {
    const struct broker_ops *ops;
    const char *transport;
    unsigned caps;             /* enum broker_cap bits */
    /* The job-status store every transport keeps in Redis, on the transport's
     * own Redis link (set by its open): broker.c serves the calls that touch
     * the store only (get, dead letters, workers, counters, leases,
     * heartbeats) from it directly, whatever the transport. */
    struct jstore *js;
};

/* Redis Streams (rstream.c). NULL after logging when Redis cannot be reached
 * in sync mode; free with broker_close. */
struct broker *rstream_open(const struct cfg *cfg, struct event_base *base);
/* Kafka (kstream.c), the job status in Redis: the same contract. */
struct broker *kstream_open(const struct cfg *cfg, struct event_base *base);

#endif
