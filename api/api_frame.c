/* api_frame.c - HTTP/1.1 request framing, checked on the raw bytes.
 *
 * evhttp parses requests itself and is lenient where leniency is dangerous:
 * with two Content-Length headers it uses the first, it folds continuation
 * lines (obs-fold) into the previous header, it reads a chunked body even
 * when a Content-Length is there too, and it takes any other
 * Transfer-Encoding as "use Content-Length". Behind a proxy that frames the
 * same bytes differently, each of these is request smuggling. So every byte a
 * client sends passes through this checker first (api_conn.c feeds it from
 * the connection's input buffer before evhttp sees the bytes), and a request
 * whose framing is not unambiguous never reaches evhttp or a handler.
 *
 * The checker follows requests the way evhttp does (same line ends: LF with
 * an optional CR before it; same body rules: chunked, else Content-Length,
 * else none) but accepts less: whatever it lets through, evhttp frames the
 * same way, and whatever evhttp would frame differently it refuses. It keeps
 * no copy of the request: a few bytes of the current line and the facts of
 * the current head. It also reports where a head starts and ends and where a
 * request ends, which api_conn.c needs for its header and body deadlines. */
#include <string.h>
#include <strings.h>

#include "api.h"

enum {
    FR_IDLE,                          /* between requests */
    FR_HEAD,                          /* request line and header lines */
    FR_BODY,                          /* Content-Length bytes */
    FR_CHUNK_SIZE,                    /* a chunk-size line */
    FR_CHUNK_DATA,                    /* chunk bytes */
    FR_CHUNK_END,                     /* the empty line after a chunk's bytes */
    FR_TRAILER,                       /* after the last chunk: must be an empty line */
    FR_ERROR,                         /* sticky */
};

void api_frame_init(struct api_frame *f)
{
    memset(f, 0, sizeof(*f));
    f->state = FR_IDLE;
}

int api_frame_mid_head(const struct api_frame *f)
{
    return f->state == FR_HEAD;
}

int api_frame_mid_body(const struct api_frame *f)
{
    return f->state >= FR_BODY && f->state <= FR_TRAILER;
}

static enum api_frame_ev fail(struct api_frame *f, int status, const char *why)
{
    f->state = FR_ERROR;
    f->status = status;
    f->why = why;
    return API_FRAME_ERROR;
}

static void line_reset(struct api_frame *f)
{
    f->len = 0;
    f->cr = 0;
    f->in_name = 1;
    f->nlen = 0;
    f->vlen = 0;
    f->vlong = 0;
    f->num = 0;
}

/* RFC 9110 token characters (a header field name). */
static int tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One byte of a line (not its end). Head and trailer lines are split into
 * name and value as they come; chunk-size lines into a number. */
static enum api_frame_ev line_byte(struct api_frame *f, unsigned char c)
{
    if ((c < 0x20 && c != '\t') || c == 0x7f)
        return fail(f, 400, "control character in the request head");
    size_t pos = f->len++;
    if (f->state == FR_CHUNK_SIZE) {
        int h = hexval(c);
        if (h < 0 || pos >= 15)
            return fail(f, 400, "malformed chunk size (hex digits only, no extensions)");
        f->num = f->num * 16 + (uint64_t)h;
        return API_FRAME_NONE;
    }
    if (f->state == FR_CHUNK_END)
        return fail(f, 400, "chunk data longer than its size");
    if (f->state == FR_TRAILER)
        return fail(f, 400, "trailer fields are not supported");
    if (f->first) {
        /* the request line: keep the method and the last bytes (the version) */
        if (pos < sizeof(f->method) - 1 && !f->method_done) {
            if (c == ' ')
                f->method_done = 1;
            else
                f->method[pos] = (char)c;
        } else if (pos >= sizeof(f->method) - 1 && !f->method_done) {
            f->method_done = 1;           /* too long for any method we know */
            f->method[0] = '?';
        }
        memmove(f->tail, f->tail + 1, sizeof(f->tail) - 2);
        f->tail[sizeof(f->tail) - 2] = (char)c;
        return API_FRAME_NONE;
    }
    if (pos == 0 && (c == ' ' || c == '\t'))
        return fail(f, 400, "obsolete line folding (a header continued on the next line)");
    if (f->in_name) {
        if (c == ':') {
            if (pos == 0)
                return fail(f, 400, "empty header field name");
            f->in_name = 0;
            return API_FRAME_NONE;
        }
        if (!tchar(c))
            return fail(f, 400, "malformed header field name (no space before the colon)");
        if (f->nlen < sizeof(f->name) - 1)
            f->name[f->nlen] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        f->nlen++;
        return API_FRAME_NONE;
    }
    if (f->vlen == 0 && (c == ' ' || c == '\t'))
        return API_FRAME_NONE;            /* leading whitespace */
    if (f->vlen < sizeof(f->val) - 1)
        f->val[f->vlen++] = (char)c;
    else
        f->vlong = 1;
    return API_FRAME_NONE;
}

static int name_is(const struct api_frame *f, const char *name)
{
    size_t n = strlen(name);
    return f->nlen == n && memcmp(f->name, name, n) == 0;
}

