/* Token sampling: penalties, temperature, top-k, top-p, min-p, seeded RNG.
 *
 * Order (as Hugging Face generation applies Gemma's recommended settings):
 * repetition/presence/frequency penalties on the raw logits, then
 * temperature, top-k, top-p (nucleus), min-p, then a draw from the renormalised
 * distribution. temperature <= 0 is greedy: argmax, lowest id on ties. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4c.h"

struct gemma4c_sampler {
    gemma4c_sampler_params p;
    uint64_t rng;
    int32_t *hist;        /* recent accepted tokens (ring) */
    int hist_cap, hist_n, hist_pos;
    /* work arrays, grown to n_vocab on first use */
    float *logit;
    int32_t *idx;
    int cap;
    float *biased;        /* [n_vocab] the logits + a bias, when no overlay can do */
    int biased_cap;
};

/* A sparse bias read beside the logits instead of a biased copy of them:
 * at most OV_MAX distinct ids with their biased values. */
enum { OV_MAX = 64, CV_MAX = 2 * OV_MAX + 1024 };
typedef struct {
    int n;
    int32_t id[OV_MAX];
    float v[OV_MAX];
} overlay;

gemma4c_sampler_params gemma4c_sampler_default_params(void) {
    gemma4c_sampler_params p = { .temperature = 1.0f, .top_k = 64, .top_p = 0.95f, .min_p = 0.0f,
                                 .repeat_penalty = 1.0f, .presence_penalty = 0.0f, .frequency_penalty = 0.0f,
                                 .penalty_last_n = 64, .seed = 0x9e3779b97f4a7c15ull };
    return p;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

gemma4c_sampler *gemma4c_sampler_new(const gemma4c_sampler_params *p) {
    gemma4c_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = p ? *p : gemma4c_sampler_default_params();
    s->hist_cap = s->p.penalty_last_n > 0 ? s->p.penalty_last_n : 4096;
    s->hist = malloc((size_t)s->hist_cap * sizeof *s->hist);
    if (!s->hist) { free(s); return NULL; }
    gemma4c_sampler_reset(s);
    return s;
}

void gemma4c_sampler_free(gemma4c_sampler *s) {
    if (!s) return;
    free(s->hist);
    free(s->logit);
    free(s->idx);
    free(s->biased);
    free(s);
}

void gemma4c_sampler_reset(gemma4c_sampler *s) {
    s->rng = s->p.seed;
    s->hist_n = s->hist_pos = 0;
}

void gemma4c_sampler_accept(gemma4c_sampler *s, int32_t tok) {
    s->hist[s->hist_pos] = tok;
    s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    if (s->hist_n < s->hist_cap) s->hist_n++;
}

/* Largest of x[0..16), NaN ignored unless all are (the vectorizable form). */
static float max16(const float *x) {
    float m[8];
    for (int l = 0; l < 8; l++) m[l] = x[l + 8] > x[l] ? x[l + 8] : x[l];
    for (int l = 0; l < 4; l++) m[l] = m[l + 4] > m[l] ? m[l + 4] : m[l];
    m[0] = m[2] > m[0] ? m[2] : m[0];
    m[1] = m[3] > m[1] ? m[3] : m[1];
    return m[1] > m[0] ? m[1] : m[0];
}

/* Argmax, lowest id on ties; NaN never wins (and a NaN at 0 wins, as the
 * plain `x[i] > x[best]` loop had it). By blocks of 16: the first block
 * whose (vectorized) maximum beats the best so far, then the first index
 * in it holding that maximum. One running best index would be a
 * load-compare chain: ~1 ms over 262,144 logits, against ~0.1 ms. */
static int32_t argmax(const float *x, int n) {
    if (!(x[0] == x[0])) return 0;
    float mx = x[0];
    int blk = -1, best = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        float bm = max16(x + i);
        if (bm > mx) { mx = bm; blk = i; }
    }
    if (blk >= 0)
        for (best = blk; x[best] != mx; best++) {}
    for (; i < n; i++)
        if (x[i] > mx) { mx = x[i]; best = i; }
    return best;
}

