/* Dropout masks on tiles of the softmax-attention probability matrix (see
 * attn_dropout.h).
 *
 * The scalar kernel draws one Philox block per four consecutive elements of
 * a row.  The AVX2 kernel collects the Philox counters a run of tile rows
 * needs (a row of the tile is a contiguous index range, the rows are
 * row_step apart), runs Philox on 16 arbitrary counters at once (two
 * interleaved 8-lane chains, so the multiply latencies overlap) and then
 * turns the words into multipliers 8 at a time. */
#include "attn_dropout.h"

#include "../philox_avx2.h"
#include "../rng.h"

static inline float keep_scale(float p) { return 1.0f / (1.0f - p); }

/* Columns of row r visible in a tile with offset diag (attn_softmax.h). */
static inline int visible(int r, int diag, int nk)
{
    long n = (long)r + diag + 1;
    return n < 0 ? 0 : n > nk ? nk : (int)n;
}

/* ------------------------------------------------------------------ scalar */

void attn_drop_mult_scalar(const AttnDropout *dr, uint64_t i0, uint64_t row_step, int nq, int nk,
                           int diag, float *mult, int ldm)
{
    const uint32_t key[2] = {(uint32_t)dr->key, (uint32_t)(dr->key >> 32)};
    const float p = dr->p, scale = keep_scale(p);
    for (int r = 0; r < nq; r++) {
        float *m = mult + (size_t)r * ldm;
        const int n = visible(r, diag, nk);
        const uint64_t base = i0 + (uint64_t)r * row_step;
        uint32_t w[4];
        uint64_t have = UINT64_MAX; /* Philox block held in w */
        for (int c = 0; c < n; c++) {
            const uint64_t i = base + (uint64_t)c, blk = i >> 2;
            if (blk != have) {
                const uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), dr->step, dr->op};
                philox4x32_10(ctr, key, w);
                have = blk;
            }
            const float u = (float)(w[i & 3] >> 8) * 0x1.0p-24f;
            m[c] = u >= p ? scale : 0.0f;
        }
        for (int c = n; c < nk; c++) m[c] = 0.0f;
    }
}

/* -------------------------------------------------------------------- AVX2 */
#if SIMD_AVX2
/* Philox blocks of the 16 counters {lo[j], hi[j], step, op}, j < 16, into
 * out[4j .. 4j+3]. */
static void philox16_lanes(const uint32_t *lo, const uint32_t *hi, uint32_t step, uint32_t op,
                           const uint32_t key[2], uint32_t *out)
{
    __m256i e[8];
    philox16_avx2(_mm256_loadu_si256((const __m256i *)lo), _mm256_loadu_si256((const __m256i *)hi),
                  _mm256_loadu_si256((const __m256i *)(lo + 8)), _mm256_loadu_si256((const __m256i *)(hi + 8)), step,
                  op, key, e);
    for (int q = 0; q < 8; q++) _mm256_storeu_si256((__m256i *)(out + 8 * q), e[q]);
}

/* Counters collected before Philox runs on them; a row segment of at most
 * SEG_MAX columns needs at most SEG_MAX/4 + 1 of them. */
enum { CAP = 256, SEG_MAX = 512 };

typedef struct Segment {
    int r, c0, len; /* mult row r, columns c0 .. c0+len-1 */
    int w;          /* index of the word of column c0 in the words buffer */
} Segment;

typedef struct Pending {
    /* words: + 8 of slack, the vector loads of the last segment may reach
     * up to 7 words past the last counter's */
    uint32_t lo[CAP], hi[CAP], words[4 * CAP + 8];
    Segment seg[CAP];
    int n_ctr, n_seg;
} Pending;

/* Draw the pending counters and write the multipliers of their segments. */
static void flush(Pending *pd, const uint32_t key[2], const AttnDropout *dr, float *mult, int ldm)
{
    const int n = pd->n_ctr;
    for (int j = n; j < ((n + 15) & ~15); j++) pd->lo[j] = pd->hi[j] = 0; /* lanes past n: unused */
    for (int j = 0; j < n; j += 16) philox16_lanes(pd->lo + j, pd->hi + j, dr->step, dr->op, key, pd->words + 4 * j);
    const __m256 vp = _mm256_set1_ps(dr->p), vs = _mm256_set1_ps(keep_scale(dr->p));
    const __m256 inv24 = _mm256_set1_ps(0x1.0p-24f);
    for (int s = 0; s < pd->n_seg; s++) {
        const Segment *sg = &pd->seg[s];
        const uint32_t *w = pd->words + sg->w;
        float *m = mult + (size_t)sg->r * ldm + sg->c0;
        for (int c = 0; c < sg->len; c += 8) {
            const int k = sg->len - c < 8 ? sg->len - c : 8;
            const __m256i msk = simd_tail_mask((size_t)k);
            /* words past the segment are other counters' or padding: read, unused */
            const __m256i x = _mm256_loadu_si256((const __m256i *)(w + c));
            const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(x, 8)), inv24);
            const __m256 v = _mm256_and_ps(_mm256_cmp_ps(u, vp, _CMP_GE_OQ), vs);
            _mm256_maskstore_ps(m + c, msk, v);
        }
    }
    pd->n_ctr = pd->n_seg = 0;
}

void attn_drop_mult_avx2(const AttnDropout *dr, uint64_t i0, uint64_t row_step, int nq, int nk,
                         int diag, float *mult, int ldm)
{
    const uint32_t key[2] = {(uint32_t)dr->key, (uint32_t)(dr->key >> 32)};
    Pending pend, *pd = &pend; /* ~10 KB of stack */
    pd->n_ctr = pd->n_seg = 0;
    for (int r = 0; r < nq; r++) {
        const int n = visible(r, diag, nk);
        float *m = mult + (size_t)r * ldm;
        for (int c = n; c < nk; c++) m[c] = 0.0f;
        for (int c0 = 0; c0 < n; c0 += SEG_MAX) {
            const int len = n - c0 < SEG_MAX ? n - c0 : SEG_MAX;
            const uint64_t ia = i0 + (uint64_t)r * row_step + (uint64_t)c0;
            const uint64_t ba = ia >> 2, bb = (ia + (uint64_t)len - 1) >> 2;
            const int nb = (int)(bb - ba + 1);
            if (pd->n_ctr + nb > CAP) flush(pd, key, dr, mult, ldm);
            pd->seg[pd->n_seg++] = (Segment){.r = r, .c0 = c0, .len = len, .w = 4 * pd->n_ctr + (int)(ia & 3)};
            for (uint64_t b = ba; b <= bb; b++) {
                pd->lo[pd->n_ctr] = (uint32_t)b;
                pd->hi[pd->n_ctr++] = (uint32_t)(b >> 32);
            }
        }
    }
    if (pd->n_seg) flush(pd, key, dr, mult, ldm);
}
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void attn_drop_mult(const AttnDropout *dr, uint64_t i0, uint64_t row_step, int nq, int nk, int diag,
                    float *mult, int ldm)
{
    DISPATCH(attn_drop_mult, dr, i0, row_step, nq, nk, diag, mult, ldm);
}
