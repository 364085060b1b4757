/* sim_faults.h - the faults the simulator injects, and the cheap PRNG that
 * decides them.
 *
 * A call to an outside system is first run through sim_faults_decide(), in
 * this order: fail_next (a counter tests set to fail exactly N calls), then
 * timeout_rate (never answer), then error_rate (answer error_status). Only a
 * call that gets SIM_FAULT_NONE may touch the system's records, so a faulted
 * call has no effect. Every answer, faulted or not, waits
 * sim_faults_delay_ms(): latency_ms plus up to 10% jitter.
 *
 * Pure code, single-threaded (the sim's event loop). */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include <stdint.h>

#define SIM_LATENCY_MAX_MS 600000
#define SIM_FAIL_NEXT_MAX 1000000000LL
#define SIM_ERROR_STATUS_MIN 400
#define SIM_ERROR_STATUS_MAX 599

/* xorshift64*: fast, not cryptographic; fine for fault dice. */
struct sim_rng {
    uint64_t s;
};

/* Seed r; seed 0 takes 8 bytes from the kernel (getrandom). */
void sim_rng_seed(struct sim_rng *r, uint64_t seed);
uint64_t sim_rng_next(struct sim_rng *r);
/* Uniform in [0, 1). */
double sim_rng_unit(struct sim_rng *r);

struct sim_faults {
    int latency_ms;                      /* 0..SIM_LATENCY_MAX_MS */
    double error_rate;                   /* 0..1 */
    int error_status;                    /* 400..599 */
    double timeout_rate;                 /* 0..1 */
    int64_t fail_next;                   /* 0..SIM_FAIL_NEXT_MAX */
};

enum sim_fault {
    SIM_FAULT_NONE,
    SIM_FAULT_FAIL_NEXT,                 /* answer error_status, fail_next was > 0 */
    SIM_FAULT_TIMEOUT,                   /* never answer */
    SIM_FAULT_ERROR,                     /* answer error_status, by error_rate */
};

const char *sim_fault_str(enum sim_fault f);

/* Decide the fault for one call; decrements fail_next when it fires. */
enum sim_fault sim_faults_decide(struct sim_faults *f, struct sim_rng *r);

/* One "the next N, or this fraction" switch: 1 when it fires. *next counts
 * down first; a rate of 0 draws nothing. */
int sim_faults_switch(int64_t *next, double rate, struct sim_rng *r);

/* How long to wait before answering: latency_ms plus 0..10% jitter. */
int sim_faults_delay_ms(const struct sim_faults *f, struct sim_rng *r);

/* 0 when every field is in range, else -1 with *field naming the first bad one. */
int sim_faults_check(const struct sim_faults *f, const char **field);

#endif
