/* Image decoding (see image.h). Each decoder reads the header, checks the
 * size against the limits, then allocates and decodes. */
#include "media/image.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <gif_lib.h>
#include <jpeglib.h>
#include <jerror.h>
#include <libexif/exif-data.h>
#include <spng.h>
#include <webp/decode.h>

#include "util/esc.h"

static int check_size(const char *name, const char *fmt, uint64_t w, uint64_t h, g4_error *err) {
    if (w == 0 || h == 0) return g4_seterr(err, "%s: %s image has no pixels (%llux%llu)", name, fmt,
                                           (unsigned long long)w, (unsigned long long)h);
    if (w > G4_IMAGE_MAX_SIDE || h > G4_IMAGE_MAX_SIDE || w * h > G4_IMAGE_MAX_PIXELS)
        return g4_seterr(err, "%s: %s image is %llux%llu; gemma4c accepts at most %d pixels a side and %u "
                         "pixels in all (refused before decoding)", name, fmt, (unsigned long long)w,
                         (unsigned long long)h, G4_IMAGE_MAX_SIDE, G4_IMAGE_MAX_PIXELS);
    return 0;
}

static int alloc_rgb(g4_image *out, int w, int h, const char *name, g4_error *err) {
    out->w = w;
    out->h = h;
    out->rgb = malloc((size_t)w * h * 3);
    if (!out->rgb) return g4_seterr(err, "%s: out of memory for %dx%d pixels", name, w, h);
    return 0;
}

void g4_image_free(g4_image *im) {
    if (!im) return;
    free(im->rgb);
    im->rgb = NULL;
    im->w = im->h = 0;
}

const char *g4_image_sniff(const void *buf, size_t n) {
    const uint8_t *b = buf;
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return "png";
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return "jpeg";
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return "webp";
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "gif";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "bmp";
    return NULL;
}

/* ---- EXIF orientation ------------------------------------------------------- */

/* Orientation from EXIF data (a JPEG file, or "Exif\0\0" + TIFF): 1 when absent. */
static int exif_orientation(const void *buf, size_t n) {
    if (n > UINT32_MAX) return 1;
    ExifData *ed = exif_data_new_from_data(buf, (unsigned int)n);
    if (!ed) return 1;
    int o = 1;
    ExifEntry *e = exif_data_get_entry(ed, EXIF_TAG_ORIENTATION);
    if (e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->size >= 2 && e->data) {
        int v = exif_get_short(e->data, exif_data_get_byte_order(ed));
        if (v >= 1 && v <= 8) o = v;
    }
    exif_data_unref(ed);
    return o;
}