static enum api_frame_ev request_line(struct api_frame *f)
{
    static const char *const body_ok[] = { "GET", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT",
                                           "PATCH" };
    if (f->len == 0)
        return fail(f, 400, "empty request line");
    if (!f->method_done)
        return fail(f, 400, "malformed request line");
    int known = 0;
    for (size_t i = 0; i < sizeof(body_ok) / sizeof(body_ok[0]); i++)
        known |= strcmp(f->method, body_ok[i]) == 0;
    f->no_body = strcmp(f->method, "HEAD") == 0 || strcmp(f->method, "TRACE") == 0;
    if (!known && !f->no_body)
        return fail(f, 501, "method not supported");
    /* the version is the last word: trailing spaces are not allowed here */
    f->http10 = memcmp(f->tail + sizeof(f->tail) - 1 - 8, "HTTP/1.0", 8) == 0;
    f->first = 0;
    return API_FRAME_NONE;
}

static enum api_frame_ev header_line(struct api_frame *f)
{
    if (f->in_name)
        return fail(f, 400, "header line without a colon");
    while (f->vlen > 0 && (f->val[f->vlen - 1] == ' ' || f->val[f->vlen - 1] == '\t'))
        f->vlen--;
    f->val[f->vlen] = '\0';
    if (name_is(f, "content-length")) {
        uint64_t v = 0;
        if (f->vlen == 0 || f->vlen > 18 || f->vlong)
            return fail(f, 400, "Content-Length must be a number");
        for (size_t i = 0; i < f->vlen; i++) {
            if (f->val[i] < '0' || f->val[i] > '9')
                return fail(f, 400, "Content-Length must be a number");
            v = v * 10 + (uint64_t)(f->val[i] - '0');
        }
        /* RFC 9112 6.3: a repeated Content-Length, even an equal one, is refused */
        if (f->n_cl++)
            return fail(f, 400, "more than one Content-Length");
        f->cl = v;
    } else if (name_is(f, "transfer-encoding")) {
        if (f->n_te++)
            return fail(f, 400, "more than one Transfer-Encoding");
        f->te_chunked = !f->vlong && strcasecmp(f->val, "chunked") == 0;
    }
    return API_FRAME_NONE;
}

/* The empty line that ends a head: decide how the body is framed. */
static enum api_frame_ev head_end(struct api_frame *f)
{
    if (f->n_cl && f->n_te)
        return fail(f, 400, "Content-Length together with Transfer-Encoding");
    if (f->n_te && !f->te_chunked)
        return fail(f, 501, "Transfer-Encoding other than chunked is not supported");
    if (f->n_te && f->http10)
        return fail(f, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (f->no_body && (f->n_te || f->cl > 0))
        return fail(f, 400, "a body on a HEAD or TRACE request");
    if (f->n_te) {
        f->state = FR_CHUNK_SIZE;
        return API_FRAME_HEAD_END;
    }
    if (f->cl > 0) {
        f->state = FR_BODY;
        f->left = f->cl;
        return API_FRAME_HEAD_END;
    }
    f->state = FR_IDLE;
    return API_FRAME_MSG_END;
}

/* A line has ended (LF seen). */
static enum api_frame_ev line_end(struct api_frame *f)
{
    enum api_frame_ev ev = API_FRAME_NONE;
    switch (f->state) {
    case FR_HEAD:
        if (f->first)
            ev = request_line(f);
        else if (f->len == 0)
            ev = head_end(f);
        else
            ev = header_line(f);
        break;
    case FR_CHUNK_SIZE:
        if (f->len == 0)
            return fail(f, 400, "malformed chunk size (hex digits only, no extensions)");
        f->left = f->num;
        f->state = f->num ? FR_CHUNK_DATA : FR_TRAILER;
        break;
    case FR_CHUNK_END:
        f->state = FR_CHUNK_SIZE;         /* the line was empty (line_byte refused others) */
        break;
    case FR_TRAILER:
        f->state = FR_IDLE;
        ev = API_FRAME_MSG_END;
        break;
    default:
        break;
    }
    line_reset(f);
    return ev;
}

size_t api_frame_feed(struct api_frame *f, const char *p, size_t n, enum api_frame_ev *ev)
{
    size_t i = 0;
    *ev = API_FRAME_NONE;
    if (f->state == FR_ERROR) {
        *ev = API_FRAME_ERROR;
        return 0;
    }
    while (i < n && *ev == API_FRAME_NONE) {
        if (f->state == FR_IDLE) {
            /* the first byte of a request: nothing of it is consumed yet */
            f->state = FR_HEAD;
            f->first = 1;
            f->method_done = 0;
            memset(f->method, 0, sizeof(f->method));
            memset(f->tail, 0, sizeof(f->tail));
            f->n_cl = f->n_te = f->te_chunked = f->no_body = f->http10 = 0;
            f->cl = 0;
            line_reset(f);
            *ev = API_FRAME_HEAD_START;
            break;
        }
        if (f->state == FR_BODY || f->state == FR_CHUNK_DATA) {
            size_t take = n - i;
            if ((uint64_t)take > f->left)
                take = (size_t)f->left;
            f->left -= take;
            i += take;
            if (f->left == 0) {
                if (f->state == FR_CHUNK_DATA) {
                    f->state = FR_CHUNK_END;
                    line_reset(f);
                } else {
                    f->state = FR_IDLE;
                    *ev = API_FRAME_MSG_END;
                }
            }
            continue;
        }
        unsigned char c = (unsigned char)p[i++];
        if (c == '\n')
            *ev = line_end(f);
        else if (f->cr)
            *ev = fail(f, 400, "CR not followed by LF");
        else if (c == '\r')
            f->cr = 1;
        else
            *ev = line_byte(f, c);
    }
    return i;
}
