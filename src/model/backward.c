/* Training forward + backward schedule (backward.h). The forward half calls
 * the same ops as forward.c in the same order; the backward half walks it in
 * reverse with the ops' backward twins (ops/ops_grad.h). */
#include "model/backward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/attention.h"
#include "ops/ops_grad.h"
#include "tensor/act.h"
#include "tensor/types.h"
#include "tensor/vec.h"

/* ---- parameters ------------------------------------------------------------------ */


static void *own(g4_params *ps, void *p) {
    if (!p) return NULL;
    void **o = realloc(ps->owned, (size_t)(ps->n_owned + 1) * sizeof *o);
    if (!o) { free(p); return NULL; }
    ps->owned = o;
    o[ps->n_owned++] = p;
    return p;
}

/* Decode tensor `id` of layer l (or global, l < 0) at field f to owned f32,
 * give it a gradient and list it. 0, or -1 out of memory. */
static int add_param(g4_params *ps, int id, int l, void *f) {
    const g4_tensor_info *ti = &g4_tensors[id];
    g4_param p = { .id = id, .layer = l, .ne = { 1, 1, 1 } };
    g4_tensor_name(ti, l, p.name, sizeof p.name);
    if (id == G4_T_OUT_SCALE) {          /* a float inside g4_layer */
        p.val = f;
        p.n = 1;
    } else if (ti->kind == G4_TK_WEIGHT || ti->kind == G4_TK_EMBD) {
        g4_mat *w = f;
        if (!w->data) return 0;
        int64_t nm = w->n_mat > 0 ? w->n_mat : 1;
        p.n = (size_t)(w->n_in * w->n_out * nm);
        p.ne[0] = w->n_in; p.ne[1] = w->n_out; p.ne[2] = nm;
        p.val = own(ps, malloc(p.n * sizeof(float)));
        if (!p.val) return -1;
        const g4_type_traits *tt = g4_type_info(w->type);
        for (int64_t r = 0; r < w->n_out * nm; r++)
            tt->to_float((const char *)w->data + (size_t)r * w->row_bytes, p.val + (size_t)r * w->n_in, w->n_in);
        w->data = p.val;
        w->type = G4_F32;
        w->row_bytes = (size_t)w->n_in * sizeof(float);
    } else {
        float **v = f;
        if (!*v) return 0;
        g4_arch_dims d = { .n_embd = ps->m->n_embd, .n_vocab = ps->m->n_vocab, .n_layer = ps->m->n_layer,
                           .n_ple = ps->m->n_ple, .n_head = ps->m->n_head, .n_expert = ps->m->n_expert,
                           .n_ff_exp = ps->m->n_ff_exp };
        if (l >= 0) d.head_dim = ps->m->layers[l].head_dim;
        int64_t ne[3];
        g4_tensor_shape(ti, &d, ne);
        p.n = (size_t)(ne[0] * ne[1] * ne[2]);
        p.ne[0] = ne[0];
        p.val = *v;     /* vectors were decoded to owned f32 at load */
    }
    p.grad = own(ps, calloc(p.n, sizeof(float)));
    if (!p.grad) return -1;
    g4_param *np = realloc(ps->p, (size_t)(ps->n + 1) * sizeof *np);
    if (!np) return -1;
    ps->p = np;
    ps->p[ps->n++] = p;
    if (l < 0) ps->g[id] = p.grad;
    else ps->lg[l][id] = p.grad;
    return 0;
}

g4_params *g4_params_new(g4_model *m, int trainable, g4_error *err) {
    g4_params *ps = calloc(1, sizeof *ps);
    if (!ps) { g4_seterr(err, "out of memory"); return NULL; }
    ps->m = m;
    ps->lg = calloc((size_t)m->n_layer, sizeof *ps->lg);
    if (!ps->lg) goto oom;
    if (!trainable) return ps;
    bool tied = m->output.data == m->tok_embd.data;
    for (int id = 0; id < G4_T_COUNT; id++) {
        const g4_tensor_info *ti = &g4_tensors[id];
        /* rope_freqs: fixed divisors, not a weight */
        if (ti->layer || !g4_model_field[id] || ti->kind == G4_TK_ROPE || (id == G4_T_OUTPUT && tied)) continue;
        if (add_param(ps, id, -1, (char *)m + g4_model_field[id] - 1)) goto oom;
    }
    if (tied) {        /* the head reads the embedding: one tensor, one gradient */
        m->output = m->tok_embd;
        ps->g[G4_T_OUTPUT] = ps->g[G4_T_TOKEN_EMBD];
    }
    for (int l = 0; l < m->n_layer; l++)
        for (int id = 0; id < G4_T_COUNT; id++)
            if (g4_tensors[id].layer && g4_layer_field[id] &&
                add_param(ps, id, l, (char *)&m->layers[l] + g4_layer_field[id] - 1))
                goto oom;
    return ps;
oom:
    g4_params_free(ps);
    g4_seterr(err, "out of memory decoding the model's weights for training");
    return NULL;
}

void g4_params_free(g4_params *ps) {
    if (!ps) return;
    for (int i = 0; i < ps->n_owned; i++) free(ps->owned[i]);
    free(ps->owned);
    free(ps->p);
    free(ps->lg);
    free(ps);
}

void g4_params_zero_grad(g4_params *ps) {
    for (int i = 0; i < ps->n; i++) memset(ps->p[i].grad, 0, ps->p[i].n * sizeof(float));
}

/* ---- workspace ---------------------------------------------------------------------- */

struct g4_train_ws {
    const g4_model *m;
    g4_dims d;
    int n_ctx, RC;                /* RC: rows of logits per chunk of the head */
    g4_exec ex;
    size_t bytes;
    float *X;                     /* [L+1][n_ctx][H] residual stream entering each layer (and the last) */
    float **K, **V, **dK, **dV;   /* [L]: owning layers' caches [n_ctx][nkv*hd], else NULL */
    float *ple_c, *ple, *dple;    /* [n_ctx][L*P]: projected context part, combined inputs, gradient */
    float *rope;                  /* [n_ctx][rot_swa] then [n_ctx][rot_full] */
    int32_t *pos, *lo_swa, *hi_swa, *lo_full, *hi_full, *pcol;   /* pcol: 0..n_ctx-1 */
    const g4_kv_view **kvp;
    int32_t page0;
    /* one layer's internals (recomputed in backward, or kept: lay_acts) */
    float *xn, *qr, *q, *kr, *vr, *att, *o, *x1, *xn2, *gg, *uu, *a, *fm, *f, *x2, *pg, *pa, *ph, *x3, *tmp;
    float *moe_logit, *moe_w, *moe_xs, *moe_xe, *moe_out, *moe_in, *moe_ffa, *moe_ffb, *f1;
    int *moe_sel, *moe_rows;
    /* gradients of the internals */
    float *dx, *dxn, *dq, *dqr, *dkr, *dvr, *datt, *do_, *df, *dfm, *da, *dgg, *duu, *dpg, *dpa, *dph, *dmo, *dxe;
    float *moe_tmp, *moe_dlog;
    float *ws_attn, *ws_attnb, *row_buf, *lg, *xnf, *dxnf, *ple_tmp;
    float *attn_ps;     /* attention backward's P^T / dS^T store when ATTN_PS_FITS, else unused */
    void **allocs;
    int n_allocs;
    /* LoRA: gradients per entry of ex.lora, and [n_ctx][max_r] scratch x2 */
    float *const *lga, *const *lgb;
    float *lu, *lgv;
    float *lfast;      /* the fast lora_bwd's scratch (lora_fast_floats) */
    /* kept activations: sc points at the scratch above, kept[l] at layer l's
     * own copies when keep[l] (g4_train_ws_keep) */
    struct lay_acts *kept, *sc;
    bool *keep;
    int n_kept;
    size_t kept_bytes;
    double prof[G4_TRAIN_PARTS];   /* seconds per part of g4_train_seq, summed */
    double *rloss;                 /* [RC] the head chunk's losses per row */
};

/* Attention backward keeps its probabilities and score gradients for its
 * second pass (2 of its 7 products fewer) when they take at most 64 MiB:
 * 2 n_head ctx^2 floats, up to ctx 1024 at 8 heads (E2B/E4B: 16 MiB at
 * 512); longer contexts recompute them. */
