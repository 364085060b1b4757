/* The HTTP framing checker of conveyor-api (api/api_frame.c), byte by byte.
 * It has no dependency beyond api.h's declarations, so the test compiles it
 * in (the unit test binary links only libcommon). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../api/api_frame.c"

struct run {
    int starts, heads, msgs;
    int status;                       /* 0 when nothing was refused */
    const char *why;
};

/* Feed s in pieces of step bytes (0 = all at once) and count the events. */
static struct run feed_all(const char *s, size_t n, size_t step)
{
    struct api_frame f;
    struct run r = { 0, 0, 0, 0, NULL };
    size_t off = 0;
    api_frame_init(&f);
    while (off < n && !r.status) {
        size_t piece = step && n - off > step ? step : n - off;
        const char *p = s + off;
        off += piece;
        for (;;) {
            enum api_frame_ev ev;
            size_t k = api_frame_feed(&f, p, piece, &ev);
            p += k;
            piece -= k;
            if (ev == API_FRAME_HEAD_START)
                r.starts++;
            else if (ev == API_FRAME_HEAD_END)
                r.heads++;
            else if (ev == API_FRAME_MSG_END)
                r.msgs++;
            else if (ev == API_FRAME_ERROR) {
                r.status = f.status;
                r.why = f.why;
                break;
            }
            if (ev == API_FRAME_NONE)
                break;
        }
    }
    return r;
}

/* The same verdict whether the bytes come at once or one by one. */
static struct run check_n(const char *s, size_t n)
{
    struct run a = feed_all(s, n, 0), b = feed_all(s, n, 1), c = feed_all(s, n, 7);
    cr_assert_eq(a.status, b.status, "%s", s);
    cr_assert_eq(a.msgs, b.msgs, "%s", s);
    cr_assert_eq(a.status, c.status, "%s", s);
    cr_assert_eq(a.msgs, c.msgs, "%s", s);
    return a;
}

static struct run check(const char *s)
{
    return check_n(s, strlen(s));
}

#define POST "POST /v1/jobs/noop HTTP/1.1\r\nHost: x\r\n"

Test(http_frame, plain_requests_pipelined)
{
    struct run r = check("GET /health HTTP/1.1\r\nHost: x\r\n\r\n" POST
                         "Content-Length: 2\r\n\r\n{}"
                         "GET /ready HTTP/1.1\n\n");
    cr_assert_eq(r.status, 0, "%s", r.why);
    cr_assert_eq(r.starts, 3);
    cr_assert_eq(r.heads, 1, "only the POST has a body");
    cr_assert_eq(r.msgs, 3);
}

Test(http_frame, chunked_body_is_followed_to_its_end)
{
    struct run r = check(POST "Transfer-Encoding: chunked\r\n\r\n"
                              "2\r\n{}\r\n1a\r\n" "aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n0\r\n\r\n"
                              "GET / HTTP/1.1\r\n\r\n");
    cr_assert_eq(r.status, 0, "%s", r.why);
    cr_assert_eq(r.msgs, 2);
}

Test(http_frame, a_partial_request_is_not_a_message)
{
    struct run r = check(POST "Content-Length: 10\r\n\r\n{}");
    cr_assert_eq(r.status, 0);
    cr_assert_eq(r.heads, 1);
    cr_assert_eq(r.msgs, 0);
}

Test(http_frame, content_length_twice_is_refused_even_when_equal)
{
    cr_assert_eq(check(POST "Content-Length: 44\r\nContent-Length: 45\r\n\r\n").status, 400);
    cr_assert_eq(check(POST "Content-Length: 2\r\ncontent-length: 2\r\n\r\n{}").status, 400);
}

