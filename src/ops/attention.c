/* Attention over a KV cache (attention.h).
 *
 * Work item = (token, KV head, part of the visible positions). The G query
 * heads that share a KV head are done together, so each cache row is read
 * once per group (per-type qk/pv kernels in vec_kv.c). Positions go in blocks of ATT_B
 * with an online softmax (running max and denominator per head). When there
 * are fewer (token, KV head) pairs than threads (decode), the parts of a
 * token's positions go to different threads and their partial sums are
 * merged afterwards. A token's parts depend only on its own number of
 * visible positions (parts_of), never on the batch: a pair that is one work
 * item computes the same parts one after another and merges them the same
 * way, so a token's attention rounds alike in decode, beside other streams,
 * in a speculative verify and in prefill (batch invariance). */
#include "ops/attention.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "tensor/bf16.h"
#include "tensor/vec.h"

/* attention blocks (positions per online-softmax step) and decode split limit */
enum { ATT_B = 64, ATT_MAXSPLIT = 8 };
/* prompt tiles: tokens per tile (one claim), positions per block */
enum { ATT_QT = 8, ATT_KB = 16 };

void g4_attn_ranges(const g4_mask *mk, const int32_t *pos, int T, int n_pos, int32_t *lo, int32_t *hi) {
    for (int t = 0; t < T; t++) {
        int32_t p = pos[t], l = 0, h = p + 1;
        switch (mk->kind) {
        case G4_MASK_CAUSAL: break;
        case G4_MASK_SLIDING:
        case G4_MASK_BIDIR:
            if (mk->window > 0 && p - mk->window + 1 > 0) l = p - mk->window + 1;
            if (mk->kind == G4_MASK_BIDIR && mk->run && mk->run[t] >= 0) {
                /* the rest of this token's run, as far as the window reaches */
                int e = t;
                while (e + 1 < T && mk->run[e + 1] == mk->run[t]) e++;
                int32_t end = pos[e] + 1;
                if (mk->window > 0 && end > p + mk->window) end = p + mk->window;
                if (end > h) h = end;
            }
            break;
        case G4_MASK_CHUNKED: {
            int32_t c = mk->chunk > 0 ? mk->chunk : 1, b = p / c;
            l = (b - mk->left) * c;
            if (l < 0) l = 0;
            h = (b + 1) * c;
            if (h > n_pos) h = n_pos;
            break;
        }
        }
        lo[t] = l;
        hi[t] = h;
    }
}

/* A token's parts: >= 32 positions each, at most ATT_MAXSPLIT; a function of
 * its visible positions only (see the top). */
static int parts_of(int len) {
    int ns = len / 32;
    return ns < 1 ? 1 : ns > ATT_MAXSPLIT ? ATT_MAXSPLIT : ns;
}

/* Per-thread workspace floats: scores, maxima, sums, accumulators, then the
 * parts of one (token, KV head) computed by one thread. */
static size_t ws_per_thread(int nH, int nq_max) {
    /* then the prompt tiles' K^T and V blocks, maxima and sums per row and
     * the probabilities of 8 rows */
    const size_t hd = (size_t)(nq_max + nH - 1) / (size_t)nH;
    return (size_t)nH * (ATT_B + 2) + (size_t)nq_max + (size_t)ATT_MAXSPLIT * ((size_t)nq_max + 2 * (size_t)nH) +
           2 * ATT_KB * hd + 2 * (size_t)ATT_QT * nH + 8 * ATT_KB + 16;
}

size_t g4_attn_ws_floats(int n_threads, int n_head, int nq_max) {
    /* then the partial results of split decode (fewer than 8 (token, KV head)
     * pairs, each in <= ATT_MAXSPLIT parts) */
    return (size_t)n_threads * ws_per_thread(n_head, nq_max) +
           (size_t)8 * ATT_MAXSPLIT * ((size_t)nq_max + 2 * (size_t)n_head);
}

