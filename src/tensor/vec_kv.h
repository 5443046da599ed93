/* KV-cache row types and the two attention primitives over rows of each
 * type: "K row . q" scores and "sum p * V row" accumulation.
 *
 * A cache row holds one position of one KV head: hd elements stored as
 *   f32   hd floats
 *   f16   hd IEEE halves (rounded to nearest even, as ggml and F16C)
 *   q8_0  hd / 32 blocks of GGML's q8_0: an f16 scale d, then 32 int8 q,
 *         x = d * q (34 bytes per 32 elements); hd must be a multiple of 32
 *   q4_0  hd / 32 blocks of GGML's q4_0: an f16 scale d, then 16 bytes whose
 *         low nibbles are elements 0-15 and high nibbles 16-31, x = d *
 *         (q - 8) (18 bytes per 32 elements; the edge setting for E4B)
 * Queries, scores and accumulators stay f32: K . q converts K on the fly and
 * multiplies by the f32 query (llama.cpp rounds q to the cache type first;
 * here only the cache is rounded). The kernels are chosen per CPU level like
 * vec.h's; every level is tested against the portable reference. A blocked
 * (flash-style) attention kernel calls these per block of rows. */
#ifndef G4_VEC_KV_H
#define G4_VEC_KV_H

#include <stddef.h>
#include <stdint.h>

typedef enum g4_kv_type { G4_KV_F32 = 0, G4_KV_F16 = 1, G4_KV_Q8_0 = 2, G4_KV_Q4_0 = 3, G4_KV_NTYPES = 4 } g4_kv_type;

enum { G4_KV_Q8_BLOCK = 32, G4_KV_Q8_BYTES = 34, G4_KV_Q4_BYTES = 18 };

/* Bytes of a row of n elements of type t (q8_0, q4_0: n a multiple of 32). */
size_t g4_kv_row_bytes(int t, size_t n);
/* Whether rows of hd elements can be stored as t (q8_0, q4_0 need whole blocks). */
int g4_kv_type_fits(int t, int hd);
/* The type rows of hd elements get when t is asked for: t where it fits,
 * else f16 (q8_0 for a head of 16, as in a tiny test model). */
int g4_kv_type_for(int t, int hd);
/* "f32", "f16", "q8_0", "q4_0"; "?" otherwise. */
const char *g4_kv_type_name(int t);
/* The type named s, or -1. */
int g4_kv_type_from_name(const char *s);

/* Round n floats into a row of type t / read one back (reference, tests). */
void g4_kv_store(int t, void *dst, const float *src, int n);
void g4_kv_load(int t, float *dst, const void *src, int n);

/* Grouped-query attention over nj cache rows of one type, row j at byte
 * k + j * ks (ks: bytes between positions, a multiple of the element size):
 *   qk: s[h * lds + j] = q_h . K_j               h < G, q_h = q + h * hd
 *   pv: acc[h * hd + i] += sum_j p[h * ldp + j] * V_j[i]
 * The G query heads sharing a KV head read (and convert) each row once. */
typedef struct g4_kv_ops {
    void (*qk)(float *s, int lds, const float *q, int G, const void *k, size_t ks, int nj, int hd);
    void (*pv)(float *acc, const float *p, int ldp, int G, const void *v, size_t vs, int nj, int hd);
} g4_kv_ops;

/* The kernels for type t at the CPU's level / at `level` (the portable ones
 * where the CPU lacks it). */
const g4_kv_ops *g4_kv_ops_get(int t);
const g4_kv_ops *g4_kv_ops_level(int t, int level);

/* Prompt tiles (ops/attention.c's tiled path for prompt tokens): several
 * tokens' query heads against 16-position blocks of an f16 cache, each
 * block converted once for all of them (K transposed to [hd][16], so a
 * block's 16 scores of a head are one vector: no horizontal sums), with an
 * online softmax per (token, head) row. A row's arithmetic depends only on
 * its own visible positions and the blocks' absolute grid, never on the
 * tile's other rows. AVX-512 with f16 rows and hd % 32 == 0 only
 * (g4_kv_tile_ok); elsewhere the row kernels above.
 *   load: krow/vrow[j] the block's 16 rows (NULL: a position no token of the
 *         tile sees; zeros); kt [hd][16], vf [16][hd] f32
 *   step: nt tokens of G heads, token i's heads at q + i * ldq (hd apart)
 *         and its unnormalized output at acc + i * lda; mask[i] bit j: key
 *         j visible to token i (0: the token skips the block); mx, sum
 *         [nt * G] running maxima and denominators; p scratch [8][16] */
int g4_kv_tile_ok(int t, int hd);
void g4_kv_tile_load(const char *const *krow, const char *const *vrow, int hd, float *kt, float *vf);
void g4_kv_tile_step(const float *q, size_t ldq, float *acc, size_t lda, int nt, int G, int hd, const uint16_t *mask,
                     const float *kt, const float *vf, float *mx, float *sum, float *p);

#endif
