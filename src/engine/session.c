/* Chat sessions (include/gemma4c.h): one conversation on one context.
 *
 * A turn: request -> prompt (the official template) -> ids (special tokens
 * matched, since the template writes them) -> only the part after the
 * longest prefix already in the context is evaluated -> the shared decode
 * loop -> detokenized text (special tokens kept as text) -> streaming parser
 * -> reasoning / content / tool-call deltas and the final message. Built on
 * the public context calls, so it keeps working whatever the context holds
 * inside. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arch/markers.h"
#include "engine/engine.h"
#include "gemma4c.h"

struct gemma4c_session {
    gemma4c_context *c;
    const gemma4c_model *m;
    gemma4c_sampler *s;
    gemma4c_session_params p;
    int family;
    int32_t *cached;       /* ids currently in the context, in order; a media
                              row as -2 - its item's index (matches only itself) */
    int n_cached, cap_cached;
    gemma4c_media **media; /* the conversation's media parts, in order (borrowed) */
    int n_media, cap_media;
};

static void set_err(char *dst, size_t len, const char *msg);

int gemma4c_session_add_media(gemma4c_session *s, gemma4c_media *it) {
    if (s->n_media == s->cap_media) {
        int cap = s->cap_media ? s->cap_media * 2 : 8;
        gemma4c_media **m = realloc(s->media, (size_t)cap * sizeof *m);
        if (!m) return -1;
        s->media = m;
        s->cap_media = cap;
    }
    s->media[s->n_media++] = it;
    return 0;
}

void gemma4c_session_clear_media(gemma4c_session *s) { s->n_media = 0; }

/* The prompt with media (gemma4-multimodal.md §9): each template
 * placeholder (one <|image|>, <|audio|>, <|video|> per part) is replaced in
 * the text by its item's expansion (gemma4c_media_prompt), left to right,
 * before tokenizing; then each run of soft ids gets the next item's rows (a
 * video: one run per frame). keys: the ids, with media rows as -2 - item
 * (what the prefix reuse compares). */
typedef struct media_prompt {
    int32_t *ids, *keys, *run;
    float *embd;
    uint8_t *has;
    int n;
} media_prompt;

static void media_prompt_free(media_prompt *mp) {
    free(mp->ids); free(mp->keys); free(mp->run); free(mp->embd); free(mp->has);
    memset(mp, 0, sizeof *mp);
}

static const char *const mk_soft[4] = { "", G4_MK_IMAGE, G4_MK_AUDIO, G4_MK_VIDEO };
static const char *const mk_name[4] = { "", "image", "audio", "video" };

/* The placeholder kind at p (0: none). */
static int placeholder_at(const char *p) {
    for (int k = 1; k <= 3; k++)
        if (!strncmp(p, mk_soft[k], strlen(mk_soft[k]))) return k;
    return 0;
}

/* Expanded prompt text (malloc'd) or NULL + err; *used: items consumed. */
static char *expand_text(gemma4c_session *s, const char *prompt, size_t plen, size_t *out_len, int *used, char *err,
                         size_t errlen) {
    size_t cap = plen + 1, len = 0;
    char *o = malloc(cap);
    int item = 0;
    for (size_t i = 0; o && i < plen;) {
        int k = placeholder_at(prompt + i);
        const char *add = prompt + i;
        size_t addn = 1;
        char *exp = NULL;
        if (k) {
            if (item >= s->n_media) {
                if (err && errlen)
                    snprintf(err, errlen, "the conversation has more media parts than media items given (%s part %d has "
                             "none)", mk_name[k], item + 1);
                free(o);
                return NULL;
            }
            int ik = gemma4c_media_kind(s->media[item]);
            if (ik != k) {
                if (err && errlen)
                    snprintf(err, errlen, "media part %d is %s but item %d is %s", item + 1, mk_name[k], item + 1,
                             mk_name[ik]);
                free(o);
                return NULL;
            }
            exp = gemma4c_media_prompt(s->media[item++]);
            if (!exp) { free(o); set_err(err, errlen, "out of memory"); return NULL; }
            add = exp;
            addn = strlen(exp);
            i += strlen(mk_soft[k]);
        } else {
            i++;
        }
        if (len + addn + 1 > cap) {
            cap = (len + addn + 1) * 2;
            char *g = realloc(o, cap);
            if (!g) { free(o); free(exp); set_err(err, errlen, "out of memory"); return NULL; }
            o = g;
        }
        memcpy(o + len, add, addn);
        len += addn;
        free(exp);
    }
    if (!o) { set_err(err, errlen, "out of memory"); return NULL; }
    o[len] = 0;
    *out_len = len;
    *used = item;
    return o;
}

