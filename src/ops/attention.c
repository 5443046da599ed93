/* Attention over a KV cache (attention.h).
 *
 * Work item = (token, KV head, part of the visible positions). The G query
 * heads that share a KV head are done together, so each cache row is read
 * once per group (per-type qk/pv kernels in vec_kv.c). Positions go in blocks of ATT_B
 * with an online softmax (running max and denominator per head). When there
 * are fewer (token, KV head) pairs than threads (decode), the positions are
 * split into parts whose partial sums are merged afterwards. */
#include "ops/attention.h"

#include <math.h>
#include <string.h>

#include "tensor/vec.h"

/* attention blocks (positions per online-softmax step) and decode split limit */
enum { ATT_B = 64, ATT_MAXSPLIT = 8 };

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

/* Per-thread workspace floats: scores, maxima, sums, accumulators. */
static size_t ws_per_thread(int nH, int nq_max) { return (size_t)nH * (ATT_B + 2) + (size_t)nq_max; }

size_t g4_attn_ws_floats(int n_threads, int n_head, int nq_max) {
    /* then the partial results of split decode (fewer than 8 (token, KV head)
     * pairs, each in <= ATT_MAXSPLIT parts) */
    return (size_t)n_threads * ws_per_thread(n_head, nq_max) +
           (size_t)8 * ATT_MAXSPLIT * ((size_t)nq_max + 2 * (size_t)n_head);
}

typedef struct attn_task {
    const g4_attn *a;
    int ns;
    float *ws;     /* per-thread workspaces, `wsn` floats apart */
    size_t wsn;
    float *part;   /* ns > 1: per (t, g, part): G maxima, G sums, G*hd partial outputs */
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

/* Parts of token t's positions in a split section: from its own length
 * only (>= 32 positions each), never from its neighbours', so a decode token
 * sums its attention the same way alone or beside other sequences' tokens. */
static int parts_of(const g4_attn *a, int t, int ns) {
    int n = (a->hi[t] - a->lo[t]) / 32;
    return n < 1 ? 1 : n > ns ? ns : n;
}

static void attn_worker(void *arg, int ith, int nth) {
    attn_task *k = arg;
    const g4_attn *a = k->a;
    int hd = a->head_dim, nH = a->n_head, nkv = a->n_kv_head, G = nH / nkv, nq = nH * hd, ns = k->ns;
    float *ws = k->ws + (size_t)ith * k->wsn;
    float *sc = ws, *mx = sc + (size_t)G * ATT_B, *sum = mx + G, *acc = sum + G;
    const g4_vec_ops *vo = g4_vec_get();
    long lo, hi;
    g4_split((long)a->T * nkv * ns, ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        int t = (int)(it / ((long)nkv * ns)), g = (int)(it / ns % nkv), part = (int)(it % ns);
        const int nt = ns == 1 ? 1 : parts_of(a, t, ns);
        if (part >= nt) continue;   /* the token has fewer parts */
        int j0 = a->lo[t], len = a->hi[t] - j0;
        int p0 = j0 + (int)((long)len * part / nt), p1 = j0 + (int)((long)len * (part + 1) / nt);
        const float *q = a->q + (size_t)t * nq + (size_t)g * G * hd;
        if (nt == 1) {
            attn_span(vo, q, G, hd, a->kv[t], nkv, g, p0, p1, sc, mx, sum, acc);
            float *o = a->out + (size_t)t * nq + (size_t)g * G * hd;
            for (int h = 0; h < G; h++) {
                float inv = 1.0f / sum[h];
                for (int i = 0; i < hd; i++) o[(size_t)h * hd + i] = acc[(size_t)h * hd + i] * inv;
            }
        } else {
            float *pb = k->part + (size_t)it * G * (hd + 2);
            attn_span(vo, q, G, hd, a->kv[t], nkv, g, p0, p1, sc, pb, pb + G, pb + 2 * G);
        }
    }
}

/* ns > 1: out_h = sum_p acc_p,h e^(m_p - M) / sum_p l_p e^(m_p - M) */
static void attn_merge(attn_task *k) {
    const g4_attn *a = k->a;
    const g4_vec_ops *vo = g4_vec_get();
    int hd = a->head_dim, nH = a->n_head, nkv = a->n_kv_head, G = nH / nkv, ns = k->ns;
    for (int t = 0; t < a->T; t++)
        for (int g = 0; g < nkv && parts_of(a, t, ns) > 1; g++) {
            const int nt = parts_of(a, t, ns);
            const float *pb = k->part + ((size_t)t * nkv + g) * ns * G * (hd + 2);
            float *o = a->out + (size_t)t * nH * hd + (size_t)g * G * hd;
            for (int h = 0; h < G; h++) {
                float M = -INFINITY, L = 0;
                for (int p = 0; p < nt; p++) {
                    float mp = pb[(size_t)p * G * (hd + 2) + h];
                    if (mp > M) M = mp;
                }
                float *oh = o + (size_t)h * hd;
                memset(oh, 0, (size_t)hd * sizeof(float));
                for (int p = 0; p < nt; p++) {
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
}

void g4_op_attention(g4_exec *ex, const g4_attn *a, float *ws, int nq_max) {
    int nth = ex->n_threads, pairs = a->T * a->n_kv_head;
    attn_task k = { a, 1, ws, ws_per_thread(a->n_head, nq_max), NULL };
    if (pairs < 8) {
        /* too few pairs to keep the threads busy: split the positions into
         * parts of >= 32 (>= 256 left one thread alone on most decode steps
         * of E2B, one KV head: 3% of a step at depths 0-256). A token's
         * split depends on its own length only (parts_of), never on the
         * thread count or on token 0's length, so results do not either.
         * Left: batches of 8 or more pairs never split, so a decode token
         * deep in a long context sums differently in a large batch. */
        int ns = 1;   /* the most parts of any token (parts_of) */
        for (int t = 0; t < a->T; t++) {
            int n = (a->hi[t] - a->lo[t]) / 32;
            if (n > ns) ns = n;
        }
        if (ns > ATT_MAXSPLIT) ns = ATT_MAXSPLIT;
        if (ns > 1) {
            k.ns = ns;
            k.part = ws + (size_t)nth * k.wsn;
        }
    }
    /* one work item (decode with one KV head, short context): no hand-off */
    if ((long)a->T * a->n_kv_head * k.ns == 1) attn_worker(&k, 0, 1);
    else g4_pool_run(ex->pool, attn_worker, &k);
    if (k.ns > 1) attn_merge(&k);
}
