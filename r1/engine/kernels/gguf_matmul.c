/* Matrix products straight from GGUF's quantized blocks, as llama.cpp computes them.

   y[m][n] = sum_k x[m][k] * W[n][k] for a weight W of N rows, each row `row_bytes` bytes of
   ggml blocks of one type, read where they lie (a memory-mapped file): nothing is converted at
   load. The activations are quantized per call to int8 in blocks of 32 (scale = max|x| / 127),
   as llama.cpp's Q8_0/Q8_K do, so the inner product is an int8 dot product; the price is that
   rounding, ~0.5% of a block's largest activation, which the tests bound against the float
   reference (gguf's dequantization, F.linear).

   Every block type is first unpacked, one weight row at a time, into a common form that one dot
   product kernel serves: unsigned 8-bit codes u[k] and, per 16 weights h, a float scale wd[h] and
   offset wm[h], with W[n][k] = wd[k/16] u[k] + wm[k/16]. With x ~ xd[b] q (q int8, b = k/32):

       sum_k W x ~= sum_h wd[h] xd[h/2] sum_(k in h) u_k q_k  +  sum_h wm[h] xs[h],
       xs[h] = xd[h/2] sum_(k in h) q_k

   The integer sums are dpbusd's (AVX512-VNNI / AVX-VNNI: unsigned x signed bytes, four to an
   int32 lane, so a lane never straddles two 16-weight groups), or AVX2's maddubs + madd where
   there is no VNNI. The unpacked row (K bytes) stays in L1 while it is dotted against every
   activation row, so a batch of M rows reads the weight from memory once. On AVX512-VNNI CPUs the
   types people download most (Q4_K, Q6_K: Q4_K_M files; Q8_0; Q4_0 repacked into planes) skip the
   unpacking and compute straight from their blocks (gguf_vnni512.h).

   type    block  bytes  layout (ggml-quants.c)                            u            wd       wm
   Q4_0    32     18     f16 d, 16 nibble bytes (lo: 0-15, hi: 16-31)        q            d        -8 d
   Q4_1    32     20     f16 d, f16 m, 16 nibble bytes                     q            d        m
   Q8_0    32     34     f16 d, 32 int8                                     q + 128      d        -128 d
   Q4_K    256    144    f16 d, f16 dmin, 12 bytes of 6-bit (sc, m) x 8,   q            d sc     -dmin m
                         128 nibble bytes (64-weight chunks: lo then hi)
   Q5_K    256    176    as Q4_K plus 32 bytes of fifth bits (qh)           q            d sc     -dmin m
   Q6_K    256    210    128 bytes low nibbles, 64 bytes 2-bit highs,       q            d sc     -32 d sc
                         16 int8 scales sc (one per 16), f16 d

   The reference is r1.engine.gguf_linear (gguf's own dequantization, then a float matmul);
   tests/test_gguf_kernels.py holds them together. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__) || defined(__F16C__)
#include <immintrin.h>
#endif

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14 }; /* GGMLQuantizationType */

static inline float f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while (!(man & 1024)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 1023) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

static int block_of(int type, int *bytes)
{
    switch (type) {
    case T_Q4_0: *bytes = 18; return 32;
    case T_Q4_1: *bytes = 20; return 32;
    case T_Q8_0: *bytes = 34; return 32;
    case T_Q4_K: *bytes = 144; return 256;
    case T_Q5_K: *bytes = 176; return 256;
    case T_Q6_K: *bytes = 210; return 256;
    default: *bytes = 0; return 0;
    }
}