#define ATTN_PS_FITS(n_ctx, n_head) (2.0 * (n_head) * (double)(n_ctx) * (n_ctx) * sizeof(float) <= 64.0 * 1048576)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void g4_train_ws_profile(const g4_train_ws *tw, double s[G4_TRAIN_PARTS]) {
    memcpy(s, tw->prof, sizeof tw->prof);
}

/* What a layer's backward reads that only its forward products (or the
 * attention) make: kept per layer instead of rerunning the layer. The cheap
 * rest (xn, q, xn2, a, f: norms, rope, GeGLU, a copy) is recomputed by
 * layer_restore with the forward's own calls, so kept and recomputed layers
 * give the same bits. Each [T][width]: qr, att [nq]; kr, vr [nk] (a layer
 * owning its KV); o, x1, fm, x2, ph, x3 [H]; gg, uu [F]; pg, pa [P]. */
typedef struct lay_acts { float *qr, *kr, *vr, *att, *o, *x1, *gg, *uu, *fm, *x2, *pg, *pa, *ph, *x3; } lay_acts;

static void bind_layer(g4_train_ws *tw, int l) {
    const lay_acts *a = tw->keep && tw->keep[l] ? &tw->kept[l] : tw->sc;
    tw->qr = a->qr; tw->kr = a->kr; tw->vr = a->vr; tw->att = a->att; tw->o = a->o; tw->x1 = a->x1;
    tw->gg = a->gg; tw->uu = a->uu; tw->fm = a->fm; tw->x2 = a->x2; tw->pg = a->pg; tw->pa = a->pa;
    tw->ph = a->ph; tw->x3 = a->x3;
}

static float *fal(g4_train_ws *tw, size_t n) {
    void **a = realloc(tw->allocs, (size_t)(tw->n_allocs + 1) * sizeof *a);
    if (!a) return NULL;
    tw->allocs = a;
    float *p = calloc(n ? n : 1, sizeof(float));
    if (p) { a[tw->n_allocs++] = p; tw->bytes += n * sizeof(float); }
    return p;
}

void g4_train_ws_free(g4_train_ws *tw) {
    if (!tw) return;
    for (int i = 0; i < tw->n_allocs; i++) free(tw->allocs[i]);
    free(tw->allocs);
    free(tw->K); free(tw->V); free(tw->dK); free(tw->dV);
    free(tw->pos); free(tw->kvp); free(tw->moe_sel); free(tw->moe_rows);
    free(tw->ex.mm.act);
    free(tw->ex.lora_tmp);
    free(tw->lu);
    free(tw->lfast);
    free(tw->kept);
    free(tw->sc);
    free(tw->rloss);
    free(tw->keep);
    if (tw->ex.pool) g4_pool_release(tw->ex.pool);
    free(tw);
}

size_t g4_train_ws_bytes(const g4_train_ws *tw) { return tw->bytes; }

void g4_train_ws_set_precision(g4_train_ws *tw, int precision) {
    tw->ex.precision = precision ? 1 : 0;
    tw->ex.lora_tiled = tw->ex.precision ? NULL : tw->lfast;   /* lfast: r (n_in + 4 n_ctx + n_out) floats */
}

g4_train_ws *g4_train_ws_new(const g4_model *m, int n_ctx, int n_threads, g4_error *err) {
    if (n_ctx < 1 || n_threads < 1) { g4_seterr(err, "context and threads must be positive"); return NULL; }
    g4_train_ws *tw = calloc(1, sizeof *tw);
    if (!tw) { g4_seterr(err, "out of memory"); return NULL; }
    g4_act_init();
    tw->m = m;
    g4_dims_of(m, &tw->d);
    const g4_dims *d = &tw->d;
    tw->n_ctx = n_ctx;
    tw->ex.precision = 1;          /* exact until g4_train_ws_set_precision */
    tw->ex.pool = g4_pool_acquire(n_threads);
    if (!tw->ex.pool) goto oom;
    tw->ex.n_threads = g4_pool_size(tw->ex.pool);
    int nth = tw->ex.n_threads, L = d->L, H = d->H, LP = d->L * d->P;
    size_t T = (size_t)n_ctx, nq = (size_t)d->nq_max, nk = (size_t)d->nkv_max, ff = (size_t)d->ff_max;
    size_t P = (size_t)(d->P ? d->P : 1), E = (size_t)(d->E ? d->E : 1), K = (size_t)(d->K ? d->K : 1);
    size_t Fe2 = 2 * (size_t)d->Fe, ffe = T * Fe2 > K * Fe2 ? T * Fe2 : K * Fe2;
    int max_in = d->max_in;
    if (2 * d->Fe > max_in) max_in = 2 * d->Fe;
    /* ~128 MB of logits per chunk: the head's backward decodes the whole
     * (tied, 262k-row) embedding once per chunk, so chunks of 128 rows keep
     * that decode at 1/128 of the product's multiply-adds */
    tw->RC = (int)(33554432 / (size_t)d->V);
    if (tw->RC < 1) tw->RC = 1;
    if (tw->RC > n_ctx) tw->RC = n_ctx;
    /* the exact products' scratch: the input in groups of 8 tokens (T
     * rounded up) and 4 decoded weight rows per thread (tensor/matmul.c) */
    tw->ex.mm.act_bytes = ((T + 8) * (size_t)max_in + 4 * (size_t)nth * (size_t)max_in) * sizeof(float) + 4096;
    tw->ex.mm.act = malloc(tw->ex.mm.act_bytes);
    tw->bytes += tw->ex.mm.act_bytes;
    tw->K = calloc((size_t)L, sizeof(float *));
    tw->V = calloc((size_t)L, sizeof(float *));
    tw->dK = calloc((size_t)L, sizeof(float *));
    tw->dV = calloc((size_t)L, sizeof(float *));
    tw->pos = malloc(6 * T * sizeof(int32_t));
    tw->kvp = malloc(T * sizeof *tw->kvp);
    tw->moe_sel = malloc(T * K * sizeof(int));
    tw->moe_rows = malloc(T * sizeof(int));
    if (!tw->ex.mm.act || !tw->K || !tw->V || !tw->dK || !tw->dV || !tw->pos || !tw->kvp || !tw->moe_sel ||
        !tw->moe_rows)
        goto oom;
    tw->lo_swa = tw->pos + T; tw->hi_swa = tw->pos + 2 * T;
    tw->lo_full = tw->pos + 3 * T; tw->hi_full = tw->pos + 4 * T;
    tw->pcol = tw->pos + 5 * T;
    for (int t = 0; t < n_ctx; t++) tw->pcol[t] = t;
    for (int l = 0; l < L; l++) {
        const g4_layer *y = &m->layers[l];
        if (!y->own_kv) continue;
        size_t n = T * (size_t)y->n_kv_head * (size_t)y->head_dim;
        if (!(tw->K[l] = fal(tw, n)) || !(tw->V[l] = fal(tw, n)) || !(tw->dK[l] = fal(tw, n)) ||
            !(tw->dV[l] = fal(tw, n)))
            goto oom;
    }
    struct { float **p; size_t n; } bufs[] = {
        { &tw->X, (size_t)(L + 1) * T * H }, { &tw->ple_c, T * LP }, { &tw->ple, T * LP }, { &tw->dple, T * LP },
        { &tw->rope, T * (size_t)(d->rot_swa + d->rot_full) },
        { &tw->xn, T * H }, { &tw->qr, T * nq }, { &tw->q, T * nq }, { &tw->kr, T * nk }, { &tw->vr, T * nk },
        { &tw->att, T * nq }, { &tw->o, T * H }, { &tw->x1, T * H }, { &tw->xn2, T * H }, { &tw->gg, T * ff },
        { &tw->uu, T * ff }, { &tw->a, T * ff }, { &tw->fm, T * H }, { &tw->f, T * H }, { &tw->x2, T * H },
        { &tw->pg, T * P }, { &tw->pa, T * P }, { &tw->ph, T * H }, { &tw->x3, T * H }, { &tw->tmp, T * H },
        { &tw->moe_logit, T * E }, { &tw->moe_w, T * E }, { &tw->moe_xs, T * H }, { &tw->moe_xe, T * H },
        { &tw->moe_out, (T > K ? T : K) * H }, { &tw->moe_in, T * H }, { &tw->moe_ffa, ffe }, { &tw->moe_ffb, ffe },
        { &tw->f1, T * H },
        { &tw->dx, T * H }, { &tw->dxn, T * H }, { &tw->dq, T * nq }, { &tw->dqr, T * nq }, { &tw->dkr, T * nk },
        { &tw->dvr, T * nk }, { &tw->datt, T * nq }, { &tw->do_, T * H }, { &tw->df, T * H }, { &tw->dfm, T * H },
        { &tw->da, T * ff }, { &tw->dgg, T * ff }, { &tw->duu, T * ff }, { &tw->dpg, T * P }, { &tw->dpa, T * P },
        { &tw->dph, T * H }, { &tw->dmo, T * H }, { &tw->dxe, T * H },
        { &tw->moe_tmp, 6 * (size_t)d->Fe + H }, { &tw->moe_dlog, T * E },
        { &tw->ws_attn, g4_attn_ws_floats(nth, d->nH, d->nq_max) },
        { &tw->ws_attnb, g4_attn_bwd_ws_floats(nth, n_ctx, d->nH, (d->nkv_max + d->hd_max - 1) / d->hd_max, d->hd_max) },
        { &tw->attn_ps, ATTN_PS_FITS(n_ctx, d->nH) ? g4_attn_bwd_store_floats(n_ctx, n_ctx, d->nH) : 0 },
        { &tw->row_buf, g4_op_matmul_bwd_buf_floats(nth, max_in > LP ? max_in : LP, n_ctx) },
        { &tw->lg, (size_t)tw->RC * d->V }, { &tw->xnf, (size_t)tw->RC * H }, { &tw->dxnf, (size_t)tw->RC * H },
        { &tw->ple_tmp, 2 * (size_t)(LP ? LP : 1) + Fe2 * 4 + ff },
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = fal(tw, bufs[i].n))) goto oom;
    tw->sc = malloc(sizeof *tw->sc);
    tw->rloss = malloc((size_t)tw->RC * sizeof *tw->rloss);
    if (!tw->sc || !tw->rloss) goto oom;
    *tw->sc = (lay_acts){ tw->qr, tw->kr, tw->vr, tw->att, tw->o, tw->x1, tw->gg, tw->uu, tw->fm, tw->x2, tw->pg,
                          tw->pa, tw->ph, tw->x3 };
    return tw;
