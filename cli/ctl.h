/* ctl.h - conveyorctl: the operator's command line.
 *
 * main.c reads the global options and the config, then hands the rest of the
 * command line to one ctl_<command>() function. Each returns the process exit
 * code: CTL_EXIT_OK, CTL_EXIT_FAIL (the operation failed) or CTL_EXIT_USAGE
 * (bad usage or configuration). argv[0] is the command name. */
#ifndef CV_CTL_H
#define CV_CTL_H

#include <stdint.h>

#include "cfg.h"

enum { CTL_EXIT_OK = 0, CTL_EXIT_FAIL = 1, CTL_EXIT_USAGE = 2 };

/* When argv[*i] is option name, as "--name VALUE" or "--name=VALUE": set *val,
 * move *i to the last word used and return 1. Return 0 when argv[*i] is
 * something else, -1 (after printing why) when the value is missing. */
int ctl_opt(int argc, char **argv, int *i, const char *name, const char **val);

/* Parse a whole decimal number in [min,max]. 0, or -1 when it is not one. */
int ctl_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Print "conveyorctl: <message>" to stderr and return CTL_EXIT_USAGE (with a
 * pointer to --help) or CTL_EXIT_FAIL. */
int ctl_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ctl_migrate.c */
int ctl_migrate(const struct cfg *c, int argc, char **argv);
/* ctl_seed.c */
int ctl_seed(const struct cfg *c, int argc, char **argv);
/* ctl_jobs.c */
int ctl_submit(const struct cfg *c, int argc, char **argv);
int ctl_status(const struct cfg *c, int argc, char **argv);
int ctl_dead(const struct cfg *c, int argc, char **argv);
int ctl_retry(const struct cfg *c, int argc, char **argv);
int ctl_purge(const struct cfg *c, int argc, char **argv);
int ctl_queues(const struct cfg *c, int argc, char **argv);
int ctl_workers(const struct cfg *c, int argc, char **argv);
/* ctl_held.c */
int ctl_held(const struct cfg *c, int argc, char **argv);
/* ctl_orders.c */
int ctl_orders(const struct cfg *c, int argc, char **argv);
int ctl_order(const struct cfg *c, int argc, char **argv);
int ctl_ops(const struct cfg *c, int argc, char **argv);
/* ctl_hash.c: needs no config. */
int ctl_hash_key(int argc, char **argv);

#endif