/* Sort the first n of idx by logit without global state: insertion into a
 * bounded heap would be faster for small k; n is at most top_k or the
 * (already filtered) candidate count, so a merge sort keeps it simple. */
static void sort_idx(int32_t *idx, int n, const float *lg, int32_t *tmp) {
    if (n < 2) return;
    int h = n / 2;
    sort_idx(idx, h, lg, tmp);
    sort_idx(idx + h, n - h, lg, tmp);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int32_t a = idx[i], b = idx[j];
        bool take_a = lg[a] > lg[b] || (lg[a] == lg[b] && a < b);
        tmp[k++] = take_a ? idx[i++] : idx[j++];
    }
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

/* The distribution the sampler draws from: candidates idx[0..m) with
 * weights pr[0..m) (descending, summing to *tot), in the sampler's work
 * arrays. Returns m, or 0 when the choice is the argmax (*best; greedy),
 * or -1 for n <= 0. */
static int distribution(gemma4c_sampler *s, const float *logits, int n, const overlay *ov, int32_t *best,
                        float **prp, double *totp) {
    if (n <= 0) return -1;
    const gemma4c_sampler_params *p = &s->p;
    bool penal = s->hist_n > 0 && (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f ||
                                   p->frequency_penalty != 0.0f);
    if (!ov && !penal && p->temperature <= 0) { *best = argmax(logits, n); return 0; }
    if (s->cap < n) {
        float *l = realloc(s->logit, (size_t)n * sizeof *l);
        if (l) s->logit = l;
        int32_t *ix = realloc(s->idx, (size_t)n * 2 * sizeof *ix);
        if (ix) s->idx = ix;
        if (!l || !ix) { *best = argmax(logits, n); return 0; }
        s->cap = n;
    }
    /* the logits are read in place; a copy only when penalties change some */
    const float *lg = logits;
    if (penal) {
        float *w = s->logit;
        memcpy(w, logits, (size_t)n * sizeof *w);
        /* count each distinct token once for presence, per occurrence for frequency */
        for (int i = 0; i < s->hist_n; i++) {
            int32_t t = s->hist[i];
            if (t < 0 || t >= n) continue;
            int cnt = 0;
            bool first = true;
            for (int j = 0; j < s->hist_n; j++) {
                if (s->hist[j] == t) { cnt++; if (j < i) first = false; }
            }
            if (!first) continue;
            float *v = &w[t];
            if (p->repeat_penalty != 1.0f && p->repeat_penalty > 0)
                *v = *v > 0 ? *v / p->repeat_penalty : *v * p->repeat_penalty;
            *v -= (float)cnt * p->frequency_penalty + p->presence_penalty;
        }
        lg = w;
        if (p->temperature <= 0) { *best = argmax(lg, n); return 0; }
    }
    float invt = p->temperature > 0 ? 1.0f / p->temperature : 1.0f; /* greedy with an overlay: unused */
    int32_t *idx = s->idx, *tmp = s->idx + n;
    int m = n;
    /* with an overlay (no penalties; the caller checked k + ov->n < n): the
     * k + ov->n best raw logits hold every id of the biased top k that the
     * overlay does not (at most ov->n raw ones can rank above it) */
    int k = !ov ? p->top_k : p->temperature <= 0 ? 1 : p->top_k;
    if (ov) k += ov->n;
    if (k > 0 && k < n) {
        /* the k best, descending (lower id first on ties): the first k
         * sorted, then each later logit above the k-th is inserted. Blocks
         * of 16 whose maximum is not above the k-th are skipped whole: after
         * the first few thousand logits nearly all are, so the pass costs
         * about a vectorized max over the vocabulary. */
        m = k;
        for (int i = 0; i < m; i++) idx[i] = i;
        sort_idx(idx, m, lg, tmp);
        float thr = lg[idx[m - 1]];
        for (int b = m; b < n; b += 16) {
            int e = b + 16 <= n ? b + 16 : n;
            if (e - b == 16 && !(max16(lg + b) > thr)) continue;
            for (int i = b; i < e; i++) {
                if (!(lg[i] > thr)) continue;
                /* insert i keeping descending order */
                int j = m - 1;
                while (j > 0 && lg[idx[j - 1]] < lg[i]) { idx[j] = idx[j - 1]; j--; }
                idx[j] = i;
                thr = lg[idx[m - 1]];
            }
        }
    } else {
        for (int i = 0; i < n; i++) idx[i] = i;
        sort_idx(idx, n, lg, tmp);
    }
    /* the candidates' logits, in order (an overlay: its ids with their
     * biased values replace theirs; sorted again, k kept) */
    float cv_ov[CV_MAX], *cv = NULL; /* the caller keeps k + 2 ov->n <= CV_MAX */
    if (ov) {
        int c = 0;
        for (int i = 0; i < m; i++) {
            int in = 0;
            for (int j = 0; j < ov->n && !in; j++) in = ov->id[j] == idx[i];
            if (!in) { tmp[c] = idx[i]; cv_ov[c++] = lg[idx[i]]; }
        }
        for (int j = 0; j < ov->n; j++) { tmp[c] = ov->id[j]; cv_ov[c++] = ov->v[j]; }
        /* insertion sort by (logit desc, id asc), the order of the plain path */
        for (int i = 1; i < c; i++) {
            int32_t id = tmp[i];
            float v = cv_ov[i];
            int j = i;
            while (j > 0 && (cv_ov[j - 1] < v || (cv_ov[j - 1] == v && tmp[j - 1] > id))) {
                tmp[j] = tmp[j - 1];
                cv_ov[j] = cv_ov[j - 1];
                j--;
            }
            tmp[j] = id;
            cv_ov[j] = v;
        }
        m = k - ov->n;
        memcpy(idx, tmp, (size_t)m * sizeof *idx);
        cv = cv_ov;
        if (p->temperature <= 0) { *best = idx[0]; return 0; }
    }
    /* probabilities of the candidates (sorted, descending) */
    float mx = (cv ? cv[0] : lg[idx[0]]) * invt;
    double sum = 0;
    float *pr = (float *)tmp; /* reuse: m floats */
    for (int i = 0; i < m; i++) { pr[i] = expf((cv ? cv[i] : lg[idx[i]]) * invt - mx); sum += pr[i]; }
    for (int i = 0; i < m; i++) pr[i] = (float)(pr[i] / sum);
    if (p->top_p < 1.0f && p->top_p > 0) {
        double c = 0;
        for (int i = 0; i < m; i++) {
            c += pr[i];
            if (c >= p->top_p) { m = i + 1; break; }
        }
    }
    if (p->min_p > 0) {
        float lim = pr[0] * p->min_p;
        int k = 1;
        while (k < m && pr[k] >= lim) k++;
        m = k;
    }
    double tot = 0;
    for (int i = 0; i < m; i++) tot += pr[i];
    *prp = pr;
    *totp = tot;
    return m;
}

