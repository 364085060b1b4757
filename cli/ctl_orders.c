/* ctl_orders.c - the order pipeline from the command line (through PostgreSQL,
 * with common/ostore's statements: the same rows the API shows).
 *
 *   conveyorctl orders [--state S] [--limit N] [--json]   orders, oldest change first
 *   conveyorctl order ID [--json]                          one order and its history
 *   conveyorctl ops tail [--order ID] [--limit N] [--follow]
 *                                                          the operations log; --follow
 *                                                          keeps printing new rows */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "db.h"
#include "json.h"
#include "ostore.h"
#include "sbuf.h"

static struct db *open_db(const struct cfg *c, const char *what)
{
    if (cfg_require(c, "pg.dsn"))
        return NULL;
    struct db *d = db_connect(c->pg_dsn);
    if (!d)
        ctl_fail("%s: cannot reach PostgreSQL at pg.dsn", what);
    return d;
}

static const char *s(const char *v)
{
    return v ? v : "-";
}

/* "k":"v" members for n keys (v NULL: null), the first without a leading comma
 * when first is set. */
static void json_pairs(struct sbuf *b, const char *const *k, const char *const *v, size_t n,
                       int first)
{
    for (size_t i = 0; i < n; i++) {
        sbuf_adds(b, i || !first ? "," : "");
        sbuf_add_json_str(b, k[i]);
        sbuf_add(b, ":", 1);
        if (v[i])
            sbuf_add_json_str(b, v[i]);
        else
            sbuf_adds(b, "null");
    }
}

/* One order as a JSON object line. */
static void order_json(const struct ostore_order *o)
{
    struct sbuf b;
    sbuf_init(&b);
    const char *const k[] = { "order_id", "internal_state", "carrier_code", "tracking_number",
                              "expedition_id", "carrier_status", "country", "weight_kg",
                              "attempts", "last_error", "updated_at" };
    const char *const v[] = { o->order_id, o->internal_state, o->carrier_code,
                              o->tracking_number, o->expedition_id, o->carrier_status,
                              o->country, o->weight_kg, o->attempts, o->last_error,
                              o->updated_at };
    sbuf_add(&b, "{", 1);
    json_pairs(&b, k, v, sizeof(k) / sizeof(k[0]), 1);
    sbuf_add(&b, "}", 1);
    puts(b.p);
    sbuf_cleanup(&b);
}

int ctl_orders(const struct cfg *c, int argc, char **argv)
{
    int ret = CTL_EXIT_USAGE, json = 0;
    const char *state = NULL, *limit = "50", *v;
    int64_t lim;
    struct db *d = NULL;
    struct ostore_order *o = NULL;
    size_t n = 0;
    char *next = NULL;
    for (int i = 1; i < argc; i++) {
        int m;
        if ((m = ctl_opt(argc, argv, &i, "--state", &v)) != 0)
            state = v;
        else if ((m = ctl_opt(argc, argv, &i, "--limit", &v)) != 0)
            limit = v;
        else if (strcmp(argv[i], "--json") == 0)
            json = 1, m = 1;
        else
            return ctl_usage("orders: unexpected argument '%s'", argv[i]);
        if (m < 0)
            return CTL_EXIT_USAGE;
    }
    if (ctl_parse_int64(limit, 1, OSTORE_BATCH_MAX, &lim))
        return ctl_usage("orders: --limit wants 1..%d", OSTORE_BATCH_MAX);
    if (state && ostate_parse(state) < 0)
        return ctl_usage("orders: unknown --state '%s'", state);
    if (!(d = open_db(c, "orders")))
        return CTL_EXIT_FAIL;
    ret = CTL_EXIT_FAIL;
    if (ostore_list(d, state, NULL, (int)lim, &o, &n, &next) != CV_OK) {
        ret = ctl_fail("orders: cannot read the orders");
        goto out;
    }
    if (!json)
        printf("%-20s %-18s %-16s %-18s %-18s %s\n", "ORDER", "STATE", "CARRIER", "TRACKING",
               "CARRIER_STATUS", "UPDATED");
    for (size_t i = 0; i < n; i++) {
        if (json)
            order_json(&o[i]);
        else
            printf("%-20s %-18s %-16s %-18s %-18s %s\n", o[i].order_id, o[i].internal_state,
                   s(o[i].carrier_code), s(o[i].tracking_number), s(o[i].carrier_status),
                   s(o[i].updated_at));
    }
    ret = CTL_EXIT_OK;
out:
    ostore_orders_free(o, n);
    free(next);
    db_free(d);
    return ret;
}

static void op_line(const struct ostore_op *op, int json)
{
    if (json) {
        struct sbuf b;
        sbuf_init(&b);
        sbuf_addf(&b, "{\"id\":%lld", (long long)op->id);
        const char *const k[] = { "at", "scope", "action", "order_id", "carrier", "status",
                                  "message", "from_state", "to_state", "job_id" };
        const char *const v[] = { op->at, op->scope, op->action, op->order_id, op->carrier,
                                  op->status, op->message, op->from_state, op->to_state,
                                  op->job_id };
        json_pairs(&b, k, v, sizeof(k) / sizeof(k[0]), 0);
        sbuf_add(&b, "}", 1);
        puts(b.p);
        sbuf_cleanup(&b);
        return;
    }
    printf("%s %-8s %-16s %-16s %-7s %s%s%s %s\n", s(op->at), s(op->scope), s(op->action),
           s(op->order_id), s(op->status), op->from_state ? op->from_state : "",
           op->to_state ? " -> " : "", op->to_state ? op->to_state : "", s(op->message));
}