oom:
    g4_train_ws_free(tw);
    g4_seterr(err, "out of memory allocating the training workspace (context %d)", n_ctx);
    return NULL;
}

/* ---- forward of one layer (records its internals in tw) ------------------------------- */

/* MoE backward keeps per-token routing arrays on the stack */
#define G4_TRAIN_MAX_EXPERTS 512
#define ROW(p, t, w) ((p) + (size_t)(t) * (size_t)(w))

static void moe_weights_of(const g4_model *m, const g4_layer *y, g4_moe_weights *mw) {
    *mw = (g4_moe_weights){ .router = &y->router, .router_scale = y->router_scale, .expert_scale = y->expert_scale,
                            .gate_up = y->exp_gate_up.data ? &y->exp_gate_up : NULL, .gate = &y->exp_gate,
                            .up = &y->exp_up, .down = &y->exp_down, .E = m->n_expert, .K = m->n_expert_used,
                            .Fe = m->n_ff_exp };
}

static const float *rope_of(const g4_train_ws *tw, const g4_layer *y, int T) {
    return tw->rope + (y->swa ? 0 : (size_t)T * tw->d.rot_swa);
}

/* q = rope(rmsnorm_head(qr)) */
static void q_of_qr(g4_train_ws *tw, const g4_layer *y, int T, const float *cs) {
    int nH = tw->m->n_head, hd = y->head_dim, nq = nH * hd, rot = y->n_rot;
    memcpy(tw->q, tw->qr, (size_t)T * nq * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nH; h++) {
            float *q = tw->q + (size_t)t * nq + (size_t)h * hd;
            g4_rmsnorm(q, q, y->q_norm, hd, tw->m->eps);
            g4_op_rope(q, cs + (size_t)t * rot, rot);
        }
}

static void layer_fwd(g4_train_ws *tw, int l, int T) {
    const g4_model *m = tw->m;
    const g4_layer *y = &m->layers[l];
    g4_exec *ex = &tw->ex;
    int H = m->n_embd, nH = m->n_head, hd = y->head_dim, nkv = y->n_kv_head, nq = nH * hd, nk = nkv * hd;
    int rot = y->n_rot, LP = m->n_layer * m->n_ple, P = m->n_ple;
    float eps = m->eps;
    const float *x = tw->X + (size_t)l * tw->n_ctx * H, *cs = rope_of(tw, y, T);

    /* attention: q (and own k, v) from the normed input */
    bind_layer(tw, l);
    g4_op_rmsnorm(ex, tw->xn, x, y->attn_norm, T, H, (size_t)H, eps, NULL);
    g4_op_matmul(ex, &y->wq, 0, tw->xn, H, T, tw->qr, nq);
    q_of_qr(tw, y, T, cs);
    if (y->own_kv) {
        g4_op_matmul(ex, &y->wk, 0, tw->xn, H, T, tw->kr, nk);
        if (y->k_eq_v) memcpy(tw->vr, tw->kr, (size_t)T * nk * sizeof(float));   /* V = raw K projection */
        else g4_op_matmul(ex, &y->wv, 0, tw->xn, H, T, tw->vr, nk);
        for (int t = 0; t < T; t++)
            for (int g = 0; g < nkv; g++) {
                size_t at = (size_t)t * nk + (size_t)g * hd;
                g4_rmsnorm(tw->K[l] + at, tw->kr + at, y->k_norm, hd, eps);
                g4_op_rope(tw->K[l] + at, cs + (size_t)t * rot, rot);
                g4_rmsnorm(tw->V[l] + at, tw->vr + at, NULL, hd, eps);
            }
    }
    /* the source layer's cache as one page of n_ctx positions */
    g4_kv_view view = { .k = (char *)tw->K[y->kv_src], .v = (char *)tw->V[y->kv_src], .page = tw->n_ctx, .n_pages = 1,
                        .pages = &tw->page0 };
    for (int t = 0; t < T; t++) tw->kvp[t] = &view;
    g4_attn at = { .q = tw->q, .out = tw->att, .T = T, .n_head = nH, .n_kv_head = nkv, .head_dim = hd,
                   .kv = tw->kvp, .lo = y->swa ? tw->lo_swa : tw->lo_full, .hi = y->swa ? tw->hi_swa : tw->hi_full };
    g4_op_attention(ex, &at, tw->ws_attn, tw->d.nq_max);
    g4_op_matmul(ex, &y->wo, 0, tw->att, nq, T, tw->o, H);
    memcpy(tw->x1, x, (size_t)T * H * sizeof(float));
    g4_op_rmsnorm(ex, tw->tmp, tw->o, y->post_attn_norm, T, H, (size_t)H, eps, tw->x1);

    /* feed-forward: dense GeGLU (+ experts) */
    int F = (int)y->ffn_gate.n_out;
    g4_op_rmsnorm(ex, tw->xn2, tw->x1, y->ffn_norm, T, H, (size_t)H, eps, NULL);
    g4_op_matmul(ex, &y->ffn_gate, 0, tw->xn2, H, T, tw->gg, F);
    g4_op_matmul(ex, &y->ffn_up, 0, tw->xn2, H, T, tw->uu, F);
    g4_op_geglu(ex, tw->a, tw->gg, tw->uu, (long)T * F);
    g4_op_matmul(ex, &y->ffn_down, 0, tw->a, F, T, tw->fm, H);
    if (m->n_expert) {
        g4_moe_weights mw;
        moe_weights_of(m, y, &mw);
        g4_op_rmsnorm(ex, tw->f, tw->fm, y->post_ffw_norm_1, T, H, (size_t)H, eps, NULL);
        g4_op_moe_route(ex, &mw, tw->x1, T, H, eps, tw->moe_logit, tw->moe_xs, tw->moe_sel, tw->moe_w);
        g4_op_rmsnorm(ex, tw->moe_xe, tw->x1, y->pre_ffw_norm_2, T, H, (size_t)H, eps, NULL);
        g4_moe_scratch sc = { .in = tw->moe_in, .out = tw->moe_out, .ff_a = tw->moe_ffa, .ff_b = tw->moe_ffb,
                              .rows = tw->moe_rows };
        g4_op_moe_experts(ex, &mw, tw->moe_xe, T, H, tw->moe_sel, tw->moe_w, &sc, tw->f1);
        g4_op_rmsnorm(ex, tw->tmp, tw->f1, y->post_ffw_norm_2, T, H, (size_t)H, eps, tw->f);
    } else {
        memcpy(tw->f, tw->fm, (size_t)T * H * sizeof(float));
    }
    memcpy(tw->x2, tw->x1, (size_t)T * H * sizeof(float));
    g4_op_rmsnorm(ex, tw->tmp, tw->f, y->post_ffw_norm, T, H, (size_t)H, eps, tw->x2);

    /* per-layer embedding branch */
    memcpy(tw->x3, tw->x2, (size_t)T * H * sizeof(float));
    if (P) {
        g4_op_matmul(ex, &y->ple_gate, 0, tw->x2, H, T, tw->pg, P);
        for (int t = 0; t < T; t++)
            g4_geglu(ROW(tw->pa, t, P), ROW(tw->pg, t, P), ROW(tw->ple, t, LP) + (size_t)l * P, P, 1);
        g4_op_matmul(ex, &y->ple_proj, 0, tw->pa, P, T, tw->ph, H);
        g4_op_rmsnorm(ex, tw->tmp, tw->ph, y->ple_post_norm, T, H, (size_t)H, eps, tw->x3);
    }
    float *xo = tw->X + (size_t)(l + 1) * tw->n_ctx * H;
    for (size_t i = 0; i < (size_t)T * H; i++) xo[i] = tw->x3[i] * y->out_scale;
}

