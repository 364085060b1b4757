/* ctl_seed.c - conveyorctl seed: demo accounts and offers, safe to run again. */
#include <stdio.h>
#include <stdlib.h>

#include "ctl.h"
#include "db.h"

/* pg_advisory_xact_lock key of `conveyorctl seed`: "cvseed\0\0" read as a
 * big-endian 64-bit number. Two seeds at once must not both see an empty
 * offers table. */
#define SEED_LOCK_KEY "7167042736336666624"

#define SEED_USERS "100"
#define SEED_BALANCE "1000.00"

/* Run sql (which ends in RETURNING) and count the rows; -1 on failure. */
static int count_rows(struct db *d, const char *sql, int n, const char *const *params)
{
    enum cv_rc rc;
    struct db_res *r = db_exec(d, sql, n, params, &rc);
    if (!r)
        return -1;
    int rows = db_res_rows(r);
    db_res_free(r);
    return rows;
}

int ctl_seed(const struct cfg *c, int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE;
    struct db *d = NULL;
    int in_tx = 0;

    if (argc > 1) {
        ret = ctl_usage("seed: unexpected argument '%s'", argv[1]);
        goto out;
    }
    if (cfg_require(c, "pg.dsn") != 0)
        goto out;
    ret = CTL_EXIT_FAIL;
    d = db_connect(c->pg_dsn);
    if (!d) {
        ret = ctl_failx(CTL_EXIT_UNAVAILABLE, "seed: cannot connect to PostgreSQL (pg.dsn; the "
                        "reason is logged above)");
        goto out;
    }
    if (db_run(d, "BEGIN", 0, NULL) != CV_OK)
        goto fail;
    in_tx = 1;
    const char *key[] = { SEED_LOCK_KEY };
    if (db_run(d, "SELECT pg_advisory_xact_lock($1::bigint)", 1, key) != CV_OK)
        goto fail;

    const char *acct[] = { SEED_USERS, SEED_BALANCE };
    int nacct = count_rows(d,
                           "INSERT INTO accounts (user_id, balance)"
                           " SELECT g, $2::numeric FROM generate_series(1, $1::bigint) AS g"
                           " ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
                           2, acct);
    if (nacct < 0)
        goto fail;

    const char *offers[] = { "Basic 1GB", "5.00",  "7",  "Plus 10GB", "15.00", "30",
                             "Max 100GB", "49.99", "30" };
    int noffers = count_rows(d,
                             "INSERT INTO offers (name, price, duration_days)"
                             " SELECT v.name, v.price, v.days FROM (VALUES"
                             " ($1::text, $2::numeric, $3::int),"
                             " ($4::text, $5::numeric, $6::int),"
                             " ($7::text, $8::numeric, $9::int)) AS v(name, price, days)"
                             " WHERE NOT EXISTS (SELECT 1 FROM offers) RETURNING id",
                             9, offers);
    if (noffers < 0)
        goto fail;
    if (db_run(d, "COMMIT", 0, NULL) != CV_OK)
        goto fail;
    in_tx = 0;

    printf("accounts: %d added (users 1..%s with balance %s; existing ones left as they were)\n",
           nacct, SEED_USERS, SEED_BALANCE);
    if (noffers > 0)
        printf("offers: %d added (Basic 1GB 5.00/7 days, Plus 10GB 15.00/30 days, "
               "Max 100GB 49.99/30 days)\n", noffers);
    else
        printf("offers: table not empty, left as it was\n");
    ret = CTL_EXIT_OK;
    goto out;
fail:
    ctl_fail("seed failed: %s", db_last_error(d));
out:
    if (in_tx)
        db_run(d, "ROLLBACK", 0, NULL);
    db_free(d);
    return ret;
}
