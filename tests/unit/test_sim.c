/* Unit tests for the simulator's pure parts: the idempotency table and the
 * fault decisions. conveyor-sim's objects are not in libcommon.a, so the two
 * files are compiled in here; they have no main and nothing else in the unit
 * binary defines sim_* symbols. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../sim/sim_faults.c"
#include "../../sim/sim_table.c"

struct rec {
    int64_t n;
    char tag[16];
};

/* Writes "key-<i>" into buf and returns its length. */
static size_t key_of(int i, char buf[32])
{
    return (size_t)snprintf(buf, 32, "key-%d", i);
}

/* ---- sim_table ------------------------------------------------------------------ */

Test(sim, table_insert_find)
{
    struct sim_table *t = sim_table_new(sizeof(struct rec), 100, 0);
    int created = -1;
    struct rec *r = sim_table_get_or_add(t, "abc", 3, &created);
    cr_assert_not_null(r);
    cr_assert_eq(created, 1);
    cr_assert_eq(r->n, 0, "a new record is zeroed");
    r->n = 42;
    struct rec *f = sim_table_find(t, "abc", 3);
    cr_assert_eq(f, r);
    cr_assert_eq(f->n, 42);
    cr_assert_str_eq(sim_table_key(f), "abc");
    cr_assert_null(sim_table_find(t, "abd", 3));
    cr_assert_null(sim_table_find(t, "ab", 2), "a prefix is another key");
    cr_assert_null(sim_table_find(t, "abcd", 4));
    cr_assert_eq(sim_table_count(t), 1);
    sim_table_free(t);
}

Test(sim, table_get_or_add_returns_the_existing_record)
{
    struct sim_table *t = sim_table_new(sizeof(struct rec), 100, 7);
    int created;
    struct rec *a = sim_table_get_or_add(t, "txn-1", 5, &created);
    a->n = 1;
    struct rec *b = sim_table_get_or_add(t, "txn-1", 5, &created);
    cr_assert_eq(created, 0);
    cr_assert_eq(a, b);
    cr_assert_eq(b->n, 1, "a duplicate must not reset the record");
    cr_assert_eq(sim_table_count(t), 1);
    sim_table_free(t);
}

Test(sim, table_grows_and_records_never_move)
{
    enum { N = 50000 };
    struct sim_table *t = sim_table_new(sizeof(struct rec), N, 12345);
    static struct rec *where[N];
    char buf[32];
    int created;
    for (int i = 0; i < N; i++) {
        where[i] = sim_table_get_or_add(t, buf, key_of(i, buf), &created);
        cr_assert(where[i] && created);
        where[i]->n = i;
    }
    cr_assert_eq(sim_table_count(t), N);
    for (int i = 0; i < N; i++) {
        struct rec *r = sim_table_find(t, buf, key_of(i, buf));
        cr_assert_eq(r, where[i], "record %d moved", i);
        cr_assert_eq(r->n, i);
        cr_assert_str_eq(sim_table_key(r), buf);
    }
    cr_assert_null(sim_table_find(t, "key-50000", 9));
    sim_table_free(t);
}

Test(sim, table_rejects_empty_and_long_keys)
{
    struct sim_table *t = sim_table_new(sizeof(struct rec), 10, 0);
    char longkey[SIM_TABLE_KEY_MAX + 1];
    memset(longkey, 'k', sizeof(longkey));
    int created = -1;
    cr_assert_null(sim_table_get_or_add(t, "", 0, &created));
    cr_assert_eq(created, 0);
    cr_assert_null(sim_table_get_or_add(t, longkey, SIM_TABLE_KEY_MAX, &created));
    cr_assert_not_null(sim_table_get_or_add(t, longkey, SIM_TABLE_KEY_MAX - 1, &created));
    cr_assert_null(sim_table_find(t, longkey, SIM_TABLE_KEY_MAX));
    cr_assert_not_null(sim_table_find(t, longkey, SIM_TABLE_KEY_MAX - 1));
    sim_table_free(t);
}

Test(sim, table_full_refuses_new_keys_but_finds_old_ones)
{
    struct sim_table *t = sim_table_new(sizeof(struct rec), 3, 0);
    int created;
    cr_assert_not_null(sim_table_get_or_add(t, "a", 1, &created));
    cr_assert_not_null(sim_table_get_or_add(t, "b", 1, &created));
    cr_assert_not_null(sim_table_get_or_add(t, "c", 1, &created));
    cr_assert_null(sim_table_get_or_add(t, "d", 1, &created));
    cr_assert_not_null(sim_table_get_or_add(t, "b", 1, &created));
    cr_assert_eq(created, 0);
    sim_table_free(t);
}

Test(sim, table_clear_forgets_everything)
{
    struct sim_table *t = sim_table_new(sizeof(struct rec), 20000, 3);
    char buf[32];
    int created;
    for (int i = 0; i < 10000; i++) {
        struct rec *r = sim_table_get_or_add(t, buf, key_of(i, buf), &created);
        r->n = i;
    }
    sim_table_clear(t);
    cr_assert_eq(sim_table_count(t), 0);
    for (int i = 0; i < 10000; i++)
        cr_assert_null(sim_table_find(t, buf, key_of(i, buf)));
    struct rec *r = sim_table_get_or_add(t, "key-5", 5, &created);
    cr_assert(r && created);
    cr_assert_eq(r->n, 0, "a reused slot is zeroed");
    sim_table_free(t);
}

