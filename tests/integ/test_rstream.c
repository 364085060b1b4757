/* The Redis Streams transport's internals against a real redis-server: the
 * streams, the consumer group, trimming, and the job-status store's hashes as
 * the scripts write them. The contract every transport keeps is test_broker.c. */
#include "brk_tc.h"

#include "jobopt.h"
#include "jstore.h"
#include "jobtype.h"
#include "json.h"

static void setup(void)
{
    tc_setup("redis");
}

TestSuite(rstream, .init = setup, .fini = tc_teardown);


static long long consumers_of(const char *type)
{
    struct rds_reply *x = rds_cmdf(r, "XINFO CONSUMERS cv:q:%s cv", type);
    long long n = (long long)rds_reply_len(x);
    rds_reply_free(x);
    return n;
}

Test(rstream, a_leaving_worker_leaves_the_group_unless_it_holds_deliveries)
{
    struct job *a = mk("noop", "{}"), *c = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(a, o);
    struct job *got[2];
    cr_assert_eq(consume("busy", "noop", got, 1), 1);
    publish1(c, o);
    struct job *idle[2];
    cr_assert_eq(consume("idle", "noop", idle, 1), 1);
    struct broker_settle s = { BROKER_ACK, 0, NULL, 0, 0 };
    cr_assert_eq(broker_settle(b, idle, &s, 1, 60), CV_OK);
    cr_assert_eq(consumers_of("noop"), 2);
    cr_assert_eq(broker_worker_gone(b, "idle"), CV_OK);
    cr_assert_eq(broker_worker_gone(b, "busy"), CV_OK);
    cr_assert_eq(consumers_of("noop"), 1, "the one holding a delivery stays");
    job_free(got[0]);
    job_free(idle[0]);
    job_free(a);
    job_free(c);
    free(o);
}


static long long xlen(const char *stream)
{
    struct rds_reply *x = rds_cmdf(r, "XLEN %s", stream);
    long long v = rds_reply_int(x);
    rds_reply_free(x);
    return v;
}

/* Issue 5: trimming read whichever group XINFO listed last: a tap group made at
 * '$' got 300 queued jobs trimmed away. */
Test(rstream, trimming_follows_our_group_only)
{
    struct pub_out *o = calloc(1, sizeof(*o));
    for (int i = 0; i < 300; i++) {
        struct job *j = mk("noop", "{}");
        publish1(j, o);
        job_free(j);
    }
    rds_reply_free(rds_cmdf(r, "XGROUP CREATE cv:q:noop tap $"));
    cr_assert_eq(broker_promote(b, 10, NULL), CV_OK);
    cr_assert_eq(xlen("cv:q:noop"), 300);
    cr_assert_eq(unsettled(300), 300);
    free(o);
}


/* Issue 5: the group's lag can stay wrong for good (seen after a restart from
 * the AOF); depth must not believe it. ENTRIESREAD 0 makes Redis report a lag
 * of every entry ever added while nothing is waiting. */
Test(rstream, queue_depth_does_not_trust_a_wrong_lag)
{
    struct pub_out *o = calloc(1, sizeof(*o));
    for (int i = 0; i < 5; i++) {
        struct job *j = mk("noop", "{}");
        publish1(j, o);
        job_free(j);
        take_and_settle("c1", BROKER_ACK, 0, NULL);
    }
    struct rds_reply *x = rds_cmdf(r, "XGROUP SETID cv:q:noop cv $ ENTRIESREAD 0");
    cr_assert_eq(rds_reply_type(x), RDS_STATUS, "%s", rds_reply_str(x, NULL));
    rds_reply_free(x);
    cr_assert_eq(unsettled(0), 0);
    free(o);
}


/* Issue 8: the stream keeps finished entries now (retention); with a lag Redis
 * got wrong, depth must not count them as waiting either. */
