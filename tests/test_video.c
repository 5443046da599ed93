/* Video decoding (src/media/video.c) and FFmpeg loaded on demand: the test
 * binary links no FFmpeg library, so libavcodec appears in /proc/self/maps
 * only once a video file is opened; a folder of frames and images never load
 * it. The clip is a YUV4MPEG2 file written here (raw frames behind a text
 * header, which FFmpeg demuxes without a codec library of its own), so the
 * decoded pixels are known exactly. */
#include "harness.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "media/image.h"
#include "media/video.h"

static char dir[] = "/tmp/g4-video-XXXXXX";

/* 1 when a mapping of the process names libavcodec. */
static int avcodec_mapped(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[4096];
    int hit = 0;
    while (!hit && fgets(line, sizeof line, f)) hit = strstr(line, "/libavcodec.so.") != NULL;
    fclose(f);
    return hit;
}

/* 10 frames of 16x8, 4:4:4, 10 fps; frame i is grey with luma 16 + 20 i
 * (studio range, chroma 128): RGB (Y - 16) * 255 / 219 after conversion. */
enum { YW = 16, YH = 8, YN = 10 };
static int write_y4m(const char *path, size_t cut) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    char buf[64 + YN * (6 + 3 * YW * YH)];
    size_t n = (size_t)snprintf(buf, sizeof buf, "YUV4MPEG2 W%d H%d F10:1 Ip A1:1 C444\n", YW, YH);
    for (int i = 0; i < YN; i++) {
        memcpy(buf + n, "FRAME\n", 6);
        n += 6;
        memset(buf + n, 16 + 20 * i, YW * YH);
        memset(buf + n + YW * YH, 128, 2 * YW * YH);
        n += 3 * YW * YH;
    }
    if (cut && cut < n) n = cut;
    int ok = fwrite(buf, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* A 24-bit BMP of w x h in one colour. */
static int write_bmp(const char *path, int w, int h, uint8_t grey) {
    int row = (w * 3 + 3) & ~3;
    uint32_t size = 54 + (uint32_t)(row * h);
    uint8_t hd[54] = { 'B', 'M' };
    uint32_t v[] = { size, 0, 54, 40, (uint32_t)w, (uint32_t)h };
    for (int i = 0; i < 6; i++)
        for (int b = 0; b < 4; b++) hd[2 + 4 * i + b] = (uint8_t)(v[i] >> (8 * b));
    hd[26] = 1;    /* planes */
    hd[28] = 24;   /* bits per pixel */
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(hd, 1, 54, f) == 54;
    uint8_t px[256];
    memset(px, grey, sizeof px);
    for (int y = 0; ok && y < h; y++) ok = fwrite(px, 1, (size_t)row, f) == (size_t)row;
    return fclose(f) == 0 && ok ? 0 : -1;
}

TEST(folder_and_images_do_not_load_ffmpeg) {
    char sub[256], p[300];
    snprintf(sub, sizeof sub, "%s/frames", dir);
    CHECK(mkdir(sub, 0700) == 0);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%03d.bmp", sub, i);
        CHECK(write_bmp(p, 8, 4, (uint8_t)(40 * i)) == 0);
    }
    CHECK(avcodec_mapped() == 0);   /* nothing linked it */
    g4_error err = { 0 };
    g4_image im = { 0 };
    CHECKF(g4_image_load(p, &im, &err) == 0, "%s", err.msg);
    g4_image_free(&im);
    g4_video v;
    CHECKF(g4_video_load(sub, 8, &v, &err) == 0, "%s", err.msg);
    CHECK(v.n == 3 && v.total == 3 && v.frames[2].w == 8 && v.frames[2].rgb[0] == 80);
    g4_video_free(&v);
    CHECK(avcodec_mapped() == 0);   /* still not loaded */
}

TEST(video_file_loads_ffmpeg_and_samples) {
    char p[300];
    snprintf(p, sizeof p, "%s/clip.y4m", dir);
    CHECK(write_y4m(p, 0) == 0);
    g4_error err = { 0 };
    g4_video v;
    int rc = g4_video_load(p, 4, &v, &err);
    CHECKF(rc == 0, "%s", err.msg);
    CHECK(avcodec_mapped() == 1);   /* loaded by the first video file */
    if (rc) return;
    /* idx_j = floor(j * 10 / 4): 0, 2, 5, 7; t = idx / 10 fps */
    static const int idx[4] = { 0, 2, 5, 7 };
    CHECK(v.n == 4 && v.total == YN);
    CHECK_NEAR(v.fps, 10, 1e-9);
    for (int j = 0; j < v.n && j < 4; j++) {
        const g4_image *f = &v.frames[j];
        CHECK(f->w == YW && f->h == YH);
        CHECK_NEAR(v.t[j], idx[j] / 10.0, 1e-9);
        double want = 20.0 * idx[j] * 255 / 219;
        int worst = 0;
        for (int k = 0; k < YW * YH * 3; k++) {
            int d = abs(f->rgb[k] - (int)(want + 0.5));
            if (d > worst) worst = d;
        }
        CHECKF(worst <= 2, "frame %d: off by %d from %.1f", j, worst, want);
    }
    g4_video_free(&v);
}

/* Hostile files: errors that name the file, no crash. */
TEST(bad_video_files_are_errors) {
    char p[300];
    const size_t cuts[] = { 5, 40, 64 + 6 + 100 };   /* in the header; header only; inside frame 0 */
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/cut%d.y4m", dir, i);
        CHECK(write_y4m(p, cuts[i]) == 0);
        g4_error err = { 0 };
        g4_video v;
        int rc = g4_video_load(p, 4, &v, &err);
        CHECKF(rc == -1 && strstr(err.msg, p), "cut %zu: rc %d '%s'", cuts[i], rc, err.msg);
        CHECK(v.n == 0 && v.frames == NULL);
    }
    g4_error err = { 0 };
    g4_video v;
    snprintf(p, sizeof p, "%s/absent.mkv", dir);
    CHECK(g4_video_load(p, 4, &v, &err) == -1 && strstr(err.msg, "absent.mkv"));
}

int main(void) {
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    RUN(folder_and_images_do_not_load_ffmpeg);
    RUN(video_file_loads_ffmpeg_and_samples);
    RUN(bad_video_files_are_errors);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_summary();
}