/* A kept layer's cheap internals, by layer_fwd's own calls on its kept
 * product outputs (the same bits as rerunning the layer). */
static void layer_restore(g4_train_ws *tw, int l, int T) {
    const g4_model *m = tw->m;
    const g4_layer *y = &m->layers[l];
    g4_exec *ex = &tw->ex;
    int H = m->n_embd, F = (int)y->ffn_gate.n_out;
    const float *x = tw->X + (size_t)l * tw->n_ctx * H;
    g4_op_rmsnorm(ex, tw->xn, x, y->attn_norm, T, H, (size_t)H, m->eps, NULL);
    q_of_qr(tw, y, T, rope_of(tw, y, T));
    g4_op_rmsnorm(ex, tw->xn2, tw->x1, y->ffn_norm, T, H, (size_t)H, m->eps, NULL);
    g4_op_geglu(ex, tw->a, tw->gg, tw->uu, (long)T * F);
    memcpy(tw->f, tw->fm, (size_t)T * H * sizeof(float));    /* no experts: f = fm */
}

size_t g4_train_keep_bytes(const g4_model *m, int n_ctx, int l) {
    if (m->n_expert || l < 0 || l >= m->n_layer - 1 || n_ctx < 1) return 0;
    const g4_layer *y = &m->layers[l];
    size_t T = (size_t)n_ctx, H = (size_t)m->n_embd, nq = (size_t)m->n_head * (size_t)y->head_dim,
           nk = y->own_kv ? (size_t)y->n_kv_head * (size_t)y->head_dim : 0, F = (size_t)y->ffn_gate.n_out,
           P = (size_t)m->n_ple;
    return T * (2 * nq + 2 * nk + 6 * H + 2 * F + 2 * P) * sizeof(float);
}

int g4_train_ws_keep(g4_train_ws *tw, size_t budget, g4_error *err) {
    const g4_model *m = tw->m;
    int L = m->n_layer;
    if (tw->keep) return g4_seterr(err, "the workspace already keeps its layers");
    tw->keep = calloc((size_t)L, sizeof *tw->keep);
    tw->kept = calloc((size_t)L, sizeof *tw->kept);
    if (!tw->keep || !tw->kept) return g4_seterr(err, "out of memory");
    /* from the top: the backward reaches those first; greedy, so a smaller
     * layer further down may still fit after a larger one did not */
    size_t used = 0;
    for (int l = L - 2; l >= 0; l--) {
        size_t b = g4_train_keep_bytes(m, tw->n_ctx, l);
        if (!b || b > budget - used) continue;
        const g4_layer *y = &m->layers[l];
        size_t T = (size_t)tw->n_ctx, H = (size_t)m->n_embd, nq = (size_t)m->n_head * (size_t)y->head_dim,
               nk = (size_t)y->n_kv_head * (size_t)y->head_dim, F = (size_t)y->ffn_gate.n_out, P = (size_t)m->n_ple;
        lay_acts *a = &tw->kept[l];
        size_t b0 = tw->bytes;
        if (!(a->qr = fal(tw, T * nq)) || !(a->att = fal(tw, T * nq)) || !(a->o = fal(tw, T * H)) ||
            !(a->x1 = fal(tw, T * H)) || !(a->gg = fal(tw, T * F)) || !(a->uu = fal(tw, T * F)) ||
            !(a->fm = fal(tw, T * H)) || !(a->x2 = fal(tw, T * H)) || !(a->pg = fal(tw, T * P)) ||
            !(a->pa = fal(tw, T * P)) || !(a->ph = fal(tw, T * H)) || !(a->x3 = fal(tw, T * H)) ||
            (y->own_kv && (!(a->kr = fal(tw, T * nk)) || !(a->vr = fal(tw, T * nk)))))
            return g4_seterr(err, "out of memory keeping layer %d's activations (%zu MiB)", l, b >> 20);
        tw->keep[l] = true;
        tw->n_kept++;
        tw->kept_bytes += tw->bytes - b0;
        used += b;
    }
    return tw->n_kept;
}

int g4_train_ws_kept(const g4_train_ws *tw, size_t *bytes) {
    if (bytes) *bytes = tw->kept_bytes;
    return tw->n_kept;
}

/* ---- backward of one layer --------------------------------------------------------------- */

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

/* lora_bwd's products (below) on the fast path, as tiled f32 products
 * (tensor/vec.h gemm_nn) split across the pool: per token slab u = x A^T,
 * g = dy B and dx += sc g A; then per column range dA += (sc g)^T x and dB += sc (u^T
 * dy)^T. Each output element is summed by one thread in a fixed order
 * (any thread count gives the same bits), in f32 with another order than
 * the exact path's double sums. Scratch (lfast): A^T [ni][r], u and g
 * [T][r], their transposes [r][T], dB^T [r][no]. */
typedef struct lbf_task {
    const g4_lora_entry *e;
    const float *x, *dy;
    float *dx, *ga, *gb;
    float *At, *u, *g, *uT, *gT, *gbT;
    int T;
} lbf_task;

static void lbf_tokens(void *arg, int ith, int nth) {
    lbf_task *k = arg;
    const g4_lora_entry *e = k->e;
    int r = (int)e->a.n_out, ni = (int)e->a.n_in, no = (int)e->b.n_out;
    const g4_vec_ops *vo = g4_vec_get();
    long t0, t1;
    g4_split(k->T, ith, nth, &t0, &t1);
    if (t0 >= t1) return;
    int n = (int)(t1 - t0);
    float *u = k->u + (size_t)t0 * r, *g = k->g + (size_t)t0 * r;
    memset(u, 0, (size_t)n * r * sizeof(float));
    memset(g, 0, (size_t)n * r * sizeof(float));
    vo->gemm_nn(u, r, k->x + (size_t)t0 * ni, ni, k->At, r, n, r, ni);
    vo->gemm_nn(g, r, k->dy + (size_t)t0 * no, no, e->b.data, r, n, r, no);
    for (size_t i = 0; i < (size_t)n * r; i++) g[i] *= e->scale;
    if (k->dx) vo->gemm_nn(k->dx + (size_t)t0 * ni, ni, g, r, e->a.data, ni, n, ni, r);
    for (int t = 0; t < n; t++)
        for (int j = 0; j < r; j++) {
            k->uT[(size_t)j * k->T + t0 + t] = u[(size_t)t * r + j];
            k->gT[(size_t)j * k->T + t0 + t] = g[(size_t)t * r + j];
        }
}

