/* Read-only memory mapping of a weights file.
 *
 * Decode streams every weight byte once per token, so how the file is
 * mapped matters: with 4 KB pages a 3 GB model is ~800K page-table entries
 * the CPU walks every token, and the hardware prefetchers stop at each 4 KB
 * boundary. Mapped with 2 MB pages (the file's page-cache folios must be
 * 2 MB for that), decode measured ~30% faster on E2B Q4_K_M here.
 *
 * g4_map_file maps the whole file (MAP_PRIVATE, PROT_READ) at a 2 MB-aligned
 * address and asks for huge pages. If the file is already cached in small
 * pages (a file just written, or read without the hint), the huge-page hint
 * changes nothing, so it drops that file's cached pages once and lets the
 * first use read them back as 2 MB folios -- after checking on one 2 MB
 * range that this kernel and file system really do that (otherwise nothing
 * is dropped). Dropping clean page cache loses no data; a page another
 * process maps or that is dirty stays. GEMMA4C_HUGEPAGES=0 in the
 * environment skips all of this (a plain mapping: no hint, nothing dropped).
 * Whether 2 MB folios are found when the file is read back depends on free
 * memory: under fragmentation the kernel falls back to small ones. */
#ifndef G4_MAPFILE_H
#define G4_MAPFILE_H

#include <stddef.h>

/* Returns the mapping of `size` bytes of fd (release it with munmap), or
 * NULL with errno set. */
void *g4_map_file(int fd, size_t size);

#endif
