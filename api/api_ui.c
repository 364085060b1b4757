/* api_ui.c - the dashboard's files: GET /ui and GET /ui/{file}.
 *
 * The files of ui/ are compiled into conveyor-api (build/gen/ui_assets.c, made
 * by scripts/ui_embed.sh at build time). Why embedded rather than read from a
 * directory: the binary serves exactly the dashboard its own API speaks (no
 * version skew after a deploy), there is no file-system path to traverse or
 * forget to ship, and a read-only container needs nothing beside the binary.
 * Changing the dashboard means rebuilding conveyor-api, which `make` does when a
 * file of ui/ changes.
 *
 * The files are open (no key): they hold no data. Every reply carries the
 * security headers below and "Cache-Control: no-cache": the browser keeps a
 * copy but asks again each time, and the ETag that api_reply() puts on every
 * GET makes that ask a 304 until the binary changes. */
#include <string.h>

#include "api.h"

void api_ui_security_headers(struct req *r)
{
    /* default-src 'self': scripts, styles, images and fetches come from this
     * origin only, and no inline script or style runs (the dashboard has
     * none); frame-ancestors and X-Frame-Options: nobody frames it
     * (clickjacking on the replay and purge buttons). */
    api_add_header(r, "Content-Security-Policy",
                   "default-src 'self'; object-src 'none'; base-uri 'none'; "
                   "form-action 'self'; frame-ancestors 'none'");
    api_add_header(r, "X-Frame-Options", "DENY");
    api_add_header(r, "Referrer-Policy", "no-referrer");
    api_add_header(r, "X-Content-Type-Options", "nosniff");
}

static void serve(struct req *r, const char *name)
{
    const struct api_ui_asset *a = NULL;
    for (int i = 0; i < api_ui_nassets && !a; i++)
        if (strcmp(api_ui_assets[i].name, name) == 0)
            a = &api_ui_assets[i];
    api_ui_security_headers(r);
    if (!a) {
        api_reply_err(r, CV_ERR_NOT_FOUND, "no such file", NULL);
        return;
    }
    api_add_header(r, "Cache-Control", "no-cache");
    api_reply(r, 200, a->content_type, (const char *)a->data, a->len);
}

void api_h_ui_index(struct req *r)
{
    serve(r, "index.html");
}

void api_h_ui_asset(struct req *r)
{
    serve(r, r->param[0]);
}
