/* Constrained decoding: a JSON Schema (or a set of tools) compiled to a
 * pushdown automaton over output bytes plus a few atomic symbols (the
 * Gemma 4 control tokens), and a token mask computed from it.
 *
 *   schema.c     JSON Schema / OpenAI tools -> g4_grammar (nodes by index,
 *                so recursive $ref is just a cycle in the graph)
 *   automaton.c  g4_astate: a small set of stacks ("threads"; anyOf forks,
 *                identical threads merge) stepped one symbol at a time
 *   mask.c       g4_tindex: a byte trie of every token's text, built once
 *                per tokenizer and shared read-only; the mask walks it from
 *                the current state and skips every subtree the automaton
 *                rejects at its first byte
 *
 * Two value syntaxes: JSON (answers) and Gemma 4's call syntax (tool
 * arguments: bare keys, strings between <|"|> tokens, no whitespace). */
#ifndef G4_CONSTRAIN_H
#define G4_CONSTRAIN_H

#include <stddef.h>
#include <stdint.h>

struct g4_tokenizer;

/* Symbols: bytes 0..255, then the control tokens the grammar needs. */
enum {
    G4_SYM_QUOTE = 256,   /* <|"|> */
    G4_SYM_CALL_OPEN,     /* <|tool_call> */
    G4_SYM_CALL_CLOSE,    /* <tool_call|> */
    G4_SYM_CH_OPEN,       /* <|channel> */
    G4_SYM_CH_CLOSE,      /* <channel|> */
    G4_SYM_END,           /* <eos>, <turn|>, <|tool_response>: end of generation */
    G4_NSYM
};

/* ---- compiled schema --------------------------------------------------- */

enum { G4_T_NULL = 1, G4_T_BOOL = 2, G4_T_INT = 4, G4_T_NUM = 8, G4_T_STR = 16, G4_T_ARR = 32, G4_T_OBJ = 64,
       G4_T_ANY = 127 };

/* Most nesting (objects + arrays) a value may have; the automaton's stack
 * is bounded by it. */
#define G4_CMAX_DEPTH 32
#define G4_CMAX_PROPS 64      /* per object: a bit each in the frame */
#define G4_CMAX_NODES 100000
#define G4_CMAX_LITS 100000   /* enum entries, property names, tool names in all */

typedef struct g4_cnode {
    uint8_t types;          /* G4_T_*; 0 for a pure anyOf node */
    int32_t lits;           /* enum/const: literal set index, else -1 */
    int32_t min_len, max_len;       /* string, in code points; max -1 = none */
    int32_t items;                  /* array item node */
    int32_t min_items, max_items;   /* max -1 = none */
    int32_t props;          /* object: literal set of "key": (JSON) / key: (Gemma), or -1 */
    int32_t addl;           /* object: node of free keys' values, -1 = no free keys */
    int32_t any_first, n_any;       /* anyOf: indexes into g4_grammar.anys */
    int32_t mindepth;       /* least nesting a value needs; > G4_CMAX_DEPTH: none is finite */
    uint64_t req;           /* object: bits of the required properties */
} g4_cnode;

/* A sorted set of symbol strings (enum values, property keys, tool names):
 * the strings sharing a prefix form one index range, so a literal frame is
 * just (range, position). */
typedef struct g4_litset {
    int32_t n;
    int32_t first;          /* into g4_grammar.lit_off/lit_len/lit_val/lit_bit */
} g4_litset;

enum { G4_CHOICE_AUTO = 0, G4_CHOICE_REQUIRED, G4_CHOICE_NONE, G4_CHOICE_NAMED };

typedef struct g4_grammar {
    int gemma;              /* value syntax: 0 JSON, 1 Gemma 4 call arguments */
    int tools;              /* 1: tool-call mode, else a JSON answer */
    int choice, named;      /* tools: G4_CHOICE_*, the named tool's index */
    int thinking;           /* 0 no thought block, 1 optional leading one, 2 starts inside one */
    int32_t root;           /* JSON: the answer's node */
    g4_cnode *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *anys;
    int32_t n_anys, cap_anys;
    g4_litset *sets;
    int32_t n_sets, cap_sets;
    /* literal strings, all sets: symbols in syms[lit_off[i] ..+ lit_len[i]] */
    uint16_t *syms;
    int64_t n_syms, cap_syms;
    int64_t *lit_off;
    int32_t *lit_len, *lit_val, *lit_bit;   /* value node (keys, tools), bit (keys), required flag */
    uint8_t *lit_req;
    int32_t n_lits, cap_lits;
    int32_t tool_set;       /* tools: set of "NAME{" strings; lit_val = the tool's argument node */
    char **tool_names;      /* tools: declared names (for the output parser) */
    int32_t n_tools;
} g4_grammar;