/* Fill the rows of the soft-id runs of ids (from expand_text's prompt). */
static int fill_media(gemma4c_session *s, int32_t *ids, int n, int used, media_prompt *mp, char *err, size_t errlen) {
    int32_t open, soft[4] = { -1, -1, -1, -1 }, close;
    for (int k = 1; k <= 3; k++)
        if (gemma4c_media_token_ids(s->m, k, &open, &soft[k], &close)) soft[k] = -1;
    gemma4c_model_info info;
    gemma4c_model_get_info(s->m, &info);
    int H = info.n_embd, bidir = gemma4c_model_image_attention(s->m);
    mp->ids = ids;
    mp->n = n;
    mp->keys = malloc((size_t)n * sizeof *mp->keys);
    mp->run = malloc((size_t)n * sizeof *mp->run);
    mp->embd = calloc((size_t)n * H, sizeof *mp->embd);
    mp->has = calloc((size_t)n, 1);
    if (!mp->keys || !mp->run || !mp->embd || !mp->has) { set_err(err, errlen, "out of memory"); return -1; }
    int item = 0, frame = 0, runs = 0;
    for (int i = 0; i < n;) {
        int k = 0;
        for (int q = 1; q <= 3; q++) if (soft[q] >= 0 && ids[i] == soft[q]) k = q;
        if (!k) { mp->keys[i] = ids[i]; mp->run[i++] = -1; continue; }
        int j = i;
        while (j < n && ids[j] == ids[i]) j++;
        gemma4c_media *it = item < used ? s->media[item] : NULL;
        const float *rows = it ? gemma4c_media_encode(it, err, errlen) : NULL;
        int nf = it ? gemma4c_media_n_frames(it) : 1, per = it ? gemma4c_media_n_tokens(it) / nf : 0;
        if (!rows || gemma4c_media_kind(it) != k || j - i != per) {
            if (rows && err && errlen)
                snprintf(err, errlen, "the prompt's %s run at position %d has %d soft ids where the item gives %d (a "
                         "placeholder written in the text?)", mk_name[k], i, j - i, per);
            else if (!it && err && errlen)
                snprintf(err, errlen, "the prompt has a %s run at position %d with no media item (a placeholder "
                         "written in the text?)", mk_name[k], i);
            return -1;
        }
        memcpy(mp->embd + (size_t)i * H, rows + (size_t)frame * per * H, (size_t)per * H * sizeof *rows);
        for (int t = i; t < j; t++) {
            mp->keys[t] = -2 - item;
            mp->has[t] = 1;
            mp->run[t] = bidir && k != GEMMA4C_MEDIA_AUDIO ? runs : -1;
        }
        runs++;
        if (++frame == nf) { item++; frame = 0; }
        i = j;
    }
    if (!bidir) { free(mp->run); mp->run = NULL; }
    return 0;
}

gemma4c_session_params gemma4c_session_default_params(void) {
    gemma4c_session_params p;
    memset(&p, 0, sizeof p);
    p.n_predict = 1024;
    p.chat = gemma4c_chat_default_options();
    p.sampling = gemma4c_sampler_default_params();
    return p;
}

static void set_err(char *dst, size_t len, const char *msg) {
    if (dst && len) snprintf(dst, len, "%s", msg);
}

gemma4c_session *gemma4c_session_new(gemma4c_context *c, const gemma4c_session_params *p, char *err,
                                     size_t errlen) {
    gemma4c_session *s = calloc(1, sizeof *s);
    if (!s) { set_err(err, errlen, "out of memory"); return NULL; }
    s->c = c;
    s->m = gemma4c_context_model(c);
    s->p = p ? *p : gemma4c_session_default_params();
    s->family = s->p.family ? s->p.family : gemma4c_model_chat_family(s->m);
    s->s = gemma4c_sampler_new(&s->p.sampling);
    if (!s->s) { set_err(err, errlen, "out of memory"); free(s); return NULL; }
    return s;
}

void gemma4c_session_free(gemma4c_session *s) {
    if (!s) return;
    gemma4c_sampler_free(s->s);
    free(s->cached);
    free(s->media);
    free(s);
}

void gemma4c_session_reset(gemma4c_session *s) {
    gemma4c_reset(s->c);
    s->n_cached = 0;
}

int gemma4c_session_family(const gemma4c_session *s) { return s->family; }

static int ensure_cap(gemma4c_session *s, int n) {
    if (n <= s->cap_cached) return 0;
    int cap = n * 2;
    int32_t *c = realloc(s->cached, (size_t)cap * sizeof *c);
    if (!c) return -1;
    s->cached = c;
    s->cap_cached = cap;
    return 0;
}

/* Evaluate ids reusing the longest prefix already in the context; returns
 * the number of reused tokens or -1. mp: the prompt's media rows (its keys
 * are compared, its ids evaluated), or NULL. */
