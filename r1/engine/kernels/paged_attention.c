/* Decode attention straight over the engine's paged KV cache (fp32, one query token per sequence).

   The torch path gathers every row's whole past out of the blocks (index_select of b x t cache
   entries per name and layer) and then runs SDPA over the copy; for small models that copy is a
   quarter of a decode step. This kernel reads each key and value where it lies.

   q      [b][H][d]        the step's queries
   k, v   [slots][KV][d]   cache storage; position p of a row lives in slot table[p / bs] * bs + p % bs
   table  [b][width]       each row's block ids
   lens   [b]              keys per row: positions 0 .. lens[i] - 1 (the row's past and its new token)
   out    [b][H][d]
   Query head h reads KV head h / (H / KV) (grouped-query attention in HF's repeat_kv order), so the
   H / KV query heads of a KV head share each key and value read.

   Per (row, KV head): pass 1 writes the scaled scores, a softmax turns them into weights, pass 2
   sums the weighted values. Each row is computed alone, so a row's result does not depend on the
   rest of the batch. The reference is r1.engine.paged_attention.paged_decode_attention_reference. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One sequence's rep query heads of KV head g against its n keys and values (copied into kbuf and
   vbuf, `row` floats a slot). Inlined into a copy per common head size, so that the dot products
   and the value sums run with d known at compile time (fully unrolled vector code, no remainder
   loop); other head sizes take the generic copy. */
static inline __attribute__((always_inline)) void attend_group(
    const float *qg, float *og, const float *kbuf, const float *vbuf, float *scores, float *inv, int64_t n,
    int64_t rep, int64_t row, int64_t g, const int64_t d, int64_t max_len, float scale)
{
    /* pass 1: scores[r][t] = scale * q_r . k_t */
    for (int64_t t = 0; t < n; t++) {
        const float *kt = kbuf + t * row + g * d;
        for (int64_t r = 0; r < rep; r++) {
            const float *qr = qg + r * d;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < d; j++) s += qr[j] * kt[j];
            scores[r * max_len + t] = s * scale;
        }
    }
    /* softmax over each query head's n scores */
    for (int64_t r = 0; r < rep; r++) {
        float *sr = scores + r * max_len;
        float mx = sr[0];
        for (int64_t t = 1; t < n; t++) mx = sr[t] > mx ? sr[t] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t t = 0; t < n; t++) {
            /* Below -80 the weight is under 2e-35 of the largest: it counts as 0. Clamping
               first keeps the vector expf off its slow path for out-of-range lanes, and
               the 0 keeps pass 2 off denormal arithmetic. */
            const float x = sr[t] - mx > -80.0f ? sr[t] - mx : -80.0f;
            const float e = expf(x);
            sr[t] = x > -80.0f ? e : 0.0f;
            sum += sr[t];
        }
        inv[r] = 1.0f / sum;
    }
    /* pass 2: out_r = sum_t p[r][t] v_t / sum */
    memset(og, 0, sizeof(float) * (size_t)(rep * d));
    for (int64_t t = 0; t < n; t++) {
        const float *vt = vbuf + t * row + g * d;
        for (int64_t r = 0; r < rep; r++) {
            const float p = scores[r * max_len + t];
            float *orow = og + r * d;
#pragma omp simd
            for (int64_t j = 0; j < d; j++) orow[j] += p * vt[j];
        }
    }
    for (int64_t r = 0; r < rep; r++)
        for (int64_t j = 0; j < d; j++) og[r * d + j] *= inv[r];
}

int paged_decode_attention(const float *q, const float *k, const float *v, const int64_t *table,
                           const int64_t *lens, float *out, int64_t b, int64_t H, int64_t KV, int64_t d,
                           int64_t width, int64_t bs, float scale)
{
    const int64_t rep = H / KV, row = KV * d;  /* row: floats per cache slot */
    int64_t max_len = 0;
    for (int64_t i = 0; i < b; i++)
        if (lens[i] > max_len) max_len = lens[i];
    /* scratch: scores [rep][max_len], 1/sum [rep], and one sequence's keys and values [max_len][KV][d] */
    float *scores = malloc(sizeof(float) * (size_t)(rep * max_len + rep + 2 * max_len * row));
    if (!scores) return 1;
    float *inv = scores + rep * max_len, *kbuf = inv + rep, *vbuf = kbuf + max_len * row;
    /* which block, and how many of its slots, each block position of kbuf/vbuf holds now */
    int64_t *held = malloc(sizeof(int64_t) * (size_t)(2 * width));
    if (!held) {
        free(scores);
        return 1;
    }
    int64_t *held_n = held + width;
    for (int64_t j = 0; j < width; j++) held[j] = -1, held_n[j] = 0;
    for (int64_t i = 0; i < b; i++) {
        const int64_t n = lens[i];
        const int64_t *blocks = table + i * width;
        /* Copy the sequence's past out of its blocks first, a block (bs slots, one contiguous run)
           per memcpy: streaming copies keep many cache misses in flight, where computing straight
           off the blocks waited on each one (inside a decode step, with the cache cold, that ran
           at half this speed). The copy stays in L2 for both passes. A block the previous row
           had at the same position -- a shared prompt block (prefix caching; GRPO's G samples
           of a prompt) -- is still there and is not copied again. */
        for (int64_t t0 = 0; t0 < n; t0 += bs) {
            const int64_t j = t0 / bs, m = n - t0 < bs ? n - t0 : bs;
            if (held[j] == blocks[j] && held_n[j] >= m) continue;
            const size_t off = (size_t)(blocks[j] * bs * row), len = sizeof(float) * (size_t)(m * row);
            memcpy(kbuf + t0 * row, k + off, len);
            memcpy(vbuf + t0 * row, v + off, len);
            held[j] = blocks[j], held_n[j] = m;
        }
        for (int64_t g = 0; g < KV; g++) {
            const float *qg = q + (i * H + g * rep) * d;  /* the rep query heads of KV head g */
            float *og = out + (i * H + g * rep) * d;
            switch (d) {
            case 32: attend_group(qg, og, kbuf, vbuf, scores, inv, n, rep, row, g, 32, max_len, scale); break;
            case 64: attend_group(qg, og, kbuf, vbuf, scores, inv, n, rep, row, g, 64, max_len, scale); break;
            case 128: attend_group(qg, og, kbuf, vbuf, scores, inv, n, rep, row, g, 128, max_len, scale); break;
            default: attend_group(qg, og, kbuf, vbuf, scores, inv, n, rep, row, g, d, max_len, scale);
            }
        }
    }
    free(held);
    free(scores);
    return 0;
}
