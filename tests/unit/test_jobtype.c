/* The one job-type table, its payload validators and the one options parser. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "jobopt.h"
#include "jobtype.h"

static enum cv_rc check(const char *type, const char *json, struct sbuf *out,
                        const char **field)
{
    const char *why = NULL;
    const struct jobtype *t = jobtype_find(type, strlen(type));
    cr_assert(t, "%s", type);
    return jobtype_check_text(t, json, strlen(json), "0b5e8f1c-3f7e-4c2a-9a57-1c2d3e4f5a6b", out,
                              field, &why);
}

Test(jobtype, every_row_is_found_by_name_and_index)
{
    for (int i = 0; i < JT_N; i++) {
        const struct jobtype *t = jobtype_at(i);
        cr_assert(t && t->name);
        cr_assert(job_type_valid(t->name, strlen(t->name)), "%s", t->name);
        cr_assert_eq(jobtype_index(t->name), i);
        cr_assert(strstr(jobtype_names(), t->name));
    }
    cr_assert_null(jobtype_at(JT_N));
    cr_assert_eq(jobtype_index("Noop"), -1);
    cr_assert_null(jobtype_find("noop ", 5));
}

Test(jobtype, activation_is_canonical_with_the_job_id)
{
    struct sbuf b;
    const char *field;
    sbuf_init(&b);
    cr_assert_eq(check("activation", "{\"user_id\":\"7\",\"offer_id\":3,\"x\":1}", &b, &field),
                 CV_OK);
    cr_assert_str_eq(b.p, "{\"transaction_id\":\"0b5e8f1c-3f7e-4c2a-9a57-1c2d3e4f5a6b\","
                          "\"user_id\":7,\"offer_id\":3}");
    sbuf_reset(&b);
    cr_assert_eq(check("activation", "{\"user_id\":0,\"offer_id\":3}", &b, &field),
                 CV_ERR_INVALID);
    cr_assert_str_eq(field, "user_id");
    cr_assert_eq(check("activation", "{\"user_id\":1,\"offer_id\":3,\"transaction_id\":5}", &b,
                       &field),
                 CV_ERR_INVALID);
    cr_assert_str_eq(field, "transaction_id");
    sbuf_cleanup(&b);
}

Test(jobtype, order_payloads_name_the_bad_field)
{
    static const struct {
        const char *type, *json, *field;   /* field NULL = valid */
    } cases[] = {
        { "carrier-post", "{\"order_id\":\"MIR-001-A\"}", NULL },
        { "carrier-post", "{\"order_id\":\"MIR 001\"}", "order_id" },
        { "carrier-post", "{}", "order_id" },
        { "carrier-post", "{\"order_id\":\"A1\",\"carrier\":\"SEUR\"}", "carrier" },
        { "tracking-push", "{\"order_id\":7}", "order_id" },
        { "order-fetch", "{}", NULL },
        { "order-fetch", "{\"since\":\"yesterday\"}", "since" },
        { "order-fetch", "{\"since\":\"2026-11-27T10:00:00Z\",\"max_pages\":3}", NULL },
        { "tracking-event",
          "{\"carrier\":\"seur\",\"order_id\":\"A1\",\"status\":\"delivered\","
          "\"event_at\":\"2026-11-27T10:00:00.123Z\",\"seq\":2}",
          NULL },
        { "tracking-event", "{\"carrier\":\"seur\",\"order_id\":\"A1\",\"status\":\"x\"}",
          "event_at" },
        { "ml-notification",
          "{\"resource\":\"/orders/1\",\"topic\":\"orders_v2\",\"user_id\":12}", NULL },
        { "ml-notification", "{\"resource\":\"/orders/1\",\"topic\":\"orders_v2\"}",
          "user_id" },
        { "noop", "[1,2]", NULL },
        { "carrier-post", "[1]", "" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sbuf b;
        const char *field = NULL;
        sbuf_init(&b);
        enum cv_rc rc = check(cases[i].type, cases[i].json, &b, &field);
        if (!cases[i].field) {
            cr_assert_eq(rc, CV_OK, "%s %s", cases[i].type, cases[i].json);
        } else {
            cr_assert_eq(rc, CV_ERR_INVALID, "%s %s", cases[i].type, cases[i].json);
            cr_assert_str_eq(field ? field : "", cases[i].field, "%s", cases[i].json);
        }
        sbuf_cleanup(&b);
    }
}

Test(jobtype, the_ordering_key_is_the_order_or_the_job)
{
    char k[80];
    cJSON *p = json_parse("{\"order_id\":\"MIR-9\"}", 20);
    cr_assert_eq(jobtype_key(jobtype_at(JT_CARRIER_POST), p, "id-1", k, sizeof(k)), 0);
    cr_assert_str_eq(k, "MIR-9");
    /* noop's key is its "key" field (the per-key order tests); without one, the job */
    cr_assert_eq(jobtype_key(jobtype_at(JT_NOOP), p, "id-1", k, sizeof(k)), -1);
    cr_assert_str_eq(k, "id-1");
    cJSON_Delete(p);
    p = json_parse("{\"key\":\"k7\"}", 12);
    cr_assert_eq(jobtype_key(jobtype_at(JT_NOOP), p, "id-1", k, sizeof(k)), 0);
    cr_assert_str_eq(k, "k7");
    cJSON_Delete(p);
}