static void lbf_cols(void *arg, int ith, int nth) {
    lbf_task *k = arg;
    const g4_lora_entry *e = k->e;
    int r = (int)e->a.n_out, ni = (int)e->a.n_in, no = (int)e->b.n_out, T = k->T;
    const g4_vec_ops *vo = g4_vec_get();
    long lo, hi;
    if (k->ga) {     /* dA [r][ni] += gT [r][T] . x [T][ni], columns split in 16s */
        g4_split((ni + 15) / 16, ith, nth, &lo, &hi);
        lo *= 16; hi = hi * 16 < ni ? hi * 16 : ni;
        if (lo < hi) vo->gemm_nn(k->ga + lo, ni, k->gT, T, k->x + lo, ni, r, (int)(hi - lo), T);
    }
    if (k->gb) {     /* dB [no][r] += sc (uT [r][T] . dy [T][no])^T */
        g4_split((no + 15) / 16, ith, nth, &lo, &hi);
        lo *= 16; hi = hi * 16 < no ? hi * 16 : no;
        if (lo >= hi) return;
        for (int j = 0; j < r; j++) memset(k->gbT + (size_t)j * no + lo, 0, (size_t)(hi - lo) * sizeof(float));
        vo->gemm_nn(k->gbT + lo, no, k->uT, T, k->dy + lo, no, r, (int)(hi - lo), T);
        for (long o = lo; o < hi; o++)
            for (int j = 0; j < r; j++) k->gb[(size_t)o * r + j] += e->scale * k->gbT[(size_t)j * no + o];
    }
}

static size_t lora_fast_floats(const g4_lora_set *s, int n_ctx) {
    int64_t ni = 1;
    for (int i = 0; i < s->n; i++)
        if (s->e[i].a.n_in > ni) ni = s->e[i].a.n_in;
    size_t r = (size_t)(s->max_r ? s->max_r : 1);
    return r * ((size_t)ni + 4 * (size_t)n_ctx + (size_t)(s->max_out > 0 ? s->max_out : 1));
}

static void lora_bwd_fast(g4_train_ws *tw, const g4_lora_entry *e, const float *x, const float *dy, int T,
                          float *dx, float *ga, float *gb) {
    int r = (int)e->a.n_out;
    int64_t ni = e->a.n_in, no = e->b.n_out;
    float *At = tw->lfast, *u = At + (size_t)ni * r, *g = u + (size_t)T * r, *uT = g + (size_t)T * r,
          *gT = uT + (size_t)T * r, *gbT = gT + (size_t)T * r;
    const float *A = e->a.data;
    for (int j = 0; j < r; j++)
        for (int64_t i = 0; i < ni; i++) At[(size_t)i * r + j] = A[(size_t)j * ni + i];
    lbf_task k = { e, x, dy, dx, ga, gb, At, u, g, uT, gT, gbT, T };
    g4_pool_run(tw->ex.pool, lbf_tokens, &k);
    if (ga || gb) g4_pool_run(tw->ex.pool, lbf_cols, &k);
    (void)no;
}

/* y += sc * B (A x) for each adapter pair of w: with u = A x and
 * g = B^T dy (both [T][r]): dx += sc * A^T g, dB += sc * dy u^T,
 * dA += sc * g x^T. */
static void lora_bwd(g4_train_ws *tw, const g4_mat *w, const float *x, const float *dy, int T, float *dx) {
    const g4_lora_set *s = tw->ex.lora;
    const g4_lora_entry *e;
    int n = g4_lora_find(s, w, &e);
    int64_t ni = w->n_in, no = w->n_out;
    for (int i = 0; i < n; i++, e++) {
        size_t idx = (size_t)(e - s->e);
        if (tw->ex.precision == 0 && tw->lfast) {
            lora_bwd_fast(tw, e, x, dy, T, dx, tw->lga ? tw->lga[idx] : NULL, tw->lgb ? tw->lgb[idx] : NULL);
            continue;
        }
        int r = (int)e->a.n_out;
        const float *A = e->a.data, *B = e->b.data;
        float sc = e->scale, *u = tw->lu, *g = tw->lgv;
        for (int t = 0; t < T; t++)
            for (int k = 0; k < r; k++) {
                double su = 0, sg = 0;
                for (int64_t j = 0; j < ni; j++) su += (double)A[(size_t)k * ni + j] * x[(size_t)t * ni + j];
                for (int64_t o = 0; o < no; o++) sg += (double)B[(size_t)o * r + k] * dy[(size_t)t * no + o];
                u[(size_t)t * r + k] = (float)su;
                g[(size_t)t * r + k] = (float)sg;
            }
        if (dx)
            for (int t = 0; t < T; t++)
                for (int k = 0; k < r; k++) {
                    float a = sc * g[(size_t)t * r + k];
                    for (int64_t j = 0; j < ni; j++) dx[(size_t)t * ni + j] += a * A[(size_t)k * ni + j];
                }
        float *gb = tw->lgb ? tw->lgb[idx] : NULL, *ga = tw->lga ? tw->lga[idx] : NULL;
        if (gb)
            for (int64_t o = 0; o < no; o++)
                for (int t = 0; t < T; t++) {
                    float d = sc * dy[(size_t)t * no + o];
                    for (int k = 0; k < r; k++) gb[(size_t)o * r + k] += d * u[(size_t)t * r + k];
                }
        if (ga)
            for (int k = 0; k < r; k++)
                for (int t = 0; t < T; t++) {
                    float d = sc * g[(size_t)t * r + k];
                    for (int64_t j = 0; j < ni; j++) ga[(size_t)k * ni + j] += d * x[(size_t)t * ni + j];
                }
    }
}

/* dy through a product: dx += W^T dy, dW += dy^T x (dW NULL: frozen), and
 * through the adapters of W when fine-tuning. */
static void mm_bwd(g4_train_ws *tw, const g4_mat *w, int64_t mat, float *dw, const float *x, const float *dy,
                   int T, float *dx) {
    int64_t ni = w->n_in, no = w->n_out;
    if (dx) g4_op_matmul_bwd_x(&tw->ex, w, mat, dy, no, T, dx, ni, tw->row_buf);
    if (dw) g4_op_matmul_bwd_w(&tw->ex, dw + (size_t)mat * (size_t)(no * ni), no, ni, x, ni, dy, no, T);
    if (tw->ex.lora && mat == 0) lora_bwd(tw, w, x, dy, T, dx);
}

int g4_train_ws_set_lora(g4_train_ws *tw, const g4_lora_set *s, float *const *ga, float *const *gb,
                         g4_error *err) {
    free(tw->ex.lora_tmp);
    free(tw->lu);
    free(tw->lfast);
    tw->ex.lora_tmp = tw->lu = tw->lgv = tw->lfast = tw->ex.lora_tiled = NULL;
    tw->ex.lora = s;
    tw->lga = ga;
    tw->lgb = gb;
    if (!s) return 0;
    tw->ex.lora_tmp = malloc((size_t)G4_LORA_ROWS * (size_t)(s->max_r + s->max_out) * sizeof(float));
    tw->lu = malloc(2 * (size_t)tw->n_ctx * (size_t)(s->max_r ? s->max_r : 1) * sizeof(float));
    if (!tw->ex.lora_tmp || !tw->lu) { tw->ex.lora = NULL; return g4_seterr(err, "out of memory"); }
    tw->lgv = tw->lu + (size_t)tw->n_ctx * (size_t)(s->max_r ? s->max_r : 1);
    size_t nf = lora_fast_floats(s, tw->n_ctx);
    tw->lfast = malloc(nf * sizeof(float));
    if (!tw->lfast) { tw->ex.lora = NULL; return g4_seterr(err, "out of memory"); }
    if (tw->ex.precision == 0) tw->ex.lora_tiled = tw->lfast;
    tw->bytes += nf * sizeof(float);
    tw->bytes += ((size_t)G4_LORA_ROWS * (size_t)(s->max_r + s->max_out) +
                  2 * (size_t)tw->n_ctx * (size_t)(s->max_r ? s->max_r : 1)) * sizeof(float);
    return 0;
}