Test(http_frame, content_length_must_be_digits)
{
    const char *bad[] = { "+5", "0x5", "5 5", "5,5", "", "-1", "99999999999999999999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), POST "Content-Length: %s\r\n\r\n", bad[i]);
        cr_assert_eq(check(req).status, 400, "%s", bad[i]);
    }
    cr_assert_eq(check(POST "Content-Length:  2 \r\n\r\n{}").msgs, 1, "spaces around are fine");
}

Test(http_frame, transfer_encoding_rules)
{
    cr_assert_eq(check(POST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n").status,
                 400);
    cr_assert_eq(check(POST "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n").status,
                 400);
    cr_assert_eq(check(POST "Transfer-Encoding: gzip\r\n\r\n").status, 501);
    cr_assert_eq(check(POST "Transfer-Encoding: gzip, chunked\r\n\r\n").status, 501);
    cr_assert_eq(check(POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")
                     .status,
                 400);
    cr_assert_eq(check("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").status,
                 400);
    cr_assert_eq(check(POST "Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n").msgs, 1);
}

Test(http_frame, obs_fold_and_malformed_names_are_refused)
{
    struct run r = check(POST "X-A: 1\r\n continued\r\n\r\n");
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.why, "folding") != NULL);
    cr_assert_eq(check(POST "X-A: 1\r\n\tcontinued\r\n\r\n").status, 400);
    cr_assert_eq(check(POST "Content-Length : 2\r\n\r\n{}").status, 400);
    cr_assert_eq(check(POST "No colon here\r\n\r\n").status, 400);
    cr_assert_eq(check(POST ": empty name\r\n\r\n").status, 400);
}

Test(http_frame, bare_cr_and_control_characters_are_refused)
{
    cr_assert_eq(check(POST "X-A: 1\rX-B: 2\r\n\r\n").status, 400);
    cr_assert_eq(check(POST "X-A: \x01\r\n\r\n").status, 400);
    char nul[] = POST "X-A: 1\r\n\r\n";
    nul[strlen(POST) + 5] = '\0';     /* evhttp would cut the value there */
    cr_assert_eq(check_n(nul, sizeof(nul) - 1).status, 400);
}

Test(http_frame, chunk_sizes_are_plain_hex_and_trailers_are_refused)
{
    cr_assert_eq(check(POST "Transfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{}\r\n0\r\n\r\n").status,
                 400);
    cr_assert_eq(check(POST "Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n").status,
                 400);
    cr_assert_eq(check(POST "Transfer-Encoding: chunked\r\n\r\n2\r\n{}x\r\n0\r\n\r\n").status,
                 400);
    cr_assert_eq(check(POST "Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n").status, 400);
    cr_assert_eq(check(POST "Transfer-Encoding: chunked\r\n\r\n1000000000000000\r\n").status,
                 400);
}

Test(http_frame, methods_and_bodies)
{
    cr_assert_eq(check("HEAD / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").status, 400);
    cr_assert_eq(check("BREW /pot HTTP/1.1\r\n\r\n").status, 501);
    cr_assert_eq(check("\r\nGET / HTTP/1.1\r\n\r\n").status, 400, "empty request line");
    cr_assert_eq(check("GET\r\n\r\n").status, 400);
    struct run r = check("DELETE /x HTTP/1.1\r\n\r\nOPTIONS * HTTP/1.1\r\n\r\n");
    cr_assert_eq(r.msgs, 2);
}

Test(http_frame, an_error_is_sticky)
{
    struct api_frame f;
    enum api_frame_ev ev;
    const char *bad = POST "X: 1\r\n y\r\n\r\n";
    api_frame_init(&f);
    size_t off = 0, n = strlen(bad);
    do {
        off += api_frame_feed(&f, bad + off, n - off, &ev);
    } while (ev != API_FRAME_ERROR && off < n);
    cr_assert_eq(ev, API_FRAME_ERROR);
    cr_assert_eq(api_frame_feed(&f, "GET / HTTP/1.1\r\n\r\n", 18, &ev), 0);
    cr_assert_eq(ev, API_FRAME_ERROR);
}
