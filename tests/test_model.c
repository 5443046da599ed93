/* Model configuration, memory plan and sampler.
 *
 * The per-layer table and the KV-cache bytes are checked against the facts
 * in each golden model's config.json ("derived": sliding/full, own KV, KV
 * donor, heads, head dims, FFN widths), which were written by the reference
 * generator, not by us. `gemma4c info` must print the same KV numbers. */
#include "harness.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/gemma4.h"
#include "engine/engine.h"
#include "format/mapfile.h"
#include "gemma4c.h"
#include "model/model.h"
#include "tensor/act.h"
#include "tensor/cpu.h"
#include "tensor/vec.h"

static const char *MODELS[] = { "gemma4-e", "gemma4-dense", "gemma4-moe", "gemma4-kq.Q4_K_M" };

static json_t *load_config(const char *model) {
    char rel[256], base[64];
    snprintf(base, sizeof base, "%s", model);
    char *dot = strchr(base, '.');
    if (dot) *dot = 0;
    snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s.config.json", base);
    json_error_t je;
    return json_load_file(shared_path(rel), 0, &je);
}

static gemma4c_model *open_golden(const char *model) {
    char rel[256], err[600];
    snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s.gguf", model);
    gemma4c_model *m = gemma4c_model_open(shared_path(rel), err, sizeof err);
    if (!m) fprintf(stderr, "  %s\n", err);
    return m;
}

/* Expected KV bytes from config.json: K and V, f32, per owning layer. */
/* Bytes per KV row of hd elements of enum gemma4c_kv_type t: f32 4, f16 2,
 * q8_0 34 per 32 (f16 where hd is not a multiple of 32). */
static uint64_t kv_row(int t, uint64_t hd) {
    if (t == GEMMA4C_KV_F32) return 4 * hd;
    if (t == GEMMA4C_KV_Q8_0 && hd % 32 == 0) return hd / 32 * 34;
    return 2 * hd;
}

static void expected_kv_t(json_t *cfg, int n_ctx, int n_batch, int t, uint64_t *per_tok, uint64_t *swa) {
    json_t *d = json_object_get(cfg, "derived");
    json_t *hf = json_object_get(cfg, "hf_like_config");
    int W = (int)json_integer_value(json_object_get(hf, "sliding_window"));
    json_t *sl = json_object_get(d, "layer_is_sliding"), *own = json_object_get(d, "layer_has_own_kv");
    json_t *kv = json_object_get(d, "n_head_kv_per_layer"), *hd = json_object_get(d, "head_dim_per_layer");
    uint64_t ring = (uint64_t)(W - 1 + n_batch);
    if (ring > (uint64_t)n_ctx) ring = (uint64_t)n_ctx;
    *per_tok = *swa = 0;
    for (size_t l = 0; l < json_array_size(sl); l++) {
        if (!json_is_true(json_array_get(own, l))) continue;
        uint64_t b = 2 * (uint64_t)json_integer_value(json_array_get(kv, l)) *
                     kv_row(t, (uint64_t)json_integer_value(json_array_get(hd, l)));
        if (json_is_true(json_array_get(sl, l))) *swa += b * ring;
        else *per_tok += b;
    }
}

static void expected_kv(json_t *cfg, int n_ctx, int n_batch, uint64_t *per_tok, uint64_t *swa) {
    expected_kv_t(cfg, n_ctx, n_batch, GEMMA4C_KV_F16, per_tok, swa);   /* the default context */
}

/* The tensor table is indexed by id, and every tensor of every reference
 * model is one of its rows (the loader, converter, synth and quantizer rely
 * on both). */
TEST(tensor_table_covers_reference_models) {
    for (int i = 0; i < G4_T_COUNT; i++) {
        CHECK(g4_tensors[i].id == i && g4_tensors[i].gguf);
        int l = -2;
        char name[96];
        g4_tensor_name(&g4_tensors[i], 7, name, sizeof name);
        CHECKF(g4_tensor_find(name, &l) == &g4_tensors[i] && l == (g4_tensors[i].layer ? 7 : -1), "%s", name);
    }
    CHECK(!g4_tensor_find("blk.x.attn_q.weight", NULL) && !g4_tensor_find("attn_q.weight", NULL));
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        gemma4c_model *m = open_golden(MODELS[i]);
        CHECKF(m, "%s", MODELS[i]);
        if (!m) continue;
        const g4_gguf_file *f = m->m->file;
        for (uint64_t t = 0; t < f->n_tensors; t++)
            CHECKF(g4_tensor_find(f->tensors[t].name, NULL), "%s: %s", MODELS[i], f->tensors[t].name);
        gemma4c_model_free(m);
    }
}

