/* test_log.c - log_str: quoting, escaping and truncation stay inside LOG_STR_MAX bytes. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Undo log_str's escapes between the quotes of out into dec (NUL-terminated). Returns 1
 * when the input was cut (the value ends with ".."), and fails the test on a malformed
 * value: no quotes, a dangling or unknown escape. */
static int decode(const char *out, char *dec)
{
    size_t n = strlen(out);
    cr_assert(n >= 2 && out[0] == '"' && out[n - 1] == '"', "not quoted: %s", out);
    const char *p = out + 1, *end = out + n - 1;
    int cut = 0;
    if (end - p >= 2 && end[-1] == '.' && end[-2] == '.') {
        cut = 1;
        end -= 2;
    }
    size_t o = 0;
    while (p < end) {
        if (*p != '\\') {
            dec[o++] = *p++;
            continue;
        }
        cr_assert(p + 1 < end, "dangling backslash in %s", out);
        if (p[1] == '"' || p[1] == '\\') {
            dec[o++] = p[1];
            p += 2;
            continue;
        }
        cr_assert(p[1] == 'x' && p + 3 < end, "bad escape in %s", out);
        char hex[3] = { p[2], p[3], 0 };
        dec[o++] = (char)strtol(hex, NULL, 16);
        p += 4;
    }
    dec[o] = '\0';
    return cut;
}

/* Run log_str on s into a heap buffer of exactly LOG_STR_MAX bytes (so that ASan sees a
 * write past it) and check the value decodes to s, or to a prefix of s ending in "..". */
static void check_one(const char *s)
{
    char *buf = malloc(LOG_STR_MAX);
    cr_assert(buf != NULL);
    const char *out = log_str(buf, s);
    cr_assert_eq(out, buf);
    cr_assert_lt(strlen(out), (size_t)LOG_STR_MAX);
    char dec[LOG_STR_MAX];
    int cut = decode(out, dec);
    size_t dl = strlen(dec);
    if (cut) {
        cr_assert_lt(dl, strlen(s), "cut but everything kept: %s", out);
        cr_assert(memcmp(dec, s, dl) == 0, "not a prefix of the input: %s", out);
    } else {
        cr_assert_str_eq(dec, s, "value changed: %s", out);
    }
    free(buf);
}

/* Every escape kind at every output offset near the end, each with input left after it
 * (so ".." is written) and without. Before the fix, a \xNN starting at offset 249 wrote
 * the NUL at buf[256]. */
Test(log, escapes_at_every_offset_near_the_end_stay_in_the_buffer)
{
    static const char specials[] = { '\n', '\x01', '\x7f', '"', '\\' };
    char s[LOG_STR_MAX + 16];
    for (size_t lead = LOG_STR_MAX - 20; lead < LOG_STR_MAX + 4; lead++) {
        for (size_t k = 0; k < sizeof(specials); k++) {
            for (int tail = 0; tail <= 3; tail++) {
                memset(s, 'a', lead);
                s[lead] = specials[k];
                memset(s + lead + 1, 'b', (size_t)tail);
                s[lead + 1 + tail] = '\0';
                check_one(s);
            }
        }
    }
}

Test(log, only_escapes)
{
    char s[LOG_STR_MAX * 2];
    memset(s, '\t', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    check_one(s);
    memset(s, '"', sizeof(s) - 1);
    check_one(s);
}

Test(log, short_values_are_quoted_and_escaped)
{
    char buf[LOG_STR_MAX];
    cr_assert_str_eq(log_str(buf, "plain"), "\"plain\"");
    cr_assert_str_eq(log_str(buf, "a\"b\\c\nd"), "\"a\\\"b\\\\c\\x0ad\"");
    cr_assert_str_eq(log_str(buf, ""), "\"\"");
    cr_assert_str_eq(log_str(buf, NULL), "\"\"");
}

Test(log, long_plain_value_is_cut_with_dots)
{
    char s[1000];
    memset(s, 'z', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    char buf[LOG_STR_MAX];
    const char *out = log_str(buf, s);
    size_t n = strlen(out);
    cr_assert_lt(n, (size_t)LOG_STR_MAX);
    cr_assert_gt(n, (size_t)LOG_STR_MAX - 8, "cut too early: %zu bytes", n);
    cr_assert_str_eq(out + n - 3, "..\"");
}
