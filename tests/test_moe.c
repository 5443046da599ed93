/* Mixture-of-experts products (ops/ops.h g4_op_moe_experts) on synthetic
 * quantized experts shaped like 26B-A4B's (fused Q4_K gate|up, Q8_0 down on
 * a 32-multiple width; split Q4_0 gate and up), and the per-job token count
 * of g4_matmul_multi the grouped path runs on.
 *
 * - exact path: the batch (tokens grouped per expert, chunked) equals every
 *   token alone, and a plain reference (dot_f32, exact GEGLU, ascending-id
 *   sum) bit for bit;
 * - fast path: the batch equals every token alone within the kernels' own
 *   rounding (bound below), and 1 vs 2 threads bit for bit. */
#include "harness.h"

#include <stdint.h>

#include "ops/ops.h"
#include "tensor/act.h"
#include "tensor/matmul.h"
#include "tensor/pool.h"
#include "tensor/types.h"

enum { E = 12, K = 4, H = 512, FE = 160, T = 40 };

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {   /* uniform [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

/* n_mat matrices of [n_out][n_in] random weights stored as `type`. */
static g4_mat make_mat(int type, int64_t n_in, int64_t n_out, int64_t n_mat, float scale) {
    g4_mat m = { .type = type, .n_in = n_in, .n_out = n_out, .n_mat = n_mat, .row_bytes = g4_row_size(type, n_in) };
    uint8_t *d = malloc(m.row_bytes * (size_t)(n_out * n_mat));
    float *row = malloc((size_t)n_in * sizeof(float));
    for (int64_t r = 0; r < n_out * n_mat; r++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = frand() * scale;
        g4_type_info(type)->from_float(row, d + (size_t)r * m.row_bytes, n_in);
    }
    free(row);
    m.data = d;
    return m;
}

typedef struct fixture {
    g4_mat gate_up, gate, up, down;
    float x[T * H];
    int sel[T * K];
    float w[T * E];
} fixture;

/* Routing with every case the chunking meets: expert 3 chosen by every
 * token (a group of T rows: a chunk of its own), expert 7 by none, the rest
 * at random; K distinct experts per token. */
static void make_fixture(fixture *f) {
    f->gate_up = make_mat(G4_Q4_K, H, 2 * FE, E, 0.05f);
    f->gate = make_mat(G4_Q4_0, H, FE, E, 0.05f);
    f->up = make_mat(G4_Q4_0, H, FE, E, 0.05f);
    f->down = make_mat(G4_Q8_0, FE, H, E, 0.05f);
    for (int i = 0; i < T * H; i++) f->x[i] = frand();
    memset(f->w, 0, sizeof f->w);
    for (int t = 0; t < T; t++) {
        int *s = f->sel + t * K;
        s[0] = 3;
        for (int k = 1; k < K; k++) {
            int e, dup;
            do {
                e = (int)((frand() + 1.0f) * 0.5f * E) % E;
                dup = e == 7;
                for (int j = 0; j < k; j++) dup |= s[j] == e;
            } while (dup);
            s[k] = e;
        }
        for (int k = 0; k < K; k++) f->w[t * E + s[k]] = 0.1f + (frand() + 1.0f) * 0.4f;
    }
}

static void free_fixture(fixture *f) {
    free((void *)f->gate_up.data);
    free((void *)f->gate.data);
    free((void *)f->up.data);
    free((void *)f->down.data);
}

typedef struct bufs {
    float in[T * H], out[T * H], ff_a[T * 2 * FE], ff_b[T * 2 * FE], acc[T * H];
    int rows[T];
} bufs;

static g4_exec make_exec(g4_pool *p, int precision, size_t act_bytes) {
    g4_exec ex = { .pool = p, .n_threads = g4_pool_size(p), .precision = precision };
    ex.mm.act = malloc(act_bytes);
    ex.mm.act_bytes = act_bytes;
    return ex;
}

/* out [n][H] for tokens [t0, t0 + n) of the fixture, in one call. */
static int g_cap;   /* the scratch's row capacity passed to the op (0: n) */

static void run_experts(g4_exec *ex, const fixture *f, int fused, int t0, int n, bufs *b, float *out) {
    g4_moe_weights mw = { .gate_up = fused ? &f->gate_up : NULL, .gate = &f->gate, .up = &f->up,
                          .down = &f->down, .E = E, .K = K, .Fe = FE };
    g4_moe_scratch sc = { .in = b->in, .out = b->out, .ff_a = b->ff_a, .ff_b = b->ff_b, .rows = b->rows,
                          .cap = g_cap };
    g4_op_moe_experts(ex, &mw, f->x + (size_t)t0 * H, n, H, f->sel + (size_t)t0 * K, f->w + (size_t)t0 * E, &sc,
                      out);
}

static void run_alone(g4_exec *ex, const fixture *f, int fused, bufs *b, float *out) {
    for (int t = 0; t < T; t++) run_experts(ex, f, fused, t, 1, b, out + (size_t)t * H);
}

/* The spec's sum with the exact path's arithmetic. */
static float h_max;   /* largest GEGLU output the reference met */

static void reference(const fixture *f, int fused, float *out) {
    float gu[2 * FE], h[FE];
    h_max = 0;
    memset(out, 0, sizeof(float) * T * H);
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++) {
            float wt = f->w[t * E + e];
            if (wt == 0) continue;
            const float *x = f->x + (size_t)t * H;
            for (int o = 0; o < 2 * FE; o++) {
                const g4_mat *m = fused ? &f->gate_up : o < FE ? &f->gate : &f->up;
                int r = fused ? o : o % FE;
                gu[o] = g4_type_info(m->type)->dot_f32(g4_mat_row(m, e, r), x, H);
            }
            g4_geglu(h, gu, gu + FE, FE, 1);
            for (int i = 0; i < FE; i++) if (fabsf(h[i]) > h_max) h_max = fabsf(h[i]);
            for (int o = 0; o < H; o++)
                out[(size_t)t * H + o] += wt * g4_type_info(f->down.type)->dot_f32(g4_mat_row(&f->down, e, o), h, FE);
        }
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static fixture F;
static bufs B;
static float out_batch[T * H], out_alone[T * H], out_ref[T * H];

TEST(exact_batch_equals_alone_and_reference) {
    g4_pool *p = g4_pool_new(2);
    g4_exec ex = make_exec(p, 1, (size_t)T * H * 4 + 4096);
    for (int fused = 0; fused < 2; fused++) {
        run_experts(&ex, &F, fused, 0, T, &B, out_batch);
        run_alone(&ex, &F, fused, &B, out_alone);
        reference(&F, fused, out_ref);
        CHECKF(!memcmp(out_batch, out_alone, sizeof out_batch), "fused %d: batch vs alone %g", fused,
               max_diff(out_batch, out_alone, T * H));
        CHECKF(!memcmp(out_batch, out_ref, sizeof out_batch), "fused %d: batch vs reference %g", fused,
               max_diff(out_batch, out_ref, T * H));
    }
    free(ex.mm.act);
    g4_pool_free(p);
}

/* Fast path bound. Both ways quantize each token's row with the same
 * from_float (identical bytes), and integer block dots are exact; what can
 * differ is the order the f32 block partials are summed in (tile kernel vs
 * the decode kernel): relative error ~ n_blocks * 2^-24 per product, ~1e-6
 * here. That difference in a GEGLU output can flip the rounding of the
 * element when the down input is quantized to Q8_0: one step, at most
 * h_max / 127, times |w_down| <= 0.05 (Q8_0 of uniform +-0.05) times the
 * routing weight (<= 0.9), in every output of that token. A flip needs a
 * ~1e-6 change to cross a rounding boundary 1/127 wide: ~1e-4 per element,
 * ~6% per token here. Bound: two flips in one token, 2 0.9 0.05 h_max / 127
 * (~7e-4, half the fast path's distance to the exact one), plus 1e-5
 * max|out| for the sums. Measured: fused Q4_K 0 (same kernels), split Q4_0
 * 9.8e-5 (one flip). */
TEST(fast_batch_near_alone) {
    g4_pool *p = g4_pool_new(2);
    g4_exec ex = make_exec(p, 0, (size_t)T * H * 4 + 4096);
    for (int fused = 0; fused < 2; fused++) {
        run_experts(&ex, &F, fused, 0, T, &B, out_batch);
        run_alone(&ex, &F, fused, &B, out_alone);
        reference(&F, fused, out_ref);
        double m = max_abs(out_alone, T * H), d = max_diff(out_batch, out_alone, T * H);
        printf("  fused %d: max|out| %.4g, batch vs alone %.3g (bound %.3g), fast vs exact %.3g\n", fused, m, d,
               2.0 * 0.9 * 0.05 * h_max / 127 + 1e-5 * m, max_diff(out_batch, out_ref, T * H));
        double bound = 2.0 * 0.9 * 0.05 * h_max / 127 + 1e-5 * m;
        CHECK(m > 0.01);
        CHECKF(d <= bound, "fused %d: %g > bound %g", fused, d, bound);
    }
    free(ex.mm.act);
    g4_pool_free(p);
}

/* Which thread computes a row never changes its value; a scratch too small
 * for a chunk's quantized groups (one product per section) changes nothing;
 * how the experts are chunked (batch rows, or a larger scratch) neither. */
TEST(fast_threads_scratch_and_chunks_bitwise) {
    g4_pool *p1 = g4_pool_new(1), *p2 = g4_pool_new(2);
    g4_exec e1 = make_exec(p1, 0, (size_t)T * H * 4 + 4096);
    g4_exec e2 = make_exec(p2, 0, (size_t)T * H * 4 + 4096);
    g4_exec es = make_exec(p2, 0, g4_row_size(G4_Q8_K, H) * T);   /* one job's group at most */
    static float o1[T * H], o2[T * H], os[T * H], oc[T * H];
    for (int fused = 0; fused < 2; fused++) {
        run_experts(&e1, &F, fused, 0, T, &B, o1);
        run_experts(&e2, &F, fused, 0, T, &B, o2);
        run_experts(&es, &F, fused, 0, T, &B, os);
        CHECKF(!memcmp(o1, o2, sizeof o1), "fused %d: 1 vs 2 threads %g", fused, max_diff(o1, o2, T * H));
        CHECKF(!memcmp(o2, os, sizeof o1), "fused %d: small scratch %g", fused, max_diff(o2, os, T * H));
        /* 8-token batches: the group sizes change, so compare with the bound */
        for (int t0 = 0; t0 < T; t0 += 8) run_experts(&e2, &F, fused, t0, 8, &B, oc + (size_t)t0 * H);
        /* the same batches in one T-row chunk where they fit: same groups,
         * fewer sections, same bits */
        static float ocap[T * H];
        g_cap = T;
        for (int t0 = 0; t0 < T; t0 += 8) run_experts(&e2, &F, fused, t0, 8, &B, ocap + (size_t)t0 * H);
        g_cap = 0;
        CHECKF(!memcmp(oc, ocap, sizeof oc), "fused %d: cap %d vs 8 %g", fused, T, max_diff(oc, ocap, T * H));
        reference(&F, fused, out_ref);   /* sets h_max */
        double bound = 2.0 * 0.9 * 0.05 * h_max / 127 + 1e-5 * max_abs(o2, T * H);
        CHECKF(max_diff(o2, oc, T * H) <= bound, "fused %d: 8-token batches %g > %g", fused, max_diff(o2, oc, T * H),
               bound);
    }
    free(e1.mm.act);
    free(e2.mm.act);
    free(es.mm.act);
    g4_pool_free(p1);
    g4_pool_free(p2);
}

/* g4_matmul_multi with per-job row counts equals each job on its own. */
TEST(matmul_multi_per_job_rows) {
    g4_pool *p = g4_pool_new(2);
    for (int prec = 0; prec < 2; prec++) {
        g4_exec ex = make_exec(p, prec, (size_t)T * H * 4 + 4096);
        static float y[3][T * 2 * FE], z[3][T * 2 * FE];
        static const int nt[3] = { 3, 17, 40 };
        g4_mm_job jobs[3];
        for (int j = 0; j < 3; j++)
            jobs[j] = (g4_mm_job){ .w = &F.gate_up, .mat = j + 1, .x = F.x + (size_t)j * H, .T = nt[j] - j,
                                   .y = y[j], .ldy = 2 * FE };
        g4_matmul_multi(p, jobs, 3, F.x, H, T, prec, &ex.mm);
        for (int j = 0; j < 3; j++) {
            g4_matmul(p, &F.gate_up, j + 1, F.x + (size_t)j * H, H, nt[j] - j, z[j], 2 * FE, prec, &ex.mm);
            size_t n = (size_t)(nt[j] - j) * 2 * FE;
            CHECKF(!memcmp(y[j], z[j], n * sizeof(float)), "precision %d job %d: %g", prec, j,
                   max_diff(y[j], z[j], n));
        }
        free(ex.mm.act);
    }
    g4_pool_free(p);
}

int main(void) {
    g4_act_init();
    make_fixture(&F);
    RUN(exact_batch_equals_alone_and_reference);
    RUN(fast_batch_near_alone);
    RUN(fast_threads_scratch_and_chunks_bitwise);
    RUN(matmul_multi_per_job_rows);
    free_fixture(&F);
    return test_summary();
}