TEST(layer_table_matches_config) {
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        json_t *cfg = load_config(MODELS[i]);
        gemma4c_model *m = open_golden(MODELS[i]);
        CHECKF(cfg && m, "%s", MODELS[i]);
        if (!cfg || !m) { json_decref(cfg); gemma4c_model_free(m); continue; }
        const g4_model *gm = m->m;
        json_t *d = json_object_get(cfg, "derived");
        json_t *src = json_object_get(d, "kv_reuse_source");
        for (int l = 0; l < gm->n_layer; l++) {
            const g4_layer *y = &gm->layers[l];
            CHECK(y->swa == json_is_true(json_array_get(json_object_get(d, "layer_is_sliding"), (size_t)l)));
            CHECK(y->own_kv == json_is_true(json_array_get(json_object_get(d, "layer_has_own_kv"), (size_t)l)));
            CHECK(y->head_dim == json_integer_value(json_array_get(json_object_get(d, "head_dim_per_layer"), (size_t)l)));
            CHECK(y->n_kv_head == json_integer_value(json_array_get(json_object_get(d, "n_head_kv_per_layer"), (size_t)l)));
            CHECK(y->n_ff == json_integer_value(json_array_get(json_object_get(d, "n_ff_per_layer"), (size_t)l)));
            if (!y->own_kv) {
                char key[16];
                snprintf(key, sizeof key, "%d", l);
                CHECKF(y->kv_src == json_integer_value(json_object_get(src, key)), "%s layer %d donor %d", MODELS[i], l,
                       y->kv_src);
            }
        }
        json_decref(cfg);
        gemma4c_model_free(m);
    }
}

TEST(kv_plan_matches_formula) {
    int ctxs[] = { 1, 40, 256, 131072 }, batches[] = { 1, 7, 512 };
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        json_t *cfg = load_config(MODELS[i]);
        gemma4c_model *m = open_golden(MODELS[i]);
        if (!cfg || !m) { CHECK(0); json_decref(cfg); gemma4c_model_free(m); continue; }
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 3; b++) {
                int nb = batches[b] > ctxs[a] ? ctxs[a] : batches[b];
                gemma4c_memory_plan p;
                CHECK(gemma4c_memory_plan_for(m, ctxs[a], batches[b], &p) == 0);
                uint64_t per_tok, swa;
                expected_kv(cfg, ctxs[a], nb, &per_tok, &swa);
                CHECKF(p.kv_bytes_per_token == per_tok && p.kv_bytes_swa == swa &&
                       p.kv_bytes == swa + per_tok * (uint64_t)ctxs[a],
                       "%s ctx %d batch %d: plan %llu/%llu, formula %llu/%llu", MODELS[i], ctxs[a], batches[b],
                       (unsigned long long)p.kv_bytes_per_token, (unsigned long long)p.kv_bytes_swa,
                       (unsigned long long)per_tok, (unsigned long long)swa);
                CHECK(p.total_bytes == p.weight_resident_bytes + p.kv_bytes + p.scratch_bytes);
                CHECK(p.weight_resident_bytes <= p.weight_bytes);
            }
        /* every cache type, asked for explicitly (the exact path too) */
        for (int t = GEMMA4C_KV_F32; t <= GEMMA4C_KV_Q8_0; t++)
            for (int prec = 0; prec < 2; prec++) {
                gemma4c_context_params cp = gemma4c_context_default_params();
                cp.n_ctx = 300;
                cp.n_batch = 20;
                cp.kv_type = t;
                cp.precision = prec;
                gemma4c_memory_plan p;
                CHECK(gemma4c_memory_plan_params(m, &cp, &p) == 0 && p.kv_type == t);
                uint64_t per_tok, swa;
                expected_kv_t(cfg, 300, 20, t, &per_tok, &swa);
                CHECKF(p.kv_bytes_per_token == per_tok && p.kv_bytes_swa == swa, "%s %s: plan %llu/%llu, formula %llu/%llu",
                       MODELS[i], gemma4c_kv_type_name(t), (unsigned long long)p.kv_bytes_per_token,
                       (unsigned long long)p.kv_bytes_swa, (unsigned long long)per_tok, (unsigned long long)swa);
            }
        {   /* the default: f16 on the fast path, f32 on the exact path; unknown types refused */
            gemma4c_context_params cp = gemma4c_context_default_params();
            cp.n_ctx = 64;
            cp.n_batch = 8;
            gemma4c_memory_plan p;
            CHECK(gemma4c_memory_plan_params(m, &cp, &p) == 0 && p.kv_type == GEMMA4C_KV_F16);
            cp.precision = GEMMA4C_PREC_EXACT;
            CHECK(gemma4c_memory_plan_params(m, &cp, &p) == 0 && p.kv_type == GEMMA4C_KV_F32);
            cp.kv_type = 9;
            CHECK(gemma4c_memory_plan_params(m, &cp, &p) == -1);
            char e[200] = "";
            CHECK(gemma4c_context_new(m, &cp, e, sizeof e) == NULL && strstr(e, "kv_type"));
        }
        /* gemma4c info prints the same numbers */
        char cmd[1024], rel[256];
        snprintf(rel, sizeof rel, "testdata/gemma4-ref/%s.gguf", MODELS[i]);
        const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
        snprintf(cmd, sizeof cmd, "%s/gemma4c info -m '%s' --ctx 256 --batch 7", build, shared_path(rel));
        FILE *pp = popen(cmd, "r");
        CHECK(pp != NULL);
        if (pp) {
            char line[512];
            unsigned long long tot = 0, pt = 0;
            while (fgets(line, sizeof line, pp)) {
                if (strstr(line, "kv total:")) sscanf(strstr(line, ":") + 1, "%llu", &tot);
                if (strstr(line, "kv per token:")) sscanf(strstr(line, ":") + 1, "%llu", &pt);
            }
            CHECK(pclose(pp) == 0);
            uint64_t per_tok, swa;
            expected_kv(cfg, 256, 7, &per_tok, &swa);
            CHECKF(tot == swa + per_tok * 256 && pt == per_tok, "%s: info printed kv total %llu per token %llu",
                   MODELS[i], tot, pt);
        }
        json_decref(cfg);
        gemma4c_model_free(m);
    }
}

