/* ctl_orders.c - the order pipeline from the command line (through PostgreSQL,
 * with common/ostore's statements: the same rows the API shows).
 *
 *   conveyorctl orders                          how many orders in each state
 *   conveyorctl orders --state S | --list [--limit N]
 *                                               the orders (of state S), oldest
 *                                               change first
 *   conveyorctl order ID                        one order, its operations and its
 *                                               outbound calls
 *   conveyorctl ops tail [--order ID] [--limit N] [--follow]
 *                                               the operations log; --follow keeps
 *                                               printing new rows until Ctrl-C
 * --json: orders and ops print one object per line; order prints one object
 * {"order", "operations", "calls"}, as GET /api/v1/orders/{id} does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "db.h"
#include "json.h"
#include "ostate.h"
#include "ostore.h"
#include "sbuf.h"

#define OPS_MAX 500
#define CALLS_MAX 200
#define FOLLOW_MS 500

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

/* One order as a JSON object. */
static void order_json(struct sbuf *b, const struct ostore_order *o)
{
    const char *const k[] = { "order_id", "internal_state", "carrier_code", "tracking_number",
                              "expedition_id", "carrier_status", "country", "weight_kg",
                              "attempts", "last_error", "created_at", "updated_at" };
    const char *const v[] = { o->order_id, o->internal_state, o->carrier_code,
                              o->tracking_number, o->expedition_id, o->carrier_status,
                              o->country, o->weight_kg, o->attempts, o->last_error,
                              o->created_at, o->updated_at };
    sbuf_add(b, "{", 1);
    json_pairs(b, k, v, sizeof(k) / sizeof(k[0]), 1);
    sbuf_add(b, "}", 1);
}

/* ---- orders ------------------------------------------------------------------- */

static int orders_counts(struct db *d)
{
    enum cv_rc rc;
    long long n[OSTATE_N] = { 0 }, total = 0;
    struct db_res *r = db_exec(d, ostore_sql_counts, 0, NULL, &rc);
    if (!r)
        return ctl_failx(ctl_exit_of(rc), "orders: cannot count the orders: %s",
                         db_last_error(d));
    for (int i = 0; i < db_res_rows(r); i++) {
        int st = ostate_parse(db_res_get(r, i, 0));
        if (st >= 0)
            n[st] = atoll(db_res_get(r, i, 1));
    }
    db_res_free(r);
    if (ctl_json)
        fputs("{", stdout);
    else
        printf("%-20s %10s\n", "STATE", "ORDERS");
    for (int st = 0; st < OSTATE_N; st++) {
        total += n[st];
        if (ctl_json)
            printf("%s\"%s\":%lld", st ? "," : "", ostate_str((enum ostate)st), n[st]);
        else
            printf("%-20s %10lld\n", ostate_str((enum ostate)st), n[st]);
    }
    if (ctl_json)
        fputs("}\n", stdout);
    else
        printf("%-20s %10lld\n", "total", total);
    return CTL_EXIT_OK;
}

static int orders_list(struct db *d, const char *state, int64_t lim)
{
    struct ostore_order *o = NULL;
    size_t n = 0;
    char *next = NULL;
    enum cv_rc rc = ostore_list(d, state, NULL, (int)lim, &o, &n, &next);
    if (rc != CV_OK)
        return ctl_failx(ctl_exit_of(rc), "orders: cannot read the orders");
    if (!ctl_json)
        printf("%-20s %-18s %-16s %-18s %-18s %s\n", "ORDER", "STATE", "CARRIER", "TRACKING",
               "CARRIER_STATUS", "UPDATED");
    for (size_t i = 0; i < n; i++) {
        if (ctl_json) {
            struct sbuf b;
            sbuf_init(&b);
            order_json(&b, &o[i]);
            puts(b.p);
            sbuf_cleanup(&b);
        } else {
            printf("%-20s %-18s %-16s %-18s %-18s %s\n", o[i].order_id, o[i].internal_state,
                   s(o[i].carrier_code), s(o[i].tracking_number), s(o[i].carrier_status),
                   s(o[i].updated_at));
        }
    }
    if (next && !ctl_json)
        printf("(more: --limit %d shows up to %d)\n", OSTORE_BATCH_MAX, OSTORE_BATCH_MAX);
    ostore_orders_free(o, n);
    free(next);
    return CTL_EXIT_OK;
}

