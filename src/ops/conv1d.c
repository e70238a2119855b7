/* Causal depthwise convolution along time (PyTorch Conv1d(C, C, K,
 * groups=C, padding=K-1) keeping the first L outputs).
 *
 *   y[b,t,c] = bias[c] + sum_{j=0}^{K-1} w[c,j] x[b, t-K+1+j, c]   (x = 0 for t < 0)
 *
 * Rows (b, t) are flattened to r = b*L + t.  Forward and dx are computed per
 * fixed block of SEQ_ROW_BLOCK rows (each output independent, parallel over
 * blocks); the weight/bias gradients are summed per block into `work` and the
 * block partials then added in block order, so every result is the same for
 * any thread count.  AVX2 kernels take 8 channels per vector (tap-major
 * weights), channel tails use masked loads. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../ops.h"
#include "../simd_math.h"
#include "k_seq.h"

static size_t conv_blocks(int B, int L) { return ((size_t)B * (size_t)L + SEQ_ROW_BLOCK - 1) / SEQ_ROW_BLOCK; }

size_t k_conv1d_work_floats(int B, int L, int C, int K)
{
    return conv_blocks(B, L) * (size_t)(K + 1) * (size_t)C;
}

/* Phase 2 of the parameter gradients, shared by both variants: block
 * partials are added into block 0 in block order (per element exactly
 * 0 + p0 + p1 + ... in that order), then dw[c*K+j] += sum[j][c] and
 * db[c] += sum[K][c].  Parallel over fixed chunks of the (K+1)*C sums. */
#define CONV_REDUCE_CHUNK 512
static void conv_reduce_blocks(float *work, float *dw, float *db, size_t nblk, int C, int K)
{
    const size_t slot = (size_t)(K + 1) * (size_t)C;
    const size_t nchunk = (slot + CONV_REDUCE_CHUNK - 1) / CONV_REDUCE_CHUNK;
#pragma omp parallel for schedule(static) if (nblk * slot >= KERNEL_PAR_MIN)
    for (size_t ch = 0; ch < nchunk; ch++) {
        size_t q0 = ch * CONV_REDUCE_CHUNK, q1 = q0 + CONV_REDUCE_CHUNK < slot ? q0 + CONV_REDUCE_CHUNK : slot;
        for (size_t blk = 1; blk < nblk; blk++) {
            const float *pb = work + blk * slot;
            for (size_t q = q0; q < q1; q++) work[q] += pb[q];
        }
        for (size_t q = q0; q < q1; q++) {
            int j = (int)(q / (size_t)C), c = (int)(q % (size_t)C);
            if (j < K) {
                if (dw) dw[(size_t)c * K + j] += work[q];
            } else if (db) {
                db[c] += work[q];
            }
        }
    }
}

/* ---------------------------------------------------------------- scalar */

/* Channels per stack accumulator in the scalar dx kernel. */
#define CONV_C_CHUNK 64

/* Weight / bias gradient partials of rows r0 .. r1-1 into part ((K+1) x C,
 * zeroed here): part[j][c] = sum_r g_r[c] x_{r+j-(K-1)}[c], part[K][c] =
 * sum_r g_r[c], rows in order (so every (j, c) sum has the AVX2 lanes'
 * order).  Row r's gradient is g + (r - r0) C, its input x + r ldx. */
static void conv_wgrad_block_scalar(const float *x, size_t ldx, const float *g, size_t r0, size_t r1, int L,
                                    int K, size_t Cs, bool dw, bool db, float *part)
{
    for (size_t q = 0; q < (size_t)(K + 1) * Cs; q++) part[q] = 0.0f;
    for (size_t r = r0; r < r1; r++) {
        int t = (int)(r % (size_t)L);
        const float *gr = g + (r - r0) * Cs;
        for (int j = (K - 1 - t > 0 ? K - 1 - t : 0); dw && j < K; j++) {
            const float *xr = x + (r + j - (K - 1)) * ldx;
            float *pj = part + (size_t)j * Cs;
            for (size_t c = 0; c < Cs; c++) pj[c] += gr[c] * xr[c];
        }
        if (db)
            for (size_t c = 0; c < Cs; c++) part[(size_t)K * Cs + c] += gr[c];
    }
}