/* The 6-bit (scale, min) pair of sub-block j (0..7) of a K-quant super-block. */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* One weight row of K values -> u[K], wd[K/16], wm[K/16]. */
static void unpack_row(int type, const uint8_t *restrict row, int64_t K, uint8_t *restrict u, float *restrict wd,
                       float *restrict wm)
{
    if (type == T_Q4_0 || type == T_Q4_1) {
        const int bytes = type == T_Q4_0 ? 18 : 20, off = type == T_Q4_0 ? 2 : 4;
        for (int64_t b = 0; b < K / 32; b++) {
            const uint8_t *blk = row + b * bytes, *qs = blk + off;
            uint8_t *ub = u + 32 * b;
#ifdef __AVX2__
            const __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);
            _mm_storeu_si128((__m128i *)ub, _mm_and_si128(v, m4));
            _mm_storeu_si128((__m128i *)(ub + 16), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
#else
            for (int i = 0; i < 16; i++) {
                ub[i] = qs[i] & 15;
                ub[i + 16] = qs[i] >> 4;
            }
#endif
            const float d = f16(blk), m = type == T_Q4_0 ? -8.0f * d : f16(blk + 2);
            wd[2 * b] = wd[2 * b + 1] = d;
            wm[2 * b] = wm[2 * b + 1] = m;
        }
    } else if (type == T_Q8_0) {
        for (int64_t b = 0; b < K / 32; b++) {
            const uint8_t *blk = row + b * 34;
            uint8_t *ub = u + 32 * b;
            for (int i = 0; i < 32; i++) ub[i] = blk[2 + i] ^ 0x80; /* int8 q -> q + 128 */
            const float d = f16(blk);
            wd[2 * b] = wd[2 * b + 1] = d;
            wm[2 * b] = wm[2 * b + 1] = -128.0f * d;
        }
    } else if (type == T_Q4_K || type == T_Q5_K) {
        const int q5 = type == T_Q5_K, bytes = q5 ? 176 : 144;
        for (int64_t s = 0; s < K / 256; s++) {
            const uint8_t *blk = row + s * bytes, *scales = blk + 4;
            const uint8_t *qh = blk + 16, *qs = blk + (q5 ? 48 : 16);
            const float d = f16(blk), dmin = f16(blk + 2);
            for (int j = 0; j < 8; j++) { /* 32-weight sub-block j: chunk j / 2's low (even j) or high nibbles */
                const uint8_t *q = qs + 32 * (j / 2);
                const int shift = 4 * (j & 1);
                uint8_t *ub = u + 256 * s + 32 * j;
                for (int l = 0; l < 32; l++) ub[l] = (q[l] >> shift) & 15;
                if (q5)
                    for (int l = 0; l < 32; l++) ub[l] |= ((qh[l] >> j) & 1) << 4;
                int sc, m;
                scale_min_k4(j, scales, &sc, &m);
                const int64_t h = 16 * s + 2 * j;
                wd[h] = wd[h + 1] = d * (float)sc;
                wm[h] = wm[h + 1] = -dmin * (float)m;
            }
        }
    } else if (type == T_Q6_K) {
        for (int64_t s = 0; s < K / 256; s++) {
            const uint8_t *blk = row + s * 210, *ql = blk, *qh = blk + 128;
            const int8_t *sc = (const int8_t *)(blk + 192);
            const float d = f16(blk + 208);
            for (int n = 0; n < 2; n++) { /* two halves of 128 weights */
                const uint8_t *l0 = ql + 64 * n, *h0 = qh + 32 * n;
                uint8_t *u0 = u + 256 * s + 128 * n;
                for (int l = 0; l < 32; l++) {
                    u0[l] = (l0[l] & 15) | ((h0[l] & 3) << 4);
                    u0[l + 32] = (l0[l + 32] & 15) | (((h0[l] >> 2) & 3) << 4);
                    u0[l + 64] = (l0[l] >> 4) | (((h0[l] >> 4) & 3) << 4);
                    u0[l + 96] = (l0[l + 32] >> 4) | (((h0[l] >> 6) & 3) << 4);
                }
            }
            for (int h = 0; h < 16; h++) { /* weight 16 h + i of the super-block has scale sc[h] */
                wd[16 * s + h] = d * (float)sc[h];
                wm[16 * s + h] = -32.0f * d * (float)sc[h];
            }
        }
    }
}