/* MoE backward with the routing's selection frozen (top-k is not
 * differentiable); the routing weights of the selected experts still carry
 * gradient to the router, its scale and the per-expert scale. dmo: gradient
 * of the experts' sum [T][H]; adds the input gradient into dx. */
static void moe_bwd(g4_train_ws *tw, float *const *g, const g4_layer *y, int T, float *dx) {
    const g4_model *m = tw->m;
    int H = m->n_embd, E = m->n_expert, K = m->n_expert_used, Fe = m->n_ff_exp;
    float eps = m->eps;
    g4_moe_weights mw;
    moe_weights_of(m, y, &mw);
    float *gu = tw->moe_tmp, *aa = gu + 2 * Fe, *dgu = aa + Fe, *da = dgu + 2 * Fe, *ye = da + Fe;
    zero(tw->dxe, (size_t)T * H);
    float *dlog = tw->moe_dlog;    /* [T][E] gradient of the router logits */
    zero(dlog, (size_t)T * E);
    for (int t = 0; t < T; t++) {
        const int *sel = tw->moe_sel + (size_t)t * K;
        const float *xe = ROW(tw->moe_xe, t, H), *dm = ROW(tw->dmo, t, H);
        float dwt[G4_MM_MAX_JOBS] = { 0 };        /* d loss / d w[t][sel[k]] */
        for (int k = 0; k < K; k++) {
            int e = sel[k];
            float wt = tw->moe_w[(size_t)t * E + e];
            /* recompute the expert's internals for this token */
            if (mw.gate_up) {
                g4_op_matmul(&tw->ex, mw.gate_up, e, xe, H, 1, gu, 2 * Fe);
            } else {
                g4_op_matmul(&tw->ex, mw.gate, e, xe, H, 1, gu, Fe);
                g4_op_matmul(&tw->ex, mw.up, e, xe, H, 1, gu + Fe, Fe);
            }
            g4_geglu(aa, gu, gu + Fe, Fe, 1);
            g4_op_matmul(&tw->ex, mw.down, e, aa, Fe, 1, ye, H);
            double s = 0;
            for (int i = 0; i < H; i++) s += (double)dm[i] * ye[i];
            dwt[k] = (float)s;
            float *dy = tw->tmp;     /* w * dm */
            for (int i = 0; i < H; i++) dy[i] = wt * dm[i];
            zero(da, (size_t)Fe);
            mm_bwd(tw, mw.down, e, g[G4_T_EXP_DOWN], aa, dy, 1, da);
            zero(dgu, 2 * (size_t)Fe);
            g4_op_geglu_bwd(NULL, dgu, dgu + Fe, gu, gu + Fe, da, Fe);
            if (mw.gate_up) {
                mm_bwd(tw, mw.gate_up, e, g[G4_T_EXP_GATE_UP], xe, dgu, 1, ROW(tw->dxe, t, H));
            } else {
                mm_bwd(tw, mw.gate, e, g[G4_T_EXP_GATE], xe, dgu, 1, ROW(tw->dxe, t, H));
                mm_bwd(tw, mw.up, e, g[G4_T_EXP_UP], xe, dgu + Fe, 1, ROW(tw->dxe, t, H));
            }
        }
        /* w_e = p_e / S * es_e over the selected e, S = sum of their p (clamped as the forward) */
        const float *lg = tw->moe_logit + (size_t)t * E;   /* softmax probabilities after route */
        double S = 0;
        for (int k = 0; k < K; k++) S += lg[sel[k]];
        bool clamped = S < 6.1e-5;
        if (clamped) S = 6.1e-5;
        double cross = 0;
        for (int k = 0; k < K; k++) {
            int e = sel[k];
            double es = y->expert_scale ? y->expert_scale[e] : 1.0;
            cross += dwt[k] * es * lg[e];
            if (g[G4_T_EXP_SCALE]) g[G4_T_EXP_SCALE][e] += (float)(dwt[k] * lg[e] / S);
        }
        float dp[G4_TRAIN_MAX_EXPERTS] = { 0 };
        for (int k = 0; k < K; k++) {
            int e = sel[k];
            double es = y->expert_scale ? y->expert_scale[e] : 1.0;
            dp[e] = (float)(dwt[k] * es / S - (clamped ? 0 : cross / (S * S)));
        }
        double pdp = 0;
        for (int e = 0; e < E; e++) pdp += (double)lg[e] * dp[e];
        for (int e = 0; e < E; e++) dlog[(size_t)t * E + e] = (float)(lg[e] * (dp[e] - pdp));
    }
    /* router: logits = Wr xs, xs = rmsnorm(x1) * router_scale / sqrt(H) */
    float *dxs = tw->dfm;   /* free here: dfm is written after moe_bwd */
    zero(dxs, (size_t)T * H);
    mm_bwd(tw, &y->router, 0, g[G4_T_ROUTER], tw->moe_xs, dlog, T, dxs);
    float rs = 1.0f / sqrtf((float)H);
    for (int t = 0; t < T; t++) {
        float *dr = ROW(dxs, t, H), *xnr = ROW(tw->tmp, t, H);
        g4_rmsnorm(xnr, ROW(tw->x1, t, H), NULL, H, eps);
        for (int i = 0; i < H; i++) {
            if (g[G4_T_ROUTER_SCALE]) g[G4_T_ROUTER_SCALE][i] += dr[i] * xnr[i] * rs;
            dr[i] *= y->router_scale[i] * rs;
        }
    }
    g4_op_rmsnorm_bwd(&tw->ex, dx, NULL, tw->x1, NULL, dxs, T, H, (size_t)H, eps);
    g4_op_rmsnorm_bwd(&tw->ex, dx, g[G4_T_PRE_FFW_NORM_2], tw->x1, y->pre_ffw_norm_2, tw->dxe, T, H, (size_t)H, eps);
}

/* In: tw->dx = d loss / d X[l+1]. Out: tw->dx = d loss / d X[l]. The
 * layer's internals must be those of layer_fwd(l). */
/* q = rope(rmsnorm_head(qr)) and the own k (and v = rmsnorm_head(vr),
 * no weight) backward, per (token, head): dq/dk through rope in place,
 * then into dqr/dkr (dvr). Tokens are independent unless the norm weight
 * takes a gradient (summed over tokens in order: then one thread); the
 * pool splits them otherwise (the same bits). One head row at a time it
 * was ~3% of E2B's backward on one thread while the other waited. */
typedef struct hnb_task {
    float *d, *dr;
    const float *r, *w;
    float *dw;
    const float *cs;
    float *dv, *dvr;           /* v's rows (no weight, no rope) or NULL */
    const float *vr;
    int T, nh, hd, rot;
    float eps;
} hnb_task;

static void hnb_rows(hnb_task *k, long t0, long t1) {
    size_t n = (size_t)k->nh * k->hd;
    for (long t = t0; t < t1; t++)
        for (int h = 0; h < k->nh; h++) {
            size_t at = (size_t)t * n + (size_t)h * k->hd;
            g4_op_rope_bwd(k->d + at, k->cs + (size_t)t * k->rot, k->rot);
            g4_op_rmsnorm_bwd(NULL, k->dr + at, k->dw, k->r + at, k->w, k->d + at, 1, k->hd, (size_t)k->hd, k->eps);
            if (k->dv)
                g4_op_rmsnorm_bwd(NULL, k->dvr + at, NULL, k->vr + at, NULL, k->dv + at, 1, k->hd, (size_t)k->hd,
                                  k->eps);
        }
}

static void hnb_worker(void *arg, int ith, int nth) {
    hnb_task *k = arg;
    long t0, t1;
    g4_split(k->T, ith, nth, &t0, &t1);
    hnb_rows(k, t0, t1);
}

static void head_norm_bwd(g4_train_ws *tw, hnb_task *k) {
    if (!k->dw && tw->ex.n_threads > 1 && (long)k->T * k->nh * k->hd >= 32768) g4_pool_run(tw->ex.pool, hnb_worker, k);
    else hnb_rows(k, 0, k->T);
}