void k_conv1d_fwd_scalar(const float *x, const float *wt, const float *bias, float *y, int B,
                         int L, int C, int K)
{
    const size_t rows = (size_t)B * L, nblk = conv_blocks(B, L), Cs = (size_t)C;
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r1 = (blk + 1) * SEQ_ROW_BLOCK < rows ? (blk + 1) * SEQ_ROW_BLOCK : rows;
        for (size_t r = blk * SEQ_ROW_BLOCK; r < r1; r++) {
            int t = (int)(r % (size_t)L);
            int j0 = t >= K - 1 ? 0 : K - 1 - t;
            /* y row as accumulator: bias, then taps in order (as the AVX2 lanes) */
            float *yr = y + r * Cs;
            for (size_t c = 0; c < Cs; c++) yr[c] = bias ? bias[c] : 0.0f;
            for (int j = j0; j < K; j++) {
                const float *wj = wt + (size_t)j * Cs, *xr = x + (r + j - (K - 1)) * Cs;
                for (size_t c = 0; c < Cs; c++) yr[c] += wj[c] * xr[c];
            }
        }
    }
}

void k_conv1d_bwd_x_scalar(const float *dy, const float *wt, float *dx, int B, int L, int C, int K)
{
    const size_t rows = (size_t)B * L, nblk = conv_blocks(B, L), Cs = (size_t)C;
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r1 = (blk + 1) * SEQ_ROW_BLOCK < rows ? (blk + 1) * SEQ_ROW_BLOCK : rows;
        for (size_t r = blk * SEQ_ROW_BLOCK; r < r1; r++) {
            int t = (int)(r % (size_t)L);
            int j0 = t + K - L > 0 ? t + K - L : 0; /* output time t+K-1-j must be < L */
            /* sum the taps from 0 in a chunk of channels, then add into dx */
            for (size_t c0 = 0; c0 < Cs; c0 += CONV_C_CHUNK) {
                size_t nc = Cs - c0 < CONV_C_CHUNK ? Cs - c0 : CONV_C_CHUNK;
                float acc[CONV_C_CHUNK];
                for (size_t i = 0; i < nc; i++) acc[i] = 0.0f;
                for (int j = j0; j < K; j++) {
                    const float *wj = wt + (size_t)j * Cs + c0, *dyr = dy + (r + (K - 1) - j) * Cs + c0;
                    for (size_t i = 0; i < nc; i++) acc[i] += wj[i] * dyr[i];
                }
                for (size_t i = 0; i < nc; i++) dx[r * Cs + c0 + i] += acc[i];
            }
        }
    }
}

void k_conv1d_bwd_w_scalar(const float *x, const float *dy, float *dw, float *db, float *work,
                           int B, int L, int C, int K)
{
    if (!dw && !db) return;
    const size_t rows = (size_t)B * L, nblk = conv_blocks(B, L), Cs = (size_t)C;
    const size_t slot = (size_t)(K + 1) * Cs;
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r0 = blk * SEQ_ROW_BLOCK, r1 = r0 + SEQ_ROW_BLOCK < rows ? r0 + SEQ_ROW_BLOCK : rows;
        conv_wgrad_block_scalar(x, Cs, dy + r0 * Cs, r0, r1, L, K, Cs, dw != NULL, db != NULL, work + blk * slot);
    }
    conv_reduce_blocks(work, dw, db, nblk, C, K);
}

/* ------------------------------------------------------------------ AVX2 */

#if SIMD_AVX2
/* Load 8 floats, or the first lanes of `m` (masked lanes read as 0). */
#define LD(p, full, m) ((full) ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), (m)))
#define ST(p, v, full, m) ((full) ? _mm256_storeu_ps((p), (v)) : _mm256_maskstore_ps((p), (m), (v)))

/* conv_wgrad_block_scalar with 8 channels per lane group (same sums, same order). */
static void conv_wgrad_block_avx2(const float *x, size_t ldx, const float *g, size_t r0, size_t r1, int L, int K,
                                  size_t Cs, bool dw, bool db, float *part)
{
    const __m256i tail = simd_tail_mask(Cs % 8);
    for (size_t q = 0; q < (size_t)(K + 1) * Cs; q++) part[q] = 0.0f;
    for (size_t r = r0; r < r1; r++) {
        int t = (int)(r % (size_t)L);
        const float *gr = g + (r - r0) * Cs;
        for (int j = (K - 1 - t > 0 ? K - 1 - t : 0); dw && j < K; j++) {
            const float *xr = x + (r + j - (K - 1)) * ldx;
            float *pj = part + (size_t)j * Cs;
            for (size_t c = 0; c < Cs; c += 8) {
                const int full = c + 8 <= Cs;
                ST(pj + c, _mm256_fmadd_ps(LD(gr + c, full, tail), LD(xr + c, full, tail), LD(pj + c, full, tail)),
                   full, tail);
            }
        }
        if (db) {
            float *pb = part + (size_t)K * Cs;
            for (size_t c = 0; c < Cs; c += 8) {
                const int full = c + 8 <= Cs;
                ST(pb + c, _mm256_add_ps(LD(pb + c, full, tail), LD(gr + c, full, tail)), full, tail);
            }
        }
    }
}