typedef struct attn_task {
    const g4_attn *a;
    int tiles;     /* the tiled tokens are done: skip them */
    int ns;
    float *ws;     /* per-thread workspaces, `wsn` floats apart */
    size_t wsn;
    float *part;   /* ns > 1: per (t, g, part): G maxima, G sums, G*hd partial outputs */
    atomic_long next;  /* next unclaimed work item */
} attn_task;

/* G heads over positions [j0, j1): mx[h], sum[h], unnormalised acc[h][hd]. */
static void attn_span(const g4_vec_ops *vo, const float *q, int G, int hd, const g4_kv_view *c, int nkv, int g,
                      int j0, int j1, float *sc, float *mx, float *sum, float *acc) {
    const g4_kv_ops *ko = g4_kv_ops_get(c->type);
#if defined(__aarch64__)
    const int f32 = 0;                     /* vec_kv.c's NEON rows (vec.c has no NEON kernels) */
#else
    const int f32 = c->type == G4_KV_F32;  /* vec.c's kernels, without vec_kv.c's wrapper */
#endif
    for (int h = 0; h < G; h++) { mx[h] = -INFINITY; sum[h] = 0; }
    memset(acc, 0, (size_t)G * hd * sizeof(float));
    /* rs = hs = 0: a view of packed f32 rows (an encoder's own cache) */
    size_t hs = c->hs ? c->hs : (size_t)hd * sizeof(float), rs = c->rs ? c->rs : (size_t)nkv * hs;
    for (int b0 = j0; b0 < j1;) {
        size_t row = g4_kv_row(c, b0);
        int nb = j1 - b0, left = c->page - b0 % c->page;
        if (nb > ATT_B) nb = ATT_B;
        if (nb > left) nb = left;     /* the page ends (or the ring wraps) here */
        const char *k = c->k + row * rs + (size_t)g * hs, *v = c->v + row * rs + (size_t)g * hs;
        if (f32) vo->qk(sc, ATT_B, q, G, (const float *)k, rs / sizeof(float), nb, hd);
        else ko->qk(sc, ATT_B, q, G, k, rs, nb, hd);
        for (int h = 0; h < G; h++) {
            float *sh = sc + (size_t)h * ATT_B, bm = mx[h];
            for (int j = 0; j < nb; j++) if (sh[j] > bm) bm = sh[j];
            if (bm > mx[h]) {
                float r = expf(mx[h] - bm);   /* 0 on the first block */
                sum[h] *= r;
                for (int i = 0; i < hd; i++) acc[(size_t)h * hd + i] *= r;
                mx[h] = bm;
            }
            sum[h] += vo->expsum(sh, nb, bm);
        }
        if (f32) vo->pv(acc, sc, ATT_B, G, (const float *)v, rs / sizeof(float), nb, hd);
        else ko->pv(acc, sc, ATT_B, G, v, rs, nb, hd);
        b0 += nb;
    }
}

/* out_h = sum_p acc_p,h e^(m_p - M) / sum_p l_p e^(m_p - M) over the ns parts
 * of one (token, KV head) at pb (G maxima, G sums, G*hd partial outputs per
 * part) */
static void merge_one(const g4_vec_ops *vo, const float *pb, int ns, int G, int hd, float *o) {
    for (int h = 0; h < G; h++) {
        float M = -INFINITY, L = 0;
        for (int p = 0; p < ns; p++) {
            float mp = pb[(size_t)p * G * (hd + 2) + h];
            if (mp > M) M = mp;
        }
        float *oh = o + (size_t)h * hd;
        memset(oh, 0, (size_t)hd * sizeof(float));
        for (int p = 0; p < ns; p++) {
            const float *pp = pb + (size_t)p * G * (hd + 2);
            if (pp[h] == -INFINITY) continue;      /* empty part */
            float w = expf(pp[h] - M);
            L += pp[G + h] * w;
            vo->axpy(oh, w, pp + 2 * G + (size_t)h * hd, hd);
        }
        float inv = 1.0f / L;
        for (int i = 0; i < hd; i++) oh[i] *= inv;
    }
}

