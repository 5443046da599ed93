/* Gemma 4 control strings and their fixed token ids: the one list the
 * tokenizer, chat renderer, output parser, HF reader and synthetic writer
 * share. Strings are macros so they concatenate with literal text
 * (G4_MK_TURN_OPEN "model\n"). Spec: shared/docs/gemma4-chat-format.md §1,
 * shared/docs/gemma4-text.md §4.2-4.3. (The test tokenizer in
 * shared/testdata/tokenizer is Gemma 3's: its strings at these ids differ.) */
#ifndef G4_ARCH_MARKERS_H
#define G4_ARCH_MARKERS_H

#include <stddef.h>
#include <stdint.h>

#define G4_MK_PAD "<pad>"
#define G4_MK_EOS "<eos>"
#define G4_MK_BOS "<bos>"
#define G4_MK_UNK "<unk>"
#define G4_MK_MASK "<mask>"
#define G4_MK_TOOL_OPEN "<|tool>"              /* tool declaration */
#define G4_MK_TOOL_CLOSE "<tool|>"
#define G4_MK_CALL_OPEN "<|tool_call>"         /* tool call by the model */
#define G4_MK_CALL_CLOSE "<tool_call|>"
#define G4_MK_RESPONSE_OPEN "<|tool_response>" /* tool result; the model stops at it */
#define G4_MK_RESPONSE_CLOSE "<tool_response|>"
#define G4_MK_QUOTE "<|\"|>"                   /* string delimiter in tool syntax */
#define G4_MK_QUOTE_LEN 5
#define G4_MK_THINK "<|think|>"                /* thinking on, top of the system turn */
#define G4_MK_CHANNEL_OPEN "<|channel>"        /* thought channel */
#define G4_MK_CHANNEL_CLOSE "<channel|>"
#define G4_MK_TURN_OPEN "<|turn>"              /* followed by the role and "\n" */
#define G4_MK_TURN_CLOSE "<turn|>"
#define G4_MK_IMAGE_OPEN "<|image>"
#define G4_MK_AUDIO_OPEN "<|audio>"
#define G4_MK_IMAGE "<|image|>"                /* soft-token placeholders */
#define G4_MK_AUDIO "<|audio|>"
#define G4_MK_VIDEO "<|video|>"
#define G4_MK_IMAGE_CLOSE "<image|>"
#define G4_MK_AUDIO_CLOSE "<audio|>"

/* Fixed ids in the real 262,144-entry vocabulary. */
enum {
    G4_ID_PAD = 0, G4_ID_EOS = 1, G4_ID_BOS = 2, G4_ID_UNK = 3, G4_ID_MASK = 4,
    G4_ID_TOOL_OPEN = 46, G4_ID_TOOL_CLOSE = 47, G4_ID_CALL_OPEN = 48, G4_ID_CALL_CLOSE = 49,
    G4_ID_RESPONSE_OPEN = 50, G4_ID_RESPONSE_CLOSE = 51, G4_ID_QUOTE = 52, G4_ID_THINK = 98,
    G4_ID_CHANNEL_OPEN = 100, G4_ID_CHANNEL_CLOSE = 101, G4_ID_TURN_OPEN = 105, G4_ID_TURN_CLOSE = 106,
    G4_ID_NL = 107, G4_ID_NL2 = 108, G4_ID_NL3 = 109,
    G4_ID_IMAGE_OPEN = 255999, G4_ID_AUDIO_OPEN = 256000, G4_ID_IMAGE = 258880, G4_ID_AUDIO = 258881,
    G4_ID_IMAGE_CLOSE = 258882, G4_ID_AUDIO_CLOSE = 258883, G4_ID_VIDEO = 258884,
};

/* Token types as llama.cpp numbers them (tokenizer.ggml.token_type). */
enum { G4_TT_NORMAL = 1, G4_TT_UNKNOWN = 2, G4_TT_CONTROL = 3, G4_TT_USER_DEFINED = 4, G4_TT_UNUSED = 5,
       G4_TT_BYTE = 6 };

enum {
    G4_MKF_EOG = 1,       /* ends generation (llama.cpp's EOG set) */
    G4_MKF_RENDERED = 2,  /* USER_DEFINED in converted GGUFs: decoded as text */
};

typedef struct g4_marker {
    int32_t id;
    const char *s;
    uint8_t type;         /* G4_TT_* in a converted GGUF */
    uint8_t flags;        /* G4_MKF_* */
} g4_marker;

/* Every fixed-id token above, by id (newline tokens included: their ids are
 * fixed too); g4_n_markers entries. */
extern const g4_marker g4_markers[];
extern const size_t g4_n_markers;

#endif