Test(jobopt, one_parser_one_set_of_limits)
{
    struct jobopt o;
    const char *why;
    int64_t now = 1000000;
    memset(&o, 0, sizeof(o));
    cr_assert_eq(jobopt_set(&o, "delay_ms", "500", now, &why), CV_OK);
    cr_assert_eq(o.not_before_ms, now + 500);
    cr_assert_eq(jobopt_set(&o, "delay_ms", "5", now, &why), CV_ERR_INVALID, "twice");
    cr_assert_eq(jobopt_set(&o, "run_at", "2026-01-01T00:00:00Z", now, &why), CV_ERR_INVALID);
    cr_assert(strstr(why, "not both"));
    memset(&o, 0, sizeof(o));
    cr_assert_eq(jobopt_set(&o, "delay_ms", "2592000001", now, &why), CV_ERR_INVALID);
    cr_assert_eq(jobopt_set(&o, "max_attempts", "0", now, &why), CV_ERR_INVALID);
    cr_assert_eq(jobopt_set(&o, "max_attempts", "101", now, &why), CV_ERR_INVALID);
    memset(&o, 0, sizeof(o));
    cr_assert_eq(jobopt_set(&o, "max_attempts", "100", now, &why), CV_OK);
    cr_assert_eq(jobopt_set(&o, "idempotency_key", "a\tb", now, &why), CV_ERR_INVALID);
    cr_assert_eq(jobopt_set(&o, "job_id", "0B5E8F1C-3F7E-4C2A-9A57-1C2D3E4F5A6B", now, &why),
                 CV_OK);
    cr_assert_str_eq(o.job_id, "0b5e8f1c-3f7e-4c2a-9a57-1c2d3e4f5a6b");
    cr_assert_eq(jobopt_set(&o, "traceparent", "junk", now, &why), CV_OK);
    cr_assert_str_eq(o.traceparent, "", "a bad traceparent is replaced, not kept");
    cr_assert_eq(jobopt_set(&o, "colour", "red", now, &why), CV_ERR_NOT_FOUND);
}

Test(jobopt, make_fills_the_job_and_checks_the_payload)
{
    struct cfg c;
    struct jobopt o;
    struct job *j = NULL;
    const char *field, *why;
    cr_assert_eq(cfg_load(&c, NULL), 0);
    memset(&o, 0, sizeof(o));
    snprintf(o.idem, sizeof(o.idem), "k1");
    cJSON *p = json_parse("{\"order_id\":\"A-1\"}", 18);
    cr_assert_eq(jobopt_make(&c, jobtype_at(JT_CARRIER_POST), &o, NULL, "shop", p, NULL, 0, 5,
                             &j, &field, &why),
                 CV_OK);
    cr_assert_str_eq(j->type, "carrier-post");
    cr_assert_eq(j->max_attempts, 3);
    cr_assert_str_eq(j->idem_key, "k1");
    cr_assert_str_eq(j->producer, "shop");
    cr_assert_str_eq(j->payload, "{\"order_id\":\"A-1\"}");
    cr_assert(job_traceparent_valid(j->traceparent));
    job_free(j);
    cJSON_Delete(p);
    p = json_parse("{\"order\":\"A-1\"}", 15);
    cr_assert_eq(jobopt_make(&c, jobtype_at(JT_CARRIER_POST), &o, NULL, "", p, NULL, 0, 5, &j,
                             &field, &why),
                 CV_ERR_INVALID);
    cr_assert_null(j);
    cr_assert_str_eq(field, "order_id");
    cJSON_Delete(p);
    cfg_cleanup(&c);
}

Test(jobopt, derived_ids_depend_on_type_and_key_only)
{
    struct cfg c;
    cr_assert_eq(cfg_load(&c, NULL), 0);
    const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    struct job *a = jobopt_derived(&c, tp, "carrier-post", "MIR-1:post:1", "{}", 0);
    struct job *b = jobopt_derived(&c, NULL, "carrier-post", "MIR-1:post:1", "{\"x\":1}", 50);
    struct job *d = jobopt_derived(&c, NULL, "carrier-post", "MIR-1:post:2", "{}", 0);
    struct job *e = jobopt_derived(&c, NULL, "tracking-push", "MIR-1:post:1", "{}", 0);
    cr_assert_str_eq(a->id, b->id, "an epoch-independent key gives one id");
    cr_assert(uuid_valid(a->id));
    cr_assert_eq(a->id[14], '8', "version 8");
    cr_assert_str_neq(a->id, d->id);
    cr_assert_str_neq(a->id, e->id);
    cr_assert_str_eq(a->producer, JOBOPT_PRODUCER);
    cr_assert_eq(strncmp(a->traceparent + 3, tp + 3, 32), 0, "the parent's trace");
    cr_assert_neq(strncmp(a->traceparent + 36, tp + 36, 16), 0, "a new span");
    cr_assert_gt(b->not_before_ms, 0);
    job_free(a);
    job_free(b);
    job_free(d);
    job_free(e);
    cfg_cleanup(&c);
}

/* deploy/kafka/create-topics.sh names the job types itself (it runs on hosts without the
 * binaries): a type it misses would have no topic on a cluster that creates none. */
Test(jobtype, the_kafka_deploy_script_creates_a_topic_for_every_type)
{
    FILE *f = fopen("deploy/kafka/create-topics.sh", "r");   /* from the repository root */
    cr_assert(f != NULL);
    char line[512], *types = NULL;
    while (!types && fgets(line, sizeof(line), f))
        if (strncmp(line, "TYPES=\"", 7) == 0)
            types = line + 7;
    fclose(f);
    cr_assert(types != NULL, "no TYPES=\"...\" line");
    types[strcspn(types, "\"")] = '\0';
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(types, " ", &save); t; t = strtok_r(NULL, " ", &save), n++)
        cr_assert(jobtype_find(t, strlen(t)) != NULL, "%s is not a job type", t);
    cr_assert_eq(n, JT_N, "the script names %d types, the table has %d", n, JT_N);
}