/* x (K floats) -> q (K int8), xd[K/16] (its block's scale, per group of 16), xs[K/16] = xd * the
   16-sums of q. */
static void quantize_row(const float *restrict x, int64_t K, int8_t *restrict q, float *restrict xd,
                         float *restrict xs)
{
    for (int64_t b = 0; b < K / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int sum[2] = {0, 0};
        for (int i = 0; i < 32; i++) {
            const int v = (int)nearbyintf(xb[i] * id);
            q[32 * b + i] = (int8_t)v;
            sum[i / 16] += v;
        }
        xd[2 * b] = xd[2 * b + 1] = d;
        xs[2 * b] = d * (float)sum[0];
        xs[2 * b + 1] = d * (float)sum[1];
    }
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DPBUSD256(acc, u, a) _mm256_dpbusd_epi32(acc, u, a)
#elif defined(__AVXVNNI__)
#define DPBUSD256(acc, u, a) _mm256_dpbusd_avx_epi32(acc, u, a)
#endif

#ifdef __AVX2__
/* int32 lane i = sum of bytes 4i..4i+3 of u (unsigned) times a (signed). `wide`: u may exceed 127
   (Q8_0's q + 128), where maddubs's int16 pair sums could saturate, so widen to int16 first. */
static inline __m256i dot4(__m256i u, __m256i a, int wide)
{
#ifdef DPBUSD256
    (void)wide;
    return DPBUSD256(_mm256_setzero_si256(), u, a);
#else
    const __m256i ones = _mm256_set1_epi16(1);
    if (!wide) return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), ones);
    /* bytes 4i..4i+3 widened in place: lane order is kept by unpacking against zero/sign */
    const __m256i zero = _mm256_setzero_si256(), sa = _mm256_cmpgt_epi8(zero, a);
    const __m256i ulo = _mm256_unpacklo_epi8(u, zero), uhi = _mm256_unpackhi_epi8(u, zero);
    const __m256i alo = _mm256_unpacklo_epi8(a, sa), ahi = _mm256_unpackhi_epi8(a, sa);
    /* lo/hi hold bytes 0-7 / 8-15 of each 128-bit half; madd sums pairs, hadd the pairs of pairs */
    const __m256i plo = _mm256_madd_epi16(ulo, alo), phi = _mm256_madd_epi16(uhi, ahi);
    return _mm256_hadd_epi32(plo, phi); /* per 128-bit half: [bytes 0-3, 4-7, 8-11, 12-15] */
#endif
}
#endif

/* ls[h] = wd[h] xd[h] and the offset sum_h wm[h] xs[h] over nh groups of 16 (xd given per group). */
static inline float scales_and_offset(const float *restrict wd, const float *restrict wm, const float *restrict xd,
                                      const float *restrict xs, int64_t nh, float *restrict ls)
{
    int64_t h = 0;
    float off = 0.0f;
#ifdef __AVX512F__
    __m512 acc = _mm512_setzero_ps();
    for (; h + 16 <= nh; h += 16) {
        _mm512_storeu_ps(ls + h, _mm512_mul_ps(_mm512_loadu_ps(wd + h), _mm512_loadu_ps(xd + h)));
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(wm + h), _mm512_loadu_ps(xs + h), acc);
    }
    off += _mm512_reduce_add_ps(acc);
#endif
#ifdef __AVX2__
    __m256 acc8 = _mm256_setzero_ps();
    for (; h + 8 <= nh; h += 8) {
        _mm256_storeu_ps(ls + h, _mm256_mul_ps(_mm256_loadu_ps(wd + h), _mm256_loadu_ps(xd + h)));
        acc8 = _mm256_fmadd_ps(_mm256_loadu_ps(wm + h), _mm256_loadu_ps(xs + h), acc8);
    }
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc8), _mm256_extractf128_ps(acc8, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    off += _mm_cvtss_f32(r);
#endif
    for (; h < nh; h++) {
        ls[h] = wd[h] * xd[h];
        off += wm[h] * xs[h];
    }
    return off;
}

