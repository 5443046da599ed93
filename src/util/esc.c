#include "util/esc.h"

#include <string.h>

/* Length of the valid UTF-8 sequence at s[0..n), 0 if invalid (overlong,
 * surrogate, above U+10FFFF, truncated). */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    size_t k;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { k = 2; v = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { k = 3; v = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return k;
}

/* The escaped form of the character at p[0..n) into out (16 bytes); returns
 * its length and sets *used to the input bytes it covers. */
static size_t piece(const unsigned char *p, size_t n, char *out, size_t *used) {
    static const char HEX[] = "0123456789abcdef";
    uint32_t cp = 0;
    size_t k = utf8_len(p, n, &cp), o = 0;
    if (k == 1 && cp >= 0x20 && cp != 0x7f && cp != '\\') {
        out[o++] = (char)cp;
    } else if (k == 1 && (cp == '\n' || cp == '\r' || cp == '\t' || cp == '\\')) {
        out[o++] = '\\';
        out[o++] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : cp == '\t' ? 't' : '\\';
    } else if (k > 1 && !(cp >= 0x80 && cp <= 0x9f)) {
        memcpy(out, p, k);
        o = k;
    } else {
        /* C0/C1 control, DEL or a byte that starts no valid sequence */
        if (k == 0) k = 1;
        for (size_t j = 0; j < k; j++) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = HEX[p[j] >> 4];
            out[o++] = HEX[p[j] & 15];
        }
    }
    *used = k;
    return o;
}

const char *g4_esc(char *buf, size_t cap, const char *s, size_t len) {
    if (!buf || cap < 8) return "";
    if (!s) s = "(null)", len = SIZE_MAX;
    if (len == SIZE_MAX) len = strlen(s);
    const unsigned char *p = (const unsigned char *)s;
    char pc[16];
    size_t used, total = 0;
    for (size_t i = 0; i < len && total < cap; i += used) total += piece(p + i, len - i, pc, &used);
    /* whole text if it fits, else whole characters up to cap - 4 and "..." */
    size_t limit = total < cap ? cap - 1 : cap - 4, o = 0;
    for (size_t i = 0; i < len; i += used) {
        size_t n = piece(p + i, len - i, pc, &used);
        if (o + n > limit) break;
        memcpy(buf + o, pc, n);
        o += n;
    }
    if (total >= cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}
