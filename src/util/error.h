/* Errors are values: a function that can fail returns -1 (or NULL) and fills a
 * g4_error with a message naming what was wrong and where. Nothing in the
 * library prints or exits; front ends decide how to report. */
#ifndef G4_ERROR_H
#define G4_ERROR_H

#include <stddef.h>

typedef struct g4_error {
    char msg[512];
} g4_error;

/* printf-style; a NULL err is allowed (the message is dropped). Returns -1 so
 * callers can write `return g4_seterr(e, ...);`. */
int g4_seterr(g4_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix an existing message, e.g. with the file name: "model.gguf: <msg>". */
int g4_preferr(g4_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