/* Uniform in [0, 1). */
static double uniform(gemma4c_sampler *s) { return (double)(splitmix(&s->rng) >> 11) * (1.0 / 9007199254740992.0); }

/* One draw from the distribution the parameters make of logits (with the
 * overlay's values in place of its ids' when ov is given). */
static int32_t draw(gemma4c_sampler *s, const float *logits, int n, const overlay *ov) {
    int32_t best = -1;
    float *pr;
    double tot;
    int m = distribution(s, logits, n, ov, &best, &pr, &tot);
    if (m <= 0) return best;
    const int32_t *idx = s->idx;
    double r = uniform(s) * tot;
    for (int i = 0; i < m; i++) {
        r -= pr[i];
        if (r < 0) return idx[i];
    }
    return idx[m - 1];
}

int32_t gemma4c_sampler_sample(gemma4c_sampler *s, const float *logits, int n) { return draw(s, logits, n, NULL); }

int32_t gemma4c_sampler_sample_biased(gemma4c_sampler *s, const float *logits, int n, const int32_t *id,
                                      const float *bias, int n_bias) {
    if (n_bias <= 0 || n <= 0) return gemma4c_sampler_sample(s, logits, n);
    const gemma4c_sampler_params *p = &s->p;
    bool penal = s->hist_n > 0 && (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f ||
                                   p->frequency_penalty != 0.0f);
    /* the biased values, added in order as to a copy */
    overlay ov = { 0 };
    bool fits = !penal;
    for (int i = 0; i < n_bias && fits; i++) {
        if (id[i] < 0 || id[i] >= n) continue;
        int j = 0;
        while (j < ov.n && ov.id[j] != id[i]) j++;
        if (j == ov.n) {
            if (ov.n == OV_MAX) { fits = false; break; }
            ov.id[ov.n] = id[i];
            ov.v[ov.n++] = logits[id[i]];
        }
        ov.v[j] += bias[i];
    }
    int k = p->temperature <= 0 ? 1 : p->top_k;
    if (!fits || k <= 0 || k + ov.n >= n || k + 2 * ov.n > CV_MAX) {
        /* penalties, no top-k or too many ids: the biased copy */
        if (s->biased_cap < n) {
            float *b = realloc(s->biased, (size_t)n * sizeof *b);
            if (!b) return -1;
            s->biased = b;
            s->biased_cap = n;
        }
        memcpy(s->biased, logits, (size_t)n * sizeof *logits);
        for (int i = 0; i < n_bias; i++)
            if (id[i] >= 0 && id[i] < n) s->biased[id[i]] += bias[i];
        return gemma4c_sampler_sample(s, s->biased, n);
    }
    return draw(s, logits, n, ov.n ? &ov : NULL);
}

