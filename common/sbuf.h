/* sbuf.h - a growable byte buffer for building replies, SQL params and JSON.
 *
 * Caller-owned storage: sbuf_init / sbuf_cleanup. The content is always
 * NUL-terminated. Allocation failure aborts (see mem.h). */
#ifndef CV_SBUF_H
#define CV_SBUF_H

#include <stddef.h>
#include <stdint.h>

struct sbuf {
    char *p;
    size_t len;
    size_t cap;
};

void sbuf_init(struct sbuf *b);
void sbuf_cleanup(struct sbuf *b);
void sbuf_reset(struct sbuf *b);
void sbuf_add(struct sbuf *b, const void *data, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a quoted, escaped JSON string. */
void sbuf_add_json_str(struct sbuf *b, const char *s);
void sbuf_add_json_strn(struct sbuf *b, const char *s, size_t n);
/* Take the buffer: the caller frees the result; b is reset. */
char *sbuf_take(struct sbuf *b, size_t *len);

#endif