/* ---- sampler ---------------------------------------------------------------- */

TEST(sampler_greedy_and_ties) {
    gemma4c_sampler_params p = gemma4c_sampler_default_params();
    p.temperature = 0;
    gemma4c_sampler *s = gemma4c_sampler_new(&p);
    float l[5] = { 1, 3, 3, -1, 2 };
    CHECK(gemma4c_sampler_sample(s, l, 5) == 1); /* lowest id on ties */
    gemma4c_sampler_free(s);
}

TEST(sampler_reproducible_and_respects_filters) {
    enum { V = 1000 };
    float l[V];
    uint64_t st = 7;
    for (int i = 0; i < V; i++) {
        st = st * 6364136223846793005ull + 1;
        l[i] = (float)((st >> 33) % 1000) / 100.0f;
    }
    gemma4c_sampler_params p = gemma4c_sampler_default_params();
    p.seed = 42;
    gemma4c_sampler *a = gemma4c_sampler_new(&p), *b = gemma4c_sampler_new(&p);
    int same = 1;
    for (int k = 0; k < 200; k++) same &= gemma4c_sampler_sample(a, l, V) == gemma4c_sampler_sample(b, l, V);
    CHECK(same);
    gemma4c_sampler_free(a);
    gemma4c_sampler_free(b);
    /* top-k 3: only the 3 best ids ever come out, and all of them do */
    int best[3] = { -1, -1, -1 };
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < V; i++) {
            int taken = 0;
            for (int j = 0; j < r; j++) taken |= best[j] == i;
            if (!taken && (best[r] < 0 || l[i] > l[best[r]])) best[r] = i;
        }
    p.top_k = 3;
    p.top_p = 1.0f;
    p.temperature = 5.0f;
    a = gemma4c_sampler_new(&p);
    int seen[3] = { 0 }, other = 0;
    for (int k = 0; k < 3000; k++) {
        int t = gemma4c_sampler_sample(a, l, V), hit = 0;
        for (int j = 0; j < 3; j++) if (t == best[j]) { seen[j]++; hit = 1; }
        other += !hit;
    }
    CHECK(other == 0 && seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
    gemma4c_sampler_free(a);
    /* top-p: with one dominant token and p = 0.5 only that token comes out */
    float l2[4] = { 10, 0, 0, 0 };
    p.top_k = 0;
    p.top_p = 0.5f;
    p.temperature = 1.0f;
    a = gemma4c_sampler_new(&p);
    int ok = 1;
    for (int k = 0; k < 500; k++) ok &= gemma4c_sampler_sample(a, l2, 4) == 0;
    CHECK(ok);
    gemma4c_sampler_free(a);
    /* min-p 0.5 with probabilities ~ (0.47, 0.47, 0.06): the third never */
    float l3[3] = { 2, 2, 0 };
    p.top_p = 1.0f;
    p.min_p = 0.5f;
    a = gemma4c_sampler_new(&p);
    int third = 0, first = 0;
    for (int k = 0; k < 2000; k++) {
        int t = gemma4c_sampler_sample(a, l3, 3);
        third += t == 2;
        first += t == 0;
    }
    CHECK(third == 0 && first > 800 && first < 1200);
    gemma4c_sampler_free(a);
    /* empirical distribution at temperature 1 follows softmax */
    p.min_p = 0;
    a = gemma4c_sampler_new(&p);
    int cnt[3] = { 0 };
    for (int k = 0; k < 20000; k++) cnt[gemma4c_sampler_sample(a, l3, 3)]++;
    double p2 = exp(0) / (2 * exp(2) + 1);
    CHECK_NEAR(cnt[2] / 20000.0, p2, 0.01);
    gemma4c_sampler_free(a);
}