/* ---- prompt tiles ---- */

/* token t goes in a tile: one of the panel tokens, its cache allows */
static int tiled(const g4_attn *a, int t) {
    int lo = 0, hi = a->np;
    while (lo < hi) {   /* pcol is ascending */
        const int mid = (lo + hi) / 2;
        if (a->pcol[mid] < t) lo = mid + 1; else hi = mid;
    }
    return lo < a->np && a->pcol[lo] == t && g4_kv_tile_ok(a->kv[t]->type, a->head_dim);
}

typedef struct tile_task {
    const g4_attn *a;
    float *ws;
    size_t wsn;
    atomic_long next;   /* next unclaimed (chunk of ATT_QT panel tokens, KV head) */
} tile_task;

/* Tokens t0 .. t0 + nt - 1 (consecutive, one cache) with KV head g. */
static void tile_run(const g4_attn *a, int t0, int nt, int g, float *ws) {
    const int hd = a->head_dim, nH = a->n_head, G = nH / a->n_kv_head, nq = nH * hd;
    const g4_kv_view *c = a->kv[t0];
    const size_t hs = c->hs, rs = c->rs;
    float *kt = ws, *vf = kt + (size_t)ATT_KB * hd, *mx = vf + (size_t)ATT_KB * hd, *sum = mx + ATT_QT * G,
          *p = sum + ATT_QT * G;
    const float *q = a->q + (size_t)t0 * nq + (size_t)g * G * hd;
    float *acc = a->out + (size_t)t0 * nq + (size_t)g * G * hd;
    int32_t u0 = a->lo[t0], u1 = a->hi[t0];
    for (int i = 0; i < nt; i++) {
        if (a->lo[t0 + i] < u0) u0 = a->lo[t0 + i];
        if (a->hi[t0 + i] > u1) u1 = a->hi[t0 + i];
        memset(acc + (size_t)i * nq, 0, (size_t)G * hd * sizeof(float));
    }
    for (int r = 0; r < nt * G; r++) { mx[r] = -INFINITY; sum[r] = 0; }
    /* blocks on the absolute grid of ATT_KB positions: a token's blocks
     * and its masks within them follow from its own [lo, hi) */
    for (int32_t b0 = u0 / ATT_KB * ATT_KB; b0 < u1; b0 += ATT_KB) {
        const char *kr[ATT_KB], *vr[ATT_KB];
        for (int j = 0; j < ATT_KB; j++) {
            const int32_t pj = b0 + j;
            if (pj < u0 || pj >= u1) { kr[j] = vr[j] = NULL; continue; }
            const size_t row = g4_kv_row(c, pj);
            kr[j] = c->k + row * rs + (size_t)g * hs;
            vr[j] = c->v + row * rs + (size_t)g * hs;
        }
        uint16_t mask[ATT_QT];
        for (int i = 0; i < nt; i++) {
            int j0 = a->lo[t0 + i] - b0, j1 = a->hi[t0 + i] - b0;
            if (j0 < 0) j0 = 0;
            if (j1 > ATT_KB) j1 = ATT_KB;
            mask[i] = j1 > j0 ? (uint16_t)(((1u << j1) - 1) & ~((1u << j0) - 1)) : 0;
        }
        g4_kv_tile_load(kr, vr, hd, kt, vf);
        g4_kv_tile_step(q, (size_t)nq, acc, (size_t)nq, nt, G, hd, mask, kt, vf, mx, sum, p);
    }
    for (int i = 0; i < nt; i++)
        for (int h = 0; h < G; h++) {
            const float inv = 1.0f / sum[i * G + h];
            float *o = acc + (size_t)i * nq + (size_t)h * hd;
            for (int d = 0; d < hd; d++) o[d] *= inv;
        }
}

