/* The direct dot-product paths of AVX512-VNNI CPUs, included once by gguf_matmul.c (one translation
   unit; native.build_library hashes this file with it). Beside the common unpacking path there:
   Q4_K, Q6_K and Q8_0 computed straight from their blocks, and Q4_0 from the two planes it is repacked
   into at load. Each takes activation rows four at a time, so a block is decoded once for up to
   four rows. The activations come as `acts` (gguf_matmul.c): int8, scaled per 32, with sums per 32
   (group 32) or per 16 (Q6_K, whose scales are per 16). */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__F16C__)
#define HAVE_VNNI512 1
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 4096
#endif

/* Run CALL for activation rows m .. m + MM - 1, MM = 4 while four are left, then the remainder, with
   MM a constant in each expansion (the dot functions keep one accumulator per row in registers). */
#define FOR_ROWS_BY_4(M, CALL)                                                     \
    for (int64_t m = 0; m < (M); m += 4) {                                         \
        const int64_t left_ = (M) - m;                                             \
        if (left_ >= 4) { const int MM = 4; CALL; }                                \
        else if (left_ == 3) { const int MM = 3; CALL; }                           \
        else if (left_ == 2) { const int MM = 2; CALL; }                           \
        else { const int MM = 1; CALL; }                                           \
    }

static inline float hsum256(__m256 v)
{
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* Q4_K straight from its blocks (no repacking): per super-block the eight 6-bit (scale, min) pairs
   are decoded once, and each 32-byte chunk of nibbles is two sub-blocks, low then high, which are
   exactly the 64 activations at the same position: one load, two masks, one dpbusd per row. */
static inline __attribute__((always_inline)) void dot_q4_k(
    const uint8_t *row, const int8_t *q, int64_t K, const float *xd, const float *xs, int64_t nb, const int MM,
    float *out, int64_t ostride)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m512i pair = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc[4], s[4];
    __m256 offacc[4];
    for (int r = 0; r < MM; r++) {
        acc[r] = _mm512_setzero_ps();
        offacc[r] = _mm256_setzero_ps();
    }
    for (int64_t sb = 0; sb < K / 256; sb++) {
        const uint8_t *blk = row + 144 * sb, *qs = blk + 16;
        /* every 64-byte line of the block ahead (three lines span a 144-byte block) */
        _mm_prefetch((const char *)(blk + PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(blk + PREFETCH_AHEAD + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(blk + PREFETCH_AHEAD + 128), _MM_HINT_T0);
        /* the eight (scale, min) pairs of scale_min_k4, decoded four at a time in 32-bit words and
           kept in registers (a round trip through memory stalls on store forwarding): the scales'
           eight bytes, then the mins' */
        uint32_t w0, w1, w2;
        memcpy(&w0, blk + 4, 4);
        memcpy(&w1, blk + 8, 4);
        memcpy(&w2, blk + 12, 4);
        const uint32_t six = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x03030303u;
        const uint64_t scs = (uint64_t)(w0 & six) | (uint64_t)((w2 & low4) | (((w0 >> 6) & top2) << 4)) << 32;
        const uint64_t mins = (uint64_t)(w1 & six) | (uint64_t)(((w2 >> 4) & low4) | (((w1 >> 6) & top2) << 4)) << 32;
        int32_t dbits;
        memcpy(&dbits, blk, 4);
        const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(dbits)); /* (d, dmin) */
        const __m256 scv = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)scs))),
                                         _mm256_broadcastss_ps(dm));
        const __m256 mv = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mins))),
                                        _mm256_broadcastss_ps(_mm_movehdup_ps(dm)));
        for (int r = 0; r < MM; r++) {
            s[r] = _mm512_castps256_ps512(_mm256_mul_ps(scv, _mm256_loadu_ps(xd + r * nb + 8 * sb)));
            offacc[r] = _mm256_fmadd_ps(mv, _mm256_loadu_ps(xs + r * nb + 8 * sb), offacc[r]);
        }
        for (int c = 0; c < 4; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)),
                                                 _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
            const __m512i idx = _mm512_add_epi32(pair, _mm512_set1_epi32(2 * c)); /* sub-blocks 2c, 2c+1 */
            for (int r = 0; r < MM; r++) {
                const __m512i a = _mm512_loadu_si512((const void *)(q + r * K + 256 * sb + 64 * c));
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(idx, s[r]), acc[r]);
            }
        }
    }
    /* w = d sc q - dmin m: the second term times the activations is -sum dmin m xs */
    for (int r = 0; r < MM; r++) out[r * ostride] = _mm512_reduce_add_ps(acc[r]) - hsum256(offacc[r]);
}