Test(rstream, queue_depth_does_not_count_retained_finished_jobs)
{
    publish_batch("noop", 1000);
    publish_batch("noop", 200);
    cr_assert_eq(ack_all("noop", 1200), 1200);
    publish_batch("noop", 1000);
    publish_batch("noop", 100);
    cr_assert_eq(xlen("cv:q:noop"), 2300, "the finished entries are retained");
    /* a lag Redis got wrong (as after a restart from the AOF): the group stays
     * where it is, but claims to have read nothing */
    struct rds_reply *x = rds_cmdf(r, "XRANGE cv:q:noop - + COUNT 1200");
    const char *last_acked = rds_reply_at_str(rds_reply_at(x, 1199), 0);
    cr_assert_not_null(last_acked);
    struct rds_reply *y = rds_cmdf(r, "XGROUP SETID cv:q:noop cv %s ENTRIESREAD 0", last_acked);
    cr_assert_eq(rds_reply_type(y), RDS_STATUS, "%s", rds_reply_str(y, NULL));
    rds_reply_free(y);
    rds_reply_free(x);
    cr_assert_eq(unsettled_now(), 1100);
}


/* Issue 5: consumers of SIGKILLed workers were never removed. */
Test(rstream, consumers_of_dead_workers_are_removed)
{
    struct pub_out *o = calloc(1, sizeof(*o));
    for (int i = 0; i < 2; i++) {
        struct job *j = mk("noop", "{}");
        publish1(j, o);
        job_free(j);
        take_and_settle(i ? "alive" : "ghost", BROKER_ACK, 0, NULL);
    }
    struct worker_info wi;
    memset(&wi, 0, sizeof(wi));
    snprintf(wi.name, sizeof(wi.name), "alive");
    cr_assert_eq(broker_heartbeat(b, &wi, 60000), CV_OK);
    cr_assert_eq(consumers_of("noop"), 2);
    int64_t t0 = clock_wall_ms();
    while (clock_wall_ms() < t0 + 3)
        ;
    size_t removed = 0;
    cr_assert_eq(broker_gc_consumers(b, 60000, 60000, &removed), CV_OK);
    cr_assert_eq(removed, 0, "nobody idle for a minute");
    cr_assert_eq(broker_gc_consumers(b, 1, 60000, &removed), CV_OK);
    cr_assert_eq(removed, 1);
    cr_assert_eq(consumers_of("noop"), 1, "the worker with a heartbeat stays");
    free(o);
}


/* Issue 7: the transport is chosen by name and says what it can do. */
Test(rstream, redis_is_the_default_transport_with_every_capability)
{
    cr_assert_str_eq(broker_transport(b), "redis");
    unsigned want = BROKER_CAP_RECLAIM_IDLE | BROKER_CAP_ATOMIC_BATCH | BROKER_CAP_DELAYED_SET |
                    BROKER_CAP_CONSUMER_GC;
    cr_assert_eq(broker_caps(b), want, "caps %#x", broker_caps(b));
    struct cfg other = cfg;
    other.broker_transport = (char *)"carrier-pigeon";
    cr_assert_null(broker_open(&other, NULL), "an unknown transport opens nothing");
}


/* Issue 7: status hashes are decoded from a field table. Every field the table
 * lists lands in its member (a hash written here by hand, as the scripts do). */