void k_conv1d_fwd_avx2(const float *x, const float *wt, const float *bias, float *y, int B,
                       int L, int C, int K)
{
    const size_t rows = (size_t)B * L, nblk = conv_blocks(B, L), Cs = (size_t)C;
    const __m256i tail = simd_tail_mask(Cs % 8);
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r1 = (blk + 1) * SEQ_ROW_BLOCK < rows ? (blk + 1) * SEQ_ROW_BLOCK : rows;
        for (size_t r = blk * SEQ_ROW_BLOCK; r < r1; r++) {
            int t = (int)(r % (size_t)L);
            int j0 = t >= K - 1 ? 0 : K - 1 - t;
            for (size_t c = 0; c < Cs; c += 8) {
                const int full = c + 8 <= Cs;
                __m256 acc = bias ? LD(bias + c, full, tail) : _mm256_setzero_ps();
                for (int j = j0; j < K; j++)
                    acc = _mm256_fmadd_ps(LD(wt + (size_t)j * Cs + c, full, tail),
                                          LD(x + (r + j - (K - 1)) * Cs + c, full, tail), acc);
                ST(y + r * Cs + c, acc, full, tail);
            }
        }
    }
}

void k_conv1d_bwd_x_avx2(const float *dy, const float *wt, float *dx, int B, int L, int C, int K)
{
    const size_t rows = (size_t)B * L, nblk = conv_blocks(B, L), Cs = (size_t)C;
    const __m256i tail = simd_tail_mask(Cs % 8);
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r1 = (blk + 1) * SEQ_ROW_BLOCK < rows ? (blk + 1) * SEQ_ROW_BLOCK : rows;
        for (size_t r = blk * SEQ_ROW_BLOCK; r < r1; r++) {
            int t = (int)(r % (size_t)L);
            int j0 = t + K - L > 0 ? t + K - L : 0;
            for (size_t c = 0; c < Cs; c += 8) {
                const int full = c + 8 <= Cs;
                __m256 acc = _mm256_setzero_ps();
                for (int j = j0; j < K; j++)
                    acc = _mm256_fmadd_ps(LD(wt + (size_t)j * Cs + c, full, tail),
                                          LD(dy + (r + (K - 1) - j) * Cs + c, full, tail), acc);
                float *d = dx + r * Cs + c;
                ST(d, _mm256_add_ps(LD(d, full, tail), acc), full, tail);
            }
        }
    }
}

void k_conv1d_bwd_w_avx2(const float *x, const float *dy, float *dw, float *db, float *work,
                         int B, int L, int C, int K)
{
    if (!dw && !db) return;
    const size_t rows = (size_t)B * L, nblk = conv_blocks(B, L), Cs = (size_t)C;
    const size_t slot = (size_t)(K + 1) * Cs;
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r0 = blk * SEQ_ROW_BLOCK, r1 = r0 + SEQ_ROW_BLOCK < rows ? r0 + SEQ_ROW_BLOCK : rows;
        /* (K+1) x C partials, L1-resident */
        conv_wgrad_block_avx2(x, Cs, dy + r0 * Cs, r0, r1, L, K, Cs, dw != NULL, db != NULL, work + blk * slot);
    }
    conv_reduce_blocks(work, dw, db, nblk, C, K);
}
#undef LD
#undef ST
#define DISPATCH(name, ...) name##_avx2(__VA_ARGS__)
#else
#define DISPATCH(name, ...) name##_scalar(__VA_ARGS__)
#endif

void k_conv1d_fwd(const float *x, const float *wt, const float *bias, float *y, int B, int L,
                  int C, int K)
{
    DISPATCH(k_conv1d_fwd, x, wt, bias, y, B, L, C, K);
}
void k_conv1d_bwd_x(const float *dy, const float *wt, float *dx, int B, int L, int C, int K)
{
    DISPATCH(k_conv1d_bwd_x, dy, wt, dx, B, L, C, K);
}
void k_conv1d_bwd_w(const float *x, const float *dy, float *dw, float *db, float *work, int B,
                    int L, int C, int K)
{
    DISPATCH(k_conv1d_bwd_w, x, dy, dw, db, work, B, L, C, K);
}

