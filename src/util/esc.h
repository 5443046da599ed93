/* Quoting text that came from a file (metadata keys, tensor names, type
 * strings) in messages: a hostile file must not be able to write control
 * sequences or broken UTF-8 into the user's terminal or log. */
#ifndef G4_ESC_H
#define G4_ESC_H

#include <stddef.h>
#include <stdint.h>

/* Size of the buffer G4_ESC uses: names up to ~120 bytes come out whole. */
#define G4_ESC_MAX 128

/* Write s[0..len) into buf (cap bytes, NUL-terminated; cap >= 8) with control
 * bytes, backslash, DEL, C1 controls and invalid UTF-8 written as escapes
 * (\n \r \t \\ \xNN); valid printable UTF-8 is kept. Output that would not
 * fit is cut at a character boundary and ends in "...". len == SIZE_MAX:
 * s is NUL-terminated; s == NULL gives "(null)". Returns buf. */
const char *g4_esc(char *buf, size_t cap, const char *s, size_t len);

/* For printf arguments: the buffer lives until the end of the enclosing
 * block, so `g4_seterr(err, "'%s'", G4_ESC(name))` is safe. */
#define G4_ESC(s) g4_esc((char[G4_ESC_MAX]){ 0 }, G4_ESC_MAX, (s), SIZE_MAX)
#define G4_ESCN(s, n) g4_esc((char[G4_ESC_MAX]){ 0 }, G4_ESC_MAX, (s), (n))

#endif
