/* Attention eigenvalues by method "paper" (docs/eigenvalues.md): the
 * reference analysis script's procedure for one layer, quirks and
 * precision included, on the OUTPUT x of the layer's block (no LayerNorm,
 * no conv).
 *
 *   softmax  q, k = Wqkv x (float32); S_ts = q_t.k_s (float32, no
 *            1/sqrt(dh)); the upper triangle (s > t) is multiplied by 0, so
 *            the row max m_t (float32) also runs over those zeros (every
 *            row but the last has some); the max is masked the same way,
 *            so a masked entry becomes 0 - 0 = 0 after the shift.  Then in
 *            float64: nu_t = sum_{s<=t} exp(S_ts - m_t) + (L-1-t) (the
 *            masked entries, exp(0) = 1 each), with S_ts - m_t rounded to
 *            float32 first, and
 *            eig_t = nu_t / nu_{t+1} * exp((double)(float)(m_t - m_{t+1})).
 *   linear   phi = elu + 1 on q, k (float32); S_ts = phi(q_t).phi(k_s)
 *            (float32); nu_t = sum_{s<=t} S_ts in float64; nu == 0 -> 2e-23;
 *            eig_t = nu_t / nu_{t+1}.
 *   norm     n = the H normaliser channels of Wvqkn x (float32);
 *            m = exp(-f(n + o_h)) all in float32 (o only with offset);
 *            to float64, m == 0 -> 2e-23; eig_t = m_{t+1} / m_t.
 * Index t = 0 .. L-2 is the step from t to t+1 (as dsf).  Dot products
 * accumulate in float32 in order over the head dimension (PyTorch's GEMM
 * order differs in the last bits, which the oracle's tolerance covers,
 * tests/oracle/paper.py).
 *
 * Threads: the quadratic attention sums are split over (sample, head)
 * pairs, each computed whole by one thread, so results are bit-identical
 * for any thread count. */
#include <math.h>
#include <omp.h>

#include "attention.h"
#include "paper_math.h"

static float norm_fn_f(NormFn fn, float x)
{
    switch (fn) {
    case NORM_FN_EXP: return expf(x);
    case NORM_FN_ELU: return paper_elu(x);
    case NORM_FN_SOFTPLUS: return paper_softplus(x);
    case NORM_FN_SIGMOID: return paper_sigmoid(x);
    }
    return NAN;
}

/* Work space of one (sample, head) pair. */
typedef struct ScoreWork {
    float *kt;    /* (dh, L): keys of this head, transposed */
    float *row;   /* (L): S_t. */
    float *m;     /* (L): softmax row max */
    double *nu;   /* (L) */
} ScoreWork;

/* row[s] = q . kt[:, s] for s <= t, float32, accumulated over the head
 * dimension in order (vectorised over s, which keeps every element's
 * order: the scalar and the AVX2 build agree bit for bit). */
static void score_row(const float *q, const float *kt, int dh, int L, int t, float *row)
{
    for (int s = 0; s <= t; s++) row[s] = 0.0f;
    for (int e = 0; e < dh; e++) {
        const float qe = q[e];
        const float *k = kt + (size_t)e * L;
        for (int s = 0; s <= t; s++) row[s] += qe * k[s];
    }
}

/* Quirky softmax normaliser of every row of one (sample, head): w->m, w->nu. */
static void softmax_rows(const float *qk, int ld, int qoff, int koff, int dh, int L, ScoreWork *w)
{
    for (int s = 0; s < L; s++)
        for (int e = 0; e < dh; e++) w->kt[(size_t)e * L + s] = qk[(size_t)s * ld + koff + e];
    for (int t = 0; t < L; t++) {
        score_row(qk + (size_t)t * ld + qoff, w->kt, dh, L, t, w->row);
        /* the masked zeros (s > t, present unless t is the last row) enter the max */
        float mx = t < L - 1 ? 0.0f : w->row[0];
        for (int s = 0; s <= t; s++)
            if (w->row[s] > mx) mx = w->row[s];
        double nu = 0.0;
        for (int s = 0; s <= t; s++) nu += paper_nan_to_num(exp((double)(w->row[s] - mx)));
        nu += (double)(L - 1 - t); /* masked entries: exp(0 - 0) = 1 each */
        w->m[t] = mx;
        w->nu[t] = nu;
    }
}

/* Linear attention normaliser nu_t = sum_{s<=t} phi(q_t).phi(k_s) of one
 * (sample, head), phi already applied to qk. */