/* -------------------------------------------------------------------- op */

static void conv1d_backward(Graph *g, TapeEntry *e)
{
    Tensor *x = e->in[0];
    const float *dy = e->out->grad, *wt = e->ctx;
    const int B = x->shape[0], L = x->shape[1], C = x->shape[2], K = e->iarg[0];
    float *dx = tensor_grad(g, x), *dw = tensor_grad(g, e->in[1]), *db = tensor_grad(g, e->in[2]);
    if (dx) k_conv1d_bwd_x(dy, wt, dx, B, L, C, K);
    if (dw || db) {
        float *work = graph_scratch(g, k_conv1d_work_floats(B, L, C, K) * sizeof(float));
        k_conv1d_bwd_w(x->data, dy, dw, db, work, B, L, C, K);
    }
}

Tensor *op_conv1d_causal(Graph *g, Tensor *x, Tensor *w, Tensor *b)
{
    if (x->ndim != 3) op_shape_error("conv1d_causal", "x must be (B, L, C), got", x, NULL);
    const int C = x->shape[2];
    if (w->numel == 0 || w->numel % (size_t)C != 0)
        op_shape_error("conv1d_causal", "w must hold C*K elements (x, w):", x, w);
    const int K = (int)(w->numel / (size_t)C);
    if (b && b->numel != (size_t)C) op_shape_error("conv1d_causal", "bias must hold C elements (x, b):", x, b);

    /* tap-major copy of the weight: wt[j*C + c] = w[c*K + j] */
    float *wt = graph_scratch(g, w->numel * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int j = 0; j < K; j++) wt[(size_t)j * C + c] = w->data[(size_t)c * K + j];

    Tensor *y = tensor_new_like(g, x);
    k_conv1d_fwd(x->data, wt, b ? b->data : NULL, y->data, x->shape[0], x->shape[1], C, K);
    if (graph_wants_grad(g, x, w, b, NULL)) {
        TapeEntry *e = graph_record(g, "conv1d_causal", conv1d_backward, y, x, w, b, NULL);
        e->ctx = wt;
        e->iarg[0] = K;
    }
    return y;
}

/* ------------------------------------------------ fused conv + SiLU
 *
 * y = silu(z), z = conv of a column window of x (row stride ldx).  The
 * backward recomputes z instead of storing it: per block of SEQ_ROW_BLOCK
 * rows it forms dz = dy silu'(z) for the block and the K - 1 rows after it
 * (the conv's transpose reaches that far ahead) in a per-thread buffer, then
 * dx from dz and the dw/db partials from dz and x.  Every z, dz, dx element
 * and every block partial is computed with the same operations in the same
 * order as op_conv1d_causal followed by op_silu, so the fused op gives the
 * same bits as the pair. */

size_t k_conv1d_silu_work_floats(int B, int L, int C, int K, int threads)
{
    return k_conv1d_work_floats(B, L, C, K) + (size_t)threads * (SEQ_ROW_BLOCK + (size_t)K - 1) * (size_t)C;
}

static inline float sigmoid_scalar(float z) { return 1.0f / (1.0f + expf(-z)); }

/* The output (forward) / output gradient (backward) as n groups of
 * consecutive channels, group p holding channels [off[p], off[p] +
 * width[p]) in its own (B*L, width[p]) array; one group of width C is the
 * plain contiguous output. */
#define CONV_PARTS_MAX 4
typedef struct ConvParts {
    int n, off[CONV_PARTS_MAX], width[CONV_PARTS_MAX];
    float *y[CONV_PARTS_MAX];
    const float *dy[CONV_PARTS_MAX];
} ConvParts;

static ConvParts one_part(int C, float *y, const float *dy)
{
    ConvParts p = {.n = 1, .off = {0}, .width = {C}};
    p.y[0] = y, p.dy[0] = dy;
    return p;
}

static void conv_silu_fwd_scalar_parts(const float *x, size_t ldx, const float *wt, const float *bias,
                                       const ConvParts *pt, int B, int L, int C, int K)
{
    const size_t rows = (size_t)B * L, Cs = (size_t)C;
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        int t = (int)(r % (size_t)L);
        int j0 = t >= K - 1 ? 0 : K - 1 - t;
        for (int p = 0; p < pt->n; p++) {
            const size_t w = (size_t)pt->width[p];
            for (size_t i = 0; i < w; i++) {
                const size_t c = (size_t)pt->off[p] + i;
                float z = bias ? bias[c] : 0.0f;
                for (int j = j0; j < K; j++) z += wt[(size_t)j * Cs + c] * x[(r + j - (K - 1)) * ldx + c];
                pt->y[p][r * w + i] = z * sigmoid_scalar(z);
            }
        }
    }
}