static void layer_bwd(g4_train_ws *tw, g4_params *ps, int l, int T) {
    const g4_model *m = tw->m;
    const g4_layer *y = &m->layers[l];
    g4_exec *ex = &tw->ex;
    float *const *g = ps->lg[l];
    int H = m->n_embd, nH = m->n_head, hd = y->head_dim, nkv = y->n_kv_head, nq = nH * hd, nk = nkv * hd;
    int rot = y->n_rot, LP = m->n_layer * m->n_ple, P = m->n_ple, F = (int)y->ffn_gate.n_out;
    float eps = m->eps, *dx = tw->dx;
    size_t TH = (size_t)T * H;
    const float *x = tw->X + (size_t)l * tw->n_ctx * H, *cs = rope_of(tw, y, T);
    if (tw->keep && tw->keep[l]) {
        bind_layer(tw, l);
        layer_restore(tw, l, T);
    }

    /* X[l+1] = x3 * out_scale */
    if (g[G4_T_OUT_SCALE]) {
        double s = 0;
        for (size_t i = 0; i < TH; i++) s += (double)dx[i] * tw->x3[i];
        g[G4_T_OUT_SCALE][0] += (float)s;
    }
    for (size_t i = 0; i < TH; i++) dx[i] *= y->out_scale;

    /* x3 = x2 + rmsnorm(ple_proj(gelu(ple_gate x2) * ple_l)) */
    if (P) {
        zero(tw->dph, TH);
        g4_op_rmsnorm_bwd(ex, tw->dph, g[G4_T_PLE_POST_NORM], tw->ph, y->ple_post_norm, dx, T, H, (size_t)H, eps);
        zero(tw->dpa, (size_t)T * P);
        mm_bwd(tw, &y->ple_proj, 0, g[G4_T_PLE_PROJ], tw->pa, tw->dph, T, tw->dpa);
        zero(tw->dpg, (size_t)T * P);
        for (int t = 0; t < T; t++)
            g4_op_geglu_bwd(NULL, ROW(tw->dpg, t, P), ROW(tw->dple, t, LP) + (size_t)l * P, ROW(tw->pg, t, P),
                            ROW(tw->ple, t, LP) + (size_t)l * P, ROW(tw->dpa, t, P), P);
        mm_bwd(tw, &y->ple_gate, 0, g[G4_T_PLE_GATE], tw->x2, tw->dpg, T, dx);
    }

    /* x2 = x1 + rmsnorm(f) */
    zero(tw->df, TH);
    g4_op_rmsnorm_bwd(ex, tw->df, g[G4_T_POST_FFW_NORM], tw->f, y->post_ffw_norm, dx, T, H, (size_t)H, eps);
    float *dfm = tw->df;
    if (m->n_expert) {
        /* f = rmsnorm(fm; n1) + rmsnorm(experts; n2) */
        zero(tw->dmo, TH);
        g4_op_rmsnorm_bwd(ex, tw->dmo, g[G4_T_POST_FFW_NORM_2], tw->f1, y->post_ffw_norm_2, tw->df, T, H, (size_t)H,
                          eps);
        moe_bwd(tw, g, y, T, dx);
        zero(tw->dfm, TH);
        g4_op_rmsnorm_bwd(ex, tw->dfm, g[G4_T_POST_FFW_NORM_1], tw->fm, y->post_ffw_norm_1, tw->df, T, H, (size_t)H,
                          eps);
        dfm = tw->dfm;
    }
    /* fm = down(gelu(gate xn2) * up xn2), xn2 = rmsnorm(x1) */
    zero(tw->da, (size_t)T * F);
    mm_bwd(tw, &y->ffn_down, 0, g[G4_T_FFN_DOWN], tw->a, dfm, T, tw->da);
    zero(tw->dgg, (size_t)T * F);
    zero(tw->duu, (size_t)T * F);
    g4_op_geglu_bwd(ex, tw->dgg, tw->duu, tw->gg, tw->uu, tw->da, (long)T * F);
    zero(tw->dxn, TH);
    mm_bwd(tw, &y->ffn_gate, 0, g[G4_T_FFN_GATE], tw->xn2, tw->dgg, T, tw->dxn);
    mm_bwd(tw, &y->ffn_up, 0, g[G4_T_FFN_UP], tw->xn2, tw->duu, T, tw->dxn);
    g4_op_rmsnorm_bwd(ex, dx, g[G4_T_FFN_NORM], tw->x1, y->ffn_norm, tw->dxn, T, H, (size_t)H, eps);

    /* x1 = x + rmsnorm(o), o = wo att */
    zero(tw->do_, TH);
    g4_op_rmsnorm_bwd(ex, tw->do_, g[G4_T_POST_ATTN_NORM], tw->o, y->post_attn_norm, dx, T, H, (size_t)H, eps);
    zero(tw->datt, (size_t)T * nq);
    mm_bwd(tw, &y->wo, 0, g[G4_T_ATTN_OUT], tw->att, tw->do_, T, tw->datt);

    /* attention: gradients reach the source layer's K/V (a shared layer's donor) */
    int src = y->kv_src;
    zero(tw->dq, (size_t)T * nq);
    g4_attn_bwd ab = { .q = tw->q, .k = tw->K[src], .v = tw->V[src], .dout = tw->datt, .dq = tw->dq,
                       .dk = tw->dK[src], .dv = tw->dV[src], .T = T, .n_pos = T, .n_head = nH, .n_kv_head = nkv,
                       .head_dim = hd, .lo = y->swa ? tw->lo_swa : tw->lo_full,
                       .hi = y->swa ? tw->hi_swa : tw->hi_full };
    if (ATTN_PS_FITS(tw->n_ctx, nH)) ab.ps_store = tw->attn_ps;
    g4_op_attention_bwd(ex, &ab, tw->ws_attnb);

    /* own K/V: complete now (the layers sharing them come later, so ran first here) */
    if (y->own_kv) {
        zero(tw->dkr, (size_t)T * nk);
        zero(tw->dvr, (size_t)T * nk);
        hnb_task hk = { tw->dK[l], tw->dkr, tw->kr, y->k_norm, g[G4_T_ATTN_K_NORM], cs, tw->dV[l], tw->dvr, tw->vr,
                        T, nkv, hd, rot, eps };
        head_norm_bwd(tw, &hk);
        if (y->k_eq_v)
            for (size_t i = 0; i < (size_t)T * nk; i++) tw->dkr[i] += tw->dvr[i];
    }
    /* q = rope(rmsnorm_head(qr)) */
    zero(tw->dqr, (size_t)T * nq);
    hnb_task hq = { tw->dq, tw->dqr, tw->qr, y->q_norm, g[G4_T_ATTN_Q_NORM], cs, NULL, NULL, NULL, T, nH, hd, rot,
                    eps };
    head_norm_bwd(tw, &hq);
    zero(tw->dxn, TH);
    mm_bwd(tw, &y->wq, 0, g[G4_T_ATTN_Q], tw->xn, tw->dqr, T, tw->dxn);
    if (y->own_kv) {
        mm_bwd(tw, &y->wk, 0, g[G4_T_ATTN_K], tw->xn, tw->dkr, T, tw->dxn);
        if (!y->k_eq_v) mm_bwd(tw, &y->wv, 0, g[G4_T_ATTN_V], tw->xn, tw->dvr, T, tw->dxn);
    }
    g4_op_rmsnorm_bwd(ex, dx, g[G4_T_ATTN_NORM], x, y->attn_norm, tw->dxn, T, H, (size_t)H, eps);
}

/* ---- one sequence --------------------------------------------------------------------------- */