/* y (M, N) = x (M, K) W^T through dot_<type> for each weight row against each group of <= 4 activation
   rows; -1 on allocation failure. */
#define DIRECT_MATMUL(name, dot, group)                                                                     \
    static int name(const uint8_t *w, int64_t row_bytes, int64_t N, int64_t K, const float *x, int64_t M,  \
                    float *y, int threads)                                                                 \
    {                                                                                                      \
        acts a;                                                                                            \
        if (quantize_acts(x, M, K, group, &a)) return -1;                                                  \
        const int64_t ng = K / (group);                                                                    \
        _Pragma("omp parallel for num_threads(threads) schedule(static)")                                   \
        for (int64_t n = 0; n < N; n++)                                                                    \
            FOR_ROWS_BY_4(M, dot(w + n * row_bytes, a.q + m * K, K, a.xd + m * ng, a.xs + m * ng, ng, MM,  \
                                 y + m * N + n, N))                                                        \
        free_acts(&a);                                                                                     \
        return 0;                                                                                          \
    }

DIRECT_MATMUL(matmul_q4_k, dot_q4_k, 32)

/* One weight row against MM (1..4) activation rows at once, so each pair of blocks is unpacked once
   for all of them: q[r] (K int8), xd[r]/xs[r] (per 32: scale, scale * sum q); out[r * ostride]. MM is
   a compile-time constant at every call site, which keeps the accumulators in registers. */
static inline __attribute__((always_inline)) void dot_q4_0_planes(
    const uint8_t *nib, const uint16_t *sc, const int8_t *q, int64_t K, const float *xd, const float *xs,
    int64_t nb, const int MM, float *out, int64_t ostride)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m512i pair = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc[4], offacc[4], s[4];
    for (int r = 0; r < MM; r++) acc[r] = offacc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < nb; g += 16) {
        const int64_t left = nb - g < 16 ? nb - g : 16;
        const __mmask16 mk = (__mmask16)((1u << left) - 1);
        const __m512 d = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, sc + g));
        for (int r = 0; r < MM; r++) {
            s[r] = _mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, xd + r * nb + g));
            offacc[r] = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(mk, xs + r * nb + g), offacc[r]);
        }
        for (int64_t j = 0; j < left; j += 2) {
            const int64_t b = g + j;
            /* decode streams the whole model from memory once per token: ask for the bytes ahead
               (past this row's end, the next row's) so the loads find them in cache */
            _mm_prefetch((const char *)(nib + 16 * b + PREFETCH_AHEAD), _MM_HINT_T0);
            const __m256i v = _mm256_loadu_si256((const __m256i *)(nib + 16 * b)); /* [qs_b | qs_b+1] */
            const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_permute2x128_si256(lo, hi, 0x20)),
                                                 _mm256_permute2x128_si256(lo, hi, 0x31), 1); /* [lo hi | lo hi] */
            const __m512i idx = _mm512_add_epi32(pair, _mm512_set1_epi32((int)j));
            for (int r = 0; r < MM; r++) {
                const __m512i a = _mm512_loadu_si512((const void *)(q + r * K + 32 * b));
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(idx, s[r]), acc[r]);
            }
        }
    }
    /* w = (u - 8) d: the -8 d part times the activations is -8 sum_b d_b xs_b */
    for (int r = 0; r < MM; r++)
        out[r * ostride] = _mm512_reduce_add_ps(acc[r]) - 8.0f * _mm512_reduce_add_ps(offacc[r]);
}

/* Q6_K straight from its blocks: w = d sc[h] (q - 32), q = 4 low bits (ql) | 2 high bits (qh) << 4, one
   int8 scale per 16 weights. Each half of 128 weights is ql's 64 bytes and qh's 32: the low nibbles
   with qh's bits 0-1 / 2-3 are weights 0-63, the high nibbles with bits 4-5 / 6-7 weights 64-127, so a
   half is two 64-byte vectors built with shifts and masks, each one dpbusd per activation row. */