static void tile_worker(void *arg, int ith, int nth) {
    tile_task *k = arg;
    const g4_attn *a = k->a;
    (void)nth;
    float *ws = k->ws + (size_t)ith * k->wsn;   /* the row path's buffers are idle in this section */
    const long nkv = a->n_kv_head, total = (long)(a->np + ATT_QT - 1) / ATT_QT * nkv;
    for (long ic; (ic = atomic_fetch_add_explicit(&k->next, 1, memory_order_relaxed)) < total;) {
        /* the last chunks first: a causal prompt's later tokens see more
         * positions, so the cheap ones are left to even out the ends */
        const long it = total - 1 - ic;
        const int c0 = (int)(it / nkv) * ATT_QT, g = (int)(it % nkv);
        const int c1 = c0 + ATT_QT < a->np ? c0 + ATT_QT : a->np;
        /* runs of consecutive tiled tokens of one cache within the chunk */
        for (int i = c0; i < c1;) {
            const int t0 = a->pcol[i];
            if (!tiled(a, t0)) { i++; continue; }
            int e = i + 1;
            while (e < c1 && a->pcol[e] == a->pcol[e - 1] + 1 && a->kv[a->pcol[e]] == a->kv[t0] && tiled(a, a->pcol[e]))
                e++;
            tile_run(a, t0, e - i, g, ws);
            i = e;
        }
    }
}

/* Work items: (token, KV head), or with k->ns > 1 (decode) (token, KV head,
 * part) with k->ns parts per pair of which the token uses parts_of(len). */
static void attn_worker(void *arg, int ith, int nth) {
    attn_task *k = arg;
    const g4_attn *a = k->a;
    int hd = a->head_dim, nH = a->n_head, nkv = a->n_kv_head, G = nH / nkv, nq = nH * hd, ns = k->ns;
    float *ws = k->ws + (size_t)ith * k->wsn;
    float *sc = ws, *mx = sc + (size_t)G * ATT_B, *sum = mx + G, *acc = sum + G;
    float *own = ws + (size_t)nH * (ATT_B + 2) + (size_t)nq; /* this thread's parts */
    const g4_vec_ops *vo = g4_vec_get();
    /* claimed, not split: items differ in length (each token's own
     * context), and a late thread's share goes to whoever is present.
     * Guided: a claim takes 1/(2 nth) of what is left, at least one. */
    const long total = (long)a->T * nkv * ns;
    for (long lo = atomic_load_explicit(&k->next, memory_order_relaxed), hi; lo < total;
         lo = atomic_load_explicit(&k->next, memory_order_relaxed)) {
        hi = lo + (total - lo) / (2 * nth);
        if (hi == lo) hi = lo + 1;
        if (!atomic_compare_exchange_weak_explicit(&k->next, &lo, hi, memory_order_relaxed, memory_order_relaxed))
            continue;
        for (long it = lo; it < hi; it++) {
            int t = (int)(it / ((long)nkv * ns)), g = (int)(it / ns % nkv), part = (int)(it % ns);
            int j0 = a->lo[t], len = a->hi[t] - j0, np = parts_of(len);
            const float *q = a->q + (size_t)t * nq + (size_t)g * G * hd;
            float *o = a->out + (size_t)t * nq + (size_t)g * G * hd;
            if (part >= np || (k->tiles && tiled(a, t))) continue;
            if (np == 1) {
                attn_span(vo, q, G, hd, a->kv[t], nkv, g, j0, j0 + len, sc, mx, sum, acc);
                for (int h = 0; h < G; h++) {
                    float inv = 1.0f / sum[h];
                    for (int i = 0; i < hd; i++) o[(size_t)h * hd + i] = acc[(size_t)h * hd + i] * inv;
                }
            } else if (ns > 1) { /* one part; attn_merge combines them */
                float *pb = k->part + (size_t)it * G * (hd + 2);
                int p0 = j0 + (int)((long)len * part / np), p1 = j0 + (int)((long)len * (part + 1) / np);
                attn_span(vo, q, G, hd, a->kv[t], nkv, g, p0, p1, sc, pb, pb + G, pb + 2 * G);
            } else { /* all parts here, then the same merge */
                for (int p = 0; p < np; p++) {
                    float *pb = own + (size_t)p * G * (hd + 2);
                    int p0 = j0 + (int)((long)len * p / np), p1 = j0 + (int)((long)len * (p + 1) / np);
                    attn_span(vo, q, G, hd, a->kv[t], nkv, g, p0, p1, sc, pb, pb + G, pb + 2 * G);
                }
                merge_one(vo, own, np, G, hd, o);
            }
        }
    }
}