/* sum_h ls[h] <u, q>_h over K/32 blocks. */
static float dot_row(const uint8_t *restrict u, const float *restrict ls, const int8_t *restrict q, int64_t nb,
                     int wide)
{
    int64_t b = 0;
    float total = 0.0f;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    {
        __m512 acc = _mm512_setzero_ps();
        const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        for (; b + 2 <= nb; b += 2) {
            const __m512i w = _mm512_loadu_si512((const void *)(u + 32 * b));
            const __m512i a = _mm512_loadu_si512((const void *)(q + 32 * b));
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, a);
            const __m512 s = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(ls + 2 * b)));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc);
        }
        total += _mm512_reduce_add_ps(acc);
    }
#endif
#ifdef __AVX2__
    {
        __m256 acc = _mm256_setzero_ps();
        const __m256i idx = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0);
        for (; b < nb; b++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(u + 32 * b));
            const __m256i a = _mm256_loadu_si256((const __m256i *)(q + 32 * b));
            const __m256 s = _mm256_permutevar8x32_ps(
                _mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(ls + 2 * b)))), idx);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot4(w, a, wide)), s, acc);
        }
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        total += _mm_cvtss_f32(r);
    }
#endif
    (void)wide;
    for (; b < nb; b++) { /* no SIMD: the plain sums */
        int32_t h0 = 0, h1 = 0;
        for (int i = 0; i < 16; i++) h0 += (int32_t)u[32 * b + i] * q[32 * b + i];
        for (int i = 16; i < 32; i++) h1 += (int32_t)u[32 * b + i] * q[32 * b + i];
        total += ls[2 * b] * (float)h0 + ls[2 * b + 1] * (float)h1;
    }
    return total;
}

/* y (M, N) = x (M, K) W^T. Rows of W are split over `threads` OpenMP threads (the runtime torch
   itself uses, loaded once in the process). Returns 0, or -1 if the type is unknown, K is not a
   whole number of blocks, or scratch memory could not be allocated. */
/* The activations as the dot products read them: q (M, K) int8 (scaled per 32), and per `group` (16
   or 32) values xd (the scale) and xs (scale * the sum of q over the group). */
typedef struct {
    int8_t *q;
    float *xd, *xs;
} acts;

static void free_acts(acts *a)
{
    free(a->q); free(a->xd); free(a->xs);
}

static int quantize_acts(const float *x, int64_t M, int64_t K, int group, acts *a)
{
    const int64_t ng = K / group, nh = K / 16;
    a->q = malloc((size_t)(M * K));
    a->xd = malloc(sizeof(float) * (size_t)(M * ng));
    a->xs = malloc(sizeof(float) * (size_t)(M * ng));
    float *xd16 = malloc(sizeof(float) * (size_t)nh), *xs16 = malloc(sizeof(float) * (size_t)nh);
    const int ok = a->q && a->xd && a->xs && xd16 && xs16;
    for (int64_t m = 0; ok && m < M; m++) {
        float *xd = group == 16 ? a->xd + m * ng : xd16, *xs = group == 16 ? a->xs + m * ng : xs16;
        quantize_row(x + m * K, K, a->q + m * K, xd, xs);
        for (int64_t b = 0; group == 32 && b < ng; b++) {
            a->xd[m * ng + b] = xd16[2 * b];
            a->xs[m * ng + b] = xs16[2 * b] + xs16[2 * b + 1];
        }
    }
    free(xd16); free(xs16);
    if (!ok) free_acts(a);
    return ok ? 0 : -1;
}

/* The direct paths of AVX512-VNNI CPUs (Q4_K, Q6_K and Q8_0 from their blocks, Q4_0 repacked into
   planes): defines HAVE_VNNI512 where they are built. */
#include "gguf_vnni512.h"