int g4_image_orient(g4_image *im, int o) {
    if (o <= 1 || o > 8) return 0;
    int W = im->w, H = im->h, nw = o >= 5 ? H : W, nh = o >= 5 ? W : H;
    uint8_t *d = malloc((size_t)W * H * 3);
    if (!d) return -1;
    for (int y = 0; y < nh; y++)
        for (int x = 0; x < nw; x++) {
            int sx, sy;
            switch (o) {   /* PIL ImageOps.exif_transpose */
            case 2: sx = W - 1 - x; sy = y; break;                  /* mirror */
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;          /* rotate 180 */
            case 4: sx = x; sy = H - 1 - y; break;                  /* flip */
            case 5: sx = y; sy = x; break;                          /* transpose */
            case 6: sx = y; sy = H - 1 - x; break;                  /* rotate 90 clockwise */
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;          /* transverse */
            default: sx = W - 1 - y; sy = x; break;                 /* 8: rotate 90 counter-clockwise */
            }
            memcpy(d + ((size_t)y * nw + x) * 3, im->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    free(im->rgb);
    im->rgb = d;
    im->w = nw;
    im->h = nh;
    return 0;
}

/* ---- PNG (libspng) --------------------------------------------------------- */

static int decode_png(const void *buf, size_t n, const char *name, g4_image *out, g4_error *err) {
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) return g4_seterr(err, "%s: out of memory", name);
    int rc = -1, e;
    struct spng_ihdr ih;
    size_t sz = 0;
    spng_set_image_limits(ctx, G4_IMAGE_MAX_SIDE, G4_IMAGE_MAX_SIDE);
    spng_set_chunk_limits(ctx, 64u << 20, 64u << 20);
    if ((e = spng_set_png_buffer(ctx, buf, n)) || (e = spng_get_ihdr(ctx, &ih))) {
        if (e == SPNG_EWIDTH || e == SPNG_EHEIGHT || e == SPNG_EUSER_WIDTH || e == SPNG_EUSER_HEIGHT)
            g4_seterr(err, "%s: PNG header: %s (gemma4c accepts at most %d pixels a side; refused before "
                      "decoding)", name, spng_strerror(e), G4_IMAGE_MAX_SIDE);
        else
            g4_seterr(err, "%s: PNG header: %s", name, spng_strerror(e));
        goto done;
    }
    if (check_size(name, "PNG", ih.width, ih.height, err)) goto done;
    if ((e = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &sz)) || sz != (size_t)ih.width * ih.height * 3) {
        g4_seterr(err, "%s: PNG: %s", name, e ? spng_strerror(e) : "unexpected decoded size");
        goto done;
    }
    if (alloc_rgb(out, (int)ih.width, (int)ih.height, name, err)) goto done;
    /* RGB8 without SPNG_DECODE_TRNS: alpha / tRNS dropped, palette and grey
     * expanded, 16-bit to its high byte, no gamma: what PIL's convert("RGB") gives */
    if ((e = spng_decode_image(ctx, out->rgb, sz, SPNG_FMT_RGB8, 0))) {
        g4_seterr(err, "%s: PNG data: %s", name, spng_strerror(e));
        g4_image_free(out);
        goto done;
    }
    /* A PNG's eXIf orientation is not applied: the reference pipeline
     * (shared/testdata/gemma4-mm-ref, libpng's pngtest.png carries
     * orientation 5) and llama.cpp both use the stored pixel order. */
    rc = 0;
done:
    spng_ctx_free(ctx);
    return rc;
}

/* ---- JPEG (libjpeg-turbo) -------------------------------------------------- */

typedef struct jerr {
    struct jpeg_error_mgr mgr;   /* first: libjpeg's err pointer is cast back */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int truncated;               /* libjpeg's "premature end" warning: it pads with grey, PIL refuses */
} jerr;

static void jpeg_fail(j_common_ptr c) {
    jerr *j = (jerr *)c->err;
    c->err->format_message(c, j->msg);
    longjmp(j->jb, 1);
}

static void jpeg_quiet(j_common_ptr c, int level) {
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) ((jerr *)c->err)->truncated = 1;
}

/* PIL's CMYK -> RGB (Convert.c): r = (255 - k) - c*(255 - k)/255, rounded
 * as its MULDIV255. */
static uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static int decode_jpeg(const void *buf, size_t n, const char *name, g4_image *out, g4_error *err) {
    struct jpeg_decompress_struct c;
    jerr je = { .truncated = 0 };
    uint8_t *volatile row = NULL;
    volatile int made = 0;
    memset(&c, 0, sizeof c);
    c.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_fail;
    je.mgr.emit_message = jpeg_quiet;
    out->rgb = NULL;
    if (setjmp(je.jb)) {
        g4_seterr(err, "%s: JPEG: %s", name, je.msg);
        free(row);
        g4_image_free(out);
        if (made) jpeg_destroy_decompress(&c);
        return -1;
    }
    jpeg_create_decompress(&c);
    made = 1;
    if (n > ULONG_MAX) n = ULONG_MAX;
    jpeg_mem_src(&c, buf, (unsigned long)n);
    jpeg_read_header(&c, TRUE);
    if (check_size(name, "JPEG", c.image_width, c.image_height, err)) {
        jpeg_destroy_decompress(&c);
        return -1;
    }
    bool cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
    c.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&c);
    if (c.output_components != (cmyk ? 4 : 3)) {
        g4_seterr(err, "%s: JPEG: %d output components", name, c.output_components);
        jpeg_destroy_decompress(&c);
        return -1;
    }
    if (alloc_rgb(out, (int)c.output_width, (int)c.output_height, name, err)) {
        jpeg_destroy_decompress(&c);
        return -1;
    }
    row = malloc((size_t)c.output_width * 4);
    if (!row) {
        g4_seterr(err, "%s: out of memory", name);
        g4_image_free(out);
        jpeg_destroy_decompress(&c);
        return -1;
    }
    bool inv = cmyk && c.saw_Adobe_marker;   /* Adobe CMYK is stored inverted */
    while (c.output_scanline < c.output_height) {
        uint8_t *dst = out->rgb + (size_t)c.output_scanline * c.output_width * 3;
        JSAMPROW rp = cmyk ? row : dst;
        jpeg_read_scanlines(&c, &rp, 1);
        if (cmyk)
            for (JDIMENSION x = 0; x < c.output_width; x++) {
                int v[4];
                for (int k = 0; k < 4; k++) v[k] = inv ? 255 - row[x * 4 + k] : row[x * 4 + k];
                int nk = 255 - v[3];
                for (int k = 0; k < 3; k++) {
                    int r = nk - muldiv255(v[k], nk);
                    dst[x * 3 + k] = (uint8_t)(r < 0 ? 0 : r);
                }
            }
    }
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    free(row);
    if (je.truncated) {
        g4_image_free(out);
        return g4_seterr(err, "%s: JPEG data is truncated (premature end of the entropy-coded data)", name);
    }
    if (g4_image_orient(out, exif_orientation(buf, n))) {
        g4_image_free(out);
        return g4_seterr(err, "%s: out of memory", name);
    }
    return 0;
}