int ctl_orders(const struct cfg *c, int argc, char **argv)
{
    int ret, list = 0;
    const char *state = NULL, *limit = NULL, *v;
    int64_t lim = 50;
    struct db *d = NULL;
    for (int i = 1; i < argc; i++) {
        int m;
        if ((m = ctl_opt(argc, argv, &i, "--state", &v)) != 0)
            state = v;
        else if ((m = ctl_opt(argc, argv, &i, "--limit", &v)) != 0)
            limit = v;
        else if (ctl_flag(argv, i, "--list"))
            list = m = 1;
        else
            return ctl_usage("orders: unexpected argument '%s'", argv[i]);
        if (m < 0)
            return CTL_EXIT_USAGE;
    }
    if (limit && ctl_parse_int64(limit, 1, OSTORE_BATCH_MAX, &lim))
        return ctl_usage("orders: --limit wants 1..%d", OSTORE_BATCH_MAX);
    if (state && ostate_parse(state) < 0)
        return ctl_usage("orders: unknown --state '%s'", state);
    if (limit && !state && !list)
        return ctl_usage("orders: --limit goes with --state or --list");
    ret = ctl_db_open(c, "orders", &d);
    if (ret != CTL_EXIT_OK)
        return ret;
    ret = state || list ? orders_list(d, state, lim) : orders_counts(d);
    db_free(d);
    return ret;
}

/* ---- order ID ----------------------------------------------------------------- */

static void op_json(struct sbuf *b, const struct ostore_op *op)
{
    sbuf_addf(b, "{\"id\":%lld", (long long)op->id);
    const char *const k[] = { "at", "scope", "action", "order_id", "carrier", "status",
                              "message", "from_state", "to_state", "job_id" };
    const char *const v[] = { op->at, op->scope, op->action, op->order_id, op->carrier,
                              op->status, op->message, op->from_state, op->to_state,
                              op->job_id };
    json_pairs(b, k, v, sizeof(k) / sizeof(k[0]), 0);
    sbuf_add(b, "}", 1);
}

static void op_line(const struct ostore_op *op)
{
    printf("%s %-8s %-16s %-16s %-7s %s%s%s ", s(op->at), s(op->scope), s(op->action),
           s(op->order_id), s(op->status), op->from_state ? op->from_state : "",
           op->to_state ? " -> " : "", op->to_state ? op->to_state : "");
    ctl_put_safe(op->message);
    putchar('\n');
}

/* The outbound calls of an order: a table, or members of a JSON array in b. */
static enum cv_rc calls(struct db *d, const char *id, struct sbuf *b)
{
    enum cv_rc rc;
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", CALLS_MAX);
    const char *params[] = { id, lim };
    struct db_res *r = db_exec(d, ostore_sql_calls, 2, params, &rc);
    if (!r)
        return rc;
    int n = db_res_rows(r);
    if (!ctl_json)
        printf("\nOUTBOUND CALLS (%d, newest first)\n", n);
    for (int i = 0; i < n; i++) {
        if (ctl_json) {
            static const char *const cols[] = { "at", "upstream", "method", "url",
                                                "status_code", "class", "duration_ms",
                                                "attempt", "job_id", "trace_id", "error" };
            const char *v[11];
            for (int k = 0; k < 11; k++)
                v[k] = db_res_get(r, i, k + 1);
            sbuf_addf(b, "%s{\"id\":%s", i ? "," : "", db_res_get(r, i, 0));
            json_pairs(b, cols, v, 11, 0);
            sbuf_add(b, "}", 1);
            continue;
        }
        printf("%s %-16s %-6s %4s %-10s %9sms ", s(db_res_get(r, i, 1)),
               s(db_res_get(r, i, 2)), s(db_res_get(r, i, 3)), s(db_res_get(r, i, 5)),
               s(db_res_get(r, i, 6)), s(db_res_get(r, i, 7)));
        ctl_put_safe(db_res_get(r, i, 4));
        if (db_res_get(r, i, 11)) {
            fputs("  ", stdout);
            ctl_put_safe(db_res_get(r, i, 11));
        }
        putchar('\n');
    }
    db_res_free(r);
    return CV_OK;
}