int32_t gemma4c_sampler_sample_draft(gemma4c_sampler *s, const float *logits, int n, int32_t draft, const float *q,
                                     int *accepted) {
    int32_t best = -1;
    float *pr;
    double tot;
    *accepted = 0;
    int m = distribution(s, logits, n, NULL, &best, &pr, &tot);
    if (m < 0) return -1;
    if (m == 0) {                      /* greedy: p is one-hot on the argmax */
        *accepted = best == draft;
        return best;
    }
    const int32_t *idx = s->idx;
    /* p(draft): zero unless it is a candidate */
    double pd = 0;
    int di = -1;
    for (int i = 0; i < m; i++)
        if (idx[i] == draft) { pd = pr[i] / tot; di = i; break; }
    double qd = q ? (draft >= 0 && draft < n ? (double)q[draft] : 0) : 1.0;
    double u = uniform(s);
    if (di >= 0 && (qd <= 0 || u * qd < pd)) {   /* accept with min(1, p/q) */
        *accepted = 1;
        return draft;
    }
    /* rejected: draw from norm(max(0, p - q)); with q one-hot that is p
     * without the draft. Only candidates have p > 0. */
    double w_tot = 0;
    for (int i = 0; i < m; i++) {
        double qi = q ? (double)q[idx[i]] : (i == di);
        double w = pr[i] / tot - qi;
        w_tot += w > 0 ? w : 0;
    }
    if (!(w_tot > 0)) {                /* p == q up to rounding: any draw from p will do */
        double r = uniform(s) * tot;
        for (int i = 0; i < m; i++) { r -= pr[i]; if (r < 0) return idx[i]; }
        return idx[m - 1];
    }
    double r = uniform(s) * w_tot;
    int32_t last = -1;
    for (int i = 0; i < m; i++) {
        double qi = q ? (double)q[idx[i]] : (i == di);
        double w = pr[i] / tot - qi;
        if (w <= 0) continue;
        last = idx[i];
        r -= w;
        if (r < 0) return idx[i];
    }
    return last;
}