/* ---- WebP (libwebp) -------------------------------------------------------- */

static int decode_webp(const void *buf, size_t n, const char *name, g4_image *out, g4_error *err) {
    int w = 0, h = 0;
    if (!WebPGetInfo(buf, n, &w, &h)) return g4_seterr(err, "%s: WebP header is not valid", name);
    if (check_size(name, "WebP", (uint64_t)w, (uint64_t)h, err) || alloc_rgb(out, w, h, name, err)) return -1;
    /* RGB output drops alpha without compositing, as convert("RGB") */
    if (!WebPDecodeRGBInto(buf, n, out->rgb, (size_t)w * h * 3, w * 3)) {
        g4_image_free(out);
        return g4_seterr(err, "%s: WebP data is truncated or corrupt (or animated, which is not supported)", name);
    }
    return 0;
}

/* ---- GIF (giflib) ------------------------------------------------------------ */

typedef struct memsrc { const uint8_t *p; size_t n, off; } memsrc;

static int gif_read(GifFileType *g, GifByteType *dst, int len) {
    memsrc *m = g->UserData;
    if (len < 0) return 0;
    size_t k = m->n - m->off < (size_t)len ? m->n - m->off : (size_t)len;
    memcpy(dst, m->p + m->off, k);
    m->off += k;
    return (int)k;
}