int ctl_order(const struct cfg *c, int argc, char **argv)
{
    const char *id = NULL;
    int ret;
    for (int i = 1; i < argc; i++) {
        if (!id && argv[i][0] != '-')
            id = argv[i];
        else
            return ctl_usage("order: unexpected argument '%s'", argv[i]);
    }
    if (!id)
        return ctl_usage("order: ORDER_ID is required");
    struct db *d = NULL;
    ret = ctl_db_open(c, "order", &d);
    if (ret != CTL_EXIT_OK)
        return ret;
    struct ostore_order *o = NULL;
    struct ostore_op *ops = NULL;
    size_t nops = 0;
    struct sbuf b;
    sbuf_init(&b);
    enum cv_rc rc = ostore_get(d, id, OPS_MAX, &o, &ops, &nops);
    if (rc == CV_ERR_NOT_FOUND) {
        ret = ctl_failx(CTL_EXIT_NOT_FOUND, "order: no such order: %s", id);
        goto out;
    }
    if (rc != CV_OK) {
        ret = ctl_failx(ctl_exit_of(rc), "order: cannot read it");
        goto out;
    }
    if (ctl_json) {
        sbuf_adds(&b, "{\"order\":");
        order_json(&b, o);
        sbuf_adds(&b, ",\"operations\":[");
        for (size_t i = 0; i < nops; i++) {
            if (i)
                sbuf_add(&b, ",", 1);
            op_json(&b, &ops[i]);
        }
        sbuf_adds(&b, "],\"calls\":[");
    } else {
        printf("order %s  %s  carrier %s  tracking %s  expedition %s  status %s\n",
               o->order_id, o->internal_state, s(o->carrier_code), s(o->tracking_number),
               s(o->expedition_id), s(o->carrier_status));
        printf("created %s  updated %s  attempts %s\n", s(o->created_at), s(o->updated_at),
               s(o->attempts));
        if (o->last_error) {
            fputs("last error: ", stdout);
            ctl_put_safe(o->last_error);
            putchar('\n');
        }
        printf("\nOPERATIONS (%zu, oldest first)\n", nops);
        for (size_t i = 0; i < nops; i++)
            op_line(&ops[i]);
    }
    rc = calls(d, id, &b);
    if (rc != CV_OK) {
        ret = ctl_failx(ctl_exit_of(rc), "order: cannot read its outbound calls");
        goto out;
    }
    if (ctl_json)
        printf("%s]}\n", b.p);
    ret = CTL_EXIT_OK;
out:
    sbuf_cleanup(&b);
    ostore_orders_free(o, o ? 1 : 0);
    ostore_ops_free(ops, nops);
    db_free(d);
    return ret;
}

/* ---- ops tail ----------------------------------------------------------------- */

int ctl_ops(const struct cfg *c, int argc, char **argv)
{
    const char *order = NULL, *limit = "20", *v;
    int follow = 0;
    int64_t lim;
    if (argc < 2 || strcmp(argv[1], "tail") != 0)
        return ctl_usage("ops: want 'ops tail [--order ID] [--limit N] [--follow]'");
    for (int i = 2; i < argc; i++) {
        int m;
        if ((m = ctl_opt(argc, argv, &i, "--order", &v)) != 0)
            order = v;
        else if ((m = ctl_opt(argc, argv, &i, "--limit", &v)) != 0)
            limit = v;
        else if (ctl_flag(argv, i, "--follow") || ctl_flag(argv, i, "-f"))
            follow = m = 1;
        else
            return ctl_usage("ops tail: unexpected argument '%s'", argv[i]);
        if (m < 0)
            return CTL_EXIT_USAGE;
    }
    if (ctl_parse_int64(limit, 1, 1000, &lim))
        return ctl_usage("ops tail: --limit wants 1..1000");
    struct db *d = NULL;
    int ret = ctl_db_open(c, "ops tail", &d);
    if (ret != CTL_EXIT_OK)
        return ret;
    char last[24] = "0", lims[16];
    snprintf(lims, sizeof(lims), "%lld", (long long)lim);
    static const char SQL[] =
        "SELECT * FROM (SELECT id, cv_ts(at) AS at, scope, action, order_id, carrier, status,"
        " message, from_state, to_state, job_id FROM operations"
        " WHERE ($1::text IS NULL OR order_id = $1) AND id > $2::bigint"
        " ORDER BY id DESC LIMIT $3::int) t ORDER BY id";
    if (follow)
        ctl_catch_interrupt();
    while (!ctl_interrupted()) {
        enum cv_rc rc;
        const char *params[] = { order, last, lims };
        struct db_res *r = db_exec(d, SQL, 3, params, &rc);
        if (!r) {
            ret = ctl_failx(ctl_exit_of(rc), "ops tail: cannot read the operations log");
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
            if (ctl_json) {
                struct sbuf b;
                sbuf_init(&b);
                op_json(&b, &op);
                puts(b.p);
                sbuf_cleanup(&b);
            } else {
                op_line(&op);
            }
            snprintf(last, sizeof(last), "%lld", (long long)op.id);
        }
        db_res_free(r);
        fflush(stdout);
        if (!follow)
            break;
        snprintf(lims, sizeof(lims), "1000");
        ctl_sleep_ms(FOLLOW_MS);
    }
    db_free(d);
    return ret;
}