Test(rstream, every_status_field_is_decoded)
{
    const char *id = "11111111-2222-4333-8444-555555555555";
    struct rds_reply *x = rds_cmdf(
        r,
        "HSET cv:job:%s id %s type noop state dead attempt 3 max_attempts 7 created_ms 1000 "
        "updated_ms 2000 not_before_ms 3000 started_ms 4000 finished_ms 5000 epoch 9 "
        "last_error %s tp %s payload %b idem key-1 held 1 se 8 pr p1",
        id, id, "carrier down", "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
        "{\"a\":[1,2]}", (size_t)11);
    cr_assert_eq(rds_reply_type(x), RDS_INT);
    rds_reply_free(x);
    struct job_status st;
    cr_assert_eq(broker_get_copy(b, id, &st), CV_OK);
    cr_assert_str_eq(st.id, id);
    cr_assert_str_eq(st.type, "noop");
    cr_assert_eq(st.state, JOB_STATE_DEAD);
    cr_assert_eq(st.attempt, 3);
    cr_assert_eq(st.max_attempts, 7);
    cr_assert_eq(st.created_ms, 1000);
    cr_assert_eq(st.updated_ms, 2000);
    cr_assert_eq(st.not_before_ms, 3000);
    cr_assert_eq(st.started_ms, 4000);
    cr_assert_eq(st.finished_ms, 5000);
    cr_assert_eq(st.epoch, 9);
    cr_assert_str_eq(st.last_error, "carrier down");
    cr_assert_str_eq(st.traceparent, "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01");
    cr_assert_not_null(st.payload);
    cr_assert_str_eq(st.payload, "{\"a\":[1,2]}");
    cr_assert_str_eq(st.idem_key, "key-1");
    cr_assert_eq(st.held, 1);
    job_status_cleanup(&st);

    /* unknown state reads as queued; an empty idem is no key; no updated_ms = created */
    x = rds_cmdf(r, "HSET cv:job:%s state bogus idem %s updated_ms 0", id, "");
    rds_reply_free(x);
    cr_assert_eq(broker_get_copy(b, id, &st), CV_OK);
    cr_assert_eq(st.state, JOB_STATE_QUEUED);
    cr_assert_null(st.idem_key);
    cr_assert_eq(st.updated_ms, 1000);
    job_status_cleanup(&st);
}

/* Issue 8: finished jobs are retained by count, not by time x throughput. A
 * stream keeps at most its type's retain entries, its unsettled ones always:
 * past that, the oldest acked entries go together with their statuses (the
 * settle retires as it acks). Before issue 8 the promoter trimmed every acked
 * entry at once and each status carried its own TTL. */
Test(rstream, a_stream_retires_finished_jobs_past_its_retain_bound)
{
    cr_assert_eq(cfg_set(&cfg, "jobs.types.noop.retain", "100"), 0);
    char (*ids)[UUID_STR_LEN] = calloc(1000, UUID_STR_LEN);
    struct job *jobs[1000];
    for (int i = 0; i < 1000; i++) {
        jobs[i] = mk("noop", "{}");
        memcpy(ids[i], jobs[i]->id, UUID_STR_LEN);
    }
    struct pub_out *o = calloc(1, sizeof(*o));
    broker_publish(b, jobs, 1000, 60, on_pub, o);
    cr_assert_eq(o->rc, CV_OK);
    for (int i = 0; i < 1000; i++)
        job_free(jobs[i]);
    cr_assert_eq(ack_all("noop", 600), 600);
    /* the bound counts the 400 unsettled jobs, which always stay: no finished one
     * is kept beside them */
    cr_assert_eq(unsettled(400), 400);
    cr_assert_eq(xlen("cv:q:noop"), 400);
    struct st_out gone;
    get_status(ids[0], &gone);
    cr_assert_eq(gone.rc, CV_ERR_NOT_FOUND, "a finished job is gone with its entry");
    get_status(ids[599], &gone);
    cr_assert_eq(gone.rc, CV_ERR_NOT_FOUND);
    cr_assert_eq(state_of(ids[600]), JOB_STATE_QUEUED);
    cr_assert_eq(ack_all("noop", 400), 400);
    cr_assert_eq(broker_promote(b, 10, NULL), CV_OK);
    /* once they finished, the newest 100 are kept, with their statuses */
    cr_assert_eq(xlen("cv:q:noop"), 100);
    cr_assert_eq(state_of(ids[999]), JOB_STATE_SUCCEEDED);
    cr_assert_eq(state_of(ids[900]), JOB_STATE_SUCCEEDED);
    get_status(ids[899], &gone);
    cr_assert_eq(gone.rc, CV_ERR_NOT_FOUND);
    struct rds_reply *x = rds_cmdf(r, "HGET cv:stats:noop retired");
    cr_assert_geq(atoll(rds_reply_str(x, NULL) ? rds_reply_str(x, NULL) : "0"), 900);
    rds_reply_free(x);
    free(ids);
    free(o);
}