static int decode_gif(const void *buf, size_t n, const char *name, g4_image *out, g4_error *err) {
    memsrc m = { buf, n, 0 };
    int ge = 0;
    GifFileType *g = DGifOpen(&m, gif_read, &ge);
    if (!g) return g4_seterr(err, "%s: GIF: %s", name, GifErrorString(ge) ? GifErrorString(ge) : "cannot open");
    int rc = -1;
    if (check_size(name, "GIF", (uint64_t)g->SWidth, (uint64_t)g->SHeight, err)) goto done;
    /* records up to the first image only */
    GifRecordType rt;
    GifByteType *raster = NULL;
    for (;;) {
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) goto gerr;
        if (rt == TERMINATE_RECORD_TYPE) { g4_seterr(err, "%s: GIF has no image", name); goto done; }
        if (rt == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) goto gerr;
            while (ext)
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) goto gerr;
            continue;
        }
        if (rt != IMAGE_DESC_RECORD_TYPE) continue;
        if (DGifGetImageDesc(g) == GIF_ERROR) goto gerr;
        break;
    }
    GifImageDesc *d = &g->Image;
    if (d->Width <= 0 || d->Height <= 0 || check_size(name, "GIF frame", (uint64_t)d->Width, (uint64_t)d->Height, err))
        { if (!err || !err->msg[0]) g4_seterr(err, "%s: GIF frame has no pixels", name); goto done; }
    ColorMapObject *cm = d->ColorMap ? d->ColorMap : g->SColorMap;
    if (!cm) { g4_seterr(err, "%s: GIF frame has no color map", name); goto done; }
    raster = malloc((size_t)d->Width * d->Height);
    if (!raster) { g4_seterr(err, "%s: out of memory", name); goto done; }
    if (d->Interlace) {
        static const int start[4] = { 0, 4, 2, 1 }, step[4] = { 8, 8, 4, 2 };
        for (int p = 0; p < 4; p++)
            for (int y = start[p]; y < d->Height; y += step[p])
                if (DGifGetLine(g, raster + (size_t)y * d->Width, d->Width) == GIF_ERROR) { free(raster); goto gerr; }
    } else {
        for (int y = 0; y < d->Height; y++)
            if (DGifGetLine(g, raster + (size_t)y * d->Width, d->Width) == GIF_ERROR) { free(raster); goto gerr; }
    }
    if (alloc_rgb(out, g->SWidth, g->SHeight, name, err)) { free(raster); goto done; }
    /* the screen in the background colour, the frame at its offset */
    GifColorType bg = { 0, 0, 0 };
    if (g->SColorMap && g->SBackGroundColor >= 0 && g->SBackGroundColor < g->SColorMap->ColorCount)
        bg = g->SColorMap->Colors[g->SBackGroundColor];
    for (size_t i = 0; i < (size_t)out->w * out->h; i++) {
        out->rgb[i * 3] = bg.Red; out->rgb[i * 3 + 1] = bg.Green; out->rgb[i * 3 + 2] = bg.Blue;
    }
    for (int y = 0; y < d->Height; y++)
        for (int x = 0; x < d->Width; x++) {
            long X = (long)d->Left + x, Y = (long)d->Top + y;
            if (X < 0 || Y < 0 || X >= out->w || Y >= out->h) continue;
            int ci = raster[(size_t)y * d->Width + x];
            GifColorType c = ci < cm->ColorCount ? cm->Colors[ci] : (GifColorType){ 0, 0, 0 };
            uint8_t *p = out->rgb + ((size_t)Y * out->w + (size_t)X) * 3;
            p[0] = c.Red; p[1] = c.Green; p[2] = c.Blue;
        }
    free(raster);
    rc = 0;
    goto done;
gerr:
    g4_seterr(err, "%s: GIF: %s", name, GifErrorString(g->Error) ? GifErrorString(g->Error) : "corrupt");
done:
    DGifCloseFile(g, &ge);
    return rc;
}

/* ---- BMP (own parser: the format is a header and raw rows) --------------------- */

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Value of a bitfield channel scaled to 8 bits. */
static uint8_t field8(uint32_t px, uint32_t mask) {
    if (!mask) return 0;
    int sh = 0, bits = 0;
    while (!(mask >> sh & 1)) sh++;
    while (sh + bits < 32 && (mask >> (sh + bits) & 1)) bits++;
    uint64_t v = (px & mask) >> sh, max = bits >= 32 ? 0xFFFFFFFFu : (1u << bits) - 1;
    return (uint8_t)((v * 255 + max / 2) / max);
}