static int feed_prompt(gemma4c_session *s, const int32_t *ids, int n, const media_prompt *mp, char *err,
                       size_t errlen) {
    const int32_t *keys = mp && mp->n ? mp->keys : ids;
    if (s->n_cached > gemma4c_n_past(s->c)) s->n_cached = gemma4c_n_past(s->c);
    int common = 0;
    while (common < n && common < s->n_cached && keys[common] == s->cached[common]) common++;
    if (common == n) common = n - 1; /* re-evaluate the last token to get fresh logits */
    /* a bidirectional run is evaluated whole */
    while (mp && mp->run && common > 0 && common < n && mp->run[common] >= 0 && mp->run[common - 1] == mp->run[common])
        common--;
    if (gemma4c_truncate(s->c, common) != 0) {
        gemma4c_reset(s->c); /* sliding caches no longer hold that prefix */
        common = 0;
    }
    s->n_cached = common;
    if (ensure_cap(s, n)) { set_err(err, errlen, "out of memory"); return -1; }
    if (mp && mp->n) {
        gemma4c_model_info info;
        gemma4c_model_get_info(s->m, &info);
        gemma4c_batch b = { .n_tokens = n - common, .token = ids + common,
                            .embd = mp->embd + (size_t)common * info.n_embd, .has_embd = mp->has + common,
                            .run = mp->run ? mp->run + common : NULL };
        if (gemma4c_decode(s->c, &b, err, errlen)) return -1;
    } else if (gemma4c_eval(s->c, ids + common, n - common, 0, err, errlen)) {
        return -1;
    }
    memcpy(s->cached + common, keys + common, (size_t)(n - common) * sizeof *keys);
    s->n_cached = n;
    return common;
}

/* State of the decode callbacks during one turn. */
typedef struct turn_state {
    gemma4c_session *s;
    gemma4c_detok *dt;
    gemma4c_chat_parser *parser;
    int n_generated;
    int failed;
    int cache_broken;      /* an id could not be recorded: stop recording */
} turn_state;

static int on_token(void *user, int32_t t) {
    turn_state *ts = user;
    gemma4c_session *s = ts->s;
    ts->n_generated++;
    size_t len;
    const char *piece = gemma4c_detok_push(ts->dt, t, &len);
    if (gemma4c_chat_parser_feed(ts->parser, piece, len)) { ts->failed = 1; return 1; }
    if (gemma4c_chat_parser_stopped(ts->parser)) return 1;
    /* the loop evaluates it next; a short list only costs reuse later */
    if (!ts->cache_broken && ensure_cap(s, s->n_cached + 1)) ts->cache_broken = 1;
    if (!ts->cache_broken) s->cached[s->n_cached++] = t;
    return 0;
}

static int on_cancel(void *user) {
    turn_state *ts = user;
    return ts->s->p.cancel && ts->s->p.cancel(ts->s->p.cancel_user);
}

/* The template opens the thought channel itself when thinking is on; the
 * parser must then start inside the reasoning. */
int g4_engine_ends_in_thought(const char *prompt, size_t len) {
    static const char tail[] = "<|channel>thought\n";
    size_t n = sizeof tail - 1;
    return len >= n && !memcmp(prompt + len - n, tail, n);
}

/* The request's output constraint (response_format / format, or tools with
 * tool_choice), NULL when it asks for none; *failed on a bad one. */
static gemma4c_constraint *turn_constraint(gemma4c_session *s, json_t *req, int thinking, int *failed, char *err,
                                           size_t errlen) {
    *failed = 0;
    if (!s->p.constrain) return NULL;
    return g4_engine_request_constraint(s->m, req, thinking, failed, err, errlen);
}

