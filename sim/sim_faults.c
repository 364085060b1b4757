#include "sim_faults.h"

#include <math.h>

#include "uuid.h"

void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
    while (seed == 0)                    /* xorshift must not start at 0 */
        uuid_random_bytes(&seed, sizeof(seed));
    r->s = seed;
}

uint64_t sim_rng_next(struct sim_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

double sim_rng_unit(struct sim_rng *r)
{
    return (double)(sim_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); /* 53 bits */
}

static const char *const fault_names[] = {
    [SIM_FAULT_NONE] = "none",
    [SIM_FAULT_FAIL_NEXT] = "fail_next",
    [SIM_FAULT_TIMEOUT] = "timeout",
    [SIM_FAULT_ERROR] = "error",
};

const char *sim_fault_str(enum sim_fault f)
{
    if ((unsigned)f >= sizeof(fault_names) / sizeof(fault_names[0]))
        return "unknown";
    return fault_names[f];
}

/* Rates of exactly 0 draw nothing, so a sim without faults stays
 * deterministic and a rate of 1 always fires ([0,1) < 1). */
enum sim_fault sim_faults_decide(struct sim_faults *f, struct sim_rng *r)
{
    if (f->fail_next > 0) {
        f->fail_next--;
        return SIM_FAULT_FAIL_NEXT;
    }
    if (f->timeout_rate > 0 && sim_rng_unit(r) < f->timeout_rate)
        return SIM_FAULT_TIMEOUT;
    if (f->error_rate > 0 && sim_rng_unit(r) < f->error_rate)
        return SIM_FAULT_ERROR;
    return SIM_FAULT_NONE;
}

int sim_faults_switch(int64_t *next, double rate, struct sim_rng *r)
{
    if (*next > 0) {
        (*next)--;
        return 1;
    }
    return rate > 0 && sim_rng_unit(r) < rate;
}

int sim_faults_delay_ms(const struct sim_faults *f, struct sim_rng *r)
{
    if (f->latency_ms <= 0)
        return 0;
    int jitter_max = f->latency_ms / 10;
    if (jitter_max == 0)
        return f->latency_ms;
    return f->latency_ms + (int)(sim_rng_next(r) % (uint64_t)(jitter_max + 1));
}

static int rate_ok(double v)
{
    return isfinite(v) && v >= 0.0 && v <= 1.0;
}

int sim_faults_check(const struct sim_faults *f, const char **field)
{
    if (f->latency_ms < 0 || f->latency_ms > SIM_LATENCY_MAX_MS)
        *field = "latency_ms";
    else if (!rate_ok(f->error_rate))
        *field = "error_rate";
    else if (f->error_status < SIM_ERROR_STATUS_MIN || f->error_status > SIM_ERROR_STATUS_MAX)
        *field = "error_status";
    else if (!rate_ok(f->timeout_rate))
        *field = "timeout_rate";
    else if (f->fail_next < 0 || f->fail_next > SIM_FAIL_NEXT_MAX)
        *field = "fail_next";
    else
        return 0;
    return -1;
}