int ctl_order(const struct cfg *c, int argc, char **argv)
{
    const char *id = NULL;
    int json = 0, ret = CTL_EXIT_FAIL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (!id)
            id = argv[i];
        else
            return ctl_usage("order: unexpected argument '%s'", argv[i]);
    }
    if (!id)
        return ctl_usage("order: ORDER_ID is required");
    struct db *d = open_db(c, "order");
    if (!d)
        return CTL_EXIT_FAIL;
    struct ostore_order *o = NULL;
    struct ostore_op *ops = NULL;
    size_t nops = 0;
    enum cv_rc rc = ostore_get(d, id, 500, &o, &ops, &nops);
    if (rc == CV_ERR_NOT_FOUND) {
        ret = ctl_fail("order: no such order: %s", id);
    } else if (rc != CV_OK) {
        ret = ctl_fail("order: cannot read it");
    } else {
        if (json) {
            order_json(o);
        } else {
            printf("order %s  %s  carrier %s  tracking %s  expedition %s  status %s\n",
                   o->order_id, o->internal_state, s(o->carrier_code), s(o->tracking_number),
                   s(o->expedition_id), s(o->carrier_status));
            if (o->last_error)
                printf("last error: %s\n", o->last_error);
        }
        for (size_t i = 0; i < nops; i++)
            op_line(&ops[i], json);
        ret = CTL_EXIT_OK;
    }
    ostore_orders_free(o, o ? 1 : 0);
    ostore_ops_free(ops, nops);
    db_free(d);
    return ret;
}

/* ops tail: the last rows, then (with --follow) every new one, polled. */
int ctl_ops(const struct cfg *c, int argc, char **argv)
{
    const char *order = NULL, *limit = "20", *v;
    int follow = 0, json = 0;
    int64_t lim;
    if (argc < 2 || strcmp(argv[1], "tail") != 0)
        return ctl_usage("ops: want 'ops tail [--order ID] [--limit N] [--follow] [--json]'");
    for (int i = 2; i < argc; i++) {
        int m;
        if ((m = ctl_opt(argc, argv, &i, "--order", &v)) != 0)
            order = v;
        else if ((m = ctl_opt(argc, argv, &i, "--limit", &v)) != 0)
            limit = v;
        else if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0)
            follow = 1, m = 1;
        else if (strcmp(argv[i], "--json") == 0)
            json = 1, m = 1;
        else
            return ctl_usage("ops tail: unexpected argument '%s'", argv[i]);
        if (m < 0)
            return CTL_EXIT_USAGE;
    }
    if (ctl_parse_int64(limit, 1, 1000, &lim))
        return ctl_usage("ops tail: --limit wants 1..1000");
    struct db *d = open_db(c, "ops tail");
    if (!d)
        return CTL_EXIT_FAIL;
    int ret = CTL_EXIT_OK;
    char last[24] = "0", lims[16];
    snprintf(lims, sizeof(lims), "%lld", (long long)lim);
    static const char SQL[] =
        "SELECT * FROM (SELECT id, cv_ts(at) AS at, scope, action, order_id, carrier, status,"
        " message, from_state, to_state, job_id FROM operations"
        " WHERE ($1::text IS NULL OR order_id = $1) AND id > $2::bigint"
        " ORDER BY id DESC LIMIT $3::int) t ORDER BY id";
    for (;;) {
        enum cv_rc rc;
        const char *params[] = { order, last, lims };
        struct db_res *r = db_exec(d, SQL, 3, params, &rc);
        if (!r) {
            ret = ctl_fail("ops tail: cannot read the operations log");
            break;
        }
        for (int i = 0; i < db_res_rows(r); i++) {
            struct ostore_op op = { 0 };
            op.id = atoll(db_res_get(r, i, 0));
            op.at = (char *)db_res_get(r, i, 1);
            op.scope = (char *)db_res_get(r, i, 2);
            op.action = (char *)db_res_get(r, i, 3);
            op.order_id = (char *)db_res_get(r, i, 4);
            op.carrier = (char *)db_res_get(r, i, 5);
            op.status = (char *)db_res_get(r, i, 6);
            op.message = (char *)db_res_get(r, i, 7);
            op.from_state = (char *)db_res_get(r, i, 8);
            op.to_state = (char *)db_res_get(r, i, 9);
            op.job_id = (char *)db_res_get(r, i, 10);
            op_line(&op, json);
            snprintf(last, sizeof(last), "%lld", (long long)op.id);
        }
        db_res_free(r);
        fflush(stdout);
        if (!follow)
            break;
        snprintf(lims, sizeof(lims), "1000");
        usleep(500 * 1000);
    }
    db_free(d);
    return ret;
}
