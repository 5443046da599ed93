#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int g4_seterr(g4_error *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int g4_preferr(g4_error *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = 0;
    /* prefix + ": " + old, truncated to the buffer */
    size_t n = strlen(prefix), cap = sizeof err->msg - 1;
    if (n > cap) n = cap;
    memcpy(err->msg, prefix, n);
    size_t pos = n;
    for (const char *s = ": "; *s && pos < cap; s++) err->msg[pos++] = *s;
    size_t m = strlen(old);
    if (m > cap - pos) m = cap - pos;
    memcpy(err->msg + pos, old, m);
    err->msg[pos + m] = 0;
    return -1;
}