Test(sim, table_hash_depends_on_seed_and_key)
{
    cr_assert_eq(sim_table_hash("x", 1, 1), sim_table_hash("x", 1, 1));
    cr_assert_neq(sim_table_hash("x", 1, 1), sim_table_hash("x", 1, 2));
    cr_assert_neq(sim_table_hash("x", 1, 1), sim_table_hash("y", 1, 1));
}

/* ---- sim_faults ---------------------------------------------------------------- */

static struct sim_faults faults(double error_rate, double timeout_rate, int64_t fail_next)
{
    return (struct sim_faults){ .latency_ms = 0, .error_rate = error_rate,
                                .error_status = 503, .timeout_rate = timeout_rate,
                                .fail_next = fail_next };
}

Test(sim, fault_fail_next_counts_down_then_stops)
{
    struct sim_rng r;
    sim_rng_seed(&r, 1);
    struct sim_faults f = faults(0, 0, 2);
    cr_assert_eq(sim_faults_decide(&f, &r), SIM_FAULT_FAIL_NEXT);
    cr_assert_eq(f.fail_next, 1);
    cr_assert_eq(sim_faults_decide(&f, &r), SIM_FAULT_FAIL_NEXT);
    cr_assert_eq(sim_faults_decide(&f, &r), SIM_FAULT_NONE);
    cr_assert_eq(f.fail_next, 0);
}

Test(sim, fault_fail_next_comes_before_timeouts_and_errors)
{
    struct sim_rng r;
    sim_rng_seed(&r, 1);
    struct sim_faults f = faults(1, 1, 1);
    cr_assert_eq(sim_faults_decide(&f, &r), SIM_FAULT_FAIL_NEXT);
    cr_assert_eq(sim_faults_decide(&f, &r), SIM_FAULT_TIMEOUT, "timeout before error");
}

Test(sim, fault_rates_zero_and_one)
{
    struct sim_rng r;
    sim_rng_seed(&r, 99);
    struct sim_faults none = faults(0, 0, 0), err = faults(1, 0, 0), to = faults(0, 1, 0);
    uint64_t before = r.s;
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(sim_faults_decide(&none, &r), SIM_FAULT_NONE);
    cr_assert_eq(r.s, before, "zero rates draw no random numbers");
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(sim_faults_decide(&err, &r), SIM_FAULT_ERROR);
        cr_assert_eq(sim_faults_decide(&to, &r), SIM_FAULT_TIMEOUT);
    }
}

Test(sim, fault_rate_is_roughly_honoured)
{
    struct sim_rng r;
    sim_rng_seed(&r, 2024);
    struct sim_faults f = faults(0.3, 0.1, 0);
    int n[4] = { 0 };
    for (int i = 0; i < 100000; i++)
        n[sim_faults_decide(&f, &r)]++;
    /* timeout 10%; error 30% of the remaining 90% = 27% */
    cr_assert(n[SIM_FAULT_TIMEOUT] > 9000 && n[SIM_FAULT_TIMEOUT] < 11000, "%d", n[2]);
    cr_assert(n[SIM_FAULT_ERROR] > 25500 && n[SIM_FAULT_ERROR] < 28500, "%d", n[3]);
    cr_assert_eq(n[SIM_FAULT_FAIL_NEXT], 0);
}

Test(sim, rng_unit_in_range_and_seeded_from_kernel)
{
    struct sim_rng a, b;
    sim_rng_seed(&a, 0);
    sim_rng_seed(&b, 0);
    cr_assert_neq(a.s, 0);
    cr_assert_neq(a.s, b.s, "two kernel seeds should differ");
    for (int i = 0; i < 100000; i++) {
        double u = sim_rng_unit(&a);
        cr_assert(u >= 0.0 && u < 1.0);
    }
}

Test(sim, delay_adds_at_most_ten_percent_jitter)
{
    struct sim_rng r;
    sim_rng_seed(&r, 5);
    struct sim_faults f = faults(0, 0, 0);
    cr_assert_eq(sim_faults_delay_ms(&f, &r), 0);
    f.latency_ms = 5;
    cr_assert_eq(sim_faults_delay_ms(&f, &r), 5, "under 10 ms there is no jitter");
    f.latency_ms = 200;
    int lo = 1 << 30, hi = 0;
    for (int i = 0; i < 10000; i++) {
        int d = sim_faults_delay_ms(&f, &r);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    cr_assert_eq(lo, 200);
    cr_assert_eq(hi, 220);
}

Test(sim, faults_check_names_the_bad_field)
{
    const char *field = NULL;
    struct sim_faults f = faults(0.5, 0.5, 3);
    cr_assert_eq(sim_faults_check(&f, &field), 0);
    f.error_rate = 1.01;
    cr_assert_eq(sim_faults_check(&f, &field), -1);
    cr_assert_str_eq(field, "error_rate");
    f = faults(0, -0.1, 0);
    sim_faults_check(&f, &field);
    cr_assert_str_eq(field, "timeout_rate");
    f = faults(0, 0, 0);
    f.error_status = 399;
    sim_faults_check(&f, &field);
    cr_assert_str_eq(field, "error_status");
    f.error_status = 600;
    sim_faults_check(&f, &field);
    cr_assert_str_eq(field, "error_status");
    f = faults(0, 0, 0);
    f.latency_ms = SIM_LATENCY_MAX_MS + 1;
    sim_faults_check(&f, &field);
    cr_assert_str_eq(field, "latency_ms");
    f = faults(0, 0, -1);
    sim_faults_check(&f, &field);
    cr_assert_str_eq(field, "fail_next");
    cr_assert_str_eq(sim_fault_str(SIM_FAULT_TIMEOUT), "timeout");
}