/* Issue 8: the promoter also retires finished jobs older than the status TTL,
 * entries and statuses together, however few they are. */
Test(rstream, finished_jobs_older_than_the_status_ttl_are_retired)
{
    cr_assert_eq(cfg_set(&cfg, "jobs.status_ttl_s", "1"), 0);
    struct job *j = mk("noop", "{}");
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(j, o);
    cr_assert_eq(ack_all("noop", 1), 1);
    cr_assert_eq(state_of(j->id), JOB_STATE_SUCCEEDED);
    int64_t end = clock_mono_ms() + 10000;
    while (xlen("cv:q:noop") > 0 && clock_mono_ms() < end) {
        cr_assert_eq(broker_promote(b, 10, NULL), CV_OK);
        usleep(20000);
    }
    cr_assert_eq(xlen("cv:q:noop"), 0, "the old entry was retired");
    struct st_out gone;
    get_status(j->id, &gone);
    cr_assert_eq(gone.rc, CV_ERR_NOT_FOUND, "with its status");
    job_free(j);
    free(o);
}

/* Issue 8: a job whose id was drawn for its publish skips the existence check;
 * the same id sent again (a client's retry with Conveyor-Job-Id) is checked and
 * found: one job. jobopt_make marks only the ids it drew. */
Test(rstream, a_fresh_id_skips_the_existence_check_a_repeated_one_does_not)
{
    struct job *a = mk("noop", "{}");
    a->fresh_id = 1;
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(a, o);
    cr_assert_eq(o->dup[0], 0);
    struct job *again = mk("noop", "{}");
    memcpy(again->id, a->id, UUID_STR_LEN);
    publish1(again, o);
    cr_assert_eq(o->dup[0], 1, "the repeat is a duplicate");
    cr_assert_eq(unsettled(1), 1, "one job");
    struct cfg c;
    cr_assert_eq(cfg_load(&c, NULL), 0);
    struct jobopt opt;
    memset(&opt, 0, sizeof(opt));
    struct job *drawn = NULL, *given = NULL;
    const char *field = NULL, *why = NULL;
    cJSON *p = json_parse("{}", 2);
    cr_assert_eq(jobopt_make(&c, jobtype_at(JT_NOOP), &opt, NULL, "", p, NULL, 0, 1, &drawn,
                             &field, &why), CV_OK);
    cr_assert_eq(drawn->fresh_id, 1);
    snprintf(opt.job_id, sizeof(opt.job_id), "%s", a->id);
    cr_assert_eq(jobopt_make(&c, jobtype_at(JT_NOOP), &opt, NULL, "", p, NULL, 0, 1, &given,
                             &field, &why), CV_OK);
    cr_assert_eq(given->fresh_id, 0);
    cJSON_Delete(p);
    job_free(drawn);
    job_free(given);
    cfg_cleanup(&c);
    job_free(a);
    job_free(again);
    free(o);
}

static long long redis_int(const char *fmt, const char *arg)
{
    struct rds_reply *x = rds_cmdf(r, fmt, arg);
    long long v = rds_reply_int(x);
    rds_reply_free(x);
    return v;
}

/* Issue 8: an id drawn for its publish (job_fresh_id, a v7 UUID) gets no status
 * hash of its own: one field of its time's bucket of the status index says
 * where its entry is (jstore_lua.h JSTORE_LUA_IX_FN). Its status reads as any
 * other's; a repeat under its id is a duplicate, under another type a
 * conflict; a failure writes the whole status; and the bucket goes once the
 * stream was trimmed a minute past it, and with it the finished job. */