int g4_train_seq(g4_train_ws *tw, g4_params *ps, const int32_t *tok, const int32_t *tgt, int T, float gscale,
                 double *loss, float *logits, g4_error *err) {
    const g4_model *m = tw->m;
    if (T < 1 || T > tw->n_ctx) return g4_seterr(err, "sequence of %d tokens (allowed 1..%d)", T, tw->n_ctx);
    for (int t = 0; t < T; t++) {
        if (tok[t] < 0 || tok[t] >= m->n_vocab)
            return g4_seterr(err, "token id %d at position %d is outside the vocabulary (0..%d)", tok[t], t,
                             m->n_vocab - 1);
        if (tgt && tgt[t] >= m->n_vocab)
            return g4_seterr(err, "target id %d at position %d is outside the vocabulary", tgt[t], t);
    }
    if (ps && ps->m != m) return g4_seterr(err, "parameters of another model");
    if (m->n_expert > G4_TRAIN_MAX_EXPERTS || m->n_expert_used > G4_MM_MAX_JOBS)
        return g4_seterr(err, "training supports up to %d experts, %d per token", G4_TRAIN_MAX_EXPERTS,
                         G4_MM_MAX_JOBS);
    g4_exec *ex = &tw->ex;
    int H = m->n_embd, L = m->n_layer, P = m->n_ple, LP = L * P, V = m->n_vocab;
    float eps = m->eps;
    size_t TH = (size_t)T * H;

    /* positions 0..T-1, rope tables and visible ranges as forward.c makes them */
    for (int t = 0; t < T; t++) tw->pos[t] = t;
    if (tw->d.l_swa >= 0)
        g4_op_rope_table(tw->rope, tw->pos, T, tw->d.rot_swa, m->layers[tw->d.l_swa].rope_base, NULL);
    if (tw->d.l_full >= 0)
        g4_op_rope_table(tw->rope + (size_t)T * tw->d.rot_swa, tw->pos, T, tw->d.rot_full,
                         m->layers[tw->d.l_full].rope_base, m->layers[tw->d.l_full].rope_freqs);
    g4_mask swa = { .kind = G4_MASK_SLIDING, .window = m->sliding_window }, full = { .kind = G4_MASK_CAUSAL };
    g4_attn_ranges(&swa, tw->pos, T, 0, tw->lo_swa, tw->hi_swa);
    g4_attn_ranges(&full, tw->pos, T, 0, tw->lo_full, tw->hi_full);

    /* embeddings (x sqrt(H)) and the per-layer inputs */
    const g4_type_traits *et = g4_type_info(m->tok_embd.type);
    float es = sqrtf((float)H);
    for (int t = 0; t < T; t++) {
        float *x = ROW(tw->X, t, H);
        et->to_float(g4_mat_row(&m->tok_embd, 0, tok[t]), x, H);
        g4_op_scale(x, (size_t)H, es);
    }
    if (P) {
        const g4_type_traits *pt = g4_type_info(m->ple_embd.type);
        g4_op_matmul(ex, &m->ple_model_proj, 0, tw->X, H, T, tw->ple_c, LP);
        memcpy(tw->ple, tw->ple_c, (size_t)T * LP * sizeof(float));
        for (int t = 0; t < T; t++) {
            pt->to_float(g4_mat_row(&m->ple_embd, 0, tok[t]), tw->ple_tmp, LP);
            g4_op_ple_combine(ROW(tw->ple, t, LP), tw->ple_tmp, L, P, H, m->ple_proj_norm, eps);
        }
    }
    /* Fast path: every training token is a prompt token of one sequence, so
     * every product over the token rows may take the weights' panel kernels
     * (matmul.h: g4_mm_scratch.pcol; training needs no batch invariance);
     * products over other rows (one token's experts) ignore the list. */
    if (ex->precision == 0) { ex->mm.pcol = tw->pcol; ex->mm.np = T; }
    double c0 = now_s();
    for (int l = 0; l < L; l++) layer_fwd(tw, l, T);
    double c1 = now_s();
    tw->prof[G4_TRAIN_FWD] += c1 - c0;

    /* head, in chunks of RC rows: norm, product, softcap, loss and its gradient */
    const float *xf = tw->X + (size_t)L * tw->n_ctx * H;
    double total = 0;
    if (ps) zero(tw->dx, TH);
    for (int r0 = 0; r0 < T; r0 += tw->RC) {
        int n = T - r0 < tw->RC ? T - r0 : tw->RC;
        g4_op_rmsnorm(ex, tw->xnf, ROW(xf, r0, H), m->output_norm, n, H, (size_t)H, eps, NULL);
        g4_mm_job head = { .w = &m->output, .y = tw->lg, .ldy = V, .softcap = m->softcap };
        if (ex->mm.pcol) ex->mm.np = n;
        g4_op_matmul_multi(ex, &head, 1, tw->xnf, H, n);
        if (ex->mm.pcol) ex->mm.np = T;
        double c2 = now_s();
        tw->prof[G4_TRAIN_HEAD] += c2 - c1;
        c1 = c2;
        if (logits) memcpy(ROW(logits, r0, V), tw->lg, (size_t)n * V * sizeof(float));
        /* rows on every thread; their losses summed here in row order */
        bool any = false;
        g4_op_xent_rows(ex, tw->lg, n, V, tgt ? tgt + r0 : NULL, gscale, m->softcap, ps != NULL, tw->rloss);
        for (int i = 0; i < n; i++)
            if (tgt && tgt[r0 + i] >= 0) { total += tw->rloss[i]; any = true; }
        if (!ps || !any) continue;
        zero(tw->dxnf, (size_t)n * H);
        mm_bwd(tw, &m->output, 0, ps->g[G4_T_OUTPUT], tw->xnf, tw->lg, n, tw->dxnf);
        g4_op_rmsnorm_bwd(ex, ROW(tw->dx, r0, H), ps->g[G4_T_OUTPUT_NORM], ROW(xf, r0, H), m->output_norm, tw->dxnf,
                          n, H, (size_t)H, eps);
        c2 = now_s();
        tw->prof[G4_TRAIN_HEAD_BWD] += c2 - c1;
        c1 = c2;
    }
    if (loss) *loss = total;
    if (!ps) { ex->mm.pcol = NULL; ex->mm.np = 0; return 0; }

    for (int l = 0; l < L; l++)
        if (tw->dK[l]) { zero(tw->dK[l], (size_t)T * m->layers[l].n_kv_head * m->layers[l].head_dim);
                         zero(tw->dV[l], (size_t)T * m->layers[l].n_kv_head * m->layers[l].head_dim); }
    if (P) zero(tw->dple, (size_t)T * LP);
    for (int l = L - 1; l >= 0; l--) {
        /* the last layer's internals are still there; kept ones are restored */
        if (l != L - 1 && !(tw->keep && tw->keep[l])) layer_fwd(tw, l, T);
        double c2 = now_s();
        tw->prof[G4_TRAIN_RECOMPUTE] += c2 - c1;
        layer_bwd(tw, ps, l, T);
        c1 = now_s();
        tw->prof[G4_TRAIN_BWD] += c1 - c2;
    }

    /* per-layer inputs back to the embedding and their tables */
    if (P) {
            float *dcin = tw->ple_tmp, *tmp = tw->ple_tmp + LP;
        for (int t = 0; t < T; t++) {
            zero(dcin, (size_t)LP);
            float *dtok = ps->g[G4_T_PLE_EMBD] ? ps->g[G4_T_PLE_EMBD] + (size_t)tok[t] * LP : NULL;
            g4_op_ple_combine_bwd(ROW(tw->ple_c, t, LP), ROW(tw->dple, t, LP), L, P, H, m->ple_proj_norm, eps, dcin,
                                  dtok, ps->g[G4_T_PLE_PROJ_NORM], tmp);
            memcpy(ROW(tw->dple, t, LP), dcin, (size_t)LP * sizeof(float));   /* now d ple_c */
        }
        mm_bwd(tw, &m->ple_model_proj, 0, ps->g[G4_T_PLE_MODEL_PROJ], tw->X, tw->dple, T, tw->dx);
    }
    if (ps->g[G4_T_TOKEN_EMBD])
        for (int t = 0; t < T; t++) {
            float *d = ps->g[G4_T_TOKEN_EMBD] + (size_t)tok[t] * H;
            const float *s = ROW(tw->dx, t, H);
            for (int i = 0; i < H; i++) d[i] += s[i] * es;
        }
    ex->mm.pcol = NULL;
    ex->mm.np = 0;
    tw->prof[G4_TRAIN_BWD] += now_s() - c1;
    return 0;
}