static void linear_rows_nu(const float *phi, int ld, int qoff, int koff, int dh, int L, ScoreWork *w)
{
    for (int s = 0; s < L; s++)
        for (int e = 0; e < dh; e++) w->kt[(size_t)e * L + s] = phi[(size_t)s * ld + koff + e];
    for (int t = 0; t < L; t++) {
        score_row(phi + (size_t)t * ld + qoff, w->kt, dh, L, t, w->row);
        double nu = 0.0;
        for (int s = 0; s <= t; s++) nu += paper_nan_to_num((double)w->row[s]);
        w->nu[t] = nu == 0.0 ? PAPER_ZERO_SUBST : nu;
    }
}

/* Softmax or linear attention: eig[b*bstride + h*(L-1) + t]. */
static void scores_eig(const AttentionLayer *a, const ModelConfig *c, Graph *g, Tensor *x, double *eig,
                       size_t bstride)
{
    const int B = x->shape[0], L = x->shape[1], H = c->num_heads, dqk = c->state_dim, dh = dqk / H;
    const bool sm = transformer_options(c)->attention == ATTENTION_SOFTMAX;
    /* q, k: the first 2 d_qk rows of Wqkv ([q | k | v]) */
    Tensor *qk = paper_linear_rows(g, x, a->proj_w, a->proj_b, 0, 2 * dqk);
    if (!sm) /* phi = elu + 1, float32 */
        for (size_t i = 0; i < qk->numel; i++) qk->data[i] = paper_elu(qk->data[i]) + 1.0f;
    const int ld = 2 * dqk, T = L - 1;

    const int nt = omp_get_max_threads();
    const size_t per = (size_t)dh * L + 2 * (size_t)L; /* floats: kt, row, m */
    float *fw = graph_scratch(g, (size_t)nt * per * sizeof(float));
    double *dw = graph_scratch(g, (size_t)nt * L * sizeof(double));
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        const int b = bh / H, h = bh % H, tid = omp_get_thread_num();
        float *f = fw + (size_t)tid * per;
        ScoreWork w = {.kt = f, .row = f + (size_t)dh * L, .m = f + (size_t)dh * L + L,
                       .nu = dw + (size_t)tid * L};
        const float *base = qk->data + (size_t)b * L * ld;
        double *e = eig + (size_t)b * bstride + (size_t)h * T;
        if (sm) {
            softmax_rows(base, ld, h * dh, dqk + h * dh, dh, L, &w);
            for (int t = 0; t < T; t++) {
                const float dm = -w.m[t + 1] + w.m[t]; /* float32, as numpy on float32 arrays */
                e[t] = w.nu[t] / w.nu[t + 1] * exp((double)dm);
            }
        } else {
            linear_rows_nu(base, ld, h * dh, dqk + h * dh, dh, L, &w);
            for (int t = 0; t < T; t++) e[t] = w.nu[t] / w.nu[t + 1];
        }
    }
}

/* Norm attention: eig_t = m_{t+1} / m_t, m = exp(-f(n + o)) in float32. */
static void norm_eig(const AttentionLayer *a, const ModelConfig *c, Graph *g, Tensor *x, double *eig,
                     size_t bstride)
{
    const TransformerOptions *o = transformer_options(c);
    const int B = x->shape[0], L = x->shape[1], H = c->num_heads, d = c->hidden_dim;
    const int row0 = d + 2 * c->state_dim; /* [v | q | k | n] */
    Tensor *n = paper_linear_rows(g, x, a->proj_w, a->proj_b, row0, H);
    const float *off = a->offset ? a->offset->t.data : NULL;
    double *mm = graph_scratch(g, (size_t)L * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            for (int t = 0; t < L; t++) {
                float v = n->data[((size_t)b * L + t) * H + h];
                if (off) v = v + off[h];
                const float mt = expf(-norm_fn_f(o->norm_fn, v));
                mm[t] = mt == 0.0f ? PAPER_ZERO_SUBST : (double)mt;
            }
            double *e = eig + (size_t)b * bstride + (size_t)h * (L - 1);
            for (int t = 0; t < L - 1; t++) e[t] = mm[t + 1] / mm[t];
        }
}

void attention_paper_eig(const AttentionLayer *a, const ModelConfig *c, Graph *g, Tensor *x, double *eig,
                         size_t eig_bstride)
{
    if (x->shape[1] < 2) return; /* no step */
    if (transformer_options(c)->attention == ATTENTION_NORM)
        norm_eig(a, c, g, x, eig, eig_bstride);
    else
        scores_eig(a, c, g, x, eig, eig_bstride);
}
