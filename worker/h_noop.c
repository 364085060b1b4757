/* h_noop.c - a job that does nothing: the benchmark's measure of the
 * machinery itself (consume, start, settle). */
#include "wrk.h"

void h_noop(struct wrk_ctx *ctx, struct job **jobs, size_t n, struct wrk_result *res)
{
    (void)ctx;
    (void)jobs;
    for (size_t i = 0; i < n; i++)
        res[i].rc = CV_OK;
}