/* Compile. schema: JSON text, NULL = any JSON object ("json_object" mode).
 * tools: OpenAI tools array text; choice: "auto", "required", "none", a
 * function name or {"type":"function","function":{"name":...}}. Errors name
 * the offending field as a JSON pointer. */
g4_grammar *g4_grammar_json(const char *schema, size_t len, int thinking, char *err, size_t errlen);
g4_grammar *g4_grammar_tools(const char *tools, size_t len, const char *choice, int thinking, char *err,
                             size_t errlen);
void g4_grammar_free(g4_grammar *g);

/* ---- automaton ------------------------------------------------------------ */

typedef struct g4_frame {
    uint8_t kind, st;
    uint8_t u8;             /* UTF-8 continuation bytes still due */
    uint8_t mk;             /* bytes of a control-marker text matched so far */
    uint16_t mkset;         /* markers still matching */
    uint16_t aux;           /* UTF-8 next-byte range (lo | hi << 8) / escape state */
    int32_t node;           /* schema node, literal set, ... */
    int32_t a, b;           /* literal range / counts */
    int32_t pos;            /* literal position / key index / digits */
    uint64_t seen;          /* object: properties written */
} g4_frame;

#define G4_MAXF (2 * G4_CMAX_DEPTH + 8)
#define G4_MAXT 8           /* threads (live anyOf alternatives) kept */

typedef struct g4_astate {
    int nt, nf;
    uint16_t off[G4_MAXT + 1];
    g4_frame f[G4_MAXT * G4_MAXF];
} g4_astate;

void g4_astate_init(const g4_grammar *g, g4_astate *s);
/* out = s after symbol; returns out->nt (0: symbol not allowed). out != s. */
int g4_astate_step(const g4_grammar *g, const g4_astate *s, int sym, g4_astate *out);
/* Copy only the used part. */
void g4_astate_copy(g4_astate *dst, const g4_astate *src);
/* The string-body fast path applies: one thread, its top frame inside a
 * string or free text at a character boundary with no marker prefix
 * pending (a pending one only makes the tokens starting with a byte of
 * risky[] need an exact check). Returns 0 (no), 1 (JSON string), 2 (raw text: Gemma string,
 * content, thought); *room = code points it may still take (-1: any). */
int g4_astate_plain(const g4_grammar *g, const g4_astate *s, int32_t *room, uint8_t risky[32]);
/* The same test for thread t alone (any number of threads); also 3 for a
 * bare Gemma key (room: bytes of [A-Za-z0-9_-] it may still take). */
int g4_athread_plain(const g4_grammar *g, const g4_astate *s, int t, int32_t *room, uint8_t risky[32]);
/* The value (or the tool-call turn) is complete: G4_SYM_END is allowed. */
int g4_astate_done(const g4_grammar *g, const g4_astate *s);

/* Marker texts in p[0..n): -1 if one is spelled out, else the length of
 * a marker prefix left pending at the end (0: none). */
int g4_marker_scan(const uint8_t *p, int n);

/* ---- token index and mask ------------------------------------------------ */

typedef struct g4_tindex g4_tindex;
g4_tindex *g4_tindex_new(const struct g4_tokenizer *t, char *err, size_t errlen);
void g4_tindex_free(g4_tindex *x);
int32_t g4_tindex_n_vocab(const g4_tindex *x);
/* Symbol of token id (0..255 never: text tokens give -1), G4_SYM_* or -1. */
int g4_tindex_sym(const g4_tindex *x, int32_t id);
/* Whether the vocabulary has a token for sym. */
int g4_tindex_has_sym(const g4_tindex *x, int sym);
/* Text bytes of a text token (NULL for symbols and forbidden tokens). */
const uint8_t *g4_tindex_text(const g4_tindex *x, int32_t id, int *len);

/* Scratch of one constraint's mask walk (the per-depth states). */
typedef struct g4_mask_scratch g4_mask_scratch;
g4_mask_scratch *g4_mask_scratch_new(const g4_tindex *x);
void g4_mask_scratch_free(g4_mask_scratch *m);
/* allowed[id] = 1 for tokens whose text/symbol keeps s a valid prefix;
 * returns the count. */
int g4_mask_compute(const g4_tindex *x, const g4_grammar *g, const g4_astate *s, g4_mask_scratch *m,
                    uint8_t *allowed);
/* Step s over token id into out; 0 if it is not allowed. */
int g4_mask_step_token(const g4_tindex *x, const g4_grammar *g, const g4_astate *s, int32_t id, g4_astate *out,
                       g4_mask_scratch *m);

#endif
