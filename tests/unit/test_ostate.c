/* The order state machine: every pair of states against a matrix written out
 * here, so that changing common/ostate.c's table means changing this test too. */
#include <criterion/criterion.h>
#include <string.h>

#include "ostate.h"

/* Rows: from, columns: to, both in enum order:
 * PENDING_POST POSTED AWAITING_TRACKING TRACKED MIRAKL_OK COMPLETE FAILED_POST
 * FAILED_TRACKING FAILED_PUSH. */
static const int expected[9][9] = {
    /*                    PP PO AT TR MO CO FP FT FU */
    /* PENDING_POST */    { 0, 1, 0, 0, 0, 0, 1, 0, 0 },
    /* POSTED */          { 0, 0, 1, 0, 0, 0, 1, 0, 0 },
    /* AWAITING_TRACK */  { 0, 0, 0, 1, 0, 0, 0, 1, 0 },
    /* TRACKED */         { 0, 0, 0, 0, 1, 0, 0, 0, 1 },
    /* MIRAKL_OK */       { 0, 0, 0, 0, 0, 1, 0, 0, 0 },
    /* COMPLETE */        { 0, 0, 0, 0, 0, 0, 0, 0, 0 },
    /* FAILED_POST */     { 1, 0, 0, 0, 0, 0, 0, 0, 0 },
    /* FAILED_TRACKING */ { 1, 0, 1, 0, 0, 0, 0, 0, 0 },
    /* FAILED_PUSH */     { 1, 0, 0, 1, 0, 0, 0, 0, 0 },
};

static const char *const expected_names[9] = {
    "PENDING_POST", "POSTED", "AWAITING_TRACKING", "TRACKED", "MIRAKL_OK",
    "COMPLETE", "FAILED_POST", "FAILED_TRACKING", "FAILED_PUSH",
};

Test(ostate, nine_states)
{
    cr_assert_eq(OSTATE_N, 9);
}

Test(ostate, every_pair_matches_the_expected_matrix)
{
    int n = 0;
    for (int f = 0; f < 9; f++)
        for (int t = 0; t < 9; t++) {
            cr_assert_eq(ostate_allowed((enum ostate)f, (enum ostate)t), expected[f][t],
                         "%s -> %s: table says %d, expected %d", expected_names[f],
                         expected_names[t], ostate_allowed((enum ostate)f, (enum ostate)t),
                         expected[f][t]);
            n += expected[f][t];
        }
    cr_assert_eq(n, 14, "seed 004 has 14 edges");
}

Test(ostate, out_of_range_is_never_allowed)
{
    cr_assert_not(ostate_allowed(OSTATE_N, OSTATE_POSTED));
    cr_assert_not(ostate_allowed(OSTATE_PENDING_POST, OSTATE_N));
    cr_assert_not(ostate_allowed((enum ostate)-1, OSTATE_POSTED));
    cr_assert_eq(ostate_rank(OSTATE_N), -1);
    cr_assert_str_eq(ostate_str(OSTATE_N), "?");
    cr_assert_str_eq(ostate_str((enum ostate)-1), "?");
}

Test(ostate, str_parse_round_trip)
{
    for (int s = 0; s < OSTATE_N; s++) {
        cr_assert_str_eq(ostate_str((enum ostate)s), expected_names[s]);
        cr_assert_eq(ostate_parse(expected_names[s]), s);
    }
    cr_assert_eq(ostate_parse(NULL), -1);
    cr_assert_eq(ostate_parse(""), -1);
    cr_assert_eq(ostate_parse("posted"), -1, "names are exact, upper case");
    cr_assert_eq(ostate_parse("POSTED "), -1);
    cr_assert_eq(ostate_parse("FAILED"), -1);
}

Test(ostate, rank_rises_along_the_happy_path)
{
    static const enum ostate path[] = {
        OSTATE_PENDING_POST, OSTATE_POSTED, OSTATE_AWAITING_TRACKING,
        OSTATE_TRACKED, OSTATE_MIRAKL_OK, OSTATE_COMPLETE,
    };
    for (size_t i = 1; i < sizeof(path) / sizeof(path[0]); i++) {
        cr_assert(ostate_allowed(path[i - 1], path[i]));
        cr_assert_gt(ostate_rank(path[i]), ostate_rank(path[i - 1]), "%s", ostate_str(path[i]));
    }
    cr_assert_eq(ostate_rank(OSTATE_PENDING_POST), 0);
    cr_assert_eq(ostate_rank(OSTATE_COMPLETE), 5);
}

Test(ostate, only_retry_edges_lower_the_rank)
{
    for (int f = 0; f < OSTATE_N; f++)
        for (int t = 0; t < OSTATE_N; t++) {
            if (!expected[f][t])
                continue;
            if (ostate_failed((enum ostate)f))
                cr_assert_lt(ostate_rank((enum ostate)t), ostate_rank((enum ostate)f),
                             "retry %s -> %s goes back", expected_names[f], expected_names[t]);
            else
                cr_assert_geq(ostate_rank((enum ostate)t), ostate_rank((enum ostate)f),
                              "%s -> %s moves back", expected_names[f], expected_names[t]);
        }
}

Test(ostate, terminal_and_failed)
{
    for (int s = 0; s < OSTATE_N; s++) {
        cr_assert_eq(ostate_terminal((enum ostate)s), s == OSTATE_COMPLETE);
        cr_assert_eq(ostate_failed((enum ostate)s), strncmp(expected_names[s], "FAILED_", 7) == 0);
        /* a terminal state has no way out; every other state has one */
        int out = 0;
        for (int t = 0; t < OSTATE_N; t++)
            out += ostate_allowed((enum ostate)s, (enum ostate)t);
        cr_assert_eq(out == 0, ostate_terminal((enum ostate)s), "%s", expected_names[s]);
    }
}

Test(ostate, tracking_vocabulary_round_trip)
{
    static const char *const names[] = {
        "ACCEPTED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED", "EXCEPTION",
    };
    cr_assert_eq(OTRACK_N, 5);
    for (int t = 0; t < OTRACK_N; t++) {
        cr_assert_str_eq(otrack_str((enum otrack)t), names[t]);
        cr_assert_eq(otrack_parse(names[t]), t);
    }
    cr_assert_eq(otrack_parse("delivered"), -1);
    cr_assert_eq(otrack_parse(NULL), -1);
    cr_assert_str_eq(otrack_str(OTRACK_N), "?");
}

Test(ostate, tracking_targets)
{
    for (int term = 0; term < 2; term++) {
        cr_assert_eq(otrack_target(OTRACK_ACCEPTED, term), OSTATE_TRACKED);
        cr_assert_eq(otrack_target(OTRACK_IN_TRANSIT, term), OSTATE_TRACKED);
        cr_assert_eq(otrack_target(OTRACK_OUT_FOR_DELIVERY, term), OSTATE_TRACKED);
        cr_assert_eq(otrack_target(OTRACK_DELIVERED, term), OSTATE_TRACKED);
    }
    cr_assert_eq(otrack_target(OTRACK_EXCEPTION, 0), -1);
    cr_assert_eq(otrack_target(OTRACK_EXCEPTION, 1), OSTATE_FAILED_TRACKING);
    cr_assert_eq(otrack_target(OTRACK_N, 1), -1);
    /* every target is reachable from AWAITING_TRACKING by one edge */
    for (int t = 0; t < OTRACK_N; t++)
        for (int term = 0; term < 2; term++) {
            int s = otrack_target((enum otrack)t, term);
            if (s >= 0)
                cr_assert(ostate_allowed(OSTATE_AWAITING_TRACKING, (enum ostate)s));
        }
}