/* The sampler against a plain reference written here: argmax by a running
 * best, top-k by sorting the whole vocabulary by (logit desc, id asc), then
 * the same softmax, top-p and draw (the sampler's splitmix stream). The
 * sampler skips blocks and reads in place for speed; it must pick the same
 * token every time, ties, -inf and NaN included. */
static uint64_t ref_splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static const float *ref_lg;
static int ref_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float u = ref_lg[x], v = ref_lg[y];
    if (u > v) return -1;
    if (v > u) return 1;
    return (x > y) - (x < y);
}
static int32_t ref_sample(const float *lg, int n, int k, float temp, float top_p, uint64_t *rng, int32_t *idx,
                          float *pr) {
    if (temp <= 0) {
        int32_t best = 0;
        for (int i = 1; i < n; i++) if (lg[i] > lg[best]) best = i;
        return best;
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    ref_lg = lg;
    qsort(idx, (size_t)n, sizeof *idx, ref_cmp);
    int m = k;
    float invt = 1.0f / temp, mx = lg[idx[0]] * invt;
    double sum = 0;
    for (int i = 0; i < m; i++) { pr[i] = expf(lg[idx[i]] * invt - mx); sum += pr[i]; }
    for (int i = 0; i < m; i++) pr[i] = (float)(pr[i] / sum);
    double c = 0;
    for (int i = 0; i < m; i++) {
        c += pr[i];
        if (c >= top_p) { m = i + 1; break; }
    }
    double tot = 0;
    for (int i = 0; i < m; i++) tot += pr[i];
    double r = (double)(ref_splitmix(rng) >> 11) * (1.0 / 9007199254740992.0) * tot;
    for (int i = 0; i < m; i++) {
        r -= pr[i];
        if (r < 0) return idx[i];
    }
    return idx[m - 1];
}

TEST(sampler_matches_reference) {
    enum { V = 20011 }; /* not a multiple of 16: the tail too */
    float *l = malloc(V * sizeof *l), *pr = malloc(V * sizeof *pr);
    int32_t *idx = malloc(V * sizeof *idx);
    uint64_t st = 99;
    int bad_greedy = 0, bad_topk = 0;
    for (int round = 0; round < 24 && l && pr && idx; round++) {
        /* coarse values (many ties), rising or falling trends (the k best
         * late or early in the vocabulary), some -inf and NaN */
        for (int i = 0; i < V; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            float v = (float)((st >> 33) % 64) / 4.0f;
            if (round % 3 == 1) v += (float)i * 1e-3f;
            if (round % 3 == 2) v -= (float)i * 1e-3f;
            if ((st >> 20) % 97 == 0) v = -INFINITY;
            if (round >= 12 && (st >> 24) % 211 == 0) v = NAN;
            l[i] = v;
        }
        if (round == 23) l[0] = NAN;
        if (round == 22) l[V - 1] = 1e9f; /* the best in the tail */
        int nan_free = round < 12;
        gemma4c_sampler_params p = gemma4c_sampler_default_params();
        p.temperature = 0;
        gemma4c_sampler *g = gemma4c_sampler_new(&p);
        uint64_t rng = 0;
        bad_greedy += gemma4c_sampler_sample(g, l, V) != ref_sample(l, V, 0, 0, 1, &rng, idx, pr);
        gemma4c_sampler_free(g);
        if (!nan_free) continue; /* qsort needs a total order */
        p.temperature = round % 2 ? 0.7f : 1.0f;
        p.top_k = (round / 2) % 2 ? 7 : 64;
        p.top_p = (round / 4) % 2 ? 1.0f : 0.95f;
        p.seed = 1000 + (uint64_t)round;
        gemma4c_sampler *s = gemma4c_sampler_new(&p);
        rng = p.seed;
        for (int d = 0; d < 100; d++)
            bad_topk += gemma4c_sampler_sample(s, l, V) != ref_sample(l, V, p.top_k, p.temperature, p.top_p, &rng, idx, pr);
        gemma4c_sampler_free(s);
    }
    CHECK(l && pr && idx);
    CHECKF(bad_greedy == 0, "%d greedy picks differ", bad_greedy);
    CHECKF(bad_topk == 0, "%d top-k draws differ", bad_topk);
    free(l);
    free(pr);
    free(idx);
}

/* gemma4c_sampler_sample_biased draws what gemma4c_sampler_sample draws
 * from a biased copy, with the same seed: duplicate and out-of-range ids,
 * bans, biases that lift tokens into the top k, greedy, penalties and more
 * ids than the overlay holds (those two copy). */
TEST(sampler_biased_matches_copy) {
    enum { V = 5003 };
    float *l = malloc(V * sizeof *l), *cp = malloc(V * sizeof *cp);
    int32_t id[300];
    float bv[300];
    uint64_t st = 5;
    int bad = 0, draws = 0;
    for (int round = 0; round < 30 && l && cp; round++) {
        for (int i = 0; i < V; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            l[i] = (float)((st >> 33) % 40) / 4.0f;
            if ((st >> 20) % 101 == 0) l[i] = -INFINITY;
        }
        static const int counts[] = { 1, 3, 12, 64, 70, 250 };
        int nb = counts[round % 6];
        for (int i = 0; i < nb; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t r = st >> 33;
            /* a few ids again (duplicates add up), one out of range */
            id[i] = i > 2 && r % 5 == 0 ? id[r % (uint64_t)i] : (int32_t)(r % V);
            if (i == 1) id[i] = V + 7;
            bv[i] = r % 7 == 0 ? -INFINITY : r % 3 == 0 ? 5.0f : (float)(r % 200) / 10.0f - 10.0f;
        }
        /* and ids among the raw best (the end-of-turn tokens a client bans
         * may well be the likeliest): the first ids at the top value */
        for (int i = 0, j = 0; i < V && j < nb && j < 40; i++)
            if (l[i] == 9.75f) {
                id[j] = i;
                bv[j] = j % 3 == 0 ? -INFINITY : j % 3 == 1 ? -0.25f : 0.5f;
                j += 2;
            }
        gemma4c_sampler_params p = gemma4c_sampler_default_params();
        p.temperature = round % 5 == 4 ? 0.0f : round % 2 ? 0.8f : 1.0f;
        p.top_k = round % 3 == 2 ? 7 : 64;
        p.top_p = round % 4 == 3 ? 1.0f : 0.95f;
        if (round % 7 == 6) p.repeat_penalty = 1.3f;
        p.seed = 77 + (uint64_t)round;
        gemma4c_sampler *a = gemma4c_sampler_new(&p), *b = gemma4c_sampler_new(&p);
        for (int d = 0; d < 60 && a && b; d++) {
            memcpy(cp, l, V * sizeof *l);
            for (int i = 0; i < nb; i++)
                if (id[i] >= 0 && id[i] < V) cp[id[i]] += bv[i];
            int32_t x = gemma4c_sampler_sample_biased(a, l, V, id, bv, nb), y = gemma4c_sampler_sample(b, cp, V);
            bad += x != y;
            draws++;
            gemma4c_sampler_accept(a, y);
            gemma4c_sampler_accept(b, y);
        }
        gemma4c_sampler_free(a);
        gemma4c_sampler_free(b);
    }
    CHECK(l && cp && draws == 30 * 60);
    CHECKF(bad == 0, "%d of %d draws differ", bad, draws);
    free(l);
    free(cp);
}

TEST(sampler_penalties) {
    gemma4c_sampler_params p = gemma4c_sampler_default_params();
    p.temperature = 0;
    p.repeat_penalty = 2.0f;
    gemma4c_sampler *s = gemma4c_sampler_new(&p);
    float l[3] = { 2.0f, 1.5f, 0.0f };
    CHECK(gemma4c_sampler_sample(s, l, 3) == 0);
    gemma4c_sampler_accept(s, 0);                 /* 2.0 / 2 = 1.0 < 1.5 */
    CHECK(gemma4c_sampler_sample(s, l, 3) == 1);
    gemma4c_sampler_free(s);
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.3f;
    p.frequency_penalty = 0.2f;
    s = gemma4c_sampler_new(&p);
    gemma4c_sampler_accept(s, 0);                 /* 2.0 - 0.3 - 0.2 = 1.5: tie -> lowest id 0 */
    CHECK(gemma4c_sampler_sample(s, l, 3) == 0);
    gemma4c_sampler_accept(s, 0);                 /* 2.0 - 0.3 - 0.4 = 1.3 < 1.5 */
    CHECK(gemma4c_sampler_sample(s, l, 3) == 1);
    gemma4c_sampler_reset(s);
    CHECK(gemma4c_sampler_sample(s, l, 3) == 0);
    gemma4c_sampler_free(s);
}

/* The fast GELU is the fp16 table's function: where it is computed instead
 * of looked up (AVX2), every fp16 input and random values must stay within
 * one fp16 ulp of the table, or 2e-7 in the far negative tail where the
 * table's tanh form lost its digits, and differ rarely. */
TEST(geglu_paths_agree) {
    g4_act_init();
    enum { N = 70001 };
    float *g = malloc(N * sizeof *g), *u = malloc(N * sizeof *u), *o = malloc(N * sizeof *o);
    uint64_t st = 99;
    for (int i = 0; i < N; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        g[i] = i < 65536 ? g4_fp16_to_fp32((uint16_t)i) : ((float)(int32_t)(st >> 32) / 2147483648.0f) * 12.0f;
        if (g[i] != g[i] || isinf(g[i])) g[i] = 0.5f;
        u[i] = 1.0f + (float)(i % 7);
    }
    g4_geglu(o, g, u, N, 0);
    float *o1 = malloc(N * sizeof *o1);
    g4_geglu(o1, g, NULL, N, 0);
    int bad = 0, differ = 0;
    for (int i = 0; i < N; i++) {
        bad += o[i] != o1[i] * u[i];
        float t = g4_gelu_table(g[i]), f = o1[i];
        if (f == t) continue;
        differ++;
        uint16_t a = g4_fp32_to_fp16(f), b = g4_fp32_to_fp16(t);
        bool one_ulp = !((a ^ b) & 0x8000) && abs((int)(a & 0x7fff) - (int)(b & 0x7fff)) == 1;
        bad += !one_ulp && fabsf(f - t) > 2e-7f;
    }
    CHECKF(bad == 0 && differ < N / 100, "%d far from the table, %d of %d differ", bad, differ, N);
    free(o1);
    g4_geglu(o, g, NULL, N, 1);
    bad = 0;
    for (int i = 0; i < N; i++) bad += o[i] != g4_gelu(g[i]);
    CHECK(bad == 0);
    /* the table is close to the exact function where it applies */
    double mx = 0;
    for (int i = 65536; i < N; i++) mx = fmax(mx, fabs(g4_gelu_table(g[i]) - g4_gelu(g[i])) / (1 + fabs(g[i])));
    CHECKF(mx < 2e-3, "table vs exact %g", mx);
    free(g); free(u); free(o);
}

/* RMSNorm (vectorized where the CPU can) against double, odd lengths (tails
 * of the 16-lane sum and the 8-lane scale), with and without weights, in
 * place. */
TEST(rmsnorm_matches_double) {
    static const int ns[] = { 1, 7, 15, 16, 17, 255, 256, 1536, 2049 };
    float x[2049], w[2049], y[2049];
    uint64_t st = 11;
    for (int i = 0; i < 2049; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ((float)(int32_t)(st >> 32) / 2147483648.0f) * (i % 5 == 0 ? 300.0f : 3.0f);
        w[i] = 0.5f + (float)(i % 9) * 0.25f;
    }
    double worst = 0;
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int n = ns[k];
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        double sc = 1.0 / sqrt(ss / n + 1e-6);
        for (int wi = 0; wi < 2; wi++) {
            g4_rmsnorm(y, x, wi ? w : NULL, n, 1e-6f);
            for (int i = 0; i < n; i++) {
                double want = x[i] * sc * (wi ? w[i] : 1.0);
                worst = fmax(worst, fabs(y[i] - want) / (fabs(want) + 1e-30));
            }
        }
        float z[2049];
        memcpy(z, x, (size_t)n * sizeof *z);
        g4_rmsnorm(z, z, w, n, 1e-6f);          /* in place gives the same */
        g4_rmsnorm(y, x, w, n, 1e-6f);
        CHECK(!memcmp(y, z, (size_t)n * sizeof *z));
    }
    CHECKF(worst < 3e-7, "max relative error %g", worst);
}