static void conv_silu_bwd_scalar_parts(const float *x, size_t ldx, const float *wt, const float *bias,
                                       const ConvParts *pt, float *dx, size_t lddx, bool acc, float *dw, float *db,
                                       float *work, int B, int L, int C, int K)
{
    const size_t rows = (size_t)B * L, nblk = conv_blocks(B, L), Cs = (size_t)C;
    const size_t slot = (size_t)(K + 1) * Cs;
    float *dzwork = work + nblk * slot;
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r0 = blk * SEQ_ROW_BLOCK, r1 = r0 + SEQ_ROW_BLOCK < rows ? r0 + SEQ_ROW_BLOCK : rows;
        size_t re = r1 + (size_t)K - 1 < rows ? r1 + (size_t)K - 1 : rows;
        float *dz = dzwork + (size_t)omp_get_thread_num() * (SEQ_ROW_BLOCK + (size_t)K - 1) * Cs;
        for (size_t r = r0; r < re; r++) {
            int t = (int)(r % (size_t)L);
            int j0 = t >= K - 1 ? 0 : K - 1 - t;
            for (int p = 0; p < pt->n; p++) {
                const size_t w = (size_t)pt->width[p];
                for (size_t i = 0; i < w; i++) {
                    const size_t c = (size_t)pt->off[p] + i;
                    float z = bias ? bias[c] : 0.0f;
                    for (int j = j0; j < K; j++) z += wt[(size_t)j * Cs + c] * x[(r + j - (K - 1)) * ldx + c];
                    float s = sigmoid_scalar(z);
                    dz[(r - r0) * Cs + c] = pt->dy[p][r * w + i] * (s * (1.0f + z * (1.0f - s)));
                }
            }
        }
        for (size_t r = r0; r < r1; r++) {
            int t = (int)(r % (size_t)L);
            int j0 = t + K - L > 0 ? t + K - L : 0;
            for (size_t c = 0; c < Cs; c++) {
                float a = 0.0f;
                for (int j = j0; j < K; j++) a += wt[(size_t)j * Cs + c] * dz[(r + (K - 1) - j - r0) * Cs + c];
                float *d = dx + r * lddx + c;
                *d = acc ? *d + a : a;
            }
        }
        if (dw || db) conv_wgrad_block_scalar(x, ldx, dz, r0, r1, L, K, Cs, dw != NULL, db != NULL, work + blk * slot);
    }
    if (dw || db) conv_reduce_blocks(work, dw, db, nblk, C, K);
}

void k_conv1d_silu_fwd_scalar(const float *x, size_t ldx, const float *wt, const float *bias, float *y,
                              int B, int L, int C, int K)
{
    ConvParts pt = one_part(C, y, NULL);
    conv_silu_fwd_scalar_parts(x, ldx, wt, bias, &pt, B, L, C, K);
}

void k_conv1d_silu_bwd_scalar(const float *x, size_t ldx, const float *wt, const float *bias,
                              const float *dy, float *dx, size_t lddx, bool acc, float *dw, float *db,
                              float *work, int B, int L, int C, int K)
{
    ConvParts pt = one_part(C, NULL, dy);
    conv_silu_bwd_scalar_parts(x, ldx, wt, bias, &pt, dx, lddx, acc, dw, db, work, B, L, C, K);
}

#if SIMD_AVX2
#define LD(p, full, m) ((full) ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), (m)))
#define ST(p, v, full, m) ((full) ? _mm256_storeu_ps((p), (v)) : _mm256_maskstore_ps((p), (m), (v)))

/* z of 8 channels c.. of row r (the forward's accumulation order) */
static inline __m256 conv_z8(const float *x, size_t ldx, const float *wt, const float *bias, size_t r,
                             size_t c, int j0, int K, size_t Cs, int full, __m256i tail)
{
    __m256 z = bias ? LD(bias + c, full, tail) : _mm256_setzero_ps();
    for (int j = j0; j < K; j++)
        z = _mm256_fmadd_ps(LD(wt + (size_t)j * Cs + c, full, tail), LD(x + (r + j - (K - 1)) * ldx + c, full, tail), z);
    return z;
}