static inline __attribute__((always_inline)) void dot_q6_k(
    const uint8_t *row, const int8_t *q, int64_t K, const float *xd16, const float *xs16, int64_t nh, const int MM,
    float *out, int64_t ostride)
{
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
    /* lane i of a 64-weight dpbusd is weights 4i..4i+3: group (16 weights) i / 4 of the four */
    const __m512i quad = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc[4], offacc[4], s[4];
    for (int r = 0; r < MM; r++) acc[r] = offacc[r] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < K / 256; sb++) {
        const uint8_t *blk = row + 210 * sb;
        _mm_prefetch((const char *)(blk + PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(blk + PREFETCH_AHEAD + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(blk + PREFETCH_AHEAD + 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(blk + PREFETCH_AHEAD + 192), _MM_HINT_T0);
        uint16_t dbits;
        memcpy(&dbits, blk + 208, 2);
        const __m512 sv = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 192)))),
                                        _mm512_set1_ps(_cvtsh_ss(dbits))); /* d sc[h], h = 0..15 */
        for (int r = 0; r < MM; r++) {
            s[r] = _mm512_mul_ps(sv, _mm512_loadu_ps(xd16 + r * nh + 16 * sb));
            offacc[r] = _mm512_fmadd_ps(sv, _mm512_loadu_ps(xs16 + r * nh + 16 * sb), offacc[r]);
        }
        for (int n = 0; n < 2; n++) {
            const __m512i lq = _mm512_loadu_si512((const void *)(blk + 64 * n));
            const __m256i h = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * n));
            const __m512i hq = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 2), 1);
            const __m512i u0 = _mm512_or_si512(_mm512_and_si512(lq, m4),
                                               _mm512_slli_epi16(_mm512_and_si512(hq, m2), 4));
            const __m512i u1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(lq, 4), m4),
                                               _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hq, 4), m2), 4));
            const __m512i i0 = _mm512_add_epi32(quad, _mm512_set1_epi32(8 * n));
            const __m512i i1 = _mm512_add_epi32(quad, _mm512_set1_epi32(8 * n + 4));
            for (int r = 0; r < MM; r++) {
                const int8_t *qa = q + r * K + 256 * sb + 128 * n;
                const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, _mm512_loadu_si512((const void *)qa));
                const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u1,
                                                       _mm512_loadu_si512((const void *)(qa + 64)));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(i0, s[r]), acc[r]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_permutexvar_ps(i1, s[r]), acc[r]);
            }
        }
    }
    /* the -32 d sc part times the activations is -32 sum_h d sc[h] xs16[h] */
    for (int r = 0; r < MM; r++)
        out[r * ostride] = _mm512_reduce_add_ps(acc[r]) - 32.0f * _mm512_reduce_add_ps(offacc[r]);
}

DIRECT_MATMUL(matmul_q6_k, dot_q6_k, 16)

/* Q8_0 straight from its blocks (34 bytes: f16 d, 32 int8): dpbusd wants unsigned weights, so q + 128
   (q ^ 0x80) and the 128 d part comes off through the activation sums. Sixteen blocks' scales are one
   gather; two blocks are one 64-byte vector. nb (K / 32) must be even. */
static inline __attribute__((always_inline)) void dot_q8_0(
    const uint8_t *row, const int8_t *q, int64_t K, const float *xd, const float *xs, int64_t nb, const int MM,
    float *out, int64_t ostride)
{
    const __m512i pair = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i at = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(34));
    __m512 acc[4], offacc[4], s[4];
    for (int r = 0; r < MM; r++) acc[r] = offacc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < nb; g += 16) {
        const int64_t left = nb - g < 16 ? nb - g : 16;
        const __mmask16 mk = (__mmask16)((1u << left) - 1);
        const __m512i dw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mk, at, row + 34 * g, 1);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dw)); /* the low half of each word: d */
        for (int r = 0; r < MM; r++) {
            s[r] = _mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, xd + r * nb + g));
            offacc[r] = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(mk, xs + r * nb + g), offacc[r]);
        }
        for (int64_t j = 0; j < left; j += 2) {
            const uint8_t *blk = row + 34 * (g + j);
            _mm_prefetch((const char *)(blk + PREFETCH_AHEAD), _MM_HINT_T0);
            _mm_prefetch((const char *)(blk + PREFETCH_AHEAD + 64), _MM_HINT_T0);
            const __m512i u = _mm512_xor_si512(
                _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + 2))),
                                   _mm256_loadu_si256((const __m256i *)(blk + 36)), 1), flip);
            const __m512i idx = _mm512_add_epi32(pair, _mm512_set1_epi32((int)j));
            for (int r = 0; r < MM; r++) {
                const __m512i a = _mm512_loadu_si512((const void *)(q + r * K + 32 * (g + j)));
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(idx, s[r]), acc[r]);
            }
        }
    }
    for (int r = 0; r < MM; r++)
        out[r * ostride] = _mm512_reduce_add_ps(acc[r]) - 128.0f * _mm512_reduce_add_ps(offacc[r]);
}

DIRECT_MATMUL(matmul_q8_0, dot_q8_0, 32)
#endif