/* Fast softcap (vector exp) against tanh in double: every fp16 value as an
 * input (all magnitudes, both signs, tiny to 65504), random values, odd
 * length (tail), and the special values. */
TEST(softcap_fast_matches_tanh) {
    enum { N = 65536 + 4003 };
    const float cap = 30.0f;
    float *y = malloc(N * sizeof *y), *x = malloc(N * sizeof *x);
    uint64_t st = 7;
    for (int i = 0; i < N; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = i < 65536 ? g4_fp16_to_fp32((uint16_t)i) : ((float)(int32_t)(st >> 32) / 2147483648.0f) * 90.0f;
    }
    x[0] = INFINITY; x[1] = -INFINITY; x[2] = NAN; x[3] = -0.0f; x[4] = 1e-30f; x[5] = -3e38f;
    memcpy(y, x, N * sizeof *y);
    g4_softcap(y, N, cap, 0);
    double mx = 0;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        if (isnan(x[i])) { bad += !isnan(y[i]); continue; }
        double want = cap * tanh((double)x[i] / cap);
        mx = fmax(mx, fabs(y[i] - want));
        bad += fabs(y[i]) > cap; /* never past the cap */
    }
    CHECKF(bad == 0, "%d NaN or out-of-range results", bad);
    CHECKF(mx < 2e-7 * cap, "max abs error %g (cap %g)", mx, cap); /* measured 4.1e-6 */
    CHECK(y[0] == cap && y[1] == -cap && y[3] == 0 && y[5] == -cap);
    /* the exact path is tanhf as before */
    memcpy(y, x, N * sizeof *y);
    g4_softcap(y, N, cap, 1);
    bad = 0;
    for (int i = 0; i < N; i++) bad += isnan(x[i]) ? !isnan(y[i]) : y[i] != cap * tanhf(x[i] * (1.0f / cap));
    CHECK(bad == 0);
    free(y); free(x);
}