/* ns > 1: the split pairs' parts */
static void attn_merge(attn_task *k) {
    const g4_attn *a = k->a;
    const g4_vec_ops *vo = g4_vec_get();
    int hd = a->head_dim, nH = a->n_head, nkv = a->n_kv_head, G = nH / nkv, ns = k->ns;
    for (int t = 0; t < a->T; t++) {
        int np = parts_of(a->hi[t] - a->lo[t]);
        if (np == 1 || (k->tiles && tiled(a, t))) continue; /* written by its worker / a tile */
        for (int g = 0; g < nkv; g++)
            merge_one(vo, k->part + ((size_t)t * nkv + g) * ns * G * (hd + 2), np, G, hd,
                      a->out + (size_t)t * nH * hd + (size_t)g * G * hd);
    }
}

void g4_op_attention(g4_exec *ex, const g4_attn *a, float *ws, int nq_max) {
    int nth = ex->n_threads, ntiled = 0;
    for (int i = 0; a->pcol && i < a->np; i++) ntiled += tiled(a, a->pcol[i]);
    attn_task k = { a, ntiled > 0, 1, ws, ws_per_thread(a->n_head, nq_max), NULL, 0 };
    if (ntiled) {
        tile_task tk = { .a = a, .ws = ws, .wsn = k.wsn };
        atomic_init(&tk.next, 0);
        g4_pool_run_dyn(ex->pool, tile_worker, &tk);
        if (ntiled == a->T) return;
    }
    int pairs = (a->T - ntiled) * a->n_kv_head;
    if (pairs < 8 && !ntiled) {
        /* too few pairs to keep the threads busy: a pair's parts go to
         * different threads (parts of >= 32 positions; >= 256 left one
         * thread alone on most decode steps of E2B, one KV head: 3% of a
         * step at depths 0-256). The parts depend on each token's length
         * only, never on the thread count or the batch, so results do not
         * either. */
        int ns = 1;
        for (int t = 0; t < a->T; t++) {
            int np = parts_of(a->hi[t] - a->lo[t]);
            if (np > ns && !(k.tiles && tiled(a, t))) ns = np;
        }
        if (ns > 1) {
            k.ns = ns;
            k.part = ws + (size_t)nth * k.wsn;
        }
    }
    /* one work item (decode with one KV head, short context): no hand-off */
    if ((long)(a->T - ntiled) * a->n_kv_head * k.ns == 1) attn_worker(&k, 0, 1);
    else g4_pool_run_dyn(ex->pool, attn_worker, &k);
    if (k.ns > 1) attn_merge(&k);
}

/* ---- dense attention (encoders) -------------------------------------------- */

/* queries per work item: a [AD_QB][N] score block per thread (~0.5 MB at
 * N = 2520); keys per P.V step: a 64 KB slice of V stays in L2 while the
 * block's queries meet it */
enum { AD_QB = 48, AD_KB = 256 };

/* bf16 layout (ex->mm.bf16 and AVX512_BF16): per head the panels of K (rows
 * = keys, inputs = hd) and of V transposed (rows = hd, inputs = keys), then
 * per thread the [AD_QB][N] f32 scores, their bf16 softmax rows [AD_QB][N
 * even] and the block's queries in bf16 [AD_QB][hd even] */
typedef struct dense_bf16 {
    size_t kh, vh, pe_k, pe_v, np, hp, thread;   /* uint16 counts */
} dense_bf16;

