/* soap.h - just enough SOAP 1.1 and XML for the carriers that speak it
 * (car_tipsa.c): building an envelope, escaping text, and reading the
 * elements and attributes of an answer. Not a general XML parser: no DTDs,
 * no CDATA, no namespaces beyond ignoring an element's prefix; an answer
 * that needs more is "not the expected shape" to the caller. Pure functions,
 * any thread. */
#ifndef CV_SOAP_H
#define CV_SOAP_H

#include <stddef.h>

#include "sbuf.h"

/* The opening of an envelope up to and including <soap:Body>, and its end:
 * a request is SOAP_OPEN + the method element + SOAP_CLOSE. soap_with_header()
 * inserts a header before the body. */
#define SOAP_OPEN                                                                           \
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope "                             \
    "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>"
#define SOAP_CLOSE "</soap:Body></soap:Envelope>"

/* Append s with < > & " ' escaped. */
void soap_escape(struct sbuf *b, const char *s);
/* Append <name>escaped value</name>. */
void soap_field(struct sbuf *b, const char *name, const char *value);

/* The envelope body (SOAP_OPEN ... SOAP_CLOSE) with header_xml inserted before
 * <soap:Body>: malloc'd (free it), or NULL when body has no <soap:Body>. */
char *soap_with_header(const char *body, const char *header_xml);

/* Unescape the five predefined entities and numeric references of
 * text[0..n) into out (cap bytes, NUL-terminated). 0, or -1 when it does not
 * fit (out then holds a cut prefix). */
int soap_unescape(const char *text, size_t n, char *out, size_t cap);

/* The first element whose local name (any prefix) is name, at or after x:
 * returns where its start tag begins, or NULL. *content is where its content
 * begins and *content_len its length up to the matching end tag (0 for
 * <name/>); *attrs / *attrs_len the start tag's attribute text. Elements of the
 * same name must not nest. */
const char *soap_find(const char *x, const char *name, const char **content, size_t *content_len,
                      const char **attrs, size_t *attrs_len);

/* The unescaped text of the first element named name into out: 1 found, 0
 * absent or too long. */
int soap_text(const char *x, const char *name, char *out, size_t cap);

/* The unescaped value of attribute name in attrs[0..len) into out: 1 found,
 * 0 absent or too long. */
int soap_attr(const char *attrs, size_t len, const char *name, char *out, size_t cap);

/* A SOAP Fault in x: 1 with its faultcode's local part ("Client", "Server"),
 * faultstring and detail errorCode (each "" when absent), else 0. */
int soap_fault(const char *x, char *code, size_t code_cap, char *msg, size_t msg_cap,
               char *err, size_t err_cap);

#endif