/* SIMD attention kernels against a double-precision reference, odd sizes. */
TEST(vec_kernels) {
    for (int lv = G4_CPU_REF; lv <= G4_CPU_AVX512; lv++) {
    const g4_vec_ops *v = g4_vec_get_level(lv);
    float a[1031], b[1031], y[1031], y2[1031];
    uint64_t st = 5;
    for (int i = 0; i < 1031; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        a[i] = (float)(int32_t)(st >> 32) / 2147483648.0f;
        b[i] = (float)((st >> 20) & 0xfff) / 4096.0f - 0.5f;
    }
    int sizes[] = { 0, 1, 7, 8, 31, 32, 33, 256, 512, 1031 };
    for (int k = 0; k < 10; k++) {
        int n = sizes[k];
        double ref = 0, mag = 0;
        for (int i = 0; i < n; i++) { ref += (double)a[i] * b[i]; mag += fabs((double)a[i] * b[i]); }
        CHECKF(fabs(v->dot(a, b, n) - ref) <= 1e-6 * (mag + 1), "dot n=%d", n);
        for (int i = 0; i < n; i++) y[i] = y2[i] = b[i];
        v->axpy(y, 0.37f, a, n);
        for (int i = 0; i < n; i++) y2[i] += 0.37f * a[i];
        int bad = 0;
        for (int i = 0; i < n; i++) bad += fabsf(y[i] - y2[i]) > 1e-6f;
        CHECKF(bad == 0, "axpy n=%d", n);
    }
    /* softmax exponentials: every value and the sum against double */
    float e[203];
    for (int n = 0; n <= 203; n += (n < 20 ? 1 : 61)) {
        for (int i = 0; i < n; i++) e[i] = -(float)i * 0.9f + (i % 3 ? 0.0f : -120.0f); /* some below -87 */
        float m = n ? 0.5f : 0.0f, su = v->expsum(e, n, m);
        double want = 0;
        int badx = 0;
        for (int i = 0; i < n; i++) {
            float arg = (-(float)i * 0.9f + (i % 3 ? 0.0f : -120.0f)) - m;   /* rounded as the kernels round it */
            double x = exp((double)arg);
            want += x;
            badx += fabs(e[i] - x) > 1e-6 * x + 1e-37;
        }
        CHECKF(badx == 0 && fabs(su - want) <= 1e-6 * want + 1e-37, "expsum level %d n=%d: %d bad, sum %g vs %g", lv, n,
               badx, su, want);
    }
    }
}