int gemma4c_session_turn(gemma4c_session *s, const char *request_json, size_t rlen, gemma4c_delta_fn on_delta,
                         void *user, gemma4c_turn_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->finish = -1;
    char msg[600];
    gemma4c_chat_options co = s->p.chat;
    co.add_generation_prompt = 1;
    size_t plen = 0;
    json_error_t je;
    json_t *req = json_loadb(request_json, rlen, JSON_ALLOW_NUL, &je);
    char *prompt = NULL;
    if (!req) snprintf(msg, sizeof msg, "%d:%d: %s", je.line, je.column, je.text);
    else prompt = g4_engine_render(s->family, req, &co, &plen, msg, sizeof msg);
    if (!prompt) {
        json_decref(req);
        if (err && errlen) snprintf(err, errlen, "chat format: %s", msg);
        return -1;
    }
    int cfailed;
    int thinking = g4_engine_ends_in_thought(prompt, plen) ? 2 : strstr(prompt, G4_MK_THINK) ? 1 : 0;
    gemma4c_constraint *cons = turn_constraint(s, req, thinking, &cfailed, err, errlen);
    json_decref(req);
    if (cfailed) { free(prompt); return -1; }
    int32_t *ids = NULL;
    media_prompt mp = { 0 };
    int used = 0;
    size_t xlen = plen;
    /* always: a media part without an item is an error, not a bare placeholder */
    char *xp = expand_text(s, prompt, plen, &xlen, &used, err, errlen);
    if (!xp) {
        free(prompt);
        gemma4c_constraint_free(cons);
        return -1;
    }
    int n = gemma4c_tokenize(s->m, xp, xlen, 0, 1, &ids, err, errlen);
    free(xp);
    gemma4c_parse_options po = { 0 };
    po.in_reasoning = g4_engine_ends_in_thought(prompt, plen);
    free(prompt);
    if (n < 0) { gemma4c_constraint_free(cons); return -1; }
    if (used && fill_media(s, ids, n, used, &mp, err, errlen)) {
        if (!mp.ids) free(ids);
        media_prompt_free(&mp);
        gemma4c_constraint_free(cons);
        return -1;
    }
    if (mp.ids) mp.ids = NULL;   /* ids stays the caller's below */
    out->n_prompt = n;
    /* the answer may use what the context has left, up to n_predict */
    int n_gen = gemma4c_n_ctx(s->c) - n;
    if (n_gen < 1) {
        if (err && errlen)
            snprintf(err, errlen, "the conversation (%d tokens) fills the context (%d)", n, gemma4c_n_ctx(s->c));
        free(ids);
        media_prompt_free(&mp);
        gemma4c_constraint_free(cons);
        return GEMMA4C_ERR_CONTEXT_FULL;
    }
    if (s->p.n_predict > 0 && n_gen > s->p.n_predict) n_gen = s->p.n_predict;
    int reused = feed_prompt(s, ids, n, mp.n ? &mp : NULL, err, errlen);
    free(ids);
    media_prompt_free(&mp);
    if (reused < 0) { gemma4c_constraint_free(cons); return -1; }
    out->n_reused = reused;
    turn_state ts = { s, gemma4c_detok_new(s->m, 1), gemma4c_chat_parser_new(&po, on_delta, user), 0, 0, 0 };
    if (!ts.parser || !ts.dt) {
        set_err(err, errlen, "out of memory");
        gemma4c_chat_parser_free(ts.parser);
        gemma4c_detok_free(ts.dt);
        gemma4c_constraint_free(cons);
        return -1;
    }
    gemma4c_sampler_reset(s->s);
    gemma4c_generate_params gp = { .n_predict = n_gen, .stop_at_eog = 1, .on_token = on_token, .cancel = on_cancel,
                                   .user = &ts, .constraint = cons, .draft = s->p.draft };
    /* thinking off: the thought channel cannot open (as the scheduler) */
    int32_t *ban = NULL;
    char berr[64];
    if (!thinking && gemma4c_tokenize(s->m, G4_MK_CHANNEL_OPEN, strlen(G4_MK_CHANNEL_OPEN), 0, 1, &ban, berr, sizeof berr) == 1) {
        gp.ban = ban;
        gp.n_ban = 1;
    }
    int fin = gemma4c_generate(s->c, s->s, &gp, err, errlen);
    free(ban);
    gemma4c_constraint_free(cons);
    /* the loop leaves the last token unevaluated; a later turn reuses it */
    if (fin == GEMMA4C_FINISH_LENGTH && !ts.cache_broken && s->n_cached > gemma4c_n_past(s->c) &&
        gemma4c_eval(s->c, &s->cached[s->n_cached - 1], 1, 0, err, errlen))
        fin = -1;
    if (s->n_cached > gemma4c_n_past(s->c)) s->n_cached = gemma4c_n_past(s->c);
    size_t len;
    const char *rest = gemma4c_detok_flush(ts.dt, &len);
    if (rest && len && gemma4c_chat_parser_feed(ts.parser, rest, len)) ts.failed = 1;
    if (!ts.failed && gemma4c_chat_parser_finish(ts.parser)) ts.failed = 1;
    if (ts.failed && fin >= 0) set_err(err, errlen, "out of memory");
    out->n_generated = ts.n_generated;
    out->finish = fin < 0 || ts.failed ? GEMMA4C_FINISH_ERROR : fin;
    if (out->finish != GEMMA4C_FINISH_ERROR) {
        out->message = gemma4c_chat_parser_message(ts.parser, 0);
        if (!out->message) {
            set_err(err, errlen, "cannot encode the answer (out of memory or invalid UTF-8)");
            out->finish = GEMMA4C_FINISH_ERROR;
        }
    }
    gemma4c_chat_parser_free(ts.parser);
    gemma4c_detok_free(ts.dt);
    return out->message ? 0 : -1;
}
