/* ostate.c - the order state machine's one transition table (see ostate.h). */
#include "ostate.h"

#include <stddef.h>
#include <string.h>

static const char *const names[OSTATE_N] = {
    [OSTATE_PENDING_POST] = "PENDING_POST",
    [OSTATE_POSTED] = "POSTED",
    [OSTATE_AWAITING_TRACKING] = "AWAITING_TRACKING",
    [OSTATE_TRACKED] = "TRACKED",
    [OSTATE_MIRAKL_OK] = "MIRAKL_OK",
    [OSTATE_COMPLETE] = "COMPLETE",
    [OSTATE_FAILED_POST] = "FAILED_POST",
    [OSTATE_FAILED_TRACKING] = "FAILED_TRACKING",
    [OSTATE_FAILED_PUSH] = "FAILED_PUSH",
};

/* THE table: seed 004's "Next States" column, the FAILED_* row read as the header
 * explains. migrations/0002_orders.sql seeds order_edges with the same rows. */
#define P OSTATE_PENDING_POST
#define PO OSTATE_POSTED
#define AT OSTATE_AWAITING_TRACKING
#define TR OSTATE_TRACKED
#define MO OSTATE_MIRAKL_OK
#define CO OSTATE_COMPLETE
#define FP OSTATE_FAILED_POST
#define FT OSTATE_FAILED_TRACKING
#define FU OSTATE_FAILED_PUSH
static const unsigned char edges[OSTATE_N][OSTATE_N] = {
    [P] = { [PO] = 1, [FP] = 1 },
    [PO] = { [AT] = 1, [FP] = 1 },
    [AT] = { [TR] = 1, [FT] = 1 },
    [TR] = { [MO] = 1, [FU] = 1 },
    [MO] = { [CO] = 1 },
    [CO] = { 0 },
    [FP] = { [P] = 1 },
    [FT] = { [AT] = 1, [P] = 1 },
    [FU] = { [TR] = 1, [P] = 1 },
};

static const int ranks[OSTATE_N] = {
    [P] = 0, [PO] = 1, [AT] = 2, [TR] = 3, [MO] = 4, [CO] = 5,
    [FP] = 1, [FT] = 3, [FU] = 4,
};
#undef P
#undef PO
#undef AT
#undef TR
#undef MO
#undef CO
#undef FP
#undef FT
#undef FU

static int in_range(int s)
{
    return s >= 0 && s < OSTATE_N;
}

const char *ostate_str(enum ostate s)
{
    return in_range((int)s) ? names[s] : "?";
}

/* Look s up in a table of n names; -1 when absent. */
static int lookup(const char *const *tab, int n, const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < n; i++)
        if (strcmp(tab[i], s) == 0)
            return i;
    return -1;
}

int ostate_parse(const char *s)
{
    return lookup(names, OSTATE_N, s);
}

int ostate_allowed(enum ostate from, enum ostate to)
{
    return in_range((int)from) && in_range((int)to) && edges[from][to];
}

int ostate_rank(enum ostate s)
{
    return in_range((int)s) ? ranks[s] : -1;
}

int ostate_terminal(enum ostate s)
{
    return s == OSTATE_COMPLETE;
}

int ostate_failed(enum ostate s)
{
    return s == OSTATE_FAILED_POST || s == OSTATE_FAILED_TRACKING || s == OSTATE_FAILED_PUSH;
}

/* ---- carrier tracking ------------------------------------------------------ */

static const char *const track_names[OTRACK_N] = {
    [OTRACK_ACCEPTED] = "ACCEPTED",
    [OTRACK_IN_TRANSIT] = "IN_TRANSIT",
    [OTRACK_OUT_FOR_DELIVERY] = "OUT_FOR_DELIVERY",
    [OTRACK_DELIVERED] = "DELIVERED",
    [OTRACK_EXCEPTION] = "EXCEPTION",
};

const char *otrack_str(enum otrack t)
{
    return (int)t >= 0 && t < OTRACK_N ? track_names[t] : "?";
}

int otrack_parse(const char *s)
{
    return lookup(track_names, OTRACK_N, s);
}

int otrack_target(enum otrack t, int terminal)
{
    switch (t) {
    case OTRACK_ACCEPTED:
    case OTRACK_IN_TRANSIT:
    case OTRACK_OUT_FOR_DELIVERY:
    case OTRACK_DELIVERED:
        return OSTATE_TRACKED;
    case OTRACK_EXCEPTION:
        return terminal ? OSTATE_FAILED_TRACKING : -1;
    default:
        return -1;
    }
}