/* Grouped attention kernels (G heads sharing each cache row) against double
 * sums: every head count 1..9 (register tiles of 4 + tails), row counts
 * around the tile widths, head sizes with and without a vector tail, and a
 * cache row stride wider than the head (several KV heads per row). */
TEST(vec_group_kernels) {
    for (int lv = G4_CPU_REF; lv <= G4_CPU_AVX512; lv++) {
    const g4_vec_ops *v = g4_vec_get_level(lv);
    enum { MAXG = 9, MAXJ = 67, MAXD = 264, KS = MAXD + 40 };
    float *q = malloc(sizeof(float) * MAXG * MAXD), *k = malloc(sizeof(float) * MAXJ * KS);
    float *p = malloc(sizeof(float) * MAXG * 80), *s = malloc(sizeof(float) * MAXG * 80);
    float *acc = malloc(sizeof(float) * MAXG * MAXD);
    double *ref = malloc(sizeof(double) * MAXG * MAXD);
    uint64_t st = 11;
    for (int i = 0; i < MAXJ * KS; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        k[i] = (float)((st >> 20) & 0xfff) / 4096.0f - 0.5f;
        if (i < MAXG * MAXD) q[i] = (float)((st >> 40) & 0xfff) / 2048.0f - 1.0f;
        if (i < MAXG * 80) p[i] = (float)((st >> 8) & 0xff) / 256.0f;
    }
    static const int HD[] = { 8, 13, 16, 17, 40, 48, 256, 264 }, NJ[] = { 1, 2, 3, 64, 67 };
    int bad = 0;
    for (int G = 1; G <= MAXG; G++)
        for (size_t a = 0; a < sizeof HD / sizeof *HD; a++)
            for (size_t b = 0; b < sizeof NJ / sizeof *NJ; b++) {
                int hd = HD[a], nj = NJ[b];
                v->qk(s, 80, q, G, k, KS, nj, hd);
                for (int h = 0; h < G; h++)
                    for (int j = 0; j < nj; j++) {
                        double r = 0, mag = 0;
                        for (int i = 0; i < hd; i++) {
                            r += (double)q[h * hd + i] * k[j * KS + i];
                            mag += fabs((double)q[h * hd + i] * k[j * KS + i]);
                        }
                        if (fabs(s[h * 80 + j] - r) > 1e-6 * (mag + 1) && bad++ < 5)
                            fprintf(stderr, "  qk G=%d hd=%d nj=%d h=%d j=%d: %g vs %g\n", G, hd, nj, h, j, s[h * 80 + j], r);
                    }
                for (int i = 0; i < G * hd; i++) acc[i] = ref[i] = 0.25f * (float)(i % 7);
                v->pv(acc, p, 80, G, k, KS, nj, hd);
                for (int h = 0; h < G; h++)
                    for (int j = 0; j < nj; j++)
                        for (int i = 0; i < hd; i++) ref[h * hd + i] += (double)p[h * 80 + j] * k[j * KS + i];
                for (int i = 0; i < G * hd; i++)
                    if (fabs(acc[i] - ref[i]) > 1e-5 * (fabs(ref[i]) + 1) && bad++ < 5)
                        fprintf(stderr, "  pv G=%d hd=%d nj=%d i=%d: %g vs %g\n", G, hd, nj, i, acc[i], ref[i]);
            }
    CHECKF(bad == 0, "level %d: %d grouped-attention mismatches", lv, bad);
    free(q); free(k); free(p); free(s); free(acc); free(ref);
    }
}