int r1q_matmul(int type, const uint8_t *w, int64_t row_bytes, int64_t N, int64_t K, const float *x, int64_t M,
               float *y, int threads)
{
    int bytes;
    const int block = block_of(type, &bytes);
    if (!block || K % block || row_bytes != K / block * bytes) return -1;
#ifdef HAVE_VNNI512
    if (type == T_Q4_K) return matmul_q4_k(w, row_bytes, N, K, x, M, y, threads); /* gguf_vnni512.h */
    if (type == T_Q6_K) return matmul_q6_k(w, row_bytes, N, K, x, M, y, threads);
    if (type == T_Q8_0 && K % 64 == 0) return matmul_q8_0(w, row_bytes, N, K, x, M, y, threads);
#endif
    const int64_t nb = K / 32, nh = K / 16;
    const int wide = type == T_Q8_0;
    acts a;
    if (quantize_acts(x, M, K, 16, &a)) return -1;
    const int8_t *q = a.q;
    const float *xd = a.xd, *xs = a.xs;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        uint8_t *u = malloc((size_t)K);
        float *wd = malloc(sizeof(float) * (size_t)nh), *wm = malloc(sizeof(float) * (size_t)nh);
        float *ls = malloc(sizeof(float) * (size_t)nh);
        if (!u || !wd || !wm || !ls) {
            failed = 1;
        } else {
#pragma omp for schedule(static)
            for (int64_t n = 0; n < N; n++) {
#ifdef __SSE__
                if (n + 1 < N) /* the next row, on its way from memory while this one is computed */
                    for (int64_t o = 0; o < row_bytes; o += 64)
                        _mm_prefetch((const char *)(w + (n + 1) * row_bytes + o), _MM_HINT_T0);
#endif
                unpack_row(type, w + n * row_bytes, K, u, wd, wm);
                for (int64_t m = 0; m < M; m++) {
                    const float off = scales_and_offset(wd, wm, xd + m * nh, xs + m * nh, nh, ls);
                    y[m * N + n] = dot_row(u, ls, q + m * K, nb, wide) + off;
                }
            }
        }
        free(u); free(wd); free(wm); free(ls);
    }
    free_acts(&a);
    return failed ? -1 : 0;
}

/* One row of K weights, `type` blocks, dequantized into out: float, or bf16 (round to nearest
   even) when bf16 is set, through tmp (K floats). u, wd, wm: unpack_row's scratch. */
static void dequant_row(int type, const uint8_t *row, int64_t K, uint8_t *u, float *wd, float *wm, float *tmp,
                        void *out, int bf16)
{
    unpack_row(type, row, K, u, wd, wm);
    float *o = bf16 ? tmp : (float *)out;
    for (int64_t h = 0; h < K / 16; h++)
        for (int i = 0; i < 16; i++) o[16 * h + i] = wd[h] * (float)u[16 * h + i] + wm[h];
    if (bf16) {
        uint16_t *ob = (uint16_t *)out;
        for (int64_t k = 0; k < K; k++) {
            uint32_t bits;
            memcpy(&bits, &tmp[k], 4);
            bits += 0x7fff + ((bits >> 16) & 1);
            ob[k] = (uint16_t)(bits >> 16);
        }
    }
}

/* Rows rows[0..R-1] (all N when rows is NULL) dequantized into out (R, K): embedding lookups and
   prefill GEMMs. `planes` (Q4_0 only, then w is NULL): the weight is in the two planes of the
   repacked form below, and each row is put back into ggml blocks first. */
