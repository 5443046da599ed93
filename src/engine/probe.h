/* Internal parts of the roofline probes (probe.c) that benchmarks reuse. */
#ifndef G4_PROBE_H
#define G4_PROBE_H

#include <stddef.h>
#include <stdint.h>

/* Sum of the n / 8 little-endian words at p (p 8-byte aligned), read as fast
 * as this CPU reads memory: the bandwidth probe's inner loop. */
uint64_t g4_read_sum(const void *p, size_t n);

#endif
