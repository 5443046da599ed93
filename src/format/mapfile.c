#include "format/mapfile.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_SZ ((size_t)2 << 20)

static void *plain(int fd, size_t size) {
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    return m == MAP_FAILED ? NULL : m;
}

/* 2 MB-aligned address for `size` bytes: reserve size + 2 MB, keep the
 * aligned part. A PMD can only map a folio whose file offset and virtual
 * address agree modulo 2 MB (offset 0 here). */
static void *map_aligned(int fd, size_t size) { /* NULL on failure */
    size_t span = size + HUGE_SZ;
    char *res = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED) return plain(fd, size);
    char *a = (char *)(((uintptr_t)res + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
    void *m = mmap(a, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (m == MAP_FAILED) {
        munmap(res, span);
        return plain(fd, size);
    }
    if (a > res) munmap(res, (size_t)(a - res));
    size_t tail = (size_t)((res + span) - (a + size));
    if (tail) munmap(a + size, tail);
    return m;
}

static void touch(uintptr_t a) { (void)*(const volatile char *)a; }

#if defined(MADV_HUGEPAGE) && defined(POSIX_FADV_DONTNEED)

/* THP for this process's mappings at all ("never" turns the hint off). */
static int thp_enabled(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    char buf[128] = { 0 };
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, "[never]") == NULL && n > 0;
}

/* kB of the mapping containing address a that are mapped with 2 MB pages
 * (FilePmdMapped in /proc/self/smaps); -1 if it cannot be told. */
static long pmd_mapped_kb(uintptr_t a) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[4400]; /* a mapping's line ends with its path (<= PATH_MAX) */
    int in = 0;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s %lx ", &lo, &hi, perms, &off) == 4) {
            if (in) break;
            in = a >= lo && a < hi;
            continue;
        }
        if (in && !strncmp(line, "FilePmdMapped:", 14)) { kb = atol(line + 14); break; }
    }
    fclose(f);
    return kb;
}

void *g4_map_file(int fd, size_t size) {
    const char *env = getenv("GEMMA4C_HUGEPAGES");
    if ((env && !strcmp(env, "0")) || size < 4 * HUGE_SZ || !thp_enabled())
        return plain(fd, size);
    char *m = map_aligned(fd, size);
    if (!m) return NULL;
    if ((uintptr_t)m % HUGE_SZ || madvise(m, size, MADV_HUGEPAGE)) return m;
    /* probe one 2 MB range in the middle of the file */
    uintptr_t a = ((uintptr_t)m + size / 2) & ~(uintptr_t)(HUGE_SZ - 1);
    touch(a);
    if (pmd_mapped_kb(a) != 0) return m;          /* already 2 MB pages, or unknown: leave it */
    /* cached in small pages: drop that range alone and fault it back */
    off_t off = (off_t)(a - (uintptr_t)m);
    if (madvise((void *)a, HUGE_SZ, MADV_DONTNEED) ||
        posix_fadvise(fd, off, (off_t)HUGE_SZ, POSIX_FADV_DONTNEED))
        return m;
    touch(a);
    if (pmd_mapped_kb(a) <= 0) return m;          /* this kernel / file system cannot: keep 4 KB */
    /* it can: drop the rest once; the first token reads it back in 2 MB folios */
    munmap(m, size);
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    m = map_aligned(fd, size);
    if (!m) return NULL;
    if ((uintptr_t)m % HUGE_SZ == 0) (void)madvise(m, size, MADV_HUGEPAGE);
    return m;
}

#else

void *g4_map_file(int fd, size_t size) { return plain(fd, size); }

#endif