static int dequant_rows(int type, const uint8_t *w, int64_t row_bytes, const uint8_t *nib, const uint16_t *sc,
                        int64_t K, const int64_t *rows, int64_t R, void *out, int bf16, int threads)
{
    int bytes;
    const int block = block_of(type, &bytes);
    if (!block || K % block || row_bytes != K / block * bytes) return -1;
    const int64_t nb = K / 32, nh = K / 16, esize = bf16 ? 2 : 4;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        uint8_t *u = malloc((size_t)K), *blk = nib ? malloc((size_t)row_bytes) : NULL;
        float *wd = malloc(sizeof(float) * (size_t)nh), *wm = malloc(sizeof(float) * (size_t)nh);
        float *tmp = malloc(sizeof(float) * (size_t)K);
        if (!u || !wd || !wm || !tmp || (nib && !blk)) {
            failed = 1;
        } else {
#pragma omp for schedule(static)
            for (int64_t r = 0; r < R; r++) {
                const int64_t n = rows ? rows[r] : r;
                const uint8_t *row = w ? w + n * row_bytes : blk;
                if (nib)
                    for (int64_t b = 0; b < nb; b++) {
                        memcpy(blk + 18 * b, sc + n * nb + b, 2);
                        memcpy(blk + 18 * b + 2, nib + (n * nb + b) * 16, 16);
                    }
                dequant_row(type, row, K, u, wd, wm, tmp, (char *)out + r * K * esize, bf16);
            }
        }
        free(u); free(blk); free(wd); free(wm); free(tmp);
    }
    return failed ? -1 : 0;
}

int r1q_dequant_rows(int type, const uint8_t *w, int64_t row_bytes, int64_t K, const int64_t *rows, int64_t R,
                     void *out, int bf16, int threads)
{
    return dequant_rows(type, w, row_bytes, NULL, NULL, K, rows, R, out, bf16, threads);
}

/* ---------------------------------------------------------------- Q4_0, repacked at load
   The generic path above spends most of a Q4_0 row on unpacking: per 32 weights, a scalar fp16
   scale and four scale stores. Where AVX512-VNNI is present, Q4_0 weights are instead repacked
   once, at load, into two planes: nib (N, K/2) the blocks' 16 nibble bytes back to back, and
   sc (N, K/32) their fp16 scales. Then 16 blocks' scales convert in one instruction, and two
   blocks' nibbles are one 32-byte load. Same bytes as the file (18 per 32 weights). */
/* Which dot-product path this build took (named in `r1 info --runtime`). */
const char *r1q_variant(void)
{
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    return "AVX512-VNNI";
#elif defined(__AVXVNNI__)
    return "AVX-VNNI";
#elif defined(__AVX2__)
    return "AVX2";
#else
    return "plain C";
#endif
}

int r1q_has_q4_0_planes(void)
{
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__F16C__)
    return 1;
#else
    return 0;
#endif
}

void r1q_repack_q4_0(const uint8_t *src, int64_t N, int64_t nb, uint8_t *nib, uint16_t *sc)
{
    for (int64_t r = 0; r < N * nb; r++) {
        memcpy(sc + r, src + 18 * r, 2);
        memcpy(nib + 16 * r, src + 18 * r + 2, 16);
    }
}


/* y (M, N) = x (M, K) W^T for Q4_0 planes (nb = K / 32 must be even). -1 when unavailable or on
   allocation failure. */
int r1q_matmul_q4_0_planes(const uint8_t *nib, const uint16_t *sc, int64_t N, int64_t K, const float *x, int64_t M,
                           float *y, int threads)
{
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__F16C__)
    const int64_t nb = K / 32;
    acts a;
    if (K % 64 || quantize_acts(x, M, K, 32, &a)) return -1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++)
        FOR_ROWS_BY_4(M, dot_q4_0_planes(nib + n * nb * 16, sc + n * nb, a.q + m * K, K, a.xd + m * nb, a.xs + m * nb,
                                         nb, MM, y + m * N + n, N))
    free_acts(&a);
    return 0;
#else
    (void)nib; (void)sc; (void)N; (void)K; (void)x; (void)M; (void)y; (void)threads;
    return -1;
#endif
}

/* r1q_dequant_rows for Q4_0 planes. */
int r1q_dequant_q4_0_planes(const uint8_t *nib, const uint16_t *sc, int64_t K, const int64_t *rows, int64_t R,
                            void *out, int bf16, int threads)
{
    return dequant_rows(T_Q4_0, NULL, K / 32 * 18, nib, sc, K, rows, R, out, bf16, threads);
}