/* Resident KB of the mappings that lie inside [a, b), from /proc/self/smaps;
 * -1 where it cannot be read. */
static long resident_kb(uintptr_t a, uintptr_t b) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    long kb = 0;
    int inside = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        long v;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = lo >= a && hi <= b;
        else if (inside && sscanf(line, "Rss: %ld kB", &v) == 1)
            kb += v;
    }
    fclose(f);
    return kb;
}

/* The per-layer-embedding table is read one row per token and each row is
 * unmapped after use, so a long text never makes it resident. The kernel
 * maps more than the faulting page: fault-around, and a whole large folio
 * where the page cache holds one -- which it does after the file was read
 * through a 2 MB-page mapping (as gemma4c maps weights). The table here is
 * read that way first, then rows spread over it are read and released: none
 * may stay mapped. (With a 64 KB release window this kept ~2 MB per row.) */
TEST(released_table_rows_stay_unmapped) {
    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/g4rowsXXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    unlink(path);
    const size_t size = (size_t)16 << 20, MB = (size_t)1 << 20;
    static unsigned char chunk[1 << 20];
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (unsigned char)(i * 131 + 7);
    for (size_t off = 0; off < size; off += sizeof chunk) CHECK(write(fd, chunk, sizeof chunk) == (ssize_t)sizeof chunk);

    unsigned sum = 0;
    unsigned char *m = g4_map_file(fd, size);
    CHECK(m != NULL);
    if (!m) { close(fd); return; }
    for (size_t i = 0; i < size; i += 4096) sum += ((volatile unsigned char *)m)[i];
    munmap(m, size);

    m = g4_map_file(fd, size);
    CHECK(m != NULL);
    if (!m) { close(fd); return; }
    g4_mat t = { .data = m + MB, .type = 0, .n_in = 9000, .n_out = 14 * MB / 9000, .n_mat = 1, .row_bytes = 9000 };
    g4_advise_row_table(&t);
    uintptr_t a = (uintptr_t)m + MB, b = (uintptr_t)m + 15 * MB;
    long most = 0;
    for (int i = 0; i < 24; i++) {
        const unsigned char *row = g4_mat_row(&t, 0, (i * 67) % t.n_out);
        for (size_t j = 0; j < t.row_bytes; j += 512) sum += ((volatile const unsigned char *)row)[j];
        long kb = resident_kb(a, b);
        if (kb > most) most = kb;
        g4_release_rows(&t, row, t.row_bytes);
    }
    long left = resident_kb(a, b);
    printf("     table rows mapped %ld KB at most after a read, %ld KB after release (sum %u)\n", most, left, sum);
    CHECK(most > 0);
    CHECKF(left >= 0 && left < 64, "%ld KB of the table still mapped", left);
    munmap(m, size);
    close(fd);
}

int main(void) {
    RUN(vec_kernels);
    RUN(vec_group_kernels);
    RUN(geglu_paths_agree);
    RUN(rmsnorm_matches_double);
    RUN(softcap_fast_matches_tanh);
    RUN(layer_table_matches_config);
    RUN(tensor_table_covers_reference_models);
    RUN(released_table_rows_stay_unmapped);
    RUN(kv_plan_matches_formula);
    RUN(sampler_greedy_and_ties);
    RUN(sampler_reproducible_and_respects_filters);
    RUN(sampler_penalties);
    RUN(sampler_matches_reference);
    RUN(sampler_biased_matches_copy);
    return test_summary();
}