static void conv_silu_fwd_avx2_parts(const float *x, size_t ldx, const float *wt, const float *bias,
                                     const ConvParts *pt, int B, int L, int C, int K)
{
    const size_t rows = (size_t)B * L, Cs = (size_t)C;
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        int t = (int)(r % (size_t)L);
        int j0 = t >= K - 1 ? 0 : K - 1 - t;
        for (int p = 0; p < pt->n; p++) {
            const size_t w = (size_t)pt->width[p], o = (size_t)pt->off[p];
            const __m256i tail = simd_tail_mask(w % 8);
            for (size_t i = 0; i < w; i += 8) {
                const int full = i + 8 <= w;
                __m256 z = conv_z8(x, ldx, wt, bias, r, o + i, j0, K, Cs, full, tail);
                ST(pt->y[p] + r * w + i, _mm256_mul_ps(z, v8_sigmoid(z)), full, tail);
            }
        }
    }
}

static void conv_silu_bwd_avx2_parts(const float *x, size_t ldx, const float *wt, const float *bias,
                                     const ConvParts *pt, float *dx, size_t lddx, bool acc, float *dw, float *db,
                                     float *work, int B, int L, int C, int K)
{
    const size_t rows = (size_t)B * L, nblk = conv_blocks(B, L), Cs = (size_t)C;
    const size_t slot = (size_t)(K + 1) * Cs;
    const __m256i tail = simd_tail_mask(Cs % 8);
    const __m256 one = _mm256_set1_ps(1.0f);
    float *dzwork = work + nblk * slot;
#pragma omp parallel for schedule(static) if (rows * Cs * (size_t)K >= KERNEL_PAR_MIN)
    for (size_t blk = 0; blk < nblk; blk++) {
        size_t r0 = blk * SEQ_ROW_BLOCK, r1 = r0 + SEQ_ROW_BLOCK < rows ? r0 + SEQ_ROW_BLOCK : rows;
        size_t re = r1 + (size_t)K - 1 < rows ? r1 + (size_t)K - 1 : rows;
        float *dz = dzwork + (size_t)omp_get_thread_num() * (SEQ_ROW_BLOCK + (size_t)K - 1) * Cs;
        for (size_t r = r0; r < re; r++) {
            int t = (int)(r % (size_t)L);
            int j0 = t >= K - 1 ? 0 : K - 1 - t;
            for (int p = 0; p < pt->n; p++) {
                const size_t w = (size_t)pt->width[p], o = (size_t)pt->off[p];
                const __m256i ptail = simd_tail_mask(w % 8);
                for (size_t i = 0; i < w; i += 8) {
                    const int full = i + 8 <= w;
                    __m256 z = conv_z8(x, ldx, wt, bias, r, o + i, j0, K, Cs, full, ptail);
                    __m256 s = v8_sigmoid(z);
                    __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(z, _mm256_sub_ps(one, s), one));
                    ST(dz + (r - r0) * Cs + o + i, _mm256_mul_ps(LD(pt->dy[p] + r * w + i, full, ptail), d), full,
                       ptail);
                }
            }
        }
        for (size_t r = r0; r < r1; r++) {
            int t = (int)(r % (size_t)L);
            int j0 = t + K - L > 0 ? t + K - L : 0;
            for (size_t c = 0; c < Cs; c += 8) {
                const int full = c + 8 <= Cs;
                __m256 a = _mm256_setzero_ps();
                for (int j = j0; j < K; j++)
                    a = _mm256_fmadd_ps(LD(wt + (size_t)j * Cs + c, full, tail),
                                        LD(dz + (r + (K - 1) - j - r0) * Cs + c, full, tail), a);
                float *d = dx + r * lddx + c;
                ST(d, acc ? _mm256_add_ps(LD(d, full, tail), a) : a, full, tail);
            }
        }
        if (dw || db) conv_wgrad_block_avx2(x, ldx, dz, r0, r1, L, K, Cs, dw != NULL, db != NULL, work + blk * slot);
    }
    if (dw || db) conv_reduce_blocks(work, dw, db, nblk, C, K);
}
#undef LD
#undef ST

void k_conv1d_silu_fwd_avx2(const float *x, size_t ldx, const float *wt, const float *bias, float *y,
                            int B, int L, int C, int K)
{
    ConvParts pt = one_part(C, y, NULL);
    conv_silu_fwd_avx2_parts(x, ldx, wt, bias, &pt, B, L, C, K);
}

