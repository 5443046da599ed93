/* The exact matmul path over many tokens (tensor/matmul.c: rows decoded
 * once, 8 tokens in vector lanes) must give, bit for bit, what dot_f32 gives
 * per (row, token): that is what keeps "a token batched with others equals
 * that token alone" and the gradient tests' references. Every quantized
 * type, token counts around the 8-lane groups, 1 and 2 threads, with and
 * without a scratch big enough for the re-laid-out input. */
#include "harness.h"

#include "tensor/matmul.h"
#include "tensor/pool.h"
#include "tensor/types.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

TEST(exact_matmul_equals_dot_f32) {
    const int types[] = { G4_Q4_0, G4_Q4_1, G4_Q5_0, G4_Q5_1, G4_Q8_0, G4_Q2_K, G4_Q3_K, G4_Q4_K,
                          G4_Q5_K, G4_Q6_K, G4_IQ4_NL, G4_IQ4_XS, G4_F32 };
    const int Ts[] = { 1, 7, 8, 9, 21, 64 };
    const int64_t n = 512, n_out = 13;
    uint64_t seed = 7;
    float *wf = malloc((size_t)(n * n_out) * sizeof(float));
    float *x = malloc((size_t)(64 * (n + 3)) * sizeof(float));
    float *y = malloc((size_t)(64 * 20) * sizeof(float));
    size_t act_bytes = (size_t)(72 * n + 2 * 4 * n) * sizeof(float);
    g4_mm_scratch big = { .act = malloc(act_bytes), .act_bytes = act_bytes }, none = { .act = NULL };
    CHECK(wf && x && y && big.act);
    if (!wf || !x || !y || !big.act) return;
    for (int64_t i = 0; i < n * n_out; i++) wf[i] = frand(&seed);
    for (int64_t i = 0; i < 64 * (n + 3); i++) x[i] = frand(&seed);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const g4_type_traits *tt = g4_type_info(types[ti]);
        size_t rb = g4_row_size(types[ti], n);
        uint8_t *wq = malloc(rb * (size_t)n_out);
        CHECK(wq != NULL);
        if (!wq) continue;
        for (int64_t o = 0; o < n_out; o++) tt->from_float(wf + o * n, wq + (size_t)o * rb, n);
        g4_mat w = { .data = wq, .type = types[ti], .n_in = n, .n_out = n_out, .n_mat = 1, .row_bytes = rb };
        int bad = 0;
        for (int nth = 1; nth <= 2; nth++) {
            g4_pool *pool = g4_pool_acquire(nth);
            for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++)
                for (int sc = 0; sc < 2; sc++) {
                    int T = Ts[k];
                    /* x rows of stride n + 3, y rows of stride 20: strides are honoured */
                    memset(y, 0, (size_t)(64 * 20) * sizeof(float));
                    g4_matmul(pool, &w, 0, x, n + 3, T, y, 20, 1, sc ? &big : &none);
                    for (int t = 0; t < T; t++)
                        for (int64_t o = 0; o < n_out; o++) {
                            float ref = tt->dot_f32(wq + (size_t)o * rb, x + (size_t)t * (size_t)(n + 3), n);
                            if (memcmp(&ref, &y[t * 20 + o], sizeof ref)) bad++;
                        }
                }
            g4_pool_release(pool);
        }
        CHECKF(bad == 0, "%s: %d results differ from dot_f32", tt->name, bad);
        free(wq);
    }
    free(wf);
    free(x);
    free(y);
    free(big.act);
}

int main(void) {
    RUN(exact_matmul_equals_dot_f32);
    return test_summary();
}
