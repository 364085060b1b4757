/* ctl_held.c - `conveyorctl held`: money that is debited while its
 * activation's outcome is not recorded (transactions PROCESSING), oldest
 * first, with the state of the job that should settle it. A row here older
 * than reconcile.held_after_s with a dead job is what the reconciler replays;
 * with no job at all, it publishes one again (see worker/wrk_reconcile.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "ctl.h"
#include "db.h"

#define HELD_LIMIT 1000

static const char HELD_SQL[] =
    "SELECT transaction_id::text, user_id, offer_id, amount::text, "
    "extract(epoch FROM now() - updated_at)::bigint AS age_s "
    "FROM transactions WHERE status = 'PROCESSING' "
    "AND updated_at <= now() - make_interval(secs => $1::int) "
    "ORDER BY updated_at LIMIT $2::int";

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
    if (cfg_require(c, "pg.dsn"))
        goto out;
    ret = CTL_EXIT_FAIL;
    d = db_connect(c->pg_dsn);
    if (!d) {
        ret = ctl_fail("held: cannot reach PostgreSQL at pg.dsn");
        goto out;
    }
    b = broker_open(c, NULL);   /* may be NULL: the job column then says "?" */
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", HELD_LIMIT);
    const char *params[] = { min_age, lim };
    enum cv_rc rc;
    r = db_exec(d, HELD_SQL, 2, params, &rc);
    if (!r) {
        ret = ctl_fail("held: %s", db_last_error(d));
        goto out;
    }
    printf("%-36s %10s %10s %12s %9s %s\n", "TRANSACTION", "USER", "OFFER", "AMOUNT", "AGE_S",
           "JOB");
    for (int i = 0; i < db_res_rows(r); i++) {
        const char *txn = db_res_get(r, i, 0);
        struct job_status st;
        enum cv_rc lrc = b ? broker_get_copy(b, txn, &st) : CV_ERR_IO;
        const char *job = lrc == CV_OK            ? job_state_str(st.state)
                          : lrc == CV_ERR_NOT_FOUND ? "missing"
                                                    : "?";
        printf("%-36s %10s %10s %12s %9s %s%s\n", txn, db_res_get(r, i, 1),
               db_res_get(r, i, 2), db_res_get(r, i, 3), db_res_get(r, i, 4), job,
               lrc == CV_OK && st.held ? " (held)" : "");
        if (lrc == CV_OK)
            job_status_cleanup(&st);
    }
    printf("%d held\n", db_res_rows(r));
    ret = CTL_EXIT_OK;
out:
    db_res_free(r);
    db_free(d);
    if (b)
        broker_close(b);
    return ret;
}