static dense_bf16 bf16_layout(int N, int hd) {
    dense_bf16 b;
    b.pe_k = g4_bf16_panel_elems(G4_BF16_PR, hd);
    b.pe_v = g4_bf16_panel_elems(G4_BF16_PR, N);
    b.kh = g4_bf16_panel_elems(N, hd);
    b.vh = g4_bf16_panel_elems(hd, N);
    b.np = (size_t)(N + 1) / 2 * 2;
    b.hp = (size_t)(hd + 1) / 2 * 2;
    b.thread = (size_t)AD_QB * N * 2 + (size_t)AD_QB * (b.np + b.hp);
    b.thread = (b.thread + 31) / 32 * 32;    /* 64-byte steps */
    return b;
}

size_t g4_attn_dense_ws_floats(int n_threads, int N, int n_head, int hd) {
    const size_t f32 = (size_t)N * n_head * hd + (size_t)n_threads * AD_QB * N;
    const dense_bf16 b = bf16_layout(N, hd);
    const size_t bf = ((size_t)n_head * (b.kh + b.vh) + (size_t)n_threads * b.thread) / 2 + 16;
    return f32 > bf ? f32 : bf;
}

typedef struct dense_task {
    const float *q, *k, *v;
    float *out, *kt, *s;      /* kt [n_head][hd][N]; s per thread [AD_QB][N] */
    int N, nH, hd, nq, nqb;
    float scale;
    uint16_t *pan;            /* bf16: the panels (dense_bf16), else NULL */
    dense_bf16 b;
} dense_task;

/* bf16: the K and V panels of every head, (head, panel) items */
static void dense_pack(void *arg, int ith, int nth) {
    dense_task *t = arg;
    const int nk = (t->N + G4_BF16_PR - 1) / G4_BF16_PR, nv = (t->hd + G4_BF16_PR - 1) / G4_BF16_PR;
    long lo, hi;
    g4_split((long)t->nH * (nk + nv), ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        const int h = (int)(it / (nk + nv)), i = (int)(it % (nk + nv));
        uint16_t *kp = t->pan + (size_t)h * (t->b.kh + t->b.vh), *vp = kp + t->b.kh;
        if (i < nk) {
            const int r0 = i * G4_BF16_PR;
            g4_bf16_pack_f32(kp + (size_t)i * t->b.pe_k, t->k + (size_t)r0 * t->nq + (size_t)h * t->hd,
                             (size_t)t->nq, 1, t->N - r0 < G4_BF16_PR ? t->N - r0 : G4_BF16_PR, t->hd);
        } else {
            const int d0 = (i - nk) * G4_BF16_PR;
            g4_bf16_pack_f32(vp + (size_t)(i - nk) * t->b.pe_v, t->v + (size_t)h * t->hd + d0, 1, (size_t)t->nq,
                             t->hd - d0 < G4_BF16_PR ? t->hd - d0 : G4_BF16_PR, t->N);
        }
    }
}

/* bf16: per (head, block of queries) S = Q K^T, P = bf16 softmax rows
 * (unnormalized), out = (P V) / rowsum(P) */
static void dense_worker_bf16(void *arg, int ith, int nth) {
    dense_task *t = arg;
    const int N = t->N, hd = t->hd, nq = t->nq;
    uint16_t *tb = t->pan + (size_t)t->nH * (t->b.kh + t->b.vh) + (size_t)ith * t->b.thread;
    float *s = (float *)(void *)tb;
    uint16_t *p = tb + (size_t)AD_QB * N * 2, *qb = p + (size_t)AD_QB * t->b.np;
    long lo, hi;
    g4_split((long)t->nH * t->nqb, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        int h = (int)(it / t->nqb), q0 = (int)(it % t->nqb) * AD_QB, nb = N - q0 < AD_QB ? N - q0 : AD_QB;
        const uint16_t *kp = t->pan + (size_t)h * (t->b.kh + t->b.vh), *vp = kp + t->b.kh;
        for (int i = 0; i < nb; i++)
            g4_bf16_round_row(t->q + (size_t)(q0 + i) * nq + (size_t)h * hd, qb + (size_t)i * t->b.hp, hd);
        g4_bf16_gemm(kp, hd, N, qb, t->b.hp, nb, s, (size_t)N);
        float inv[AD_QB];
        for (int i = 0; i < nb; i++)
            inv[i] = 1.0f / g4_bf16_softmax_row(s + (size_t)i * N, N, t->scale, p + (size_t)i * t->b.np);
        float *o = t->out + (size_t)q0 * nq + (size_t)h * hd;
        g4_bf16_gemm(vp, N, hd, p, t->b.np, nb, o, (size_t)nq);
        for (int i = 0; i < nb; i++)
            for (int d = 0; d < hd; d++) o[(size_t)i * nq + d] *= inv[i];
    }
}