Test(rstream, a_drawn_id_is_found_through_its_time_bucket_until_it_retires)
{
    cr_assert_eq(cfg_set(&cfg, "jobs.types.noop.retain", "1"), 0);
    /* drawn two minutes ago: its bucket is past the slack once its entry goes */
    struct job *a = mk("noop", "{\"x\":1}");
    uuid_v7(clock_wall_ms() - 120000, a->id);
    a->fresh_id = 1;
    struct pub_out *o = calloc(1, sizeof(*o));
    publish1(a, o);
    cr_assert_eq(o->dup[0], 0);
    char ix[128];
    cr_assert_eq(jstore_ix_key("noop", a->id, ix, sizeof(ix)), 0);
    cr_assert_eq(redis_int("EXISTS cv:job:%s", a->id), 0, "no hash of its own");
    struct rds_reply *x = rds_cmdf(r, "HGET %s %s", ix, a->id);
    cr_assert(rds_reply_str(x, NULL) != NULL, "a field in %s", ix);
    rds_reply_free(x);
    struct job_status st;
    cr_assert_eq(broker_get_copy(b, a->id, &st), CV_OK);
    cr_assert_eq(st.state, JOB_STATE_QUEUED);
    cr_assert_str_eq(st.payload, "{\"x\":1}");
    cr_assert_eq(st.attempt, 1);
    job_status_cleanup(&st);

    struct job *again = mk("noop", "{}"), *other = mk("activation", "{}");
    memcpy(again->id, a->id, UUID_STR_LEN);
    memcpy(other->id, a->id, UUID_STR_LEN);
    publish1(again, o);
    cr_assert_eq(o->dup[0], 1, "a repeat under its id is a duplicate");
    publish1(other, o);
    cr_assert_eq(o->dup[0], 2, "under another type, a conflict");

    struct job *f = mk("noop", "{}");
    job_fresh_id(f);
    publish1(f, o);
    struct job *got[4];
    cr_assert_eq(consume("c1", "noop", got, 4), 2);
    cr_assert_str_eq(got[0]->id, a->id);
    cr_assert_eq(state_of(a->id), JOB_STATE_RUNNING);
    int fenced;
    settle1(got[1], BROKER_FAIL, 0, &fenced);
    cr_assert_eq(fenced, 0);
    cr_assert_eq(state_of(f->id), JOB_STATE_FAILED);
    cr_assert_eq(redis_int("EXISTS cv:job:%s", f->id), 1, "a failure writes the whole status");
    x = rds_cmdf(r, "HGET cv:job:%s m", f->id);
    cr_assert_str_eq(rds_reply_str(x, NULL) ? rds_reply_str(x, NULL) : "", got[1]->msg_id);
    rds_reply_free(x);
    char fix[128];
    cr_assert_eq(jstore_ix_key("noop", f->id, fix, sizeof(fix)), 0);
    x = rds_cmdf(r, "HEXISTS %s %s", fix, f->id);
    cr_assert_eq(rds_reply_int(x), 0, "its field left the index (a purge must not revive it)");
    rds_reply_free(x);

    /* retain 1: acking a retires it (f is newer), and its bucket with it */
    settle1(got[0], BROKER_ACK, 0, &fenced);
    cr_assert_eq(fenced, 0);
    cr_assert_eq(xlen("cv:q:noop"), 1);
    cr_assert_eq(redis_int("EXISTS %s", ix), 0, "the bucket went");
    struct st_out gone;
    get_status(a->id, &gone);
    cr_assert_eq(gone.rc, CV_ERR_NOT_FOUND, "a finished job is gone with its entry");
    cr_assert_eq(state_of(f->id), JOB_STATE_FAILED, "the failed one stays");
    for (int i = 0; i < 2; i++)
        job_free(got[i]);
    job_free(a);
    job_free(again);
    job_free(other);
    job_free(f);
    free(o);
}
