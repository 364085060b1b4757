/* ctl_held.c - `conveyorctl held`: money that is debited while its
 * activation's outcome is not recorded (transactions PROCESSING), oldest
 * first, with the state of the job that should settle it. A row here older
 * than reconcile.held_after_s with a dead job is what the reconciler replays;
 * with no job at all, it publishes one again (see worker/wrk_reconcile.c).
 * Also the held summary of `watch` (ctl_held_summary). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "ctl.h"
#include "db.h"
#include "sbuf.h"

#define HELD_LIMIT 1000

static const char HELD_SQL[] =
    "SELECT transaction_id::text, user_id, offer_id, amount::text, "
    "extract(epoch FROM now() - updated_at)::bigint AS age_s "
    "FROM transactions WHERE status = 'PROCESSING' "
    "AND updated_at <= now() - make_interval(secs => $1::int) "
    "ORDER BY updated_at LIMIT $2::int";

static const char SUMMARY_SQL[] =
    "SELECT count(*), coalesce(sum(amount), 0)::text, "
    "coalesce(extract(epoch FROM now() - min(updated_at))::bigint, 0) "
    "FROM transactions WHERE status = 'PROCESSING'";

enum cv_rc ctl_held_summary(struct db *d, struct ctl_held_sum *s)
{
    enum cv_rc rc;
    memset(s, 0, sizeof(*s));
    struct db_res *r = db_exec(d, SUMMARY_SQL, 0, NULL, &rc);
    if (!r)
        return rc;
    const char *n = db_res_get(r, 0, 0), *amount = db_res_get(r, 0, 1),
               *age = db_res_get(r, 0, 2);
    s->transactions = n ? atoll(n) : 0;
    snprintf(s->amount, sizeof(s->amount), "%s", amount ? amount : "0");
    s->oldest_s = age ? atoll(age) : 0;
    db_res_free(r);
    return CV_OK;
}

static void row_json(struct db_res *r, int i, const char *job, int held)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "{\"transaction_id\":");
    sbuf_add_json_str(&b, db_res_get(r, i, 0));
    sbuf_addf(&b, ",\"user_id\":%s,\"offer_id\":%s,\"amount\":", db_res_get(r, i, 1),
              db_res_get(r, i, 2));
    sbuf_add_json_str(&b, db_res_get(r, i, 3));
    sbuf_addf(&b, ",\"age_s\":%s,\"job\":", db_res_get(r, i, 4));
    sbuf_add_json_str(&b, job);
    sbuf_addf(&b, ",\"job_held\":%s}", held ? "true" : "false");
    puts(b.p);
    sbuf_cleanup(&b);
}

int ctl_held(const struct cfg *c, int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE;
    const char *min_age = "0";
    int64_t v;
    struct db *d = NULL;
    struct broker *b = NULL;
    struct db_res *r = NULL;
    for (int i = 1; i < argc; i++) {
        int got = ctl_opt(argc, argv, &i, "--min-age-s", &min_age);
        if (got < 0)
            goto out;
        if (got == 0) {
            ret = ctl_usage("held: unexpected argument '%s'", argv[i]);
            goto out;
        }
    }
    if (ctl_parse_int64(min_age, 0, 315360000, &v)) {
        ret = ctl_usage("held: --min-age-s wants seconds, 0..315360000");
        goto out;
    }
    ret = ctl_db_open(c, "held", &d);
    if (ret != CTL_EXIT_OK)
        goto out;
    b = broker_open(c, NULL);   /* may be NULL: the job column then says "?" */
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", HELD_LIMIT);
    const char *params[] = { min_age, lim };
    enum cv_rc rc;
    r = db_exec(d, HELD_SQL, 2, params, &rc);
    if (!r) {
        ret = ctl_failx(ctl_exit_of(rc), "held: %s", db_last_error(d));
        goto out;
    }
    if (!ctl_json)
        printf("%-36s %10s %10s %12s %9s %s\n", "TRANSACTION", "USER", "OFFER", "AMOUNT",
               "AGE_S", "JOB");
    for (int i = 0; i < db_res_rows(r); i++) {
        const char *txn = db_res_get(r, i, 0);
        struct job_status st;
        enum cv_rc lrc = b ? broker_get_copy(b, txn, &st) : CV_ERR_IO;
        const char *job = lrc == CV_OK            ? job_state_str(st.state)
                          : lrc == CV_ERR_NOT_FOUND ? "missing"
                                                    : "?";
        int held = lrc == CV_OK && st.held;
        if (ctl_json)
            row_json(r, i, job, held);
        else
            printf("%-36s %10s %10s %12s %9s %s%s\n", txn, db_res_get(r, i, 1),
                   db_res_get(r, i, 2), db_res_get(r, i, 3), db_res_get(r, i, 4), job,
                   held ? " (held)" : "");
        if (lrc == CV_OK)
            job_status_cleanup(&st);
    }
    if (!ctl_json)
        printf("%d held\n", db_res_rows(r));
    ret = CTL_EXIT_OK;
out:
    db_res_free(r);
    db_free(d);
    if (b)
        broker_close(b);
    return ret;
}