void k_conv1d_silu_bwd_avx2(const float *x, size_t ldx, const float *wt, const float *bias,
                            const float *dy, float *dx, size_t lddx, bool acc, float *dw, float *db,
                            float *work, int B, int L, int C, int K)
{
    ConvParts pt = one_part(C, NULL, dy);
    conv_silu_bwd_avx2_parts(x, ldx, wt, bias, &pt, dx, lddx, acc, dw, db, work, B, L, C, K);
}
#define CONV_PARTS(name) conv_silu_##name##_avx2_parts
#else
#define CONV_PARTS(name) conv_silu_##name##_scalar_parts
#endif

void k_conv1d_silu_fwd(const float *x, size_t ldx, const float *wt, const float *bias, float *y, int B,
                       int L, int C, int K)
{
    DISPATCH(k_conv1d_silu_fwd, x, ldx, wt, bias, y, B, L, C, K);
}

void k_conv1d_silu_bwd(const float *x, size_t ldx, const float *wt, const float *bias, const float *dy,
                       float *dx, size_t lddx, bool acc, float *dw, float *db, float *work, int B, int L,
                       int C, int K)
{
    DISPATCH(k_conv1d_silu_bwd, x, ldx, wt, bias, dy, dx, lddx, acc, dw, db, work, B, L, C, K);
}

/* iarg[0] = K, iarg[1] = c0 (first column of the window) */
static void conv1d_silu_backward(Graph *g, TapeEntry *e)
{
    Tensor *x = e->in[0], *w = e->in[1], *b = e->in[2];
    const float *wt = e->ctx;
    const int B = x->shape[0], L = x->shape[1], C = e->out->shape[2], K = e->iarg[0], c0 = e->iarg[1];
    const size_t ldx = (size_t)x->shape[2], rows = (size_t)B * L;
    bool fresh;
    float *dx = tensor_grad_fresh(g, x, &fresh), *dw = tensor_grad(g, w), *db = tensor_grad(g, b);
    if (!dx && !dw && !db) return;
    const int threads = omp_get_max_threads();
    float *work = graph_scratch(g, k_conv1d_silu_work_floats(B, L, C, K, threads) * sizeof(float));
    float *dxw = dx;
    if (!dx) /* dz is still needed for dw, db: dx goes to a throw-away buffer */
        dxw = graph_scratch(g, rows * (size_t)C * sizeof(float));
    else
        dxw = dx + c0;
    /* a fresh gradient gets zeros outside the window, the window is written */
    if (dx && fresh && ldx != (size_t)C) {
#pragma omp parallel for schedule(static) if (rows * ldx >= KERNEL_PAR_MIN)
        for (size_t r = 0; r < rows; r++) {
            memset(dx + r * ldx, 0, (size_t)c0 * sizeof *dx);
            memset(dx + r * ldx + c0 + C, 0, (ldx - (size_t)c0 - (size_t)C) * sizeof *dx);
        }
    }
    k_conv1d_silu_bwd(x->data + c0, ldx, wt, b ? b->data : NULL, e->out->grad, dxw, dx ? ldx : (size_t)C,
                      dx && !fresh, dw, db, work, B, L, C, K);
}

Tensor *op_conv1d_silu(Graph *g, Tensor *x, int c0, int C, Tensor *w, Tensor *b)
{
    static const char *name = "conv1d_silu";
    if (x->ndim != 3) op_shape_error(name, "x must be (B, L, cols), got", x, NULL);
    if (c0 < 0 || C < 1 || c0 > x->shape[2] - C) op_shape_error(name, "column window outside x", x, NULL);
    if (w->numel == 0 || w->numel % (size_t)C != 0) op_shape_error(name, "w must hold C*K elements (x, w):", x, w);
    const int K = (int)(w->numel / (size_t)C);
    if (b && b->numel != (size_t)C) op_shape_error(name, "bias must hold C elements (x, b):", x, b);

    float *wt = graph_scratch(g, w->numel * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int j = 0; j < K; j++) wt[(size_t)j * C + c] = w->data[(size_t)c * K + j];

    Tensor *y = tensor_new(g, 3, (int[]){x->shape[0], x->shape[1], C});
    k_conv1d_silu_fwd(x->data + c0, (size_t)x->shape[2], wt, b ? b->data : NULL, y->data, x->shape[0],
                      x->shape[1], C, K);
    if (graph_wants_grad(g, x, w, b, NULL)) {
        TapeEntry *e = graph_record(g, name, conv1d_silu_backward, y, x, w, b, NULL);
        e->ctx = wt;
        e->iarg[0] = K;
        e->iarg[1] = c0;
    }
    return y;
}