static int decode_bmp(const uint8_t *b, size_t n, const char *name, g4_image *out, g4_error *err) {
    if (n < 26) return g4_seterr(err, "%s: BMP is truncated (%zu bytes)", name, n);
    uint32_t off = le32(b + 10), hs = le32(b + 14);
    if (hs != 12 && hs < 40) return g4_seterr(err, "%s: BMP info header of %u bytes is not supported", name, hs);
    if (14 + (uint64_t)hs > n) return g4_seterr(err, "%s: BMP is truncated in its info header", name);
    int64_t w, h;
    int bpp, comp = 0;
    uint32_t ncol = 0;
    if (hs == 12) {
        w = le16(b + 18); h = (int16_t)le16(b + 20); bpp = le16(b + 24);
    } else {
        w = (int32_t)le32(b + 18); h = (int32_t)le32(b + 22); bpp = le16(b + 28);
        comp = (int)le32(b + 30); ncol = le32(b + 46);
    }
    bool top_down = h < 0;
    if (h < 0) h = -h;
    if (w <= 0 || check_size(name, "BMP", (uint64_t)w, (uint64_t)h, err)) {
        if (w <= 0) g4_seterr(err, "%s: BMP width %lld is not positive", name, (long long)w);
        return -1;
    }
    if (comp != 0 && comp != 3)
        return g4_seterr(err, "%s: BMP compression %d is not supported (only uncompressed and bitfields)", name, comp);
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        return g4_seterr(err, "%s: BMP with %d bits per pixel is not supported", name, bpp);
    if (comp == 3 && bpp != 16 && bpp != 32) return g4_seterr(err, "%s: BMP bitfields need 16 or 32 bits per pixel", name);
    uint32_t rm = 0x7C00, gm = 0x03E0, bm = 0x001F;
    if (bpp == 32) { rm = 0xFF0000; gm = 0xFF00; bm = 0xFF; }
    if (comp == 3) {
        size_t mo = hs >= 52 ? 54 : 14 + (size_t)hs;   /* in the V2+ header, or right after a 40-byte one */
        if (mo + 12 > n) return g4_seterr(err, "%s: BMP is truncated in its bitfield masks", name);
        rm = le32(b + mo); gm = le32(b + mo + 4); bm = le32(b + mo + 8);
    }
    uint8_t pal[256][3] = { { 0 } };
    if (bpp <= 8) {
        size_t es = hs == 12 ? 3 : 4, po = 14 + (size_t)hs, maxc = (size_t)1 << bpp;
        if (ncol == 0 || ncol > maxc) ncol = (uint32_t)maxc;
        if (po + (size_t)ncol * es > n) return g4_seterr(err, "%s: BMP is truncated in its palette", name);
        for (uint32_t i = 0; i < ncol; i++) {
            pal[i][0] = b[po + i * es + 2]; pal[i][1] = b[po + i * es + 1]; pal[i][2] = b[po + i * es];
        }
    }
    uint64_t stride = ((uint64_t)w * bpp + 31) / 32 * 4;
    if (off > n || stride * (uint64_t)h > n - off)
        return g4_seterr(err, "%s: BMP pixel data is truncated (%llu bytes needed at offset %u, file has %zu)", name,
                         (unsigned long long)(stride * (uint64_t)h), off, n);
    if (alloc_rgb(out, (int)w, (int)h, name, err)) return -1;
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *r = b + off + stride * (uint64_t)(top_down ? y : h - 1 - y);
        uint8_t *d = out->rgb + (size_t)y * (size_t)w * 3;
        for (int64_t x = 0; x < w; x++, d += 3) {
            if (bpp <= 8) {
                int i = bpp == 8 ? r[x] : bpp == 4 ? (r[x / 2] >> (x & 1 ? 0 : 4)) & 15 : (r[x / 8] >> (7 - (x & 7))) & 1;
                memcpy(d, pal[i], 3);
            } else if (bpp == 24) {
                d[0] = r[x * 3 + 2]; d[1] = r[x * 3 + 1]; d[2] = r[x * 3];
            } else {
                uint32_t px = bpp == 16 ? le16(r + x * 2) : le32(r + x * 4);
                d[0] = field8(px, rm); d[1] = field8(px, gm); d[2] = field8(px, bm);
            }
        }
    }
    return 0;
}

/* ---- entry points -------------------------------------------------------------- */

int g4_image_decode(const void *buf, size_t n, const char *name, g4_image *out, g4_error *err) {
    memset(out, 0, sizeof *out);
    const char *kind = g4_image_sniff(buf, n);
    if (!kind)
        return g4_seterr(err, "%s: not an image gemma4c can read (expected PNG, JPEG, WebP, GIF or BMP)", name);
    switch (kind[0]) {
    case 'p': return decode_png(buf, n, name, out, err);
    case 'j': return decode_jpeg(buf, n, name, out, err);
    case 'w': return decode_webp(buf, n, name, out, err);
    case 'g': return decode_gif(buf, n, name, out, err);
    default: return decode_bmp(buf, n, name, out, err);
    }
}

int g4_image_load(const char *path, g4_image *out, g4_error *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return g4_seterr(err, "%s: %s", G4_ESC(path), strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return g4_seterr(err, "%s: not a regular file", G4_ESC(path));
    }
    if ((uint64_t)sb.st_size > G4_IMAGE_MAX_FILE) {
        fclose(f);
        return g4_seterr(err, "%s: %lld bytes is larger than gemma4c reads for an image (%u)", G4_ESC(path),
                         (long long)sb.st_size, G4_IMAGE_MAX_FILE);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        return g4_seterr(err, "%s: cannot read", G4_ESC(path));
    }
    fclose(f);
    int rc = g4_image_decode(buf, n, G4_ESC(path), out, err);
    free(buf);
    return rc;
}
