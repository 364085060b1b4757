/* mem.h - allocation that never returns NULL, and CV_ASSERT.
 *
 * Out of memory aborts: a crashed worker's jobs are reclaimed by others,
 * while a half-tested OOM branch could write half a job. */
#ifndef CV_MEM_H
#define CV_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string; free with free(). */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define FREE_NULL(p) do { free(p); (p) = NULL; } while (0)

void cv_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define CV_ASSERT(e) ((e) ? (void)0 : cv_assert_fail(#e, __FILE__, __LINE__))

#ifdef CV_TESTING
#define TESTABLE
#else
#define TESTABLE static
#endif

#endif