/* ------------------------------------- fused conv + SiLU, split output
 *
 * The same kernels write the channel groups to their own tensors (and read
 * their gradients from them).  One tape entry per output, all sharing the
 * context; the first to run does the whole backward.  Every output's
 * consumers come later on the tape, so all output gradients are complete
 * by then; a part nobody differentiated gets a zero gradient. */

typedef struct SplitCtx {
    ConvParts parts;
    Tensor *outs[CONV_PARTS_MAX];
    const float *wt;
    int c0, C, K;
    bool done;
} SplitCtx;

static void conv1d_silu_split_backward(Graph *g, TapeEntry *e)
{
    SplitCtx *c = e->ctx;
    if (c->done) return;
    c->done = true;
    Tensor *x = e->in[0], *w = e->in[1], *b = e->in[2];
    const int B = x->shape[0], L = x->shape[1], K = c->K, C = c->C, c0 = c->c0;
    const size_t ldx = (size_t)x->shape[2], rows = (size_t)B * L;
    bool fresh;
    float *dx = tensor_grad_fresh(g, x, &fresh), *dw = tensor_grad(g, w), *db = tensor_grad(g, b);
    if (!dx && !dw && !db) return;
    ConvParts pt = c->parts;
    for (int p = 0; p < pt.n; p++) pt.dy[p] = tensor_grad(g, c->outs[p]); /* zeros if unused */
    float *work = graph_scratch(g, k_conv1d_silu_work_floats(B, L, C, K, omp_get_max_threads()) * sizeof(float));
    float *dxw = dx ? dx + c0 : graph_scratch(g, rows * (size_t)C * sizeof(float)); /* dx nobody wants */
    if (dx && fresh && ldx != (size_t)C) {
#pragma omp parallel for schedule(static) if (rows * ldx >= KERNEL_PAR_MIN)
        for (size_t r = 0; r < rows; r++) {
            memset(dx + r * ldx, 0, (size_t)c0 * sizeof *dx);
            memset(dx + r * ldx + c0 + C, 0, (ldx - (size_t)c0 - (size_t)C) * sizeof *dx);
        }
    }
    CONV_PARTS(bwd)(x->data + c0, ldx, c->wt, b ? b->data : NULL, &pt, dxw, dx ? ldx : (size_t)C, dx && !fresh,
                    dw, db, work, B, L, C, K);
}

void op_conv1d_silu_split(Graph *g, Tensor *x, int c0, int n_parts, const int *widths, Tensor *w, Tensor *b,
                          Tensor **outs)
{
    static const char *name = "conv1d_silu";
    if (n_parts < 1 || n_parts > CONV_PARTS_MAX) op_shape_error(name, "1 to 4 output parts", x, NULL);
    int C = 0;
    for (int p = 0; p < n_parts; p++) {
        if (widths[p] < 1) op_shape_error(name, "part widths must be >= 1", x, NULL);
        C += widths[p];
    }
    if (x->ndim != 3) op_shape_error(name, "x must be (B, L, cols), got", x, NULL);
    if (c0 < 0 || c0 > x->shape[2] - C) op_shape_error(name, "column window outside x", x, NULL);
    if (w->numel == 0 || w->numel % (size_t)C != 0) op_shape_error(name, "w must hold C*K elements (x, w):", x, w);
    const int K = (int)(w->numel / (size_t)C);
    if (b && b->numel != (size_t)C) op_shape_error(name, "bias must hold C elements (x, b):", x, b);

    float *wt = graph_scratch(g, w->numel * sizeof(float));
    for (int ch = 0; ch < C; ch++)
        for (int j = 0; j < K; j++) wt[(size_t)j * C + ch] = w->data[(size_t)ch * K + j];
    SplitCtx *c = graph_scratch(g, sizeof *c);
    *c = (SplitCtx){.parts = {.n = n_parts}, .wt = wt, .c0 = c0, .C = C, .K = K};
    for (int p = 0, off = 0; p < n_parts; off += widths[p], p++) {
        outs[p] = tensor_new(g, 3, (int[]){x->shape[0], x->shape[1], widths[p]});
        c->outs[p] = outs[p];
        c->parts.off[p] = off, c->parts.width[p] = widths[p], c->parts.y[p] = outs[p]->data;
    }
    CONV_PARTS(fwd)(x->data + c0, (size_t)x->shape[2], wt, b ? b->data : NULL, &c->parts, x->shape[0], x->shape[1],
                    C, K);
    if (graph_wants_grad(g, x, w, b, NULL))
        for (int p = 0; p < n_parts; p++) graph_record(g, name, conv1d_silu_split_backward, outs[p], x, w, b, NULL)->ctx = c;
}