static void dense_transpose(void *arg, int ith, int nth) {
    dense_task *t = arg;
    long lo, hi;
    g4_split((long)t->nH * t->hd, ith, nth, &lo, &hi);
    for (long r = lo; r < hi; r++) {   /* r = h * hd + i: K[:, r] as a row */
        float *d = t->kt + (size_t)r * t->N;
        for (int j = 0; j < t->N; j++) d[j] = t->k[(size_t)j * t->nq + (size_t)r];
    }
}

static void dense_worker(void *arg, int ith, int nth) {
    dense_task *t = arg;
    const g4_vec_ops *vo = g4_vec_get();
    const int N = t->N, hd = t->hd, nq = t->nq;
    float *s = t->s + (size_t)ith * AD_QB * N;
    long lo, hi;
    g4_split((long)t->nH * t->nqb, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        int h = (int)(it / t->nqb), q0 = (int)(it % t->nqb) * AD_QB, nb = N - q0 < AD_QB ? N - q0 : AD_QB;
        /* s = Q_h K_h^T: rows of K^T are contiguous over the keys */
        memset(s, 0, (size_t)nb * N * sizeof(float));
        vo->gemm_nn(s, N, t->q + (size_t)q0 * nq + (size_t)h * hd, nq, t->kt + (size_t)h * hd * N, N, nb, N, hd);
        for (int i = 0; i < nb; i++) {
            float *r = s + (size_t)i * N, m = -INFINITY;
            if (t->scale != 1.0f)
                for (int j = 0; j < N; j++) r[j] *= t->scale;
            for (int j = 0; j < N; j++) m = r[j] > m ? r[j] : m;
            float inv = 1.0f / vo->expsum(r, N, m);
            for (int j = 0; j < N; j++) r[j] *= inv;
        }
        /* out_h = P V_h, AD_KB keys at a time */
        float *o = t->out + (size_t)q0 * nq + (size_t)h * hd;
        for (int i = 0; i < nb; i++) memset(o + (size_t)i * nq, 0, (size_t)hd * sizeof(float));
        for (int j0 = 0; j0 < N; j0 += AD_KB) {
            int nk = N - j0 < AD_KB ? N - j0 : AD_KB;
            vo->gemm_nn(o, nq, s + j0, N, t->v + (size_t)j0 * nq + (size_t)h * hd, nq, nb, hd, nk);
        }
    }
}

void g4_op_attention_dense(g4_exec *ex, const float *q, const float *k, const float *v, float *out, int N,
                           int n_head, int hd, float scale, float *ws) {
    int nq = n_head * hd;
    dense_task t = { q, k, v, out, ws, ws + (size_t)N * nq, N, n_head, hd, nq, (N + AD_QB - 1) / AD_QB, scale,
                     NULL, bf16_layout(N, hd) };
    if (ex->mm.bf16 && g4_bf16_dot_ok()) {
        t.pan = (uint16_t *)(void *)(((uintptr_t)ws + 63) / 64 * 64);
        g4_pool_run(ex->pool, dense_pack, &t);
        g4_pool_run(ex->pool, dense_worker_bf16, &t);
        return;
    }
    g4_pool_run(ex->pool, dense_transpose, &t);
    g4_pool_run(ex->pool, dense_worker, &t);
}
